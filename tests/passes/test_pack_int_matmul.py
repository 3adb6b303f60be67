"""``pack_int_matmul``: integer products of constant weights on packed int8 panels, the rewrite
as before/after text, what it leaves alone, and ONNX MatMulInteger compiled for a target with
an exact 8-bit dot product (VNNI) and for one whose pairs saturate, against the reference
interpreter (bit-exact) whatever this machine has."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.driver.pipeline import Context
from ember.driver.pipeline import run_graph as run_pipeline
from ember.frontend.onnx import from_onnx
from ember.graph import run_graph
from ember.graph.text import parse_graph
from ember.passes import pack_int_matmul, pair_saturation
from ember.target import VNNI_FEATURES, host
from graphgen import assert_rewrites


def test_uint8_weight_is_stored_less_128_and_added_back():
    """K = 5 padded to 8 (the activation too), N = 3 to a panel of 4; 128 * rowsum(x) restores
    the uint8 weight's product exactly."""
    out = assert_rewrites(lambda g: pack_int_matmul.run(g, 4, int8_dot=True), """
        graph g(%x: uint8[2, 5]) {
          %w = const uint8[5, 3] [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 255]
          %y = matmul_int(%x, %w)
          return %y
        }""", """
        graph g(%x: uint8[2, 5]) {
          %w_packed_int = const int8[1, 2, 4, 4] [-128, -125, -122, -119, -127, -124, -121, -118,
                                                  -126, -123, -120, -117, 0, 0, 0, 0,
                                                  -116, 0, 0, 0, -115, 0, 0, 0, 127, 0, 0, 0, 0, 0, 0, 0]
          %y_offset = const int32[] 128
          %y_kpad = pad(%x) {pads=[0, 0, 0, 3], mode="constant", value=0}
          %y_1 = matmul_int_packed(%y_kpad, %w_packed_int) {n=3, pairs="exact"}
          %y_x32 = cast(%x) {to="int32"}
          %y_rowsum = reduce_sum(%y_x32) {axes=[-1], keepdims=true}
          %y_offset_rowsum = mul(%y_rowsum, %y_offset)
          %y_unshift = add(%y_1, %y_offset_rowsum)
          return %y_unshift
        }""", inputs={"x": np.array([[255, 254, 0, 7, 200], [1, 2, 3, 4, 5]], np.uint8)})
    assert out.outputs[0].dtype == "int32"


def test_saturating_pairs_use_the_multiply_add():
    """Pairs (4q, 4q + 1), (4q + 2, 4q + 3) of the packed sum are matmul_int's pairs."""
    x = np.full((3, 8), 255, np.uint8)
    assert_rewrites(lambda g: pack_int_matmul.run(g, 8, int8_dot=False), """
        graph g(%x: uint8[3, 8]) {
          %w = const int8[8, 2] [127, 127, 127, -128, 127, 5, 127, 6, 1, 2, 3, 4, -128, -128, -128, -128]
          %y = matmul_int(%x, %w) {saturate_pairs=true}
          return %y
        }""", """
        graph g(%x: uint8[3, 8]) {
          %w_packed_int = const int8[1, 2, 8, 4] [127, 127, 127, 127, 127, -128, 5, 6, 0, 0, 0, 0, 0, 0, 0, 0,
                                                  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                  1, 3, -128, -128, 2, 4, -128, -128, 0, 0, 0, 0, 0, 0, 0, 0,
                                                  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
          %y_1 = matmul_int_packed(%x, %w_packed_int) {n=2, pairs="saturate"}
          return %y_1
        }""", inputs={"x": x})


def test_exact_sums_without_vnni_split_the_weight():
    """Halves of at most 64 in magnitude: 255 * 64 * 2 fits int16, so the multiply-add's pairs
    never saturate and the two sums add up to the exact product."""
    x = np.full((2, 4), 255, np.uint8)
    out = assert_rewrites(lambda g: pack_int_matmul.run(g, 8, int8_dot=False, multiply_add=True), """
        graph g(%x: uint8[2, 4]) {
          %w = const int8[4, 1] [127, -128, 127, 127]
          %y = matmul_int(%x, %w)
          return %y
        }""", """
        graph g(%x: uint8[2, 4]) {
          %w_packed_int = const int8[1, 1, 2, 8, 4] [63, -64, 63, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     64, -64, 64, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
          %y_1 = matmul_int_packed(%x, %w_packed_int) {n=1, pairs="split"}
          return %y_1
        }""", inputs={"x": x})
    assert run_graph(out, {"x": x})[0].tolist() == [[255 * 253]] * 2


def test_int8_activations_are_shifted_to_uint8():
    """x @ w = (x + 128) @ w - 128 * colsum(w): the shifted activations on the packed weight,
    the constant correction per column after it (both corrections with a uint8 weight)."""
    x = np.array([[-128, 127, 0, -7, 100], [1, 2, 3, 4, 5]], np.int8)
    assert_rewrites(lambda g: pack_int_matmul.run(g, 4, int8_dot=True), """
        graph g(%x: int8[2, 5]) {
          %w = const int8[5, 3] [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, -128, 127]
          %y = matmul_int(%x, %w)
          return %y
        }""", """
        graph g(%x: int8[2, 5]) {
          %w_packed_int = const int8[1, 2, 4, 4] [0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11, 0, 0, 0, 0,
                                                  12, 0, 0, 0, -128, 0, 0, 0, 127, 0, 0, 0, 0, 0, 0, 0]
          %y_x_offset = const int16[] 128
          %y_x_colsum = const int32[3] [-3840, 13568, -19584]
          %y_x16 = cast(%x) {to="int16"}
          %y_x_shift = add(%y_x16, %y_x_offset)
          %y_xu8 = cast(%y_x_shift) {to="uint8"}
          %y_kpad = pad(%y_xu8) {pads=[0, 0, 0, 3], mode="constant", value=0}
          %y_1 = matmul_int_packed(%y_kpad, %w_packed_int) {n=3, pairs="exact"}
          %y_x_unshift = add(%y_1, %y_x_colsum)
          return %y_x_unshift
        }""", inputs={"x": x})
    # the same on x86's multiply-add without VNNI: the shifted activations on split halves
    x = np.array([[-128] * 8, [127] * 8, list(range(-4, 4))], np.int8)
    assert_rewrites(lambda g: pack_int_matmul.run(g, 8, int8_dot=False, multiply_add=True), """
        graph g(%x: int8[3, 8]) {
          %w = const uint8[8, 1] [255, 0, 255, 0, 128, 127, 1, 254]
          %y = matmul_int(%x, %w)
          return %y
        }""", """
        graph g(%x: int8[3, 8]) {
          %w_packed_int = const int8[1, 2, 2, 8, 4] [63, -64, 63, -64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     64, -64, 64, -64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, -1, -64, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, -63, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                     0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
          %y_x_offset = const int16[] 128
          %y_offset = const int32[] 128
          %y_x_colsum = const int32[1] [-130560]
          %y_x16 = cast(%x) {to="int16"}
          %y_x_shift = add(%y_x16, %y_x_offset)
          %y_xu8 = cast(%y_x_shift) {to="uint8"}
          %y_1 = matmul_int_packed(%y_xu8, %w_packed_int) {n=1, pairs="split"}
          %y_x32 = cast(%y_xu8) {to="int32"}
          %y_rowsum = reduce_sum(%y_x32) {axes=[-1], keepdims=true}
          %y_offset_rowsum = mul(%y_rowsum, %y_offset)
          %y_unshift = add(%y_1, %y_offset_rowsum)
          %y_x_unshift = add(%y_unshift, %y_x_colsum)
          return %y_x_unshift
        }""", inputs={"x": x})


@pytest.mark.parametrize("text,lanes,dot", [
    # exact sums without an exact dot product; int8 activations whose pairs would saturate; a
    # weight that is an input; a uint8 weight whose pairs would saturate (no such instruction)
    ("%x: uint8[2, 8]) {\n %w = const int8[8, 4] [" + ", ".join(["1"] * 32) + "]\n %y = matmul_int(%x, %w)", 8, False),
    ("%x: int8[2, 8]) {\n %w = const int8[8, 4] [" + ", ".join(["1"] * 32) + "]\n"
     " %y = matmul_int(%x, %w) {saturate_pairs=true}", 8, False),
    ("%x: uint8[2, 8], %w: int8[8, 4]) {\n %y = matmul_int(%x, %w) {saturate_pairs=true}", 8, False),
    ("%x: uint8[2, 8]) {\n %w = const uint8[8, 4] [" + ", ".join(["1"] * 32) + "]\n"
     " %y = matmul_int(%x, %w) {saturate_pairs=true}", 8, False),
])
def test_left_alone(text, lanes, dot):
    g = parse_graph(f"graph g({text}\n return %y\n}}")
    assert pack_int_matmul.run(g, lanes, int8_dot=dot) is g


# ---- ONNX MatMulInteger, compiled for both kinds of x86 target --------------------------------

def matmul_integer(m, k, n, adt, bdt, azp, bzp, seed):
    rng = np.random.default_rng(seed)
    tp = {"uint8": TensorProto.UINT8, "int8": TensorProto.INT8}
    b = rng.integers(np.iinfo(bdt).min, np.iinfo(bdt).max + 1, (k, n)).astype(bdt)
    inits = [numpy_helper.from_array(b, "B"), numpy_helper.from_array(np.array(azp, adt), "azp"),
             numpy_helper.from_array(np.array(bzp, bdt), "bzp")]
    g = helper.make_graph([helper.make_node("MatMulInteger", ["A", "B", "azp", "bzp"], ["Y"])], "g",
                          [helper.make_tensor_value_info("A", tp[adt], [m, k])],
                          [helper.make_tensor_value_info("Y", TensorProto.INT32, [m, n])], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    # activations near the top of the range: uint8 x int8 pairs leave int16
    lo = 150 if adt == "uint8" else -128
    return model, {"A": rng.integers(lo, np.iinfo(adt).max + 1, (m, k)).astype(adt)}


def x86_target(vnni: bool):
    t = host()
    if t.isa != "x86":
        pytest.skip("x86 targets")
    return replace(t, features=(t.features | VNNI_FEATURES) if vnni else (t.features - VNNI_FEATURES))


@pytest.mark.parametrize("vnni", [True, False])
@pytest.mark.parametrize("m,k,n,adt,bdt,azp,bzp", [
    (16, 1024, 70, "uint8", "uint8", 0, 128),      # a dynamically quantized model's product
    (5, 37, 45, "uint8", "int8", 3, 0),            # odd K, N not a multiple of the lanes
    (3, 30, 17, "uint8", "uint8", 7, 100),
    (4, 21, 9, "int8", "int8", -3, 2),             # int8 activations: shifted to uint8
    (6, 64, 40, "int8", "int8", 0, 0),
    (3, 19, 11, "int8", "uint8", 5, 130),
])
def test_matmul_integer_is_bit_exact(vnni, m, k, n, adt, bdt, azp, bzp):
    target = x86_target(vnni)
    assert target.int8_dot == vnni and target.int8_pairs_saturate != vnni
    model, feed = matmul_integer(m, k, n, adt, bdt, azp, bzp, seed=m * k + n)
    module = ember.compile(model, target=target, cflags=("-O1",))
    got = list(module.run(feed).values())[0]
    # the reference interpreter computes what the target is to compute (pairs saturating there)
    want = run_graph(pair_saturation.run(from_onnx(model), target.int8_pairs_saturate), feed)[0]
    np.testing.assert_array_equal(got, want)
    ops = run_pipeline(from_onnx(model), Context(target)).op_histogram()
    assert "matmul_int_packed" in ops and "matmul_int" not in ops

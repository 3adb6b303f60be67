"""The Metal target.  Metal cannot run here (no Apple GPU, no Metal compiler on Linux), so the
generated Metal Shading Language is checked by the strongest checker this machine has: compiled
as C++14 against Ember's typed stand-in for <metal_stdlib> (``toolchain/msl_cpp.py``: syntax,
names and types, not Metal's own rules) and run on the CPU by its fiber shim, one fiber per
thread, against the checking interpreter, numpy and onnxruntime.  The whole shared models are
generated and checked (``slow``)."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import ember
from ember.codegen.gpu import GPUGenerator
from ember.errors import ArtifactError, CodegenError, EmberRuntimeError, IndexOutOfRangeError, TargetError, \
    ToolchainError
from ember.schedules import default
from ember.target import resolve
from ember.te.lower import lower
from ember.te.schedule import create_schedule
from ember.tir.gpu import check_kernel, optimize
from ember.toolchain import msl_cpp

from targets.test_gpu import (_elementwise_uneven, _intrinsics, _layer_norm, _matmul_relu, _model, _row_sum, _softmax,
                              small_cnn)
from tir.interp import run_kernel

RNG = np.random.default_rng(7)


def _run_in_shim(f, arrays):
    """``f`` written as Metal, checked, built by the shim and run over its launch; the arrays
    after the run."""
    gen = GPUGenerator("metal")
    gen.kernel(f)
    src = gen.source()
    assert msl_cpp.check(src) == [f.attrs["launch"]["name"]]
    lib = msl_cpp.Library(src)
    arrays = [np.ascontiguousarray(a).copy() for a in arrays]
    lau = f.attrs["launch"]
    flag = np.zeros(1, np.int32)
    ptrs = [a.ctypes.data for a in arrays] + ([flag.ctypes.data] if lau["checks"] else [])
    lib.launch(lau["name"], ptrs, lau["grid"], lau["block"])
    return arrays, flag[0]


def test_metal_target():
    t = resolve("metal")
    assert (t.kind, t.family, t.lanes, t.spec) == ("metal", "gpu", 1, "metal")
    with pytest.raises(TargetError, match="metal takes no option"):
        resolve("metal -arch=sm_80")


def _schedule(program, schedule):
    inputs, out, ref = program()
    s = create_schedule(out)
    if schedule == "rows":
        from ember.schedules.gpu import rows
        rows({}, s, out, resolve("metal"))
    else:
        target = resolve("metal").with_knobs({"gpu.threads": schedule})
        default(target)(s, target)
    return inputs, out, ref, optimize(lower(s, "k", inputs + [s.output]))


@pytest.mark.parametrize("program,schedule", [(_matmul_relu, 32), (_softmax, 256), (_elementwise_uneven, 64),
                                              (_softmax, "rows"), (_layer_norm, "rows"), (_row_sum, "rows")])
def test_schedules_run_in_the_shim(program, schedule):
    """The default and row schedules' kernels as Metal, run by the shim (the row schedule's
    shared-memory trees meet the shim's barriers), against the interpreter and numpy."""
    inputs, out, ref, f = _schedule(program, schedule)
    arrays = [RNG.standard_normal(t.shape).astype(np.float32) for t in inputs]
    want = run_kernel(f, arrays + [np.zeros(out.shape, np.float32)])[-1]
    got = _run_in_shim(f, arrays + [np.zeros(out.shape, np.float32)])[0][-1]
    np.testing.assert_allclose(got.reshape(-1), want.reshape(-1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.reshape(out.shape), ref(*arrays), rtol=1e-4, atol=1e-5)
    if schedule == "rows":
        assert "threadgroup float" in GPUGenerator("metal").kernel(f)


@pytest.mark.parametrize("m,k,n", [(16, 32, 32), (20, 21, 9)])
def test_tiled_matmul_runs_in_the_shim(m, k, n):
    from ember import te
    from ember.schedules.gpu import matmul

    A, B = te.placeholder((2, m, k), "float32", "A"), te.placeholder((k, n), "float32", "B")
    r = te.reduce_axis(k, "k")
    C = te.compute((2, m, n), lambda b, i, j: te.sum(A[b, i, r] * B[r, j], [r]), name="C")
    s = create_schedule(C)
    matmul({}, s, C, resolve("metal"))
    f = optimize(lower(s, "mm", [A, B, s.output]))
    assert check_kernel(f).shared
    a = RNG.standard_normal((2, m, k)).astype(np.float32)
    b = RNG.standard_normal((k, n)).astype(np.float32)
    got = _run_in_shim(f, [a, b, np.zeros((2, m, n), np.float32)])[0][-1]
    np.testing.assert_allclose(got.reshape(2, m, n), a @ b, rtol=1e-4, atol=1e-4)


def test_every_intrinsic_runs_in_the_shim():
    """Every intrinsic (erf by Ember's helper: Metal has none), integer division, powers,
    max/min, casts and the run-time index check, against the interpreter; float64 is refused."""
    inputs, out = _intrinsics("float64")
    s = create_schedule(out)
    default(resolve("metal"))(s, resolve("metal"))
    with pytest.raises(CodegenError, match="float64 is not supported by the metal backend"):
        GPUGenerator("metal").kernel(optimize(lower(s, "intrinsics", inputs + [s.output])))

    inputs, out = _intrinsics("float32")
    s = create_schedule(out)
    default(resolve("metal"))(s, resolve("metal"))
    f = optimize(lower(s, "intrinsics", inputs + [s.output]))
    x = np.linspace(-2, 2, 8).astype(np.float32)
    d = np.linspace(-1, 1, 8).astype(np.float32)
    for n, bad in ((np.array([0, 1, 2, 3, 5, -1, 7, -8], np.int64), False),
                   (np.array([0, 1, 2, 3, 5, -1, 7, 8], np.int64), True)):
        want = run_kernel(f, [x, n, d, np.zeros(8, np.float32)])[-1]
        (*_, got), flag = _run_in_shim(f, [x, n, d, np.zeros(8, np.float32)])
        assert flag == bad
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
    assert "ember_erf(" in GPUGenerator("metal").kernel(f)


_TWO_BUFFERS = ("#include <metal_stdlib>\nusing namespace metal;\n"
                "kernel void k(device const float* a [[buffer(0)]],\n    device float* b [[buffer(1)]],\n"
                "    uint3 ember_group [[threadgroup_position_in_grid]],\n"
                "    uint3 ember_thread [[thread_position_in_threadgroup]]) {\n  BODY\n}\n")


@pytest.mark.parametrize("body,why", [
    ("b[0] = erf(a[0]);", "erf"),                                    # not in Metal's library
    ("double d = a[0]; b[0] = d;", "double"),                        # Metal has no double
    ("b[0] = expf(a[0]);", "expf"),                                  # CUDA's name, not Metal's
    ("b[0] = a[0]", "expected"),                                     # syntax
    ("threadgroup_barrier(mem_flags::mem_local);", "mem_local"),     # OpenCL's word
])
def test_the_checker_refuses_what_metal_refuses(body, why):
    with pytest.raises(ToolchainError, match=why):
        msl_cpp.check(_TWO_BUFFERS.replace("BODY", body))


def test_the_checker_wants_buffer_indices_in_order():
    with pytest.raises(ToolchainError, match=r"buffer\(1\)"):
        msl_cpp.check(_TWO_BUFFERS.replace("[[buffer(1)]]", "[[buffer(2)]]").replace("BODY", ""))


def test_the_shim_reports_a_barrier_not_every_thread_reaches():
    src = _TWO_BUFFERS.replace("BODY", "if (ember_thread.x == 0) return;\n"
                                       "  threadgroup_barrier(mem_flags::mem_threadgroup);\n  b[ember_thread.x] = a[0];")
    lib = msl_cpp.Library(src)
    a, b = np.ones(1, np.float32), np.zeros(4, np.float32)
    with pytest.raises(EmberRuntimeError, match="disagree on a barrier"):
        lib.launch("k", [a.ctypes.data, b.ctypes.data], [1, 1, 1], [4, 1, 1])
    good = msl_cpp.Library(_TWO_BUFFERS.replace("BODY", "threadgroup float t[4];\n  t[ember_thread.x] = a[0] + "
                                                "ember_thread.x;\n  threadgroup_barrier(mem_flags::mem_threadgroup);\n"
                                                "  b[ember_group.x * 4 + ember_thread.x] = t[3 - ember_thread.x];"))
    a, b = np.ones(1, np.float32), np.zeros(8, np.float32)
    good.launch("k", [a.ctypes.data, b.ctypes.data], [2, 1, 1], [4, 1, 1])
    np.testing.assert_array_equal(b, [4, 3, 2, 1, 4, 3, 2, 1])


def test_a_kernel_of_more_than_31_buffers_is_refused(tmp_path):
    """Metal's buffer argument table has 31 entries: a fused group with more inputs is a
    CodegenError, not a kernel Metal would refuse; 30 inputs and the output fit."""
    for n, fits in ((30, True), (31, False)):
        names = [f"x{i}" for i in range(n)]
        node = helper.make_node("Concat", names, ["y"], name="cat", axis=0)
        g = helper.make_graph([node], "cat", [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, 2]) for x in names],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [n, 2])])
        path = _onnx(tmp_path, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), f"cat{n}")
        if fits:
            ember.compile(path, target="metal").save(tmp_path / "cat")
            feeds = {x: np.full((1, 2), i, np.float32) for i, x in enumerate(names)}
            np.testing.assert_array_equal(msl_cpp.run_bundle(tmp_path / "cat", feeds)["y"],
                                          np.repeat(np.arange(n, dtype=np.float32), 2).reshape(n, 2))
        else:
            with pytest.raises(CodegenError, match="32 buffers; a metal kernel takes 31 at most"):
                ember.compile(path, target="metal")


# ---- models: the bundle a Metal host program runs, run here by the shim -------------------------

def _onnx(tmp_path, model, name):
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, path)
    return path


def _ort(path, feeds):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path)).run(None, feeds)


def test_small_cnn_bundle(tmp_path):
    """``ember compile --target metal`` writes the bundle (source, launch plan, constants); run
    by the shim as its plan says, it matches onnxruntime."""
    from ember.cli import main

    path = _onnx(tmp_path, small_cnn(), "cnn")
    out = tmp_path / "cnn_metal"
    assert main(["compile", str(path), "--target", "metal", "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["constants.bin", "launch.json", "model.metal"]
    plan = json.loads((out / "launch.json").read_text())
    source = (out / "model.metal").read_text()
    assert [k["kernel"] for k in plan["kernels"]] == msl_cpp.check(source)
    assert len(plan["kernels"]) >= 5 and plan["compile_options"] == {"fastMathEnabled": False}
    conv = plan["kernels"][0]
    assert conv["threads"] == [16, 8, 1] and {"input": 0} in conv["buffers"]
    assert all(b.get("arena", 0) % 256 == 0 and b.get("constants", 0) % 256 == 0
               for k in plan["kernels"] for b in k["buffers"])
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32)
    got = msl_cpp.run_bundle(out, {"x": x})
    for (name, g), r in zip(got.items(), _ort(path, {"x": x})):
        assert np.abs(g - r).max() <= 1e-5 * np.abs(r).max(), name
    # Ember does not run it; saving again replaces the bundle; a damaged one is refused
    m = ember.compile(path, target="metal")
    with pytest.raises(EmberRuntimeError, match="Apple GPU"):
        m.run({"x": x})
    m.save(out)
    (out / "constants.bin").write_bytes(b"\0" + (out / "constants.bin").read_bytes()[1:])
    with pytest.raises(ArtifactError, match="damaged"):
        msl_cpp.run_bundle(out, {"x": x})
    (tmp_path / "file").write_text("not a bundle")
    with pytest.raises(ArtifactError, match="not a Metal bundle"):
        m.save(tmp_path / "file")
    assert (tmp_path / "file").read_text() == "not a bundle"


def test_gather_and_topk_bundles(tmp_path):
    """Integer kernels (TopK's counting reductions on int64) and the index-check flag."""
    table = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "table")
    nodes = [helper.make_node("Gather", ["table", "ids"], ["y"], name="lookup", axis=0),
             helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk", axis=1)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [5]),
                                       helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 10])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [5, 3]),
                           helper.make_tensor_value_info("v", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("i", TensorProto.INT64, None)],
                          [table, numpy_helper.from_array(np.array([3], np.int64), "k")])
    path = _onnx(tmp_path, helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), "gt")
    ember.compile(path, target="metal").save(tmp_path / "b")
    feeds = {"ids": np.array([0, 3, -1, 2, -4], np.int64),
             "x": np.random.default_rng(5).standard_normal((3, 10)).astype(np.float32)}
    got = msl_cpp.run_bundle(tmp_path / "b", feeds)
    for a, b in zip(got.values(), _ort(path, feeds)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(IndexOutOfRangeError):
        msl_cpp.run_bundle(tmp_path / "b", {**feeds, "ids": np.array([0, 4, 1, 1, 1], np.int64)})
    with pytest.raises(ember.errors.InputError, match="'x'"):
        msl_cpp.run_bundle(tmp_path / "b", {"ids": feeds["ids"]})


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v2", "bert_base"])
def test_shared_models_generate_metal(name, tmp_path):
    """Metal for every kernel of the shared models, checked by the C++ shim."""
    path, inputs, _ = _model(name)
    m = ember.compile(path, target="metal", shapes={k: v.shape for k, v in inputs.items()})
    plan = json.loads((m.save(tmp_path / name) / "launch.json").read_text())
    assert len(plan["kernels"]) == m.metadata["kernels"] > 50
    assert msl_cpp.check(m.source) == [k["kernel"] for k in plan["kernels"]]


@pytest.mark.slow
@pytest.mark.parametrize("name,knobs", [
    ("mobilenet_v2", None), ("resnet50", {"gpu.tiles": 0}),
    pytest.param("bert_base", {"gpu.tiles": 0}, marks=pytest.mark.skipif(
        not os.environ.get("EMBER_TEST_LARGE"), reason="about 2 minutes in the shim; EMBER_TEST_LARGE=1 runs it"))])
def test_shared_models_run_in_the_shim(name, knobs, tmp_path):
    """The shared models' Metal bundles run by the shim against onnxruntime's outputs: MobileNetV2
    as compiled (about 35 s a run here), ResNet-50 and BERT-base without the shared-memory tiles
    (each barrier costs a fiber switch per thread in the shim: 15 s and 2 minutes a run)."""
    path, inputs, want = _model(name)
    m = ember.compile(path, target="metal", shapes={k: v.shape for k, v in inputs.items()}, knobs=knobs)
    got = msl_cpp.run_bundle(m.save(tmp_path / name), inputs)
    for key in want:
        assert np.abs(got[key] - want[key]).max() <= 1e-3 * np.abs(want[key]).max(), key

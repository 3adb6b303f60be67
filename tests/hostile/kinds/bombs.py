"""Kind ``bombs``: small models that ask for absurd resources: tensors of 2^40 elements made by
Expand, Tile, ConstantOfShape, Resize, Pad, OneHot, Range or MatMul (from inputs, and from
constants that constant folding would compute at compile time), a Loop that doubles its carried
tensor, a 100,000-node chain, deeply nested If subgraphs, initializers that declare far more
data than they hold, a huge symbol bound, and a PNG decompression bomb through ImageDecoder.
Each must be refused with an EmberError (or, where marked, run correctly) within the time and
memory limits: a MemoryError, a kill or a hang fails."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto as T
from onnx import helper as h

from .. import images
from .. import models as M
from ..case import EITHER, REFUSE, Case, Ran
from ..prepare import dyn_model

G = 1 << 20     # 2^20: two of these make 2^40


def i64(*v):
    return np.array(v, np.int64)


def one_node(op, inputs, inits, out_t=T.FLOAT, graph_inputs=(), **attrs):
    return M.model([h.make_node(op, inputs, ["y"], name=op.lower(), **attrs)], list(graph_inputs),
                   [M.vi("y", out_t)], inits)


def expand():
    return one_node("Expand", ["v", "s"], [M.const("v", np.float32(1)), M.const("s", i64(G, G))])


def expand_input():
    return one_node("Expand", ["x", "s"], [M.const("s", i64(G, G))], graph_inputs=[M.vi("x", shape=[1, 1])])


def tile():
    return one_node("Tile", ["x", "r"], [M.const("r", i64(G, G))], graph_inputs=[M.vi("x", shape=[1, 1])])


def constant_of_shape(dims):
    return one_node("ConstantOfShape", ["s"], [M.const("s", i64(*dims))])


def resize(sizes=None, scales=None, const_input=False):
    inits = [M.const("roi", np.zeros(0, np.float32))]
    names = ["x", "roi"]
    if sizes is not None:
        names += ["", "sizes"]
        inits.append(M.const("sizes", i64(*sizes)))
    else:
        names += ["scales"]
        inits.append(M.const("scales", np.array(scales, np.float32)))
    graph_inputs = [M.vi("x", shape=[1, 1, 2, 2])]
    if const_input:
        inits.append(M.const("x", np.ones((1, 1, 2, 2), np.float32)))
        graph_inputs = []
    return one_node("Resize", names, inits, graph_inputs=graph_inputs, mode="nearest")


def matmul_40gb(const_operands=False):
    n = 100_000
    if const_operands:   # 400 KB of weights whose product is 40 GB: constant folding's problem
        return one_node("MatMul", ["a", "b"], [M.const("a", np.ones((n, 1), np.float32)),
                                               M.const("b", np.ones((1, n), np.float32))])
    return one_node("MatMul", ["a", "b"], [], graph_inputs=[M.vi("a", shape=[n, 1]), M.vi("b", shape=[1, n])])


def pad_huge():
    return one_node("Pad", ["x", "p"], [M.const("p", i64(0, 1 << 30, 0, 1 << 30))], graph_inputs=[M.vi("x", shape=[1, 4])])


def onehot():
    return one_node("OneHot", ["i", "d", "v"], [M.const("d", i64(1 << 40)), M.const("v", np.array([0, 1], np.float32))],
                    graph_inputs=[M.vi("i", T.INT64, [3])])


def range_huge():
    return one_node("Range", ["a", "b", "c"], [M.const("a", np.int64(0)), M.const("b", np.int64(10 ** 12)),
                                               M.const("c", np.int64(1))], out_t=T.INT64)


def conv_transpose_huge():
    return one_node("ConvTranspose", ["x", "w"], [M.const("w", np.ones((1, 1, 1, 1), np.float32))],
                    graph_inputs=[M.vi("x", shape=[1, 1, 2, 2])], strides=[200_000, 200_000])


def concat_doubling(n=40):
    nodes, prev = [], "x"
    for i in range(n):
        out = "y" if i == n - 1 else f"d{i}"
        nodes.append(h.make_node("Concat", [prev, prev], [out], name=f"double{i}", axis=0))
        prev = out
    return M.model(nodes, [M.vi("x", shape=[1])], [M.vi("y")])


def loop_doubling(trip):
    body = M.branch("body", [h.make_node("Identity", ["cond_in"], ["cond_out"], name="keep"),
                             h.make_node("Concat", ["v_in", "v_in"], ["v_out"], name="double", axis=0)],
                    [M.vi("i", T.INT64, []), M.vi("cond_in", T.BOOL, []), M.vi("v_in", shape=None)],
                    [M.vi("cond_out", T.BOOL, []), M.vi("v_out", shape=None)])
    return M.model([h.make_node("Loop", ["trip", "", "x"], ["y"], name="loop", body=body)],
                   [M.vi("x", shape=[1])], [M.vi("y")], [M.const("trip", np.array(trip, np.int64))])


def chain(n):
    nodes = [h.make_node("Relu" if i % 2 else "Neg", [f"v{i}" if i else "x"], ["y" if i == n - 1 else f"v{i + 1}"],
                         name=f"n{i}") for i in range(n)]
    return M.model(nodes, [M.vi("x", shape=[2, 3])], [M.vi("y", shape=[2, 3])])


def nested_if(depth):
    """``depth`` Ifs, each the then-branch of the one outside it, on a constant condition;
    the innermost adds 1 to x."""
    inner = M.branch("b0", [h.make_node("Add", ["x", "one"], ["t0"], name="add")], [], [M.vi("t0", shape=[2, 3])])
    for d in range(1, depth):
        other = M.branch(f"e{d}", [h.make_node("Identity", ["x"], [f"e{d}"], name=f"id{d}")], [], [M.vi(f"e{d}", shape=[2, 3])])
        inner = M.branch(f"b{d}", [h.make_node("If", ["c"], [f"t{d}"], name=f"if{d}", then_branch=inner, else_branch=other)],
                         [], [M.vi(f"t{d}", shape=[2, 3])])
    return M.model(list(inner.node), [M.vi("x", shape=[2, 3])], [M.vi(inner.output[0].name, shape=[2, 3])],
                   [M.const("c", np.array(True)), M.const("one", np.float32(1))])


def _ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    out, n = bytearray([(field << 3) | 2]), len(payload)
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out) + payload


def nested_if_bytes(depth: int) -> bytes:
    """The model of :func:`nested_if`, serialized by hand: protobuf's own encoder refuses to
    nest messages this deep, but a file can."""
    graph = M.branch("b0", [h.make_node("Add", ["x", "one"], ["t0"], name="add")], [],
                     [M.vi("t0", shape=[2, 3])]).SerializeToString()
    node = b""
    for d in range(1, depth):
        other = M.branch(f"e{d}", [h.make_node("Identity", ["x"], [f"e{d}"], name=f"id{d}")], [],
                         [M.vi(f"e{d}", shape=[2, 3])])
        node = h.make_node("If", ["c"], [f"t{d}"], name=f"if{d}", else_branch=other).SerializeToString()
        then_attr = h.make_attribute("then_branch", M.branch("x", [], [], []))
        then_attr.ClearField("g")
        node += _ld(5, then_attr.SerializeToString() + _ld(6, graph))   # NodeProto.attribute, AttributeProto.g
        shell = h.make_graph([], f"b{d}", [], [M.vi(f"t{d}", shape=[2, 3])]).SerializeToString()
        graph = shell + _ld(1, node)                                     # GraphProto.node
    top = M.model([], [M.vi("x", shape=[2, 3])], [M.vi(f"t{depth - 1}", shape=[2, 3])],
                  [M.const("c", np.array(True)), M.const("one", np.float32(1))])
    return top.SerializeToString() + _ld(7, _ld(1, node))                # ModelProto.graph merges


def declared_huge(dims):
    t = T()
    t.name, t.data_type = "c", T.FLOAT
    t.dims.extend(dims)
    t.raw_data = bytes(16)
    return M.model([h.make_node("Add", ["x", "c"], ["y"], name="add")], [M.vi("x", shape=[4])], [M.vi("y")], [t])


def image_const(data: bytes):
    """ImageDecoder of a constant encoded image (decoded at compile time or at run time)."""
    return M.model([h.make_node("ImageDecoder", ["b"], ["y"], name="decode", pixel_format="RGB")], [],
                   [M.vi("y", T.UINT8)], [M.const("b", np.frombuffer(data, np.uint8))], opset=20, ir=9)


def _model_case(slug, expect, make, feeds=None, expected=None, timeout=30.0, **kw):
    setup, act, ort = M.compile_case(make, feeds, expected, **kw)
    return Case(f"bombs/{slug}", expect, act, setup, timeout=timeout, ort=ort)


def _image_input_case(slug, make_bytes, timeout=30.0):
    from ..prepare import prepared, prepared_onnx

    def setup(ctx):
        prepared(ctx, "image.ember")
        return np.frombuffer(make_bytes(), np.uint8)

    def act(ctx, data):
        import ember

        m = ember.load(prepared(ctx, "image.ember"))
        return Ran(dict(m.run({"b": data})), expected={})

    def ort(ctx, data):
        return M.ort_run(prepared_onnx(ctx, "image.ember"), {"b": data}, {})

    return Case(f"bombs/{slug}", REFUSE, act, setup, timeout=timeout, ort=ort)


def _dyn_ref():
    r = M.rng(4)
    x, y = (r.standard_normal((2, 4)).astype(np.float32) for _ in range(2))
    w = np.asarray(M.numpy_helper.to_array(dyn_model().graph.initializer[0]))
    return {"x": x, "y": y}, {"z": (x + y) @ w}


def cases():
    n = 100_000
    tiny = lambda: {"a": np.ones((n, 1), np.float32), "b": np.ones((1, n), np.float32)}
    yield _model_case("expand-2e40-constant", REFUSE, expand)
    yield _model_case("expand-2e40-input", REFUSE, expand_input)
    yield _model_case("tile-2e40", REFUSE, tile)
    yield _model_case("constant-of-shape-2e40", REFUSE, lambda: constant_of_shape((G, G)))
    yield _model_case("constant-of-shape-2e64", REFUSE, lambda: constant_of_shape((1 << 32, 1 << 32)))
    yield _model_case("constant-of-shape-2e62x2", REFUSE, lambda: constant_of_shape((1 << 62, 2)))
    yield _model_case("resize-sizes-1.6e6", REFUSE, lambda: resize(sizes=(1, 1, 1_600_000, 1_600_000)))
    yield _model_case("resize-scales-8e5", REFUSE, lambda: resize(scales=(1, 1, 800_000, 800_000)))
    yield _model_case("resize-constant-input-1.6e6", REFUSE, lambda: resize(sizes=(1, 1, 1_600_000, 1_600_000), const_input=True))
    yield _model_case("matmul-40gb-output", REFUSE, matmul_40gb, tiny, {})
    yield _model_case("matmul-40gb-constant-folded", REFUSE, lambda: matmul_40gb(True))
    yield _model_case("pad-2e31", REFUSE, pad_huge)
    yield _model_case("onehot-depth-2e40", REFUSE, onehot)
    yield _model_case("range-1e12", REFUSE, range_huge, timeout=60)
    yield _model_case("conv-transpose-stride-2e5", REFUSE, conv_transpose_huge)
    yield _model_case("concat-doubling-40", REFUSE, concat_doubling)
    yield _model_case("loop-doubling-40", REFUSE, lambda: loop_doubling(40))
    yield _model_case("loop-doubling-64", REFUSE, lambda: loop_doubling(64))
    yield _model_case("loop-trip-2e40", REFUSE, lambda: M.loop_model(trip=1 << 40))
    yield _model_case("chain-100000", EITHER, lambda: chain(n), timeout=60)
    yield _model_case("nested-if-30", EITHER, lambda: nested_if(30))
    yield _model_case("nested-if-30-by-hand", EITHER, lambda: nested_if_bytes(30))
    yield _model_case("nested-if-2000", EITHER, lambda: nested_if_bytes(2000))
    yield _model_case("initializer-declares-2e40", REFUSE, lambda: declared_huge([1 << 40]))
    yield _model_case("initializer-declares-2e124", REFUSE, lambda: declared_huge([1 << 62, 1 << 62]))
    yield _model_case("symbol-bound-2e40", EITHER, dyn_model, *_dyn_ref(), bounds={"n": 1 << 40})
    # refusing a decompression bomb may take a decompression's time: 9-18 s on a loaded 2-core machine
    yield _model_case("image-constant-png-bomb", REFUSE, lambda: image_const(images.png_bomb()), timeout=60)
    yield _image_input_case("image-input-png-bomb", images.png_bomb, timeout=60)
    yield _image_input_case("image-input-png-declares-2e31-square",
                            lambda: images.png_from((1 << 31) - 1, (1 << 31) - 1, 2, __import__("zlib").compress(bytes(64))))

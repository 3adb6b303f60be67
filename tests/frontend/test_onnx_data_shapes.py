"""ONNX ops whose output shape the data decides, and operands taken at run time: each model is
compiled once with the operand as a graph input, then run with several values, by the reference
interpreter and by the artifact, against onnxruntime (``bind_dims``; ``driver/data_dims.py``)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto as TP
from onnx import helper

import ember
from ember.errors import DataShapeError, GraphError, InputError
from ember.frontend import from_onnx
from ember.graph.interpreter import run_graph
from ember.graph.types import TensorType

ort = pytest.importorskip("onnxruntime")

RNG = np.random.default_rng(7)


def model(nodes, inputs, outputs, opset=17):
    g = helper.make_graph(nodes, "data_shapes", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def vi(name, dims, dtype=TP.FLOAT):
    return helper.make_tensor_value_info(name, dtype, dims)


def check(m, feeds_list, rtol=1e-5, atol=1e-6):
    """One compile; every feed through the graph (reference interpreter) and the artifact, each
    against onnxruntime."""
    g = from_onnx(m)
    mod = ember.compile(m, cflags=("-O1",))
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [i.name for i in m.graph.input]
    for feeds in feeds_list:
        want = sess.run(None, feeds)
        ref = run_graph(g, [feeds[n] for n in names])
        got = mod.run(feeds)
        for w, r, o in zip(want, ref, got.values()):
            assert r.shape == w.shape and o.shape == w.shape, (feeds, w.shape, r.shape, o.shape)
            assert r.dtype == w.dtype and o.dtype == w.dtype
            np.testing.assert_allclose(r, w, rtol=rtol, atol=atol)
            np.testing.assert_allclose(o, w, rtol=rtol, atol=atol)
    return mod


# ---- NonZero -------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(7,), (3, 4), (2, 3, 5)])
def test_nonzero(shape):
    m = model([helper.make_node("NonZero", ["x"], ["y"])], [vi("x", list(shape))], [vi("y", None, TP.INT64)])
    feeds = []
    for p in (0.0, 0.2, 0.6, 1.0):
        x = (RNG.random(shape) < p) * RNG.uniform(1, 2, shape)
        feeds.append({"x": x.astype(np.float32)})
    mod = check(m, feeds)
    assert any(s for s in mod.symbols)          # one artifact, the count bound at run time


def test_nonzero_feeds_later_ops():
    # the count flows on: NonZero -> Transpose -> Gather of the values at those positions
    m = model([helper.make_node("NonZero", ["x"], ["nz"]),
               helper.make_node("Transpose", ["nz"], ["t"], perm=[1, 0]),
               helper.make_node("GatherND", ["x", "t"], ["v"]),
               helper.make_node("Mul", ["v", "v"], ["y"])],
              [vi("x", [4, 5])], [vi("y", None)])
    check(m, [{"x": (RNG.standard_normal((4, 5)) * (RNG.random((4, 5)) < p)).astype(np.float32)}
              for p in (0.1, 0.5, 0.9)])


def test_nonzero_bool_and_int():
    for dt, tp in ((np.bool_, TP.BOOL), (np.int32, TP.INT32)):
        m = model([helper.make_node("NonZero", ["x"], ["y"])], [vi("x", [6], tp)], [vi("y", None, TP.INT64)])
        check(m, [{"x": (RNG.integers(0, 3, 6) * (RNG.random(6) < p)).astype(dt)} for p in (0.0, 0.5, 1.0)])


def test_nonzero_constant_stays_static():
    x = np.array([[0, 1], [2, 0]], np.float32)
    c = helper.make_node("Constant", [], ["x"], value=onnx.numpy_helper.from_array(x))
    m = model([c, helper.make_node("NonZero", ["x"], ["y"])], [], [vi("y", None, TP.INT64)])
    g = from_onnx(m)
    assert not any(n.op == "bind_dims" for n in g.nodes)
    assert g.outputs[0].type.is_static


# ---- the mechanism ---------------------------------------------------------------------------------

def test_bind_dims_errors_and_folding():
    from ember.graph.builder import GraphBuilder
    from ember.symbolic import symbol

    b = GraphBuilder("g")
    v = b.input("v", TensorType((2,), "int64"))
    bound = b.op("bind_dims", [v], symbols=("a", "b"), limits=(5, -1))
    out = b.op("arange", [b.op("reshape", [b.op("slice", [bound], starts=(0,), ends=(1,), steps=(1,))], shape=())],
               length=symbol("a") * symbol("b"), dtype="int64")
    g = b.finish([out])
    assert [int(x) for x in run_graph(g, [np.array([2, 3])])[0]] == list(range(2, 8))
    with pytest.raises(DataShapeError, match="above its limit 5"):
        run_graph(g, [np.array([6, 1])])
    with pytest.raises(DataShapeError, match="negative"):
        run_graph(g, [np.array([1, -1])])
    mod = ember.compile(g, cflags=("-O1",))
    assert mod(np.array([2, 3])).tolist() == list(range(2, 8))
    assert mod(np.array([0, 3])).tolist() == []
    with pytest.raises(DataShapeError, match="above its limit 5"):
        mod(np.array([6, 1]))
    with pytest.raises(DataShapeError, match="negative"):
        mod(np.array([1, -1]))
    assert mod(np.array([4, 1])).tolist() == [4, 5, 6, 7]       # still good after failures

    # a use that does not depend on the binding is malformed
    b = GraphBuilder("bad")
    v = b.input("v", TensorType((1,), "int64"))
    b.op("bind_dims", [v], symbols=("n",))
    free = b.op("arange", [], length=symbol("n"), dtype="int64")
    with pytest.raises(GraphError, match="does not depend"):
        from ember.graph.verify import verify
        verify(b.finish([free]))


def test_bind_dims_of_constant_folds_to_static():
    from ember.graph.builder import GraphBuilder
    from ember.passes import optimize
    from ember.symbolic import symbol

    b = GraphBuilder("g")
    x = b.input("x", TensorType((6,), "float32"))
    shape = b.const(np.array([2, 3]))
    bound = b.op("bind_dims", [shape], symbols=("r", "c"), numel=6)
    first = b.op("reshape", [b.op("slice", [bound], starts=(0,), ends=(1,), steps=(1,))], shape=())
    seq = b.op("arange", [first], length=symbol("r") * symbol("c"), dtype="int64")
    flat = b.op("reshape_data", [x, bound], shape=(symbol("r") * symbol("c"),))
    y = b.op("reshape_data", [b.op("add", [b.op("cast", [seq], to="float32"), flat]), bound],
             shape=(symbol("r"), symbol("c")))
    g0 = b.finish([y])
    x0 = np.arange(6, dtype=np.float32)
    want = (x0 + np.arange(2, 8)).reshape(2, 3)
    np.testing.assert_array_equal(run_graph(g0, [x0])[0], want)
    g = optimize(g0, 2)
    assert all(n.op != "bind_dims" for n in g.nodes) and g.outputs[0].type.shape == (2, 3)
    np.testing.assert_array_equal(run_graph(g, [x0])[0], want)


def test_data_output_through_the_c_api_after_load(tmp_path):
    m = model([helper.make_node("NonZero", ["x"], ["y"])], [vi("x", [5])], [vi("y", None, TP.INT64)])
    path = tmp_path / "nz.so"
    ember.compile(m, cflags=("-O1",)).save(path)
    mod = ember.load(path)
    x = np.array([0, 3, 0, 1, 2], np.float32)
    assert mod(x).tolist() == [[1, 3, 4]]
    assert mod.output_shapes([(5,)]) == [(1, -1)]


# ---- Reshape with a run-time shape -------------------------------------------------------------------

def test_reshape_runtime_shape():
    m = model([helper.make_node("Reshape", ["x", "s"], ["y"]), helper.make_node("Relu", ["y"], ["z"])],
              [vi("x", [2, 3, 4]), vi("s", [3], TP.INT64)], [vi("z", None)])
    x = RNG.standard_normal((2, 3, 4)).astype(np.float32)
    shapes = [[4, 3, 2], [0, 12, 1], [-1, 2, 2], [0, 0, -1], [24, 1, 1], [1, -1, 6]]
    mod = check(m, [{"x": x, "s": np.array(s, np.int64)} for s in shapes])
    # a shape of the wrong element count, two holes or a bad 0 is an error of the run
    for bad in ([5, 5, 1], [2, 2, 2], [-1, -1, 24], [1, 2, -3]):
        with pytest.raises(DataShapeError):
            mod.run({"x": x, "s": np.array(bad, np.int64)})
        with pytest.raises(DataShapeError):
            run_graph(from_onnx(m), [x, np.array(bad, np.int64)])
    assert mod.run({"x": x, "s": np.array([3, 8, 1], np.int64)})["z"].shape == (3, 8, 1)


def test_reshape_runtime_shape_past_rank_and_allowzero():
    m = model([helper.make_node("Reshape", ["x", "s"], ["y"])], [vi("x", [6]), vi("s", [2], TP.INT64)],
              [vi("y", None)])
    x = np.arange(6, dtype=np.float32)
    mod = check(m, [{"x": x, "s": np.array(s, np.int64)} for s in ([2, 3], [0, -1], [6, 1])])
    with pytest.raises(DataShapeError):
        mod.run({"x": x, "s": np.array([1, 0], np.int64)})      # 0 past the input's rank
    m = model([helper.make_node("Reshape", ["x", "s"], ["y"], allowzero=1)], [vi("x", [0, 3]), vi("s", [2], TP.INT64)],
              [vi("y", None)], opset=14)
    check(m, [{"x": np.zeros((0, 3), np.float32), "s": np.array(s, np.int64)} for s in ([3, 0], [0, 7])])


# ---- ConstantOfShape, Expand, Tile, Range with run-time operands ------------------------------------

def test_constant_of_shape_runtime():
    val = onnx.numpy_helper.from_array(np.array([2.5], np.float32))
    m = model([helper.make_node("ConstantOfShape", ["s"], ["y"], value=val)], [vi("s", [2], TP.INT64)],
              [vi("y", None)])
    check(m, [{"s": np.array(s, np.int64)} for s in ([2, 3], [0, 4], [5, 1], [1, 1])])
    m = model([helper.make_node("ConstantOfShape", ["s"], ["y"])], [vi("s", [3], TP.INT64)], [vi("y", None)])
    mod = check(m, [{"s": np.array(s, np.int64)} for s in ([2, 3, 1], [1, 1, 7])])
    with pytest.raises(DataShapeError):
        mod.run({"s": np.array([2, -1, 3], np.int64)})


def test_expand_runtime():
    m = model([helper.make_node("Expand", ["x", "s"], ["y"])], [vi("x", [3, 1]), vi("s", [3], TP.INT64)],
              [vi("y", None)])
    x = RNG.standard_normal((3, 1)).astype(np.float32)
    mod = check(m, [{"x": x, "s": np.array(s, np.int64)} for s in ([2, 3, 4], [1, 1, 1], [1, 3, 5], [4, 1, 2])])
    with pytest.raises(DataShapeError):
        mod.run({"x": x, "s": np.array([2, 4, 4], np.int64)})       # 4 against x's 3
    m = model([helper.make_node("Expand", ["x", "s"], ["y"])], [vi("x", [2, 3]), vi("s", [2], TP.INT64)],
              [vi("y", None)])
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    mod = check(m, [{"x": x, "s": np.array(s, np.int64)} for s in ([1, 1], [2, 3], [1, 3])])
    with pytest.raises(DataShapeError):
        mod.run({"x": x, "s": np.array([3, 3], np.int64)})


def test_tile_runtime():
    m = model([helper.make_node("Tile", ["x", "r"], ["y"])], [vi("x", [2, 3]), vi("r", [2], TP.INT64)],
              [vi("y", None)])
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    check(m, [{"x": x, "r": np.array(r, np.int64)} for r in ([1, 1], [2, 3], [0, 2], [3, 1])])


@pytest.mark.parametrize("dtype,tp", [(np.int64, TP.INT64), (np.int32, TP.INT32), (np.float32, TP.FLOAT)])
def test_range_runtime(dtype, tp):
    m = model([helper.make_node("Range", ["a", "b", "d"], ["y"])], [vi("a", [], tp), vi("b", [], tp), vi("d", [], tp)],
              [vi("y", None, tp)])
    cases = [(0, 10, 3), (10, 0, -2), (5, 5, 1), (1, 2, 5), (-3, 7, 1)]
    if dtype == np.float32:
        cases += [(0.5, 3.2, 0.25)]
    mod = check(m, [{"a": np.array(a, dtype), "b": np.array(b, dtype), "d": np.array(d, dtype)} for a, b, d in cases])
    with pytest.raises(DataShapeError):
        mod.run({"a": np.array(0, dtype), "b": np.array(3, dtype), "d": np.array(0, dtype)})


# ---- Slice with run-time starts, ends and steps -----------------------------------------------------

def test_slice_runtime():
    m = model([helper.make_node("Slice", ["x", "s", "e", "a", "p"], ["y"])],
              [vi("x", [5, 6]), vi("s", [2], TP.INT64), vi("e", [2], TP.INT64), vi("p", [2], TP.INT64)],
              [vi("y", None)])
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array([0, 1], np.int64), "a"))
    x = RNG.standard_normal((5, 6)).astype(np.float32)
    big = np.iinfo(np.int64).max
    cases = [([0, 0], [5, 6], [1, 1]), ([1, -1], [4, -7], [2, -1]), ([-2, 2], [big, 3], [1, 1]),
             ([4, 5], [-big, -big], [-1, -2]), ([3, 0], [1, 6], [1, big]), ([0, 9], [5, 12], [1, 1])]
    mod = check(m, [{"x": x, "s": np.array(s, np.int64), "e": np.array(e, np.int64), "p": np.array(p, np.int64)}
                    for s, e, p in cases])
    with pytest.raises(DataShapeError):
        mod.run({"x": x, "s": np.array([0, 0], np.int64), "e": np.array([5, 6], np.int64),
                 "p": np.array([0, 1], np.int64)})


def test_slice_runtime_starts_only_and_open_axis():
    # constant ends and steps, run-time starts; and a constant slice over an open dimension
    # (2147483647 on a symbolic axis): a symbolic size, not a run-time value, so the start is
    # taken unclamped and the graph checks that it lies within the axis (Graph.checks)
    m = model([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])], [vi("x", [4, 3]), vi("s", [1], TP.INT64)],
              [vi("y", None)])
    m.graph.initializer.extend([onnx.numpy_helper.from_array(np.array([3], np.int64), "e"),
                                onnx.numpy_helper.from_array(np.array([0], np.int64), "a")])
    x = RNG.standard_normal((4, 3)).astype(np.float32)
    check(m, [{"x": x, "s": np.array([s], np.int64)} for s in (0, 2, -1, -9, 7)])
    m = model([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])], [vi("x", ["n", 3])], [vi("y", None)])
    m.graph.initializer.extend([onnx.numpy_helper.from_array(np.array([5], np.int64), "s"),
                                onnx.numpy_helper.from_array(np.array([2147483647], np.int64), "e"),
                                onnx.numpy_helper.from_array(np.array([0], np.int64), "a")])
    mod = check(m, [{"x": RNG.standard_normal((n, 3)).astype(np.float32)} for n in (5, 9)])
    with pytest.raises(InputError, match="start 5"):
        mod.run({"x": RNG.standard_normal((2, 3)).astype(np.float32)})


# ---- TopK with a run-time K --------------------------------------------------------------------------

@pytest.mark.parametrize("axis,largest", [(-1, 1), (0, 0)])
def test_topk_runtime_k(axis, largest):
    m = model([helper.make_node("TopK", ["x", "k"], ["v", "i"], axis=axis, largest=largest)],
              [vi("x", [4, 6]), vi("k", [1], TP.INT64)], [vi("v", None), vi("i", None, TP.INT64)])
    x = RNG.permutation(24).reshape(4, 6).astype(np.float32)      # no ties: one right answer
    n = x.shape[axis]
    mod = check(m, [{"x": x, "k": np.array([k], np.int64)} for k in (0, 1, 3, n)])
    for bad in (n + 1, -1):
        with pytest.raises(DataShapeError):
            mod.run({"x": x, "k": np.array([bad], np.int64)})


# ---- OneHot with a run-time depth, Compress with a run-time condition --------------------------------

@pytest.mark.parametrize("axis", [-1, 0])
def test_onehot_runtime_depth(axis):
    m = model([helper.make_node("OneHot", ["i", "d", "v"], ["y"], axis=axis)],
              [vi("i", [2, 3], TP.INT64), vi("d", [], TP.INT64), vi("v", [2])], [vi("y", None)])
    i = np.array([[0, 2, -1], [3, 1, 7]], np.int64)
    v = np.array([-1.0, 4.0], np.float32)
    mod = check(m, [{"i": i, "d": np.array(d, np.int64), "v": v} for d in (1, 4, 8)])
    with pytest.raises(DataShapeError):
        mod.run({"i": i, "d": np.array(-3, np.int64), "v": v})


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_compress_runtime_condition(axis):
    kw = {} if axis is None else {"axis": axis}
    n = 12 if axis is None else (3, 4)[axis]
    m = model([helper.make_node("Compress", ["x", "c"], ["y"], **kw)], [vi("x", [3, 4]), vi("c", [n], TP.BOOL)],
              [vi("y", None)])
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    check(m, [{"x": x, "c": RNG.random(n) < p} for p in (0.0, 0.4, 1.0)])


def test_huge_run_time_shapes_are_refused_before_allocating():
    from ember.errors import RuntimeLimitError

    m = model([helper.make_node("ConstantOfShape", ["s"], ["y"])], [vi("s", [3], TP.INT64)], [vi("y", None)])
    mod = ember.compile(m, cflags=("-O1",))
    for s in ([1 << 20, 1 << 20, 1], [1 << 40, 1 << 40, 1 << 40], [1 << 62, 4, 1]):   # 4 TiB; sizes that overflow
        with pytest.raises(RuntimeLimitError, match="tensor limit"):
            with ember.limits.using({"tensor_bytes": "1G"}):
                mod.run({"s": np.array(s, np.int64)})
    assert mod.run({"s": np.array([2, 2, 1], np.int64)})["y"].shape == (2, 2, 1)
    with pytest.raises(RuntimeLimitError):
        with ember.limits.using({"tensor_bytes": "1G"}):
            run_graph(from_onnx(m), [np.array([1 << 20, 1 << 20, 1], np.int64)])


# ---- Pad with run-time pads ----------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["constant", "edge", "reflect", "wrap"])
def test_pad_runtime(mode):
    m = model([helper.make_node("Pad", ["x", "p", "v"], ["y"], mode=mode)],
              [vi("x", [3, 4]), vi("p", [4], TP.INT64), vi("v", [])], [vi("y", None)], opset=19)
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    cases = [[0, 0, 0, 0], [1, 2, 0, 1], [2, 0, 1, 3], [-1, 1, 0, -2]]
    mod = check(m, [{"x": x, "p": np.array(p, np.int64), "v": np.array(1.5, np.float32)} for p in cases])
    with pytest.raises(DataShapeError):
        mod.run({"x": x, "p": np.array([-2, 0, -2, 0], np.int64), "v": np.array(0, np.float32)})


def test_pad_runtime_axes_and_int():
    m = model([helper.make_node("Pad", ["x", "p", "", "a"], ["y"])], [vi("x", [2, 3, 2], TP.INT32), vi("p", [2], TP.INT64)],
              [vi("y", None, TP.INT32)], opset=19)
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array([-2], np.int64), "a"))
    x = RNG.integers(-5, 5, (2, 3, 2)).astype(np.int32)
    check(m, [{"x": x, "p": np.array(p, np.int64)} for p in ([0, 0], [2, 1], [-1, 3])])


# ---- Split with run-time sizes ---------------------------------------------------------------------

def test_split_runtime_sizes():
    m = model([helper.make_node("Split", ["x", "s"], ["a", "b", "c"], axis=1)],
              [vi("x", [2, 7]), vi("s", [3], TP.INT64)], [vi("a", None), vi("b", None), vi("c", None)])
    x = RNG.standard_normal((2, 7)).astype(np.float32)
    mod = check(m, [{"x": x, "s": np.array(s, np.int64)} for s in ([1, 2, 4], [0, 7, 0], [3, 3, 1])])
    for bad in ([1, 2, 3], [8, -1, 0]):
        with pytest.raises(DataShapeError):
            mod.run({"x": x, "s": np.array(bad, np.int64)})


# ---- Unique computed at run time -----------------------------------------------------------------

@pytest.mark.parametrize("sort", [1, 0])
def test_unique_runtime(sort):
    m = model([helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"], sorted=sort)], [vi("x", [2, 5])],
              [vi("y", None), vi("i", None, TP.INT64), vi("inv", None, TP.INT64), vi("c", None, TP.INT64)], opset=11)
    feeds = [{"x": RNG.integers(0, k, (2, 5)).astype(np.float32)} for k in (1, 3, 6, 100)]
    check(m, feeds)


@pytest.mark.parametrize("sort", [1, 0])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_unique_with_an_axis_runtime(sort, axis):
    # the slices along the axis compared whole; sorted: lexicographically, by their first
    # differing element
    m = model([helper.make_node("Unique", ["x"], ["y", "i", "inv", "c"], sorted=sort, axis=axis)], [vi("x", [4, 3, 2])],
              [vi("y", None), vi("i", None, TP.INT64), vi("inv", None, TP.INT64), vi("c", None, TP.INT64)], opset=11)
    rows = RNG.integers(0, 3, (4, 3, 2)).astype(np.float32)
    feeds = [{"x": rows}, {"x": np.zeros((4, 3, 2), np.float32)}, {"x": RNG.standard_normal((4, 3, 2)).astype(np.float32)},
             {"x": np.concatenate([rows[:2], rows[:2]]) if axis == 0 else np.concatenate([rows[:, :1]] * 3, 1)
              if axis == 1 else np.concatenate([rows[..., :1]] * 2, 2)}]
    check(m, feeds)


def test_what_needs_the_operand_at_compile_time_reports_it():
    # Expand to a run-time shape, then an Add with a static [2, 3]: the data's dimension cannot
    # be matched with 2 while compiling, so the operand is reported as needed at compile time
    from ember.frontend.onnx import OperandNotConstantError

    m = model([helper.make_node("Expand", ["x", "s"], ["e"]), helper.make_node("Add", ["e", "w"], ["y"])],
              [vi("x", [1, 3]), vi("s", [2], TP.INT64), vi("w", [2, 3])], [vi("y", None)])
    with pytest.raises(OperandNotConstantError) as info:
        from_onnx(m)
    assert info.value.inputs == ("s",) and "taken at run time" in str(info.value)


# ---- run-time If / Loop bodies and data dimensions ------------------------------------------------

def _if_model(branch_nodes, inputs, out_type=TP.FLOAT):
    then = helper.make_graph(branch_nodes, "then", [], [helper.make_tensor_value_info("t", out_type, None)])
    other = helper.make_graph([helper.make_node("Cast", ["x"], ["e"], to=out_type)], "else", [],
                              [helper.make_tensor_value_info("e", out_type, None)])
    return model([helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other)],
                 [vi("c", [], TP.BOOL)] + inputs, [vi("y", None, out_type)])


def test_a_run_time_if_whose_body_needs_data_dimensions_is_refused_by_name():
    # a body takes its operands as constants (the artifact binds data dimensions in the model's
    # entry only): a branch reshaping by a run-time shape reports the shape's input as needed at
    # compile time (the ONNX backend specializes on it)
    from ember.frontend.onnx import OperandNotConstantError

    m = _if_model([helper.make_node("Reshape", ["x", "s"], ["t"])], [vi("x", [2, 3]), vi("s", [2], TP.INT64)])
    with pytest.raises(OperandNotConstantError) as info:
        from_onnx(m)
    assert info.value.inputs == ("s",)
    # a NonZero in a branch, or a data dimension that reaches a body from outside: the condition
    nz_in = _if_model([helper.make_node("NonZero", ["x"], ["t"])], [vi("x", [2, 3])], TP.INT64)
    with pytest.raises(OperandNotConstantError) as info:
        from_onnx(nz_in)
    assert info.value.inputs == ("c",) and "data" in str(info.value)
    nz = model([helper.make_node("NonZero", ["x"], ["z"]),
                helper.make_node("If", ["c"], ["y"],
                                 then_branch=helper.make_graph([helper.make_node("Identity", ["z"], ["t"])], "then", [],
                                                               [helper.make_tensor_value_info("t", TP.INT64, None)]),
                                 else_branch=helper.make_graph([helper.make_node("Neg", ["z"], ["e"])], "else", [],
                                                               [helper.make_tensor_value_info("e", TP.INT64, None)]))],
               [vi("c", [], TP.BOOL), vi("x", [2, 3])], [vi("y", None, TP.INT64)])
    with pytest.raises(OperandNotConstantError) as info:
        from_onnx(nz)
    assert info.value.inputs == ("c",)
    # with the condition fixed, the branch is inlined and its data dimensions are the model's
    x = RNG.standard_normal((2, 3)).astype(np.float32)
    m.graph.initializer.append(onnx.numpy_helper.from_array(np.array(True), "c"))
    del m.graph.input[0]
    check(m, [{"x": x, "s": np.array([3, 2], np.int64)}, {"x": x, "s": np.array([6, 1], np.int64)}])

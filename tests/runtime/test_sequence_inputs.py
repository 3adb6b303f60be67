"""Sequence graph inputs whose length and element shapes the run decides: compiled once as the
elements' data one after the other (``x``) and their shapes (``x#shapes``), which ``Module``
packs from a list of arrays; sequence outputs come back as lists.  Checked against onnxruntime
and the reference interpreter over several lengths and element shapes from one compile."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto as TP, helper

import ember
from ember.errors import DataShapeError, IndexOutOfRangeError, InputError, UnsupportedOpError
from ember.frontend import from_onnx
from ember.graph import run_graph


def _seq_type(elem_type, dims):
    return helper.make_sequence_type_proto(helper.make_tensor_type_proto(elem_type, dims))


def _model(nodes, inputs, outputs, name="seq"):
    g = helper.make_graph(nodes, name, inputs, outputs)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def _onnxruntime(model, feeds):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def _same(got, want):
    if isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-6)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-6)


def _flat(items, rank):
    data = np.concatenate([a.reshape(-1) for a in items]) if items else np.zeros((0,), np.float32)
    return data, np.array([a.shape for a in items], np.int64).reshape(len(items), rank)


def insert_model():
    """n = SequenceLength(s); back = SequenceInsert(s, t); front = SequenceInsert(s, t, 0)."""
    zero = helper.make_tensor("zero", TP.INT64, [], [0])
    nodes = [helper.make_node("SequenceLength", ["s"], ["n"]),
             helper.make_node("SequenceInsert", ["s", "t"], ["back"]),
             helper.make_node("SequenceInsert", ["s", "t", "zero"], ["front"]),
             helper.make_node("Identity", ["s"], ["same"])]
    seq = _seq_type(TP.FLOAT, ["a", "b"])
    m = _model(nodes, [helper.make_value_info("s", seq), helper.make_tensor_value_info("t", TP.FLOAT, ["p", "q"])],
               [helper.make_tensor_value_info("n", TP.INT64, []), helper.make_value_info("back", seq),
                helper.make_value_info("front", seq), helper.make_value_info("same", seq)])
    m.graph.initializer.append(zero)
    return m


def test_insert_length_identity_one_compile(tmp_path):
    model = insert_model()
    graph = from_onnx(model)
    assert [v.name for v in graph.inputs] == ["s", "s#shapes", "t"]
    module = ember.compile(model, cache=False, cflags=("-O1",))
    rng = np.random.default_rng(0)
    for shapes in ([], [(2, 3)], [(1, 4), (3, 2), (0, 5)], [(2, 2)] * 5):
        items = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        t = rng.standard_normal((2, 1)).astype(np.float32)
        got = module.run({"s": items, "t": t})
        want = _onnxruntime(model, {"s": items, "t": t})
        assert list(got) == ["n", "back", "front", "same"]
        for g, w in zip(got.values(), want):
            _same(g, w)
        # the reference interpreter on the laid-out form
        data, sh = _flat(items, 2)
        ref = run_graph(graph, {"s": data, "s#shapes": sh, "t": t})
        assert int(ref[0]) == len(items)
        np.testing.assert_array_equal(ref[1], np.concatenate([data, t.reshape(-1)]))
        np.testing.assert_array_equal(ref[3], np.concatenate([t.reshape(-1), data]))
        np.testing.assert_array_equal(ref[4], np.concatenate([[[2, 1]], sh]))
    # the data and shapes given as arrays, checked to agree
    data, sh = _flat([np.ones((2, 2), np.float32)], 2)
    assert module.run({"s": data, "s#shapes": sh, "t": t})["n"] == 1
    with pytest.raises(InputError, match="shapes of the elements"):
        module.run({"s": data, "s#shapes": np.array([[3, 2]]), "t": t})
    with pytest.raises(InputError, match="has rank 1"):
        module.run({"s": [np.ones(3, np.float32)], "t": t})
    path = module.save(tmp_path / "seq.so")
    loaded = ember.load(path)
    _same(loaded.run({"s": [np.ones((1, 2), np.float32)], "t": t})["front"], [t, np.ones((1, 2), np.float32)])


def map_model():
    """y = SequenceMap(x0, x1, c) with body: sum = (a + b) * c; sh = Shape(a); k = Identity(c)."""
    body = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["ab"]), helper.make_node("Mul", ["ab", "c"], ["sum"]),
         helper.make_node("Shape", ["a"], ["sh"]), helper.make_node("Identity", ["c"], ["k"]),
         helper.make_node("Relu", ["c"], ["rc"]), helper.make_node("Sub", ["rc", "a"], ["d"])],
        "body", [helper.make_tensor_value_info(n, TP.FLOAT, None) for n in ("a", "b", "c")],
        [helper.make_tensor_value_info("sum", TP.FLOAT, None), helper.make_tensor_value_info("sh", TP.INT64, None),
         helper.make_tensor_value_info("k", TP.FLOAT, None), helper.make_tensor_value_info("d", TP.FLOAT, None)])
    seq = _seq_type(TP.FLOAT, ["n", "m"])
    node = helper.make_node("SequenceMap", ["x0", "x1", "c"], ["y", "s", "k", "d"], body=body)
    return _model([node], [helper.make_value_info("x0", seq), helper.make_value_info("x1", seq),
                           helper.make_tensor_value_info("c", TP.FLOAT, [])],
                  [helper.make_value_info("y", seq), helper.make_value_info("s", _seq_type(TP.INT64, [2])),
                   helper.make_value_info("k", _seq_type(TP.FLOAT, [])), helper.make_value_info("d", seq)])


def test_sequence_map_one_compile():
    model = map_model()
    module = ember.compile(model, cache=False, cflags=("-O1",))
    graph = from_onnx(model)
    rng = np.random.default_rng(1)
    for shapes in ([(2, 3)], [(1, 4), (3, 2), (0, 5)], [(4, 1)] * 3):
        x0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        x1 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        c = np.array(rng.standard_normal(), np.float32)
        got = module.run({"x0": x0, "x1": x1, "c": c})
        want = _onnxruntime(model, {"x0": x0, "x1": x1, "c": c})
        for g, w in zip(got.values(), want):
            _same(g, w)
        d0, s0 = _flat(x0, 2)
        d1, s1 = _flat(x1, 2)
        ref = run_graph(graph, {"x0": d0, "x0#shapes": s0, "x1": d1, "x1#shapes": s1, "c": c})
        np.testing.assert_allclose(ref[0], np.concatenate([((a + b) * c).reshape(-1) for a, b in zip(x0, x1)]))
    # elements of other shapes, or sequences of other lengths: errors of the run
    with pytest.raises(DataShapeError):
        module.run({"x0": [np.ones((2, 2), np.float32)], "x1": [np.ones((1, 4), np.float32)], "c": c})
    with pytest.raises(DataShapeError):
        module.run({"x0": [np.ones((2, 2), np.float32)], "x1": [np.ones((2, 2), np.float32)] * 2, "c": c})
    d0, s0 = _flat([np.ones((1, 2), np.float32), np.ones((2, 1), np.float32)], 2)
    with pytest.raises(DataShapeError):     # the reference interpreter checks the same
        run_graph(graph, {"x0": d0, "x0#shapes": s0, "x1": d0, "x1#shapes": s0[::-1].copy(), "c": c})


def test_map_with_a_tensor_of_the_elements_shape():
    body = helper.make_graph([helper.make_node("Add", ["a", "t"], ["y"])], "body",
                             [helper.make_tensor_value_info(n, TP.FLOAT, None) for n in ("a", "t")],
                             [helper.make_tensor_value_info("y", TP.FLOAT, None)])
    seq = _seq_type(TP.FLOAT, ["n"])
    model = _model([helper.make_node("SequenceMap", ["x", "t"], ["y"], body=body)],
                   [helper.make_value_info("x", seq), helper.make_tensor_value_info("t", TP.FLOAT, ["n"])],
                   [helper.make_value_info("y", seq)])
    module = ember.compile(model, cache=False, cflags=("-O1",))
    for n, count in ((3, 2), (5, 1), (1, 4)):
        x = [np.arange(n, dtype=np.float32) * k for k in range(count)]
        t = np.full(n, 0.5, np.float32)
        _same(module.run({"x": x, "t": t})["y"], _onnxruntime(model, {"x": x, "t": t})[0])
    with pytest.raises(DataShapeError):      # an element whose shape differs from the tensor's
        module.run({"x": [np.ones(3, np.float32), np.ones(2, np.float32)], "t": np.ones(3, np.float32)})


def test_unsupported_ops_refused_by_name():
    seq = _seq_type(TP.FLOAT, ["n"])
    body = helper.make_graph([helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("Identity", ["s"], ["s_out"])],
                             "body", [helper.make_tensor_value_info("i", TP.INT64, []),
                                      helper.make_tensor_value_info("c", TP.BOOL, []), helper.make_value_info("s", seq)],
                             [helper.make_tensor_value_info("c_out", TP.BOOL, []), helper.make_value_info("s_out", seq)])
    m = _model([helper.make_node("Loop", ["m", "", "x"], ["y"], body=body, name="carry")],
               [helper.make_value_info("x", seq), helper.make_tensor_value_info("m", TP.INT64, [])],
               [helper.make_value_info("y", seq)])
    with pytest.raises(UnsupportedOpError, match="Loop .*sequence whose length the run decides.*'carry'"):
        from_onnx(m)
    m = _model([helper.make_node("ConcatFromSequence", ["x"], ["y"], name="cat", axis=1, new_axis=1)],
               [helper.make_value_info("x", seq)], [helper.make_tensor_value_info("y", TP.FLOAT, None)])
    with pytest.raises(UnsupportedOpError, match="axis 1 of a sequence whose length the run decides.*'cat'"):
        from_onnx(m)
    body = helper.make_graph([helper.make_node("ReduceSum", ["a"], ["y"], keepdims=0)], "body",
                             [helper.make_tensor_value_info("a", TP.FLOAT, None)],
                             [helper.make_tensor_value_info("y", TP.FLOAT, None)])
    m = _model([helper.make_node("SequenceMap", ["x"], ["y"], body=body, name="map")],
               [helper.make_value_info("x", seq)], [helper.make_value_info("y", _seq_type(TP.FLOAT, []))])
    with pytest.raises(UnsupportedOpError, match="ReduceSum.*only elementwise ops"):
        from_onnx(m)
    # pinned, the same model compiles as before: one input per element
    g = from_onnx(m, shapes={"x": [(3,), (2,)]})
    assert [v.name for v in g.inputs] == ["x[0]", "x[1]"]


def test_insert_at_a_run_time_position():
    seq = _seq_type(TP.INT32, ["a", "b"])
    model = _model([helper.make_node("SequenceInsert", ["s", "t", "p"], ["y"])],
                   [helper.make_value_info("s", seq), helper.make_tensor_value_info("t", TP.INT32, ["c", "d"]),
                    helper.make_tensor_value_info("p", TP.INT64, [])], [helper.make_value_info("y", seq)])
    module = ember.compile(model, cache=False, cflags=("-O1",))
    graph = from_onnx(model)
    t = np.arange(6, dtype=np.int32).reshape(2, 3) + 100
    for shapes in ([], [(1, 2)], [(2, 2), (0, 3), (3, 1)]):
        items = [np.arange(int(np.prod(s)), dtype=np.int32).reshape(s) + 10 * k for k, s in enumerate(shapes)]
        for p in range(-len(items), len(items) + 1):
            feeds = {"s": items, "t": t, "p": np.array(p)}
            _same(module.run(feeds)["y"], _onnxruntime(model, feeds)[0])
        data, sh = _flat(items, 2)
        ref = run_graph(graph, {"s": data.astype(np.int32), "s#shapes": sh, "t": t, "p": np.array(len(items))})
        np.testing.assert_array_equal(ref[1][-1], [2, 3])
    for p in (len(items) + 1, -len(items) - 1):
        with pytest.raises(IndexOutOfRangeError, match="the position in the sequence"):
            module.run({"s": items, "t": t, "p": np.array(p)})


def map_loop_model(position="i"):
    """The form of SequenceMap's function body: a loop over SequenceLength(x) carrying empty
    sequences that it extends by Neg(SequenceAt(x, i)) and Shape(SequenceAt(x, i))."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("SequenceAt", ["x", position], ["e"]),
         helper.make_node("Neg", ["e"], ["ne"]), helper.make_node("Shape", ["e"], ["sh"]),
         helper.make_node("SequenceInsert", ["a_in", "ne"], ["a_out"]),
         helper.make_node("SequenceInsert", ["b_in", "sh"], ["b_out"])],
        "body", [helper.make_tensor_value_info("i", TP.INT64, []), helper.make_tensor_value_info("c", TP.BOOL, []),
                 helper.make_value_info("a_in", _seq_type(TP.FLOAT, None)),
                 helper.make_value_info("b_in", _seq_type(TP.INT64, None))],
        [helper.make_tensor_value_info("c_out", TP.BOOL, []), helper.make_value_info("a_out", _seq_type(TP.FLOAT, None)),
         helper.make_value_info("b_out", _seq_type(TP.INT64, None))])
    nodes = [helper.make_node("SequenceLength", ["x"], ["n"]),
             helper.make_node("SequenceEmpty", [], ["a0"], dtype=TP.FLOAT),
             helper.make_node("SequenceEmpty", [], ["b0"], dtype=TP.INT64),
             helper.make_node("Loop", ["m", "", "a0", "b0"], ["a", "b"], body=body, name="map")]
    m = _model(nodes, [helper.make_value_info("x", _seq_type(TP.FLOAT, ["p", "q"])),
                       helper.make_tensor_value_info("m", TP.INT64, [])],
               [helper.make_value_info("a", _seq_type(TP.FLOAT, ["p", "q"])),
                helper.make_value_info("b", _seq_type(TP.INT64, [2]))])
    return m


def test_loop_in_the_form_of_sequence_map():
    model = map_loop_model()
    module = ember.compile(model, cache=False, cflags=("-O1",))
    rng = np.random.default_rng(2)
    for shapes in ([], [(2, 3)], [(1, 4), (3, 2), (0, 5)]):
        x = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        feeds = {"x": x, "m": np.array(len(x))}
        for g, w in zip(module.run(feeds).values(), _onnxruntime(model, feeds)):
            _same(g, w)
    with pytest.raises(DataShapeError):          # a trip count other than the length
        module.run({"x": [np.ones((1, 1), np.float32)], "m": np.array(2)})
    with pytest.raises(UnsupportedOpError, match="another position than the iteration number.*'map'"):
        from_onnx(map_loop_model(position="c"))


def test_optional_sequence_input():
    opt = helper.make_optional_type_proto(_seq_type(TP.INT32, [2]))
    model = _model([helper.make_node("OptionalHasElement", ["o"], ["has"]),
                    helper.make_node("Identity", ["o"], ["same"]),
                    helper.make_node("OptionalGetElement", ["o"], ["s"]),
                    helper.make_node("SequenceLength", ["s"], ["n"])],
                   [helper.make_value_info("o", opt)],
                   [helper.make_tensor_value_info("has", TP.BOOL, []), helper.make_value_info("same", opt),
                    helper.make_tensor_value_info("n", TP.INT64, [])])
    graph = from_onnx(model)
    assert [v.name for v in graph.inputs] == ["o?", "o", "o#shapes"] and set(graph.defaults) == {"o?", "o", "o#shapes"}
    module = ember.compile(model, cache=False, cflags=("-O1",))
    for count in (0, 1, 3):
        items = [np.arange(2, dtype=np.int32) + k for k in range(count)]
        got = module.run({"o": items})
        assert bool(got["has"]) and bool(got["same?"]) and int(got["n"]) == count
        _same(got["same"], items)
    with pytest.raises(IndexOutOfRangeError, match="the optional 'o', which is empty"):
        module.run({})
    import ember.onnx.backend as backend

    rep = backend.prepare(_model([helper.make_node("Identity", ["o"], ["same"])], [helper.make_value_info("o", opt)],
                                 [helper.make_value_info("same", opt)]), specialize=False)
    assert rep.run([None]) == (None,)
    _same(rep.run([[np.ones(2, np.int32)]])[0], [np.ones(2, np.int32)])


C_DRIVER = r"""
    int (*run_dynamic)(ember_model*, const int64_t* const*, void* const*, void* const*) =
        (int (*)(ember_model*, const int64_t* const*, void* const*, void* const*))dlsym(lib, "ember_model_run_dynamic");
    int (*out_shape)(const int64_t* const*, int, int64_t*) =
        (int (*)(const int64_t* const*, int, int64_t*))dlsym(lib, "ember_output_shape");
    ember_model* m = create();
    /* the sequence [[1, 2], [3, 4, 5]] as its data and shapes, then the tensor [9] */
    float s[5] = {1, 2, 3, 4, 5}, t[1] = {9}, y[6];
    int64_t sh[2] = {2, 3}, ysh[3];
    int64_t d_s[1] = {5}, d_sh[2] = {2, 1}, d_t[1] = {1}, d_y[1], d_ysh[2];
    const int64_t* shapes[] = {d_s, d_sh, d_t};
    if (out_shape(shapes, 0, d_y) != 0 || out_shape(shapes, 1, d_ysh) != 0) return 3;
    printf("shapes %lld %lld %lld\n", (long long)d_y[0], (long long)d_ysh[0], (long long)d_ysh[1]);
    void* ins[] = {s, sh, t};
    void* outs[] = {y, ysh};
    if (run_dynamic(m, shapes, ins, outs) != 0) { fprintf(stderr, "%s\n", err()); return 4; }
    printf("y %g %g %g %g %g %g sizes %lld %lld %lld\n", y[0], y[1], y[2], y[3], y[4], y[5],
           (long long)ysh[0], (long long)ysh[1], (long long)ysh[2]);
    return 0;
}
"""


def test_c_api_data_and_shapes(tmp_path):
    from .models import run_c_driver

    seq = _seq_type(TP.FLOAT, ["n"])
    model = _model([helper.make_node("SequenceInsert", ["s", "t"], ["y"])],
                   [helper.make_value_info("s", seq), helper.make_tensor_value_info("t", TP.FLOAT, ["k"])],
                   [helper.make_value_info("y", seq)])
    m = ember.compile(model, cache=False, cflags=("-O1",))
    assert m.input_names == ["s", "s#shapes", "t"] and m.output_names == ["y", "y#shapes"]
    lines = run_c_driver(tmp_path, C_DRIVER, m.path)
    assert lines == ["shapes 6 3 1", "y 1 2 3 4 5 9 sizes 2 3 1"]


def test_undeclared_rank_positional_call():
    """Elements of no declared rank: the rank is checked where it matters (an insert), and an
    empty sequence takes a tensor of any rank."""
    seq = helper.make_sequence_type_proto(helper.make_tensor_type_proto(TP.FLOAT, None))
    model = _model([helper.make_node("SequenceInsert", ["s", "t"], ["y"]), helper.make_node("Identity", ["s"], ["z"])],
                   [helper.make_value_info("s", seq), helper.make_tensor_value_info("t", TP.FLOAT, [2, "k"])],
                   [helper.make_value_info("y", seq), helper.make_value_info("z", seq)])
    module = ember.compile(model, cache=False, cflags=("-O1",))
    t = np.arange(6, dtype=np.float32).reshape(2, 3)
    for items in ([], [np.ones((1, 1), np.float32)], [np.ones((2, 0), np.float32), np.full((3, 2), 2, np.float32)]):
        y, z = module(items, None, t)
        want = _onnxruntime(model, {"s": items, "t": t})
        _same(y, want[0])
        _same(z, want[1])
    with pytest.raises(DataShapeError):     # a rank-1 element before a rank-2 tensor
        module([np.ones(3, np.float32)], None, t)


def test_sequence_at_a_run_time_position():
    seq = _seq_type(TP.FLOAT, ["a", "b"])
    model = _model([helper.make_node("SequenceAt", ["s", "p"], ["e"]), helper.make_node("Relu", ["e"], ["r"])],
                   [helper.make_value_info("s", seq), helper.make_tensor_value_info("p", TP.INT32, [])],
                   [helper.make_tensor_value_info("e", TP.FLOAT, ["a", "b"]),
                    helper.make_tensor_value_info("r", TP.FLOAT, ["a", "b"])])
    module = ember.compile(model, cache=False, cflags=("-O1",))
    graph = from_onnx(model)
    rng = np.random.default_rng(3)
    for shapes in ([(2, 3)], [(1, 4), (3, 2), (0, 5), (2, 2)]):
        items = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p in range(-len(items), len(items)):
            feeds = {"s": items, "p": np.array(p, np.int32)}
            got = module.run(feeds)
            for g, w in zip(got.values(), _onnxruntime(model, feeds)):
                _same(g, w)
            data, sh = _flat(items, 2)
            np.testing.assert_array_equal(run_graph(graph, {"s": data, "s#shapes": sh, "p": np.array(p, np.int32)})[0],
                                          items[p])
    for p in (len(items), -len(items) - 1):
        with pytest.raises(IndexOutOfRangeError, match="the position in the sequence that SequenceAt"):
            module.run({"s": items, "p": np.array(p, np.int32)})


@pytest.mark.parametrize("new_axis", [0, 1])
def test_erase_and_concat(new_axis):
    seq = _seq_type(TP.FLOAT, ["a", "b"])
    model = _model([helper.make_node("SequenceErase", ["s", "p"], ["e"]), helper.make_node("SequenceErase", ["s"], ["l"]),
                    helper.make_node("ConcatFromSequence", ["s"], ["c"], axis=0, new_axis=new_axis)],
                   [helper.make_value_info("s", seq), helper.make_tensor_value_info("p", TP.INT64, [])],
                   [helper.make_value_info("e", seq), helper.make_value_info("l", seq),
                    helper.make_tensor_value_info("c", TP.FLOAT, None)])
    module = ember.compile(model, cache=False, cflags=("-O1",))
    rng = np.random.default_rng(4)
    cases = ([(2, 3)], [(1, 3), (3, 3), (0, 3)]) if not new_axis else ([(2, 3)], [(2, 2), (2, 2), (2, 2)])
    for shapes in cases:
        items = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        for p in range(-len(items), len(items)):
            feeds = {"s": items, "p": np.array(p)}
            for g, w in zip(module.run(feeds).values(), _onnxruntime(model, feeds)):
                _same(g, w)
    with pytest.raises(IndexOutOfRangeError, match="SequenceErase"):
        module.run({"s": items, "p": np.array(len(items))})
    with pytest.raises(DataShapeError):      # elements that do not concatenate
        module.run({"s": [np.ones((2, 3), np.float32), np.ones((2, 2), np.float32)], "p": np.array(0)})


def test_run_time_positions_into_sequences_built_in_the_model():
    """A sequence the model builds (SequenceConstruct, SplitToSequence) with positions, split
    sizes or a split length that the run decides: laid out as data and shapes there."""
    nodes = [helper.make_node("SequenceConstruct", ["a", "b", "c"], ["s"]),
             helper.make_node("SequenceErase", ["s", "pe"], ["s1"]),
             helper.make_node("SequenceInsert", ["s1", "a", "pi"], ["s2"]),
             helper.make_node("SequenceAt", ["s2", "pa"], ["out"]),
             helper.make_node("SplitToSequence", ["x"], ["rows"], axis=1, keepdims=0),
             helper.make_node("SplitToSequence", ["x", "sizes"], ["parts"], axis=0),
             helper.make_node("SequenceLength", ["rows"], ["n_rows"])]
    ins = [helper.make_tensor_value_info(n, TP.FLOAT, ["p", 2]) for n in "abc"] + \
        [helper.make_tensor_value_info(n, TP.INT64, []) for n in ("pe", "pi", "pa")] + \
        [helper.make_tensor_value_info("x", TP.FLOAT, ["r", "k"]), helper.make_tensor_value_info("sizes", TP.INT64, [3])]
    outs = [helper.make_tensor_value_info("out", TP.FLOAT, None), helper.make_value_info("rows", _seq_type(TP.FLOAT, None)),
            helper.make_value_info("parts", _seq_type(TP.FLOAT, None)), helper.make_tensor_value_info("n_rows", TP.INT64, [])]
    model = _model(nodes, ins, outs)
    module = ember.compile(model, cache=False, cflags=("-O1",))
    rng = np.random.default_rng(5)
    for p, (r, k), sizes in ((1, (4, 3), [1, 0, 3]), (3, (2, 5), [2, 0, 0]), (2, (0, 1), [0, 0, 0])):
        abc = [rng.standard_normal((p, 2)).astype(np.float32) for _ in range(3)]
        x = rng.standard_normal((r, k)).astype(np.float32)
        for pe, pi, pa in ((0, 0, 0), (-1, 2, -1), (1, -2, 1)):
            feeds = dict(zip("abc", abc), pe=np.array(pe), pi=np.array(pi), pa=np.array(pa), x=x,
                         sizes=np.array(sizes))
            for g, w in zip(module.run(feeds).values(), _onnxruntime(model, feeds)):
                _same(g, w)
    with pytest.raises(DataShapeError):         # split sizes that do not add up to the axis
        module.run(dict(feeds, sizes=np.array([1, 1, 1])))


def test_run_time_position_into_an_empty_sequence_still_asks_for_it():
    """Into an empty sequence the form has no rank to take: the position is needed at compile
    time, as before (OperandNotConstantError naming it, which the ONNX backend specializes)."""
    from ember.frontend.onnx import OperandNotConstantError

    model = _model([helper.make_node("SequenceEmpty", [], ["e"], dtype=TP.FLOAT),
                    helper.make_node("SequenceInsert", ["e", "t", "p"], ["s"])],
                   [helper.make_tensor_value_info("t", TP.FLOAT, [2]), helper.make_tensor_value_info("p", TP.INT64, [])],
                   [helper.make_value_info("s", _seq_type(TP.FLOAT, [2]))])
    with pytest.raises(OperandNotConstantError) as e:
        from_onnx(model)
    assert list(e.value.inputs) == ["p"]


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_split_by_a_run_time_step(axis):
    model = _model([helper.make_node("SplitToSequence", ["x", "s"], ["y"], axis=axis)],
                   [helper.make_tensor_value_info("x", TP.FLOAT, [3, "n", 4]),
                    helper.make_tensor_value_info("s", TP.INT64, [])],
                   [helper.make_value_info("y", _seq_type(TP.FLOAT, None))])
    module = ember.compile(model, cache=False, cflags=("-O1",))
    rng = np.random.default_rng(6)
    for n in (1, 5):
        x = rng.standard_normal((3, n, 4)).astype(np.float32)
        for s in (1, 2, 3, 7):
            feeds = {"x": x, "s": np.array(s)}
            _same(module.run(feeds)["y"], _onnxruntime(model, feeds)[0])
    with pytest.raises(DataShapeError):         # a step below 1
        module.run({"x": x, "s": np.array(0)})

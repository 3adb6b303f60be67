"""Optional tensor graph inputs whose presence the run decides: compiled once as the tensor
input ``x`` and its presence flag ``x?`` (both with defaults), OptionalHasElement reading the
flag and OptionalGetElement checking it at run time.  Checked through Module (the flag set from
whether the value is given), a positional call, ember.load and the reference interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto as TP, helper

import ember
from ember.errors import IndexOutOfRangeError, InputError
from ember.frontend import from_onnx
from ember.graph import run_graph

from .models import run_c_driver


def optional_model():
    """has = OptionalHasElement(o); r = Relu(OptionalGetElement(o)); same = o."""
    opt = helper.make_optional_type_proto(helper.make_tensor_type_proto(TP.FLOAT, ["n", 2]))
    nodes = [helper.make_node("OptionalHasElement", ["o"], ["has"]),
             helper.make_node("OptionalGetElement", ["o"], ["v"]),
             helper.make_node("Relu", ["v"], ["r"]),
             helper.make_node("Identity", ["o"], ["same"])]
    g = helper.make_graph(nodes, "opt", [helper.make_value_info("o", opt)],
                          [helper.make_tensor_value_info("has", TP.BOOL, []),
                           helper.make_tensor_value_info("r", TP.FLOAT, ["n", 2]), helper.make_value_info("same", opt)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_one_artifact_for_present_and_absent(tmp_path):
    model = optional_model()
    graph = from_onnx(model)
    assert [v.name for v in graph.inputs] == ["o?", "o"] and set(graph.defaults) == {"o?", "o"}
    module = ember.compile(model, cache=False, cflags=("-O1",))
    assert module.default_inputs == ["o?", "o"]
    rng = np.random.default_rng(0)
    for n in (3, 1, 6):
        x = rng.standard_normal((n, 2)).astype(np.float32)
        want = run_graph(graph, {"o?": np.array(True), "o": x})
        got = module.run({"o": x})          # the flag follows from the value given
        for w, g in zip(want, got.values()):
            np.testing.assert_array_equal(g, w)
        assert bool(got["has"]) and bool(got["same?"])
        np.testing.assert_array_equal(got["r"], np.maximum(x, 0))
        np.testing.assert_array_equal(module(None, x)[1], np.maximum(x, 0))
    # empty: what reads the value is an error of the run, in the artifact and the reference
    with pytest.raises(IndexOutOfRangeError, match="the optional 'o', which is empty"):
        module.run({})
    with pytest.raises(IndexOutOfRangeError, match="the optional 'o', which is empty"):
        run_graph(graph, {})
    with pytest.raises(InputError, match="holds a value, but none is given"):
        module.run({"o?": np.array(True)})
    path = module.save(tmp_path / "opt.so")
    loaded = ember.load(path)
    x = rng.standard_normal((2, 2)).astype(np.float32)
    np.testing.assert_array_equal(loaded.run({"o": x})["r"], np.maximum(x, 0))


def test_has_element_of_an_empty_optional():
    opt = helper.make_optional_type_proto(helper.make_tensor_type_proto(TP.INT32, []))
    g = helper.make_graph([helper.make_node("OptionalHasElement", ["o"], ["has"])], "has",
                          [helper.make_value_info("o", opt)], [helper.make_tensor_value_info("has", TP.BOOL, [])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    module = ember.compile(model, cache=False, cflags=("-O1",))
    assert not bool(module.run({})["has"])
    assert bool(module.run({"o": np.array(7, np.int32)})["has"])
    assert not bool(module.run({"o?": np.array(False), "o": np.array(7, np.int32)})["has"])
    # the caller may still pin the structure: an empty optional folds away
    assert [v.name for v in from_onnx(model, shapes={"o": None}).inputs] == []


C_DRIVER = r"""
    ember_model* m = create();
    _Bool present = 1, has = 0;
    float x[3] = {-1, 2, -3}, r[3];
    void* outs[] = {&has, r};
    void* ins_given[] = {&present, x};
    void* ins_empty[] = {NULL, NULL};
    if (run(m, ins_given, outs) != 0) { fprintf(stderr, "%s\n", err()); return 4; }
    printf("has %d r %g %g %g\n", (int)has, r[0], r[1], r[2]);
    if (run(m, ins_empty, outs) == 0) return 5;
    printf("refused: %s\n", err());
    return 0;
}
"""


def test_c_api_null_for_an_empty_optional(tmp_path):
    opt = helper.make_optional_type_proto(helper.make_tensor_type_proto(TP.FLOAT, [3]))
    g = helper.make_graph([helper.make_node("OptionalHasElement", ["o"], ["has"]),
                           helper.make_node("OptionalGetElement", ["o"], ["v"]), helper.make_node("Relu", ["v"], ["r"])],
                          "c_opt", [helper.make_value_info("o", opt)],
                          [helper.make_tensor_value_info("has", TP.BOOL, []), helper.make_tensor_value_info("r", TP.FLOAT, [3])])
    m = ember.compile(helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)]), cflags=("-O1",))
    assert m.input_names == ["o?", "o"]
    lines = run_c_driver(tmp_path, C_DRIVER, m.path)
    assert lines[0] == "has 1 r 0 2 0"
    assert "index 0 into the optional 'o', which is empty" in lines[1]

"""String ONNX ops and LabelEncoder: Ember (the reference interpreter on the translated graph, and
the compiled model) against onnx.reference.ReferenceEvaluator."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

import ember
from ember.frontend import from_onnx
from ember.graph import run_graph
from ember.graph.verify import verify


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EMBER_CACHE_DIR", str(tmp_path_factory.mktemp("ember-cache")))
        yield


def S(*items, shape=None) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = list(items)
    return arr.reshape(shape if shape is not None else (len(items),))


def _tp(arr: np.ndarray) -> int:
    return TensorProto.STRING if arr.dtype == object else helper.np_dtype_to_tensor_dtype(arr.dtype)


def model(node, inputs: dict, n_outputs: int = 1, opset: int = 20):
    outs = [f"out{k}" for k in range(n_outputs)]
    node.output.extend(outs)
    graph = helper.make_graph([node], "strings",
                              [helper.make_tensor_value_info(n, _tp(a), list(a.shape)) for n, a in inputs.items()],
                              [onnx.ValueInfoProto(name=o) for o in outs])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", 4)])
    m.ir_version = 10
    return m


def check(m, feeds: dict) -> None:
    expected = ReferenceEvaluator(m).run(None, feeds)
    graph = from_onnx(m)
    verify(graph)
    interpreted = run_graph(graph, feeds)
    compiled = list(ember.compile(m, cflags=("-O1",)).run(feeds).values())
    for want, a, b in zip(expected, interpreted, compiled):
        want = np.asarray(want)
        if want.dtype.kind == "U":
            want = want.astype(object)
        for got in (np.asarray(a), b):
            assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want), (got, want)


@pytest.mark.parametrize("attrs,x", [
    (dict(case_change_action="LOWER", is_case_sensitive=1, stopwords=["monday"]), S("monday", "Tuesday", "WED")),
    (dict(case_change_action="UPPER", stopwords=["MONDAY", "x"]), S("Monday", "tuesday", "x", "y", shape=(1, 4))),
    (dict(case_change_action="NONE", is_case_sensitive=1), S("Aa", "bB")),
    (dict(stopwords=["a"], is_case_sensitive=1), S("a", "a")),
    (dict(case_change_action="LOWER", stopwords=["a"], locale="en_US"), S("a", "A", shape=(1, 2))),
])
def test_string_normalizer(attrs, x):
    # (cases where the evaluator follows the spec: it matches stopwords case-insensitively only
    # through the case change, where the spec ignores case in any case; see tests/ops/test_strings.py)
    check(model(helper.make_node("StringNormalizer", ["x"], [], **attrs), {"x": x}, opset=10), {"x": x})


@pytest.mark.parametrize("x,y", [
    (S("a", "bc"), S("1", "2")),
    (S("a", "é", ""), S("-", shape=(1,))),
    (S("p", shape=()), S("q", shape=())),
    (S("a", "b", "c", "d", shape=(2, 2)), S("x", "y")),
])
def test_string_concat(x, y):
    check(model(helper.make_node("StringConcat", ["x", "y"], []), {"x": x, "y": y}), {"x": x, "y": y})


@pytest.mark.parametrize("attrs,x", [
    (dict(delimiter="."), S("a.b", "c")),
    (dict(delimiter="-"), S("x--y-", "z")),
    (dict(), S(" a  b ", "c\td", "")),
    (dict(delimiter=""), S("a b", "c")),
    (dict(maxsplit=1), S("a b c", "d e f", "g", "h i", shape=(2, 2))),
])
def test_string_split(attrs, x):
    check(model(helper.make_node("StringSplit", ["x"], [], **attrs), {"x": x}, 2), {"x": x})


@pytest.mark.parametrize("pattern,x", [
    (r"www\.[\w.-]+\.\bcom\b", S("www.google.com", "www.x.org", "google.com")),
    (r"(\W|^)[\w.\-]{0,25}@(yahoo|gmail)\.com(\W|$)", S("a@gmail.com", "b@x.com", "", "c@yahoo.com", shape=(2, 2))),
    (r"[0-9]+", S()),
])
def test_regex_full_match(pattern, x):
    check(model(helper.make_node("RegexFullMatch", ["x"], [], pattern=pattern), {"x": x}), {"x": x})


@pytest.mark.parametrize("x,y", [(S("a", "b"), S("a", "c")), (S("a", "b", "a"), S("a", shape=(1,)))])
def test_equal_strings(x, y):
    check(model(helper.make_node("Equal", ["x", "y"], []), {"x": x, "y": y}, opset=19), {"x": x, "y": y})


@pytest.mark.parametrize("attrs,x", [
    (dict(keys_strings=["a", "b"], values_int64s=[1, 2], default_int64=9), S("a", "q", "b")),
    (dict(keys_strings=["a", "b"], values_floats=[0.5, 2.0]), S("b", "z")),
    (dict(keys_int64s=[3, 4], values_strings=["three", "four"], default_string="?"), np.array([4, 5, 3])),
    (dict(keys_int64s=[3, 4], values_int64s=[30, 40]), np.array([[4, 5], [3, 3]])),
    (dict(keys_floats=[0.5, 1.5], values_int64s=[1, 2], default_int64=-7), np.array([1.5, 0.5, 2.0], np.float32)),
    (dict(keys_tensor=helper.make_tensor("k", TensorProto.STRING, [2], [b"u", b"v"]),
          values_tensor=helper.make_tensor("v", TensorProto.INT32, [2], [5, 6]),
          default_tensor=helper.make_tensor("d", TensorProto.INT32, [1], [-2])), S("v", "w", "u")),
])
def test_label_encoder(attrs, x):
    node = helper.make_node("LabelEncoder", ["x"], [], domain="ai.onnx.ml", **attrs)
    check(model(node, {"x": x}), {"x": x})


def test_numeric_label_encoder_is_compiled():
    node = helper.make_node("LabelEncoder", ["x"], [], domain="ai.onnx.ml", keys_int64s=[3], values_int64s=[30])
    m = model(node, {"x": np.array([3, 4])})
    assert not any(n.op == "label_encode" for n in from_onnx(m).nodes)
    assert isinstance(ember.compile(m, cflags=("-O1",)), ember.Module)


def test_string_op_on_numbers_names_the_node():
    m = model(helper.make_node("StringConcat", ["x", "y"], [], name="cat"), {"x": np.array([1]), "y": np.array([2])})
    with pytest.raises(ember.errors.EmberError, match="cat.*string"):
        from_onnx(m)

"""The host ops of ember.ops.strings: type rules, and their references (the host kernels of
ember.runtime.host) against hand-computed results."""

from __future__ import annotations

import numpy as np
import pytest

from ember.errors import TypeInferenceError
from ember.graph.types import TensorType
from ember.ops import get_op
from ember.symbolic import symbol


def S(*items, shape=None) -> np.ndarray:
    arr = np.empty(len(items), dtype=object)
    arr[:] = list(items)
    return arr.reshape(shape if shape is not None else (len(items),))


def run(op: str, arrays, **attrs):
    o = get_op(op)
    a = o.fill_attrs(attrs)
    types = o.infer_types(a, [TensorType.of(x) for x in arrays])
    outs = o.run_reference(a, arrays)
    for t, arr in zip(types, outs):      # the reference agrees with the type rule
        assert arr.ndim == t.rank and str(t.dtype) == ("string" if arr.dtype == object else str(arr.dtype))
        assert all(d == n for d, n in zip(t.shape, arr.shape) if isinstance(d, int))
    return outs


def same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b), (a, b)


def test_normalize_stopwords_and_case():
    x = S("Monday", "tuesday", "monday", "Wed")
    same(run("string_normalize", [x], case="UPPER", case_sensitive=True, stopwords=("monday",), length="n")[0],
         S("MONDAY", "TUESDAY", "WED"))
    same(run("string_normalize", [x], case="LOWER", stopwords=("MONDAY",), length="n")[0], S("tuesday", "wed"))
    same(run("string_normalize", [x])[0], x)


def test_normalize_empty_result_and_two_dims():
    same(run("string_normalize", [S("a", "a")], stopwords=("a",), case_sensitive=True, length="n")[0], S(""))
    x = S("a", "B", "c", shape=(1, 3))
    same(run("string_normalize", [x], case="LOWER", stopwords=("b",), length="n")[0], S("a", "c", shape=(1, 2)))
    same(run("string_normalize", [S("a", shape=(1, 1))], stopwords=("a",), length="n")[0], S("", shape=(1, 1)))


def test_normalize_types():
    o = get_op("string_normalize")
    t = o.infer_types(o.fill_attrs({"stopwords": ("x",), "length": "n"}), [TensorType((1, 4), "string")])
    assert t == [TensorType((1, symbol("n")), "string")]
    assert o.infer_types(o.fill_attrs({}), [TensorType((4,), "string")]) == [TensorType((4,), "string")]
    assert o.infer_types(o.fill_attrs({}), [TensorType((0,), "string")]) == [TensorType((1,), "string")]
    with pytest.raises(TypeInferenceError, match=r"\[C\] or \[1, C\]"):
        o.infer_types(o.fill_attrs({}), [TensorType((2, 4), "string")])
    with pytest.raises(TypeInferenceError, match="length"):
        o.infer_types(o.fill_attrs({"stopwords": ("x",)}), [TensorType((4,), "string")])
    with pytest.raises(TypeInferenceError, match="case must be one of"):
        o.infer_types(o.fill_attrs({"case": "TITLE"}), [TensorType((4,), "string")])
    with pytest.raises(TypeInferenceError, match="takes string operands"):
        o.infer_types(o.fill_attrs({}), [TensorType((4,), "int64")])


def test_concat_and_equal_broadcast():
    x, y = S("a", "é", ""), S("-z", shape=(1,))
    same(run("string_concat", [x, y])[0], S("a-z", "é-z", "-z"))
    same(run("string_concat", [S("p", shape=()), S("q", shape=())])[0], S("pq", shape=()))
    same(run("string_equal", [x, S("a", shape=())])[0], np.array([True, False, False]))
    with pytest.raises(TypeInferenceError, match="broadcast"):
        get_op("string_concat").infer_types({}, [TensorType((2,), "string"), TensorType((3,), "string")])


def test_split():
    x = S("a.b.c", "d", "", shape=(3,))
    parts, counts = run("string_split", [x], delimiter=".", pieces="k")
    same(parts, S("a", "b", "c", "d", "", "", "", "", "", shape=(3, 3)))
    same(counts, np.array([3, 1, 1], dtype=np.int64))
    parts, counts = run("string_split", [S("  a  b ", "c d e")], maxsplit=1, pieces="k")
    same(parts, S("a", "b ", "c", "d e", shape=(2, 2)))     # whitespace runs; at most one split
    same(counts, np.array([2, 2], dtype=np.int64))
    parts, counts = run("string_split", [S("x--y")], delimiter="-", pieces="k")
    same(parts, S("x", "", "y", shape=(1, 3)))
    parts, counts = run("string_split", [np.empty((0,), dtype=object)], pieces="k")
    assert parts.shape == (0, 0) and counts.shape == (0,)


def test_regex_full_match():
    x = S("www.site.com", "site.com", "www.a.comx", shape=(3,))
    same(run("regex_full_match", [x], pattern=r"www\.[\w.-]+\.com")[0], np.array([True, False, False]))
    with pytest.raises(TypeInferenceError, match="not a regular expression"):
        get_op("regex_full_match").infer_types({"pattern": "(a"}, [TensorType((1,), "string")])


def test_label_encode():
    x = S("a", "c", "zz")
    same(run("label_encode", [x], keys=("a", "b", "c"), values=(1, 2, 3), default=-1, dtype="int64")[0],
         np.array([1, 3, -1], dtype=np.int64))
    same(run("label_encode", [np.array([2, 5], dtype=np.int64)], keys=(2,), values=("two",), default="_",
             dtype="string")[0], S("two", "_"))
    same(run("label_encode", [np.array([np.nan, 1.0], dtype=np.float32)], keys=(float("nan"),), values=(7.0,),
             default=0.0, dtype="float32")[0], np.array([7, 0], dtype=np.float32))
    with pytest.raises(TypeInferenceError, match="keys must all be string"):
        get_op("label_encode").infer_types({"keys": (1,), "values": (1,), "default": 0, "dtype": "int64"},
                                           [TensorType((2,), "string")])


def test_compiled_ops_refuse_strings():
    with pytest.raises(TypeInferenceError, match="does not take string operands"):
        get_op("reshape").infer_types(get_op("reshape").fill_attrs({"shape": (2,)}), [TensorType((2,), "string")])

"""Host kernels on strings (ONNX's semantics; the core ops are in ``ember.ops.strings``).

Strings are numpy object arrays of Python ``str``.  Case changes use Unicode's default case
mappings (``str.lower``/``str.upper``) whatever the locale; regular expressions are Python's
``re`` syntax, which agrees with RE2's for the common subset (classes, repetition, groups,
alternation, anchors, ``\\w``/``\\d``/``\\s``/``\\b``).
"""

from __future__ import annotations

import functools
import math
import re
from typing import Callable, Mapping

import numpy as np

from . import kernel

CASE_ACTIONS = ("NONE", "LOWER", "UPPER")


def strings(shape, items) -> np.ndarray:
    """An object array of ``shape`` holding ``items`` (strings) in row-major order."""
    out = np.empty(tuple(shape), dtype=object)
    out.reshape(-1)[:] = list(items)
    return out


def _elementwise(fn: Callable, x: np.ndarray, y: np.ndarray, dtype) -> np.ndarray:
    """``fn`` applied to the pairs of elements of ``x`` and ``y`` broadcast together."""
    xb, yb = np.broadcast_arrays(np.asarray(x, dtype=object), np.asarray(y, dtype=object))
    values = [fn(a, b) for a, b in zip(xb.reshape(-1), yb.reshape(-1))]
    if dtype is object:
        return strings(xb.shape, values)
    return np.array(values, dtype=dtype).reshape(xb.shape)


@kernel("string_normalize")
def string_normalize(a: Mapping, x: np.ndarray) -> np.ndarray:
    """ONNX StringNormalizer on ``x`` of shape [C] or [1, C]: drops the elements equal to one of
    ``stopwords`` (ignoring case unless ``case_sensitive``), then changes the case of the rest
    (``case``: NONE, LOWER or UPPER).  When nothing is left the result is one empty string,
    of shape [1] or [1, 1]."""
    case, sensitive = a["case"], bool(a["case_sensitive"])
    stops = set(a["stopwords"]) if sensitive else {w.casefold() for w in a["stopwords"]}
    kept = [s for s in x.reshape(-1) if (s if sensitive else s.casefold()) not in stops]
    if case == "LOWER":
        kept = [s.lower() for s in kept]
    elif case == "UPPER":
        kept = [s.upper() for s in kept]
    if not kept:
        kept = [""]
    return strings(x.shape[:-1] + (len(kept),), kept)


@kernel("string_concat")
def string_concat(a: Mapping, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ONNX StringConcat: elementwise ``x + y`` with numpy broadcasting."""
    return _elementwise(lambda p, q: p + q, x, y, object)


@kernel("string_equal")
def string_equal(a: Mapping, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """ONNX Equal on strings: elementwise equality with numpy broadcasting."""
    return _elementwise(lambda p, q: p == q, x, y, np.bool_)


@kernel("string_split")
def string_split(a: Mapping, x: np.ndarray) -> list[np.ndarray]:
    """ONNX StringSplit: each element split at ``delimiter`` (at runs of whitespace, leading and
    trailing whitespace ignored, when it is empty), at most ``maxsplit`` times when it is not
    negative.  Returns the pieces, of shape ``x.shape + [most pieces]`` padded with empty
    strings, and the number of pieces of each element (int64, ``x.shape``)."""
    sep = a["delimiter"] or None
    maxsplit = int(a["maxsplit"])
    parts = [s.split(sep, maxsplit) for s in x.reshape(-1)]
    width = max((len(p) for p in parts), default=0)
    out = strings(x.shape + (width,), (q for p in parts for q in p + [""] * (width - len(p))))
    counts = np.array([len(p) for p in parts], dtype=np.int64).reshape(x.shape)
    return [out, counts]


@functools.lru_cache(maxsize=64)
def compile_pattern(pattern: str) -> "re.Pattern":
    """The compiled regular expression (``re.error`` when it is not one)."""
    return re.compile(pattern)


@kernel("regex_full_match")
def regex_full_match(a: Mapping, x: np.ndarray) -> np.ndarray:
    """ONNX RegexFullMatch: whether each element matches ``pattern`` as a whole."""
    rx = compile_pattern(a["pattern"])
    return np.array([rx.fullmatch(s) is not None for s in x.reshape(-1)], dtype=np.bool_).reshape(x.shape)


_NAN = object()


def _key(k):
    """A lookup key: NaN keys find NaN inputs (NaN != NaN would lose them)."""
    return _NAN if isinstance(k, float) and math.isnan(k) else k


@kernel("label_encode")
def label_encode(a: Mapping, x: np.ndarray) -> np.ndarray:
    """ONNX LabelEncoder: each element of ``x`` equal to ``keys[i]`` becomes ``values[i]``; the
    others become ``default``.  The result has dtype ``dtype`` ("string" or a numpy dtype)."""
    table = {_key(k): v for k, v in zip(a["keys"], a["values"])}
    default = a["default"]
    if x.dtype.kind == "f":
        items = [table.get(_key(float(k)), default) for k in x.reshape(-1)]
    elif x.dtype.kind in "iub":
        items = [table.get(int(k), default) for k in x.reshape(-1)]
    else:
        items = [table.get(k, default) for k in x.reshape(-1)]
    if a["dtype"] == "string":
        return strings(x.shape, items)
    return np.array(items, dtype=np.dtype(a["dtype"])).reshape(x.shape)

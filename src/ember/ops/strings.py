"""Ops on strings, and ``label_encode``: the ops that run on the host.

Strings have no compiled kernels: each op here is a type rule plus a host kernel of
``ember.runtime.host`` that is both its numpy reference and what the compiled model runs (in a
host step between compiled segments; see ``ember.driver.program``).

* ``string_normalize(x) {case, case_sensitive, stopwords, locale, length}``: ONNX
  StringNormalizer on [C] or [1, C].  Its output's last dimension depends on the data when
  stopwords may drop elements: it is then the symbol named by ``length``.
* ``string_concat(x, y)``, ``string_equal(x, y)``: elementwise, numpy broadcasting.
* ``string_split(x) {delimiter, maxsplit, pieces}``: the pieces (``x.shape + [pieces]``, a
  symbol: the most pieces of any element) and their counts (int64, ``x.shape``).
* ``regex_full_match(x) {pattern}``: bool, ``x.shape``.
* ``label_encode(x) {keys, values, default, dtype}``: a lookup table from ``x``'s elements
  (strings, integers or floats) to values of ``dtype`` (a string or numeric dtype).

A symbol for a data-dependent dimension names a dimension that is only known once the op has
run; its upper bound, where the input gives one, is in ``Graph.bounds``.
"""

from __future__ import annotations

import re

from ..graph.types import STRING, TensorType, broadcast_shapes, is_float, is_int, is_string
from ..runtime.host import run_kernel
from ..runtime.host.strings import CASE_ACTIONS, compile_pattern
from ..symbolic import is_identifier
from .base import Op, REQUIRED, register


class HostOp(Op):
    """An op that runs on the host: its reference is its host kernel."""

    host = True

    def reference(self, a, *arrays):
        return run_kernel(self.host_kernel, a, arrays)

    def strings_only(self, *types: TensorType) -> None:
        for t in types:
            if not is_string(t.dtype):
                raise self.fail(f"takes string operands, got {t}")

    def data_dim(self, a, attr: str):
        """The symbol named by attribute ``attr``, for a dimension that depends on the data."""
        name = a[attr]
        if not isinstance(name, str) or not is_identifier(name):
            raise self.fail(f"attribute '{attr}' must name the symbol of the dimension the data decides "
                            f"(an identifier), got {name!r}")
        return name


@register
class StringNormalize(HostOp):
    name = "string_normalize"
    host_kernel = "string_normalize"
    attrs = {"case": "NONE", "case_sensitive": False, "stopwords": (), "locale": "", "length": ""}

    def infer(self, a, x):
        self.strings_only(x)
        if a["case"] not in CASE_ACTIONS:
            raise self.fail(f"case must be one of {', '.join(CASE_ACTIONS)}, got {a['case']!r}")
        if not (x.rank == 1 or (x.rank == 2 and x.shape[0] == 1)):
            raise self.fail(f"takes a tensor of shape [C] or [1, C], got {x}")
        c = x.shape[-1]
        if isinstance(c, int) and c == 0:
            n = 1                                  # nothing left: one empty string
        elif not a["stopwords"] and isinstance(c, int):
            n = c
        else:
            n = self.data_dim(a, "length")
        return TensorType(x.shape[:-1] + (n,), STRING)


@register
class StringConcat(HostOp):
    name = "string_concat"
    host_kernel = "string_concat"
    num_inputs = 2

    def infer(self, a, x, y):
        self.strings_only(x, y)
        return TensorType(broadcast_shapes(x.shape, y.shape), STRING)


@register
class StringEqual(HostOp):
    name = "string_equal"
    host_kernel = "string_equal"
    num_inputs = 2

    def infer(self, a, x, y):
        self.strings_only(x, y)
        return TensorType(broadcast_shapes(x.shape, y.shape), "bool")


@register
class StringSplit(HostOp):
    name = "string_split"
    host_kernel = "string_split"
    num_outputs = 2
    attrs = {"delimiter": "", "maxsplit": -1, "pieces": REQUIRED}

    def infer(self, a, x):
        self.strings_only(x)
        if not isinstance(a["maxsplit"], int):
            raise self.fail(f"maxsplit must be an integer, got {a['maxsplit']!r}")
        return [TensorType(x.shape + (self.data_dim(a, "pieces"),), STRING), TensorType(x.shape, "int64")]


@register
class RegexFullMatch(HostOp):
    name = "regex_full_match"
    host_kernel = "regex_full_match"
    attrs = {"pattern": REQUIRED}

    def infer(self, a, x):
        self.strings_only(x)
        try:
            compile_pattern(a["pattern"])
        except (re.error, TypeError) as e:
            raise self.fail(f"pattern {a['pattern']!r} is not a regular expression Ember can run: {e}") from None
        return TensorType(x.shape, "bool")


@register
class LabelEncode(HostOp):
    name = "label_encode"
    host_kernel = "label_encode"
    attrs = {"keys": REQUIRED, "values": REQUIRED, "default": REQUIRED, "dtype": REQUIRED}

    def infer(self, a, x):
        keys, values, dtype = a["keys"], a["values"], a["dtype"]
        if len(keys) != len(values):
            raise self.fail(f"has {len(keys)} keys but {len(values)} values")
        _check_items(self, "keys", list(keys), x.dtype)
        _check_items(self, "values", list(values) + [a["default"]], dtype)
        return TensorType(x.shape, dtype)


def _check_items(op: Op, what: str, items: list, dtype: str) -> None:
    """Items of a label_encode table must be Python values of ``dtype``'s kind."""
    if is_string(dtype):
        ok = all(isinstance(v, str) for v in items)
    elif is_int(dtype):
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in items)
    elif is_float(dtype) and dtype != "bfloat16":
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)
    else:
        raise op.fail(f"{what} of dtype {dtype} are not supported: strings, integers and floats are")
    if not ok:
        raise op.fail(f"{what} must all be {dtype} values to go with {dtype} data, got {items[:4]}...")

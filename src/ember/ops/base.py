"""What every core op declares, and the registry that finds ops by name.

An op is a stateless singleton.  Its methods receive the node's attributes as a dict (defaults
filled in) followed by the operands:

* ``infer(a, *types)``      -> output TensorType(s): the type rule (shapes may be symbolic)
* ``reference(a, *arrays)`` -> output array(s): the numpy oracle of the differential tests
* ``compute(a, *tensors)``  -> output te.Tensor(s): *what* a kernel computes (``ember.te``)

*How* its loops run is not the op's: schedules live in :mod:`ember.schedules`, registered by
target kind and op name.

``pattern`` tells the fusion pass how the op combines with its neighbours.  ``moves_data`` marks
the ops that only convert or move elements: only they take the narrow dtypes (float8, float4,
int4, int2), which have no arithmetic.  ``host`` marks the ops that are never compiled to a
kernel: the compiled model runs them on the host, in the Python runtime, with a kernel of
``ember.runtime.host`` (named by ``host_kernel``) that is also their numpy reference.  Only
they take or produce strings.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, ClassVar, Sequence

import numpy as np

from .. import limits
from ..errors import TypeInferenceError
from ..graph.types import TensorType, is_narrow, is_string, np_dtype


class Pattern(IntEnum):
    """Fusion patterns, ordered from most to least fusable."""

    ELEMWISE = 0              # out[i] = f(in[i])
    BROADCAST = 1             # out[i] = f(in_k[proj_k(i)])
    INJECTIVE = 2             # each output element reads one input element (reshape, slice, ...)
    REDUCTION = 3             # ends a fused group
    OUT_ELEMWISE_FUSABLE = 4  # conv, matmul: elementwise epilogues fuse after it
    OPAQUE = 8                # never fused


class Required:
    """Marker for an attribute that has no default."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = Required()


class Op:
    name: ClassVar[str] = ""
    pattern: ClassVar[Pattern] = Pattern.OPAQUE
    attrs: ClassVar[dict[str, Any]] = {}
    num_inputs: ClassVar[int | tuple[int, int]] = 1   # exact count, or (min, max)
    num_outputs: ClassVar[int] = 1
    moves_data: ClassVar[bool] = False                 # takes the narrow dtypes
    host: ClassVar[bool] = False                       # runs on the host (see the module doc)
    host_kernel: ClassVar[str] = ""                    # its kernel in ember.runtime.host
    region: ClassVar[bool] = False                     # holds graphs it runs (ops.control)

    # -- the three pieces of knowledge ------------------------------------------------------

    def infer(self, a: dict, *types: TensorType) -> TensorType | list[TensorType]:
        raise NotImplementedError

    def reference(self, a: dict, *arrays: np.ndarray) -> np.ndarray | list[np.ndarray]:
        raise NotImplementedError

    def compute(self, a: dict, *tensors):
        raise NotImplementedError(f"op {self.name} has no tensor compute yet")

    # -- helpers ---------------------------------------------------------------------------

    def fill_attrs(self, given: dict[str, Any], node: str = "") -> dict[str, Any]:
        unknown = set(given) - set(self.attrs)
        if unknown:
            raise TypeInferenceError(f"unknown attribute(s) {sorted(unknown)}; "
                                     f"expected {sorted(self.attrs)}", node=node, op=self.name)
        out = {}
        for k, default in self.attrs.items():
            if k in given:
                out[k] = _normalize_attr(given[k])
            elif isinstance(default, Required):
                raise TypeInferenceError(f"missing required attribute '{k}'", node=node, op=self.name)
            else:
                out[k] = default
        return out

    def check_arity(self, n: int, node: str = "") -> None:
        lo, hi = (self.num_inputs, self.num_inputs) if isinstance(self.num_inputs, int) else self.num_inputs
        if not lo <= n <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            raise TypeInferenceError(f"takes {want} input(s), got {n}", node=node, op=self.name)

    def infer_types(self, a: dict, types: Sequence[TensorType], node: str = "") -> list[TensorType]:
        """``infer`` with arity checks and error context, always returning a list."""
        self.check_arity(len(types), node)
        if not self.moves_data:
            for t in types:
                if is_narrow(t.dtype):
                    raise TypeInferenceError(
                        f"does not take {t.dtype} operands (got {t}): the narrow types are only "
                        f"converted (cast) and moved (reshape, transpose, slice, gather, ...)",
                        node=node, op=self.name)
        if not self.host:
            for t in types:
                if is_string(t.dtype):
                    raise TypeInferenceError(
                        f"does not take string operands (got {t}): strings are only taken by the ops "
                        f"that run on the host (the string ops, label_encode)", node=node, op=self.name)
        try:
            out = self.infer(a, *types)
        except TypeInferenceError as e:
            if e.node is None:
                raise type(e)(str(e).split("] ", 1)[-1], node=node, op=self.name) from None
            raise
        except (TypeError, ValueError, IndexError, ZeroDivisionError) as e:
            # malformed attributes (wrong kinds of values) or symbolic dims the rule cannot handle
            raise TypeInferenceError(f"cannot infer the output type from operands "
                                     f"{', '.join(map(str, types))} and attributes {a}: {e}",
                                     node=node, op=self.name) from None
        out = list(out) if isinstance(out, (list, tuple)) else [out]
        _check_sizes(out, node, self.name)
        return out

    def run_reference(self, a: dict, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = self.reference(a, *arrays)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def fail(self, message: str) -> TypeInferenceError:
        return TypeInferenceError(message, op=self.name)


def _check_sizes(types: Sequence[TensorType], node: str, op: str) -> None:
    """The resource policy on a node's static output types: each within ``tensor_bytes``."""
    lim = limits.current()
    for k, t in enumerate(types):
        if t.is_static:
            n = t.size * (1 if t.dtype == "string" else np_dtype(t.dtype).itemsize)
            if n > lim.tensor_bytes:
                what = f"output {k} ({t})" if len(types) > 1 else f"its output {t}"
                limits.check_tensor(n, what, node=node or None, op=op, limits=lim)


def _normalize_attr(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_normalize_attr(x) for x in v)
    if isinstance(v, np.ndarray):
        return tuple(v.tolist()) if v.ndim else v.item()
    if isinstance(v, np.generic):
        return v.item()
    return v


OPS: dict[str, Op] = {}


def register(cls: type[Op]) -> type[Op]:
    """Class decorator: add one instance of the op to the registry."""
    assert cls.name and cls.name not in OPS, f"op {cls.name!r} registered twice or unnamed"
    OPS[cls.name] = cls()
    return cls


def get_op(name: str) -> Op:
    try:
        return OPS[name]
    except KeyError:
        raise TypeInferenceError(f"unknown core op '{name}'") from None


def same_dtype(op: Op, *types: TensorType) -> str:
    dts = {t.dtype for t in types}
    if len(dts) != 1:
        raise op.fail(f"operands must have one dtype, got {', '.join(str(t) for t in types)}")
    return dts.pop()

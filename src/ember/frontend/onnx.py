"""The ONNX frontend: ``from_onnx(path | ModelProto) -> Graph``.

Translates an ONNX model node by node into core ops with ONNX's exact semantics, never
optimizing.  The op translations live in :mod:`ember.frontend.onnx_ops`, one module per op
family; this module loads the model, checks that every op is supported before doing any work,
binds graph inputs and initializers, runs the translations in order and names the outputs.

Operands that ONNX passes as tensors but that are really attributes (shapes, axes, pads,
starts/ends, repeats, ...) must be constants: initializers, ``Constant`` nodes, or values that
fold because every input of the core op that computes them is constant (a core op whose inputs
are all constants is evaluated at once with its numpy reference and becomes a constant, so
``Shape -> Gather -> Concat -> Reshape`` chains over static shapes fold away).  When such an
operand is computed from graph inputs instead, the translation raises
:class:`OperandNotConstantError` naming those inputs: a caller that knows their values (the ONNX
backend, at run time) can make them initializers and compile a model specialized to them.

Symbolic dimensions (an input's ``dim_param``, or a name given in ``shapes=``) stay symbolic
(``ember.symbolic``).  The shape arithmetic over them (``Shape -> Gather -> Unsqueeze -> Concat
-> Reshape``, ``Expand``, ``ConstantOfShape``, ...) is evaluated at translation time on values
that hold symbolic dimensions (``frontend.core.shape_values``), so the graph gets symbolic shapes,
not shape computations; such a value read as data (a ``Mul`` by a sequence length) is computed
with the core ``arange`` op, as is a ``Range`` over a symbolic length.  Upper bounds of the
symbols come from ``bounds=``, and from the model where it only works within one (slicing a
512-long table by ``seq`` means ``seq <= 512``); they end up in ``Graph.bounds``.

An op without a translation of its own is still supported when its ONNX schema defines it as a
function of other ops (Attention, RotaryEmbedding, the losses, ...): the node is replaced by the
function body.  Model-local functions are inlined on load, and an ``If`` whose condition folds
to a constant is replaced by its taken branch.

A model given as a path or bytes is read by :mod:`ember.frontend.onnx_proto` (no onnx import);
an ``onnx.ModelProto`` is read as it is.  The code reads both kinds alike (their field names
are the same), and imports onnx only where a feature needs the package: model-local functions
(``onnx.inliner``) and tensors of the packed 4- and 2-bit types or complex numbers
(``numpy_helper``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from math import prod
from typing import Any, Mapping, Sequence

import numpy as np

from .. import limits
from ..errors import (FrontendError, GraphError, InvalidModelError, LimitError, ModelFileError, ModelLoadError,
                      TypeInferenceError, UnsupportedOpError)
from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Value, constant
from ..graph.types import TensorType, is_float, np_dtype
from ..graph.verify import verify
from ..ops import get_op
from ..symbolic import Sym, SymbolicError, bind as bind_dims, compare, dim_range, is_identifier, symbol
from . import onnx_proto
from .onnx_files import MAX_MODEL_BYTES, read_external_data, read_model_file
from .onnx_proto import A as _A, T as _T, attribute_value, attr_type_name, is_light, schema_default, \
    schema_function_body, to_onnx
from .onnx_validate import (check_declared_types, check_graph, check_operand_types, check_raw_length,
                            check_versions, onnx_type_str, schema_of, tensor_nbytes)
from .core import NodeContext as CoreNodeContext, check_supported, computed_from_constants
from .core.shape_values import FOLDABLE, Ratio, fold

__all__ = ["from_onnx", "onnx_dtype", "NodeContext", "OperandNotConstantError", "SequenceValue",
           "RunSequence", "OptionalValue"]

# ONNX TensorProto element types -> IR dtype names (numpy spelling).
_ONNX_DTYPES = {
    1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 8: "string",
    9: "bool", 10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16",
    17: "float8_e4m3fn", 18: "float8_e4m3fnuz", 19: "float8_e5m2", 20: "float8_e5m2fnuz", 21: "uint4",
    22: "int4", 23: "float4_e2m1fn", 24: "float8_e8m0fnu", 25: "uint2", 26: "int2",
}
_ONNX_TYPE_NAMES = {
    0: "UNDEFINED", 14: "COMPLEX64", 15: "COMPLEX128", 27: "FLOAT6E2M3", 28: "FLOAT6E3M2",
}

_DEFAULT_DOMAINS = ("", "ai.onnx")
_PACKED_TYPES = (21, 22, 23, 25, 26)     # uint4, int4, float4_e2m1fn, uint2, int2: several to a byte


class SequenceValue:
    """An ONNX sequence while translating: a list of tensors, all of dtype ``dtype``.  The core
    graph has tensors only; a sequence graph input is one graph input per element (``x[0]``,
    ``x[1]``, ...) and a sequence graph output one graph output per element (``y[0]``, ...)."""

    def __init__(self, items: Sequence[Value], dtype: str):
        self.items = list(items)
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"SequenceValue({self.items!r}, {self.dtype})"


class RunSequence:
    """An ONNX sequence whose length and element shapes the run decides (a sequence graph input
    that ``shapes=`` does not pin, and what the ops make of it), laid out as two tensors:
    ``data``, the elements' values one after the other (1-D, each element in row-major order),
    and ``shapes``, int64 ``[count, rank]``, the elements' shapes.  A graph input ``x`` is the
    graph inputs ``x`` (data) and ``x#shapes``; a graph output ``y`` the graph outputs ``y`` and
    ``y#shapes`` (``Module`` packs and unpacks Python lists of arrays).  ``rank`` may be a symbol
    where the model declares no rank for the elements."""

    def __init__(self, data: Value, shapes: Value, dtype: str):
        self.data, self.shapes, self.dtype = data, shapes, dtype

    @property
    def count(self):
        return self.shapes.shape[0]

    @property
    def rank(self):
        return self.shapes.shape[1]

    def __repr__(self) -> str:
        return f"RunSequence({self.data!r}, {self.shapes!r}, {self.dtype})"


#: The ops that take a :class:`RunSequence` (``onnx_ops/sequence.py``); others refuse one by name
RUN_SEQUENCE_OPS = frozenset({"Identity", "SequenceLength", "SequenceAt", "SequenceInsert", "SequenceErase",
                              "ConcatFromSequence", "SequenceMap", "Optional", "OptionalHasElement",
                              "OptionalGetElement"})


class OptionalValue:
    """An ONNX optional while translating: a Value or SequenceValue, or None when empty.  An
    optional graph output ``y`` is a bool graph output ``y?`` (whether it holds a value)
    followed, when it does, by its value's graph output(s).

    ``present``, when given, is a bool scalar Value that says at run time whether the optional
    holds ``value`` (an optional tensor graph input whose presence ``shapes=`` leaves open: the
    graph inputs ``x?`` and ``x``, both with defaults, see ``_Translator._bind_input``); an
    output holding it then gives ``y?`` from that flag, and ``y`` holds whatever the value
    input held (its default where absent)."""

    def __init__(self, value: "Value | SequenceValue | None", present: "Value | None" = None):
        self.value = value
        self.present = present

    def __repr__(self) -> str:
        return f"OptionalValue({self.value!r}" + (f", present={self.present!r})" if self.present is not None else ")")


class OperandNotConstantError(InvalidModelError):
    """An operand that Ember needs at compile time (a shape, axes, pads, a count, ...) is computed
    from graph inputs.  ``inputs`` names those graph inputs: binding them to values (making them
    initializers) lets the model compile, specialized to those values."""

    def __init__(self, message: str, inputs: Sequence[str], *, node: str | None = None,
                 op: str | None = None):
        self.inputs = tuple(inputs)
        super().__init__(message, node=node, op=op)

_MISSING = object()


def onnx_dtype(elem_type: int, what: str = "tensor", node: str | None = None, op: str | None = None) -> str:
    """The IR dtype of an ONNX element type; unsupported types raise a frontend error."""
    try:
        return _ONNX_DTYPES[int(elem_type)]
    except KeyError:
        name = _ONNX_TYPE_NAMES.get(int(elem_type), f"#{elem_type}")
        raise FrontendError(f"{what} has element type {name}, which Ember does not support",
                            node=node, op=op) from None


def op_key(node) -> str:
    """How an op type is named in support checks: bare in the default domain, else 'domain:Op'."""
    return node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}:{node.op_type}"


def _domain(d: str) -> str:
    """A domain as the opset tables key it ('' for the default domain)."""
    return "" if d in _DEFAULT_DOMAINS else d


# ---- loading --------------------------------------------------------------------------------

def load_model(path: str):
    """The ModelProto of the model file at ``path``, its external data left unread (from_onnx
    reads it while translating): a regular file below protobuf's size limit that parses.  It is
    read by :mod:`~ember.frontend.onnx_proto` (no onnx import), its raw tensor data views of the
    file's bytes."""
    return _load(path)


def _is_onnx_model(model: Any) -> bool:
    """Whether ``model`` is an onnx.ModelProto (without importing onnx: one can only exist
    once onnx is imported)."""
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(model, onnx.ModelProto)


def _load(model: Any):
    if _is_onnx_model(model) or isinstance(model, onnx_proto.ModelProto):
        mp = model
        where = "the given ModelProto"
    elif isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        where = f"'{path}'"
        mp = _parse(read_model_file(path), where)
    elif isinstance(model, (bytes, bytearray, memoryview)):
        where = "the given bytes"
        if len(model) > MAX_MODEL_BYTES:
            raise ModelFileError(f"the given bytes ({len(model)}) exceed protobuf's limit of "
                                 f"{MAX_MODEL_BYTES} bytes for one ONNX model")
        mp = _parse(model if isinstance(model, bytes) else bytes(model), where)
    else:
        raise ModelLoadError(f"from_onnx expects a path, bytes or onnx.ModelProto, got {type(model).__name__}")
    if mp.ir_version <= 0 or not mp.HasField("graph") or not mp.graph.output:
        raise ModelLoadError(f"{where} is not an ONNX model (no IR version, graph or outputs)")
    return mp


def _parse(data: bytes, where: str):
    return onnx_proto.parse_model(data, where)


def _from_raw(raw: bytes, t, dtype: str) -> np.ndarray | None:
    """The array of raw little-endian data ``raw`` (its length checked) of tensor ``t``, when
    its IR dtype stores one element in whole bytes as ONNX does; None for the packed 4- and
    2-bit types and on big-endian hosts (numpy_helper unpacks those)."""
    import sys

    if sys.byteorder != "little" or t.data_type in _PACKED_TYPES:
        return None
    nd = np_dtype(dtype)
    if nd.kind == "O" or len(raw) != nd.itemsize * prod(t.dims):
        return None
    return np.frombuffer(raw, dtype=nd).reshape(tuple(t.dims))


_FIELD_DTYPES = {"float_data": "float32", "int64_data": "int64", "double_data": "float64", "uint64_data": "uint64"}


def _from_fields(t, dtype: str) -> np.ndarray | None:
    """The array of tensor ``t`` stored in its typed data fields (float_data, int32_data, ...),
    for the whole-byte types; None for those onnx's numpy_helper converts (the packed types,
    complex, and narrow floats' bit patterns whose dtype needs ml_dtypes, which the IR dtype then
    imports anyway)."""
    code = t.data_type
    if code in _PACKED_TYPES or code in (14, 15):
        return None
    shape = tuple(t.dims)
    n = prod(shape)
    if code == 8:
        try:
            vals = [s.decode("utf-8") for s in t.string_data]
        except UnicodeDecodeError:
            return None
        return np.array(vals, dtype=object).reshape(shape) if len(vals) == n else None
    nd = np_dtype(dtype)
    for field, src in _FIELD_DTYPES.items():
        vals = getattr(t, field)
        if len(vals):
            if len(vals) != n:
                return None
            return np.asarray(vals, dtype=src).astype(nd, copy=False).reshape(shape)
    vals = t.int32_data
    if len(vals) != n:
        return None if len(vals) else np.zeros(shape, nd) if n == 0 else None
    a = np.asarray(vals, dtype=np.int64)
    if nd.kind == "f" and nd.itemsize <= 2 or nd.kind == "V" or nd.name.startswith(("bfloat", "float8")):
        bits = np.dtype(f"uint{8 * nd.itemsize}")
        return (a & ((1 << (8 * nd.itemsize)) - 1)).astype(bits).view(nd).reshape(shape)   # bit patterns
    return a.astype(nd).reshape(shape)


def _default_opset(mp) -> int | None:
    for imp in mp.opset_import:
        if imp.domain in _DEFAULT_DOMAINS:
            return int(imp.version)
    return None


# ---- per-node context handed to the op translations -----------------------------------------

class NodeContext(CoreNodeContext):
    """What a translation sees of one ONNX node: its inputs as Values, its attributes, and
    helpers that emit core ops (folding those whose inputs are all constants, and evaluating
    shape arithmetic over symbolic dimensions)."""

    framework = "ONNX"

    def __init__(self, tr: "_Translator", node, name: str, opset: int):
        super().__init__(tr.b, name, node.op_type)
        self._tr = tr
        self.node = node
        self.opset = opset  # of the node's domain (a function body may import its own)
        self._attrs = {a.name: a for a in node.attribute}

    # -- inputs and outputs ----------------------------------------------------------------

    @property
    def num_inputs(self) -> int:
        """Number of declared inputs (trailing empty names are optional inputs left out)."""
        names = list(self.node.input)
        while names and not names[-1]:
            names.pop()
        return len(names)

    @property
    def num_outputs(self) -> int:
        return len(self.node.output)

    def input(self, i: int, required: bool = True) -> Value | None:
        names = self.node.input
        if i >= len(names) or not names[i]:
            if required:
                raise self.fail(f"input {i} is required")
            return None
        return self._tr.lookup(names[i], self)

    def inputs(self) -> list[Value]:
        return [self._tr.lookup(n, self) for n in self.node.input if n]

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and bool(self.node.input[i])

    def graph_nodes(self) -> list:
        """The nodes of the ONNX graph being translated (the model's main graph)."""
        return list(self._tr.g.node)

    def lookup(self, name: str) -> Value:
        """The value of the ONNX tensor ``name`` translated so far."""
        return self._tr.lookup(name, self)

    def output_used(self, k: int) -> bool:
        outs = self.node.output
        return k < len(outs) and bool(outs[k]) and outs[k] in self._tr.used

    def const_input(self, i: int, what: str, required: bool = False) -> np.ndarray | None:
        """The value of input ``i``, which must be constant; None when absent and optional."""
        v = self.input(i, required=required)
        if v is None:
            return None
        return self.const_of(v, what)

    def const_of(self, v: Value, what: str) -> np.ndarray:
        if self.is_symbolic(v):
            syms = sorted({s for d in self._tr.symvals[v.uid].reshape(-1) if isinstance(d, Sym) for s in d.symbols()})
            raise OperandNotConstantError(
                f"{what} (input '{v.name}') depends on the symbolic dimension(s) {', '.join(syms)}, and this "
                f"op needs it at compile time; fix those dimensions with shapes=",
                [], node=self.name, op=self.op_type)
        if not v.is_const:
            folded = computed_from_constants(v)
            if folded is not None:
                return folded
            feeding = self._tr.inputs_feeding(v)
            src = f"; it is computed from graph input(s) {', '.join(map(repr, feeding))}" if feeding else ""
            raise OperandNotConstantError(
                f"{what} (input '{v.name}') must be a constant (an initializer, a Constant node or "
                f"computable from them at compile time): the compiled model takes it as fixed{src}",
                feeding, node=self.name, op=self.op_type)
        return v.const

    def known_input(self, i: int) -> np.ndarray | None:
        """The value of input ``i`` when it is known at compile time (a constant, or computable
        from constants); None when it is absent or only known at run time (computed from graph
        inputs, or a symbolic shape value).  For operands that an op also takes as data."""
        v = self.input(i, required=False)
        if v is None or self.is_symbolic(v):
            return None
        return v.const if v.is_const else computed_from_constants(v)

    def needs_constant(self, v: Value, what: str, why: str) -> OperandNotConstantError:
        """The error for operand ``v``, which the op takes at run time in general but needs at
        compile time here because ``why``; it names the graph inputs ``v`` is computed from."""
        feeding = self._tr.inputs_feeding(v)
        src = f"; it is computed from graph input(s) {', '.join(map(repr, feeding))}" if feeding else ""
        return OperandNotConstantError(f"{what} (input '{v.name}') {why}, so it must be a constant{src}",
                                       feeding, node=self.name, op=self.op_type)

    def is_symbolic(self, v: Value) -> bool:
        """Whether ``v`` is a shape value holding symbolic dimensions (see shape_values)."""
        return v is not None and v.uid in self._tr.symvals

    def dims_input(self, i: int, what: str, required: bool = False) -> list | None:
        """Input ``i`` as a list of dimensions (ints or symbolic), for shapes, starts, ends and
        lengths; it must be a constant or a symbolic shape value."""
        v = self.input(i, required=required)
        if v is None:
            return None
        if self.is_symbolic(v):
            return [d if isinstance(d, Sym) else int(d) for d in self._tr.symvals[v.uid].reshape(-1)]
        arr = self.const_of(v, what)
        if arr.dtype.kind not in "iub":
            raise self.fail(f"{what} must be integers, got {arr.dtype}")
        return [int(x) for x in np.asarray(arr).reshape(-1)]

    def sym_value(self, arr: np.ndarray, dtype: str = "int64") -> Value:
        """A value holding ``arr``, an array of dimensions: a constant when they are all numbers,
        else a symbolic shape value."""
        flat = list(arr.reshape(-1))
        if not any(isinstance(d, (Sym, Ratio)) for d in flat):
            num = float if is_float(dtype) else int
            return self.const(np.array([num(d) if not isinstance(d, (bool, np.bool_)) else d for d in flat],
                                       dtype=np_dtype(dtype)).reshape(arr.shape), dtype)
        v = Value(self.b.fresh(self.name + "_shape"), TensorType(arr.shape, dtype))
        self._tr.symvals[v.uid] = arr
        return v

    def assume_at_most(self, d, limit: int, what: str) -> bool:
        """Whether dimension ``d`` <= ``limit``: decided by the symbols' bounds, or taken as a
        bound of ``d``'s symbol (recorded in the graph's bounds) when ``d`` is a symbol plus a
        constant without a declared bound of its own.  False when the bounds say otherwise."""
        tr = self._tr
        r = compare(d, "<=", limit, tr.bounds)
        if r is not None or not isinstance(d, Sym):
            return bool(r)
        base = d - d.const                 # the symbol of ``symbol + constant``
        if isinstance(base, Sym) and base.name is not None:
            name = base.name
            if name in tr.declared_bounds:
                raise self.fail(f"{what}: the model needs {d} <= {limit} here, but bounds= lets {name} "
                                f"reach {tr.declared_bounds[name]}; declare {name} <= {limit - d.const}")
            tr.bounds[name] = min(tr.bounds.get(name, limit - d.const), limit - d.const)
            tr.bounds.consulted.add(name)
            return True
        raise self.fail(f"{what}: whether {d} <= {limit} depends on the symbols' values; "
                        f"declare their bounds with bounds=")

    @property
    def bounds(self) -> dict[str, int]:
        """The symbols' upper bounds known so far."""
        return self._tr.bounds

    def require(self, dim, op: str, what: str) -> None:
        """That the symbols' values make ``dim == 0`` (``op`` "==") or ``dim >= 0`` (">="), which
        only the run decides: a check of the graph (``Graph.checks``), made when the input
        shapes bind the symbols, before anything runs (``what``: the need, named for the user).
        Nothing when it holds for every size; an error of the model when no size makes it hold.
        The bounds are not consulted: a bound that decided it would become a limit of the
        artifact, where the run-time check costs nothing."""
        holds = compare(dim, op, 0, None)
        if holds is True:
            return
        if holds is False:
            raise self.fail(f"needs {what}, which no input shapes give ({dim} {op} 0)")
        if isinstance(dim, Sym) and dim.symbols() & self._tr.data_symbols:
            # the checks are made when the input shapes bind the symbols, before the data does
            raise self.fail(f"needs {what} ({dim} {op} 0), which only the data decides; Ember checks "
                            "only what the input shapes decide")
        check = (dim, op, f"{self.op_type} node '{self.name}' needs {what}")
        if check not in self._tr.b.checks:
            self._tr.b.checks.append(check)

    def bound(self, d) -> int | None:
        """The largest value of dimension ``d`` that the symbols' bounds allow (None when one of
        its symbols has no bound)."""
        return dim_range(d, self._tr.bounds)[1]

    def unrolled_length(self, d, what: str) -> int:
        """How many steps to emit for a length ``d`` that decides the number of nodes (an
        unrolled recurrence): ``d`` itself, or the upper bound of a symbolic one, the steps past
        its actual value left to the translation to mask.  An error naming ``what`` when ``d``
        has no bound."""
        if not isinstance(d, Sym):
            return int(d)
        hi = self.bound(d)
        if hi is None:
            raise self.fail(f"{what} has the symbolic length {d}, and the steps over it are emitted at compile "
                            f"time: give its symbols an upper bound with bounds= (or fix it with shapes=)")
        return max(hi, 0)

    def data_symbol(self, what: str, bound: int | None = None) -> str:
        """A new symbol for a dimension of this node's output that only the data decides (the
        length of a string op's result), with its upper bound when one is known."""
        tr = self._tr
        base = _symbol_name(f"{self.name}_{what}")
        taken = set(tr.bounds) | tr.data_symbols | {s for v in tr.b.inputs for s in v.type.symbols}
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        tr.data_symbols.add(name)
        if bound is not None:
            tr.bounds[name] = int(bound)
        return name

    def ints_input(self, i: int, what: str, required: bool = False) -> list[int] | None:
        arr = self.const_input(i, what, required)
        if arr is None:
            return None
        if arr.dtype.kind not in "iub":
            raise self.fail(f"{what} must be integers, got {arr.dtype}")
        return [int(x) for x in np.asarray(arr).reshape(-1)]

    # -- attributes ------------------------------------------------------------------------

    def has_attr(self, name: str) -> bool:
        return name in self._attrs

    def attr(self, name: str, default: Any = _MISSING) -> Any:
        a = self._attrs.get(name)
        if a is None:
            if default is _MISSING:
                raise self.fail(f"missing required attribute '{name}'")
            return default
        T = _A
        if a.type == T.TENSOR:
            return self._tr.tensor_array(a.t, f"attribute '{name}'", self)
        if a.type in (T.GRAPH, T.GRAPHS, T.SPARSE_TENSOR, T.SPARSE_TENSORS, T.TYPE_PROTO, T.TYPE_PROTOS,
                      T.TENSORS):
            raise self.unsupported(f"attribute '{name}' of type {attr_type_name(a.type)}")
        try:
            v = attribute_value(a)
        except ValueError as e:
            raise self.fail(str(e)) from None
        if isinstance(v, bytes):
            return v.decode("utf-8")
        if a.type == T.STRINGS:
            return [s.decode("utf-8") for s in v]
        if a.type in (T.INTS, T.FLOATS):
            return list(v)
        return v

    # -- emitting --------------------------------------------------------------------------

    def op(self, core: str, inputs: Sequence[Value], **attrs: Any) -> Any:
        """Emit one core op named after this node, or its value when every input is constant
        (or a symbolic shape value that the op's result can be computed from at compile time)."""
        inputs = list(inputs)
        tr = self._tr
        if any(self.is_symbolic(v) for v in inputs):
            if core in FOLDABLE and all(v.is_const or self.is_symbolic(v) for v in inputs):
                opdef = get_op(core)
                a = opdef.fill_attrs(attrs, self.name)
                types = opdef.infer_types(a, [v.type for v in inputs], self.name)
                try:
                    out = fold(core, a, [tr.symvals[v.uid] if self.is_symbolic(v) else v.const for v in inputs],
                               tr.bounds, types[0].dtype)
                except SymbolicError:
                    out = None
                if out is not None and len(types) == 1 and tuple(out.shape) == types[0].shape:
                    return self.sym_value(out, types[0].dtype)
            inputs = [tr.materialize(v, self) if self.is_symbolic(v) else v for v in inputs]
        return super().op(core, inputs, **attrs)

    def inline_graph(self, attr: str, bind: Sequence[Value] = (), tag: str = "") -> list[Value]:
        """Translate the subgraph held by attribute ``attr`` in place; returns its outputs.
        ``bind`` gives the values of its formal inputs (a loop body's); ``tag`` tells apart
        several copies of one subgraph (the iterations of an unrolled loop)."""
        return self._tr.inline_graph(self.graph_attr(attr), f"{self.name}/{attr}{tag}", self.opset, bind)

    def region_graph(self, attr: str, formals: Sequence[tuple[str, TensorType]] = (),
                     branch: bool = False, outputs=None) -> tuple[Graph, list[Value]]:
        """Translate the subgraph held by attribute ``attr`` into a graph of its own (the body
        of a region op): its inputs are ``formals`` (name, type), then one per outer value it
        reads (the *captures*, returned in that order).  What the body needs of the symbols
        (``Graph.checks``) is checked with the enclosing graph's, before the run, unless it is
        a ``branch`` that the run may not take: then it is checked when the branch runs.
        ``outputs(k, v)``, when given, lays out the subgraph's output ``k`` (a tensor, sequence
        or optional) as the tensors the graph outputs for it; by default each output must be
        a tensor."""
        return self._tr.region_graph(self.graph_attr(attr), f"{self.name}/{attr}", self.opset, formals, self,
                                     branch, outputs)

    def graph_attr(self, attr: str):
        """The GraphProto held by attribute ``attr``."""
        a = self._attrs.get(attr)
        if a is None or not a.HasField("g"):
            raise self.fail(f"missing graph attribute '{attr}'")
        return a.g


# ---- the translator -------------------------------------------------------------------------

class _ConsultedBounds(dict):
    """Symbol bounds that remember which symbols a translation looked up: a bound that decided
    something is a limit of the artifact, one never consulted only a planning size."""

    def __init__(self, *args):
        super().__init__(*args)
        self.consulted: set[str] = set()

    def get(self, key, default=None):
        if key in self:
            self.consulted.add(key)
        return super().get(key, default)

    def __getitem__(self, key):
        self.consulted.add(key)
        return super().__getitem__(key)


class _Translator:
    def __init__(self, mp, shapes: Mapping[str, Sequence[int]] | None, base_dir: str | None,
                 bounds: Mapping[str, int] | None = None):
        self.mp = mp
        self.g = mp.graph
        self.shapes = dict(shapes or {})
        self.declared_bounds = {str(k): int(v) for k, v in (bounds or {}).items()}
        for k, v in self.declared_bounds.items():
            if not is_identifier(k) or v < 0:
                raise InvalidModelError(f"bounds= needs symbol names and non-negative sizes, got {k!r}: {v!r}")
        self.bounds = _ConsultedBounds(self.declared_bounds)
        self.symvals: dict[int, np.ndarray] = {}     # uid of a symbolic shape value -> its dimensions
        self.materialized: dict[int, Value] = {}
        self.base_dir = base_dir
        self.opset = _default_opset(mp) or 0
        self.opsets = {_domain(imp.domain): int(imp.version) for imp in mp.opset_import}
        self.b = GraphBuilder(self.g.name or "onnx_graph")
        self.env: dict[str, Value] = {}
        self.used: set[str] = set()
        self.input_names: dict[int, str] = {}   # uid of a graph-input Value -> its ONNX name
        self.data_symbols: set[str] = set()     # symbols of dimensions the data decides (string ops)
        self.run_time_squeezes: dict[int, tuple] = {}   # uid -> axes a Squeeze drops where 1 (Graph.squeezes)
        self.data_bindings: list[Value] = []    # operands bound at run time (onnx_ops/data_dims.py)
        self.data_bound: dict[str, Value] = {}  # each data symbol's bind_dims output
        # (value uid, position) of each bound element's origin -> (symbol, bind_dims output, position)
        self.data_origins: dict[tuple[int, int], tuple[str, Value, int]] = {}
        self.region_depth = 0       # > 0 while translating the body of a region op (``building``)
        self.depth = 0                          # subgraphs and function bodies being translated

    # -- values ----------------------------------------------------------------------------

    def materialize(self, v: Value, cx: "NodeContext") -> Value:
        """A symbolic shape value as a tensor computed at run time (from ``arange`` ops)."""
        done = self.materialized.get(v.uid)
        if done is not None:
            return done
        arr = self.symvals[v.uid]
        if v.dtype in ("float32", "float64") and not any(isinstance(d, (Ratio, float)) for d in arr.reshape(-1)):
            # whole dimensions in a float shape value: computed as integers, then converted
            whole = Value(self.b.fresh(cx.name + "_shape"), TensorType(v.shape, "int64"))
            self.symvals[whole.uid] = arr
            out = self.b.op("cast", [self.materialize(whole, cx)], name=f"{cx.name}_dims", to=v.dtype)
            self.materialized[v.uid] = out
            return out
        if v.dtype not in ("int64", "int32", "uint64", "uint32", "int16", "int8", "uint8", "uint16"):
            raise cx.fail(f"a symbolic shape value of dtype {v.dtype} cannot be computed")
        parts = [self._data_dim(d, cx, v.dtype) if isinstance(d, Sym) and d.symbols() & self.data_symbols else
                 self.b.op("arange", [], name=f"{cx.name}_dims", length=1, start=d, delta=0, dtype=v.dtype)
                 for d in arr.reshape(-1)]
        if not parts:
            out = cx.const(np.zeros(arr.shape, dtype=np_dtype(v.dtype)), v.dtype)
        else:
            out = parts[0] if len(parts) == 1 else self.b.op("concat", parts, name=f"{cx.name}_dims", axis=0)
            out = self.b.op("reshape", [out], name=f"{cx.name}_dims", shape=tuple(arr.shape))
        self.materialized[v.uid] = out
        return out

    def _data_dim(self, d: Sym, cx: "NodeContext", dtype: str) -> Value:
        """A dimension that mentions data symbols as a 1-element tensor, ordered after the
        bindings of its symbols: the element count of a broadcast of shape (d,) that reads
        their bound values."""
        name = f"{cx.name}_dims"
        t = cx.scalar(1, "int64")
        binders = {self.data_bound[s].uid: self.data_bound[s] for s in sorted(d.symbols() & self.data_symbols)
                   if s in self.data_bound}
        for b in binders.values():
            t = self.b.op("broadcast_to", [t, b], name=name, shape=())
        t = self.b.op("broadcast_to", [t], name=name, shape=(d,))
        out = self.b.op("reduce_sum", [t], name=name, axes=(0,), keepdims=True)
        return out if dtype == "int64" else self.b.op("cast", [out], name=name, to=dtype)

    def inputs_feeding(self, v: Value) -> list[str]:
        """The ONNX graph inputs that ``v`` is computed from, in graph-input order."""
        found: set[str] = set()
        seen: set[int] = set()
        stack = [v]
        while stack:
            u = stack.pop()
            if u.uid in seen:
                continue
            seen.add(u.uid)
            if u.uid in self.input_names:
                found.add(self.input_names[u.uid])
            elif u.producer is not None:
                stack.extend(u.producer.inputs)
        return [vi.name for vi in self.g.input if vi.name in found]

    def lookup(self, name: str, cx: NodeContext | None = None) -> Value:
        try:
            return self.env[name]
        except KeyError:
            raise InvalidModelError(f"reads tensor '{name}', which no node, input or initializer defines",
                                    node=cx.name if cx else None, op=cx.op_type if cx else None) from None

    def tensor_array(self, t, what: str, cx: NodeContext | None = None) -> np.ndarray:
        """A TensorProto (initializer or attribute) as a numpy array of its IR dtype, one element
        per item.  Raw data of whole-byte types is viewed, not copied; the typed data fields are
        converted here; onnx's numpy_helper (importing onnx) unpacks the 4-bit and 2-bit types
        ONNX packs several to a byte (from raw_data or int32_data alike) into ml_dtypes arrays."""
        node, op = (cx.name, cx.op_type) if cx else (None, None)
        dtype = onnx_dtype(t.data_type, f"{what} '{t.name}'" if t.name else what, node, op)
        if t.data_location == _T.EXTERNAL:
            if self.base_dir is None:
                raise ModelLoadError(
                    f"{what} '{t.name}' keeps its data in an external file; pass the model's path to "
                    f"from_onnx (or load it with onnx.load(path), which reads external data)")
            raw = read_external_data(t, self.base_dir, tensor_nbytes(t), what)
            arr = _from_raw(raw, t, dtype)
            if arr is None:
                from onnx import numpy_helper

                data = to_onnx(t)
                del data.external_data[:]
                data.data_location = _T.DEFAULT
                data.raw_data = raw
                try:
                    arr = numpy_helper.to_array(data)
                except Exception as e:
                    raise ModelLoadError(f"cannot read external data of {what} '{t.name}': {e}") from None
        else:
            arr = None
            if t.HasField("raw_data"):
                raw = t.raw_data
                check_raw_length(t, len(raw), what, node, op)
                arr = _from_raw(raw, t, dtype)
            if arr is None:
                arr = _from_fields(t, dtype)
            if arr is None:
                from onnx import numpy_helper

                try:
                    arr = numpy_helper.to_array(to_onnx(t))
                except Exception as e:
                    raise ModelLoadError(f"{what} '{t.name}' is corrupt: {e}") from None
        return np.asarray(arr, dtype=np_dtype(dtype))

    # -- steps -----------------------------------------------------------------------------

    def check_support(self, nodes) -> None:
        check_supported(((op_key(node), node.name or f"{node.op_type}_{k}") for k, node in enumerate(nodes)
                         if not self.supported(node, self.opsets)), "ONNX")
        if self.opset == 0 and any(n.domain in _DEFAULT_DOMAINS for n in nodes):
            raise InvalidModelError("the model uses ONNX ops but imports no version of the default "
                                    "ONNX domain (opset_import)")

    def overridable(self) -> set[str]:
        """Initializers that are also graph inputs, in a model of IR version 4 or later: there
        the initializer is the input's default value, which the caller may override (as in
        onnxruntime); before IR 4 every initializer had to be listed as an input, and is a
        constant."""
        if self.mp.ir_version < 4:
            return set()
        return {t.name for t in self.g.initializer} & {vi.name for vi in self.g.input}

    def bind_initializers(self) -> None:
        defaults = self.overridable()
        for t in self.g.initializer:
            if t.name not in defaults:
                self.env[t.name] = self.b.const(self.tensor_array(t, "initializer"), name=t.name)
        for st in self.g.sparse_initializer:
            raise UnsupportedOpError({"sparse initializer": [st.values.name or "?"]})

    def bind_inputs(self) -> None:
        defaults = self.overridable()
        init_names = {t.name for t in self.g.initializer} - defaults
        declared = [vi.name for vi in self.g.input if vi.name not in init_names]
        unknown = sorted(set(self.shapes) - set(declared))
        if unknown:
            raise InvalidModelError(f"shapes= names {unknown}, which are not graph inputs; "
                                    f"the inputs are {declared}")
        inits = {t.name: t for t in self.g.initializer if t.name in defaults}
        for vi in self.g.input:
            if vi.name in init_names:
                continue  # before IR 4: an initializer listed as an input is a constant
            if vi.name in inits:
                self.env[vi.name] = self._bind_default(vi, inits[vi.name])
                continue
            self.env[vi.name] = self._bind_input(vi.name, vi.type, self.shapes.get(vi.name, _MISSING),
                                                 vi.name)

    def _bind_default(self, vi, init) -> Value:
        """Graph input ``vi`` whose default value is initializer ``init`` (IR >= 4): an input of
        the declared type (the initializer's shape where the input declares none), the value
        kept as its default (``Graph.defaults``)."""
        arr = self.tensor_array(init, "initializer")
        tp = vi.type
        if tp.WhichOneof("value") != "tensor_type":
            raise InvalidModelError(f"graph input '{vi.name}' has a default value (an initializer of that "
                                    f"name), so it must be a tensor")
        dtype = onnx_dtype(tp.tensor_type.elem_type, f"graph input '{vi.name}'")
        if np_dtype(dtype) != arr.dtype:
            raise InvalidModelError(f"graph input '{vi.name}' is declared {dtype}, but its default value (the "
                                    f"initializer of that name) is {arr.dtype}")
        pinned = self.shapes.get(vi.name)
        if pinned is None and not tp.tensor_type.HasField("shape"):
            pinned = arr.shape
        shape = self._input_shape(vi.name, tp.tensor_type, pinned)
        try:
            bind_dims(shape, arr.shape, {}, f"graph input '{vi.name}'")
        except SymbolicError:
            raise InvalidModelError(f"graph input '{vi.name}' is declared {TensorType(shape, dtype)}, but its "
                                    f"default value (the initializer of that name) has the shape "
                                    f"{list(arr.shape)}") from None
        v = self.b.input(vi.name, TensorType(shape, dtype))
        self.input_names[v.uid] = vi.name
        self.b.defaults[v.name] = arr
        return v

    def _bind_input(self, name: str, tp, pinned, onnx_name: str):
        """Graph input(s) for a value of ONNX type ``tp``: a tensor, or a sequence or optional
        whose structure ``pinned`` (from ``shapes=``) gives."""
        kind = tp.WhichOneof("value")
        if kind == "tensor_type":
            dtype = onnx_dtype(tp.tensor_type.elem_type, f"graph input '{name}'")
            shape = self._input_shape(name, tp.tensor_type, None if pinned is _MISSING else pinned)
            v = self.b.input(name, TensorType(shape, dtype))
            self.input_names[v.uid] = onnx_name
            return v
        if kind == "sequence_type":
            elem = tp.sequence_type.elem_type
            if elem.WhichOneof("value") != "tensor_type":
                raise FrontendError(f"graph input '{name}' is a sequence of non-tensors, which Ember does not support")
            dtype = onnx_dtype(elem.tensor_type.elem_type, f"graph input '{name}'")
            if pinned is _MISSING:
                return self._bind_run_sequence(name, elem.tensor_type, dtype, onnx_name)
            if pinned is None or not isinstance(pinned, (list, tuple)) or \
                    any(not isinstance(p, (list, tuple)) for p in pinned):
                raise InvalidModelError(
                    f"graph input '{name}' is a sequence: give the shapes of its tensors with "
                    f"from_onnx(..., shapes={{'{name}': [shape, ...]}})")
            return SequenceValue([self._bind_input(f"{name}[{k}]", elem, tuple(p), onnx_name)
                                  for k, p in enumerate(pinned)], dtype)
        if kind == "optional_type":
            elem = tp.optional_type.elem_type
            if pinned is _MISSING and elem.WhichOneof("value") == "tensor_type":
                return self._bind_optional_tensor(name, elem, onnx_name)
            if pinned is _MISSING and elem.WhichOneof("value") == "sequence_type" and \
                    elem.sequence_type.elem_type.WhichOneof("value") == "tensor_type":
                return self._bind_optional_sequence(name, elem, onnx_name)
            if pinned is _MISSING:
                raise InvalidModelError(
                    f"graph input '{name}' is an optional of a sequence: say whether it holds a value with "
                    f"from_onnx(..., shapes={{'{name}': None}}) (empty) or its value's shape(s)")
            if pinned is None:
                return OptionalValue(None)
            return OptionalValue(self._bind_input(name, elem, pinned, onnx_name))
        raise FrontendError(f"graph input '{name}' is a {(kind or 'unknown').replace('_type', '')}, "
                            f"which Ember does not support")

    def _bind_run_sequence(self, name: str, tt, dtype: str, onnx_name: str) -> RunSequence:
        """A sequence graph input whose length and element shapes the run decides: the graph
        inputs ``name`` (the elements' data, one after the other) and ``name#shapes`` (int64
        ``[count, rank]``), see :class:`RunSequence`.  The rank is the elements' declared one,
        else a symbol of its own."""
        rank = len(tt.shape.dim) if tt.HasField("shape") else symbol(_symbol_name(f"{name}_rank"))
        data = self.b.input(name, TensorType((symbol(_symbol_name(f"{name}_numel")),), dtype))
        shapes = self.b.input(f"{name}#shapes", TensorType((symbol(_symbol_name(f"{name}_count")), rank), "int64"))
        self.input_names[data.uid] = onnx_name
        self.input_names[shapes.uid] = onnx_name
        return RunSequence(data, shapes, dtype)

    def _bind_optional_tensor(self, name: str, tp, onnx_name: str) -> OptionalValue:
        """An optional tensor graph input whose presence the run decides: a bool scalar input
        ``name?`` (whether it holds a value; default false) and the tensor input ``name`` (default:
        zeros, of no elements along a symbolic dimension), both left out by a caller whose
        optional is empty."""
        flag = self.b.input(f"{name}?", TensorType((), "bool"))
        self.input_names[flag.uid] = onnx_name
        self.b.defaults[flag.name] = np.array(False)
        v = self._bind_input(name, tp, _MISSING, onnx_name)
        self.b.defaults[v.name] = np.zeros(tuple(d if isinstance(d, int) else 0 for d in v.shape), np_dtype(v.dtype))
        return OptionalValue(v, present=flag)

    def _bind_optional_sequence(self, name: str, tp, onnx_name: str) -> OptionalValue:
        """An optional sequence graph input whose presence the run decides: the flag ``name?``
        (default false) and the sequence's inputs ``name`` and ``name#shapes`` (defaults: no
        elements), all left out by a caller whose optional is empty."""
        flag = self.b.input(f"{name}?", TensorType((), "bool"))
        self.input_names[flag.uid] = onnx_name
        self.b.defaults[flag.name] = np.array(False)
        seq = self._bind_input(name, tp, _MISSING, onnx_name)
        self.b.defaults[seq.data.name] = np.zeros((0,), np_dtype(seq.dtype))
        self.b.defaults[seq.shapes.name] = np.zeros((0, seq.rank if isinstance(seq.rank, int) else 0), np.int64)
        return OptionalValue(seq, present=flag)

    def _input_shape(self, name: str, tt, pinned) -> tuple:
        declared: list[int | str | None] | None = None
        if tt.HasField("shape"):
            declared = []
            for d in tt.shape.dim:
                if d.HasField("dim_value") and d.dim_value >= 0:
                    declared.append(int(d.dim_value))
                elif d.HasField("dim_param") and d.dim_param:
                    declared.append(d.dim_param)
                else:
                    declared.append(None)
        if pinned is not None:
            if not isinstance(pinned, (list, tuple)):
                raise InvalidModelError(f"shapes['{name}'] must be a sequence of dimensions, got {pinned!r}")
            pinned = tuple(_pinned_dim(name, x) for x in pinned)
            if any(isinstance(d, int) and d < 0 for d in pinned):
                raise InvalidModelError(f"shapes['{name}'] = {list(pinned)} has a negative dimension")
            if declared is not None:
                if len(declared) != len(pinned):
                    raise InvalidModelError(f"shapes['{name}'] = {list(pinned)} has rank {len(pinned)}, "
                                            f"but the model declares rank {len(declared)} ({_show_dims(declared)})")
                for k, (d, p) in enumerate(zip(declared, pinned)):
                    if isinstance(d, int) and isinstance(p, int) and d != p:
                        raise InvalidModelError(f"shapes['{name}'] = {list(pinned)} sets dimension {k} to "
                                                f"{p}, but the model fixes it to {d}")
            return pinned
        if declared is None:
            raise InvalidModelError(
                f"graph input '{name}' has no declared shape (not even a rank); pin it with "
                f"from_onnx(..., shapes={{'{name}': (...)}})")
        # symbolic dimensions stay symbolic: a dim_param names its symbol (made an identifier),
        # an unnamed unknown dimension gets a symbol of its own, and so does a dim_param with no
        # letter or digit in it ("?", which paddle2onnx writes for each unknown size: two of
        # them are not the same size)
        out = []
        for k, d in enumerate(declared):
            if isinstance(d, int):
                out.append(d)
            else:
                named = bool(d) and any(c.isalnum() for c in d)
                out.append(symbol(_symbol_name(d) if named else _symbol_name(f"{name}_{k}")))
        return tuple(out)

    def translate(self, nodes) -> None:
        for node in nodes:
            self.used.update(n for n in node.input if n)
        self.used.update(o.name for o in self.g.output)
        for k, node in nodes_in_order(nodes, set(self.env)):
            self.translate_node(node, node.name or f"{node.op_type}_{k}", self.opsets)

    def translate_node(self, node, name: str, opsets: dict[str, int], from_model: bool = True) -> None:
        """Translate one node; ``from_model`` nodes (not those of an op's ONNX function body)
        have their operand types checked against the op's schema first."""
        from .onnx_ops import TRANSLATIONS

        if from_model:
            self.check_operand_types(node, name, opsets)
        fn = TRANSLATIONS.get(op_key(node))
        if fn is None:
            self.expand_function(node, name, opsets)
            return
        cx = NodeContext(self, node, name, opsets.get(_domain(node.domain), 0))
        if op_key(node) not in RUN_SEQUENCE_OPS and any(isinstance(self.env.get(x), RunSequence) for x in node.input):
            raise cx.unsupported("a sequence whose length the run decides (a sequence graph input that shapes= "
                                 "does not pin, or what is made of one); pin its structure with from_onnx(..., "
                                 "shapes={'x': [shape, ...]})")
        try:
            outs = fn(cx)
        except FrontendError:
            raise
        except LimitError as e:
            raise _in_terms_of(e, name, node.op_type) from None
        except MemoryError:
            raise cx.out_of_memory() from None
        except Exception as e:
            # type and shape errors raised by the builder already name node and op
            if getattr(e, "node", None) is not None:
                raise
            raise InvalidModelError(f"{type(e).__name__}: {e}", node=name, op=node.op_type) from e
        if isinstance(outs, (Value, SequenceValue, RunSequence, OptionalValue)) or outs is None:
            outs = [outs]
        outs = list(outs)
        if from_model:
            self.check_operand_types(node, name, opsets, outs)
        for j, out_name in enumerate(node.output):
            if not out_name:
                continue
            v = outs[j] if j < len(outs) else None
            if v is None:
                if out_name in self.used:
                    raise cx.unsupported(f"output {j} '{out_name}'")
                continue
            self.env[out_name] = v

    def check_operand_types(self, node, name: str, opsets: dict[str, int], outs=None) -> None:
        """The types of the node's operands (and with ``outs``, of its results) against its ONNX
        schema's type constraints."""
        schema = schema_of(node.op_type, node.domain, opsets)
        if schema is None or not schema.type_constraints:
            return
        out_types = None
        if outs is not None:
            out_types = [self._type_str(outs[j]) if j < len(outs) and o else None
                         for j, o in enumerate(node.output)]
        check_operand_types(schema, [self._type_str(self.env.get(x)) if x else None for x in node.input],
                            name, node.op_type, out_types)

    def _type_str(self, v) -> str | None:
        """The ONNX type string of a translated value (None when unknown)."""
        if isinstance(v, Value):
            return onnx_type_str(v.type.dtype)
        if isinstance(v, (SequenceValue, RunSequence)):
            return f"seq({onnx_type_str(v.dtype)})"
        if isinstance(v, OptionalValue) and v.value is not None:
            inner = self._type_str(v.value)
            return None if inner is None else f"optional({inner})"
        return None

    def inline_graph(self, g, prefix: str, opset: int, bind: Sequence[Value] = ()) -> list[Value]:
        """Translate a subgraph (If branch, loop body) whose names are local to it; it may read
        outer values.  ``bind`` gives the values of the subgraph's formal inputs, in order."""
        self.depth += 1
        try:
            limits.check_count("subgraph_depth", self.depth, f"the nesting of subgraph '{prefix}'")
            return self._inline_graph(g, prefix, opset, bind)
        finally:
            self.depth -= 1

    def _inline_graph(self, g, prefix: str, opset: int, bind: Sequence[Value]) -> list[Value]:
        if len(bind) != len(g.input):
            raise InvalidModelError(f"subgraph '{prefix}' declares {len(g.input)} inputs, "
                                    f"but {len(bind)} values are given")
        local = ({t.name for t in g.initializer} | {o for n in g.node for o in n.output if o}
                 | {i.name for i in g.input})
        ren = lambda x: f"{prefix}/{x}" if x in local else x  # noqa: E731
        for vi, v in zip(g.input, bind):
            self.env[ren(vi.name)] = v
        for t in g.initializer:
            self.env[ren(t.name)] = self.b.const(self.tensor_array(t, "initializer"), name=ren(t.name))
        nodes = []
        for k, inner in enumerate(g.node):
            n = type(inner)()
            n.CopyFrom(inner)
            del n.input[:], n.output[:]
            n.input.extend(ren(x) if x else "" for x in inner.input)
            n.output.extend(ren(x) if x else "" for x in inner.output)
            _rename_graph_attributes(n, ren)
            n.name = f"{prefix}/{inner.name or inner.op_type + '_' + str(k)}"
            nodes.append(n)
        for n in nodes:
            self.used.update(x for x in n.input if x)
        check_supported(((op_key(n), n.name) for n in nodes if not self.supported(n, {**self.opsets, "": opset})),
                        "ONNX")
        self.used.update(ren(o.name) for o in g.output)
        for n in nodes:
            self.translate_node(n, n.name, {**self.opsets, "": opset})
        return [self.lookup(ren(o.name)) for o in g.output]

    def region_graph(self, g, prefix: str, opset: int, formals, cx: "NodeContext",
                     branch: bool = False, outputs=None) -> tuple[Graph, list[Value]]:
        """Translate subgraph ``g`` into a graph of its own (see ``NodeContext.region_graph``)."""
        from .onnx_ops.control import body_output

        body = GraphBuilder(prefix)
        with self.building(body):
            params = [body.input(name, t) for name, t in formals]
            outs = self.inline_graph(g, prefix, opset, params)
            if outputs is None:
                outs = [body_output(cx, self, v, k) for k, v in enumerate(outs)]
            else:
                outs = [t for k, v in enumerate(outs) for t in outputs(k, v)]
        return self.closed_graph(body, params, outs, cx, branch)

    @contextlib.contextmanager
    def building(self, builder: GraphBuilder, *contexts: "NodeContext"):
        """Nodes emitted in the block (by translations, and by ``contexts``) go to ``builder``, a
        region body's; shape values materialized there stay there."""
        saved = self.b, self.materialized, [c.b for c in contexts]
        self.b, self.materialized = builder, {}
        self.region_depth += 1
        for c in contexts:
            c.b = builder
        try:
            yield
        finally:
            self.region_depth -= 1
            self.b, self.materialized = saved[0], saved[1]
            for c, b in zip(contexts, saved[2]):
                c.b = b

    def closed_graph(self, body: GraphBuilder, params: list[Value], outs: list[Value],
                     cx: "NodeContext", branch: bool = False) -> tuple[Graph, list[Value]]:
        """The graph of ``body``'s nodes with inputs ``params``, then one per outer value its
        nodes or ``outs`` read (the captures, returned in that order; outer shape values are
        materialized in the enclosing graph)."""
        produced = set(params) | {o for n in body.nodes for o in n.outputs}
        captures: list[Value] = []
        inner: dict[Value, Value] = {}

        def capture(v: Value) -> Value:
            if v.is_const or v in produced:
                return v
            if v not in inner:
                if v.uid in self.symvals:       # a shape value of the outer graph
                    v = self.materialize(v, cx)
                    if v in inner:
                        return inner[v]
                inner[v] = Value(body.fresh(v.name), v.type)
                captures.append(v)
            return inner[v]

        binds = [n.name for n in body.nodes if n.op == "bind_dims"]
        data = sorted({s for v in [*params, *outs, *(x for n in body.nodes for x in n.inputs)]
                       for s in v.type.symbols} & self.data_symbols)
        if binds or data:
            # the artifact binds data symbols in the model's entry only, not in a region's body
            raise cx.unsupported("a body whose shapes the data decides at run time ("
                                 + (f"nodes {', '.join(binds)} bind them" if binds else
                                    f"dimension(s) {', '.join(data)}") + ")")
        for n in body.nodes:
            n.inputs = [capture(v) for v in n.inputs]
        outs = [capture(v) for v in outs]
        # what the body needs of the symbols is checked with the enclosing graph's (all of its
        # symbols are the enclosing graph's), before the run, whichever way it goes; a branch's
        # when it runs (the branch of an 8 kHz rate may need sizes that 16 kHz inputs lack)
        for c in body.checks if not branch else ():
            if c not in self.b.checks:
                self.b.checks.append(c)
        graph = Graph(list(params) + [inner[v] for v in captures], body.nodes, outs, body.name,
                      dict(body.bounds), dict(body.hints), list(body.checks))
        return graph, captures

    # -- ops defined by an ONNX function ---------------------------------------------------
    #
    # An op without a translation of its own is still supported when its ONNX schema defines it
    # as a function of other ops (Attention, RotaryEmbedding, ...): the node is
    # replaced by the function's body, whose nodes are translated in turn.

    def schema(self, node, opsets):
        return schema_of(node.op_type, node.domain, opsets)

    def supported(self, node, opsets, depth: int = 0) -> bool:
        from .onnx_ops import TRANSLATIONS

        if op_key(node) in TRANSLATIONS:
            return True
        schema = self.schema(node, opsets)
        if schema is None or depth > 8:
            return False
        if schema.has_context_dependent_function:
            return True  # its body depends on the input types: checked when it is expanded
        if not schema.has_function:
            return False
        body = schema_function_body(schema)
        inner = {**opsets, **{_domain(i.domain): i.version for i in body.opset_import}}
        return all(self.supported(n, inner, depth + 1) for n in body.node)

    def function_body(self, node, name: str, opsets):
        """The FunctionProto that defines ``node``'s op, of the node's kind (onnx's or
        :mod:`onnx_proto`'s), and the op's schema."""
        schema = self.schema(node, opsets)
        version = opsets.get(_domain(node.domain), 1)
        if schema is not None and schema.has_function:
            body = schema_function_body(schema)
            return (body if is_light(node) else to_onnx(body)), schema
        if schema is None or not schema.has_context_dependent_function:
            raise UnsupportedOpError({op_key(node): [name]})
        elem = {v: k for k, v in _ONNX_DTYPES.items()}
        types = []
        for n in node.input:
            if not n:
                types.append(b"")                     # an empty TypeProto
                continue
            t = self.lookup(n).type
            tt = onnx_proto.TensorTypeProto()
            tt.elem_type = elem[t.dtype]
            shape = onnx_proto.TensorShapeProto()
            for d in t.shape:
                dim = onnx_proto.Dimension()
                if isinstance(d, int):
                    dim.dim_value = d
                else:
                    dim.dim_param = str(d)               # a symbolic one as its text
                shape.dim.append(dim)
            tt.shape = shape
            tp = onnx_proto.TypeProto()
            tp.tensor_type = tt
            types.append(tp.SerializeToString())
        try:
            raw = schema.get_context_dependent_function(node.SerializeToString(), types)
        except Exception as e:
            raise InvalidModelError(f"cannot expand the op's ONNX function (opset {version}): {e}",
                                    node=name, op=node.op_type) from None
        body = onnx_proto.parse(onnx_proto.FunctionProto, bytes(raw), "an op's function body")
        return (body if is_light(node) else to_onnx(body)), schema

    def expand_function(self, node, name: str, opsets) -> None:
        self.depth += 1
        try:
            limits.check_count("subgraph_depth", self.depth, f"the nesting of function bodies at '{name}'",
                               node=name, op=node.op_type)
            self._expand_function(node, name, opsets)
        finally:
            self.depth -= 1

    def _expand_function(self, node, name: str, opsets) -> None:
        body, schema = self.function_body(node, name, opsets)
        rename = {f: (node.input[i] if i < len(node.input) else "") for i, f in enumerate(body.input)}
        rename.update({f: (node.output[i] if i < len(node.output) else "") for i, f in enumerate(body.output)})
        given = {a.name: a for a in node.attribute}
        inner_opsets = {**opsets, **{_domain(i.domain): i.version for i in body.opset_import}}
        nodes = []
        for k, inner in enumerate(body.node):
            n = type(inner)()
            n.CopyFrom(inner)
            del n.input[:], n.output[:], n.attribute[:]
            ren = lambda x: rename.get(x, f"{name}/{x}")  # noqa: E731
            n.input.extend(ren(x) if x else "" for x in inner.input)
            n.output.extend(ren(x) if x else "" for x in inner.output)
            for a in inner.attribute:
                if not a.ref_attr_name:
                    n.attribute.append(a)
                    continue
                src = given.get(a.ref_attr_name)
                if src is None and a.ref_attr_name in schema.attributes:
                    src = schema_default(schema.attributes[a.ref_attr_name])
                    if src is not None and not is_light(inner):
                        src = to_onnx(src)
                if src is not None:
                    b = type(src)()
                    b.CopyFrom(src)
                    b.name = a.name
                    n.attribute.append(b)
            _rename_graph_attributes(n, ren)
            n.name = f"{name}/{inner.name or inner.op_type + '_' + str(k)}"
            nodes.append(n)
        for n in nodes:
            self.used.update(x for x in n.input if x)
        for n in nodes:
            self.translate_node(n, n.name, inner_opsets, from_model=False)

    def outputs(self) -> list[Value]:
        outs: list[Value] = []
        claimed: set[int] = {v.uid for v in self.b.inputs}
        for vi in self.g.output:
            outs.extend(self._output_values(vi.name, self.lookup(vi.name), claimed, keep=True))
        return outs

    def _output_values(self, name: str, v, claimed: set[int], keep: bool) -> list[Value]:
        """The graph output(s) for ONNX output ``name`` holding ``v`` (see SequenceValue and
        OptionalValue for how sequences and optionals are laid out)."""
        if isinstance(v, SequenceValue):
            return [out for k, item in enumerate(v.items)
                    for out in self._output_values(f"{name}[{k}]", item, claimed, keep=False)]
        if isinstance(v, RunSequence):
            return (self._output_values(name, v.data, claimed, keep=keep)
                    + self._output_values(f"{name}#shapes", v.shapes, claimed, keep=keep))
        if isinstance(v, OptionalValue):
            if v.present is not None:
                flag = self._output_values(f"{name}?", v.present, claimed, keep=False)
            else:
                flag = [constant(np.array(v.value is not None), f"{name}?")]
                claimed.add(flag[0].uid)
            rest = [] if v.value is None else self._output_values(name, v.value, claimed, keep=False)
            return flag + rest
        if v.uid in claimed:
            if keep and v.name == name:
                return [v]  # a graph input that is also an output of that name
            # a graph input, an earlier output, or an element of a sequence or optional that
            # outputs under another name: a copy under that name
            v = self.b.op("reshape", [v], name=name, shape=tuple(v.shape))
            v.name = name
        elif v.is_const:
            t = v.type
            v = constant(v.const, name)
            if v.type.dtype != t.dtype:
                v.type = t
        else:
            v.name = name
        claimed.add(v.uid)
        return [v]

    def run(self) -> Graph:
        try:
            graph = self._run()
            if self.data_bindings:
                verify(graph)
            return graph
        except (OperandNotConstantError, LimitError):
            raise
        except (TypeInferenceError, GraphError, InvalidModelError) as e:
            if not self.data_bindings:
                raise
            # what the model does with a shape taken at run time needs it at compile time
            # (two dimensions the data decides that the model takes as equal, say): the operands
            # are reported as OperandNotConstantError, which a caller that knows their values
            # (the ONNX backend) answers by specializing
            feeding = sorted({n for v in self.data_bindings for n in self.inputs_feeding(v)},
                             key=[vi.name for vi in self.g.input].index)
            raise OperandNotConstantError(
                f"{str(e).split('] ', 1)[-1]} (this follows from operands taken at run time, computed from graph "
                f"input(s) {', '.join(map(repr, feeding))}; fixing their values compiles a static model)",
                feeding, node=e.node, op=e.op) from e

    def _run(self) -> Graph:
        nodes = list(self.g.node)
        self.check_support(nodes)
        self.bind_initializers()
        self.bind_inputs()
        self.translate(nodes)
        outs = self.outputs()
        from .onnx_ops.tensor import squeezed_outputs

        self.b.squeezes = squeezed_outputs(outs, self.run_time_squeezes)
        # an output of a rank the run decides has the declared one at some sizes
        ranked = {outs[k].name for k in self.b.squeezes}
        check_declared_types([vi for vi in self.g.output if vi.name not in ranked], self.env, "graph output")
        # value_info dims may hold the sizes of the export that shapes= pins otherwise
        check_declared_types(self.g.value_info, self.env, "value_info", dims=False)
        for v in outs:
            if v.uid in self.symvals:
                raise InvalidModelError(f"graph output '{v.name}' is a shape computed from symbolic "
                                        "dimensions; Ember compiles tensors computed from the inputs' data only")
        used = {s for v in self.b.inputs for s in v.type.symbols} | self.data_symbols
        # a declared bound that no translation consulted is only a planning size (a hint): the
        # artifact runs larger sizes; the others, and those the model implies, are limits
        limit = {k for k in self.bounds if k not in self.declared_bounds or k in self.bounds.consulted}
        self.b.bounds = {k: v for k, v in self.bounds.items() if k in used and k in limit}
        self.b.hints = {k: v for k, v in self.bounds.items() if k in used and k not in limit}
        graph = self.b.finish(outs)
        _rename_clashes(graph)
        return graph


def _renamed_subgraph(g, outer):
    """A copy of subgraph ``g`` whose references to enclosing-scope names go through ``outer``
    (names the subgraph defines itself, and those of graphs nested in it, are kept)."""
    local = ({i.name for i in g.input} | {t.name for t in g.initializer}
             | {o for n in g.node for o in n.output if o})
    ren = lambda x: x if (not x or x in local) else outer(x)  # noqa: E731
    out = type(g)()
    out.CopyFrom(g)
    for n in out.node:
        names = [ren(x) for x in n.input]
        del n.input[:]
        n.input.extend(names)
        _rename_graph_attributes(n, ren)
    for o in out.output:
        o.name = ren(o.name)
    return out


def _rename_graph_attributes(node, outer) -> None:
    """Rewrite, in place, the enclosing-scope references of the subgraphs a node holds."""
    for a in node.attribute:
        if a.type == _A.GRAPH:
            a.g.CopyFrom(_renamed_subgraph(a.g, outer))
        elif a.type == _A.GRAPHS:
            for k in range(len(a.graphs)):
                a.graphs[k].CopyFrom(_renamed_subgraph(a.graphs[k], outer))


def _in_terms_of(e: LimitError, name: str, op_type: str) -> LimitError:
    """``e``, raised by a core op (lower-case names) of the translation of ONNX node ``name``,
    as an error of that node, the core op kept in the message."""
    if e.op is None or not e.op[:1].islower():
        return e                               # already an ONNX node's (a nested translation)
    text = str(e).split("] ", 1)[-1]
    where = f"{e.op} node '{e.node}': " if e.node is not None else f"{e.op}: "
    text = text.removeprefix(where)
    core = f"its core op {e.op}" + (f" '{e.node}'" if e.node not in (None, name) else "")
    return LimitError(f"{core}: {text}", node=name, op=op_type, limit=e.limit, size=e.size, maximum=e.maximum)


def _symbol_name(text: str) -> str:
    """A symbol for an ONNX dim_param: itself when it is an identifier, else made one."""
    if is_identifier(text):
        return text
    import re

    out = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return out if is_identifier(out) else "d_" + out


def _pinned_dim(name: str, x):
    """One dimension of ``shapes=``: an int, or the name of a symbol."""
    if isinstance(x, Sym):
        x = str(x)
    if isinstance(x, str):
        if not is_identifier(x):
            raise InvalidModelError(f"shapes['{name}'] names the symbol {x!r}; symbols of input shapes are "
                                    "identifiers (letters, digits and underscores)")
        return symbol(x)
    try:
        return int(x)
    except (TypeError, ValueError):
        raise InvalidModelError(f"shapes['{name}'] has the dimension {x!r}; expected an int or a symbol name") from None


def _show_dims(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def nodes_in_order(nodes, available: set[str]):
    """(index, node) pairs in a topological order (the file's order when it already is one)."""
    avail = set(available)
    pending = list(enumerate(nodes))
    while pending:
        rest = []
        progressed = False
        for k, node in pending:
            if all((not n) or n in avail for n in node.input):
                yield k, node
                avail.update(o for o in node.output if o)
                progressed = True
            else:
                rest.append((k, node))
        if not progressed:
            # let the translation report the first dangling input with its node
            k, node = rest[0]
            yield k, node
            return
        pending = rest


def _rename_clashes(graph: Graph) -> None:
    """Graph outputs took their ONNX names; rename any other value that has one of those names."""
    out_names = {v.name: v.uid for v in graph.outputs}
    taken = {v.name for v in graph.values()}
    for v in graph.values():
        if v.name in out_names and out_names[v.name] != v.uid and v not in graph.inputs:
            base, k = v.name, 1
            while f"{base}_{k}" in taken:
                k += 1
            v.name = f"{base}_{k}"
            taken.add(v.name)


# ---- the public function --------------------------------------------------------------------

def from_onnx(model: Any, shapes: Mapping[str, Any] | None = None,
              bounds: Mapping[str, int] | None = None) -> Graph:
    """Translate an ONNX model into an Ember graph of core ops.

    ``model`` is a path to an ``.onnx`` file (external data beside it is read), the bytes of
    one, or an ``onnx.ModelProto``.  The dimensions the model leaves symbolic stay symbolic;
    ``shapes`` pins them (``shapes={"input_ids": (1, 128)}``) or names them
    (``{"input_ids": ("batch", "seq")}``), and ``bounds`` gives the symbols' largest values
    (``{"seq": 512}``), which ``Graph.bounds`` holds with those the model implies.  It also
    gives the structure of sequence and optional inputs: a list of element shapes for a sequence
    (``{"seq": [(2, 3), (4,)]}``, bound as graph inputs ``seq[0]``, ``seq[1]``), and ``None``
    (empty) or the value's shape(s) for an optional.  Sequence outputs become one graph output
    per element (``y[0]``, ...); an optional output ``y`` becomes a bool output ``y?`` followed
    by its value's outputs when it holds one.

    Raises :class:`~ember.errors.ModelLoadError` for an unreadable file,
    :class:`~ember.errors.UnsupportedOpError` listing every unsupported op of the model at once,
    :class:`OperandNotConstantError` (an :class:`~ember.errors.InvalidModelError`) when an operand
    needed at compile time is computed from graph inputs, naming them, and
    :class:`~ember.errors.InvalidModelError` (or a type error naming the node) for models that
    break ONNX's rules.
    """
    mp = _load(model)
    base_dir = None
    if isinstance(model, (str, os.PathLike)):
        base_dir = os.path.dirname(os.path.abspath(os.fspath(model)))
    check_versions(mp)
    if mp.functions:
        mp = _inline_functions(mp)
    check_graph(mp.graph, {_domain(imp.domain): int(imp.version) for imp in mp.opset_import})
    return _Translator(mp, shapes, base_dir, bounds).run()


def _inline_functions(mp):
    try:
        from onnx import inliner

        return inliner.inline_local_functions(to_onnx(mp))
    except Exception as e:  # pragma: no cover - depends on the onnx version
        raise ModelLoadError(f"cannot inline the model's local functions: {e}") from None

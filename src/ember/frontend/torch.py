"""The PyTorch frontend: ``from_torch(module, example_args, dynamic_shapes=None) -> Graph``.

The module is captured with ``torch.export.export`` and decomposed to the core ATen operator set
(``run_decompositions``); the exported FX graph is then translated node by node into core ops
(the ATen translations live in :mod:`ember.frontend.torch_ops`, one module per op family), never
through ONNX.  Every unsupported op of the model is listed at once (op, nodes, count) before any
translation.

Parameters, buffers and lifted constants become graph constants; the user inputs become graph
inputs.  Sizes are taken from torch's own metadata (every FX node carries its output as a fake
tensor): a symbolic size (a ``SymInt`` from ``dynamic_shapes``) is an expression over torch's
shape symbols, translated into an :class:`ember.symbolic.Sym` over symbols named after the
``torch.export.Dim`` objects, whose ranges become the graph's bounds (an upper end) or hints (the
example's size, when the range is open).  So a ``view`` gets its target shape ``[batch, seq, 12,
64]`` from torch, and shape arithmetic never reaches the graph.

torch is imported only when this frontend is used: the core install does not need it.
"""

from __future__ import annotations

import inspect
import operator
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import FrontendError, InvalidModelError, ModelLoadError
from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Value
from ..graph.types import TensorType, np_dtype
from ..symbolic import Sym, is_identifier, symbol
from .core import NodeContext as CoreNodeContext, check_supported, group_unsupported

__all__ = ["from_torch", "from_exported_program", "translate_fx", "unsupported_ops", "torch_dtype"]

_DTYPES = {
    "float32": "float32", "float16": "float16", "bfloat16": "bfloat16", "float64": "float64",
    "int64": "int64", "int32": "int32", "int16": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool",
}


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the install
        raise ModelLoadError("the PyTorch frontend needs torch: pip install ember[torch]") from None
    return torch


def torch_dtype(dt, node: str | None = None, op: str | None = None) -> str:
    """The IR dtype of a torch dtype; one Ember lacks raises a frontend error."""
    name = str(dt).replace("torch.", "")
    try:
        return _DTYPES[name]
    except KeyError:
        raise FrontendError(f"dtype {name} is not supported by Ember", node=node, op=op) from None


def op_name(node) -> str:
    """How an FX node's op is named in messages and in the translation table."""
    t = node.target
    name = getattr(t, "name", None)
    if callable(name):                      # an OpOverload: "aten.add.Tensor"
        return str(t)
    return f"{getattr(t, '__module__', '') or ''}.{getattr(t, '__name__', repr(t))}".lstrip(".")


# ---- sizes: torch's sympy expressions -> ember dimensions ----------------------------------------

class SymbolTable:
    """torch's shape symbols (``s0``, ``s77``, ...) and the Ember symbols they become."""

    def __init__(self):
        self.names: dict[str, str] = {}     # torch symbol -> ember symbol name

    def dim(self, x: Any) -> "int | Sym":
        """An int, SymInt or sympy expression as an Ember dimension."""
        torch = _torch()
        if isinstance(x, (bool, np.bool_)):
            return int(x)
        if isinstance(x, (int, np.integer)):
            return int(x)
        if isinstance(x, torch.SymInt):
            hint = x.node.expr
            return self.expr(hint)
        return self.expr(x)

    def expr(self, e) -> "int | Sym":
        import sympy

        if isinstance(e, (int, sympy.Integer)):
            return int(e)
        if isinstance(e, sympy.Symbol):
            name = self.names.get(str(e))
            if name is None:
                if str(e).startswith("u"):
                    raise FrontendError(f"the size {e} depends on a tensor's data (an unbacked symbol); Ember "
                                        "needs sizes that the input shapes decide")
                name = self.names[str(e)] = str(e)
            return symbol(name)
        args = [self.expr(a) for a in e.args]
        kind = type(e).__name__
        if kind == "Add":
            out = 0
            for a in args:
                out = out + a
            return out
        if kind == "Mul":
            out = 1
            for a in args:
                out = out * a
            return out
        if kind == "Pow" and isinstance(args[1], int) and args[1] >= 0:
            out = 1
            for _ in range(args[1]):
                out = out * args[0]
            return out
        if kind in ("FloorDiv", "IntTrueDiv") and isinstance(args[1], int):
            return args[0] // args[1]
        if kind == "CeilDiv" and isinstance(args[1], int):
            return (args[0] + args[1] - 1) // args[1]
        if kind in ("Mod", "PythonMod") and isinstance(args[1], int):
            return args[0] % args[1]
        raise FrontendError(f"the size expression {e} ({kind}) has no Ember form")


# ---- the translation context ------------------------------------------------------------------

class NodeContext(CoreNodeContext):
    """What a translation sees of one FX node: its name, op and output metadata, and helpers
    that emit core ops (folded when their inputs are constant)."""

    framework = "PyTorch"

    def __init__(self, tr: "_Translator", node):
        super().__init__(tr.b, node.name, op_name(node))
        self._tr = tr
        self.node = node

    # -- what torch says the node produces ---------------------------------------------------

    @property
    def meta(self):
        return self.node.meta.get("val")

    def out_shape(self, k: int | None = None) -> tuple:
        v = self.meta if k is None else self.meta[k]
        return tuple(self._tr.syms.dim(d) for d in v.shape)

    def out_dtype(self, k: int | None = None) -> str:
        v = self.meta if k is None else self.meta[k]
        return torch_dtype(v.dtype, self.name, self.op_type)

    def arg_meta(self, i: int):
        """torch's fake value of positional argument ``i`` (a tensor's or a number)."""
        a = self.node.args[i]
        return a.meta.get("val") if hasattr(a, "meta") else a

    def dim(self, x) -> "int | Sym":
        return self._tr.syms.dim(x)

    def output_used(self, k: int) -> bool:
        """Whether output ``k`` of a multi-output node is read."""
        for u in self.node.users:
            if u.target is operator.getitem and u.args[1] == k:
                return True
        return False

    # -- emitting ------------------------------------------------------------------------------

    def tensor(self, x: Any, dtype: str) -> Value:
        """``x`` (a Value, or a Python number / dimension) as a tensor of ``dtype``."""
        if isinstance(x, Value):
            return self.cast(x, dtype)
        return self.scalar(x, dtype)

    def reshape(self, v: Value, shape) -> Value:
        shape = tuple(shape)
        return v if tuple(v.shape) == shape else self.op("reshape", [v], shape=shape)

    def broadcast(self, v: Value, shape) -> Value:
        shape = tuple(shape)
        if tuple(v.shape) == shape:
            return v
        if v.type.rank < len(shape):
            v = self.reshape(v, (1,) * (len(shape) - v.type.rank) + tuple(v.shape))
        return self.op("broadcast_to", [v], shape=shape)


# ---- the translator ---------------------------------------------------------------------------

def unsupported_ops(graph) -> dict[str, list[str]]:
    """Every op of the FX ``graph`` without a translation: op name -> node names."""
    return group_unsupported(_unsupported_nodes(graph))


def _unsupported_nodes(graph):
    """(op, node) of each FX node without a translation."""
    from .torch_ops import TRANSLATIONS

    for n in graph.nodes:
        if n.op == "call_function" and n.target is not operator.getitem and not _value_only(n) \
                and op_name(n) not in TRANSLATIONS:
            yield op_name(n), n.name
        elif n.op in ("call_module", "call_method"):
            yield f"{n.op} {n.target}", n.name


def _value_only(node) -> bool:
    """Whether the node computes a size, a number or a condition that torch already knows
    (sym_size, SymInt arithmetic, the comparisons its shape checks read): its value is read from
    its metadata instead of translated."""
    torch = _torch()
    v = node.meta.get("val")
    return isinstance(v, (torch.SymInt, torch.SymBool, torch.SymFloat, int, float, bool))


def _known_value(syms: "SymbolTable", v):
    """The value of a node that ``_value_only`` accepts: a dimension for sizes, else the number."""
    torch = _torch()
    if isinstance(v, (torch.SymBool, torch.SymFloat)):
        return v.node.hint if v.node.has_hint() else None
    if isinstance(v, bool) or isinstance(v, float):
        return v
    return syms.dim(v)


class _Translator:
    def __init__(self, graph, name: str, syms: SymbolTable):
        self.graph = graph
        self.b = GraphBuilder(name)
        self.syms = syms
        self.env: dict[Any, Any] = {}

    def value(self, a):
        """An FX argument translated: nodes looked up, lists recursed, numbers kept."""
        torch = _torch()
        if hasattr(a, "op") and hasattr(a, "meta"):
            return self.env[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.value(x) for x in a)
        if isinstance(a, torch.SymInt):
            return self.syms.dim(a)
        if isinstance(a, (torch.dtype, torch.device, torch.layout, torch.memory_format)):
            return a
        return a

    def run(self, inputs: Mapping[str, Value], constants: Mapping[str, Any]) -> list:
        from .torch_ops import TRANSLATIONS

        torch = _torch()
        outputs: list = []
        for n in self.graph.nodes:
            if n.op == "placeholder":
                if n.name in constants:
                    self.env[n] = self._constant(constants[n.name], n.name)
                elif n.name in inputs:
                    self.env[n] = inputs[n.name]
                else:
                    v = n.meta.get("val")
                    if isinstance(v, torch.SymInt) or isinstance(v, int):
                        self.env[n] = self.syms.dim(v)
                    else:
                        raise InvalidModelError(f"graph input '{n.name}' is neither a tensor nor a size")
            elif n.op == "get_attr":
                self.env[n] = self._constant(constants[n.target], n.name)
            elif n.op == "output":
                o = self.value(n.args[0])
                outputs = list(o) if isinstance(o, (list, tuple)) else [o]
            elif n.op == "call_function":
                if n.target is operator.getitem:
                    self.env[n] = self.value(n.args[0])[n.args[1]]
                elif _value_only(n):
                    self.env[n] = _known_value(self.syms, n.meta["val"])
                else:
                    cx = NodeContext(self, n)
                    fn = TRANSLATIONS[op_name(n)]
                    args = [self.value(a) for a in n.args]
                    kwargs = {k: self.value(v) for k, v in n.kwargs.items()}
                    with cx.translating():
                        self.env[n] = fn(cx, *args, **kwargs)
        return outputs

    def _constant(self, t, name: str) -> Value:
        torch = _torch()
        if not isinstance(t, torch.Tensor):
            return t
        dt = torch_dtype(t.dtype, name)
        t = t.detach().cpu().contiguous()
        if dt == "bfloat16":
            arr = t.view(torch.int16).numpy().view(np_dtype("bfloat16"))
        else:
            arr = t.numpy()
        return self.b.const(np.array(arr, copy=True), name=_safe_name(name), dtype=dt)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name) or "v"


def translate_fx(graph, inputs: Sequence[tuple[str, Any]], constants: Mapping[str, Any],
                 syms: SymbolTable | None = None, name: str = "torch", bounds: Mapping[str, int] | None = None,
                 hints: Mapping[str, int] | None = None, keep_outputs: Sequence[int] | None = None) -> Graph:
    """Translate the FX ``graph`` (core ATen ops): ``inputs`` are (placeholder name, fake or real
    tensor) of the graph inputs, ``constants`` the values of the other placeholders and of
    ``get_attr`` targets.  Raises UnsupportedOpError listing every op without a translation
    before translating anything.  ``keep_outputs`` picks the outputs to keep by position."""
    check_supported(_unsupported_nodes(graph), "PyTorch")
    syms = syms or SymbolTable()
    tr = _Translator(graph, name, syms)
    bound: dict[str, Value] = {}
    for pname, t in inputs:
        shape = tuple(syms.dim(d) for d in t.shape)
        bound[pname] = tr.b.input(_safe_name(pname), TensorType(shape, torch_dtype(t.dtype, pname)))
    tr.b.bounds.update(bounds or {})
    tr.b.hints.update({k: v for k, v in (hints or {}).items() if k not in tr.b.bounds})
    outs = tr.run(bound, constants)
    if keep_outputs is not None:          # the user outputs, not the buffers a train-mode model mutates
        outs = [outs[k] for k in keep_outputs]
    values = []
    for k, o in enumerate(outs):
        if not isinstance(o, Value):
            raise FrontendError(f"output {k} of the model is not a tensor ({type(o).__name__}); Ember compiles "
                                "models whose outputs are tensors")
        if o.is_const or o in tr.b.inputs or any(o is v for v in values):
            o = tr.b.op("reshape", [o], name=f"output_{k}", shape=tuple(o.shape))
        values.append(o)
    return tr.b.finish(values)


def _register_backend() -> None:
    from .torch_backend import register

    register()


# ---- torch.export -------------------------------------------------------------------------------

def _dim_names(module, args, kwargs, dynamic_shapes) -> list[dict[int, Any]]:
    """Per flattened user input, axis -> the ``Dim`` of ``dynamic_shapes`` that names it."""
    torch = _torch()
    if dynamic_shapes is None:
        return []
    if isinstance(dynamic_shapes, Mapping):
        try:
            sig = inspect.signature(module.forward if hasattr(module, "forward") else module)
            bound = sig.bind(*args, **kwargs)
            specs = [dynamic_shapes.get(k) for k in bound.arguments]
        except (TypeError, ValueError):
            specs = list(dynamic_shapes.values())
    else:
        specs = list(dynamic_shapes)
    out = []
    for spec in specs:
        leaves = torch.utils._pytree.tree_leaves(spec, is_leaf=lambda x: isinstance(x, (dict, list, tuple))
                                                 and (not x or all(isinstance(e, (int, type(None))) or
                                                                   hasattr(e, "__name__") for e in
                                                                   (x.values() if isinstance(x, dict) else x))))
        for leaf in leaves or [None]:
            if isinstance(leaf, dict):
                out.append(dict(leaf))
            elif isinstance(leaf, (list, tuple)):
                out.append({k: d for k, d in enumerate(leaf)})
            else:
                out.append({})
    return out


def from_torch(module, example_args: Sequence[Any] = (), dynamic_shapes: Any = None, *,
               example_kwargs: Mapping[str, Any] | None = None,
               bounds: Mapping[str, int] | None = None) -> Graph:
    """Translate a ``torch.nn.Module`` (in eval mode) into Ember's graph IR.

    ``example_args`` (and ``example_kwargs``) are the inputs torch.export traces with;
    ``dynamic_shapes`` is torch.export's: ``torch.export.Dim`` objects for the sizes that stay
    open (``{"input_ids": {0: Dim("batch", max=64), 1: Dim("seq", max=512)}}``).  An open size
    becomes a symbol named after its ``Dim``; its ``max`` is the artifact's limit, and without
    one the example's size is the planning size.  ``bounds=`` gives further limits by name.
    An already exported ``torch.export.ExportedProgram``, or the path of one saved with
    ``torch.export.save`` (``.pt2``), is taken as it is.  Importing this frontend registers the
    ``torch.compile`` backend ``"ember"`` (:mod:`ember.frontend.torch_backend`)."""
    torch = _torch()
    import os

    if isinstance(module, (str, os.PathLike)):
        path = os.fspath(module)
        try:
            module = torch.export.load(path)
        except Exception as e:
            raise ModelLoadError(f"cannot read '{path}' as a torch.export program (.pt2): "
                                 f"{type(e).__name__}: {e}") from None
    if isinstance(module, torch.export.ExportedProgram):
        return from_exported_program(module, bounds=bounds)
    if not isinstance(module, torch.nn.Module):
        raise ModelLoadError(f"from_torch expects a torch.nn.Module or ExportedProgram, got {type(module).__name__}")
    _register_backend()
    args = tuple(example_args) if isinstance(example_args, (list, tuple)) else (example_args,)
    kwargs = dict(example_kwargs or {})
    try:
        ep = torch.export.export(module, args, kwargs, dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as e:
        raise ModelLoadError(f"torch.export could not capture the model: {type(e).__name__}: "
                             f"{str(e).splitlines()[0] if str(e) else ''}") from e
    names = _dim_names(module, args, kwargs, dynamic_shapes)
    return from_exported_program(ep, bounds=bounds, dim_names=names)


#: ops kept whole rather than decomposed: Ember has a better translation of its own
_KEPT = ("aten.scaled_dot_product_attention.default",)


def _decompositions():
    """torch.export's decomposition table to the core ATen set, less the ops in ``_KEPT``."""
    torch = _torch()
    table = torch.export.default_decompositions()
    for name in _KEPT:
        pkt, _, overload = name[len("aten."):].rpartition(".")
        op = getattr(getattr(torch.ops.aten, pkt), overload)
        table.pop(op, None)
    return table


def from_exported_program(ep, bounds: Mapping[str, int] | None = None,
                          dim_names: Sequence[Mapping[int, Any]] = ()) -> Graph:
    """Translate a ``torch.export.ExportedProgram`` (decomposed to core ATen here)."""
    torch = _torch()
    from torch.export.graph_signature import InputKind

    ep = ep.run_decompositions(_decompositions())
    sig = ep.graph_signature
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    constants: dict[str, Any] = {}
    users: list[tuple[str, Any]] = []
    for spec in sig.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.USER_INPUT:
            val = placeholders[name].meta.get("val")
            if isinstance(val, torch.Tensor):
                users.append((name, val))
            else:
                constants[name] = val          # a number the model was exported with
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            constants[name] = ep.state_dict[spec.target] if spec.target in ep.state_dict else ep.constants[spec.target]
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            constants[name] = ep.constants[spec.target]
        else:
            raise FrontendError(f"exported input '{name}' of kind {spec.kind.name} is not supported")

    syms = SymbolTable()
    limits: dict[str, int] = {}
    hints: dict[str, int] = {}
    ranges = {str(k): v for k, v in ep.range_constraints.items()}
    for k, (pname, val) in enumerate(users):
        named = dim_names[k] if k < len(dim_names) else {}
        for axis, d in enumerate(val.shape):
            if not isinstance(d, torch.SymInt):
                continue
            e = d.node.expr
            import sympy

            if not isinstance(e, sympy.Symbol) or str(e) in syms.names:
                continue
            dim = named.get(axis)
            nice = getattr(dim, "__name__", None)
            taken = set(syms.names.values())
            if not nice or not is_identifier(nice) or nice in taken:
                nice = str(e)
            syms.names[str(e)] = nice
            r = ranges.get(str(e))
            hi = getattr(r, "upper", None) if r is not None else None
            try:
                limits[nice] = int(hi)
            except (TypeError, ValueError, OverflowError):
                hints[nice] = int(d.node.hint) if d.node.hint is not None else 1
            if limits.get(nice, 0) >= 2 ** 62:
                limits.pop(nice)
                hints[nice] = int(d.node.hint) if d.node.hint is not None else 1
    for k, v in (bounds or {}).items():
        limits[str(k)] = int(v)
        hints.pop(str(k), None)
    keep = [k for k, s in enumerate(sig.output_specs) if s.kind.name == "USER_OUTPUT"]
    return translate_fx(ep.graph, users, constants, syms, bounds=limits, hints=hints, keep_outputs=keep)

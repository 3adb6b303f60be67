"""``torch.compile(model, backend="ember")``: the graphs TorchDynamo captures, compiled by Ember.

Each captured FX graph is exported (``torch.export``, decomposed to core ATen) at the shapes it
is called with, and split into the runs of ops Ember translates (``torch.fx``'s capability
partitioner); each run is compiled with Ember into one native module, and the ops Ember lacks stay
in between, run eagerly by torch, with a warning that names them.  A graph is compiled once per
set of input shapes and dtypes (Dynamo recompiles on its own rules; a graph it marks dynamic is
compiled here for each shape it meets).

An installed Ember is found by torch under the name ``"ember"`` through the
``torch_dynamo_backends`` entry point; without an install, :func:`register` (which
``ember.from_torch`` calls) registers the name.  ``import ember`` alone never imports torch.
"""

from __future__ import annotations

import operator
import warnings
from typing import Any, Sequence

import torch

from .torch import SymbolTable, _decompositions, _value_only, op_name, translate_fx

__all__ = ["ember_backend", "register", "EmberTorchWarning"]


class EmberTorchWarning(UserWarning):
    """Part of a captured graph runs in torch because Ember lacks its ops."""


def _supported(node) -> bool:
    from .torch_ops import TRANSLATIONS

    return node.op == "call_function" and (node.target is operator.getitem or _value_only(node)
                                           or op_name(node) in TRANSLATIONS)


class _EmberPart(torch.nn.Module):
    """One partition of supported ops, compiled with Ember: called with the partition's
    arguments (constants among them are already in the compiled module and skipped)."""

    def __init__(self, sub, arg_vals: Sequence[Any], const_pos: dict[int, Any], options: dict):
        import ember

        super().__init__()
        placeholders = [n for n in sub.graph.nodes if n.op == "placeholder"]
        inputs, constants = [], {}
        self.feed_pos: list[int] = []
        for k, (p, v) in enumerate(zip(placeholders, arg_vals)):
            if k in const_pos:
                constants[p.name] = const_pos[k]
            elif isinstance(v, torch.Tensor):
                inputs.append((p.name, v))
                self.feed_pos.append(k)
            else:
                constants[p.name] = v          # a number the graph was specialized to
        for n in sub.graph.nodes:
            if n.op == "get_attr":
                obj = sub
                for part in n.target.split("."):
                    obj = getattr(obj, part)
                constants[n.target] = obj
        _ensure_meta(sub, placeholders, arg_vals)
        out = next(n for n in sub.graph.nodes if n.op == "output").args[0]
        self.single = not isinstance(out, (tuple, list))
        graph = translate_fx(sub.graph, inputs, constants, SymbolTable())
        self.compiled = ember.compile(graph, **options)
        self.names = [v.name for v in graph.inputs]

    def forward(self, *args):
        feeds = {name: args[k].detach().contiguous().numpy() for name, k in zip(self.names, self.feed_pos)}
        outs = [torch.from_numpy(o) for o in self.compiled.run(feeds).values()]
        return outs[0] if self.single else tuple(outs)


def _ensure_meta(sub, placeholders, arg_vals) -> None:
    """Placeholders of a partition carry the value torch traced them with (fake or real)."""
    for p, v in zip(placeholders, arg_vals):
        if "val" not in p.meta:
            p.meta["val"] = v


def _getattr_path(mod, target: str):
    for part in target.split("."):
        mod = getattr(mod, part)
    return mod


class _Compiled:
    """A captured graph: compiled per input signature."""

    def __init__(self, gm, options: dict):
        self.gm = gm
        self.options = options
        self.cache: dict[tuple, Any] = {}

    def __call__(self, *args):
        key = tuple((tuple(a.shape), str(a.dtype)) if isinstance(a, torch.Tensor) else ("v", a) for a in args)
        fn = self.cache.get(key)
        if fn is None:
            fn = self.cache[key] = self._build(args)
        with torch.no_grad():
            out = fn(*args)
        return out

    def _build(self, args):
        from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
        from torch.fx.passes.operator_support import OperatorSupportBase

        ep = torch.export.export(self.gm, tuple(args), strict=False).run_decompositions(_decompositions())
        gm = ep.module()
        lacking: dict[str, int] = {}
        for n in gm.graph.nodes:
            if n.op == "call_function" and not _supported(n):
                lacking[op_name(n)] = lacking.get(op_name(n), 0) + 1
        if lacking:
            warnings.warn("Ember lacks " + ", ".join(f"{k} (x{v})" for k, v in sorted(lacking.items())) +
                          "; those ops run in torch, the rest of the graph in Ember", EmberTorchWarning,
                          stacklevel=3)

        class _Support(OperatorSupportBase):
            def is_node_supported(self, submodules, node) -> bool:
                return _supported(node)

        parted = CapabilityBasedPartitioner(gm, _Support(), allows_single_node_partition=True).partition_and_fuse()
        # the values every node of the partitioned graph was traced with, to compile each part
        vals = _trace_values(parted, args)
        for node in list(parted.graph.nodes):
            if node.op != "call_module" or not node.target.startswith("fused_"):
                continue
            sub = _getattr_path(parted, node.target)
            if not any(n.op == "call_function" and not (n.target is operator.getitem or _value_only(n))
                       for n in sub.graph.nodes):
                continue                       # nothing but sizes and tuple picks
            arg_vals = [vals[a] if hasattr(a, "op") else a for a in node.args]
            const_pos = {k: _getattr_path(parted, a.target) for k, a in enumerate(node.args)
                         if hasattr(a, "op") and a.op == "get_attr"}
            setattr(parted, node.target, _EmberPart(sub, arg_vals, const_pos, self.options))
        parted.recompile()
        return parted


def _trace_values(gm, args) -> dict:
    """Every node of ``gm`` -> its value on ``args`` (one eager run, recorded)."""

    class _Recorder(torch.fx.Interpreter):
        def __init__(self, m):
            super().__init__(m)
            self.seen: dict = {}

        def run_node(self, n):
            out = super().run_node(n)
            self.seen[n] = out
            return out

    rec = _Recorder(gm)
    with torch.no_grad():
        rec.run(*args)
    return rec.seen


def ember_backend(gm, example_inputs, **options):
    """The TorchDynamo backend: ``torch.compile(model, backend="ember")``, or
    ``backend=ember_backend`` with ``options`` passed on to ``ember.compile``."""
    return _Compiled(gm, dict(options))


def register() -> None:
    """Register the backend under the name ``"ember"`` (once; an installed Ember is found by
    torch through its ``torch_dynamo_backends`` entry point without this)."""
    from torch._dynamo.backends import registry

    if "ember" not in registry._COMPILER_FNS:
        registry.register_backend(name="ember")(ember_backend)

"""Ember as an ONNX backend (``onnx.backend.base.Backend``).

    import ember.onnx.backend as backend
    rep = backend.prepare(model)            # compiles the model for the host CPU
    outputs = rep.run([x, y])               # inputs in graph-input order

This is what the ONNX backend test suites (and ``onnx_conformance.py``) drive.  Models are
compiled exactly as ``ember.compile`` compiles them; the C compiler's optimization level is
lowered for the tiny test models (``EMBER_BACKEND_CFLAGS`` overrides it).

**Operands fixed at compile time.**  The ahead-of-time artifact Ember builds needs some operands
as constants: those that decide shapes or the structure of the computation (Reshape's shape,
Slice's starts/ends/axes/steps, Pad's pads, Expand's shape, Tile's repeats, Range, TopK's k,
Resize's scales/sizes, the axes of reductions and (Un)Squeeze, Split's sizes, scatter indices,
an If's condition, ...).  ONNX lets a model take them as graph inputs.  For such a model
``prepare`` cannot build one artifact; it returns a rep that *specializes*: on each ``run`` it
makes those inputs initializers of a copy of the model, holding the values given, compiles that
copy and runs it on the remaining inputs.  The frontend names the inputs concerned
(:class:`~ember.frontend.onnx.OperandNotConstantError`), so nothing here guesses from op types.
Compiled models are cached by content, so each distinct set of operand values is compiled once
(per process, and across processes by Ember's model cache).  Ops whose output *shape* depends
on input values (NonZero, Compress with a run-time condition, ...) are specialized the same
way; their result is then computed while compiling, for those values.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from ..errors import EmberError, InputError
from ..frontend.onnx import OperandNotConstantError

#: C flags used for backend test models: they are tiny, compile time dominates
DEFAULT_CFLAGS = ("-O1",)

#: How many distinct operand values a specializing rep keeps compiled modules for
SPECIALIZATION_CACHE_SIZE = 16


def _feeds(input_names: list[str], inputs: Any) -> dict[str, Any]:
    if isinstance(inputs, dict):
        return dict(inputs)
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]
    inputs = list(inputs)
    if len(inputs) != len(input_names):
        raise InputError(f"the model takes {len(input_names)} input(s) ({', '.join(input_names)}), "
                         f"got {len(inputs)}")
    return dict(zip(input_names, inputs))


def _run_module(module, feeds: dict[str, Any]) -> tuple:
    out = module.run({k: np.asarray(feeds[k]) for k in module.input_names})
    return tuple(out.values())


class EmberRep(BackendRep):
    """A model compiled once, ahead of time."""

    def __init__(self, module, input_names: list[str]):
        self.module = module
        self.input_names = input_names

    def run(self, inputs: Any, **kwargs) -> tuple:
        return _run_module(self.module, _feeds(self.input_names, inputs))


class SpecializingRep(BackendRep):
    """A model some of whose compile-time operands are graph inputs: compiled per distinct
    values of those inputs (see the module docstring)."""

    def __init__(self, model: onnx.ModelProto, input_names: list[str], fixed: Sequence[str], compile_fn):
        self.model = model
        self.input_names = input_names
        self.fixed = list(fixed)        # grows when a specialization reveals more such inputs
        self._compile = compile_fn
        self._modules: dict[tuple, Any] = {}

    def run(self, inputs: Any, **kwargs) -> tuple:
        feeds = _feeds(self.input_names, inputs)
        return _run_module(self.module_for(feeds), feeds)

    def module_for(self, feeds: dict[str, Any]):
        """The module compiled for the values ``feeds`` gives the fixed inputs."""
        while True:
            key = tuple(_value_key(n, feeds[n]) for n in self.fixed)
            module = self._modules.get(key)
            if module is not None:
                return module
            try:
                module = self._compile(specialize(self.model, {n: feeds[n] for n in self.fixed}))
            except OperandNotConstantError as e:
                more = [n for n in e.inputs if n not in self.fixed and n in feeds]
                if not more:
                    raise
                self.fixed.extend(more)
                continue
            if len(self._modules) >= SPECIALIZATION_CACHE_SIZE:
                self._modules.pop(next(iter(self._modules)))
            self._modules[key] = module
            return module


def _value_key(name: str, value: Any) -> tuple:
    arr = np.ascontiguousarray(np.asarray(value))
    return (name, str(arr.dtype), arr.shape, arr.tobytes())


def specialize(model: onnx.ModelProto, values: dict[str, Any]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs named in ``values`` are initializers holding them
    (they stay listed as inputs, which every IR version allows for initializers)."""
    from onnx import numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    declared = {vi.name for vi in m.graph.input}
    for name, value in values.items():
        if name not in declared:
            raise InputError(f"'{name}' is not a graph input of the model")
        m.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return m


class EmberBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> BackendRep:
        from ..build.compile import compile as ember_compile

        if not cls.supports_device(device):
            raise EmberError(f"device {device!r} is not supported; Ember's backend runs on CPU")
        flags = os.environ.get("EMBER_BACKEND_CFLAGS")
        cflags = tuple(flags.split()) if flags is not None else DEFAULT_CFLAGS
        opt_level = kwargs.get("opt_level", 3)

        def compile_fn(m):
            return ember_compile(m, "cpu", opt_level, cflags=cflags)

        init = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in init]
        try:
            module = compile_fn(model)
        except OperandNotConstantError as e:
            if not e.inputs:
                raise
            return SpecializingRep(model, names, e.inputs, compile_fn)
        return EmberRep(module, names)

    @classmethod
    def run_model(cls, model: onnx.ModelProto, inputs: Any, device: str = "CPU", **kwargs) -> tuple:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Sequence[np.ndarray], device: str = "CPU",
                 outputs_info=None, **kwargs) -> tuple:
        raise NotImplementedError("Ember compiles whole models; use prepare() or run_model()")


prepare = EmberBackend.prepare
run_model = EmberBackend.run_model
run_node = EmberBackend.run_node
supports_device = EmberBackend.supports_device
is_compatible = EmberBackend.is_compatible

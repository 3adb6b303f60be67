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
on input values (NonZero, Unique, NonMaxSuppression, Compress with a run-time condition, ...)
are specialized the same way; their result is then computed while compiling, for those values.

**Run-time mode.**  With ``specialize=False`` (``prepare(model, specialize=False)``, or
``EMBER_BACKEND_SPECIALIZE=0`` in the environment) nothing of the above happens: the model is
compiled once, exactly as ``ember.compile`` compiles it (inputs with their declared, possibly
symbolic, shapes), and every input is fed at run time.  A model Ember cannot compile that way
fails in ``prepare``, as it would for a user.  ``tests/onnx/conformance.py --runtime-inputs``
measures the suites in this mode.

**Structure fixed at compile time.**  Likewise the artifact has tensor inputs of static shapes:
sequence and optional inputs, and tensors of symbolic shape, are pinned (``from_onnx(shapes=...)``)
from the values given to ``run`` and compiled per distinct structure.  Sequence and optional
outputs come back as lists and ``None``/values, rebuilt from the graph outputs the frontend lays
them out as.  In run-time mode an optional tensor input is not pinned: the artifact takes it as
the tensor input ``x`` and its presence flag ``x?`` (``Module`` sets the flag from whether the
value is given), so one artifact serves both.
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

#: Environment variable that turns specialization off when set to 0 (see "Run-time mode")
SPECIALIZE_ENV = "EMBER_BACKEND_SPECIALIZE"

#: How many distinct operand values a specializing rep keeps compiled modules for
SPECIALIZATION_CACHE_SIZE = 16


def _tensor_shape_is_static(tp) -> bool:
    tt = tp.tensor_type
    return tt.HasField("shape") and all(d.HasField("dim_value") and d.dim_value >= 0 for d in tt.shape.dim)


def structured_inputs(model: onnx.ModelProto) -> list[str]:
    """Graph inputs whose structure the model leaves open: sequences, optionals and tensors of
    symbolic shape.  They are pinned (``shapes=``) from the values given at run time."""
    init = {t.name for t in model.graph.initializer}
    return [vi.name for vi in model.graph.input if vi.name not in init and
            (vi.type.WhichOneof("value") != "tensor_type" or not _tensor_shape_is_static(vi.type))]


def _pin(tp, value: Any):
    """What ``from_onnx(shapes=...)`` needs to know about ``value`` of ONNX type ``tp``."""
    kind = tp.WhichOneof("value")
    if kind == "sequence_type":
        return [_pin(tp.sequence_type.elem_type, v) for v in value]
    if kind == "optional_type":
        return None if value is None else _pin(tp.optional_type.elem_type, value)
    return tuple(np.shape(value))


def _flatten(name: str, tp, value: Any, out: dict[str, Any]) -> None:
    """The compiled module's inputs for ONNX input ``name`` (see ``ember.frontend.onnx``:
    sequences are one input per tensor, ``name[k]``)."""
    kind = tp.WhichOneof("value")
    if kind == "sequence_type":
        for k, v in enumerate(value):
            _flatten(f"{name}[{k}]", tp.sequence_type.elem_type, v, out)
    elif kind == "optional_type":
        if value is not None:
            _flatten(name, tp.optional_type.elem_type, value, out)
    else:
        out[name] = value


def _unflatten(model: onnx.ModelProto, names: list[str], values: list[np.ndarray]) -> tuple:
    """The model's outputs from the module's: sequences are one output per tensor (``y[k]``);
    optionals a bool output ``y?`` followed by their value's outputs."""
    pos = 0

    def take(name: str, tp):
        nonlocal pos
        kind = tp.WhichOneof("value")
        if kind == "sequence_type":
            items = []
            while pos < len(names) and names[pos] == f"{name}[{len(items)}]":
                items.append(take(f"{name}[{len(items)}]", tp.sequence_type.elem_type))
            return items
        if kind == "optional_type":
            if pos >= len(names) or names[pos] != f"{name}?":
                raise EmberError(f"the compiled model has no presence flag for optional output '{name}'")
            present = bool(values[pos])
            pos += 1
            if present:
                return take(name, tp.optional_type.elem_type)
            # an optional whose presence the run decides still has its value's outputs
            while pos < len(names) and (names[pos] == name or names[pos].startswith(f"{name}[")):
                pos += 1
            return None
        if pos >= len(values):
            raise EmberError("the compiled model has fewer outputs than the ONNX model")
        pos += 1
        return values[pos - 1]

    return tuple(take(vi.name, vi.type) for vi in model.graph.output)


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


def _run_module(module, feeds: dict[str, Any], model: onnx.ModelProto | None = None) -> tuple:
    if model is None:       # (an input with a default may be left out)
        out = module.run({k: np.asarray(feeds[k]) for k in module.input_names if k in feeds})
        return tuple(out.values())
    flat: dict[str, Any] = {}
    types = {vi.name: vi.type for vi in model.graph.input}
    for name, value in feeds.items():
        _flatten(name, types[name], value, flat)
    out = module.run({k: np.asarray(flat[k]) for k in module.input_names if k in flat})
    return _unflatten(model, list(out.keys()), list(out.values()))


class EmberRep(BackendRep):
    """A model compiled once, ahead of time."""

    def __init__(self, module, input_names: list[str], model: onnx.ModelProto):
        self.module = module
        self.input_names = input_names
        self.model = model

    def run(self, inputs: Any, **kwargs) -> tuple:
        model = self.model if _has_structured_outputs(self.model) or _has_structured_inputs(self.model) else None
        return _run_module(self.module, _feeds(self.input_names, inputs), model)


class SpecializingRep(BackendRep):
    """A model some of whose compile-time operands are graph inputs: compiled per distinct
    values of those inputs (see the module docstring)."""

    def __init__(self, model: onnx.ModelProto, input_names: list[str], fixed: Sequence[str], compile_fn,
                 pinned: Sequence[str] = ()):
        self.model = model
        self.input_names = input_names
        self.fixed = list(fixed)        # grows when a specialization reveals more such inputs
        self.pinned = list(pinned)      # sequences, optionals, symbolic shapes: structure pinned
        self._compile = compile_fn
        self._modules: dict[tuple, Any] = {}
        self._types = {vi.name: vi.type for vi in model.graph.input}
        self._defaults = input_defaults(model)

    def run(self, inputs: Any, **kwargs) -> tuple:
        # an input with a default that the caller leaves out is specialized to its default
        feeds = {**self._defaults, **_feeds(self.input_names, inputs)}
        structured = bool(self.pinned) or _has_structured_outputs(self.model)
        return _run_module(self.module_for(feeds), {k: v for k, v in feeds.items() if k not in self.fixed},
                           self.model if structured else None)

    def module_for(self, feeds: dict[str, Any]):
        """The module compiled for the values ``feeds`` gives the fixed inputs (and for the
        structure of the pinned ones)."""
        while True:
            shapes = {n: _pin(self._types[n], feeds[n]) for n in self.pinned if n not in self.fixed}
            key = (tuple(_value_key(n, feeds[n]) for n in self.fixed), repr(sorted(shapes.items())))
            module = self._modules.get(key)
            if module is not None:
                return module
            try:
                module = self._compile(specialize(self.model, {n: feeds[n] for n in self.fixed}), shapes)
            except OperandNotConstantError as e:
                more = [n for n in e.inputs if n not in self.fixed and n in feeds
                        and self._types[n].WhichOneof("value") == "tensor_type"]
                if not more:
                    raise
                self.fixed.extend(more)
                continue
            if len(self._modules) >= SPECIALIZATION_CACHE_SIZE:
                self._modules.pop(next(iter(self._modules)))
            self._modules[key] = module
            return module


def input_defaults(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The default values of the graph inputs that have one: initializers of the same name, in
    a model of IR version 4 or later (before, such an initializer is a constant)."""
    from onnx import numpy_helper

    if model.ir_version < 4:
        return {}
    inputs = {vi.name for vi in model.graph.input}
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name in inputs}


def _has_structured_inputs(model: onnx.ModelProto) -> bool:
    return any(vi.type.WhichOneof("value") != "tensor_type" for vi in model.graph.input)


def _has_structured_outputs(model: onnx.ModelProto) -> bool:
    return any(vi.type.WhichOneof("value") != "tensor_type" for vi in model.graph.output)


def _value_key(name: str, value: Any) -> tuple:
    arr = np.ascontiguousarray(np.asarray(value))
    return (name, str(arr.dtype), arr.shape, arr.tobytes())


def specialize(model: onnx.ModelProto, values: dict[str, Any]) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs named in ``values`` are initializers holding them
    (replacing a default the model gives them).  From IR version 4 on they are taken out of the
    graph's inputs (an initializer listed as an input is a default the caller may override);
    before, they stay listed, declared with the type of the value they now hold."""
    from onnx import helper, numpy_helper

    m = onnx.ModelProto()
    m.CopyFrom(model)
    kept = [t for t in m.graph.initializer if t.name not in values]   # a default it replaces
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    declared = {vi.name: vi for vi in m.graph.input}
    for name, value in values.items():
        if name not in declared:
            raise InputError(f"'{name}' is not a graph input of the model")
        t = numpy_helper.from_array(np.asarray(value), name)
        m.graph.initializer.append(t)
        declared[name].type.CopyFrom(helper.make_tensor_type_proto(t.data_type, list(t.dims)))
    if m.ir_version >= 4:
        listed = [vi for vi in m.graph.input if vi.name not in values]
        del m.graph.input[:]
        m.graph.input.extend(listed)
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
        from ..driver.compile import compile as ember_compile

        if not cls.supports_device(device):
            raise EmberError(f"device {device!r} is not supported; Ember's backend runs on CPU")
        flags = os.environ.get("EMBER_BACKEND_CFLAGS")
        cflags = tuple(flags.split()) if flags is not None else DEFAULT_CFLAGS
        opt_level = kwargs.get("opt_level", 3)
        specialize_ = kwargs.get("specialize")
        if specialize_ is None:
            specialize_ = os.environ.get(SPECIALIZE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")

        def compile_fn(m, shapes=None):
            return ember_compile(m, "cpu", opt_level, cflags=cflags, shapes=shapes or None)

        init = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in init]
        if not specialize_:
            return EmberRep(compile_fn(model), names, model)
        pinned = structured_inputs(model)
        if pinned:
            return SpecializingRep(model, names, (), compile_fn, pinned)
        try:
            module = compile_fn(model)
        except OperandNotConstantError as e:
            if not e.inputs:
                raise
            return SpecializingRep(model, names, e.inputs, compile_fn)
        return EmberRep(module, names, model)

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

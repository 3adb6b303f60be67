"""Ember as an ONNX backend (``onnx.backend.base.Backend``).

    import ember.onnx.backend as backend
    rep = backend.prepare(model)            # compiles the model for the host CPU
    outputs = rep.run([x, y])               # inputs in graph-input order

This is what the ONNX backend test suites (and ``onnx_conformance.py``) drive.  Models are
compiled exactly as ``ember.compile`` compiles them; the C compiler's optimization level is
lowered for the tiny test models (``EMBER_BACKEND_CFLAGS`` overrides it).
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from ..errors import EmberError

#: C flags used for backend test models: they are tiny, compile time dominates
DEFAULT_CFLAGS = ("-O1",)


class EmberRep(BackendRep):
    def __init__(self, module, input_names: list[str]):
        self.module = module
        self.input_names = input_names

    def run(self, inputs: Any, **kwargs) -> tuple:
        if isinstance(inputs, dict):
            feeds = dict(inputs)
        else:
            if isinstance(inputs, np.ndarray):
                inputs = [inputs]
            feeds = dict(zip(self.input_names, inputs))
        out = self.module.run({k: np.asarray(v) for k, v in feeds.items()})
        return tuple(out.values())


class EmberBackend(Backend):
    @classmethod
    def is_compatible(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> bool:
        return cls.supports_device(device)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper().startswith("CPU")

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs) -> EmberRep:
        from ..build.compile import compile as ember_compile

        if not cls.supports_device(device):
            raise EmberError(f"device {device!r} is not supported; Ember's backend runs on CPU")
        flags = os.environ.get("EMBER_BACKEND_CFLAGS")
        cflags = tuple(flags.split()) if flags is not None else DEFAULT_CFLAGS
        module = ember_compile(model, "cpu", kwargs.get("opt_level", 3), cflags=cflags)
        init = {t.name for t in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in init]
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

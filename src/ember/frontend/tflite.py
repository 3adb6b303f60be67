"""The TFLite frontend: a ``.tflite`` flatbuffer translated into Ember's graph IR.

TFLite keeps images as NHWC; Ember's convolutions and pools are NCHW.  Each tensor's value is
kept in whichever layout its producer made, and converted (a transpose) only where a consumer
needs the other one, once per tensor: a chain of convolutions, elementwise ops and pools stays
NCHW from the first convolution to the first op that needs TFLite's layout (a reshape, say).

Quantized models (int8 / uint8 activations with scales and zero points) are translated op by op
as dequantize -> the float op -> quantize, with the weights dequantized at translation time; ops
that only move data (reshape, transpose, squeeze, gather, strided slice) run on the integers.
Float16 weights (DEQUANTIZE of a float16 constant) become float32 constants.

The translation of each builtin op is in :mod:`.tflite_ops`.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from ..errors import FrontendError, InvalidModelError, ModelFileError, UnsupportedOpError
from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Value
from ..graph.types import TensorType
from .core import TO_NCHW, NodeContext, check_supported
from .core.layout import framework_shape, held_layout, in_layout
from .tflite_files import TENSOR_TYPES, TENSOR_TYPE_NAMES, SubGraph, read_model


class OpContext(NodeContext):
    """What a translation function sees: the operator, its options, and its operands as Ember
    values in the layout it asks for.  Errors name the operator by its index
    (``operator 12``), TFLite's operators having no names."""

    framework = "TFLite"

    def __init__(self, fe: "_Translator", op):
        super().__init__(fe.b, f"{op.op.lower()}_{op.index}", op.op, f"operator {op.index}")
        self.fe, self.operator = fe, op
        self.float_mode = False

    # ---- operands --------------------------------------------------------------------------
    def n_inputs(self) -> int:
        return len(self.operator.inputs)

    def has_input(self, k: int) -> bool:
        return k < len(self.operator.inputs) and self.operator.inputs[k] >= 0

    def tensor(self, k: int):
        return self.fe.sg.tensors[self.operator.inputs[k]]

    def out_tensor(self, k: int = 0):
        return self.fe.sg.tensors[self.operator.outputs[k]]

    def is_const(self, k: int) -> bool:
        return self.fe.const_array(self.operator.inputs[k], False) is not None

    def const_input(self, k: int, what: str = "operand") -> np.ndarray:
        """Input ``k`` as a numpy constant (dequantized in a quantized op)."""
        a = self.fe.const_array(self.operator.inputs[k], self.float_mode)
        if a is None:
            raise self.not_constant(what, k)
        return a

    def rank(self, k: int) -> int:
        return len(self.fe.shape(self.operator.inputs[k]))

    def shape(self, k: int) -> tuple:
        return self.fe.shape(self.operator.inputs[k])

    def layout(self, k: int) -> str:
        return self.fe.layout_of(self.operator.inputs[k])

    def nhwc(self, k: int) -> Value:
        """Input ``k`` in TFLite's own layout."""
        return self.fe.value(self.operator.inputs[k], "NHWC", self.float_mode)

    def nchw(self, k: int) -> Value:
        """Rank-4 input ``k`` in Ember's NCHW layout."""
        return self.fe.value(self.operator.inputs[k], "NCHW", self.float_mode)

    def get(self, k: int, layout: str) -> Value:
        return self.fe.value(self.operator.inputs[k], layout, self.float_mode)

    # ---- results ---------------------------------------------------------------------------
    def set(self, v: Value, layout: str = "NHWC", k: int = 0) -> None:
        self.fe.set_value(self.operator.outputs[k], v, layout, self.float_mode, self.name)

    def add(self, op: str, inputs, **attrs) -> Value:
        """Core op ``op`` named after this operator, never folded (the integer steps of a
        quantized op stay in the graph for the passes that read them)."""
        return self.b.op(op, inputs, self.name, **attrs)

    # ---- options ---------------------------------------------------------------------------
    def opt(self, index: int, kind: str, default: Any):
        from flatbuffers import number_types as N

        flags = {"i8": N.Int8Flags, "u8": N.Uint8Flags, "i32": N.Int32Flags, "f32": N.Float32Flags,
                 "bool": N.BoolFlags, "i64": N.Int64Flags}
        o = self.operator.options
        if o is None:
            return default
        if kind == "i32[]":
            return [int(v) for v in o.array(index, np.int32)]
        return o.scalar(index, flags[kind], default)


class _Translator:
    def __init__(self, sg: SubGraph, name: str):
        self.sg = sg
        self.b = GraphBuilder(name)
        self.values: dict[int, dict[str, Value]] = {}   # tensor -> layout -> value
        self.consts: dict[int, np.ndarray] = {}         # tensors computed at translation time

    # shapes and layouts, in TFLite's terms
    def shape(self, i: int) -> tuple:
        if i in self.consts:
            return tuple(self.consts[i].shape)
        vals = self.values.get(i)
        if vals:
            return framework_shape(vals)
        return self.sg.tensors[i].shape

    def layout_of(self, i: int) -> str:
        return held_layout(self.values.get(i, {}))

    def const_array(self, i: int, dequantize: bool) -> np.ndarray | None:
        if i in self.consts:
            return self.consts[i]
        t = self.sg.tensors[i]
        if t.data is None:
            return None
        if dequantize and t.quant is not None and t.dtype in ("int8", "uint8", "int16", "int32"):
            return dequantize_array(t.data, t.quant)
        return t.data

    def value(self, i: int, layout: str, float_mode: bool) -> Value:
        t = self.sg.tensors[i]
        quantized = float_mode and t.quant is not None and t.dtype in ("int8", "uint8", "int16")
        c = self.const_array(i, float_mode)
        if c is not None:
            c = np.asarray(c)
            if layout == "NCHW":
                c = c.transpose(TO_NCHW)
            return self.b.const(np.ascontiguousarray(c))
        vals = self.values.get(i)
        if not vals:
            raise InvalidModelError(f"tensor {i} ('{t.name}') is read before any operator writes it")
        key = ("f" if quantized else "") + layout
        if not quantized:
            return in_layout(self.b, vals, layout, f"to_{layout.lower()}_{i}")
        if key in vals:
            return vals[key]
        raw = self.value(i, layout, False)
        scale, zp = t.quant.scale, t.quant.zero_point
        if scale.size != 1:
            raise UnsupportedOpError({"per-channel quantized activation": [t.name]}, "TFLite")
        v = self.b.op("dequantize", [raw, self.b.const(np.float32(scale[0])),
                                     self.b.const(np.asarray(zp[0], dtype=raw.type.dtype))], f"dq_{i}")
        vals[key] = v
        return v

    def set_value(self, i: int, v: Value, layout: str, float_mode: bool, name: str) -> None:
        t = self.sg.tensors[i]
        if float_mode and t.quant is not None and t.dtype in ("int8", "uint8", "int16"):
            scale, zp = t.quant.scale, t.quant.zero_point
            v = self.b.op("quantize", [v, self.b.const(np.float32(scale[0])),
                                       self.b.const(np.asarray(zp[0], dtype=t.dtype))], f"q_{name}")
        if rank_of(v) != 4:
            layout = "NHWC"
        self.values[i] = {layout: v}


def rank_of(v: Value) -> int:
    return len(v.type.shape)


def dequantize_array(q: np.ndarray, quant) -> np.ndarray:
    """(q - zero_point) * scale in float32, per channel along the quantized dimension."""
    scale = quant.scale.astype(np.float32)
    zp = quant.zero_point.astype(np.float32)
    if scale.size > 1:
        shape = [1] * q.ndim
        shape[quant.axis] = scale.size
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return ((q.astype(np.float32) - zp) * scale).astype(np.float32)


def _load_bytes(model) -> tuple[bytes, str]:
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "tflite_model"
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ModelFileError(f"cannot read TFLite model '{path}': {e.strerror or e}") from None
        base = os.path.splitext(os.path.basename(path))[0] or "tflite_model"
        return data, base
    raise FrontendError(f"from_tflite takes a path or the model's bytes, got {type(model).__name__}")


def _input_type(t, batch: int | str | None) -> TensorType:
    if t.type_code not in TENSOR_TYPES:
        raise UnsupportedOpError({f"input of type {TENSOR_TYPE_NAMES.get(t.type_code, t.type_code)}": [t.name]},
                                 "TFLite")
    shape = list(t.shape)
    if t.shape_signature and len(t.shape_signature) == len(shape):
        for k, d in enumerate(t.shape_signature):
            if d == -1:
                if k == 0:
                    shape[k] = "batch" if batch is None else batch
                else:
                    shape[k] = shape[k] if shape[k] > 0 else 1
    return TensorType(tuple(shape), t.dtype)


def from_tflite(model, batch: int | str | None = None) -> Graph:
    """Translate a TFLite model (a path to a ``.tflite`` file or its bytes) into a Graph.

    Inputs and outputs keep TFLite's shapes and layouts (NHWC images).  An open batch dimension
    (``-1`` first in an input's shape signature) stays symbolic (``batch``: one artifact runs
    every batch size) unless ``batch`` fixes it; other open dimensions take the converted size.  Every unsupported op of the model is reported at once
    (:class:`~ember.errors.UnsupportedOpError`) before anything is translated.
    """
    from .tflite_ops import QUANT_NATIVE, TRANSLATIONS

    data, name = _load_bytes(model)
    subgraphs = read_model(data)
    sg = subgraphs[0]

    check_supported([(op.op, f"operator {op.index}") for op in sg.operators if op.op not in TRANSLATIONS]
                    + [(f"tensor type {TENSOR_TYPE_NAMES.get(t.type_code, t.type_code)}", t.name)
                       for t in sg.tensors if t.type_code not in TENSOR_TYPES], "TFLite")

    fe = _Translator(sg, name)
    for i in sg.inputs:
        t = sg.tensors[i]
        fe.values[i] = {"NHWC": fe.b.input(t.name, _input_type(t, batch))}
    for op in sg.operators:
        cx = OpContext(fe, op)
        tensors = [sg.tensors[i] for i in op.inputs + op.outputs if i >= 0]
        cx.float_mode = op.op not in QUANT_NATIVE and any(
            t.quant is not None and t.dtype in ("int8", "uint8", "int16") for t in tensors)
        # options are read lazily from a damaged flatbuffer, or operands may contradict each other
        with cx.translating((struct.error, IndexError, TypeError, ValueError, OverflowError, ZeroDivisionError),
                            "damaged or inconsistent operator"):
            TRANSLATIONS[op.op](cx)
    outs: list[Value] = []
    for i in sg.outputs:
        v = fe.value(i, "NHWC", False)
        if v.producer is not None and all(v is not o for o in outs):
            v.name = fe.b.fresh(sg.tensors[i].name)     # the outputs keep TFLite's names
        outs.append(v)
    return fe.b.finish(outs)

"""Reading a TFLite model: the flatbuffer of TFLite's schema (``schema.fbs``), read through the
``flatbuffers`` runtime with accessors written here for the tables the frontend needs (no
generated code, no TensorFlow).

A table field is addressed by its index in the schema (the vtable slot ``4 + 2 * index``).
Everything read is checked against the buffer's bounds by the runtime; a damaged buffer raises
:class:`~ember.errors.ModelLoadError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import FrontendError, ModelLoadError

#: TensorType enum -> (Ember dtype, numpy dtype)
TENSOR_TYPES = {
    0: ("float32", np.float32), 1: ("float16", np.float16), 2: ("int32", np.int32), 3: ("uint8", np.uint8),
    4: ("int64", np.int64), 6: ("bool", np.bool_), 7: ("int16", np.int16), 9: ("int8", np.int8),
    10: ("float64", np.float64),
}
TENSOR_TYPE_NAMES = {5: "STRING", 8: "COMPLEX64", 11: "COMPLEX128", 12: "UINT64", 13: "RESOURCE",
                     14: "VARIANT", 15: "UINT32", 16: "UINT16", 17: "INT4"}


class _Table:
    """One flatbuffer table: typed reads of its fields by schema index."""

    def __init__(self, tab):
        self.t = tab

    def _slot(self, index: int) -> int:
        return self.t.Offset(4 + 2 * index)

    def has(self, index: int) -> bool:
        return self._slot(index) != 0

    def scalar(self, index: int, flags, default):
        o = self._slot(index)
        return self.t.Get(flags, self.t.Pos + o) if o else default

    def table(self, index: int):
        from flatbuffers.table import Table

        o = self._slot(index)
        return _Table(Table(self.t.Bytes, self.t.Indirect(self.t.Pos + o))) if o else None

    def tables(self, index: int) -> list:
        from flatbuffers.table import Table

        o = self._slot(index)
        if not o:
            return []
        n, start = self.t.VectorLen(o), self.t.Vector(o)
        return [_Table(Table(self.t.Bytes, self.t.Indirect(start + 4 * i))) for i in range(n)]

    def array(self, index: int, dtype) -> np.ndarray:
        """A vector of scalars as a numpy array (a copy)."""
        o = self._slot(index)
        if not o:
            return np.zeros(0, dtype)
        n, start = self.t.VectorLen(o), self.t.Vector(o)
        dt = np.dtype(dtype).newbyteorder("<")
        end = start + n * dt.itemsize
        if end > len(self.t.Bytes):
            raise ModelLoadError(f"a vector runs past the end of the model ({end} > {len(self.t.Bytes)} bytes)")
        return np.frombuffer(self.t.Bytes, dt, n, start).astype(dt.newbyteorder("="))

    def string(self, index: int) -> str:
        o = self._slot(index)
        return self.t.String(self.t.Pos + o).decode("utf-8", "backslashreplace") if o else ""


@dataclass
class Quantization:
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int


@dataclass
class Tensor:
    index: int
    name: str
    shape: tuple
    type_code: int
    data: np.ndarray | None            # the constant's value, None for activations
    quant: Quantization | None
    shape_signature: tuple = ()

    @property
    def dtype(self) -> str:
        return TENSOR_TYPES[self.type_code][0]


@dataclass
class Operator:
    index: int
    op: str                            # builtin operator name, or "CUSTOM(code)"
    inputs: list[int]
    outputs: list[int]
    options: _Table | None = field(repr=False, default=None)


@dataclass
class SubGraph:
    name: str
    tensors: list[Tensor]
    inputs: list[int]
    outputs: list[int]
    operators: list[Operator]


def _builtin_names() -> dict[int, str]:
    from .tflite_ops import BUILTIN_CODES

    return {v: k for k, v in BUILTIN_CODES.items()}


def read_model(data: bytes) -> list[SubGraph]:
    """The subgraphs of a TFLite flatbuffer (``data``), constants decoded."""
    import importlib.util
    import struct

    if importlib.util.find_spec("flatbuffers") is None:
        raise FrontendError("reading TFLite models needs the 'flatbuffers' package: "
                            "pip install ember[tflite]") from None
    try:
        return _read(bytes(data))
    except ModelLoadError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as e:
        raise ModelLoadError(f"not a readable TFLite flatbuffer: {e}") from None


def _read(buf: bytes) -> list[SubGraph]:
    from flatbuffers import number_types as N
    from flatbuffers.table import Table

    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ModelLoadError("not a TFLite model (no 'TFL3' identifier)")
    root = int.from_bytes(buf[0:4], "little")
    if root >= len(buf):
        raise ModelLoadError("not a TFLite model (root offset out of range)")
    model = _Table(Table(buf, root))
    names = _builtin_names()
    codes = []
    for oc in model.tables(1):
        code = max(oc.scalar(0, N.Int8Flags, 0), oc.scalar(3, N.Int32Flags, 0))
        if code == 32:  # CUSTOM
            codes.append(f"CUSTOM({oc.string(1)})")
        else:
            codes.append(names.get(code, f"BUILTIN_{code}"))
    buffers = model.tables(4)
    subgraphs = []
    for sg in model.tables(2):
        tensors = []
        for i, t in enumerate(sg.tables(0)):
            shape = tuple(int(d) for d in t.array(0, np.int32))
            type_code = t.scalar(1, N.Int8Flags, 0)
            bidx = t.scalar(2, N.Uint32Flags, 0)
            data = None
            if 0 < bidx < len(buffers):
                b = buffers[bidx]
                if b.scalar(1, N.Uint64Flags, 0) > 1:
                    raise ModelLoadError(f"tensor {i} keeps its data outside the flatbuffer "
                                         f"(models over 2 GB are not read)")
                raw = b.array(0, np.uint8)
                if raw.size:
                    if type_code not in TENSOR_TYPES:
                        raise ModelLoadError(f"tensor {i} has a constant of unsupported type "
                                             f"{TENSOR_TYPE_NAMES.get(type_code, type_code)}")
                    npdt = np.dtype(TENSOR_TYPES[type_code][1])
                    count = int(np.prod(shape)) if shape else 1
                    if raw.size != count * npdt.itemsize:
                        raise ModelLoadError(f"tensor {i} ('{t.string(3)}'): its buffer holds {raw.size} bytes, "
                                             f"its shape {list(shape)} needs {count * npdt.itemsize}")
                    data = raw.view(npdt.newbyteorder("<")).astype(npdt).reshape(shape)
            quant = None
            q = t.table(4)
            if q is not None and q.has(2):
                scale = q.array(2, np.float32)
                zp = q.array(3, np.int64)
                if scale.size:
                    quant = Quantization(scale, zp if zp.size else np.zeros_like(scale, np.int64),
                                         q.scalar(6, N.Int32Flags, 0))
            sig = tuple(int(d) for d in t.array(7, np.int32))
            tensors.append(Tensor(i, t.string(3) or f"tensor_{i}", shape, type_code, data, quant, sig))
        ops = []
        for k, o in enumerate(sg.tables(3)):
            ci = o.scalar(0, N.Uint32Flags, 0)
            if ci >= len(codes):
                raise ModelLoadError(f"operator {k} names operator code {ci} of {len(codes)}")
            ins = [int(v) for v in o.array(1, np.int32)]
            outs = [int(v) for v in o.array(2, np.int32)]
            for v in ins + outs:
                if v >= len(tensors) or v < -1:
                    raise ModelLoadError(f"operator {k} ({codes[ci]}) names tensor {v} of {len(tensors)}")
            ops.append(Operator(k, codes[ci], ins, outs, o.table(4)))
        ins = [int(v) for v in sg.array(1, np.int32)]
        outs = [int(v) for v in sg.array(2, np.int32)]
        for v in ins + outs:
            if not 0 <= v < len(tensors):
                raise ModelLoadError(f"a subgraph input/output names tensor {v} of {len(tensors)}")
        subgraphs.append(SubGraph(sg.string(4), tensors, ins, outs, ops))
    if not subgraphs:
        raise ModelLoadError("the TFLite model has no subgraph")
    return subgraphs

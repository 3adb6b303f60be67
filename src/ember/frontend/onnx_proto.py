"""Reading ONNX's protobuf messages without the onnx package.

``import onnx`` costs about a second (most of it ml_dtypes registering its dtypes with numpy,
which onnx imports unconditionally), so a compile of a model file would pay more for the import
than for the compile.  This module decodes the protobuf wire format of ONNX's messages itself
into light objects that carry the field names of onnx's generated classes (``ModelProto.graph``,
``NodeProto.attribute``, ``TensorProto.raw_data``, ``TypeProto.WhichOneof("value")``, ...), so
the frontend reads either kind alike (duck typing).

- Decoding follows the wire format: varints, fixed 32/64-bit values, length-delimited fields
  (strings, bytes, messages, packed repeated scalars); repeated scalars are read packed or not;
  a field the tables below do not know is kept as its bytes (and written back by
  :func:`encode`), as protobuf keeps unknown fields.  Malformed bytes (a truncated varint, a
  field running past the end of its message, a wire type that does not fit the field, groups,
  nesting deeper than protobuf's 100 levels) raise :class:`~ember.errors.ModelLoadError` naming
  the message, field and byte offset.
- ``TensorProto.raw_data`` is a read-only ``memoryview`` into the model's bytes, never a copy,
  so a 400 MB model's weights are not copied while reading it.
- String fields are ``str``, or ``bytes`` where they are not valid UTF-8 (as onnx's classes
  hand them over, and as :mod:`~ember.frontend.onnx_validate` expects them).
- :func:`encode` writes a message back (``SerializeToString``), and :func:`to_onnx` makes an
  onnx object of it, for the few features that need the onnx package (see :func:`onnx_module`).

Op schemas are onnx's (its C++ extension).  :func:`onnx_defs` loads that extension module alone,
without running the onnx package's ``__init__`` (and so without ml_dtypes), under the name the
package itself gives it, so a later ``import onnx`` in the same process finds it loaded.
"""

from __future__ import annotations

import contextlib
import struct
import sys
from typing import Any

from ..errors import ModelLoadError

__all__ = ["parse_model", "parse", "encode", "to_onnx", "is_light", "attribute_value", "onnx_module", "onnx_defs",
           "ModelProto", "GraphProto", "NodeProto", "AttributeProto", "TensorProto", "SparseTensorProto",
           "ValueInfoProto", "TypeProto", "FunctionProto", "A", "T", "MAX_DEPTH"]

#: protobuf's default limit on message nesting
MAX_DEPTH = 100


class A:
    """AttributeProto.AttributeType values."""
    UNDEFINED, FLOAT, INT, STRING, TENSOR, GRAPH, FLOATS, INTS, STRINGS, TENSORS, GRAPHS, SPARSE_TENSOR, \
        SPARSE_TENSORS, TYPE_PROTO, TYPE_PROTOS = range(15)
    NAMES = ("UNDEFINED", "FLOAT", "INT", "STRING", "TENSOR", "GRAPH", "FLOATS", "INTS", "STRINGS", "TENSORS",
             "GRAPHS", "SPARSE_TENSOR", "SPARSE_TENSORS", "TYPE_PROTO", "TYPE_PROTOS")


class T:
    """TensorProto.DataType and DataLocation values."""
    UNDEFINED, FLOAT, UINT8, INT8, UINT16, INT16, INT32, INT64, STRING, BOOL, FLOAT16, DOUBLE, UINT32, UINT64, \
        COMPLEX64, COMPLEX128, BFLOAT16 = range(17)
    NAMES = ("UNDEFINED", "FLOAT", "UINT8", "INT8", "UINT16", "INT16", "INT32", "INT64", "STRING", "BOOL", "FLOAT16",
             "DOUBLE", "UINT32", "UINT64", "COMPLEX64", "COMPLEX128", "BFLOAT16", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ",
             "FLOAT8E5M2", "FLOAT8E5M2FNUZ", "UINT4", "INT4", "FLOAT4E2M1", "FLOAT8E8M0", "UINT2", "INT2",
             "FLOAT6E2M3", "FLOAT6E3M2")
    DEFAULT, EXTERNAL = 0, 1


def dtype_name(elem: int) -> str:
    """The name of a TensorProto data type (``FLOAT``), ``#n`` for an unknown one."""
    return T.NAMES[elem] if 0 <= elem < len(T.NAMES) else f"#{elem}"


def attr_type_name(t: int) -> str:
    return A.NAMES[t] if 0 <= t < len(A.NAMES) else f"#{t}"


# ---- message classes --------------------------------------------------------------------------
# kinds: i64/i32 (signed varint), u64 (varint), enum, f32/f64 (fixed), str, bytes, raw (bytes as a
# memoryview), or a message class name

_VARINT = ("i64", "i32", "u64", "enum")
_DEFAULTS = {"i64": 0, "i32": 0, "u64": 0, "enum": 0, "f32": 0.0, "f64": 0.0, "str": "", "bytes": b"",
             "raw": b""}


class Message:
    """A decoded message: fields as attributes, defaults for those not set."""

    FIELDS: dict[int, tuple[str, str, bool]] = {}      # number -> (name, kind, repeated)
    ONEOFS: dict[str, tuple[str, ...]] = {}
    _BY_NAME: dict[str, tuple[int, str, bool]] = {}
    _REPEATED: tuple[str, ...] = ()

    def __init__(self):
        d = self.__dict__
        d["_set"] = set()
        d["_unknown"] = []
        for name in self._REPEATED:
            d[name] = []

    def __getattr__(self, name: str) -> Any:
        spec = type(self)._BY_NAME.get(name)
        if spec is None or name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        kind = spec[1]
        if kind in _DEFAULTS:
            return _DEFAULTS[kind]
        return _CLASSES[kind]()                          # an unset message reads as an empty one

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if not name.startswith("_") and name in type(self)._BY_NAME and not type(self)._BY_NAME[name][2]:
            self._set.add(name)
            for members in self.ONEOFS.values():
                if name in members:
                    for other in members:
                        if other != name and other in self._set:
                            self._set.discard(other)
                            self.__dict__.pop(other, None)

    def HasField(self, name: str) -> bool:  # noqa: N802 - onnx's spelling
        spec = type(self)._BY_NAME.get(name)
        if spec is None or spec[2]:
            if name in self.ONEOFS:
                return self.WhichOneof(name) is not None
            raise ValueError(f"{type(self).__name__} has no singular field {name!r}")
        return name in self._set

    def WhichOneof(self, group: str) -> str | None:  # noqa: N802
        for name in self.ONEOFS.get(group, ()):
            if name in self._set:
                return name
        return None

    def CopyFrom(self, other: "Message") -> None:  # noqa: N802
        """Make this message a deep copy of ``other`` (bytes and memoryviews shared)."""
        if other is self:
            return
        self.__dict__.clear()
        self._set = set(other._set)
        self._unknown = list(other._unknown)
        for name, kind, rep in self.FIELDS.values():
            if rep:
                vals = other.__dict__.get(name, [])
                object.__setattr__(self, name, [_copy(v) for v in vals] if kind in _CLASSES else list(vals))
            elif name in other.__dict__:
                object.__setattr__(self, name, _copy(other.__dict__[name]))

    def SerializeToString(self, deterministic: bool = False) -> bytes:  # noqa: N802
        return encode(self)

    def ListFields(self) -> list[tuple[str, Any]]:  # noqa: N802
        out = []
        for name, _kind, rep in self.FIELDS.values():
            if rep:
                if self.__dict__.get(name):
                    out.append((name, self.__dict__[name]))
            elif name in self._set:
                out.append((name, self.__dict__[name]))
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={v!r}" for k, v in self.ListFields()) + ")"


def _copy(v):
    if isinstance(v, Message):
        c = type(v)()
        c.CopyFrom(v)
        return c
    return v


_CLASSES: dict[str, type] = {}


def _message(name: str, fields: dict[int, tuple], oneofs: dict[str, tuple[str, ...]] | None = None) -> type:
    spec = {k: (f[0], f[1], len(f) > 2 and f[2] == "rep") for k, f in fields.items()}
    cls = type(name, (Message,), {"FIELDS": spec, "ONEOFS": oneofs or {},
                                   "_BY_NAME": {n: (k, kind, rep) for k, (n, kind, rep) in spec.items()},
                                   "_REPEATED": tuple(n for n, _kind, rep in spec.values() if rep)})
    cls.__module__ = __name__
    _CLASSES[name] = cls
    return cls


R = "rep"
StringStringEntryProto = _message("StringStringEntryProto", {1: ("key", "str"), 2: ("value", "str")})
OperatorSetIdProto = _message("OperatorSetIdProto", {1: ("domain", "str"), 2: ("version", "i64")})
Segment = _message("Segment", {1: ("begin", "i64"), 2: ("end", "i64")})
TensorProto = _message("TensorProto", {
    1: ("dims", "i64", R), 2: ("data_type", "i32"), 3: ("segment", "Segment"), 4: ("float_data", "f32", R),
    5: ("int32_data", "i32", R), 6: ("string_data", "bytes", R), 7: ("int64_data", "i64", R), 8: ("name", "str"),
    9: ("raw_data", "raw"), 10: ("double_data", "f64", R), 11: ("uint64_data", "u64", R), 12: ("doc_string", "str"),
    13: ("external_data", "StringStringEntryProto", R), 14: ("data_location", "enum"),
    16: ("metadata_props", "StringStringEntryProto", R)})
SparseTensorProto = _message("SparseTensorProto", {1: ("values", "TensorProto"), 2: ("indices", "TensorProto"),
                                                   3: ("dims", "i64", R)})
Dimension = _message("Dimension", {1: ("dim_value", "i64"), 2: ("dim_param", "str"), 3: ("denotation", "str")},
                     {"value": ("dim_value", "dim_param")})
TensorShapeProto = _message("TensorShapeProto", {1: ("dim", "Dimension", R)})
TensorTypeProto = _message("TensorTypeProto", {1: ("elem_type", "i32"), 2: ("shape", "TensorShapeProto")})
SequenceTypeProto = _message("SequenceTypeProto", {1: ("elem_type", "TypeProto")})
MapTypeProto = _message("MapTypeProto", {1: ("key_type", "i32"), 2: ("value_type", "TypeProto")})
OptionalTypeProto = _message("OptionalTypeProto", {1: ("elem_type", "TypeProto")})
OpaqueTypeProto = _message("OpaqueTypeProto", {1: ("domain", "str"), 2: ("name", "str")})
TypeProto = _message("TypeProto", {
    1: ("tensor_type", "TensorTypeProto"), 4: ("sequence_type", "SequenceTypeProto"), 5: ("map_type", "MapTypeProto"),
    6: ("denotation", "str"), 7: ("opaque_type", "OpaqueTypeProto"), 8: ("sparse_tensor_type", "TensorTypeProto"),
    9: ("optional_type", "OptionalTypeProto")},
    {"value": ("tensor_type", "sequence_type", "map_type", "opaque_type", "sparse_tensor_type", "optional_type")})
ValueInfoProto = _message("ValueInfoProto", {1: ("name", "str"), 2: ("type", "TypeProto"), 3: ("doc_string", "str"),
                                             4: ("metadata_props", "StringStringEntryProto", R)})
AttributeProto = _message("AttributeProto", {
    1: ("name", "str"), 2: ("f", "f32"), 3: ("i", "i64"), 4: ("s", "bytes"), 5: ("t", "TensorProto"),
    6: ("g", "GraphProto"), 7: ("floats", "f32", R), 8: ("ints", "i64", R), 9: ("strings", "bytes", R),
    10: ("tensors", "TensorProto", R), 11: ("graphs", "GraphProto", R), 13: ("doc_string", "str"),
    14: ("tp", "TypeProto"), 15: ("type_protos", "TypeProto", R), 20: ("type", "enum"), 21: ("ref_attr_name", "str"),
    22: ("sparse_tensor", "SparseTensorProto"), 23: ("sparse_tensors", "SparseTensorProto", R)})
NodeProto = _message("NodeProto", {
    1: ("input", "str", R), 2: ("output", "str", R), 3: ("name", "str"), 4: ("op_type", "str"),
    5: ("attribute", "AttributeProto", R), 6: ("doc_string", "str"), 7: ("domain", "str"), 8: ("overload", "str"),
    9: ("metadata_props", "StringStringEntryProto", R)})
TensorAnnotation = _message("TensorAnnotation", {1: ("tensor_name", "str"),
                                                 2: ("quant_parameter_tensor_names", "StringStringEntryProto", R)})
GraphProto = _message("GraphProto", {
    1: ("node", "NodeProto", R), 2: ("name", "str"), 5: ("initializer", "TensorProto", R), 10: ("doc_string", "str"),
    11: ("input", "ValueInfoProto", R), 12: ("output", "ValueInfoProto", R), 13: ("value_info", "ValueInfoProto", R),
    14: ("quantization_annotation", "TensorAnnotation", R), 15: ("sparse_initializer", "SparseTensorProto", R),
    16: ("metadata_props", "StringStringEntryProto", R)})
FunctionProto = _message("FunctionProto", {
    1: ("name", "str"), 4: ("input", "str", R), 5: ("output", "str", R), 6: ("attribute", "str", R),
    7: ("node", "NodeProto", R), 8: ("doc_string", "str"), 9: ("opset_import", "OperatorSetIdProto", R),
    10: ("domain", "str"), 11: ("attribute_proto", "AttributeProto", R), 12: ("value_info", "ValueInfoProto", R),
    13: ("overload", "str"), 14: ("metadata_props", "StringStringEntryProto", R)})
ModelProto = _message("ModelProto", {
    1: ("ir_version", "i64"), 2: ("producer_name", "str"), 3: ("producer_version", "str"), 4: ("domain", "str"),
    5: ("model_version", "i64"), 6: ("doc_string", "str"), 7: ("graph", "GraphProto"),
    8: ("opset_import", "OperatorSetIdProto", R), 14: ("metadata_props", "StringStringEntryProto", R),
    25: ("functions", "FunctionProto", R)})


def is_light(x: Any) -> bool:
    """Whether ``x`` is one of this module's messages (rather than one of onnx's)."""
    return isinstance(x, Message)


# ---- decoding ---------------------------------------------------------------------------------

class _Reader:
    __slots__ = ("buf", "what")

    def __init__(self, buf: memoryview, what: str):
        self.buf = buf
        self.what = what

    def fail(self, msg: str, pos: int) -> ModelLoadError:
        return ModelLoadError(f"cannot read {self.what} as an ONNX model: {msg} at byte {pos} "
                              f"(truncated or not a model file?)")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        buf = self.buf
        result = shift = 0
        start = pos
        while True:
            if pos >= end:
                raise self.fail("truncated varint", start)
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7
            if shift >= 70:
                raise self.fail("varint longer than 10 bytes", start)


def _signed(v: int, bits: int = 64) -> int:
    v &= (1 << 64) - 1
    if v >= 1 << 63:
        v -= 1 << 64
    if bits == 32:
        v = ((v + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
    return v


def _text(b: bytes):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return bytes(b)


def _scalar(kind: str, v: int) -> int:
    if kind == "i64" or kind == "enum":
        return _signed(v)
    if kind == "i32":
        return _signed(v, 32)
    return v


def _decode(r: _Reader, cls: type, pos: int, end: int, depth: int) -> Message:
    if depth > MAX_DEPTH:
        raise r.fail(f"messages nested more than {MAX_DEPTH} deep", pos)
    msg = cls()
    d = msg.__dict__
    fields = cls.FIELDS
    buf = r.buf
    oneofs = cls.ONEOFS
    while pos < end:
        start = pos
        key, pos = r.varint(pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise r.fail(f"field number 0 in {cls.__name__}", start)
        spec = fields.get(number)
        # the payload's extent
        if wire == 0:
            v, pos = r.varint(pos, end)
        elif wire == 2:
            n, p = r.varint(pos, end)
            if n > end - p:
                name = spec[0] if spec else f"#{number}"
                raise r.fail(f"field {cls.__name__}.{name} ({n} bytes) runs past the end of its message", p)
            pos = p + n
            v = (p, pos)
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if size > end - pos:
                raise r.fail(f"fixed-size field #{number} of {cls.__name__} runs past the end", pos)
            v = (pos, pos + size)
            pos += size
        else:
            raise r.fail(f"wire type {wire} (group or invalid) in {cls.__name__} field #{number}", start)
        if spec is None:
            msg._unknown.append(bytes(buf[start:pos]))
            continue
        name, kind, rep = spec
        if kind in _CLASSES:
            if wire != 2:
                raise r.fail(f"wrong wire type {wire} for {cls.__name__}.{name} (a message)", start)
            if rep:
                d[name].append(_decode(r, _CLASSES[kind], v[0], v[1], depth + 1))
                continue
            sub = _decode(r, _CLASSES[kind], v[0], v[1], depth + 1)
            if name in msg._set and not oneofs:
                old = d[name]                              # a repeated singular message merges
                for k2, val in sub.__dict__.items():
                    if k2.startswith("_"):
                        continue
                    if isinstance(val, list):
                        getattr(old, k2).extend(val)
                    elif k2 in sub._set:
                        setattr(old, k2, val)
                continue
            value = sub
        elif kind in _VARINT:
            if wire == 0:
                value = _scalar(kind, v)
            elif wire == 2 and rep:                         # packed
                p, e = v
                vals = d[name]
                while p < e:
                    x, p = r.varint(p, e)
                    vals.append(_scalar(kind, x))
                continue
            else:
                raise r.fail(f"wrong wire type {wire} for {cls.__name__}.{name} (a varint)", start)
        elif kind == "f32" or kind == "f64":
            size, fmt = (4, "<f") if kind == "f32" else (8, "<d")
            if wire == (5 if kind == "f32" else 1):
                value = struct.unpack_from(fmt, buf, v[0])[0]
            elif wire == 2 and rep:
                p, e = v
                if (e - p) % size:
                    raise r.fail(f"packed {cls.__name__}.{name} holds {e - p} bytes, not a multiple of {size}", p)
                d[name].extend(struct.unpack_from(f"<{(e - p) // size}{fmt[1]}", buf, p))
                continue
            else:
                raise r.fail(f"wrong wire type {wire} for {cls.__name__}.{name} (a {kind[1:]}-bit float)", start)
        else:                                               # str, bytes, raw
            if wire != 2:
                raise r.fail(f"wrong wire type {wire} for {cls.__name__}.{name} (length-delimited)", start)
            data = buf[v[0]:v[1]]
            value = data if kind == "raw" else _text(bytes(data)) if kind == "str" else bytes(data)
        if rep:
            d[name].append(value)
        else:
            d[name] = value
            msg._set.add(name)
            for members in oneofs.values():
                if name in members:
                    for other in members:
                        if other != name and other in msg._set:
                            msg._set.discard(other)
                            d.pop(other, None)
    return msg


def parse(cls: type, data, what: str = "the given bytes") -> Message:
    """A message of class ``cls`` decoded from ``data`` (bytes, or a memoryview of them)."""
    buf = data if isinstance(data, memoryview) else memoryview(data)
    if not buf.readonly:
        buf = memoryview(bytes(buf))
    buf = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
    return _decode(_Reader(buf, what), cls, 0, len(buf), 0)


def parse_model(data, what: str = "the given bytes") -> Message:
    """The ModelProto of a model's bytes; raw tensor data stays a view of ``data``."""
    return parse(ModelProto, data, what)


# ---- encoding ---------------------------------------------------------------------------------

def _varint(v: int, out: bytearray) -> None:
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _encode(msg: Message, out: bytearray) -> None:
    d = msg.__dict__
    for number in sorted(msg.FIELDS):
        name, kind, rep = msg.FIELDS[number]
        if rep:
            vals = d.get(name) or []
            if not vals:
                continue
        elif name in msg._set:
            vals = [d[name]]
        else:
            continue
        if rep and (kind in _VARINT or kind in ("f32", "f64")):
            body = bytearray()
            for v in vals:
                if kind in _VARINT:
                    _varint(int(v), body)
                else:
                    body += struct.pack("<f" if kind == "f32" else "<d", v)
            _varint(number << 3 | 2, out)
            _varint(len(body), out)
            out += body
            continue
        for v in vals:
            if kind in _VARINT:
                _varint(number << 3, out)
                _varint(int(v), out)
            elif kind in ("f32", "f64"):
                _varint(number << 3 | (5 if kind == "f32" else 1), out)
                out += struct.pack("<f" if kind == "f32" else "<d", v)
            else:
                if kind in _CLASSES:
                    body = bytearray()
                    _encode(v, body)
                elif isinstance(v, str):
                    body = v.encode("utf-8")
                else:
                    body = v
                _varint(number << 3 | 2, out)
                _varint(len(body), out)
                out += body
    for raw in msg._unknown:
        out += raw


def encode(msg: Message) -> bytes:
    """The wire-format bytes of a message (``SerializeToString``)."""
    out = bytearray()
    _encode(msg, out)
    return bytes(out)


def to_onnx(msg: Any) -> Any:
    """``msg`` as an object of onnx's class of that name (imports onnx); onnx objects pass."""
    if not is_light(msg):
        return msg
    onnx = onnx_module()
    obj = getattr(onnx, type(msg).__name__)()
    obj.ParseFromString(encode(msg))
    return obj


def onnx_module():
    """The onnx package, imported now (about a second the first time, most of it ml_dtypes)."""
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - onnx is a dependency
        raise ModelLoadError(f"this model needs the onnx package, which cannot be imported: {e}") from None
    return onnx


# ---- attributes -------------------------------------------------------------------------------

_ATTR_FIELD = {A.FLOAT: "f", A.INT: "i", A.STRING: "s", A.TENSOR: "t", A.GRAPH: "g", A.SPARSE_TENSOR: "sparse_tensor",
               A.TYPE_PROTO: "tp", A.FLOATS: "floats", A.INTS: "ints", A.STRINGS: "strings", A.TENSORS: "tensors",
               A.GRAPHS: "graphs", A.SPARSE_TENSORS: "sparse_tensors", A.TYPE_PROTOS: "type_protos"}


def attribute_value(a) -> Any:
    """The value of an AttributeProto of either kind by its type (lists for the list types),
    as onnx.helper.get_attribute_value gives it; a ValueError for an unknown type."""
    field = _ATTR_FIELD.get(int(a.type))
    if field is None:
        raise ValueError(f"attribute '{a.name}' has type {attr_type_name(int(a.type))}, which holds no value")
    v = getattr(a, field)
    return list(v) if int(a.type) >= A.FLOATS and int(a.type) not in (A.SPARSE_TENSOR, A.TYPE_PROTO) else v


# ---- op schemas -------------------------------------------------------------------------------

_DEFS: list = []


def onnx_defs():
    """onnx's op schema module (``get_schema``, ``schema_version_map``, ...), from onnx's C++
    extension.  When the onnx package is not imported yet, the extension is loaded alone (a few
    tens of milliseconds instead of the package's second), registered under the name the
    package gives it; otherwise, and wherever that fails, the package's ``onnx.defs``."""
    if _DEFS:
        return _DEFS[0]
    defs = None
    name = "onnx.onnx_cpp2py_export"
    if "onnx" not in sys.modules and name not in sys.modules:
        try:
            import importlib.machinery
            import importlib.util

            spec = importlib.util.find_spec("onnx")
            if spec is not None and spec.submodule_search_locations:
                ext = importlib.machinery.PathFinder.find_spec(name.rsplit(".", 1)[1],
                                                               list(spec.submodule_search_locations))
                if ext is not None and isinstance(ext.loader, importlib.machinery.ExtensionFileLoader):
                    ext = importlib.util.spec_from_file_location(name, ext.origin)
                    mod = importlib.util.module_from_spec(ext)
                    ext.loader.exec_module(mod)
                    sys.modules[name] = mod
                    sys.meta_path.insert(0, _AttachExtension())
                    for sub in ("defs", "checker", "shape_inference", "inliner", "parser", "printer",
                                "version_converter"):
                        if hasattr(mod, sub):
                            sys.modules.setdefault(f"{name}.{sub}", getattr(mod, sub))
                    d = mod.defs
                    if all(hasattr(d, f) for f in ("get_schema", "schema_version_map")):
                        defs = d
        except Exception:
            defs = None
    if defs is None:
        if name in sys.modules and hasattr(sys.modules[name], "defs"):
            defs = sys.modules[name].defs
        else:
            defs = onnx_module().defs
    _DEFS.append(defs)
    return defs


class _AttachExtension:
    """A one-shot import finder: when the onnx package is imported after its extension was
    loaded alone, the package's module gets the attribute ``onnx_cpp2py_export`` (which the
    import system sets only when it loads a submodule itself) before its ``__init__`` runs."""

    def find_spec(self, name, path, target=None):
        if name != "onnx":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(name, path)
        ext = sys.modules.get("onnx.onnx_cpp2py_export")
        if spec is None or spec.loader is None or ext is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def attach_then_exec(module):
            module.onnx_cpp2py_export = ext
            exec_module(module)

        spec.loader.exec_module = attach_then_exec
        return spec


def max_opsets() -> dict[str, int]:
    """The newest opset onnx knows of each domain ('' for the default one)."""
    table = onnx_defs().schema_version_map()
    return {("" if d in ("", "ai.onnx") else d): int(v[1]) for d, v in table.items()}


def ir_version() -> int:
    """The newest IR version the installed onnx knows: from the onnx package when it is
    imported; else read from its ``onnx.proto`` (the ``IR_VERSION = ...`` enum value), the
    package's version written there; None where neither is found."""
    if "onnx" in sys.modules:
        return int(sys.modules["onnx"].IR_VERSION)
    import importlib.util
    import os
    import re

    spec = importlib.util.find_spec("onnx")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        for fname in ("onnx.proto", "onnx-ml.proto"):
            try:
                with open(os.path.join(loc, fname), encoding="utf-8") as f:
                    m = re.search(r"^\s*IR_VERSION\s*=\s*(0x[0-9A-Fa-f]+|[0-9]+)\s*;", f.read(), re.M)
            except OSError:
                continue
            if m:
                return int(m.group(1), 0)
    return int(onnx_module().IR_VERSION)


def onnx_version() -> str:
    if "onnx" in sys.modules:
        return sys.modules["onnx"].__version__
    try:
        from importlib.metadata import version

        return version("onnx")
    except Exception:
        return onnx_module().__version__


def schema_default(spec) -> Any:
    """The default value (an AttributeProto, light) of a schema attribute, or None."""
    raw = getattr(spec, "_default_value", None)
    if raw is None:
        dv = spec.default_value
        raw = dv.SerializeToString() if dv is not None else b""
    a = parse(AttributeProto, bytes(raw), "a schema's default attribute")
    return a if a.type else None


def schema_function_body(schema) -> Message:
    """A schema's function body as a light FunctionProto."""
    raw = getattr(schema, "_function_body", None)
    if raw is None:
        raw = schema.function_body.SerializeToString()
    return parse(FunctionProto, bytes(raw), "an op's function body")

"""ONNX's rules, checked on a model before Ember translates it.

``onnx.checker`` catches some invalid models and misses others, and its full check runs shape
inference over the whole model; these checks walk the model's structure once, read no tensor
data (only the length of what is stored) and so cost little next to the compile, even for a
model of hundreds of megabytes.  Each failure is an :mod:`ember.errors` exception naming the
node or tensor and what was expected:

- :class:`~ember.errors.ModelVersionError`: an IR version or opset newer than the installed
  onnx package knows (Ember reads op definitions from it), or below 1;
- :class:`~ember.errors.DuplicateNameError`: an initializer, graph input or node output name
  defined twice in one graph;
- :class:`~ember.errors.OpSchemaError`: a node with more or fewer inputs or outputs than its
  op's schema allows, an attribute given twice, unknown to the op or of the wrong type; and,
  while translating (:func:`check_operand_types`), an operand or result whose type is outside
  the schema's type constraints (an int32 shape for ``Reshape``);
- :class:`~ember.errors.TensorDataError`: a tensor with several data fields, a data field that
  does not belong to its element type, a data length that does not match its dims, a negative
  dimension, no data at all;
- :class:`~ember.errors.DeclaredTypeError`: a declared graph input or output with a negative
  dimension, and, after translating (:func:`check_declared_types`), a graph output or
  ``value_info`` whose element type contradicts what the graph computes (a declared shape that
  contradicts it is a :class:`~ember.errors.DeclaredShapeWarning`: the computed one is used);
- :class:`~ember.errors.InvalidModelError`: a name that is not valid UTF-8.

External-data references are checked by :mod:`ember.frontend.onnx_files`.
"""

from __future__ import annotations

import warnings
from math import prod
from typing import Any

from ..errors import (DeclaredShapeWarning, DeclaredTypeError, DuplicateNameError, InvalidModelError, ModelVersionError,
                      OpSchemaError, TensorDataError, shown_name)
from .onnx_files import check_external_reference
from .onnx_proto import A, T, attr_type_name, dtype_name, ir_version, max_opsets, onnx_defs, onnx_version

__all__ = ["check_versions", "check_graph", "tensor_nbytes", "check_raw_length", "schema_of", "check_operand_types",
           "check_declared_types", "onnx_type_str"]

_DEFAULT_DOMAINS = ("", "ai.onnx")

# bits per element of the types ONNX stores packed (several to a byte, or to an int32_data entry)
_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64,
         15: 128, 16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4, 24: 8, 25: 2, 26: 2}
_PACKED = {21: 2, 22: 2, 23: 2, 25: 4, 26: 4}      # elements per int32_data entry
_COMPLEX = (14, 15)


def _name(x) -> str:
    return shown_name(x)


def _text(x, what: str, node: str | None = None, op: str | None = None) -> str:
    """``x``, a string field of the model, which protobuf hands over as bytes when it is not
    valid UTF-8."""
    if isinstance(x, (bytes, bytearray)):
        raise InvalidModelError(f"{what} {shown_name(x)!r} is not valid UTF-8 text", node=node, op=op)
    return x


# ---- versions -------------------------------------------------------------------------------

def check_versions(mp) -> None:
    """The IR version and opsets: known to the installed onnx package, each domain once (read
    without importing the onnx package, see :mod:`~ember.frontend.onnx_proto`)."""
    newest_ir = ir_version()
    if mp.ir_version > newest_ir:
        raise ModelVersionError(f"the model has IR version {mp.ir_version}; the installed onnx "
                                f"{onnx_version()} knows IR versions up to {newest_ir}")
    opsets = max_opsets()
    known = {"": opsets[""]}
    if "ai.onnx.ml" in opsets:
        known["ai.onnx.ml"] = opsets["ai.onnx.ml"]
    seen: set[str] = set()
    for imp in mp.opset_import:
        domain = _text(imp.domain, "an opset_import domain")
        key = "" if domain in _DEFAULT_DOMAINS else domain
        shown = domain or "ai.onnx"
        if key in seen:
            raise DuplicateNameError(f"the model imports the opset of domain '{shown}' twice")
        seen.add(key)
        if imp.version < 1:
            raise ModelVersionError(f"the model imports opset {imp.version} of domain '{shown}'; "
                                    f"opset versions start at 1")
        if key in known and imp.version > known[key]:
            raise ModelVersionError(f"the model imports opset {imp.version} of domain '{shown}'; the "
                                    f"installed onnx {onnx_version()} knows that domain up to opset "
                                    f"{known[key]} (re-export at a lower opset, or upgrade onnx)")


# ---- tensors --------------------------------------------------------------------------------

# TensorProto's typed data fields and the element types each may hold
_FIELDS = {
    "float_data": (1, 14),
    "int32_data": (2, 3, 4, 5, 6, 9, 10, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26),
    "string_data": (8,),
    "int64_data": (7,),
    "double_data": (11, 15),
    "uint64_data": (12, 13),
}


def _dtype_name(elem: int) -> str:
    return dtype_name(elem)


def tensor_nbytes(t) -> int:
    """The bytes ``t``'s data takes in raw form (its element type and dims checked before)."""
    n = prod(t.dims)
    return (n * _BITS[t.data_type] + 7) // 8


def check_raw_length(t, have: int, what: str, node: str | None = None, op: str | None = None) -> None:
    """``have``, the length of ``t``'s raw_data, against what its element type and dims take."""
    want = tensor_nbytes(t)
    if have != want:
        label = f"{what} '{_name(t.name)}'" if t.name else what
        raise TensorDataError(f"{label} ({_dtype_name(t.data_type)}, dims {list(t.dims)}) needs {want} bytes of "
                              f"raw_data, but holds {have}", node=node, op=op)


def check_tensor(t, what: str, node: str | None = None, op: str | None = None, raw_length: bool = True) -> None:
    """A TensorProto (initializer or attribute): a known element type, dims >= 0, and one
    source of data whose length matches the dims.  Without ``raw_length`` the length of
    raw_data is left to the reader of the data (:func:`check_raw_length`), which then needs no
    copy of its own: reading a big model's weights once is what the check would cost."""
    name = _text(t.name, f"{what} name", node, op)
    label = f"{what} '{name}'" if name else what
    if t.data_type not in _BITS and t.data_type != 8:
        if t.data_type and not _dtype_name(t.data_type).startswith("#"):
            return                      # a type Ember does not read: reported when it is read
        raise TensorDataError(f"{label} has element type {_dtype_name(t.data_type)}, which is not a "
                              f"tensor element type", node=node, op=op)
    dims = list(t.dims)
    if any(d < 0 for d in dims):
        raise TensorDataError(f"{label} has dims {dims}; dimensions are >= 0", node=node, op=op)
    if t.HasField("segment"):
        raise TensorDataError(f"{label} is a segment of a larger tensor, which ONNX models do not "
                              f"store", node=node, op=op)
    n = prod(dims)
    external = t.data_location == T.EXTERNAL
    given = [f for f in _FIELDS if len(getattr(t, f))]
    if t.HasField("raw_data"):
        given.insert(0, "raw_data")
    if external:
        if given:
            raise TensorDataError(f"{label} keeps its data in an external file and also sets "
                                  f"{', '.join(given)}", node=node, op=op)
        if t.data_type == 8:
            raise TensorDataError(f"{label} is a string tensor kept in an external file; ONNX stores "
                                  f"strings in string_data only", node=node, op=op)
        check_external_reference(t, what)
        return
    if len(given) > 1:
        raise TensorDataError(f"{label} sets both {given[0]} and {given[1]}; a tensor holds its data "
                              f"in one field", node=node, op=op)
    if not given:
        if n:
            raise TensorDataError(f"{label} has dims {dims} ({n} elements) but no data", node=node, op=op)
        return
    field = given[0]
    etype = _dtype_name(t.data_type)
    if field == "raw_data":
        if t.data_type == 8:
            raise TensorDataError(f"{label} is a string tensor with raw_data; ONNX stores strings in "
                                  f"string_data", node=node, op=op)
        if raw_length:
            check_raw_length(t, len(t.raw_data), what, node, op)
        return
    else:
        if t.data_type not in _FIELDS[field]:
            raise TensorDataError(f"{label} has element type {etype} but stores its data in {field}",
                                  node=node, op=op)
        per = _PACKED.get(t.data_type, 1)
        want = -(-n // per) * (2 if t.data_type in _COMPLEX else 1)
        have, unit = len(getattr(t, field)), "values"
    if have != want:
        raise TensorDataError(f"{label} ({etype}, dims {dims}) needs {want} {unit} of {field}, "
                              f"but holds {have}", node=node, op=op)


# ---- graphs ---------------------------------------------------------------------------------

def schema_of(op_type: str, domain: str, opsets: dict[str, int]):
    """The ONNX schema of an op at the model's opset of its domain, or None when onnx has none
    (an op of another domain, or one the opset does not define)."""
    d = "" if domain in _DEFAULT_DOMAINS else domain
    return _schema(op_type, d, opsets.get(d, 1))


_SCHEMAS: dict[tuple, Any] = {}


def _schema(op_type: str, domain: str, version: int):
    """onnx's schema, cached when there is one (a model's made-up op names are not kept)."""
    key = (op_type, domain, version)
    found = _SCHEMAS.get(key)
    if found is None:
        try:
            found = _SCHEMAS[key] = onnx_defs().get_schema(op_type, version, domain)
        except Exception:
            return None
    return found


def _check_value_info(vi, what: str) -> None:
    name = _text(vi.name, f"{what} name")
    tp = vi.type
    for _ in range(64):                       # through sequence and optional wrappers
        kind = tp.WhichOneof("value")
        if kind == "sequence_type":
            tp = tp.sequence_type.elem_type
        elif kind == "optional_type":
            tp = tp.optional_type.elem_type
        else:
            break
    if tp.WhichOneof("value") != "tensor_type" or not tp.tensor_type.HasField("shape"):
        return
    for k, d in enumerate(tp.tensor_type.shape.dim):
        # -1 is an unknown size (paddle2onnx writes its open sizes so; onnxruntime reads them so)
        if d.HasField("dim_value") and d.dim_value < -1:
            raise DeclaredTypeError(f"{what} '{name}' declares dimension {k} as {d.dim_value}; "
                                    f"dimensions are >= 0 (or a dim_param name, -1 or unknown)")
        if d.HasField("dim_param"):
            _text(d.dim_param, f"dimension {k} of {what} '{name}'")


def _check_default(vi, t, where: str) -> None:
    """A graph input that an initializer of the same name gives a default value: the two must
    agree on element type and static dims."""
    if vi.type.WhichOneof("value") != "tensor_type":
        raise DeclaredTypeError(f"{where}graph input '{vi.name}' is not a tensor, but an initializer of "
                                f"that name gives it a tensor value")
    tt = vi.type.tensor_type
    if tt.elem_type and tt.elem_type != t.data_type:
        raise DeclaredTypeError(f"{where}graph input '{vi.name}' is declared {_dtype_name(tt.elem_type)}, but "
                                f"the initializer of that name is {_dtype_name(t.data_type)}")
    if tt.HasField("shape"):
        dims = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None for d in tt.shape.dim]
        if len(dims) != len(t.dims) or any(d is not None and d != e for d, e in zip(dims, t.dims)):
            shown = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
            raise DeclaredTypeError(f"{where}graph input '{vi.name}' is declared with shape {shown}, but the "
                                    f"initializer of that name has dims {list(t.dims)}")


def _check_node(n, opsets: dict[str, int], name: str) -> None:
    op = _text(n.op_type, "op type", name)
    _text(n.domain, "domain", name, op)
    for x in list(n.input) + list(n.output):
        _text(x, "tensor name", name, op)
    attrs: dict[str, Any] = {}
    for a in n.attribute:
        aname = _text(a.name, "attribute name", name, op)
        if aname in attrs:
            raise OpSchemaError(f"attribute '{aname}' is given twice", node=name, op=op)
        attrs[aname] = a
        if a.type == A.TENSOR:
            check_tensor(a.t, f"attribute '{aname}'", name, op)
        elif a.type == A.TENSORS:
            for t in a.tensors:
                check_tensor(t, f"attribute '{aname}'", name, op)
    schema = schema_of(op, n.domain, opsets)
    if schema is None:
        return
    if schema.deprecated:
        d = "" if n.domain in _DEFAULT_DOMAINS else n.domain
        raise OpSchemaError(f"was removed from ONNX before opset {opsets.get(d, 1)} (deprecated at opset "
                            f"{schema.since_version})", node=name, op=op)
    ins, outs = len(n.input), len(n.output)
    while ins and not n.input[ins - 1]:
        ins -= 1                                   # trailing optional inputs left out
    if ins < schema.min_input or len(n.input) > schema.max_input:
        raise OpSchemaError(f"has {len(n.input)} input(s); {_arity(schema.min_input, schema.max_input)} "
                            f"at opset {schema.since_version}+", node=name, op=op)
    if outs < schema.min_output or outs > schema.max_output:
        raise OpSchemaError(f"has {outs} output(s); {_arity(schema.min_output, schema.max_output)} "
                            f"at opset {schema.since_version}+", node=name, op=op)
    known = schema.attributes
    for aname, a in attrs.items():
        spec = known.get(aname)
        if spec is None:
            if a.ref_attr_name:
                continue
            listed = ", ".join(sorted(known)) or "none"
            raise OpSchemaError(f"has attribute '{aname}', which the op does not define (its attributes: "
                                f"{listed})", node=name, op=op)
        want = int(spec.type)
        if a.type != A.UNDEFINED and a.type != want:
            raise OpSchemaError(f"attribute '{aname}' is of type {_attr_type(a.type)}; the op takes "
                                f"{_attr_type(want)}", node=name, op=op)
    missing = sorted(k for k, spec in known.items() if spec.required and k not in attrs)
    if missing:
        raise OpSchemaError(f"lacks the required attribute(s) {', '.join(map(repr, missing))}", node=name, op=op)


def _arity(lo: int, hi: int) -> str:
    if lo == hi:
        return f"the op takes {lo}"
    if hi >= 2**31 - 1:
        return f"the op takes at least {lo}"
    return f"the op takes {lo} to {hi}"


def _attr_type(t: int) -> str:
    return attr_type_name(t)


def check_graph(g, opsets: dict[str, int], where: str = "") -> None:
    """One graph and the graphs its nodes hold: names, tensors, nodes against their schemas."""
    _text(g.name, "graph name")
    inits: dict[str, Any] = {}
    for t in g.initializer:
        # the main graph's initializers (a model's weights) have their raw_data length checked
        # when they are read
        check_tensor(t, f"{where}initializer", raw_length=bool(where))
        if t.name in inits:
            raise DuplicateNameError(f"{where}initializer '{t.name}' is given twice")
        inits[t.name] = t
    for st in g.sparse_initializer:
        _text(st.values.name, "sparse initializer name")
    inputs: set[str] = set()
    for vi in g.input:
        _check_value_info(vi, f"{where}graph input")
        if vi.name in inputs:
            raise DuplicateNameError(f"{where}graph input '{vi.name}' is declared twice")
        inputs.add(vi.name)
        if vi.name in inits:
            _check_default(vi, inits[vi.name], where)
    for vi in g.output:
        _check_value_info(vi, f"{where}graph output")
    for vi in g.value_info:
        _check_value_info(vi, f"{where}value_info")
    produced: dict[str, str] = {}
    for k, n in enumerate(g.node):
        name = _text(n.name, "node name") or f"{_name(n.op_type)}_{k}"
        if where:
            name = f"{where}{name}"
        _check_node(n, opsets, name)
        for o in n.output:
            if not o:
                continue
            if o in produced:
                raise DuplicateNameError(f"output '{o}' is also produced by node '{produced[o]}'; each name "
                                         f"is produced once", node=name, op=n.op_type)
            if o in inputs or o in inits:
                kind = "a graph input" if o in inputs else "an initializer"
                raise DuplicateNameError(f"output '{o}' has the name of {kind}; each name is defined once",
                                         node=name, op=n.op_type)
            produced[o] = name
        for a in n.attribute:
            if a.type == A.GRAPH:
                check_graph(a.g, opsets, f"{name}/{a.name}: ")
            elif a.type == A.GRAPHS:
                for j, sub in enumerate(a.graphs):
                    check_graph(sub, opsets, f"{name}/{a.name}[{j}]: ")


# ---- types met while translating --------------------------------------------------------------

def onnx_type_str(dtype: str) -> str:
    """The ONNX type string (``tensor(float)``) of an IR dtype (``float32``)."""
    from .onnx import _ONNX_DTYPES

    return _TYPE_STRS.setdefault(dtype, "tensor(" + dtype_name(
        {v: k for k, v in _ONNX_DTYPES.items()}[dtype]).lower() + ")")


_TYPE_STRS: dict[str, str] = {}


def check_operand_types(schema, types: list[str | None], name: str, op: str,
                        out_types: list[str | None] | None = None) -> None:
    """The operands' types (ONNX type strings, None for an absent or unknown one) against the
    schema's formal inputs: each in its constraint's allowed types, and one type for all the
    operands that share a type parameter; with ``out_types``, the results' types against the
    formal outputs likewise (a ``Constant`` holding a type its opset does not give)."""
    allowed = {c.type_param_str: c.allowed_type_strs for c in schema.type_constraints}
    bound: dict[str, tuple[str, str]] = {}
    sides = [("input", "takes", schema.inputs, types)]
    if out_types is not None:
        sides.append(("output", "gives", schema.outputs, out_types))
    for side, verb, formals, tys in sides:
        for i, ty in enumerate(tys):
            if ty is None or not formals:
                continue
            f = formals[min(i, len(formals) - 1)]
            if i >= len(formals) and f.option.name != "Variadic":
                break                                    # arity is checked at the door
            param = f.type_str
            ok = allowed.get(param, [param])
            if ty not in ok and f"optional({ty})" in ok:
                ty = f"optional({ty})"                   # a value where an optional goes: present
            if ty not in ok:
                shown = ", ".join(ok) if len(ok) <= 12 else ", ".join(ok[:12]) + f", ... ({len(ok)} types)"
                raise OpSchemaError(f"{side} {i} ('{f.name}') is {ty}; the op {verb} {shown} there "
                                    f"(opset {schema.since_version})", node=name, op=op)
            if param in allowed and (f.option.name != "Variadic" or f.is_homogeneous):
                first = bound.setdefault(param, (ty, f"{side} {i}"))
                if first[0] != ty:
                    raise OpSchemaError(f"{side} {i} ('{f.name}') is {ty} but {first[1]} is {first[0]}; "
                                        f"the op takes one type for both ({param})", node=name, op=op)


def check_declared_types(declared, computed: dict[str, Any], what: str, dims: bool = True) -> None:
    """Each ValueInfoProto of ``declared`` (graph outputs or value_info) whose name ``computed``
    maps to a tensor Value: its declared element type must be the one the graph computes.  A
    declared rank, or with ``dims`` a static dimension, other than the computed one is only
    warned about (:class:`DeclaredShapeWarning`): the ops' semantics decide a shape, and
    onnxruntime likewise runs such a model with the shape it computes."""
    from .onnx import _ONNX_DTYPES

    for vi in declared:
        v = computed.get(vi.name)
        if v is None or not hasattr(v, "type") or vi.type.WhichOneof("value") != "tensor_type":
            continue
        tt = vi.type.tensor_type
        if tt.elem_type:
            want = _ONNX_DTYPES.get(tt.elem_type)
            if want != v.type.dtype:
                raise DeclaredTypeError(f"{what} '{vi.name}' is declared {_dtype_name(tt.elem_type)}, but the "
                                        f"graph computes {v.type.dtype} there")
        if not tt.HasField("shape"):
            continue
        declared_dims = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
                         for d in tt.shape.dim]
        shape = tuple(v.type.shape)
        if len(declared_dims) != len(shape):
            why = f"of rank {len(declared_dims)}"
        else:
            why = next((f"with dimension {k} = {d}" for k, (d, s) in enumerate(zip(declared_dims, shape) if dims else ())
                        if d is not None and isinstance(s, int) and d != s), None)
        if why is not None:
            shown = _shape([d if d is not None else (p.dim_param or "?") for d, p in zip(declared_dims, tt.shape.dim)])
            warnings.warn(f"{what} '{vi.name}' is declared {why} ({shown}), but the graph computes shape "
                          f"{_shape(shape)} there; the declaration is ignored", DeclaredShapeWarning, stacklevel=2)


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"

"""The text form of a graph: print a graph to readable text and parse it back.

::

    graph resnet(%input: float32[1, 3, 224, 224]) {
      %w1 = const float32[64, 3, 7, 7] b64"AAAgQQAA..."
      %two = const float32[] 2.0
      %conv1 = conv2d(%input, %w1) {strides=[2, 2], pads=[3, 3, 3, 3], dilations=[1, 1], groups=1} : float32[1, 64, 112, 112]
      %relu1 = relu(%conv1) : float32[1, 64, 112, 112]
      %y = mul(%relu1, %two) @scale : float32[1, 64, 112, 112]
      return %y
    }

The grammar, one statement a line by convention (the parser does not care about line breaks):

* ``graph NAME(%in: TYPE, ...) { STATEMENT* return %v, ... }``
* ``%name = const TYPE PAYLOAD`` defines a constant.  The payload is a literal (a scalar, or a
  flat row-major list for any shape; strings in JSON quoting, at any size) for small constants,
  or ``b64"..."``: the base64 of the
  raw little-endian bytes (bool as one byte per element; bfloat16 and the narrow types as the
  bytes of the ml_dtypes arrays the reference holds them in).  Both round-trip bit-exactly, NaN
  payloads and signed zeros included.
* ``%out = OP(%a, %b) {key=value, ...} @node : TYPE`` applies a core op.  Attributes are ints,
  floats (Python ``repr``, so exact; ``nan``, ``inf``, ``-inf``), strings (JSON quoting),
  ``true``/``false``, ``none``, symbolic dimensions (``dim"batch*seq"``), nested lists
  ``[...]`` (tuples in the IR) and graphs (``graph NAME(...) { ... }``: the bodies of the region
  ops ``if`` and ``loop``, closed over their inputs).  ``@node`` gives the
  node's name and is printed only when it differs from the first output's name.  ``: TYPE`` is
  the output type (several, comma-separated, for a multi-output op); the parser re-infers types
  with the op's type rule and checks the written ones, so hand-written text may leave out both
  the types and the attributes that keep their defaults.
* Names are printed bare when they consist of ``[A-Za-z0-9_./-]``, else as a JSON string
  (``%"onnx::Conv_1"``).  Symbolic dimensions in types print as their names, or as a JSON
  string holding their expression (``float32["batch*seq", 768]``).  ``#`` starts a comment.

``print_graph(g, elide_constants=True)`` prints large constants as ``...`` (type and shape only)
for dumps meant for people; such text is *not* parseable.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from typing import Any

import numpy as np

from ..errors import EmberError, ParseError
from .ir import Graph, Node, Value
from ..symbolic import Sym, SymbolicError, as_dim
from .types import DTYPES, NARROW_FLOAT_DTYPES, TensorType, np_dtype

#: Constants of at most this many elements print as a literal (when it round-trips exactly).
LITERAL_MAX_ELEMENTS = 16

_BARE_NAME = re.compile(r"[A-Za-z0-9_./\-]+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_NUMBER = re.compile(r"(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")  # unsigned
_B64 = re.compile(r'b64"([A-Za-z0-9+/=\s]*)"')
_SPACE = re.compile(r"(?:\s|#[^\n]*)*")


# ---- printing ------------------------------------------------------------------------------

def _quote(s: str) -> str:
    return json.dumps(s)


def format_name(name: str) -> str:
    """A value, node or graph name as the text form writes it (without the ``%``)."""
    return name if _BARE_NAME.fullmatch(name) else _quote(name)


def format_dim(d) -> str:
    if isinstance(d, (str, Sym)):
        d = str(d)
        return d if _IDENT.fullmatch(d) else _quote(d)
    return str(d)


def format_type(t: TensorType) -> str:
    return f"{t.dtype}[{', '.join(format_dim(d) for d in t.shape)}]"


def format_attr(v: Any, elide_constants: bool = False, types: bool = True) -> str:
    """An attribute value in the text form (exact for floats).  A graph (the body of a region
    op) prints as a nested ``graph NAME(...) { ... }``, indented."""
    if isinstance(v, Graph):
        text = print_graph(v, elide_constants=elide_constants, types=types).rstrip("\n")
        return text.replace("\n", "\n    ")
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, str):
        return _quote(v)
    if isinstance(v, Sym):
        return "dim" + _quote(str(v))
    if isinstance(v, (tuple, list)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    raise EmberError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def _format_scalar(x, dtype: str) -> str:
    if dtype == "string":
        return json.dumps(x, ensure_ascii=False)
    if dtype == "bool":
        return "true" if x else "false"
    if dtype in ("float16", "float32", "float64", "bfloat16") or dtype in NARROW_FLOAT_DTYPES:
        return str(x) if dtype in ("float16", "float32") else repr(float(x))
    return str(int(x))


def _const_array(v: Value) -> np.ndarray:
    """The constant's data in the dtype its type promises, little-endian."""
    arr = np.asarray(v.const)
    dt = np_dtype(v.dtype).newbyteorder("<")
    if arr.dtype != dt:
        arr = arr.astype(dt)
    return arr


def _literal(arr: np.ndarray, dtype: str) -> str | None:
    """A literal payload for a small array, or None when it would not round-trip bit-exactly."""
    if dtype == "string":           # strings have no bytes to write: always a literal
        items = [_format_scalar(x, dtype) for x in arr.reshape(-1)]
        return items[0] if arr.ndim == 0 else "[" + ", ".join(items) + "]"
    if arr.size > LITERAL_MAX_ELEMENTS:
        return None
    flat = arr.reshape(-1)
    items = [_format_scalar(x, dtype) for x in flat]
    text = items[0] if arr.ndim == 0 else "[" + ", ".join(items) + "]"
    try:
        back = _literal_array([_parse_scalar_text(s) for s in items], dtype, arr.shape)
    except (ValueError, OverflowError):
        return None
    if back.tobytes() != arr.tobytes():
        return None
    return text


def _payload(v: Value, elide: bool) -> str:
    arr = _const_array(v)
    lit = _literal(arr, v.dtype)
    if lit is not None:
        return lit
    if elide:
        return "..."
    return 'b64"' + base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii") + '"'


def _node_line(n: Node, types: bool, elide: bool = False) -> str:
    lhs = ", ".join("%" + format_name(o.name) for o in n.outputs)
    args = ", ".join("%" + format_name(v.name) for v in n.inputs)
    s = f"{lhs} = {n.op}({args})"
    if n.attrs:
        s += " {" + ", ".join(f"{k}={format_attr(a, elide, types)}" for k, a in n.attrs.items()) + "}"
    if not n.outputs or n.name != n.outputs[0].name:
        s += " @" + format_name(n.name)
    if types and n.outputs:
        s += " : " + ", ".join(format_type(o.type) for o in n.outputs)
    return s


def print_graph(graph: Graph, *, elide_constants: bool = False, types: bool = True) -> str:
    """The text form of ``graph``.

    ``elide_constants=True`` writes constants too large for a literal as ``...`` (for dumps; the
    result does not parse).  ``types=False`` leaves out the output types of nodes (the parser
    re-infers them).
    """
    lines = []
    params = ", ".join(f"%{format_name(v.name)}: {format_type(v.type)}" for v in graph.inputs)
    lines.append(f"graph {format_name(graph.name)}({params}) {{")
    for c in graph.constants():
        lines.append(f"  %{format_name(c.name)} = const {format_type(c.type)} {_payload(c, elide_constants)}")
    for n in graph.nodes:
        lines.append("  " + _node_line(n, types, elide_constants))
    rets = ", ".join("%" + format_name(v.name) for v in graph.outputs)
    lines.append(f"  return {rets}" if rets else "  return")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- parsing -------------------------------------------------------------------------------

def _parse_scalar_text(s: str):
    """A literal element as written by ``_format_scalar``."""
    if s == "true":
        return True
    if s == "false":
        return False
    if re.fullmatch(r"[-+]?\d+", s):
        return int(s)
    return float(s)


def _literal_array(items: list, dtype: str, shape) -> np.ndarray:
    npdt = np_dtype(dtype)
    if npdt.kind in "iu":
        info = np.iinfo(npdt)
        for x in items:
            if isinstance(x, float) or not info.min <= int(x) <= info.max:
                raise ValueError(f"{x!r} is not a valid {dtype}")
    if npdt.kind == "O":
        if any(not isinstance(x, str) for x in items):
            raise ValueError(f"string constants take JSON strings, got {items}")
        arr = np.empty(len(items), dtype=object)
        arr[:] = items
        return arr.reshape(shape)
    if npdt.kind == "b" and any(not isinstance(x, bool) for x in items):
        raise ValueError(f"bool constants take true/false, got {items}")
    if npdt.kind == "f":
        # go through float64: each element's text is exact for float64, and the float64 value
        # is then rounded once to the narrower type.
        arr = np.array([float(x) for x in items], dtype=np.float64)
        with np.errstate(over="ignore"):
            arr = arr.astype(npdt)
    else:
        arr = np.array(items, dtype=npdt)
    return arr.reshape(shape)


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self._newlines = [m.start() for m in re.finditer("\n", text)]

    # -- low level ---------------------------------------------------------------------------

    def line(self, pos: int | None = None) -> int:
        return bisect.bisect_left(self._newlines, self.pos if pos is None else pos) + 1

    def error(self, message: str, pos: int | None = None) -> ParseError:
        return ParseError(f"line {self.line(pos)}: {message}")

    def skip(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()

    def peek(self, s: str) -> bool:
        self.skip()
        return self.text.startswith(s, self.pos)

    def accept(self, s: str) -> bool:
        if self.peek(s):
            self.pos += len(s)
            return True
        return False

    def expect(self, s: str, what: str | None = None) -> None:
        if not self.accept(s):
            raise self.error(f"expected {what or repr(s)}, found {self.found()}")

    def found(self) -> str:
        self.skip()
        if self.pos >= len(self.text):
            return "end of text"
        m = re.compile(r"\S{1,20}").match(self.text, self.pos)
        return repr(m.group(0))

    def match(self, rx: re.Pattern) -> str | None:
        self.skip()
        m = rx.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return m.group(0)

    def ident(self, what: str) -> str:
        s = self.match(_IDENT)
        if s is None:
            raise self.error(f"expected {what}, found {self.found()}")
        return s

    def string(self) -> str | None:
        s = self.match(_STRING)
        if s is None:
            return None
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            raise self.error(f"bad string literal {s}: {e.msg}") from None

    def name(self, what: str) -> str:
        s = self.string()
        if s is not None:
            return s
        s = self.match(_BARE_NAME)
        if s is None:
            raise self.error(f"expected {what}, found {self.found()}")
        return s

    def value_name(self) -> str:
        self.expect("%", "a value name starting with '%'")
        return self.name("a value name after '%'")

    # -- pieces ------------------------------------------------------------------------------

    def type(self) -> TensorType:
        start = self.pos
        dtype = self.ident("a dtype")
        if dtype not in DTYPES:
            raise self.error(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}", start)
        self.expect("[")
        dims: list = []
        if not self.accept("]"):
            while True:
                d = self.string()
                if d is None:
                    d = self.match(re.compile(r"\d+"))
                    if d is not None:
                        d = int(d)
                    else:
                        d = self.ident("a dimension (an integer or a symbol)")
                dims.append(d)
                if self.accept("]"):
                    break
                self.expect(",", "',' or ']' in a shape")
        return TensorType(tuple(dims), dtype)

    def attr_value(self):
        if self.accept("["):
            items = []
            if not self.accept("]"):
                while True:
                    items.append(self.attr_value())
                    if self.accept("]"):
                        break
                    self.expect(",", "',' or ']' in a list")
            return tuple(items)
        s = self.string()
        if s is not None:
            return s
        neg = self.accept("-")
        num = self.match(_NUMBER)
        if num is not None:
            text = ("-" if neg else "") + num
            if re.fullmatch(r"[-+]?\d+", text):
                return int(text)
            return float(text)
        start = self.pos
        word = self.match(_IDENT)
        if word in ("inf", "nan"):
            return -float(word) if neg else float(word)
        if neg:
            raise self.error("expected a number after '-'", start)
        if word == "dim":
            text = self.string()
            if text is not None:
                try:
                    return as_dim(text)
                except SymbolicError as e:
                    raise self.error(str(e), start) from None
        if word == "true":
            return True
        if word == "false":
            return False
        if word == "none":
            return None
        if word == "graph":             # the body of a region op
            self.pos = start
            return self.graph(top=False)
        raise self.error(f"expected an attribute value, found {self.found() if word is None else repr(word)}", start)

    def scalar_literal(self):
        text = self.string()
        if text is not None:
            return text
        neg = self.accept("-")
        num = self.match(_NUMBER)
        if num is not None:
            return _parse_scalar_text(("-" if neg else "") + num)
        start = self.pos
        word = self.match(_IDENT)
        if word in ("inf", "nan"):
            return -float(word) if neg else float(word)
        if not neg and word in ("true", "false"):
            return word == "true"
        raise self.error(f"expected a number, true or false, found {self.found() if word is None else repr(word)}",
                         start)

    def payload(self, t: TensorType, start: int) -> np.ndarray:
        if not t.is_static:
            raise self.error(f"a constant needs a static shape, got {t}", start)
        self.skip()
        if self.text.startswith("...", self.pos):
            raise self.error("constant payload was elided (text printed with elide_constants=True "
                             "cannot be parsed)")
        npdt = np_dtype(t.dtype).newbyteorder("<")
        b64 = self.match(_B64)
        if b64 is not None:
            raw = _B64.fullmatch(b64).group(1)
            try:
                data = base64.b64decode("".join(raw.split()), validate=True)
            except ValueError as e:
                raise self.error(f"bad base64 payload: {e}", start) from None
            if len(data) != t.size * npdt.itemsize:
                raise self.error(f"payload has {len(data)} bytes, {t} needs {t.size * npdt.itemsize}", start)
            return np.frombuffer(data, dtype=npdt).reshape(t.shape).astype(npdt.newbyteorder("="))
        if self.accept("["):
            items = []
            if not self.accept("]"):
                while True:
                    items.append(self.scalar_literal())
                    if self.accept("]"):
                        break
                    self.expect(",", "',' or ']' in a constant")
        else:
            items = [self.scalar_literal()]
        if len(items) != t.size:
            raise self.error(f"constant of type {t} needs {t.size} element(s), got {len(items)}", start)
        try:
            return _literal_array(items, t.dtype, t.shape)
        except (ValueError, OverflowError) as e:
            raise self.error(str(e), start) from None

    # -- the graph ---------------------------------------------------------------------------

    def graph(self, top: bool = True) -> Graph:
        if self.ident("'graph'") != "graph":
            raise self.error("a graph starts with 'graph'")
        gname = self.name("the graph name")
        env: dict[str, Value] = {}

        def define(v: Value, at: int) -> None:
            if v.name in env:
                raise self.error(f"value %{format_name(v.name)} is defined twice", at)
            env[v.name] = v

        self.expect("(")
        inputs: list[Value] = []
        if not self.accept(")"):
            while True:
                at = self.pos
                name = self.value_name()
                self.expect(":", "':' and the input's type")
                v = Value(name, self.type())
                define(v, at)
                inputs.append(v)
                if self.accept(")"):
                    break
                self.expect(",", "',' or ')' after an input")
        self.expect("{")
        nodes: list[Node] = []
        node_names: set[str] = set()
        while True:
            self.skip()
            stmt = self.pos
            if self.pos >= len(self.text):
                raise self.error("missing 'return' and '}' at the end of the graph")
            if not self.peek("%"):
                if self.match(_IDENT) != "return":
                    raise self.error(f"expected a statement ('%name = ...') or 'return', found {self.found()}",
                                     stmt)
                break
            outs: list[tuple[str, TensorType | None, int]] = []
            while True:
                at = self.pos
                name = self.value_name()
                declared = self.type() if self.accept(":") else None
                outs.append((name, declared, at))
                if not self.accept(","):
                    break
            self.expect("=", "'=' after the defined value(s)")
            self.skip()
            op_at = self.pos
            op = self.ident("an op name or 'const'")
            if op == "const":
                if len(outs) != 1:
                    raise self.error("a constant defines exactly one value", stmt)
                name, declared, at = outs[0]
                t = self.type()
                if declared is not None and declared != t:
                    raise self.error(f"constant %{format_name(name)} is declared {declared} and {t}", at)
                arr = self.payload(t, op_at)
                arr.setflags(write=False)
                define(Value(name, t, None, arr), at)
                continue
            nodes.append(self.node(op, op_at, outs, env, define, node_names))
        outputs = []
        self.skip()
        if not self.peek("}"):
            while True:
                at = self.pos
                name = self.value_name()
                if name not in env:
                    raise self.error(f"return of undefined value %{format_name(name)}", at)
                outputs.append(env[name])
                if not self.accept(","):
                    break
        self.expect("}", "'}' closing the graph")
        self.skip()
        if top and self.pos != len(self.text):
            raise self.error(f"unexpected text after the graph: {self.found()}")
        return Graph(inputs, nodes, outputs, gname)

    def node(self, op: str, op_at: int, outs, env, define, node_names: set[str]) -> Node:
        from ..ops import OPS

        if op not in OPS:
            raise self.error(f"unknown op '{op}'", op_at)
        opdef = OPS[op]
        self.expect("(", f"'(' after op {op}")
        args: list[Value] = []
        if not self.accept(")"):
            while True:
                at = self.pos
                name = self.value_name()
                if name not in env:
                    raise self.error(f"%{format_name(name)} is used before it is defined", at)
                args.append(env[name])
                if self.accept(")"):
                    break
                self.expect(",", "',' or ')' after an operand")
        attrs: dict[str, Any] = {}
        if self.accept("{"):
            if not self.accept("}"):
                while True:
                    at = self.pos
                    key = self.ident("an attribute name")
                    if key in attrs:
                        raise self.error(f"attribute '{key}' is given twice", at)
                    self.expect("=", f"'=' after attribute '{key}'")
                    attrs[key] = self.attr_value()
                    if self.accept("}"):
                        break
                    self.expect(",", "',' or '}' after an attribute")
        node_name = outs[0][0]
        if self.accept("@"):
            node_name = self.name("a node name after '@'")
        declared: list[TensorType] | None = None
        if self.accept(":"):
            declared = [self.type()]
            while self.accept(","):
                declared.append(self.type())
        try:
            filled = opdef.fill_attrs(attrs, node_name)
            types = opdef.infer_types(filled, [v.type for v in args], node_name)
        except EmberError as e:
            raise self.error(str(e).split("] ", 1)[-1], op_at) from None
        if len(types) != len(outs):
            raise self.error(f"op {op} has {len(types)} output(s), {len(outs)} named", op_at)
        if declared is not None and declared != types:
            raise self.error(f"declared type {', '.join(map(format_type, declared))} but {op} infers "
                             f"{', '.join(map(format_type, types))}", op_at)
        node = Node(op, args, [], filled, node_name)
        for (name, t_decl, at), t in zip(outs, types):
            if t_decl is not None and t_decl != t:
                raise self.error(f"%{format_name(name)} is declared {format_type(t_decl)} but {op} infers "
                                 f"{format_type(t)}", at)
            v = Value(name, t, node)
            define(v, at)
            node.outputs.append(v)
        if node_name in node_names:
            raise self.error(f"node name '{node_name}' is used twice", op_at)
        node_names.add(node_name)
        return node


def parse_attr(text: str) -> Any:
    """Parse one attribute value as :func:`format_attr` writes it (lists become tuples)."""
    p = _Parser(text)
    v = p.attr_value()
    p.skip()
    if p.pos != len(text):
        raise p.error(f"unexpected text after the attribute value: {p.found()}")
    return v


def parse_graph(text: str) -> Graph:
    """Parse the text form (as written by :func:`print_graph`) into a new graph.

    Raises :class:`ember.errors.ParseError` naming the line of the first problem.
    """
    return _Parser(text).graph()

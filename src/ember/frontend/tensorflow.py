"""The TensorFlow and Keras frontend: a TensorFlow graph translated into Ember's graph IR.

``from_tensorflow(saved_model_dir | concrete_function)`` and ``from_keras(model | path)`` both
come down to one concrete function, whose variables are frozen into constants
(``convert_variables_to_constants_v2``); its GraphDef is then translated node by node into core
ops (the table is :mod:`.tf_ops`), never through ONNX or TFLite.  Every op the table lacks is
listed at once (op, nodes, count) before anything is translated.

A dimension TensorFlow leaves open (``None``) becomes a symbolic dimension: ``batch`` for the
leading one (Keras' open batch), ``<input>_<axis>`` for any other.  Shape arithmetic on such
dimensions (``Shape -> StridedSlice -> Pack -> Reshape``) is evaluated while translating, as
numpy object arrays of ints and :class:`~ember.symbolic.Sym` (``frontend/core/shape_values.py``), so
reshapes get symbolic target shapes instead of run-time shape computations.

TensorFlow's images are NHWC, Ember's convolutions and pools NCHW.  As in the TFLite frontend,
each tensor keeps the layout its producer made, and is transposed once, where a consumer needs
the other one; a chain of convolutions, elementwise ops and pools stays NCHW.

tensorflow (and keras) are imported only when this frontend is used.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import FrontendError, InvalidModelError, ModelFileError, ModelLoadError, UnsupportedOpError
from ..graph.builder import GraphBuilder
from ..graph.ir import Graph, Value
from ..graph.types import TensorType
from ..symbolic import Sym, symbol
from .core import TO_NCHW, NodeContext as CoreNodeContext, check_supported, group_unsupported
from .core.layout import framework_shape, held_layout, in_layout

__all__ = ["from_tensorflow", "from_keras", "from_graph_def", "unsupported_ops", "tf_dtype"]


#: ops that only carry control dependencies or pass their input through
PASS_THROUGH = frozenset({"Identity", "StopGradient", "Snapshot", "PreventGradient", "EnsureShape",
                          "CheckNumerics"})
IGNORED = frozenset({"NoOp", "Const", "Placeholder", "IdentityN"})


def _tf():
    try:
        import tensorflow as tf
    except ImportError:  # pragma: no cover - depends on the install
        raise ModelLoadError("the TensorFlow frontend needs tensorflow: pip install ember[tensorflow]") from None
    return tf


def tf_dtype(tf_type: int, node: str, op: str) -> str:
    tf = _tf()
    name = tf.dtypes.as_dtype(tf_type).name
    name = {"half": "float16", "float": "float32", "double": "float64"}.get(name, name)
    if name not in ("float32", "float16", "bfloat16", "float64", "int64", "int32", "int16", "int8", "uint8",
                    "bool"):
        raise FrontendError(f"dtype {name} is not supported by Ember", node=node, op=op)
    return name


def tensor_ref(name: str) -> tuple[str, int]:
    """A GraphDef input reference ``node:k`` (or ``node``) as (node, k); ``^node`` is a control
    dependency (k = -1)."""
    if name.startswith("^"):
        return name[1:], -1
    node, _, k = name.partition(":")
    return node, int(k) if k else 0


class NodeContext(CoreNodeContext):
    """What a translation sees of one GraphDef node: its attributes and its operands (numpy
    arrays when known while translating, else Ember values in the layout it asks for)."""

    framework = "TensorFlow"

    def __init__(self, tr: "_Translator", node):
        super().__init__(tr.b, node.name, node.op)
        self.tr, self.node = tr, node
        self.inputs = [tensor_ref(i) for i in node.input if not i.startswith("^")]

    # ---- attributes ------------------------------------------------------------------------
    def attr(self, key: str, default: Any = None) -> Any:
        if key not in self.node.attr:
            return default
        a = self.node.attr[key]
        kind = a.WhichOneof("value")
        if kind == "list":
            lst = a.list
            return list(lst.i) or list(lst.f) or [s.decode() for s in lst.s] or []
        if kind == "s":
            return a.s.decode()
        return getattr(a, kind) if kind else default

    # ---- operands --------------------------------------------------------------------------
    def n_inputs(self) -> int:
        return len(self.inputs)

    def is_const(self, k: int) -> bool:
        return self.tr.const_of(self.inputs[k]) is not None

    def const_input(self, k: int, what: str = "operand") -> np.ndarray:
        """Input ``k`` as an array known while translating (ints and symbolic dims for shapes)."""
        c = self.tr.const_of(self.inputs[k])
        if c is None:
            raise self.not_constant(what, k)
        return c

    def ints(self, k: int, what: str) -> list:
        return [d if isinstance(d, Sym) else int(d) for d in np.asarray(self.const_input(k, what)).reshape(-1)]

    def shape(self, k: int) -> tuple:
        """Input ``k``'s shape in TensorFlow's terms (NHWC for images)."""
        return self.tr.shape(self.inputs[k])

    def rank(self, k: int) -> int:
        return len(self.shape(k))

    def dtype(self, k: int) -> str:
        return self.tr.dtype_of(self.inputs[k])

    def layout(self, k: int) -> str:
        return self.tr.layout_of(self.inputs[k])

    def get(self, k: int, layout: str = "NHWC") -> Value:
        return self.tr.value(self.inputs[k], layout, self.name)

    def nhwc(self, k: int) -> Value:
        return self.get(k, "NHWC")

    def nchw(self, k: int) -> Value:
        return self.get(k, "NCHW")

    # ---- results ---------------------------------------------------------------------------
    def set(self, v: Value, layout: str = "NHWC", k: int = 0) -> None:
        self.tr.set_value((self.name, k), v, layout)

    def set_const(self, array, k: int = 0) -> None:
        self.tr.consts[(self.name, k)] = np.asarray(array)


class _Translator:
    def __init__(self, name: str):
        self.b = GraphBuilder(name)
        self.values: dict[tuple, dict[str, Value]] = {}   # tensor -> layout -> value
        self.consts: dict[tuple, np.ndarray] = {}         # tensors known while translating
        self.const_values: dict[tuple, dict[str, Value]] = {}
        self.alias: dict[tuple, tuple] = {}               # Identity outputs -> their input

    def resolve(self, t: tuple) -> tuple:
        while t in self.alias:
            t = self.alias[t]
        return t

    def const_of(self, t: tuple) -> np.ndarray | None:
        return self.consts.get(self.resolve(t))

    def shape(self, t: tuple) -> tuple:
        t = self.resolve(t)
        if t in self.consts:
            return tuple(self.consts[t].shape)
        return framework_shape(self._vals(t))

    def dtype_of(self, t: tuple) -> str:
        t = self.resolve(t)
        if t in self.consts:
            c = self.consts[t]
            return "int64" if c.dtype == object else str(c.dtype)
        return next(iter(self._vals(t).values())).type.dtype

    def _vals(self, t: tuple) -> dict:
        vals = self.values.get(t)
        if not vals:
            raise InvalidModelError(f"tensor {t[0]}:{t[1]} is read before it is computed", node=t[0])
        return vals

    def layout_of(self, t: tuple) -> str:
        return held_layout(self.values.get(self.resolve(t), {}))

    def value(self, t: tuple, layout: str, reader: str) -> Value:
        t = self.resolve(t)
        if t in self.consts:
            c = self.consts[t]
            cached = self.const_values.setdefault(t, {})
            if layout not in cached:
                if c.dtype == object:
                    raise UnsupportedOpError({f"a symbolic size used as data (by {reader})": [t[0]]},
                                             "TensorFlow")
                if layout == "NCHW":
                    c = c.transpose(TO_NCHW)
                cached[layout] = self.b.const(np.ascontiguousarray(c), name=t[0].replace("/", "_"))
            return cached[layout]
        return in_layout(self.b, self._vals(t), layout, f"{t[0]}_to_{layout.lower()}")

    def set_value(self, t: tuple, v: Value, layout: str) -> None:
        if v.is_const and v.const.size <= (1 << 24):
            self.consts[t] = np.asarray(v.const)
            return
        if len(v.type.shape) != 4:
            layout = "NHWC"
        self.values[t] = {layout: v}


def unsupported_ops(graph_def) -> dict[str, list[str]]:
    """The ops of a GraphDef that the translation table lacks: op -> the nodes using it."""
    return group_unsupported(_unsupported_nodes(graph_def))


def _unsupported_nodes(graph_def):
    """(op, node) of each GraphDef node without a translation."""
    from .tf_ops import TRANSLATIONS

    return ((n.op, n.name) for n in graph_def.node
            if n.op not in TRANSLATIONS and n.op not in PASS_THROUGH and n.op not in IGNORED)


def _input_type(name: str, shape, dtype: str) -> TensorType:
    dims = []
    for axis, d in enumerate(shape):
        if d is None or d < 0:
            dims.append(symbol("batch") if axis == 0 else symbol(f"{name}_{axis}"))
        else:
            dims.append(int(d))
    return TensorType(tuple(dims), dtype)


def _clean(name: str) -> str:
    out = "".join(c if c.isalnum() or c == "_" else "_" for c in name)
    return out if out and not out[0].isdigit() else "t_" + out


def from_graph_def(graph_def, inputs: Sequence[tuple[str, str, tuple]], outputs: Sequence[tuple[str, str]],
                   name: str = "tensorflow", bounds: Mapping[str, int] | None = None) -> Graph:
    """Translate a frozen GraphDef.  ``inputs``: (placeholder node, graph input name, shape with
    ``None`` for an open dimension); ``outputs``: (tensor ``node:k``, graph output name)."""
    from .tf_ops import TRANSLATIONS

    check_supported(_unsupported_nodes(graph_def), "TensorFlow")
    tf = _tf()
    tr = _Translator(name)
    nodes = {n.name: n for n in graph_def.node}
    for node_name, in_name, shape in inputs:
        n = nodes.get(node_name)
        if n is None or n.op != "Placeholder":
            raise InvalidModelError(f"input '{in_name}' is not a placeholder of the graph", node=node_name)
        dtype = tf_dtype(n.attr["dtype"].type, n.name, n.op)
        tr.values[(node_name, 0)] = {"NHWC": tr.b.input(_clean(in_name), _input_type(_clean(in_name), shape, dtype))}
    # the open batch is planned at 1; a model whose inputs all have a fixed batch has no such symbol
    open_batch = any(shape and (shape[0] is None or shape[0] < 0) for _, _, shape in inputs)
    tr.b.hints.update({"batch": 1} if open_batch and "batch" not in (bounds or {}) else {})
    tr.b.bounds.update(bounds or {})
    for n in _topological(graph_def, nodes):
        if n.op == "Placeholder":
            if (n.name, 0) not in tr.values:
                raise InvalidModelError("a placeholder that is not an input of the function", node=n.name,
                                        op=n.op)
            continue
        if n.op == "NoOp":
            continue
        if n.op == "Const":
            try:
                tr.consts[(n.name, 0)] = tf.make_ndarray(n.attr["value"].tensor)
            except (TypeError, ValueError) as e:
                raise InvalidModelError(f"unreadable constant: {e}", node=n.name, op=n.op) from None
            continue
        cx = NodeContext(tr, n)
        if n.op in PASS_THROUGH:
            tr.alias[(n.name, 0)] = cx.inputs[0]
            continue
        if n.op == "IdentityN":
            for k, ref in enumerate(cx.inputs):
                tr.alias[(n.name, k)] = ref
            continue
        with cx.translating((IndexError, TypeError, ValueError, ZeroDivisionError), "inconsistent operands"):
            TRANSLATIONS[n.op](cx)
    outs: list[Value] = []
    for ref, out_name in outputs:
        t = tr.resolve(tensor_ref(ref))
        v = tr.value(t, "NHWC", out_name)
        if v.producer is not None and all(v is not o for o in outs):
            v.name = tr.b.fresh(_clean(out_name))
        outs.append(v)
    return tr.b.finish(outs)


def _topological(graph_def, nodes: dict) -> list:
    """The nodes in an order where every input comes first (GraphDefs need not be sorted)."""
    order, state = [], {}
    for root in graph_def.node:
        if root.name in state:
            continue
        stack = [(root, False)]
        while stack:
            n, done = stack.pop()
            if done:
                state[n.name] = 2
                order.append(n)
                continue
            if state.get(n.name):
                continue
            state[n.name] = 1
            stack.append((n, True))
            for i in n.input:
                dep = tensor_ref(i)[0]
                if dep not in nodes:
                    raise InvalidModelError(f"input '{i}' names no node of the graph", node=n.name, op=n.op)
                if state.get(dep) == 1 and dep != n.name:
                    continue
                if not state.get(dep):
                    stack.append((nodes[dep], False))
    return order


# ---- loading ---------------------------------------------------------------------------------

def _freeze(fn):
    """The function's GraphDef with its variables as constants, its input and output tensors.
    TensorFlow's converter builds the GraphDef and then wraps it into a new function, which
    takes most of its time; the GraphDef alone is enough here, so its two steps are called
    directly where this TensorFlow has them."""
    from tensorflow.python.framework import convert_to_constants as c2c

    try:
        if hasattr(c2c, "_FunctionConverterDataInEager") and hasattr(c2c, "_replace_variables_by_constants"):
            data = c2c._FunctionConverterDataInEager(func=fn, lower_control_flow=True, aggressive_inlining=False)
            gd, converted = c2c._replace_variables_by_constants(converter_data=data)
            captures = fn.graph.internal_captures
            frozen_ids = {id(captures[i]) for i in converted}
            return gd, [t for t in fn.inputs if id(t) not in frozen_ids], list(fn.outputs)
        frozen = c2c.convert_variables_to_constants_v2(fn)
        return frozen.graph.as_graph_def(), list(frozen.inputs), list(frozen.outputs)
    except Exception as e:  # noqa: BLE001 - TensorFlow raises many kinds here
        raise ModelLoadError(f"cannot freeze the TensorFlow function: {e}") from None


def _from_concrete(fn, name: str, input_names: Sequence[str] | None, output_names: Sequence[str] | None,
                   bounds) -> Graph:
    gd, ins, outputs = _freeze(fn)
    placeholders = [t for t in ins if t.dtype.name != "resource"]
    if len(placeholders) != len(ins):
        raise FrontendError("the function reads a variable that could not be frozen into a constant")
    if input_names is None:
        input_names = [t.op.name for t in placeholders]
    inputs = [(t.op.name, nm, tuple(t.shape.as_list()) if t.shape.rank is not None else None)
              for t, nm in zip(placeholders, input_names)]
    for (node, nm, shape) in inputs:
        if shape is None:
            raise FrontendError(f"input '{nm}' has no known rank; give the function an input signature",
                                node=node)
    if output_names is None:
        output_names = _output_names(fn, len(outputs))
    return from_graph_def(gd, inputs, [(t.name, nm) for t, nm in zip(outputs, output_names)], name, bounds)


def _output_names(fn, n: int) -> list[str]:
    tf = _tf()
    structured = getattr(fn, "structured_outputs", None)
    if isinstance(structured, dict):
        flat = tf.nest.flatten(structured)
        keys = sorted(structured) if len(flat) == len(structured) else None
        if keys is not None and len(keys) == n:
            return list(keys)
    return ["output" if n == 1 else f"output_{k}" for k in range(n)]


def from_tensorflow(model, signature: str = "serving_default", bounds: Mapping[str, int] | None = None) -> Graph:
    """Translate a SavedModel directory (its ``signature``) or a ``tf.function``'s concrete
    function into a Graph.  Open dimensions stay symbolic (``batch`` for the leading one)."""
    tf = _tf()
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isdir(path):
            raise ModelFileError(f"'{path}' is not a SavedModel directory")
        try:
            loaded = tf.saved_model.load(path)
        except Exception as e:  # noqa: BLE001 - TensorFlow raises many kinds here
            raise ModelFileError(f"cannot load SavedModel '{path}': {e}") from None
        if signature not in loaded.signatures:
            raise FrontendError(f"SavedModel '{path}' has no signature '{signature}' "
                                f"(it has {sorted(loaded.signatures)})")
        fn = loaded.signatures[signature]
        names = [t.name.split(":")[0] for t in fn.inputs if t.dtype.name != "resource"]
        spec = fn.structured_input_signature[1] if fn.structured_input_signature else {}
        if isinstance(spec, dict) and len(spec) == len(names):
            by_ph = {s.name: k for k, s in spec.items()}
            names = [by_ph.get(nm, nm) for nm in names]
        base = os.path.basename(os.path.normpath(path)) or "saved_model"
        graph = _from_concrete(fn, base, names, None, bounds)
        return graph
    if hasattr(model, "get_concrete_function") and not hasattr(model, "graph"):
        raise FrontendError("from_tensorflow takes a concrete function: call get_concrete_function(...) on "
                            "the tf.function with its input signature")
    if hasattr(model, "graph") and hasattr(model, "inputs"):
        name = getattr(model, "name", None) or "tensorflow"
        name = name.decode() if isinstance(name, bytes) else str(name)
        name = name.removeprefix("__inference_").rsplit("_", 1)[0] or "tensorflow"
        return _from_concrete(model, _clean(name), None, None, bounds)
    raise FrontendError(f"from_tensorflow takes a SavedModel directory or a concrete function, got "
                        f"{type(model).__name__}")


def _keras_name(t) -> str:
    """The name of the layer that makes a Keras tensor (an ``Input``'s own name)."""
    history = getattr(t, "_keras_history", None)
    op = getattr(history, "operation", None)
    return getattr(op, "name", None) or t.name


def from_keras(model, input_signature=None, bounds: Mapping[str, int] | None = None) -> Graph:
    """Translate a Keras 3 model (an object, a ``.keras`` file or a legacy ``.h5`` file) into a
    Graph, called in inference mode (``training=False``).  The inputs are the model's own (their
    names and shapes, the open batch a ``batch`` symbol); a model built without inputs needs
    ``input_signature`` (a list of ``tf.TensorSpec``)."""
    tf = _tf()
    import keras

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise ModelFileError(f"cannot read Keras model '{path}': no such file")
        try:
            model = keras.saving.load_model(path, compile=False)
        except Exception as e:  # noqa: BLE001 - keras raises many kinds here
            raise ModelFileError(f"cannot load Keras model '{path}': {e}") from None
    if not isinstance(model, keras.Model):
        raise FrontendError(f"from_keras takes a keras.Model or a .keras / .h5 path, got {type(model).__name__}")
    if input_signature is None:
        try:
            ins = list(model.inputs)
        except (AttributeError, ValueError):
            ins = []
        if not ins:
            raise FrontendError(f"Keras model '{model.name}' has no inputs yet: pass input_signature=")
        input_signature = [tf.TensorSpec(i.shape, i.dtype, name=_keras_name(i)) for i in ins]
    specs = list(input_signature)
    names = [getattr(s, "name", None) or f"input_{k}" for k, s in enumerate(specs)]

    def call(*xs):
        return model(list(xs) if len(xs) > 1 else xs[0], training=False)

    try:
        fn = tf.function(call).get_concrete_function(*specs)
    except Exception as e:  # noqa: BLE001 - tracing errors are the model's
        raise ModelLoadError(f"cannot trace Keras model '{model.name}': {e}") from None
    out_names = None
    try:
        outs = list(model.outputs)
        if len(outs) == len(fn.outputs):
            out_names = [_keras_name(o) for o in outs]
    except (AttributeError, ValueError):
        pass
    return _from_concrete(fn, model.name, names, out_names, bounds)

"""The TensorFlow ops, each translated into Ember's core ops with TensorFlow's semantics.

A translation reads its operands through a :class:`~.tensorflow.NodeContext`: operands known
while translating (constants and shape arithmetic, possibly over symbolic dimensions) are numpy
arrays, computed here with numpy, so that a reshape's target shape never reaches the graph;
everything else becomes core ops.
"""

from __future__ import annotations

import functools
import string

import numpy as np

from ..graph.types import np_dtype
from ..symbolic import Sym, SymbolicError, exact_div
from .core import TO_NCHW, TranslationTable, elementwise_layout, layout_operand, shape_values
from .tensorflow import tf_dtype

TRANSLATIONS = TranslationTable("TensorFlow")
translates = TRANSLATIONS.translates


def _all_const(cx, ks=None) -> bool:
    return all(cx.is_const(k) for k in (range(cx.n_inputs()) if ks is None else ks))


def _tidy(a: np.ndarray, dtype: str = "int64") -> np.ndarray:
    """An object array of dimensions as an int array when no dimension is symbolic."""
    a = np.asarray(a)
    if a.dtype == object and not any(isinstance(d, Sym) for d in a.reshape(-1)):
        return a.astype(np_dtype(dtype))
    return a


def _symbolic(*arrays) -> bool:
    return any(np.asarray(a).dtype == object for a in arrays)


def _out_dtype(cx, default="int32") -> str:
    t = cx.node.attr.get("T")
    return tf_dtype(t.type, cx.name, cx.op_type) if t is not None and t.type else default


def _fold(cx, core: str, arrays, **attrs) -> None:
    """A core op on operands known while translating (symbolic dimensions included)."""
    try:
        out = shape_values.fold(core, attrs, [np.asarray(a) for a in arrays])
    except SymbolicError as e:
        raise cx.unsupported(f"shape arithmetic only known at run time: {e}") from None
    cx.set_const(_tidy(out, _out_dtype(cx, "int64")) if out.dtype == object else out)


# ---- elementwise ---------------------------------------------------------------------------

_layout_for = elementwise_layout
_operand = layout_operand


_BINARY = {"AddV2": "add", "Add": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div", "Maximum": "maximum",
           "Minimum": "minimum", "Pow": "pow", "Less": "less", "LessEqual": "less_equal", "Greater": "greater",
           "GreaterEqual": "greater_equal", "Equal": "equal", "NotEqual": "not_equal",
           "LogicalAnd": "logical_and", "LogicalOr": "logical_or"}


@translates(*_BINARY, "SquaredDifference", "BiasAdd", "FloorDiv", "Div")
def binary(cx):
    kind = cx.op_type
    if kind == "BiasAdd" and _channels_first(cx):
        # the bias along axis 1 of the tensor as TensorFlow holds it
        b = cx.get(1)
        shape = (1, cx.shape(1)[0]) + (1,) * (cx.rank(0) - 2)
        return cx.set(cx.op("add", [cx.get(0), cx.op("reshape", [b], shape=shape)]))
    if kind in ("FloorDiv", "Div") and cx.dtype(0).startswith("float"):
        kind = "RealDiv" if kind == "Div" else kind
    elif kind in ("FloorDiv", "Div"):
        if not _all_const(cx):
            raise cx.unsupported("integer division computed at run time")
        a, b = cx.const_input(0), cx.const_input(1)
        if _symbolic(a, b):
            return _fold(cx, "div", [a, b])     # shape arithmetic: non-negative sizes
        return cx.set_const(np.floor_divide(a, b) if kind == "FloorDiv" else np.trunc(a / b).astype(a.dtype))
    if _all_const(cx) and _symbolic(cx.const_input(0), cx.const_input(1)):
        core = "add" if kind == "BiasAdd" else _BINARY.get(kind)
        if core is None:
            raise cx.unsupported("shape arithmetic")
        return _fold(cx, core, [cx.const_input(0), cx.const_input(1)])
    layout = _layout_for(cx, (0, 1))
    x, y = _operand(cx, 0, layout), _operand(cx, 1, layout)
    if kind == "FloorDiv":
        out = cx.op("floor", [cx.op("div", [x, y])])
    elif kind == "SquaredDifference":
        d = cx.op("sub", [x, y])
        out = cx.op("mul", [d, d])
    elif kind == "BiasAdd" and layout == "NCHW":
        out = cx.op("add", [x, cx.op("reshape", [cx.get(1)], shape=(1, -1, 1, 1)) if not cx.is_const(1) else y])
    else:
        out = cx.op("add" if kind == "BiasAdd" else _BINARY[kind], [x, y])
    cx.set(out, layout)


@translates("AddN")
def add_n(cx):
    layout = _layout_for(cx, range(cx.n_inputs()))
    out = _operand(cx, 0, layout)
    for k in range(1, cx.n_inputs()):
        out = cx.op("add", [out, _operand(cx, k, layout)])
    cx.set(out, layout)


_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Neg": "neg", "Abs": "abs", "Erf": "erf", "Floor": "floor", "Ceil": "ceil", "Sin": "sin", "Cos": "cos",
          "Reciprocal": "reciprocal", "Inv": "reciprocal", "Sign": "sign", "LogicalNot": "logical_not",
          "Round": "round"}


@translates(*_UNARY, "Relu6", "Rsqrt", "Square", "Erfc", "LeakyRelu", "Elu", "Softplus", "Selu")
def unary(cx):
    kind = cx.op_type
    if cx.is_const(0) and _symbolic(cx.const_input(0)):
        if kind != "Neg":
            raise cx.unsupported("shape arithmetic")
        return _fold(cx, "neg", [cx.const_input(0)])
    layout = cx.layout(0)
    x = cx.get(0, layout)
    dt = x.type.dtype

    def c(v):
        return cx.const(np.asarray(v, dtype=np_dtype(dt)))

    if kind in _UNARY:
        y = cx.op(_UNARY[kind], [x])
    elif kind == "Relu6":
        y = cx.op("clip", [x], lo=0.0, hi=6.0)
    elif kind == "Rsqrt":
        y = cx.op("reciprocal", [cx.op("sqrt", [x])])
    elif kind == "Square":
        y = cx.op("mul", [x, x])
    elif kind == "Erfc":
        y = cx.op("sub", [c(1.0), cx.op("erf", [x])])
    elif kind == "LeakyRelu":
        alpha = float(cx.attr("alpha", 0.2))
        y = cx.op("where", [cx.op("greater", [x, c(0.0)]), x, cx.op("mul", [x, c(alpha)])])
    elif kind in ("Elu", "Selu"):
        alpha, scale = (1.0, 1.0) if kind == "Elu" else (1.6732632423543772, 1.0507009873554805)
        neg = cx.op("mul", [cx.op("sub", [cx.op("exp", [x]), c(1.0)]), c(alpha)])
        y = cx.op("where", [cx.op("greater", [x, c(0.0)]), x, neg])
        if scale != 1.0:
            y = cx.op("mul", [y, c(scale)])
    else:  # Softplus: log(1 + exp(x)), as max(x, 0) + log(1 + exp(-|x|)) to avoid overflow
        e = cx.op("exp", [cx.op("neg", [cx.op("abs", [x])])])
        y = cx.op("add", [cx.op("relu", [x]), cx.op("log", [cx.op("add", [c(1.0), e])])])
    cx.set(y, layout)


@translates("Select", "SelectV2")
def select(cx):
    if _all_const(cx):
        return _fold(cx, "where", [cx.const_input(0), cx.const_input(1), cx.const_input(2)])
    if cx.op_type == "Select" and cx.rank(0) == 1 and cx.rank(1) > 1:
        raise cx.unsupported("a vector condition selecting rows")
    cx.set(cx.op("where", [cx.get(0), cx.get(1), cx.get(2)]))


@translates("Cast")
def cast(cx):
    to = tf_dtype(cx.attr("DstT"), cx.name, cx.op_type)
    if cx.is_const(0):
        a = cx.const_input(0)
        if a.dtype == object:
            return _fold(cx, "cast", [a], to=to)
        return cx.set_const(a.astype(np_dtype(to)))
    layout = cx.layout(0)
    x = cx.get(0, layout)
    if cx.attr("Truncate", False):
        raise cx.unsupported("Truncate=True")
    cx.set(x if x.type.dtype == to else cx.op("cast", [x], to=to), layout)


# ---- convolutions and pools ------------------------------------------------------------------

def _same_pads(cx, size, k, s, d, padding) -> tuple[int, int]:
    if not isinstance(size, int):
        raise cx.unsupported("a symbolic height or width")
    eff = (k - 1) * d + 1
    if padding == "VALID":
        return 0, 0
    out = -(-size // s)
    total = max(0, (out - 1) * s + eff - size)
    return total // 2, total - total // 2


def _window(cx, h, w, kh, kw, sh, sw, dh=1, dw=1):
    padding = cx.attr("padding")
    if padding == "EXPLICIT":
        p = cx.attr("explicit_paddings")
        if len(p) != 8:
            raise cx.fail(f"explicit_paddings {p} needs 8 values")
        return (p[2], p[4], p[3], p[5])
    if padding not in ("SAME", "VALID"):
        raise cx.unsupported(f"padding {padding}")
    ph = _same_pads(cx, h, kh, sh, dh, padding)
    pw = _same_pads(cx, w, kw, sw, dw, padding)
    return (ph[0], pw[0], ph[1], pw[1])


def _channels_first(cx) -> bool:
    """Whether the node's data_format is NCHW (its tensors are then held as TensorFlow holds
    them, which is Ember's NCHW), or NHWC (the default)."""
    fmt = cx.attr("data_format", "NHWC")
    if fmt not in ("NHWC", "NCHW"):
        raise cx.unsupported(f"data_format {fmt}")
    return fmt == "NCHW"


def _spatial_attr(cx, key, default=(1, 1, 1, 1)):
    """(height, width) entries of a 4-entry attribute in the node's data_format."""
    v = list(cx.attr(key, None) or default)
    h, w = (2, 3) if _channels_first(cx) else (1, 2)
    if len(v) != 4 or any(v[k] != 1 for k in range(4) if k not in (h, w)):
        raise cx.unsupported(f"{key} {v} over the batch or channels")
    return v[h], v[w]


def _nchw_operand(cx):
    """The input as an NCHW value and the layout name the result is set in: an NCHW node's
    tensors are TensorFlow's own (``NHWC`` in the frontend's terms, the layout as held)."""
    return (cx.get(0), "NHWC") if _channels_first(cx) else (cx.nchw(0), "NCHW")


@translates("Conv2D", "DepthwiseConv2dNative")
def conv2d(cx):
    sh, sw = _spatial_attr(cx, "strides")
    dh, dw = _spatial_attr(cx, "dilations")
    w = np.asarray(cx.const_input(1, "filter"), np.float32)          # KH, KW, I, O  (or KH, KW, C, M)
    if cx.rank(0) != 4 or w.ndim != 4:
        raise cx.fail(f"needs a rank-4 input and filter, got {cx.shape(0)} and {w.shape}")
    c = cx.shape(0)[1 if _channels_first(cx) else 3]
    kh, kw = w.shape[:2]
    if cx.op_type == "DepthwiseConv2dNative":
        if w.shape[2] != c:
            raise cx.fail(f"filter {w.shape} does not match {c} input channels")
        oihw = w.reshape(kh, kw, -1).transpose(2, 0, 1)[:, None]
        groups = c
    else:
        if c % w.shape[2]:
            raise cx.fail(f"input channels {c} are not a multiple of the filter's {w.shape[2]}")
        oihw = w.transpose(3, 2, 0, 1)
        groups = c // w.shape[2]
    x, layout = _nchw_operand(cx)
    _, _, h, wd = x.type.shape
    pads = _window(cx, h, wd, kh, kw, sh, sw, dh, dw)
    y = cx.op("conv2d", [x, cx.const(np.ascontiguousarray(oihw))], strides=(sh, sw), pads=pads,
              dilations=(dh, dw), groups=groups)
    cx.set(y, layout)


@translates("MaxPool", "AvgPool")
def pool(cx):
    kh, kw = _spatial_attr(cx, "ksize")
    sh, sw = _spatial_attr(cx, "strides")
    x, layout = _nchw_operand(cx)
    _, _, h, w = x.type.shape
    pads = _window(cx, h, w, kh, kw, sh, sw)
    core = "max_pool2d" if cx.op_type == "MaxPool" else "avg_pool2d"
    # TensorFlow averages over the window's elements inside the input
    cx.set(cx.op(core, [x], kernel=(kh, kw), strides=(sh, sw), pads=pads, count_include_pad=False), layout)


@translates("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def fused_batch_norm(cx):
    if cx.attr("is_training", False):
        raise cx.unsupported("is_training=True")
    first = _channels_first(cx)
    scale, offset, mean, var = (np.asarray(cx.const_input(k, "statistic"), np.float64) for k in range(1, 5))
    mul = scale / np.sqrt(var + float(cx.attr("epsilon", 1e-3)))
    add = offset - mean * mul
    layout = "NHWC" if first or cx.rank(0) != 4 else cx.layout(0)
    x = cx.get(0, layout)
    shape = (1, -1, 1, 1) if layout == "NCHW" or first else (-1,)
    y = cx.op("mul", [x, cx.const(mul.astype(np.float32).reshape(shape))])
    cx.set(cx.op("add", [y, cx.const(add.astype(np.float32).reshape(shape))]), layout)


# ---- matrix products -------------------------------------------------------------------------

def _swap_last(v, cx):
    r = len(v.type.shape)
    return cx.op("transpose", [v], perm=tuple(range(r - 2)) + (r - 1, r - 2))


@translates("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def matmul(cx):
    ta, tb = ("transpose_a", "transpose_b") if cx.op_type == "MatMul" else ("adj_x", "adj_y")
    a, b = cx.get(0), cx.get(1)
    if cx.attr(ta, False):
        a = _swap_last(a, cx)
    if cx.attr(tb, False):
        b = _swap_last(b, cx)
    cx.set(cx.op("matmul", [a, b]))


def _prod(dims):
    return functools.reduce(lambda p, d: p * d, dims, 1)


@translates("Einsum")
def einsum(cx):
    """Two operands, each index once per operand, no ellipsis: a batched matrix product of
    (batch, free of a, contracted) and (batch, contracted, free of b), then the output order."""
    eq = cx.attr("equation").replace(" ", "")
    lhs, _, out = eq.partition("->")
    terms = lhs.split(",")
    if "." in eq or len(terms) != 2 or not _ok_indices(terms, out):
        raise cx.unsupported(f"equation {eq}")
    ta, tb = terms
    a, b = cx.get(0), cx.get(1)
    dims = {}
    for t, v in ((ta, a), (tb, b)):
        if len(t) != len(v.type.shape):
            raise cx.fail(f"'{t}' does not match an operand of shape {v.type.shape}")
        for ch, d in zip(t, v.type.shape):
            dims.setdefault(ch, d)
    batch = [ch for ch in ta if ch in tb and ch in out]
    contract = [ch for ch in ta if ch in tb and ch not in out]
    fa = [ch for ch in ta if ch not in tb]
    fb = [ch for ch in tb if ch not in ta]
    if any(ch not in out for ch in fa + fb):
        raise cx.unsupported(f"equation {eq} sums over an index of one operand")

    def arrange(v, t, order, rows, cols):
        perm = tuple(t.index(ch) for ch in order)
        if perm != tuple(range(len(t))):
            v = cx.op("transpose", [v], perm=perm)
        shape = tuple(dims[ch] for ch in batch) + (_prod(dims[ch] for ch in rows), _prod(dims[ch] for ch in cols))
        return v if tuple(v.type.shape) == shape else cx.op("reshape", [v], shape=shape)

    am = arrange(a, ta, batch + fa + contract, fa, contract)
    bm = arrange(b, tb, batch + contract + fb, contract, fb)
    y = cx.op("matmul", [am, bm])
    mid = batch + fa + fb
    shape = tuple(dims[ch] for ch in mid)
    if tuple(y.type.shape) != shape:
        y = cx.op("reshape", [y], shape=shape)
    perm = tuple(mid.index(ch) for ch in out)
    if perm != tuple(range(len(mid))):
        y = cx.op("transpose", [y], perm=perm)
    cx.set(y)


def _ok_indices(terms, out) -> bool:
    letters = set(string.ascii_letters)
    return (all(len(set(t)) == len(t) and set(t) <= letters for t in terms + [out])
            and set(out) <= set("".join(terms)))


# ---- normalizations and reductions -----------------------------------------------------------

@translates("Softmax", "LogSoftmax")
def softmax(cx):
    cx.set(cx.op("softmax", [cx.get(0)], axis=-1, log=cx.op_type == "LogSoftmax"))


_REDUCE = {"Mean": "reduce_mean", "Sum": "reduce_sum", "Max": "reduce_max", "Min": "reduce_min",
           "Prod": "reduce_prod"}


@translates(*_REDUCE)
def reduce(cx):
    r = cx.rank(0)
    axes = sorted({int(a) % r for a in cx.ints(1, "axes")}) if r else []
    keep = bool(cx.attr("keep_dims", False))
    if cx.is_const(0) and _symbolic(cx.const_input(0)):
        if cx.op_type != "Prod":
            raise cx.unsupported("shape arithmetic")
        a = cx.const_input(0)
        if a.ndim != 1 or axes != [0]:
            raise cx.unsupported("a partial product of sizes")
        p = _prod(a.tolist())
        return cx.set_const(_tidy(np.array([p] if keep else p, dtype=object), _out_dtype(cx)))
    if not axes:
        return cx.set(cx.get(0), cx.layout(0))
    layout = cx.layout(0) if r == 4 else "NHWC"
    if layout == "NCHW":
        axes = sorted(TO_NCHW.index(a) for a in axes)
    y = cx.op(_REDUCE[cx.op_type], [cx.get(0, layout)], axes=tuple(axes), keepdims=keep)
    cx.set(y, layout if keep else "NHWC")


# ---- data movement -----------------------------------------------------------------------------

@translates("Shape")
def shape(cx):
    dims = cx.shape(0)
    out = tf_dtype(cx.attr("out_type", 3), cx.name, cx.op_type)
    arr = np.empty(len(dims), dtype=object)
    arr[:] = list(dims)
    cx.set_const(_tidy(arr, out))


def _resolve_shape(cx, new: list, total, what: str) -> tuple:
    if new.count(-1) > 1:
        raise cx.fail(f"{what} {new} has more than one -1")
    if -1 in new:
        known = _prod(d for d in new if not (isinstance(d, int) and d == -1))
        q = exact_div(total, known) if not isinstance(known, int) or known else None
        if q is None:
            raise cx.fail(f"cannot reshape {total} elements to {new}")
        new[new.index(-1)] = q
    return tuple(new)


@translates("Reshape")
def reshape(cx):
    new = cx.ints(1, "shape")
    if cx.is_const(0):
        a = cx.const_input(0)
        return cx.set_const(a.reshape(_resolve_shape(cx, new, a.size, "shape")))
    x = cx.get(0)
    total = _prod(x.type.shape)
    shape = _resolve_shape(cx, new, total, "shape")
    if _prod(shape) != total:
        raise cx.fail(f"cannot reshape {x.type.shape} to {list(shape)}")
    cx.set(x if tuple(x.type.shape) == shape else cx.op("reshape", [x], shape=shape))


@translates("Squeeze")
def squeeze(cx):
    s = cx.shape(0)
    axes = {a % len(s) for a in cx.attr("squeeze_dims", [])} or {k for k, d in enumerate(s) if d == 1}
    if any(s[a] != 1 for a in axes):
        raise cx.fail(f"cannot squeeze axes {sorted(axes)} of shape {s}")
    new = tuple(d for k, d in enumerate(s) if k not in axes)
    if cx.is_const(0):
        return cx.set_const(cx.const_input(0).reshape(new))
    cx.set(cx.op("reshape", [cx.get(0)], shape=new))


@translates("ExpandDims")
def expand_dims(cx):
    s = list(cx.shape(0))
    (axis,) = cx.ints(1, "axis")
    axis = axis % (len(s) + 1)
    s.insert(axis, 1)
    if cx.is_const(0):
        return cx.set_const(cx.const_input(0).reshape(s))
    cx.set(cx.op("reshape", [cx.get(0)], shape=tuple(s)))


@translates("Transpose")
def transpose(cx):
    perm = tuple(int(p) % max(cx.rank(0), 1) for p in cx.ints(1, "perm"))
    if sorted(perm) != list(range(cx.rank(0))):
        raise cx.fail(f"perm {perm} is not a permutation of {cx.rank(0)} axes")
    if cx.is_const(0):
        return cx.set_const(np.ascontiguousarray(cx.const_input(0).transpose(perm)))
    if cx.rank(0) == 4 and cx.layout(0) == "NCHW":
        if perm == TO_NCHW:                       # NHWC -> NCHW: the value as it is
            return cx.set(cx.nchw(0), "NHWC")
    cx.set(cx.op("transpose", [cx.get(0)], perm=perm) if perm != tuple(range(len(perm))) else cx.get(0))


@translates("ConcatV2", "Pack")
def concat(cx):
    n = cx.n_inputs() - (1 if cx.op_type == "ConcatV2" else 0)
    if cx.op_type == "ConcatV2":
        (axis,) = cx.ints(n, "axis")
    else:
        axis = int(cx.attr("axis", 0))
    r = cx.rank(0) + (1 if cx.op_type == "Pack" else 0)
    axis %= max(r, 1)
    if _all_const(cx, range(n)):
        parts = [np.asarray(cx.const_input(k)) for k in range(n)]
        if cx.op_type == "Pack":
            parts = [p.reshape(p.shape[:axis] + (1,) + p.shape[axis:]) for p in parts]
        if any(p.dtype == object for p in parts):
            return _fold(cx, "concat", parts, axis=axis)
        return cx.set_const(np.concatenate(parts, axis=axis))
    if cx.op_type == "Pack":
        vals = []
        for k in range(n):
            v = cx.get(k)
            s = tuple(v.type.shape)
            vals.append(cx.op("reshape", [v], shape=s[:axis] + (1,) + s[axis:]))
        return cx.set(cx.op("concat", vals, axis=axis))
    layout = _layout_for(cx, range(n)) if r == 4 else "NHWC"
    if layout == "NCHW":
        axis = TO_NCHW.index(axis)
    cx.set(cx.op("concat", [cx.get(k, layout) for k in range(n)], axis=axis), layout)


def _strided_index(cx, rank: int) -> list:
    """StridedSlice's begin / end / strides and masks as a numpy-style index."""
    begin, end, strides = cx.ints(1, "begin"), cx.ints(2, "end"), cx.ints(3, "strides")
    if not len(begin) == len(end) == len(strides):
        raise cx.fail("begin, end and strides differ in length")
    bm, em, ell, new, shrink = (int(cx.attr(k, 0)) for k in ("begin_mask", "end_mask", "ellipsis_mask",
                                                             "new_axis_mask", "shrink_axis_mask"))
    index = []
    for k in range(len(begin)):
        if ell >> k & 1:
            index.append(Ellipsis)
        elif new >> k & 1:
            index.append(None)
        elif shrink >> k & 1:
            index.append(begin[k])
        else:
            if strides[k] == 0:
                raise cx.fail("stride 0")
            index.append(slice(None if bm >> k & 1 else begin[k], None if em >> k & 1 else end[k], strides[k]))
    return index


@translates("StridedSlice")
def strided_slice(cx):
    index = _strided_index(cx, cx.rank(0))
    if cx.is_const(0):
        return cx.set_const(np.asarray(cx.const_input(0)[tuple(index)]))
    _slice_value(cx, cx.get(0), index)


@translates("Slice")
def slice_(cx):
    begin, size = cx.ints(1, "begin"), cx.ints(2, "size")
    shape = cx.shape(0)
    index = [slice(b, None if s == -1 else b + s, 1) for b, s, d in zip(begin, size, shape)]
    if cx.is_const(0):
        return cx.set_const(np.asarray(cx.const_input(0)[tuple(index)]))
    _slice_value(cx, cx.get(0), index)


def _slice_value(cx, x, index):
    shape = tuple(x.type.shape)
    if index.count(Ellipsis) > 1:
        raise cx.fail("more than one ellipsis")
    if Ellipsis in index:
        e = index.index(Ellipsis)
        rest = len(shape) - sum(1 for i in index if i is not None and i is not Ellipsis)
        index = index[:e] + [slice(None)] * rest + index[e + 1:]
    index = index + [slice(None)] * (len(shape) - sum(1 for i in index if i is not None))
    starts, ends, steps, out = [], [], [], []
    axis = 0
    for i in index:
        if i is None:
            out.append(1)
            continue
        d = shape[axis]
        axis += 1
        if isinstance(i, slice) and i.start in (None, 0) and i.stop is None and i.step in (None, 1):
            starts.append(0), ends.append(d), steps.append(1), out.append(d)
            continue
        if not isinstance(d, int):
            raise cx.unsupported(f"a slice of the symbolic dimension {d}")
        if isinstance(i, slice):
            s, e, p = i.indices(d)
            starts.append(s), ends.append(e), steps.append(p)
            out.append(len(range(s, e, p)))
        else:
            k = int(i) + d if int(i) < 0 else int(i)
            if not 0 <= k < d:
                raise cx.fail(f"index {i} is out of range for a dimension of {d}")
            starts.append(k), ends.append(k + 1), steps.append(1)
    if axis != len(shape):
        raise cx.fail(f"the slice indexes {axis} axes of a rank-{len(shape)} tensor")
    y = x
    if any(not (s == 0 and p == 1 and e == d) for s, e, p, d in zip(starts, ends, steps, shape)):
        y = cx.op("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=tuple(steps))
    if tuple(y.type.shape) != tuple(out):
        y = cx.op("reshape", [y], shape=tuple(out))
    cx.set(y)


@translates("GatherV2", "Gather")
def gather(cx):
    axis = cx.ints(2, "axis")[0] if cx.op_type == "GatherV2" else 0
    if int(cx.attr("batch_dims", 0)) != 0:
        raise cx.unsupported("batch_dims")
    axis %= cx.rank(0)
    if cx.is_const(0) and cx.is_const(1):
        p, i = cx.const_input(0), cx.const_input(1)
        if p.dtype == object:
            return _fold(cx, "gather", [p, i], axis=axis)
        return cx.set_const(np.take(p, i, axis=axis))
    cx.set(cx.op("gather", [cx.get(0), cx.get(1)], axis=axis))


@translates("Pad", "PadV2", "MirrorPad")
def pad(cx):
    p = np.asarray(cx.const_input(1, "paddings")).astype(np.int64)
    r = cx.rank(0)
    if p.shape != (r, 2):
        raise cx.fail(f"paddings of shape {p.shape} for a rank-{r} input")
    value = 0.0
    if cx.op_type == "PadV2":
        value = float(np.asarray(cx.const_input(2, "constant value")).reshape(()))
    mode = "constant"
    if cx.op_type == "MirrorPad":
        mode = {"REFLECT": "reflect"}.get(cx.attr("mode"))
        if mode is None:
            raise cx.unsupported(f"mode {cx.attr('mode')}")
    layout = cx.layout(0) if r == 4 else "NHWC"
    if layout == "NCHW":
        p = p[list(TO_NCHW)]
    x = cx.get(0, layout)
    cx.set(cx.op("pad", [x], pads=tuple(int(v) for v in p[:, 0]) + tuple(int(v) for v in p[:, 1]), mode=mode,
                 value=value), layout)


@translates("Tile")
def tile(cx):
    reps = cx.ints(1, "multiples")
    x = cx.get(0)
    s = tuple(x.type.shape)
    if len(reps) != len(s):
        raise cx.fail(f"{len(reps)} multiples for a rank-{len(s)} input")
    if any(isinstance(m, Sym) for m in reps):
        raise cx.unsupported("symbolic multiples")
    # (d0, d1, ...) -> (1, d0, 1, d1, ...) -> broadcast (m0, d0, m1, d1, ...) -> (m0*d0, m1*d1, ...)
    inter = tuple(v for d in s for v in (1, d))
    y = cx.op("reshape", [x], shape=inter)
    y = cx.op("broadcast_to", [y], shape=tuple(v for m, d in zip(reps, s) for v in (m, d)))
    cx.set(cx.op("reshape", [y], shape=tuple(m * d for m, d in zip(reps, s))))


# ---- space <-> batch ---------------------------------------------------------------------------

def _blocks(cx, what: str) -> tuple[list, np.ndarray]:
    block = [int(v) for v in cx.ints(1, "block_shape")]
    p = np.asarray(cx.const_input(2, what)).astype(np.int64).reshape(-1, 2)
    m = len(block)
    if m < 1 or p.shape != (m, 2) or cx.rank(0) < m + 1 or min(block) < 1 or (p < 0).any():
        raise cx.fail(f"block_shape {block} and {what} {p.tolist()} for a rank-{cx.rank(0)} input")
    return block, p


@translates("SpaceToBatchND")
def space_to_batch(cx):
    """Pad the M spatial axes, split each into (size / block, block), move the blocks in front of
    the batch: (N, P1, .., PM, R..) -> (b1 .. bM N, P1 / b1, .., PM / bM, R..)."""
    block, p = _blocks(cx, "paddings")
    m, x = len(block), cx.get(0)
    shape = list(x.type.shape)
    r = len(shape)
    pads = [0] * (2 * r)
    for k in range(m):
        pads[1 + k], pads[r + 1 + k] = int(p[k, 0]), int(p[k, 1])
        shape[1 + k] += int(p[k, 0] + p[k, 1])
        if not isinstance(shape[1 + k], int) or shape[1 + k] % block[k]:
            raise cx.fail(f"padded size {shape[1 + k]} of axis {1 + k} is not a multiple of {block[k]}")
    if any(pads):
        x = cx.op("pad", [x], pads=tuple(pads), mode="constant", value=0.0)
    split = [shape[0]] + [v for k in range(m) for v in (shape[1 + k] // block[k], block[k])] + shape[m + 1:]
    x = cx.op("reshape", [x], shape=tuple(split))
    perm = [2 + 2 * k for k in range(m)] + [0] + [1 + 2 * k for k in range(m)] + list(range(2 * m + 1, len(split)))
    x = cx.op("transpose", [x], perm=tuple(perm))
    n = shape[0]
    for b in block:
        n = n * b
    cx.set(cx.op("reshape", [x], shape=(n,) + tuple(shape[1 + k] // block[k] for k in range(m))
                 + tuple(shape[m + 1:])))


@translates("BatchToSpaceND")
def batch_to_space(cx):
    """The inverse: (b1 .. bM N, S1, .., SM, R..) -> (N, S1 b1, .., SM bM, R..), then the crops."""
    block, crops = _blocks(cx, "crops")
    m, x = len(block), cx.get(0)
    shape = list(x.type.shape)
    total = int(np.prod(block))
    n = exact_div(shape[0], total) if not isinstance(shape[0], int) else (
        shape[0] // total if shape[0] % total == 0 else None)
    if n is None:
        raise cx.fail(f"batch {shape[0]} is not a multiple of the block {block}")
    x = cx.op("reshape", [x], shape=tuple(block) + (n,) + tuple(shape[1:]))
    perm = [m] + [v for k in range(m) for v in (m + 1 + k, k)] + list(range(2 * m + 1, m + len(shape)))
    x = cx.op("transpose", [x], perm=tuple(perm))
    full = [n] + [shape[1 + k] * block[k] for k in range(m)] + shape[m + 1:]
    x = cx.op("reshape", [x], shape=tuple(full))
    if crops.any():
        starts = [0] * len(full)
        ends = list(full)
        for k in range(m):
            starts[1 + k], ends[1 + k] = int(crops[k, 0]), full[1 + k] - int(crops[k, 1])
            if ends[1 + k] <= starts[1 + k]:
                raise cx.fail(f"crops {crops.tolist()} leave nothing of axis {1 + k}")
        x = cx.op("slice", [x], starts=tuple(starts), ends=tuple(ends), steps=(1,) * len(full))
    cx.set(x)

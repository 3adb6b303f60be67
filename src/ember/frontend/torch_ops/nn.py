"""Neural-network ATen ops: convolution, pooling, normalization, softmax, matrix products."""

from __future__ import annotations

import numpy as np

from . import translates
from ...ops.nn import clip_window


def _pair(v, n=2):
    v = list(v) if isinstance(v, (list, tuple)) else [v]
    return tuple(v * n if len(v) == 1 else v)


@translates("aten.convolution.default")
def convolution(cx, x, w, bias, stride, padding, dilation, transposed, output_padding, groups):
    nsp = x.type.rank - 2
    if nsp not in (1, 2):
        raise cx.unsupported(f"{nsp}-D convolution")
    stride, dilation = _pair(stride, nsp), _pair(dilation, nsp)
    if isinstance(padding, str):
        raise cx.unsupported(f"padding={padding!r}")
    padding = _pair(padding, nsp)
    if nsp == 1:
        x = cx.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2]))
        w = cx.reshape(w, (w.shape[0], w.shape[1], 1, w.shape[2]))
        stride, dilation, padding = (1,) + stride, (1,) + dilation, (0,) + padding
        output_padding = (0,) + _pair(output_padding, 1)
    if transposed:
        x, w, padding = _transposed(cx, x, w, stride, padding, dilation, _pair(output_padding), groups)
        stride = (1, 1)
    pads = padding if len(padding) == 4 else (padding[0], padding[1], padding[0], padding[1])
    y = cx.op("conv2d", [x, w], strides=stride, dilations=dilation, pads=tuple(pads), groups=groups)
    if bias is not None:
        y = cx.op("add", [y, cx.reshape(bias, (1, bias.shape[0], 1, 1))])
    return cx.reshape(y, cx.out_shape())


def _transposed(cx, x, w, stride, padding, dilation, output_padding, groups):
    """A transposed convolution as a stride-1 convolution: the input with stride - 1 zeros
    between its pixels, padded by dilation * (k - 1) - padding (+ output_padding at the end),
    and the weight flipped with its in/out channels swapped per group.  Returns the new input,
    weight and pads (top, left, bottom, right; the input is padded here, so they are 0)."""
    n, c, h, wd = x.shape
    ci, co_g, kh, kw = w.shape
    sh, sw = stride
    if sh > 1 or sw > 1:
        y = cx.reshape(x, (n, c, h, 1, wd, 1))
        y = cx.op("pad", [y], pads=(0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1), mode="constant", value=0.0)
        y = cx.reshape(y, (n, c, h * sh, wd * sw))
        x = cx.op("slice", [y], starts=(0, 0, 0, 0), ends=(n, c, h * sh - (sh - 1), wd * sw - (sw - 1)),
                  steps=(1, 1, 1, 1))
    (dh, dw), (ph, pw), (oh, ow) = dilation, padding, output_padding
    eh, ew = dh * (kh - 1) - ph, dw * (kw - 1) - pw
    x = cx.op("pad", [x], pads=(0, 0, eh, ew, 0, 0, eh + oh, ew + ow), mode="constant", value=0.0)
    g = groups
    wt = cx.reshape(w, (g, ci // g, co_g, kh, kw))
    wt = cx.op("transpose", [wt], perm=(0, 2, 1, 3, 4))
    wt = cx.reshape(wt, (g * co_g, ci // g, kh, kw))
    wt = cx.op("slice", [wt], starts=(0, 0, kh - 1, kw - 1), ends=(g * co_g, ci // g, -1, -1), steps=(1, 1, -1, -1))
    return x, wt, (0, 0, 0, 0)


def _pool(cx, core, x, kernel, stride, padding, dilation, ceil_mode, count_include_pad=True):
    kernel = _pair(kernel)
    stride = _pair(stride) if stride else kernel
    padding, dilation = _pair(padding), _pair(dilation)
    squeeze = x.type.rank == 3
    if squeeze:
        x = cx.reshape(x, (1,) + tuple(x.shape))
    pads = (padding[0], padding[1], padding[0], padding[1])
    # a window past the padded input (transformers' EfficientNet pools a 7x7 map with a 2560x2560
    # one in ceil mode) loops only over what it covers
    kernel = tuple(clip_window(tuple(x.shape)[-2:], kernel, stride, pads, dilation, bool(ceil_mode)))
    y = cx.op(core, [x], kernel=kernel, strides=stride, pads=pads,
              dilations=dilation, ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad))
    return cx.reshape(y, cx.out_shape() if not isinstance(cx.meta, (tuple, list)) else cx.out_shape(0))


@translates("aten.max_pool2d_with_indices.default", "aten.max_pool2d.default")
def max_pool2d(cx, x, kernel, stride=(), padding=0, dilation=1, ceil_mode=False):
    if cx.op_type.endswith("with_indices.default"):
        if cx.output_used(1):
            raise cx.unsupported("the indices output")
        return (_pool(cx, "max_pool2d", x, kernel, stride, padding, dilation, ceil_mode), None)
    return _pool(cx, "max_pool2d", x, kernel, stride, padding, dilation, ceil_mode)


@translates("aten.avg_pool2d.default")
def avg_pool2d(cx, x, kernel, stride=(), padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    if divisor_override is not None:
        raise cx.unsupported("divisor_override")
    return _pool(cx, "avg_pool2d", x, kernel, stride, padding, 1, ceil_mode, count_include_pad)


@translates("aten._adaptive_avg_pool2d.default", "aten.adaptive_avg_pool2d.default")
def adaptive_avg_pool2d(cx, x, output_size):
    oh, ow = _pair(output_size)
    h, w = x.shape[-2], x.shape[-1]
    if (oh, ow) == (1, 1):
        return cx.op("reduce_mean", [x], axes=(x.type.rank - 2, x.type.rank - 1), keepdims=True)
    if not (isinstance(h, int) and isinstance(w, int)) or h % oh or w % ow:
        raise cx.unsupported("adaptive pooling into windows of different sizes")
    k = (h // oh, w // ow)
    return _pool(cx, "avg_pool2d", x, k, k, 0, 1, False)


@translates("aten._native_batch_norm_legit_no_training.default")
def batch_norm(cx, x, w, b, mean, var, momentum, eps):
    c = x.shape[1]
    w = w if w is not None else cx.cast(cx.const(np.ones((c,), np.float32)), x.dtype)
    b = b if b is not None else cx.cast(cx.const(np.zeros((c,), np.float32)), x.dtype)
    y = cx.op("batch_norm", [x, w, b, mean, var], epsilon=float(eps))
    return (y, None, None)


@translates("aten.native_layer_norm.default")
def layer_norm(cx, x, normalized_shape, w, b, eps):
    if cx.output_used(1) or cx.output_used(2):
        raise cx.unsupported("the mean and rstd outputs")
    inner = tuple(x.shape[x.type.rank - len(normalized_shape):])
    w = w if w is not None else cx.cast(cx.const(np.ones(inner, np.float32)), x.dtype)
    b = b if b is not None else cx.cast(cx.const(np.zeros(inner, np.float32)), x.dtype)
    y = cx.op("layer_norm", [x, w, b], axis=x.type.rank - len(normalized_shape), epsilon=float(eps))
    return (y, None, None)


@translates("aten.native_group_norm.default")
def group_norm(cx, x, w, b, n, c, hw, groups, eps):
    if cx.output_used(1) or cx.output_used(2):
        raise cx.unsupported("the mean and rstd outputs")
    shape = tuple(x.shape)
    g = cx.reshape(x, (shape[0], groups) + (c // groups,) + shape[2:])
    axes = tuple(range(2, g.type.rank))
    mean = cx.op("reduce_mean", [g], axes=axes, keepdims=True)
    d = cx.op("sub", [g, mean])
    var = cx.op("reduce_mean", [cx.op("mul", [d, d])], axes=axes, keepdims=True)
    y = cx.op("div", [d, cx.op("sqrt", [cx.op("add", [var, cx.scalar(eps, x.dtype)])])])
    y = cx.reshape(y, shape)
    bshape = (1, c) + (1,) * (len(shape) - 2)
    if w is not None:
        y = cx.op("mul", [y, cx.reshape(w, bshape)])
    if b is not None:
        y = cx.op("add", [y, cx.reshape(b, bshape)])
    return (y, None, None)


@translates("aten._softmax.default", "aten.softmax.int", "aten._log_softmax.default", "aten.log_softmax.int")
def softmax(cx, x, dim, half_to_float=False):
    x = cx.cast(x, cx.out_dtype())
    return cx.op("softmax", [x], axis=dim % x.type.rank, log="log_softmax" in cx.op_type)


@translates("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def mm(cx, a, b):
    if a.type.rank < 2 or b.type.rank < 2:
        a2 = cx.reshape(a, (1,) + tuple(a.shape)) if a.type.rank == 1 else a
        b2 = cx.reshape(b, tuple(b.shape) + (1,)) if b.type.rank == 1 else b
        return cx.reshape(cx.op("matmul", [a2, b2]), cx.out_shape())
    return cx.op("matmul", [a, b])


@translates("aten.addmm.default", "aten.baddbmm.default")
def addmm(cx, bias, a, b, beta=1, alpha=1):
    y = cx.op("matmul", [a, b])
    if alpha != 1:
        y = cx.op("mul", [y, cx.scalar(alpha, y.dtype)])
    if beta == 0:
        return y
    if beta != 1:
        bias = cx.op("mul", [bias, cx.scalar(beta, bias.dtype)])
    return cx.op("add", [y, bias])


@translates("aten.linear.default")
def linear(cx, x, w, b=None):
    y = cx.op("matmul", [x, cx.op("transpose", [w], perm=(1, 0))])
    return y if b is None else cx.op("add", [y, b])


@translates("aten.scaled_dot_product_attention.default")
def scaled_dot_product_attention(cx, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False):
    """softmax(q @ k^T * scale + mask) @ v, with grouped-query attention's key/value heads
    repeated to the query heads; the graph passes fuse it into one attention kernel."""
    import math

    if dropout_p:
        raise cx.unsupported("dropout in attention")
    dt = q.dtype
    hq, hk = q.shape[-3] if q.type.rank >= 3 else 1, k.shape[-3] if k.type.rank >= 3 else 1
    if hq != hk:
        if not (isinstance(hq, int) and isinstance(hk, int) and hq % hk == 0):
            raise cx.fail(f"{hq} query heads do not divide into groups of the {hk} key/value heads")
        k, v = (_repeat_heads(cx, t, hq // hk) for t in (k, v))
    e = q.shape[-1]
    if scale is None:
        if not isinstance(e, int):
            raise cx.unsupported("a symbolic head size")
        scale = 1 / math.sqrt(e)
    kt = cx.op("transpose", [k], perm=tuple(range(k.type.rank - 2)) + (k.type.rank - 1, k.type.rank - 2))
    s = cx.op("mul", [cx.op("matmul", [q, kt]), cx.scalar(scale, dt)])
    lq, lk = q.shape[-2], k.shape[-2]
    if is_causal:
        keep = tri_mask(cx, lq, lk)
        s = cx.op("where", [keep, s, cx.scalar(-np.inf, dt)])
    if attn_mask is not None:
        if attn_mask.dtype == "bool":
            s = cx.op("where", [attn_mask, s, cx.scalar(-np.inf, dt)])
        else:
            s = cx.op("add", [s, cx.cast(attn_mask, dt)])
    p = cx.op("softmax", [s], axis=s.type.rank - 1)
    return cx.op("matmul", [p, v])


def tri_mask(cx, rows, cols):
    """The causal mask [rows, cols]: key j is seen by query i when j <= i."""
    r = cx.op("arange", [], length=rows, dtype="int64") if not isinstance(rows, int) else cx.const(np.arange(rows))
    c = cx.op("arange", [], length=cols, dtype="int64") if not isinstance(cols, int) else cx.const(np.arange(cols))
    return cx.op("less_equal", [cx.reshape(c, (1, cols)), cx.reshape(r, (rows, 1))])


def _repeat_heads(cx, t, n):
    shape = tuple(t.shape)
    lead, h, rest = shape[:-3], shape[-3], shape[-2:]
    y = cx.reshape(t, lead + (h, 1) + rest)
    y = cx.broadcast(y, lead + (h, n) + rest)
    return cx.reshape(y, lead + (h * n,) + rest)

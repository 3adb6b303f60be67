"""Neural-network ops: convolution, matrix multiply, pooling, softmax, normalizations.

Convolution and matmul are OUT_ELEMWISE_FUSABLE: the fusion pass lets the bias, activation and
residual additions after them run in their write-back loop.  Their schedules live in
``ember.schedules`` (by target kind); here is what they compute.
"""

from __future__ import annotations

import numpy as np

from .. import te
from ..graph.types import TensorType, broadcast_shapes, is_float
from ..symbolic import SymbolicError
from .base import Op, Pattern, register, same_dtype
from .reduce import normalize_axes, row_reduce, widened


def window_misfits(*dims) -> bool:
    """Whether a window's output dims show at compile time that it does not fit its input (a
    dim known to be <= 0); symbolic dims are decided when the sizes are known."""
    return any(isinstance(d, int) and d <= 0 for d in dims)


def conv_out_dim(size, k, stride, pad_begin, pad_end, dilation, ceil_mode=False):
    eff = (k - 1) * dilation + 1
    span = size + pad_begin + pad_end - eff
    if ceil_mode:
        out = -(-span // stride) + 1
        # the last window must start inside the input or the left padding; it always does when
        # pad_end + stride <= the window (the usual case), which a symbolic size needs
        if isinstance(size, int):
            if (out - 1) * stride >= size + pad_begin:
                out -= 1
        elif pad_end + stride > eff:
            raise SymbolicError(f"in ceil mode, whether the last window of a symbolic size {size} starts "
                                f"inside the input is only known at run time")
        return out
    return span // stride + 1


def clip_window(sizes, kernel, strides, pads, dil, ceil_mode):
    """The kernel with every window dim that reaches past the padded input cut to the padded
    input.  Such a window only fits in ceil mode, with one output along that dim; the positions
    past the padding are never read nor counted, so the outputs are the same, and the kernel
    loops over what the window covers instead of over (say) a 1280x1280 window on a 7x7 map."""
    nsp = len(sizes)
    out = list(kernel)
    for i, size in enumerate(sizes):
        if not isinstance(size, int):
            continue
        padded = size + pads[i] + pads[nsp + i]
        if dil[i] == 1 and kernel[i] > padded and \
                conv_out_dim(size, kernel[i], strides[i], pads[i], pads[nsp + i], 1, ceil_mode) == \
                conv_out_dim(size, padded, strides[i], pads[i], pads[nsp + i], 1, ceil_mode):
            out[i] = padded
    return out


def check_window(op, a, kernel=None) -> None:
    """Strides, dilations and a pooling kernel of at least 1: smaller ones make conv_out_dim
    count windows that reach outside the input."""
    for key in ("strides", "dilations"):
        if any(int(v) < 1 for v in a[key]):
            raise op.fail(f"{key} {list(a[key])} must all be at least 1")
    if kernel is not None and any(int(k) < 1 for k in kernel):
        raise op.fail(f"kernel {list(kernel)} must be at least 1 in every dimension")


def pad_nchw(x, pads, value=0):
    """Pad the two spatial dims of an NCHW tensor expression with ``value`` (zeros by default);
    pads = (top, left, bottom, right)."""
    if not any(pads):
        return x
    t, l, b, r = pads
    n, c, h, w = x.shape

    def f(nn, cc, y, xx):
        yy, xw = y - t, xx - l
        cond = te.logical_and(te.logical_and(te.ge(yy, te.const(0, "int64")), te.lt(yy, te.const(h, "int64"))),
                              te.logical_and(te.ge(xw, te.const(0, "int64")), te.lt(xw, te.const(w, "int64"))))
        return te.select(cond, x[nn, cc, yy, xw], te.const(value, x.dtype))

    return te.compute((n, c, h + t + b, w + l + r), f, name="pad")


@register
class Conv2d(Op):
    """2-D convolution, NCHW activations, OIHW weights; pads = (top, left, bottom, right)."""

    name = "conv2d"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1}
    num_inputs = 2

    def infer(self, a, x, w):
        same_dtype(self, x, w)
        if x.rank != 4 or w.rank != 4:
            raise self.fail(f"expects 4-D input and weight, got {x} and {w}")
        n, c, h, wd = x.shape
        o, ci, kh, kw = w.shape
        g = a["groups"]
        if isinstance(c, int) and c != ci * g:
            raise self.fail(f"input has {c} channels but weight {w} with groups={g} expects {ci * g}")
        if isinstance(o, int) and o % g:
            raise self.fail(f"{o} output channels are not divisible by groups={g}")
        check_window(self, a)
        (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["strides"], a["dilations"], a["pads"]
        oh = conv_out_dim(h, kh, sh, pt, pb, dh)
        ow = conv_out_dim(wd, kw, sw, pl, pr, dw)
        if window_misfits(oh, ow):
            raise self.fail(f"kernel {kh}x{kw} does not fit input {x} with pads {a['pads']}")
        return TensorType((n, o, oh, ow), x.dtype)

    def reference(self, a, x, w):
        return conv2d_reference(x, w, a["strides"], a["pads"], a["dilations"], a["groups"])

    def compute(self, a, x, w):
        o, ci, kh, kw = w.shape
        return conv2d_nchw_compute(a, x, o, ci, kh, kw, lambda f_, rc, ry, rx: w[f_, rc, ry, rx])


def conv2d_nchw_compute(a, x, o, ci, kh, kw, weight_at):
    """The NCHW convolution of ``x`` with ``o`` filters of ``ci`` x ``kh`` x ``kw`` taps, whatever
    the weight's layout: ``weight_at(out_channel, in_channel, ky, kx)`` reads one tap."""
    (sh, sw), (dh, dw), g = a["strides"], a["dilations"], a["groups"]
    xp = pad_nchw(x, a["pads"])
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    opg = o // g
    rc, ry, rx = te.reduce_axis(ci, "rc"), te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx")

    def f(nn, f_, y, xx):
        cin = rc if g == 1 else (f_ // opg) * ci + rc
        return te.sum(xp[nn, cin, y * sh + ry * dh, xx * sw + rx * dw] * weight_at(f_, rc, ry, rx), [rc, ry, rx])

    return te.compute((x.shape[0], o, oh, ow), f, name="conv2d")


def conv2d_reference(x, w, strides, pads, dilations, groups):
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = strides, dilations, pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    acc_t = np.float64 if x.dtype == np.float64 else np.float32 if is_float(str(x.dtype)) else np.int64
    out = np.zeros((n, o, oh, ow), dtype=acc_t)
    opg = o // groups
    for g in range(groups):
        xs = xp[:, g * ci:(g + 1) * ci].astype(acc_t)
        ws = w[g * opg:(g + 1) * opg].astype(acc_t)
        for ky in range(kh):
            for kx in range(kw):
                patch = xs[:, :, ky * dh: ky * dh + (oh - 1) * sh + 1: sh, kx * dw: kx * dw + (ow - 1) * sw + 1: sw]
                out[:, g * opg:(g + 1) * opg] += np.einsum("nchw,oc->nohw", patch, ws[:, :, ky, kx])
    return out.astype(x.dtype)


@register
class MatMul(Op):
    """Batched matrix product with numpy broadcasting of the batch dims; both operands rank >= 2."""

    name = "matmul"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    num_inputs = 2

    def infer(self, a, x, y):
        dt = same_dtype(self, x, y)
        if x.rank < 2 or y.rank < 2:
            raise self.fail(f"operands must have rank >= 2, got {x} and {y}")
        k1, k2 = x.shape[-1], y.shape[-2]
        if k1 != k2:
            raise self.fail(f"inner dimensions differ: {x} @ {y}")
        batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], what="matmul batch dims")
        return TensorType(batch + (x.shape[-2], y.shape[-1]), dt)

    def reference(self, a, x, y):
        if is_float(str(x.dtype)) and x.dtype != np.float64:
            return np.matmul(x.astype(np.float32), y.astype(np.float32)).astype(x.dtype)
        return np.matmul(x, y).astype(x.dtype)

    def compute(self, a, x, y):
        from .elementwise import broadcast_index

        batch = broadcast_shapes(x.shape[:-2], y.shape[:-2])
        shape = batch + (x.shape[-2], y.shape[-1])
        k = te.reduce_axis(x.shape[-1], "k")
        nb = len(batch)

        def f(*i):
            b, m, n = i[:nb], i[nb], i[nb + 1]
            xb = broadcast_index(x.shape[:-2], batch, b)
            yb = broadcast_index(y.shape[:-2], batch, b)
            return te.sum(x[xb + (m, k)] * y[yb + (k, n)], [k])

        return te.compute(shape, f, name="matmul")


class Pool2d(Op):
    """Pooling over the two spatial dims of NCHW, or of NCHW[x]c (``layout="NCHWc"``, 5-D)."""

    pattern = Pattern.OPAQUE
    attrs = {"kernel": (1, 1), "strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1),
             "ceil_mode": False, "count_include_pad": False, "layout": "NCHW"}

    def infer(self, a, x):
        rank = 5 if a["layout"] == "NCHWc" else 4
        if x.rank != rank:
            raise self.fail(f"expects a {rank}-D {a['layout']} input, got {x}")
        n, c, h, w = x.shape[:4]
        check_window(self, a, a["kernel"])
        (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = a["kernel"], a["strides"], a["pads"], a["dilations"]
        oh = conv_out_dim(h, kh, sh, pt, pb, dh, a["ceil_mode"])
        ow = conv_out_dim(w, kw, sw, pl, pr, dw, a["ceil_mode"])
        if window_misfits(oh, ow):
            raise self.fail(f"window {kh}x{kw} does not fit input {x}")
        return TensorType((n, c, oh, ow) + tuple(x.shape[4:]), x.dtype)

    def run_reference(self, a, arrays):
        if a["layout"] == "NCHWc":
            (x,) = arrays
            out = self.reference(dict(a, layout="NCHW"), from_blocked_array(x))
            return [to_blocked_array(out, x.shape[-1])]
        return super().run_reference(a, arrays)

    def _windows(self, a, x):
        """Yield (ky, kx, valid mask, values) over the window offsets (numpy reference)."""
        n, c, h, w = x.shape
        (kh, kw), (sh, sw), (pt, pl, pb, pr), (dh, dw) = a["kernel"], a["strides"], a["pads"], a["dilations"]
        oh = conv_out_dim(h, kh, sh, pt, pb, dh, a["ceil_mode"])
        ow = conv_out_dim(w, kw, sw, pl, pr, dw, a["ceil_mode"])
        ys = np.arange(oh) * sh - pt
        xs = np.arange(ow) * sw - pl
        for ky in range(kh):
            for kx in range(kw):
                yy, xx = ys + ky * dh, xs + kx * dw
                vy = (yy >= 0) & (yy < h)
                vx = (xx >= 0) & (xx < w)
                inpad_y = (yy < h + pb)
                inpad_x = (xx < w + pr)
                vals = x[:, :, np.clip(yy, 0, h - 1)][:, :, :, np.clip(xx, 0, w - 1)]
                yield vy[:, None] & vx[None, :], inpad_y[:, None] & inpad_x[None, :], vals

    def _window_expr(self, a, x, nn, cc, y, xx, ry, rx, rest=()):
        (sh, sw), (pt, pl, _, _), (dh, dw) = a["strides"], a["pads"], a["dilations"]
        h, w = x.shape[2], x.shape[3]
        iy = y * sh + ry * dh - pt if pt else y * sh + ry * dh
        ix = xx * sw + rx * dw - pl if pl else xx * sw + rx * dw
        valid = te.logical_and(te.logical_and(te.ge(iy, te.const(0, "int64")), te.lt(iy, te.const(h, "int64"))),
                               te.logical_and(te.ge(ix, te.const(0, "int64")), te.lt(ix, te.const(w, "int64"))))
        iyc = te.minimum(te.maximum(iy, te.const(0, "int64")), te.const(h - 1, "int64"))
        ixc = te.minimum(te.maximum(ix, te.const(0, "int64")), te.const(w - 1, "int64"))
        return valid, x[(nn, cc, iyc, ixc) + tuple(rest)], iy, ix


@register
class MaxPool2d(Pool2d):
    name = "max_pool2d"

    def reference(self, a, x):
        out = None
        lowest = np.array(-np.inf if is_float(str(x.dtype)) else np.iinfo(x.dtype).min).astype(x.dtype)
        for valid, _, vals in self._windows(a, x):
            v = np.where(valid, vals, lowest)
            out = v if out is None else np.maximum(out, v)
        return out.astype(x.dtype)

    def compute(self, a, x):
        t = self.infer(a, TensorType(x.shape, x.dtype))
        (kh, kw) = a["kernel"]
        ry, rx = te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx")
        lowest = te.min_value(x.dtype)

        def f(nn, cc, y, xx, *rest):
            valid, v, _, _ = self._window_expr(a, x, nn, cc, y, xx, ry, rx, rest)
            return te.reduce("max", te.select(valid, v, lowest), [ry, rx])

        return te.compute(t.shape, f, name="max_pool")


@register
class AvgPool2d(Pool2d):
    name = "avg_pool2d"

    def reference(self, a, x):
        total = count = None
        for valid, inpad, vals in self._windows(a, x):
            use = (valid | inpad) if a["count_include_pad"] else valid
            v = np.where(valid, vals, 0).astype(np.float64)
            total = v if total is None else total + v
            c = use.astype(np.float64)
            count = c if count is None else count + c
        return (total / np.maximum(count, 1)).astype(x.dtype)

    def compute(self, a, x):
        t = self.infer(a, TensorType(x.shape, x.dtype))
        (kh, kw), (_, _, pb, pr) = a["kernel"], a["pads"]
        h, w = x.shape[2], x.shape[3]
        ry, rx = te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx")
        zero, one = te.const(0, x.dtype), te.const(1, x.dtype)

        def total(nn, cc, y, xx, *rest):
            valid, v, _, _ = self._window_expr(a, x, nn, cc, y, xx, ry, rx, rest)
            return te.sum(te.select(valid, v, zero), [ry, rx])

        s = te.compute(t.shape, total, name="window_sum")
        cy, cx = te.reduce_axis(kh, "cy"), te.reduce_axis(kw, "cx")

        def count(nn, cc, y, xx, *rest):
            valid, _, iy, ix = self._window_expr(a, x, nn, cc, y, xx, cy, cx, rest)
            if a["count_include_pad"]:
                valid = te.logical_or(valid, te.logical_and(te.lt(iy, te.const(h + pb, "int64")),
                                                            te.lt(ix, te.const(w + pr, "int64"))))
            return te.sum(te.select(valid, one, zero), [cy, cx])

        c = te.compute(t.shape, count, name="window_count")
        return te.compute(t.shape, lambda *i: s[i] / te.maximum(c[i], one), name="avg_pool")


@register
class Softmax(Op):
    """softmax along one axis, computed as exp(x - max) / sum."""

    name = "softmax"
    pattern = Pattern.REDUCTION
    attrs = {"axis": -1, "log": False}

    def infer(self, a, x):
        if not is_float(x.dtype):
            raise self.fail(f"expects a floating-point operand, got {x}")
        normalize_axes((a["axis"],), x.rank, self)
        return x

    def reference(self, a, x):
        ax = a["axis"] % x.ndim
        xw = widened(x)
        m = np.max(xw, axis=ax, keepdims=True)
        if xw.dtype != x.dtype and not a["log"]:
            # bfloat16: x - max, the exponentials and their sum are bfloat16 values, as in float16
            def rounded(v):
                return v.astype(x.dtype).astype(xw.dtype)

            e = rounded(np.exp(rounded(xw - m)))
            s = rounded(np.sum(e, axis=ax, keepdims=True))
            return (e / s).astype(x.dtype)
        e = np.exp(xw - m)
        s = np.sum(e, axis=ax, keepdims=True)
        out = (xw - m - np.log(s)) if a["log"] else e / s
        return out.astype(x.dtype)

    def compute(self, a, x):
        ax = a["axis"] % len(x.shape)

        def along(i, r):
            return tuple(r if k == ax else ii for k, ii in enumerate(i))

        zero = te.const(0, "int64")
        one = te.const(1.0, x.dtype)
        m = row_reduce("max", x, ax, lambda idx: x[idx], "row_max")
        if a["log"]:
            s = row_reduce("sum", x, ax, lambda idx: te.call("exp", x[idx] - m[along(idx, zero)]), "row_sum")
            return te.compute(x.shape, lambda *i: x[i] - m[along(i, zero)] - te.call("log", s[along(i, zero)]),
                              name="log_softmax")
        if x.dtype in ("float16", "bfloat16"):
            # half precision: x - max, its exponential and the row's sum (accumulated in float32)
            # are each rounded to the dtype and the output is their quotient, as the reference
            # and ONNX's Softmax function (Sub, Exp, ReduceSum, Div on the input's type) give
            def rounded(v):
                return te.cast(x.dtype, te.cast("float32", v))

            def ex(i):
                return rounded(te.call("exp", rounded(x[i] - m[along(i, zero)])))

            if ax == len(x.shape) - 1:
                e = te.compute(x.shape, lambda *i: ex(i), name="softmax_exp")
                s = row_reduce("sum", e, ax, lambda idx: e[idx], "row_sum")
                return te.compute(x.shape, lambda *i: e[i] / rounded(s[along(i, zero)]), name="softmax")
            s = row_reduce("sum", x, ax, ex, "row_sum")
            return te.compute(x.shape, lambda *i: ex(i) / rounded(s[along(i, zero)]), name="softmax")
        if ax == len(x.shape) - 1:
            # exp(x - max) computed once per element into a row buffer (the schedule attaches it
            # at the row loop) that both the sum and the output read
            e = te.compute(x.shape, lambda *i: te.call("exp", x[i] - m[along(i, zero)]), name="softmax_exp")
            s = row_reduce("sum", e, ax, lambda idx: e[idx], "row_sum")
            return te.compute(x.shape, lambda *i: e[i] * (one / s[along(i, zero)]), name="softmax")
        s = row_reduce("sum", x, ax, lambda idx: te.call("exp", x[idx] - m[along(idx, zero)]), "row_sum")
        # one reciprocal per row (hoisted out of the row's loop), a multiply per element
        return te.compute(x.shape, lambda *i: te.call("exp", x[i] - m[along(i, zero)]) * (one / s[along(i, zero)]),
                          name="softmax")


@register
class Attention(Op):
    """Scaled dot-product attention in one kernel: ``softmax(logits) @ v`` with
    ``logits = scale * (q @ kt)``, then plus ``bias`` (``mask="add"``), or replaced by ``fill``
    where the boolean ``mask`` input equals ``fill_when`` (``mask="fill"``: a causal mask).

    ``q`` is [..., Lq, D], ``kt`` the keys transposed, [..., D, Lk], ``v`` [..., Lk, Dv]; the
    batch dims (and the bias or mask, against [..., Lq, Lk]) broadcast as in ``matmul``.  The
    kernel computes one query row at a time: its Lk logits, their max, exp(logit - max) and sum
    stay in a row buffer in L1 and are multiplied into ``v`` at once, so the [Lq, Lk] score
    matrix never goes to memory (``passes.fuse_attention`` forms this op)."""

    name = "attention"
    pattern = Pattern.OPAQUE
    attrs = {"scale": 1.0, "mask": "none", "fill": 0.0, "fill_when": True, "keys": 0}
    num_inputs = (3, 4)

    @staticmethod
    def keys(a, kt) -> int:
        """Lk: the keys in use; the columns of ``kt`` past them are padding (whole vectors of
        keys for the logits' register tiles)."""
        return a["keys"] or kt.shape[-1]

    def infer(self, a, q, kt, v, m=None):
        dt = same_dtype(self, q, kt, v)
        if not is_float(dt):
            raise self.fail(f"expects floating-point operands, got {q}")
        if min(q.rank, kt.rank, v.rank) < 2:
            raise self.fail(f"operands must have rank >= 2, got {q}, {kt} and {v}")
        lk = self.keys(a, kt)
        if q.shape[-1] != kt.shape[-2] or lk != v.shape[-2] or (a["keys"] and not 0 < lk <= kt.shape[-1]):
            raise self.fail(f"shapes do not chain: q {q}, keys transposed {kt} (keys={a['keys']}), values {v}")
        batch = broadcast_shapes(q.shape[:-2], kt.shape[:-2], v.shape[:-2], what="attention batch dims")
        logits = batch + (q.shape[-2], lk)
        if a["mask"] not in ("none", "add", "fill"):
            raise self.fail(f"mask must be 'none', 'add' or 'fill', got {a['mask']!r}")
        if (m is None) != (a["mask"] == "none"):
            raise self.fail(f"mask={a['mask']!r} takes {'no' if a['mask'] == 'none' else 'a'} fourth input")
        if m is not None:
            want = dt if a["mask"] == "add" else "bool"
            if m.dtype != want:
                raise self.fail(f"the {'bias' if want == dt else 'mask'} must be {want}, got {m}")
            if broadcast_shapes(m.shape, logits, what="attention mask") != logits:
                raise self.fail(f"the mask {m} does not broadcast to the logits {logits}")
        return TensorType(batch + (q.shape[-2], v.shape[-1]), dt)

    def _logits(self, a, s, m):
        s = s * a["scale"] if a["scale"] != 1.0 else s
        if a["mask"] == "add":
            return s + m
        if a["mask"] == "fill":
            return np.where(m == a["fill_when"], np.asarray(a["fill"], s.dtype), s)
        return s

    def reference(self, a, q, kt, v, m=None):
        w = np.float64 if q.dtype == np.float64 else np.float32
        kt = kt[..., :self.keys(a, kt)]
        s = self._logits(a, np.matmul(q.astype(w), kt.astype(w)), None if m is None else m.astype(m.dtype if m.dtype == bool else w))
        s = s - np.max(s, axis=-1, keepdims=True)
        e = np.exp(s)
        return (np.matmul(e / np.sum(e, axis=-1, keepdims=True), v.astype(w))).astype(q.dtype)

    def compute(self, a, q, kt, v, m=None):
        from .elementwise import broadcast_index

        dt = q.dtype
        batch = broadcast_shapes(tuple(q.shape[:-2]), tuple(kt.shape[:-2]), tuple(v.shape[:-2]))
        nb = len(batch)
        lshape = batch + (q.shape[-2], self.keys(a, kt))
        d = te.reduce_axis(q.shape[-1], "d")

        def scores(*i):
            b, r, c = i[:nb], i[nb], i[nb + 1]
            return te.sum(q[broadcast_index(tuple(q.shape[:-2]), batch, b) + (r, d)] *
                          kt[broadcast_index(tuple(kt.shape[:-2]), batch, b) + (d, c)], [d])

        # the logits of every column of kt, padding included (it is never read)
        s = te.compute(batch + (q.shape[-2], kt.shape[-1]), scores, name="attn_scores")

        def logits(idx):
            x = s[idx] * te.const(a["scale"], dt) if a["scale"] != 1.0 else s[idx]
            if a["mask"] == "add":
                return x + m[broadcast_index(tuple(m.shape), lshape, idx)]
            if a["mask"] == "fill":
                fill = te.const(a["fill"], dt)
                c = m[broadcast_index(tuple(m.shape), lshape, idx)]
                return te.select(c, fill, x) if a["fill_when"] else te.select(c, x, fill)
            return x

        zero = te.const(0, "int64")
        mx = row_reduce("max", lshape, nb + 1, logits, "attn_max")
        e = te.compute(lshape, lambda *i: te.call("exp", logits(i) - mx[i[:-1] + (zero,)]), name="attn_exp")
        total = row_reduce("sum", e, nb + 1, lambda idx: e[idx], "attn_sum")
        j = te.reduce_axis(lshape[-1], "j")
        oshape = batch + (q.shape[-2], v.shape[-1])
        o = te.compute(oshape, lambda *i: te.sum(e[i[:-1] + (j,)] *
                                                 v[broadcast_index(tuple(v.shape[:-2]), batch, i[:nb]) + (j, i[-1])], [j]),
                       name="attn_weighted")
        one = te.const(1.0, dt)
        return te.compute(oshape, lambda *i: o[i] * (one / total[i[:-1] + (zero,)]), name="attention")


@register
class LayerNorm(Op):
    """(x - mean) / sqrt(var + eps) * scale + bias over the trailing axes from ``axis`` on."""

    name = "layer_norm"
    pattern = Pattern.REDUCTION
    attrs = {"axis": -1, "epsilon": 1e-5}
    num_inputs = 3

    def infer(self, a, x, scale, bias):
        same_dtype(self, x, scale, bias)
        if not is_float(x.dtype):
            raise self.fail(f"expects a floating-point operand, got {x}")
        normalize_axes((a["axis"],), x.rank, self)
        broadcast_shapes(x.shape, scale.shape, bias.shape, what="layer_norm operands")
        return x

    def reference(self, a, x, scale, bias):
        ax = a["axis"] % x.ndim
        axes = tuple(range(ax, x.ndim))
        xf = x.astype(np.float64)
        mean = xf.mean(axis=axes, keepdims=True)
        var = ((xf - mean) ** 2).mean(axis=axes, keepdims=True)
        return ((xf - mean) / np.sqrt(var + a["epsilon"]) * scale + bias).astype(x.dtype)

    def compute(self, a, x, scale, bias):
        from .elementwise import broadcast_index

        rank = len(x.shape)
        ax = a["axis"] % rank
        rshape = tuple(1 if k >= ax else d for k, d in enumerate(x.shape))
        n = 1
        for d in x.shape[ax:]:
            n = n * d
        inv_n = te.const(1.0 / n, x.dtype) if isinstance(n, int) else te.const(1, x.dtype) / te.cast(x.dtype, n)

        def red(name, body):
            if ax == rank - 1:        # one trailing axis: vectorizable per-lane partial sums
                return row_reduce("sum", x, ax, body, name)
            rs = [te.reduce_axis(d, f"r{k}") for k, d in enumerate(x.shape[ax:])]
            return te.compute(rshape, lambda *i: te.sum(body(i[:ax] + tuple(rs)), rs), name=name)

        mean = red("mean", lambda j: x[j] * inv_n)
        zeros = (te.const(0, "int64"),) * (rank - ax)
        var = red("var", lambda j: (x[j] - mean[j[:ax] + zeros]) * (x[j] - mean[j[:ax] + zeros]) * inv_n)

        def f(*i):
            red_i = i[:ax] + zeros
            inv_std = te.const(1.0, x.dtype) / te.call("sqrt", var[red_i] + te.const(a["epsilon"], x.dtype))
            norm = (x[i] - mean[red_i]) * inv_std
            return norm * scale[broadcast_index(scale.shape, x.shape, i)] + bias[broadcast_index(bias.shape, x.shape, i)]

        return te.compute(x.shape, f, name="layer_norm")


@register
class BatchNorm(Op):
    """Inference batch normalization over axis 1: (x - mean) / sqrt(var + eps) * scale + bias."""

    name = "batch_norm"
    pattern = Pattern.BROADCAST
    attrs = {"epsilon": 1e-5}
    num_inputs = 5

    def infer(self, a, x, scale, bias, mean, var):
        same_dtype(self, x, scale, bias, mean, var)
        if x.rank < 2:
            raise self.fail(f"expects rank >= 2, got {x}")
        for t in (scale, bias, mean, var):
            if t.shape != (x.shape[1],):
                raise self.fail(f"parameters must have shape [{x.shape[1]}], got {t}")
        return x

    def reference(self, a, x, scale, bias, mean, var):
        shp = (1, -1) + (1,) * (x.ndim - 2)
        inv = (scale / np.sqrt(var.astype(np.float64) + a["epsilon"])).reshape(shp)
        return ((x - mean.reshape(shp)) * inv + bias.reshape(shp)).astype(x.dtype)

    def compute(self, a, x, scale, bias, mean, var):
        eps = te.const(a["epsilon"], x.dtype)

        def f(*i):
            c = i[1]
            return (x[i] - mean[c]) / te.call("sqrt", var[c] + eps) * scale[c] + bias[c]

        return te.compute(x.shape, f, name="batch_norm")


@register
class Conv2dPacked(Op):
    """conv2d with its weight pre-packed at compile time as [O/ob, C/groups, KH, KW, ob], so the
    ``ob`` output channels of one register tile are contiguous (one vector load per tap)."""

    name = "conv2d_packed"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1}
    num_inputs = 2

    @staticmethod
    def pack(w: np.ndarray, ob: int) -> np.ndarray:
        o, ci, kh, kw = w.shape
        return np.ascontiguousarray(w.reshape(o // ob, ob, ci, kh, kw).transpose(0, 2, 3, 4, 1))

    @staticmethod
    def unpack(wp: np.ndarray) -> np.ndarray:
        oo, ci, kh, kw, ob = wp.shape
        return np.ascontiguousarray(wp.transpose(0, 4, 1, 2, 3).reshape(oo * ob, ci, kh, kw))

    def infer(self, a, x, wp):
        if wp.rank != 5:
            raise self.fail(f"expects a packed 5-D weight, got {wp}")
        oo, ci, kh, kw, ob = wp.shape
        return Conv2d().infer(a, x, TensorType((oo * ob, ci, kh, kw), wp.dtype))

    def reference(self, a, x, wp):
        return conv2d_reference(x, self.unpack(wp), a["strides"], a["pads"], a["dilations"], a["groups"])

    def compute(self, a, x, wp):
        oo, ci, kh, kw, ob = wp.shape
        return conv2d_nchw_compute(a, x, oo * ob, ci, kh, kw,
                                   lambda f_, rc, ry, rx: wp[f_ // ob, rc, ry, rx, f_ % ob])


@register
class MatMulPacked(Op):
    """x @ w with the constant weight pre-packed as column panels [..., ceil(N/nb), K, nb]; the
    last panel is zero-padded when nb does not divide N, and ``n`` (0: nt * nb) is the true N.
    Leading weight dims are batch dims, broadcast against x's as in ``matmul``."""

    name = "matmul_packed"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"n": 0}
    num_inputs = 2

    @staticmethod
    def pack(w: np.ndarray, nb: int) -> np.ndarray:
        *batch, k, n = w.shape
        nt = -(-n // nb)
        if n == nt * nb:
            padded = w              # no padding: panels straight from the weight (one copy, not three)
        else:
            padded = np.zeros((*batch, k, nt * nb), w.dtype)
            padded[..., :n] = w
        nd = len(batch)
        perm = tuple(range(nd)) + (nd + 1, nd, nd + 2)
        return np.ascontiguousarray(padded.reshape(*batch, k, nt, nb).transpose(perm))

    @staticmethod
    def unpack(wp: np.ndarray, n: int = 0) -> np.ndarray:
        *batch, nt, k, nb = wp.shape
        nd = len(batch)
        perm = tuple(range(nd)) + (nd + 1, nd, nd + 2)
        return np.ascontiguousarray(wp.transpose(perm).reshape(*batch, k, nt * nb)[..., :n or nt * nb])

    def infer(self, a, x, wp):
        if wp.rank < 3:
            raise self.fail(f"expects a packed weight of rank >= 3, got {wp}")
        *batch, nt, k, nb = wp.shape
        n = a["n"] or nt * nb
        if not (nt - 1) * nb < n <= nt * nb:
            raise self.fail(f"n={n} does not fit the panels of {wp}")
        return MatMul().infer(a, x, TensorType(tuple(batch) + (k, n), wp.dtype))

    def reference(self, a, x, wp):
        return MatMul().reference(a, x, self.unpack(wp, a["n"]))

    def compute(self, a, x, wp):
        from .elementwise import broadcast_index

        *wbatch, nt, kk, nb = wp.shape
        batch = broadcast_shapes(tuple(x.shape[:-2]), tuple(wbatch))
        k = te.reduce_axis(kk, "k")
        nbd = len(batch)

        def f(*i):
            b, m, n = i[:nbd], i[nbd], i[nbd + 1]
            xb = broadcast_index(tuple(x.shape[:-2]), batch, b)
            wb = broadcast_index(tuple(wbatch), batch, b)
            return te.sum(x[xb + (m, k)] * wp[wb + (n // nb, k, n % nb)], [k])

        return te.compute(batch + (x.shape[-2], a["n"] or nt * nb), f, name="matmul")


# ---- the blocked layout ------------------------------------------------------------------------
# NCHW[x]c: activations as [N, C/cb, H, W, cb], so the cb channels of one pixel are contiguous
# and one vector holds them; weights as [O/ob, C/cb, KH, KW, cb, ob].  A convolution then loads
# whole vectors of output channels and stores contiguous tiles, whatever the image width.

def to_blocked_array(x: np.ndarray, cb: int) -> np.ndarray:
    n, c, h, w = x.shape
    return np.ascontiguousarray(x.reshape(n, c // cb, cb, h, w).transpose(0, 1, 3, 4, 2))


def from_blocked_array(x: np.ndarray) -> np.ndarray:
    n, cblk, h, w, cb = x.shape
    return np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3).reshape(n, cblk * cb, h, w))


@register
class Conv2dNCHWc(Op):
    """2-D convolution in the blocked layout: x [N, C/cb, H, W, cb], w [O/ob, C/cb, KH, KW, cb, ob]
    -> [N, O/ob, OH, OW, ob].  Depthwise (groups = C = O, cb = ob) takes w [C/cb, 1, KH, KW, 1, cb].
    pads = (top, left, bottom, right)."""

    name = "conv2d_nchwc"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1}
    num_inputs = 2

    @staticmethod
    def pack(w: np.ndarray, cb: int, ob: int, depthwise: bool = False) -> np.ndarray:
        o, ci, kh, kw = w.shape
        if depthwise:
            return np.ascontiguousarray(w.reshape(o // ob, ob, 1, kh, kw).transpose(0, 2, 3, 4, 1)
                                        .reshape(o // ob, 1, kh, kw, 1, ob))
        return np.ascontiguousarray(w.reshape(o // ob, ob, ci // cb, cb, kh, kw).transpose(0, 2, 4, 5, 3, 1))

    @staticmethod
    def unpack(wp: np.ndarray, depthwise: bool) -> np.ndarray:
        oo, cblk, kh, kw, cb, ob = wp.shape
        if depthwise:
            return np.ascontiguousarray(wp.reshape(oo, kh, kw, ob).transpose(0, 3, 1, 2).reshape(oo * ob, 1, kh, kw))
        return np.ascontiguousarray(wp.transpose(0, 5, 1, 4, 2, 3).reshape(oo * ob, cblk * cb, kh, kw))

    def infer(self, a, x, wp):
        same_dtype(self, x, wp)
        if x.rank != 5 or wp.rank != 6:
            raise self.fail(f"expects a blocked 5-D input and a packed 6-D weight, got {x} and {wp}")
        n, cblk, h, w, cb = x.shape
        oo, wcblk, kh, kw, wcb, ob = wp.shape
        g = a["groups"]
        depthwise = g > 1
        if depthwise and not (g == cblk * cb == oo * ob and cb == ob and wcblk == 1 and wcb == 1):
            raise self.fail(f"only depthwise grouping is supported in the blocked layout, got groups={g} "
                            f"for {x} and {wp}")
        if not depthwise and (wcblk, wcb) != (cblk, cb):
            raise self.fail(f"weight {wp} does not match the input blocks of {x}")
        check_window(self, a)
        (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["strides"], a["dilations"], a["pads"]
        oh = conv_out_dim(h, kh, sh, pt, pb, dh)
        ow = conv_out_dim(w, kw, sw, pl, pr, dw)
        if window_misfits(oh, ow):
            raise self.fail(f"kernel {kh}x{kw} does not fit input {x} with pads {a['pads']}")
        return TensorType((n, oo, oh, ow, ob), x.dtype)

    def reference(self, a, x, wp):
        depthwise = a["groups"] > 1
        w = self.unpack(wp, depthwise)
        out = conv2d_reference(from_blocked_array(x), w, a["strides"], a["pads"], a["dilations"], a["groups"])
        return to_blocked_array(out, wp.shape[-1])

    def compute(self, a, x, wp):
        (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["strides"], a["dilations"], a["pads"]
        n, cblk, h, w, cb = x.shape
        oo, _, kh, kw, _, ob = wp.shape
        if any(a["pads"]):
            xs = x

            def padded(nn, c, y, xx, i):
                yy, xw = y - pt, xx - pl
                ok = te.logical_and(te.logical_and(te.ge(yy, te.const(0, "int64")), te.lt(yy, te.const(h, "int64"))),
                                    te.logical_and(te.ge(xw, te.const(0, "int64")), te.lt(xw, te.const(w, "int64"))))
                return te.select(ok, xs[nn, c, yy, xw, i], te.const(0, x.dtype))

            x = te.compute((n, cblk, h + pt + pb, w + pl + pr, cb), padded, name="pad")
        oh = (x.shape[2] - (kh - 1) * dh - 1) // sh + 1
        ow = (x.shape[3] - (kw - 1) * dw - 1) // sw + 1
        ry, rx = te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx")
        if a["groups"] > 1:
            def f(nn, oc, y, xx, o):
                return te.sum(x[nn, oc, y * sh + ry * dh, xx * sw + rx * dw, o] * wp[oc, 0, ry, rx, 0, o], [ry, rx])
        else:
            rc, ri = te.reduce_axis(cblk, "rc"), te.reduce_axis(cb, "ri")

            def f(nn, oc, y, xx, o):
                return te.sum(x[nn, rc, y * sh + ry * dh, xx * sw + rx * dw, ri] * wp[oc, rc, ry, rx, ri, o],
                              [rc, ry, rx, ri])

        return te.compute((n, oo, oh, ow, ob), f, name="conv2d")

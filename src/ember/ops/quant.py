"""Quantized ops: conversions between float32 and small integers, and the integer convolution and
matrix product that quantized models run.

* ``quantize(x, scale, zero_point)``: saturate(round_half_even(x / scale) + zero_point), in the
  zero point's dtype (8 or 16 bits); NaN gives the zero point.
* ``dequantize(q, scale, zero_point)``: (q - zero_point) * scale, in float32.
* ``requantize(acc, multiplier, zero_point)``: saturate(round_half_even(float(acc) * multiplier)
  + zero_point): an int32 accumulator brought back to 8 bits, as onnxruntime does it (one float
  multiply by scale_x * scale_w / scale_y, rounding to nearest even).
* ``fixed_point_multiply(acc, multiplier, shift)``: TFLite's requantization of an int32
  accumulator (MultiplyByQuantizedMultiplier), exactly, in its fixed-point arithmetic.
* ``conv2d_int`` and ``matmul_int``: int8/uint8 operands (either signedness on each side) with
  int32 accumulators.  The convolution's padding reads ``pad_value`` (an activation's zero point,
  so that padding means "real zero").

Scales, multipliers and zero points broadcast against the data: a per-channel parameter has the
shape that lays its values along the channel axis.

**Pair saturation.**  x86's 8-bit multiply-add (``vpmaddubsw``: uint8 x int8 products, added two
at a time into int16 with saturation), which onnxruntime's uint8 x int8 kernels use on CPUs
without VNNI, does not compute the exact sum when a pair of products leaves the int16 range.
With ``saturate_pairs`` the ops compute that: the products of the reduction, taken in (ky, kx,
c) order for a convolution (k for a matrix product) and padded with one zero product to an even
count, are summed two at a time, each pair clamped to [-32768, 32767], the clamped pairs
accumulated in int32.  Without it the sum is exact (int32, wrapping).  The frontends set it
where onnxruntime's kernel would use that instruction; ``passes.pair_saturation`` clears it when
compiling for a target whose 8-bit multiply-add is exact (VNNI's ``vpdpbusd``, ARM).
"""

from __future__ import annotations

import numpy as np

from .. import te
from ..graph.types import TensorType, broadcast_shapes
from .base import REQUIRED, Op, Pattern, register
from .elementwise import broadcast_index
from .nn import Conv2d, conv_out_dim, pad_nchw, window_misfits

#: operand dtypes of the integer products
EIGHT_BIT = ("int8", "uint8")
#: output dtypes of quantize / requantize, with their ranges
QUANT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767), "uint16": (0, 65535)}
INT16_MIN, INT16_MAX = -32768, 32767


def _check_params(op: Op, x: TensorType, *params: TensorType) -> tuple:
    try:
        return broadcast_shapes(x.shape, *(p.shape for p in params), what="data and parameters")
    except Exception as e:  # noqa: BLE001 - restated with the op's name
        raise op.fail(str(e).split("] ", 1)[-1]) from None


def saturate_round(v: np.ndarray, zero_point: np.ndarray, dtype: str) -> np.ndarray:
    """saturate(round_half_even(v) + zero_point) as ``dtype``; NaN gives the zero point."""
    lo, hi = QUANT_RANGES[dtype]
    with np.errstate(invalid="ignore"):
        r = np.rint(v.astype(np.float64)) + zero_point.astype(np.float64)
        r = np.where(np.isnan(r), zero_point.astype(np.float64), r)
        return np.clip(r, lo, hi).astype(dtype)


def _round_saturate_expr(v, zp_f, dtype: str, nan_check: bool = False):
    """The te form of :func:`saturate_round` on a float32 expression ``v`` (a NaN ``v`` gives
    the zero point when ``nan_check``), all in float32 but the final conversion."""
    lo, hi = QUANT_RANGES[dtype]
    r = te.call("nearbyint", v) + zp_f
    r = te.maximum(te.minimum(r, te.const(float(hi), "float32")), te.const(float(lo), "float32"))
    if nan_check:
        r = te.select(te.ne(v, v), zp_f, r)
    return te.cast(dtype, r)


@register
class Quantize(Op):
    name = "quantize"
    pattern = Pattern.BROADCAST
    num_inputs = 3

    def infer(self, a, x, scale, zp):
        if x.dtype != "float32" or scale.dtype != "float32":
            raise self.fail(f"expects float32 data and scale, got {x} and {scale}")
        if zp.dtype not in QUANT_RANGES:
            raise self.fail(f"quantizes to {', '.join(QUANT_RANGES)}, got a {zp.dtype} zero point")
        return TensorType(_check_params(self, x, scale, zp), zp.dtype)

    def reference(self, a, x, scale, zp):
        with np.errstate(all="ignore"):
            v = (x / scale).astype(np.float32)
        out = saturate_round(v, np.broadcast_to(zp, v.shape), str(zp.dtype))
        return np.where(np.isnan(v), np.broadcast_to(zp, v.shape), out).astype(zp.dtype)

    def compute(self, a, x, scale, zp):
        shape = broadcast_shapes(x.shape, scale.shape, zp.shape)

        def f(*i):
            v = x[broadcast_index(x.shape, shape, i)] / scale[broadcast_index(scale.shape, shape, i)]
            z = te.cast("float32", zp[broadcast_index(zp.shape, shape, i)])
            return _round_saturate_expr(v, z, zp.dtype, nan_check=True)

        return te.compute(shape, f, name="quantize")


@register
class Dequantize(Op):
    name = "dequantize"
    pattern = Pattern.BROADCAST
    num_inputs = 3

    def infer(self, a, q, scale, zp):
        if scale.dtype != "float32" or q.dtype not in ("int8", "uint8", "int16", "uint16", "int32"):
            raise self.fail(f"expects 8-, 16- or 32-bit integers and a float32 scale, got {q} and {scale}")
        if zp.dtype != q.dtype:
            raise self.fail(f"the zero point {zp} must have the data's dtype {q.dtype}")
        return TensorType(_check_params(self, q, scale, zp), "float32")

    def reference(self, a, q, scale, zp):
        return ((q.astype(np.float32) - zp.astype(np.float32)) * scale).astype(np.float32)

    def compute(self, a, q, scale, zp):
        shape = broadcast_shapes(q.shape, scale.shape, zp.shape)

        def f(*i):
            qf = te.cast("float32", q[broadcast_index(q.shape, shape, i)])
            zf = te.cast("float32", zp[broadcast_index(zp.shape, shape, i)])
            # rounded here, as a separate dequantize rounds it: never fused into a consumer's
            # multiply-add (a residual addition of two dequantized values, say)
            return te.call("no_contract", (qf - zf) * scale[broadcast_index(scale.shape, shape, i)])

        return te.compute(shape, f, name="dequantize")


@register
class Requantize(Op):
    name = "requantize"
    pattern = Pattern.BROADCAST
    num_inputs = 3

    def infer(self, a, acc, mult, zp):
        if acc.dtype != "int32" or mult.dtype != "float32":
            raise self.fail(f"expects an int32 accumulator and a float32 multiplier, got {acc} and {mult}")
        if zp.dtype not in QUANT_RANGES:
            raise self.fail(f"requantizes to {', '.join(QUANT_RANGES)}, got a {zp.dtype} zero point")
        return TensorType(_check_params(self, acc, mult, zp), zp.dtype)

    def reference(self, a, acc, mult, zp):
        v = acc.astype(np.float32) * mult.astype(np.float32)
        return saturate_round(v, np.broadcast_to(zp, v.shape), str(zp.dtype))

    def compute(self, a, acc, mult, zp):
        shape = broadcast_shapes(acc.shape, mult.shape, zp.shape)

        def f(*i):
            v = te.cast("float32", acc[broadcast_index(acc.shape, shape, i)]) * \
                mult[broadcast_index(mult.shape, shape, i)]
            return _round_saturate_expr(v, te.cast("float32", zp[broadcast_index(zp.shape, shape, i)]), zp.dtype)

        return te.compute(shape, f, name="requantize")


@register
class FixedPointMultiply(Op):
    """TFLite's MultiplyByQuantizedMultiplier: ``acc`` (int32) times ``multiplier`` (int32, a
    31-bit mantissa) times 2**``shift`` (int32) in its fixed-point arithmetic, int32 out: acc
    times 2**max(shift, 0) (saturated to int32, where TFLite's reference kernels leave the
    overflow undefined), gemmlowp's SaturatingRoundingDoublingHighMul by the multiplier (the
    product's high half, rounded half away from zero), then divided by 2**max(-shift, 0)
    rounding half away from zero (RoundingDivideByPOT); shifts clamp to [-31, 31].  One
    intrinsic (``fixed_point_mul``) computes it, so the int8 kernels' requantization runs in
    int32 lanes; multipliers and shifts broadcast (per channel)."""

    name = "fixed_point_multiply"
    pattern = Pattern.BROADCAST
    num_inputs = 3

    def infer(self, a, acc, mult, shift):
        if (acc.dtype, mult.dtype, shift.dtype) != ("int32", "int32", "int32"):
            raise self.fail(f"expects int32 data, multiplier and shift, got {acc}, {mult} and {shift}")
        return TensorType(_check_params(self, acc, mult, shift), "int32")

    def reference(self, a, acc, mult, shift):
        x, m, s = (np.asarray(v, np.int64) for v in (acc, mult, shift))
        x = np.clip(x * (np.int64(1) << np.clip(s, 0, 31)), -(1 << 31), (1 << 31) - 1)
        ab = x * m
        nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
        q = np.abs(ab + nudge) // (1 << 31)
        high = np.minimum(np.where(ab + nudge < 0, -q, q), (1 << 31) - 1)      # truncated, as C divides
        right = np.clip(-s, 0, 31)
        half = (np.int64(1) << right) >> 1
        away = np.where(high < 0, -((-high + half) >> right), (high + half) >> right)
        return np.broadcast_to(away, np.broadcast_shapes(acc.shape, mult.shape, shift.shape)).astype(np.int32)

    def compute(self, a, acc, mult, shift):
        shape = broadcast_shapes(acc.shape, mult.shape, shift.shape)

        def f(*i):
            return te.call("fixed_point_mul", acc[broadcast_index(acc.shape, shape, i)],
                           mult[broadcast_index(mult.shape, shape, i)], shift[broadcast_index(shift.shape, shape, i)])

        return te.compute(shape, f, name="fixed_point_multiply")


# ---- integer products ------------------------------------------------------------------------

def int_matmul_reference(a: np.ndarray, b: np.ndarray, saturate: bool) -> np.ndarray:
    """[M, K] @ [K, N] of integers in int64, exactly or with pair saturation (module doc)."""
    acc = np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)  # exact below 2^53
    if not saturate:
        return acc
    k = a.shape[1]
    a64, b64 = a.astype(np.int64), b.astype(np.int64)
    if k % 2:
        a64 = np.pad(a64, ((0, 0), (0, 1)))
        b64 = np.pad(b64, ((0, 1), (0, 0)))
    a0, a1, b0, b1 = a64[:, 0::2], a64[:, 1::2], b64[0::2], b64[1::2]
    # the (row, pair)s whose products can leave the int16 range in some column
    bound = np.abs(a0) * np.abs(b0).max(axis=1, initial=0) + np.abs(a1) * np.abs(b1).max(axis=1, initial=0)
    rows, pairs = np.nonzero(bound > INT16_MAX)
    step = max(1, (1 << 22) // max(1, b.shape[1]))
    for s in range(0, rows.size, step):
        r, p = rows[s:s + step], pairs[s:s + step]
        prod = a0[r, p, None] * b0[p] + a1[r, p, None] * b1[p]
        corr = np.clip(prod, INT16_MIN, INT16_MAX) - prod
        hit = corr.any(axis=1)
        np.add.at(acc, r[hit], corr[hit])
    return acc


def _wrap32(v: np.ndarray) -> np.ndarray:
    return v.astype(np.int64).astype(np.int32)


def conv2d_int_reference(x: np.ndarray, w: np.ndarray, a: dict) -> np.ndarray:
    n, c, h, wd = x.shape
    o, ci, kh, kw = w.shape
    (sh, sw), (dh, dw), (pt, pl, pb, pr), g = a["strides"], a["dilations"], a["pads"], a["groups"]
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)), constant_values=np.array(a["pad_value"]).astype(x.dtype))
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    opg = o // g
    out = np.zeros((n, o, oh, ow), np.int64)
    for gi in range(g):
        xs = xp[:, gi * ci:(gi + 1) * ci]
        # columns in (ky, kx, c) order: [N * OH * OW, KH * KW * ci]
        taps = [xs[:, :, ky * dh: ky * dh + (oh - 1) * sh + 1: sh, kx * dw: kx * dw + (ow - 1) * sw + 1: sw]
                for ky in range(kh) for kx in range(kw)]
        cols = np.stack(taps, axis=1).transpose(0, 3, 4, 1, 2).reshape(n * oh * ow, kh * kw * ci)
        wm = w[gi * opg:(gi + 1) * opg].transpose(2, 3, 1, 0).reshape(kh * kw * ci, opg)
        acc = int_matmul_reference(cols, wm, a["saturate_pairs"])
        out[:, gi * opg:(gi + 1) * opg] = acc.reshape(n, oh, ow, opg).transpose(0, 3, 1, 2)
    return _wrap32(out)


def _check_eight_bit(op: Op, *types: TensorType) -> None:
    for t in types:
        if t.dtype not in EIGHT_BIT:
            raise op.fail(f"expects int8 or uint8 operands, got {', '.join(str(x) for x in types)}")


def sat16(v):
    """Clamp an int32 expression to the int16 range."""
    return te.maximum(te.minimum(v, te.const(INT16_MAX, "int32")), te.const(INT16_MIN, "int32"))


def _i32(v):
    return te.cast("int32", v)


def conv2d_int_compute(a, x, o, ci, kh, kw, weight_at, name="conv2d_int"):
    """The NCHW integer convolution of ``x`` with ``o`` filters of ``ci`` x ``kh`` x ``kw`` taps
    read by ``weight_at(out_channel, in_channel, ky, kx)``, as the op's attributes say."""
    (sh, sw), (dh, dw), g = a["strides"], a["dilations"], a["groups"]
    xp = pad_nchw(x, a["pads"], a["pad_value"])
    oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
    ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
    opg = o // g

    def tap(nn, f_, y, xx, c, ry, rx):
        cin = c if g == 1 else (f_ // opg) * ci + c
        return _i32(xp[nn, cin, y * sh + ry * dh, xx * sw + rx * dw]) * _i32(weight_at(f_, c, ry, rx))

    if not a["saturate_pairs"]:
        rc, ry, rx = te.reduce_axis(ci, "rc"), te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx")
        return te.compute((x.shape[0], o, oh, ow), lambda nn, f_, y, xx: te.sum(tap(nn, f_, y, xx, rc, ry, rx),
                                                                                 [rc, ry, rx]), name=name)
    if ci % 2 == 0:
        # the pairs are (c, c + 1) of one tap
        rc, ry, rx = te.reduce_axis(ci // 2, "rc"), te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx")

        def f(nn, f_, y, xx):
            pair = tap(nn, f_, y, xx, rc * 2, ry, rx) + tap(nn, f_, y, xx, rc * 2 + 1, ry, rx)
            return te.sum(sat16(pair), [ry, rx, rc])

        return te.compute((x.shape[0], o, oh, ow), f, name=name)
    # an odd channel count: pairs run across taps of the flattened (ky, kx, c) reduction
    k = kh * kw * ci
    rj = te.reduce_axis((k + 1) // 2, "rj")

    def product(nn, f_, y, xx, kk):
        p = tap(nn, f_, y, xx, kk % ci, kk // (kw * ci), (kk // ci) % kw)
        return p if k % 2 == 0 else te.select(te.lt(kk, te.const(k, "int64")), p, te.const(0, "int32"))

    def f(nn, f_, y, xx):
        return te.sum(sat16(product(nn, f_, y, xx, rj * 2) + product(nn, f_, y, xx, rj * 2 + 1)), [rj])

    return te.compute((x.shape[0], o, oh, ow), f, name=name)


@register
class Conv2dInt(Op):
    """Integer 2-D convolution: 8-bit NCHW activations and OIHW weights, int32 out; the padding
    reads ``pad_value``; pads = (top, left, bottom, right); ``saturate_pairs``: see the module."""

    name = "conv2d_int"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "groups": 1, "pad_value": 0,
             "saturate_pairs": False}
    num_inputs = 2

    def infer(self, a, x, w):
        _check_eight_bit(self, x, w)
        lo, hi = QUANT_RANGES[x.dtype]
        if not lo <= a["pad_value"] <= hi:
            raise self.fail(f"pad_value {a['pad_value']} is not a {x.dtype}")
        out = Conv2d().infer(a, x, TensorType(w.shape, x.dtype))
        return TensorType(out.shape, "int32")

    def reference(self, a, x, w):
        return conv2d_int_reference(x, w, a)

    def compute(self, a, x, w):
        o, ci, kh, kw = w.shape
        return conv2d_int_compute(a, x, o, ci, kh, kw, lambda f_, rc, ry, rx: w[f_, rc, ry, rx])


def matmul_int_reference(x: np.ndarray, y: np.ndarray, saturate: bool) -> np.ndarray:
    batch = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    xb = np.broadcast_to(x, batch + x.shape[-2:])
    yb = np.broadcast_to(y, batch + y.shape[-2:])
    out = np.zeros(batch + (x.shape[-2], y.shape[-1]), np.int64)
    for idx in np.ndindex(*batch):
        out[idx] = int_matmul_reference(xb[idx], yb[idx], saturate)
    return _wrap32(out)


def matmul_int_compute(x, shape, k, row_at, weight_at, saturate: bool):
    """out[..., m, n] = sum over k of x[..., m, k] * weight, exactly or with pair saturation;
    ``row_at(b, m, kk)`` and ``weight_at(b, kk, n)`` read the operands (b: batch indices)."""
    nb = len(shape) - 2

    def prod(i, kk):
        b, m, n = i[:nb], i[nb], i[nb + 1]
        return _i32(row_at(b, m, kk)) * _i32(weight_at(b, kk, n))

    if not saturate:
        rk = te.reduce_axis(k, "k")
        return te.compute(shape, lambda *i: te.sum(prod(i, rk), [rk]), name="matmul_int")
    rk = te.reduce_axis((k + 1) // 2, "k")

    def second(i):
        p = prod(i, rk * 2 + 1)
        return p if k % 2 == 0 else te.select(te.lt(rk * 2 + 1, te.const(k, "int64")), p, te.const(0, "int32"))

    return te.compute(shape, lambda *i: te.sum(sat16(prod(i, rk * 2) + second(i)), [rk]), name="matmul_int")


@register
class MatMulInt(Op):
    """Batched integer matrix product (numpy broadcasting of the batch dims): 8-bit operands of
    rank >= 2, int32 out; ``saturate_pairs``: see the module."""

    name = "matmul_int"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"saturate_pairs": False}
    num_inputs = 2

    def infer(self, a, x, y):
        _check_eight_bit(self, x, y)
        if x.rank < 2 or y.rank < 2:
            raise self.fail(f"operands must have rank >= 2, got {x} and {y}")
        if x.shape[-1] != y.shape[-2]:
            raise self.fail(f"inner dimensions differ: {x} @ {y}")
        batch = broadcast_shapes(x.shape[:-2], y.shape[:-2], what="matmul batch dims")
        return TensorType(batch + (x.shape[-2], y.shape[-1]), "int32")

    def reference(self, a, x, y):
        return matmul_int_reference(x, y, a["saturate_pairs"])

    def compute(self, a, x, y):
        batch = broadcast_shapes(x.shape[:-2], y.shape[:-2])
        shape = batch + (x.shape[-2], y.shape[-1])
        return matmul_int_compute(
            x, shape, x.shape[-1],
            lambda b, m, kk: x[broadcast_index(x.shape[:-2], batch, b) + (m, kk)],
            lambda b, kk, n: y[broadcast_index(y.shape[:-2], batch, b) + (kk, n)], a["saturate_pairs"])


@register
class MatMulIntPacked(Op):
    """``matmul_int`` of 8-bit activations and a constant int8 weight packed at compile time in
    groups of four along the reduction (``passes.pack_int_matmul``): x [..., M, 4 K4] (the
    reduction padded with zeros to whole groups) @ wp -> int32 [..., M, n], the weight's last
    panel of nb columns padded with zero weights.  Four products per 8-bit dot product, the
    pairs (4q, 4q + 1) and (4q + 2, 4q + 3) (``matmul_int``'s ``saturate_pairs`` pairs):

    * ``pairs="saturate"``: wp [ceil(N/nb), K4, nb, 4], ``dot4_sat16`` (x86's 8-bit
      multiply-add, pairs saturating);
    * ``pairs="exact"``: the same layout, ``dot4`` (exact: VNNI's ``vpdpbusd``);
    * ``pairs="split"``: wp [ceil(N/nb), K4, 2, nb, 4], two halves each summed by
      ``dot4_sat16`` and added: x @ h0 + x @ h1 with pairs saturating in each.  The pass splits
      a weight into halves of magnitude at most 64, whose pairs of uint8 products stay within
      int16 (255 * 64 * 2 = 32640): the exact product with x86's multiply-add, without VNNI.
    """

    name = "matmul_int_packed"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"n": REQUIRED, "pairs": "exact"}
    num_inputs = 2

    @staticmethod
    def pack(w: np.ndarray, nb: int) -> np.ndarray:
        """``w`` [K, N] as [ceil(N/nb), ceil(K/4), nb, 4], zero-padded; a [2, K, N] pair of
        halves as [ceil(N/nb), ceil(K/4), 2, nb, 4]."""
        if w.ndim == 3:
            return np.ascontiguousarray(np.stack([MatMulIntPacked.pack(h, nb) for h in w], axis=2))
        k, n = w.shape
        k4, nt = -(-k // 4), -(-n // nb)
        padded = np.zeros((k4 * 4, nt * nb), w.dtype)
        padded[:k, :n] = w
        return np.ascontiguousarray(padded.reshape(k4, 4, nt, nb).transpose(2, 0, 3, 1))

    @staticmethod
    def unpack(wp: np.ndarray, n: int) -> np.ndarray:
        """The [4 K4, n] weight of ``wp`` (its padded reduction rows included); [2, 4 K4, n] for
        a split one."""
        if wp.ndim == 5:
            return np.stack([MatMulIntPacked.unpack(wp[:, :, h], n) for h in range(2)])
        nt, k4, nb, _ = wp.shape
        return np.ascontiguousarray(wp.transpose(1, 3, 0, 2).reshape(k4 * 4, nt * nb)[:, :n])

    @staticmethod
    def split(w: np.ndarray) -> np.ndarray:
        """Int8 ``w`` as halves [2, ...] in [-64, 64] that add up to it."""
        lo = w.astype(np.int16) >> 1
        return np.stack([lo, w.astype(np.int16) - lo]).astype(np.int8)

    def infer(self, a, x, wp):
        _check_eight_bit(self, x, wp)
        split = a["pairs"] == "split"
        if a["pairs"] not in ("saturate", "exact", "split"):
            raise self.fail(f"pairs must be 'saturate', 'exact' or 'split', got {a['pairs']!r}")
        if x.rank < 2 or wp.rank != (5 if split else 4) or wp.shape[-1] != 4 or wp.dtype != "int8" or \
                (split and wp.shape[2] != 2):
            raise self.fail(f"expects x of rank >= 2 and an int8 weight packed [N/nb, K/4, {'2, ' if split else ''}"
                            f"nb, 4] (pairs={a['pairs']!r}), got {x} and {wp}")
        nt, k4, nb = wp.shape[0], wp.shape[1], wp.shape[-2]
        if x.shape[-1] != 4 * k4:
            raise self.fail(f"x {x} does not have the {4 * k4} reduction elements of the packed weight {wp}")
        n = a["n"]
        if not isinstance(n, int) or not (nt - 1) * nb < n <= nt * nb:
            raise self.fail(f"n={n!r} does not fit the panels of {wp}")
        return TensorType(tuple(x.shape[:-1]) + (n,), "int32")

    def reference(self, a, x, wp):
        w = self.unpack(wp, a["n"])
        if a["pairs"] == "split":
            return _wrap32(matmul_int_reference(x, w[0], True).astype(np.int64)
                           + matmul_int_reference(x, w[1], True))
        return matmul_int_reference(x, w, a["pairs"] == "saturate")

    def compute(self, a, x, wp):
        k4, nb = wp.shape[1], wp.shape[-2]
        nbd = len(x.shape) - 2
        rq = te.reduce_axis(k4, "rq")
        dot = "dot4" if a["pairs"] == "exact" else "dot4_sat16"
        halves = (0, 1) if a["pairs"] == "split" else (None,)

        def f(*i):
            b, m, n = tuple(i[:nbd]), i[nbd], i[nbd + 1]
            xs = [x[b + (m, rq * 4 + j)] for j in range(4)]
            total = None
            for h in halves:
                ws = [wp[(n // nb, rq) + (() if h is None else (h,)) + (n % nb, j)] for j in range(4)]
                d = te.call(dot, *xs, *ws)
                total = d if total is None else total + d
            return te.sum(total, [rq])

        return te.compute(tuple(x.shape[:-1]) + (a["n"],), f, name="matmul_int")


# ---- the blocked layout (see ember.ops.nn: NCHW[x]c) ---------------------------------------------

@register
class Conv2dIntNCHWc(Op):
    """``conv2d_int`` (one group, no padding: the layout pass pads first) in the blocked layout:
    x [N, C/cb, H, W, cb] -> int32 [N, O/ob, OH, OW, ob].  The packed weight's layout says how
    products are gathered:

    * one at a time, summed exactly: [O/ob, C/cb, KH, KW, cb, ob];
    * in groups of four, cb a multiple of 4: [O/ob, C/cb, KH, KW, cb/4, ob, 4], four channels of
      one tap per ``dot4_sat16`` (x86's 8-bit multiply-add, pairs saturating) or, with
      ``pairs="exact"``, per ``dot4`` (VNNI's exact one);
    * in groups of four, one block of cb channels not a multiple of 4 (an image's 3 colours):
      [O/ob, K4, ob, 4] over the flattened (ky, kx, c) reduction of ``kernel`` taps, padded
      with zero weights to K4 groups of four; ``pairs`` as above.
    """

    name = "conv2d_int_nchwc"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"strides": (1, 1), "dilations": (1, 1), "kernel": (1, 1), "pairs": "saturate"}
    num_inputs = 2

    @staticmethod
    def pack(w: np.ndarray, cb: int, ob: int, fours: bool) -> np.ndarray:
        """``w`` [O, C, KH, KW] packed one product at a time, or in groups of four."""
        o, ci, kh, kw = w.shape
        if not fours:
            return np.ascontiguousarray(w.reshape(o // ob, ob, ci // cb, cb, kh, kw).transpose(0, 2, 4, 5, 3, 1))
        if cb % 4 == 0:
            return np.ascontiguousarray(w.reshape(o // ob, ob, ci // cb, cb // 4, 4, kh, kw)
                                        .transpose(0, 2, 5, 6, 3, 1, 4))
        k = kh * kw * ci
        flat = np.zeros((o, -(-k // 4) * 4), w.dtype)
        flat[:, :k] = w.transpose(0, 2, 3, 1).reshape(o, k)            # (ky, kx, c) order
        return np.ascontiguousarray(flat.reshape(o // ob, ob, -1, 4).transpose(0, 2, 1, 3))

    @staticmethod
    def unpack(wp: np.ndarray, cb: int, kernel) -> np.ndarray:
        if wp.ndim == 6:
            oo, cblk, kh, kw, _, ob = wp.shape
            return np.ascontiguousarray(wp.transpose(0, 5, 1, 4, 2, 3).reshape(oo * ob, cblk * cb, kh, kw))
        if wp.ndim == 7:
            oo, cblk, kh, kw, c4, ob, _ = wp.shape
            return np.ascontiguousarray(wp.transpose(0, 5, 1, 4, 6, 2, 3).reshape(oo * ob, cblk * cb, kh, kw))
        oo, k4, ob, _ = wp.shape
        kh, kw = kernel
        flat = wp.transpose(0, 2, 1, 3).reshape(oo * ob, k4 * 4)[:, :kh * kw * cb]
        return np.ascontiguousarray(flat.reshape(oo * ob, kh, kw, cb).transpose(0, 3, 1, 2))

    @staticmethod
    def saturates(a, wp_rank: int) -> bool:
        return wp_rank in (4, 7) and a["pairs"] == "saturate"

    def infer(self, a, x, wp):
        _check_eight_bit(self, x, wp)
        if a["pairs"] not in ("saturate", "exact"):
            raise self.fail(f"pairs must be 'saturate' or 'exact', got {a['pairs']!r}")
        if x.rank != 5 or wp.rank not in (4, 6, 7):
            raise self.fail(f"expects a blocked 5-D input and a packed 4-, 6- or 7-D weight, got {x} and {wp}")
        n, cblk, h, w, cb = x.shape
        if wp.rank == 6:
            oo, wcblk, kh, kw, wcb, ob = wp.shape
            ok = (wcblk, wcb) == (cblk, cb)
        elif wp.rank == 7:
            oo, wcblk, kh, kw, c4, ob, four = wp.shape
            ok = (wcblk, c4 * 4, four) == (cblk, cb, 4)
        else:
            oo, k4, ob, four = wp.shape
            kh, kw = a["kernel"]
            ok = cblk == 1 and four == 4 and k4 == -(-kh * kw * cb // 4)
        if not ok:
            raise self.fail(f"weight {wp} does not match the input blocks of {x}")
        (sh, sw), (dh, dw) = a["strides"], a["dilations"]
        oh, ow = conv_out_dim(h, kh, sh, 0, 0, dh), conv_out_dim(w, kw, sw, 0, 0, dw)
        if window_misfits(oh, ow):
            raise self.fail(f"kernel {kh}x{kw} does not fit input {x}")
        return TensorType((n, oo, oh, ow, ob), "int32")

    def reference(self, a, x, wp):
        from .nn import from_blocked_array, to_blocked_array

        w = self.unpack(wp, x.shape[-1], a["kernel"])
        ca = {"strides": a["strides"], "dilations": a["dilations"], "pads": (0, 0, 0, 0), "groups": 1,
              "pad_value": 0, "saturate_pairs": self.saturates(a, wp.ndim)}
        return to_blocked_array(conv2d_int_reference(from_blocked_array(x), w, ca), wp.shape[-2 if wp.ndim in (4, 7)
                                                                                              else -1])

    def compute(self, a, x, wp):
        (sh, sw), (dh, dw) = a["strides"], a["dilations"]
        n, cblk, h, w, cb = x.shape
        if len(wp.shape) == 6:
            oo, _, kh, kw, _, ob = wp.shape
        elif len(wp.shape) == 7:
            oo, _, kh, kw, _, ob, _ = wp.shape
        else:
            oo, k4, ob, _ = wp.shape
            kh, kw = a["kernel"]
        oh = (h - (kh - 1) * dh - 1) // sh + 1
        ow = (w - (kw - 1) * dw - 1) // sw + 1
        shape = (n, oo, oh, ow, ob)
        dot = "dot4_sat16" if a["pairs"] == "saturate" else "dot4"
        if len(wp.shape) == 6:
            rc, ry, rx, ri = (te.reduce_axis(cblk, "rc"), te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx"),
                              te.reduce_axis(cb, "ri"))

            def f(nn, oc, y, xx, o):
                return te.sum(_i32(x[nn, rc, y * sh + ry * dh, xx * sw + rx * dw, ri]) * _i32(wp[oc, rc, ry, rx, ri, o]),
                              [rc, ry, rx, ri])
        elif len(wp.shape) == 7:
            rc, ry, rx, rq = (te.reduce_axis(cblk, "rc"), te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx"),
                              te.reduce_axis(cb // 4, "rq"))

            def f(nn, oc, y, xx, o):
                xs = [x[nn, rc, y * sh + ry * dh, xx * sw + rx * dw, rq * 4 + i] for i in range(4)]
                ws = [wp[oc, rc, ry, rx, rq, o, i] for i in range(4)]
                return te.sum(te.call(dot, *xs, *ws), [rc, ry, rx, rq])
        else:
            k = kh * kw * cb
            rq = te.reduce_axis(k4, "rq")

            def f(nn, oc, y, xx, o):
                xs = []
                for i in range(4):
                    kk = te.minimum(rq * 4 + i, te.const(k - 1, "int64"))   # past the end: a zero weight
                    ky, kx, c = kk // (kw * cb), (kk // cb) % kw, kk % cb
                    xs.append(x[nn, 0, y * sh + ky * dh, xx * sw + kx * dw, c])
                ws = [wp[oc, rq, o, i] for i in range(4)]
                return te.sum(te.call(dot, *xs, *ws), [rq])
        return te.compute(shape, f, name="conv2d_int")


# ---- float convolutions summed in blocks of input channels -------------------------------------

def channel_blocks(c: int, k_block: int) -> list[tuple[int, int]]:
    """(first channel, count) of each block of ``k_block`` channels of ``c`` (the last one may be
    shorter)."""
    return [(b, min(k_block, c - b)) for b in range(0, c, k_block)]


@register
class Conv2dSplitK(Op):
    """A float32 convolution (one group) whose sum over the input channels runs in blocks of
    ``k_block`` channels: each block's products summed in order from zero, the blocks' sums
    added in order.  That is how onnxruntime's float GEMM sums a 1x1 convolution, which the QDQ
    pass reproduces where onnxruntime runs a quantized group in float: the value is the
    convolution's, the attribute prescribes only the order of the rounding.  pads = (top, left,
    bottom, right)."""

    name = "conv2d_split_k"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"strides": (1, 1), "pads": (0, 0, 0, 0), "dilations": (1, 1), "k_block": REQUIRED}
    num_inputs = 2

    def infer(self, a, x, w):
        if x.dtype != "float32" or w.dtype != "float32":
            raise self.fail(f"expects float32 operands, got {x} and {w}")
        if not isinstance(a["k_block"], int) or a["k_block"] <= 0:
            raise self.fail(f"k_block must be a positive number of channels, got {a['k_block']!r}")
        return Conv2d().infer(dict(a, groups=1), x, w)

    def reference(self, a, x, w):
        from .nn import conv2d_reference

        return conv2d_reference(x, w, a["strides"], a["pads"], a["dilations"], 1)

    def compute(self, a, x, w):
        (sh, sw), (dh, dw) = a["strides"], a["dilations"]
        xp = pad_nchw(x, a["pads"])
        o, ci, kh, kw = w.shape
        oh = (xp.shape[2] - (kh - 1) * dh - 1) // sh + 1
        ow = (xp.shape[3] - (kw - 1) * dw - 1) // sw + 1
        parts = []
        for b0, nb in channel_blocks(ci, a["k_block"]):
            rc, ry, rx = te.reduce_axis(nb, "rc"), te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx")
            parts.append(te.compute(
                (x.shape[0], o, oh, ow),
                lambda nn, f_, y, xx, b0=b0, rc=rc, ry=ry, rx=rx: te.sum(
                    xp[nn, rc + b0, y * sh + ry * dh, xx * sw + rx * dw] * w[f_, rc + b0, ry, rx], [rc, ry, rx]),
                name=f"conv2d_k{b0}"))
        return _sum_in_order(parts, "conv2d")


def _sum_in_order(parts, name: str):
    def f(*i):
        acc = parts[0][i]
        for p in parts[1:]:
            acc = acc + p[i]
        return acc

    return te.compute(parts[0].shape, f, name=name)


@register
class Conv2dSplitKNCHWc(Op):
    """``conv2d_split_k`` in the blocked layout: x [N, C/cb, H, W, cb], w [O/ob, C/cb, KH, KW, cb,
    ob] (``Conv2dNCHWc.pack``) -> [N, O/ob, OH, OW, ob], no padding; ``k_block`` a multiple of
    cb.  Each block's accumulators are a register tile of their own."""

    name = "conv2d_split_k_nchwc"
    pattern = Pattern.OUT_ELEMWISE_FUSABLE
    attrs = {"strides": (1, 1), "dilations": (1, 1), "k_block": REQUIRED}
    num_inputs = 2

    def infer(self, a, x, wp):
        from .nn import Conv2dNCHWc

        cb = x.shape[-1] if x.rank == 5 else 0
        if not cb or a["k_block"] % cb:
            raise self.fail(f"k_block {a['k_block']} is not a multiple of the channel block of {x}")
        return Conv2dNCHWc().infer(dict(a, pads=(0, 0, 0, 0), groups=1), x, wp)

    def reference(self, a, x, wp):
        from .nn import Conv2dNCHWc

        return Conv2dNCHWc().reference(dict(a, pads=(0, 0, 0, 0), groups=1), x, wp)

    def compute(self, a, x, wp):
        (sh, sw), (dh, dw) = a["strides"], a["dilations"]
        n, cblk, h, w, cb = x.shape
        oo, _, kh, kw, _, ob = wp.shape
        oh = (h - (kh - 1) * dh - 1) // sh + 1
        ow = (w - (kw - 1) * dw - 1) // sw + 1
        parts = []
        for b0, nb in channel_blocks(cblk * cb, a["k_block"]):
            rc, ry, rx, ri = (te.reduce_axis(nb // cb, "rc"), te.reduce_axis(kh, "ry"), te.reduce_axis(kw, "rx"),
                              te.reduce_axis(cb, "ri"))
            c0 = b0 // cb
            parts.append(te.compute(
                (n, oo, oh, ow, ob),
                lambda nn, oc, y, xx, o, c0=c0, rc=rc, ry=ry, rx=rx, ri=ri: te.sum(
                    x[nn, rc + c0, y * sh + ry * dh, xx * sw + rx * dw, ri] * wp[oc, rc + c0, ry, rx, ri, o],
                    [rc, ry, rx, ri]),
                name=f"conv2d_k{b0}"))
        return _sum_in_order(parts, "conv2d")

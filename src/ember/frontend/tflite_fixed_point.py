"""TFLite's 32-bit fixed-point arithmetic (gemmlowp's ``FixedPoint`` and the helpers of
``quantization_util`` / ``common.h``), written once over two backends: numpy arrays, to compute
the lookup tables of int8 -> int8 functions at translation (RSQRT, softmax's exponentials), and
Ember graph values, for the parts of a kernel that depend on a whole row at run time (an L2 norm,
softmax's reciprocal of the sum, REDUCE_PROD's running product).

Every value is an int64 holding an int32 exactly; a ``FixedPoint<int32, k>`` is its raw int32.
The rounding and saturation rules are gemmlowp's, so results match TFLite's reference kernels
bit for bit.
"""

from __future__ import annotations

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
_POW2 = np.array([1 << k for k in range(63)], np.int64)


class NumpyOps:
    """The arithmetic on int64 numpy arrays."""

    def c(self, v):
        return np.asarray(v, np.int64)

    def add(self, a, b):
        return self.c(a) + self.c(b)

    def sub(self, a, b):
        return self.c(a) - self.c(b)

    def mul(self, a, b):
        return self.c(a) * self.c(b)

    def tdiv(self, a, b):
        """C's integer division (truncation toward zero)."""
        a, b = self.c(a), self.c(b)
        q = np.abs(a) // np.abs(b)
        return np.where((a < 0) != (b < 0), -q, q)

    def where(self, cond, a, b):
        return np.where(cond, self.c(a), self.c(b))

    def lt(self, a, b):
        return self.c(a) < self.c(b)

    def ge(self, a, b):
        return self.c(a) >= self.c(b)

    def eq(self, a, b):
        return self.c(a) == self.c(b)

    def logical_and(self, a, b):
        return np.logical_and(a, b)

    def minimum(self, a, b):
        return np.minimum(self.c(a), self.c(b))

    def maximum(self, a, b):
        return np.maximum(self.c(a), self.c(b))

    def pow2(self, e):
        """2**e for 0 <= e <= 62."""
        return _POW2[self.c(e)]

    def bit_length(self, x):
        """The bits of a non-negative x below 2**62 (0 for 0)."""
        return (self.c(x)[..., None] >= _POW2).sum(-1).astype(np.int64)


class GraphOps:
    """The same arithmetic as Ember graph operators (int64 values), added through ``cx``."""

    def __init__(self, cx):
        self.cx = cx

    def c(self, v):
        if isinstance(v, (int, np.integer, np.ndarray)):
            return self.cx.const(np.asarray(v, np.int64))
        return v

    def _op(self, op, *xs):
        return self.cx.add(op, [self.c(x) for x in xs])

    def add(self, a, b):
        return self._op("add", a, b)

    def sub(self, a, b):
        return self._op("sub", a, b)

    def mul(self, a, b):
        return self._op("mul", a, b)

    def tdiv(self, a, b):
        return self._op("div", a, b)       # integer division truncates, as C's

    def where(self, cond, a, b):
        return self.cx.add("where", [cond, self.c(a), self.c(b)])

    def lt(self, a, b):
        return self._op("less", a, b)

    def ge(self, a, b):
        return self._op("greater_equal", a, b)

    def eq(self, a, b):
        return self._op("equal", a, b)

    def logical_and(self, a, b):
        return self.cx.add("logical_and", [a, b])

    def minimum(self, a, b):
        return self._op("minimum", a, b)

    def maximum(self, a, b):
        return self._op("maximum", a, b)

    def pow2(self, e):
        return self.cx.add("gather", [self.c(_POW2), self.c(e)], axis=0)

    def bit_length(self, x):
        shape = tuple(x.type.shape)
        big = self.cx.add("reshape", [x], shape=shape + (1,))
        bits = self.cx.add("cast", [self._op("greater_equal", big, _POW2)], to="int64")
        return self.cx.add("reduce_sum", [bits], axes=(len(shape),), keepdims=False)


# ---- gemmlowp's primitives ----------------------------------------------------------------

def srdhm(o, a, b):
    """SaturatingRoundingDoublingHighMul: (a * b + nudge) / 2**31, truncated; INT32_MIN squared
    saturates to INT32_MAX."""
    ab = o.mul(a, b)
    nudge = o.where(o.ge(ab, 0), 1 << 30, 1 - (1 << 30))
    r = o.tdiv(o.add(ab, nudge), 1 << 31)
    return o.where(o.logical_and(o.eq(a, INT32_MIN), o.eq(b, INT32_MIN)), INT32_MAX, r)


def floor_div_pow2(o, x, p):
    q = o.tdiv(x, p)
    return o.where(o.lt(x, o.mul(q, p)), o.sub(q, 1), q)


def rounding_divide_by_pot(o, x, e):
    """x / 2**e rounded to nearest, ties away from zero (gemmlowp's RoundingDivideByPOT); ``e``
    an int or a value of exponents."""
    p = (1 << e) if isinstance(e, int) else o.pow2(e)
    q = floor_div_pow2(o, x, p)
    rem = o.sub(x, o.mul(q, p))
    threshold = o.add(o.tdiv(o.sub(p, 1), 2), o.where(o.lt(x, 0), 1, 0))
    return o.add(q, o.where(o.lt(threshold, rem), 1, 0))


def saturating_shift_left(o, x, k: int):
    """SaturatingRoundingMultiplyByPOT with a positive exponent: x * 2**k clamped to int32."""
    return o.minimum(o.maximum(o.mul(x, 1 << k), INT32_MIN), INT32_MAX)


def multiply_by_quantized_multiplier(o, x, mult, shift):
    """TFLite's MultiplyByQuantizedMultiplier (``mult`` and ``shift`` ints or values)."""
    if isinstance(shift, int):
        left, right = max(shift, 0), max(-shift, 0)
        return rounding_divide_by_pot(o, srdhm(o, o.mul(x, 1 << left), mult), right)
    left = o.maximum(shift, 0)
    right = o.maximum(o.sub(0, shift), 0)
    return rounding_divide_by_pot(o, srdhm(o, o.mul(x, o.pow2(left)), mult), right)



def multiply_by_quantized_multiplier_64(o, x, mult: int, shift: int):
    """TFLite's MultiplyByQuantizedMultiplier of an int64 ``x`` (below 2**47 in magnitude): the
    31-bit multiplier reduced to 16 bits (rounded), one rounding half up at 15 - shift bits."""
    reduced = (mult + (1 << 15)) >> 16 if mult < 0x7FFF0000 else 0x7FFF
    total = 15 - shift
    return floor_div_pow2(o, o.add(o.mul(x, reduced), 1 << (total - 1)), 1 << total)


# ---- functions ----------------------------------------------------------------------------

def inv_sqrt_multiplier_exp(o, x):
    """GetInvSqrtQuantizedMultiplierExp(x, reverse_shift=-1): (multiplier, shift) with
    1/sqrt(x) = multiplier * 2**(shift - 31), by five Newton-Raphson steps in Q3.28."""
    small = o.lt(x, 2)
    x = o.maximum(x, 2)
    # divide by 4 until below 2**29 (each step a shift +1)
    b = o.bit_length(x)
    quarters = o.maximum(o.tdiv(o.sub(b, 28), 2), 0)
    x = o.tdiv(x, o.pow2(o.mul(quarters, 2)))
    shift = o.add(quarters, 11)
    # then left by pairs of bits into [2**27, 2**29)
    pairs = o.sub(o.tdiv(o.sub(31, o.bit_length(x)), 2), 1)
    shift = o.sub(shift, pairs)
    x = o.mul(x, o.pow2(o.mul(pairs, 2)))
    f_input = o.tdiv(x, 2)                          # F3 raw: input >> 1 (non-negative)
    half_input = rounding_divide_by_pot(o, f_input, 1)
    half_three = (1 << 28) + (1 << 27)              # 1.5 in Q3.28
    v = o.add(o.mul(x, 0), 1 << 28)                 # F3 one
    for _ in range(5):
        v3 = saturating_shift_left(o, srdhm(o, srdhm(o, v, v), v), 6)
        diff = o.sub(srdhm(o, half_three, v), srdhm(o, half_input, v3))
        v = saturating_shift_left(o, diff, 3)
    v = srdhm(o, v, 1518500250)                    # * sqrt(2) / 2 in Q0.31
    neg = o.lt(shift, 0)
    v = o.where(neg, o.mul(v, o.pow2(o.maximum(o.sub(0, shift), 0))), v)
    shift = o.where(neg, 0, shift)
    return o.where(small, INT32_MAX, v), o.where(small, 0, o.sub(0, shift))


def quantize_multiplier(m: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier: m = q * 2**(shift - 31) with q a 31-bit mantissa."""
    if m == 0:
        return 0, 0
    q, shift = np.frexp(m)
    qf = int(np.floor(abs(q) * (1 << 31) + 0.5)) * (1 if q > 0 else -1)   # std::round
    if qf == 1 << 31:
        qf //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return qf, int(shift)


# ---- softmax (reference_ops::Softmax on 8-bit data) -----------------------------------------

#: integer bits of the scaled input difference and of the sum of exponentials
SOFTMAX_DIFF_BITS, SOFTMAX_SUM_BITS = 5, 12

#: exp(-2**k) in Q0.31 for k = -2 .. 4, gemmlowp's barrel shifter of exp_on_negative_values
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535),
               (3, 720401), (4, 242))


def softmax_input_scaling(beta: float, input_scale: float) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling and CalculateInputRadius for 5 integer bits: the multiplier
    (> 1: a 31-bit mantissa and a left shift) that takes an input difference to Q5.26, and
    ``diff_min``, the most negative difference that still counts."""
    real = min(beta * input_scale * (1 << (31 - SOFTMAX_DIFF_BITS)), (1 << 31) - 1.0)
    mult, shift = quantize_multiplier(real)
    radius = np.floor(((1 << SOFTMAX_DIFF_BITS) - 1) * float(1 << (31 - SOFTMAX_DIFF_BITS)) / (1 << shift))
    return mult, shift, -int(radius)


def _exp_near_zero(o, a):
    """exp(a) for a in [-1/4, 0) in Q0.31: the Taylor polynomial around -1/8."""
    x = o.add(a, 1 << 28)                               # a + 1/8
    x2 = srdhm(o, x, x)
    x3 = srdhm(o, x2, x)
    x4 = srdhm(o, x2, x2)
    x4_over_4 = rounding_divide_by_pot(o, x4, 2)
    poly = rounding_divide_by_pot(o, o.add(srdhm(o, o.add(x4_over_4, x3), 715827883), x2), 1)
    e_eighth = 1895147668                               # exp(-1/8) in Q0.31
    return o.add(e_eighth, srdhm(o, e_eighth, o.add(x, poly)))


def exp_on_negative_values(a: np.ndarray) -> np.ndarray:
    """gemmlowp's exp_on_negative_values for a Q5.26 input ``a`` <= 0 (numpy, int64 holding
    int32): the Q0.31 result, exp of the input's remainder modulo 1/4 by a polynomial, times
    exp(-2**k) for each bit k of the rest."""
    o = NumpyOps()
    a = o.c(a)
    frac = 31 - SOFTMAX_DIFF_BITS                          # 26 fractional bits
    quarter = 1 << (frac - 2)
    mod_minus_quarter = (a & (quarter - 1)) - quarter      # two's complement AND, as int32
    result = _exp_near_zero(o, saturating_shift_left(o, mod_minus_quarter, SOFTMAX_DIFF_BITS))
    remainder = mod_minus_quarter - a
    for k, m in _EXP_BARREL:
        if SOFTMAX_DIFF_BITS > k:
            result = np.where(remainder & (1 << (frac + k)), srdhm(o, result, m), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x(o, a):
    """gemmlowp's one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a) for a Q0.31 ``a`` in [0, 1), by
    three Newton-Raphson steps in Q2.29; the result in Q0.31."""
    s = o.add(a, INT32_MAX)                                # RoundingHalfSum(a, 1.0): (s + 1) / 2
    half_denominator = o.tdiv(o.add(s, 1), 2)
    x = o.add(1515870810, srdhm(o, half_denominator, -1010580540))     # 48/17 - 32/17 d in Q2.29
    for _ in range(3):
        one_minus = o.sub(1 << 29, srdhm(o, half_denominator, x))
        x = o.add(x, saturating_shift_left(o, srdhm(o, x, one_minus), 2))
    return saturating_shift_left(o, x, 1)


def reciprocal(o, x, integer_bits: int):
    """GetReciprocal: for a positive Q``integer_bits`` ``x``, (a Q0.31 scale, the bits over
    unit) with 1 / x = scale * 2**-bits_over_unit."""
    bits = o.bit_length(x)
    headroom_plus_one = o.sub(32, bits)
    over = o.sub(integer_bits, headroom_plus_one)
    shifted_minus_one = o.sub(o.mul(x, o.pow2(headroom_plus_one)), 1 << 31)
    return one_over_one_plus_x(o, shifted_minus_one), over

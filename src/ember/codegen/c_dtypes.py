"""How generated C holds and converts the dtypes C has no type for.

* **bfloat16** is stored as its 16 bits (``uint16_t``, the high half of a float32).  In an
  expression a bfloat16 value is a C ``float``: a load widens it exactly, arithmetic runs in
  float32, and a store or a cast to bfloat16 rounds to nearest even.
* **The narrow types** (float8_e4m3fn, float8_e4m3fnuz, float8_e5m2, float8_e5m2fnuz,
  float8_e8m0fnu, float4_e2m1fn, int4, uint4, int2, uint2) are stored one element per byte in
  ml_dtypes' encoding (``uint8_t``).  In an expression a narrow value is that byte: loads,
  stores and selects move it as is; only a cast looks inside.

Every conversion is one small C routine below, on the integer bits of a float32, with the rules
of the ``cast`` op (:mod:`ember.ops.cast`): the compiler inlines them, so the constant
parameters of the generic encoder fold away.  :func:`cast` says which routine a conversion
calls; ``tests/codegen/test_c_dtypes.py`` checks every routine against ml_dtypes and the
reference, over all codes and a wide sweep of float32 values.
"""

from __future__ import annotations

import math

#: storage C types of the dtypes handled here
STORAGE = {"bfloat16": "uint16_t", "float8_e4m3fn": "uint8_t", "float8_e4m3fnuz": "uint8_t",
           "float8_e5m2": "uint8_t", "float8_e5m2fnuz": "uint8_t", "float8_e8m0fnu": "uint8_t",
           "float4_e2m1fn": "uint8_t", "int4": "uint8_t", "uint4": "uint8_t", "int2": "uint8_t",
           "uint2": "uint8_t"}

#: narrow float dtype -> the suffix of its ember_to_* / ember_from_* routines
_FLOAT_TAGS = {"float8_e4m3fn": "e4m3fn", "float8_e4m3fnuz": "e4m3fnuz", "float8_e5m2": "e5m2",
               "float8_e5m2fnuz": "e5m2fnuz", "float8_e8m0fnu": "e8m0", "float4_e2m1fn": "e2m1"}
#: narrow integer dtype -> (bits, signed)
_INT_BITS = {"int4": (4, True), "uint4": (4, False), "int2": (2, True), "uint2": (2, False)}

_ROUND_MODES = {"up": 0, "down": 1, "nearest": 2}

_FLOAT_VALUES = ("float16", "float32", "float64", "bfloat16")

C_SOURCE = r"""
/* ---- bfloat16, float8, float4, int4 and int2 (see ember/codegen/c_dtypes.py) ---- */
typedef union { float f; uint32_t u; } ember_f32u;
static inline uint32_t ember_f32_bits(float f) { ember_f32u x; x.f = f; return x.u; }
static inline float ember_f32_of_bits(uint32_t u) { ember_f32u x; x.u = u; return x.f; }

/* bfloat16: the high half of a float32; to nearest even, NaN to the quiet NaN of its sign */
static inline float ember_bf16_to_f32(uint16_t b) { return ember_f32_of_bits((uint32_t)b << 16); }
static inline uint16_t ember_f32_to_bf16(float f) {
  uint32_t u = ember_f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return (uint16_t)(((u >> 16) & 0x8000u) | 0x7FC0u);
  return (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}
static inline float ember_bf16_round(float f) { return ember_bf16_to_f32(ember_f32_to_bf16(f)); }

/* float32 -> a float of 1 sign, E exponent and M mantissa bits with exponent bias B, rounded to
   nearest even.  top: the code of the largest finite magnitude.  kind: 0 has infinities
   (e5m2), 1 no infinity and NaN all ones (e4m3fn), 2 no infinity, no -0 and NaN 0x80 (fnuz),
   3 neither infinity nor NaN (e2m1, 4 bits: always saturates; NaN -> zero of the opposite
   sign, as ml_dtypes).  Out of range: the largest finite value with saturate, else infinity
   (kind 0) or NaN. */
static inline uint8_t ember_to_minifloat(float f, int M, int B, uint32_t top, int kind, int saturate) {
  uint32_t u = ember_f32_bits(f), sign = u >> 31, a = u & 0x7FFFFFFFu, code;
  int sbit = kind == 3 ? 3 : 7;
  if (a > 0x7F800000u) {
    if (kind == 3) return (uint8_t)((sign ^ 1u) << 3);
    if (kind == 2) return 0x80;
    return (uint8_t)((sign << 7) | (kind == 1 ? 0x7Fu : 0x7Eu));
  }
  if (a == 0x7F800000u) {
    code = top + 1;
  } else if ((a >> 23) == 0) {
    code = 0;                         /* below 2^-126: under half of every target's smallest step */
  } else {
    int e = (int)(a >> 23) - 127, emin = 1 - B;
    uint32_t sig = (a & 0x7FFFFFu) | 0x800000u;
    int shift = (23 - M) + (e < emin ? emin - e : 0);
    if (shift > 31) {
      code = 0;
    } else {
      uint32_t q = sig >> shift, rem = sig & ((1u << shift) - 1u), half = 1u << (shift - 1);
      q += (rem > half) || (rem == half && (q & 1u));
      /* normal: the implicit bit of q carries into the exponent field */
      code = e < emin ? q : ((uint32_t)(e - emin) << M) + q;
    }
  }
  if (code > top) {
    if (saturate || kind == 3) code = top;
    else if (kind == 0) code = top + 1;
    else if (kind == 1) code = 0x7F;
    else return 0x80;
  }
  if (kind == 2 && code == 0) return 0;
  return (uint8_t)((sign << sbit) | code);
}

static inline float ember_from_minifloat(uint8_t b, int M, int B, int kind) {
  int sbit = kind == 3 ? 3 : 7;
  uint32_t sign = ((uint32_t)b >> sbit) & 1u, mag = b & ((1u << sbit) - 1u);
  uint32_t E = mag >> M, m = mag & ((1u << M) - 1u), out;
  if ((kind == 2 && b == 0x80) || (kind == 1 && mag == 0x7F) || (kind == 0 && E == (1u << (7 - M)) - 1u && m))
    return ember_f32_of_bits((sign << 31) | 0x7FC00000u);
  if (kind == 0 && E == (1u << (7 - M)) - 1u) {
    out = 0x7F800000u;
  } else if (E == 0) {
    /* subnormal: m steps of 2^(1 - B - M), exact in float32 */
    float v = (float)m * ember_f32_of_bits((uint32_t)(127 + 1 - B - M) << 23);
    return sign ? -v : v;
  } else {
    out = ((E - B + 127) << 23) | (m << (23 - M));
  }
  return ember_f32_of_bits((sign << 31) | out);
}

/* float8_e8m0fnu: the exponent of a float32, sign ignored; round_mode 0 up (any fraction), 1 down,
   2 nearest (from half the way; for subnormals only above it); a round up past 2^127 is NaN
   unless saturate; infinities and NaN are NaN */
static inline uint8_t ember_to_e8m0(float f, int saturate, int mode) {
  uint32_t u = ember_f32_bits(f), e = (u >> 23) & 0xFFu, frac = u & 0x7FFFFFu, up;
  if (e == 0xFFu) return 0xFF;
  up = mode == 0 ? frac != 0 : mode == 2 ? ((frac & 0x400000u) && ((frac & 0x3FFFFFu) || e > 0)) : 0;
  if (saturate && e == 0xFEu) up = 0;
  return (uint8_t)(e + up);
}
static inline float ember_from_e8m0(uint8_t b) {
  if (b == 0xFF) return ember_f32_of_bits(0x7FC00000u);
  return ember_f32_of_bits(b ? (uint32_t)b << 23 : 0x00400000u);
}

static inline uint8_t ember_to_e4m3fn(float f, int sat) { return ember_to_minifloat(f, 3, 7, 0x7E, 1, sat); }
static inline uint8_t ember_to_e4m3fnuz(float f, int sat) { return ember_to_minifloat(f, 3, 8, 0x7F, 2, sat); }
static inline uint8_t ember_to_e5m2(float f, int sat) { return ember_to_minifloat(f, 2, 15, 0x7B, 0, sat); }
static inline uint8_t ember_to_e5m2fnuz(float f, int sat) { return ember_to_minifloat(f, 2, 16, 0x7F, 2, sat); }
static inline uint8_t ember_to_e2m1(float f, int sat) { (void)sat; return ember_to_minifloat(f, 1, 1, 0x7, 3, 1); }
static inline float ember_from_e4m3fn(uint8_t b) { return ember_from_minifloat(b, 3, 7, 1); }
static inline float ember_from_e4m3fnuz(uint8_t b) { return ember_from_minifloat(b, 3, 8, 2); }
static inline float ember_from_e5m2(uint8_t b) { return ember_from_minifloat(b, 2, 15, 0); }
static inline float ember_from_e5m2fnuz(uint8_t b) { return ember_from_minifloat(b, 2, 16, 2); }
static inline float ember_from_e2m1(uint8_t b) { return ember_from_minifloat(b, 1, 1, 3); }

/* int4/int2: the low bits of the byte, two's complement for the signed ones */
static inline int ember_from_int4(uint8_t b) { return (int)(int8_t)(uint8_t)(b << 4) >> 4; }
static inline int ember_from_uint4(uint8_t b) { return b & 0xF; }
static inline int ember_from_int2(uint8_t b) { return (int)(int8_t)(uint8_t)(b << 6) >> 6; }
static inline int ember_from_uint2(uint8_t b) { return b & 0x3; }
/* a float to int4/int2: truncated toward zero; NaN and values whose truncation falls outside
   [lo, lo + mask] give 0 */
static inline uint8_t ember_float_to_low_bits(double x, int lo, uint32_t mask) {
  if (!(x > (double)lo - 1.0 && x < (double)lo + (double)mask + 1.0)) return 0;
  return (uint8_t)((uint32_t)(int)x & mask);
}
"""


def is_special(dtype: str) -> bool:
    """Whether generated C holds ``dtype`` by the rules of this module."""
    return dtype in STORAGE


def value_type(dtype: str) -> str | None:
    """The C type of an expression of ``dtype`` when it differs from the storage type."""
    return "float" if dtype == "bfloat16" else None


def load(dtype: str, raw: str) -> str:
    """The expression value of the stored element ``raw``."""
    return f"ember_bf16_to_f32({raw})" if dtype == "bfloat16" else raw


def store(dtype: str, value: str) -> str:
    """The stored form of the expression value ``value``."""
    return f"ember_f32_to_bf16({value})" if dtype == "bfloat16" else value


def const(value, dtype: str) -> str:
    """C for a constant of ``dtype`` (bfloat16: a float already rounded; narrow: its byte)."""
    import numpy as np

    if dtype == "bfloat16":
        v = float(value)
        if math.isnan(v):
            return "NAN"
        with np.errstate(all="ignore"):
            bits = int(np.array(v, np.float32).view(np.uint32))
        b = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF
        r = float(np.array(b << 16, np.uint32).view(np.float32))
        if math.isinf(r):
            return "INFINITY" if r > 0 else "(-INFINITY)"
        return repr(r) + "f"
    import ml_dtypes

    with np.errstate(all="ignore"):
        if dtype in _INT_BITS:
            code = np.array(int(value)).astype(getattr(ml_dtypes, dtype))
        else:
            code = np.array(float(value), np.float32).astype(getattr(ml_dtypes, dtype))
    return f"((uint8_t){int(code.view(np.uint8))})"


def cast(src: str, dst: str, a: str, saturate: bool = False, round_mode: str = "up",
         c_type=None) -> str | None:
    """C converting the expression ``a`` of dtype ``src`` to ``dst``, or None when neither is
    handled here.  ``c_type`` gives the C types of the other dtypes."""
    if not is_special(src) and not is_special(dst):
        return None
    # the source as a plain C value
    if src in _FLOAT_TAGS:
        x, plain = f"ember_from_{_FLOAT_TAGS[src]}({a})", "float32"
    elif src in _INT_BITS:
        x, plain = f"ember_from_{src}({a})", "int32"
    elif src == "bfloat16":
        x, plain = a, "float32"
    else:
        x, plain = a, src
    if dst == plain:
        return x
    if dst == "bfloat16":
        return f"ember_bf16_round((float)({x}))"
    if dst == "float8_e8m0fnu":
        return f"ember_to_e8m0((float)({x}), {int(saturate)}, {_ROUND_MODES[round_mode]})"
    if dst in _FLOAT_TAGS:
        return f"ember_to_{_FLOAT_TAGS[dst]}((float)({x}), {int(saturate)})"
    if dst in _INT_BITS:
        mask = (1 << _INT_BITS[dst][0]) - 1
        if plain in _FLOAT_VALUES:
            lo = -(1 << (_INT_BITS[dst][0] - 1)) if _INT_BITS[dst][1] else 0
            return f"ember_float_to_low_bits((double)({x}), {lo}, {mask}u)"
        return f"((uint8_t)((uint64_t)({x}) & {mask}u))"
    if dst == "bool":
        return f"((_Bool)(({x}) != 0))"
    return f"(({c_type(dst)})({x}))"

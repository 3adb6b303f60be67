"""How C writes the intrinsics of the loop IR (``ember.tir.intrinsics``), for the C generator
(``codegen/c.py``): one table for scalar code, one for vector code, keyed by the intrinsics'
names, and the vector math of the preamble (``VECTOR_MATH_C``, whose ISA-dependent parts are the
hooks of the ISA modules).

Scalar C: the float math is libm's (``expf`` for float32, ``exp`` for float64; float16 computes
in float, bfloat16 is float in expressions); integer ``abs`` and ``pow``, ``isnan``, the
multiply-add barrier and the dot products are written here or call the preamble's helpers.
Vector C (float32 lanes, ``ember_vf``): the preamble's vector functions where there is one, the
float32 libm function lane by lane (``EMBER_VMAP1``/``EMBER_VMAP2``) otherwise; the int32
``fixed_point_mul`` is the preamble's ``ember_vfixed_point_mul`` (int32 lanes, ``ember_vi``); the dot products
are written by the generator (``CGenerator.vdot4``: they need the operands' loads).
"""

from __future__ import annotations

from typing import Callable

from ..errors import CodegenError
from ..tir.expr import is_float_dtype

#: the libm functions of the float intrinsics: name -> (float32 function, float64 function)
LIBM = {
    "exp": ("expf", "exp"), "log": ("logf", "log"), "sqrt": ("sqrtf", "sqrt"), "tanh": ("tanhf", "tanh"),
    "erf": ("erff", "erf"), "floor": ("floorf", "floor"), "ceil": ("ceilf", "ceil"),
    "nearbyint": ("nearbyintf", "nearbyint"), "sin": ("sinf", "sin"), "cos": ("cosf", "cos"),
    "tan": ("tanf", "tan"), "asin": ("asinf", "asin"), "acos": ("acosf", "acos"), "atan": ("atanf", "atan"),
    "sinh": ("sinhf", "sinh"), "cosh": ("coshf", "cosh"), "asinh": ("asinhf", "asinh"),
    "acosh": ("acoshf", "acosh"), "atanh": ("atanhf", "atanh"), "pow": ("powf", "pow"),
    "abs": ("fabsf", "fabs"), "fmod": ("fmodf", "fmod"),
}


def math_call(fn: str, args: list[str], dtype: str) -> str:
    """C for the libm function of the float intrinsic ``fn`` on ``dtype``."""
    f32, f64 = LIBM[fn]
    if dtype == "float64":
        return f"{f64}({', '.join(args)})"
    if dtype == "float32":
        return f"{f32}({', '.join(args)})"
    if dtype == "float16":
        return f"((_Float16){f32}({', '.join(f'(float)({a})' for a in args)}))"
    if dtype == "bfloat16":
        return f"{f32}({', '.join(args)})"    # float32 arithmetic: rounded when stored
    raise CodegenError(f"math function {fn} on {dtype}")


def _libm(fn: str) -> Callable:
    return lambda args, arg_dtype, dtype, c_type: math_call(fn, args, dtype)


def _abs(args, arg_dtype, dtype, c_type):
    if is_float_dtype(arg_dtype):
        return math_call("abs", args, dtype)
    return f"({args[0]} < 0 ? -{args[0]} : {args[0]})" if not arg_dtype.startswith("uint") else args[0]


def _pow(args, arg_dtype, dtype, c_type):
    if is_float_dtype(arg_dtype):
        return math_call("pow", args, dtype)
    if arg_dtype == "bool":
        return f"((_Bool)({args[0]} || !{args[1]}))"
    fn_c = "ember_upow" if arg_dtype.startswith("uint") else "ember_ipow"
    return f"(({c_type(dtype)}){fn_c}({args[0]}, {args[1]}))"


def _isnan(args, arg_dtype, dtype, c_type):
    return f"((_Bool)isnan({args[0]}))" if is_float_dtype(arg_dtype) else "0"


def _helper(name: str) -> Callable:
    return lambda args, arg_dtype, dtype, c_type: f"{name}({', '.join(args)})"


#: scalar C of every intrinsic: name -> function of (C of the arguments, the arguments' dtype,
#: the result's dtype, ``c_type``) giving the C expression
SCALAR: dict[str, Callable] = {
    **{fn: _libm(fn) for fn in LIBM},
    "abs": _abs, "pow": _pow, "isnan": _isnan,
    "no_contract": _helper("EMBER_NO_CONTRACT"),
    "dot4_sat16": _helper("ember_dot4_sat16"), "dot4": _helper("ember_dot4"),
    "fixed_point_mul": _helper("ember_fixed_point_mul"),
}

#: vector C of the float32 intrinsics that have a vector function in the preamble (the other
#: float intrinsics run their float32 libm function lane by lane; the dot products: see above)
VECTOR = {"exp": "ember_vexp", "erf": "ember_verf", "tanh": "ember_vtanh", "nearbyint": "ember_vround",
          "no_contract": "EMBER_NO_CONTRACT", "fixed_point_mul": "ember_vfixed_point_mul"}


def _missing(fn: str, dtype: str, how: str) -> CodegenError:
    return CodegenError(f"the intrinsic {fn} on {dtype} has no {how} printing in the C code generator "
                        "(CPU targets)")


def scalar(fn: str, args: list[str], arg_dtype: str, dtype: str, c_type: Callable) -> str:
    """Scalar C for the call of ``fn`` on ``args`` (C expressions of ``arg_dtype``)."""
    p = SCALAR.get(fn)
    if p is None:
        raise _missing(fn, arg_dtype, "scalar")
    return p(args, arg_dtype, dtype, c_type)


def vector(fn: str, args: list[str]) -> str:
    """Vector C (float32 lanes) for the call of ``fn`` on ``args``."""
    if fn in VECTOR:
        return f"{VECTOR[fn]}({', '.join(args)})"
    if fn not in LIBM:
        raise _missing(fn, "float32 vectors", "vector")
    f32 = LIBM[fn][0]
    if len(args) == 1:
        return f"EMBER_VMAP1({f32}, {args[0]})"
    return f"EMBER_VMAP2({f32}, {args[0]}, {args[1]})"


# Vector exp: 2^n * e^r with n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2] (ln 2 split in
# two parts for exactness), e^r by a degree-6 polynomial (relative error ~1e-7), 2^n built in the
# exponent bits.  Inputs are clamped to the float range; NaN propagates through the clamps.
# Vector erf: x p(x^2) / q(x^2), a rational minimax fit (degree 13 over 8) on [-4, 4] with x
# clamped to it (erf(4) rounds to 1 in float32): absolute error < 5e-7, one division and twelve
# FMAs, a quarter of the work of an exp-based form (it runs in matmul epilogues, BERT's GELU).
VECTOR_MATH_C = """
static inline ember_vf ember_vexp(ember_vf x) {
  const ember_vf hi = (ember_vf){} + 88.72283935546875f, lo = (ember_vf){} - 104.0f;
  ember_vf xc = ember_vsel(x > hi, hi, ember_vsel(x < lo, lo, x));
  ember_vf n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round to nearest */
  ember_vf r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  ember_vf p = (ember_vf){} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f; p = p * r + 8.3334519073e-3f; p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f; p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  /* 2^n as 2^(n/2) * 2^(n - n/2): both factors stay normal floats for n in [-150, 128] */
  ember_vi ni = __builtin_convertvector(n, ember_vi);
  ember_vi e1 = ni >> 1, e2 = ni - e1;
  ember_vf out = p * (ember_vf)((e1 + 127) << 23) * (ember_vf)((e2 + 127) << 23);
  out = ember_vsel(x > hi, (ember_vf){} + __builtin_inff(), out);
  return ember_vsel(x != x, x, out);
}
static inline ember_vf ember_verf(ember_vf x) {
  ember_vf xc = ember_vmin(ember_vmax(x, (ember_vf){} - 4.0f), (ember_vf){} + 4.0f);
  ember_vf x2 = xc * xc;
  ember_vf p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f; p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f; p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  ember_vf q = x2 * -1.45660718464996e-05f - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f; q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return xc * p / q;
}
/* round half to even (nearbyint in the default rounding mode): one instruction with AVX;
   otherwise, below 2^23 in magnitude adding and taking away 2^23 leaves the nearest integer,
   and larger values and NaN are integral already */
static inline ember_vf ember_vround(ember_vf x) {
@vround@}
static inline ember_vf ember_vtanh(ember_vf x) {
  ember_vf ax = ember_vsel(x < 0.0f, -x, x);
  ember_vf e = ember_vexp(-2.0f * ax);
  ember_vf big = (1.0f - e) / (1.0f + e);
  ember_vf x2 = x * x;
  ember_vf small = x * (1.0f + x2 * (-0.333333333f + x2 * (0.133333333f + x2 * (-0.0539682540f
                   + x2 * 0.0218694885f))));
  big = ember_vsel(x < 0.0f, -big, big);
  return ember_vsel(ax < 0.25f, small, ember_vsel(x != x, x, big));
}
"""

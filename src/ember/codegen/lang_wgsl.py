"""WGSL (WebGPU compute shaders) from the GPU loop IR: the ``wgsl`` language of ``codegen/gpu.py``.

WGSL is further from C than CUDA and OpenCL C are, so this module is a writer of its own on the
shared generator (:class:`~ember.codegen.gpu.GPUGenerator`: names, helpers, the kernel check):

* **One shader module per kernel**, each starting with a ``// ember kernel NAME`` line; the
  artifact's source is their concatenation (the runtime and the browser loader split it there).
* **No pointers**: a kernel's buffers are storage buffer *bindings* of group 0.  Buffers that lie
  in one device buffer (the arena, the constants) share a binding, a window of that buffer of at
  most :data:`MAX_BINDING_BYTES` (WebGPU's default binding size limit), each buffer at its word
  offset in the window; a model input or output is a binding of its own.  So a kernel needs a few
  bindings, whatever the number of its operands (WebGPU's default is 8 storage buffers per stage).
  Every binding is an ``array<u32>`` and each element is reinterpreted (``bitcast``) on access,
  since one window holds buffers of several dtypes.
* **32-bit integers only**: indices are ``i32`` (a kernel whose buffers or launch need 64-bit
  indices is refused by name), int64 values are computed in ``i32``: an int64 element is read as
  its two words, and one outside the 32-bit range sets bit 2 of the flag (the runtime raises
  :class:`~ember.errors.EmberRuntimeError`); an int64 constant outside it is refused at compile
  time, except the extremes (reduction identities, open slice ends), which become the 32-bit
  ones.  Arithmetic that leaves 32 bits wraps there (not detected).  uint64 is refused (it wraps
  at 2**64).  8- and 16-bit elements are packed in words: stored with atomic and/or on their word (the
  binding is then ``array<atomic<u32>>``), since neighbouring threads write neighbouring bytes.
* **No float64 or float16**: refused by name.  Math is f32; ``erf`` (missing from WGSL) is a
  polynomial, ``tanh`` and ``pow`` are helpers (the builtins lose precision near 0, or are undefined
  for a negative base), NaN is tested on the bits (drivers may fold ``x != x`` to false).
* **No ternary**: ``select`` evaluates both sides, which is the same where they have no effects;
  a select whose side holds a run-time index check becomes an ``if`` before the statement.
* Shared buffers are module-scope ``var<workgroup>`` arrays, the barrier ``workgroupBarrier()``.
  A grid of more than 65535 blocks on an axis (WebGPU's dispatch limit) is dispatched as a 2-D grid
  of the linear block number, the blocks past the end returning at once.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from ..errors import CodegenError
from ..tir.expr import BinOp, Call, Cast, Const, Expr, IndexCheck, Load, Not, Select
from ..tir.gpu import DeviceLimits, check_kernel
from ..tir.stmt import For, PrimFunc, Store, walk_stmts
from .c import unique_name
from .gpu import GPUGenerator, no_printing

NAME = "wgsl"
SUFFIX = ".wgsl"

#: the WGSL type of a value of each dtype (in expressions; in storage see ``_WIDTH``): 8- and 16-bit
#: integers are computed in i32, as C promotes them to int
TYPES = {"float32": "f32", "int32": "i32", "int64": "i32", "int16": "i32", "int8": "i32", "uint8": "i32",
         "uint16": "i32", "uint32": "u32", "bool": "bool"}
#: int64 constants that stand for the type's extremes (the identities of max and min
#: reductions, open slice ends) become the 32-bit extremes: every int64 value is within those
_SENTINELS = {-(1 << 63): -(1 << 31), (1 << 63) - 1: (1 << 31) - 1}
_WIDTH = {"float32": 4, "int32": 4, "uint32": 4, "int64": 8, "int16": 2, "uint16": 2, "int8": 1,
          "uint8": 1, "bool": 1}

#: WebGPU's default limits: a storage binding's bytes, threads per workgroup and per axis,
#: workgroups per dispatch axis, workgroup memory
MAX_BINDING_BYTES = 128 << 20
MAX_DISPATCH = 65535
LIMITS = DeviceLimits(max_threads=256, max_block=(256, 256, 64),
                      max_grid=((1 << 31) - 1, (1 << 31) - 1, (1 << 31) - 1), max_shared_bytes=16384)

#: the bits of the flag: a run-time index check failed; an int64 value did not fit in 32 bits
FLAG_INDEX, FLAG_INT64 = 1, 2

MARKER = "// ember kernel "
BARRIER = "workgroupBarrier();"

_BINOPS = {"add": "+", "sub": "-", "mul": "*", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">",
           "ge": ">=", "and": "&&", "or": "||"}
_BUILTIN = {"exp": "exp", "log": "log", "sqrt": "sqrt", "floor": "floor", "ceil": "ceil", "nearbyint": "round",
            "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan",
            "sinh": "sinh", "cosh": "cosh", "asinh": "asinh", "acosh": "acosh", "atanh": "atanh", "abs": "abs"}

# helpers written once per module (f32 math WGSL lacks or computes too coarsely)
_ISNAN = "fn ember_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }"
# NaN and infinity come from private variables: a WGSL constant expression may not evaluate to
# them (Tint refuses bitcast<f32>(0x7f800000u) as a shader-creation error)
_SPECIAL = {"nan": 0x7FC00000, "inf": 0x7F800000, "ninf": 0xFF800000}
_NAN = "bitcast<f32>(ember_bits_nan)"
# tanh: the odd Taylor series below 0.3 (the builtin is (e^2x-1)/(e^2x+1), coarse near 0), else 1 - 2/(e^2|x|+1)
_TANH = """fn ember_tanh(x: f32) -> f32 {
  if (ember_isnan(x)) { return x; }
  let a = abs(x);
  if (a < 0.3f) {
    let s = x * x;
    return x * (1.0f + s * (-0.333333333f + s * (0.133333333f + s * (-0.0539682540f + s * (0.0218694885f
                + s * -0.00886323552f)))));
  }
  let r = 1.0f - 2.0f / (exp(2.0f * min(a, 20.0f)) + 1.0f);
  return select(r, -r, x < 0.0f);
}"""
# erf: the Taylor series below 0.5; above, Abramowitz and Stegun 7.1.26 (absolute error 1.5e-7)
_ERF = """fn ember_erf(x: f32) -> f32 {
  if (ember_isnan(x)) { return x; }
  let a = abs(x);
  if (a < 0.5f) {
    let s = x * x;
    return 1.12837917f * x * (1.0f + s * (-0.333333333f + s * (0.1f + s * (-0.0238095238f + s * (0.00462962963f
                + s * -0.000757575758f)))));
  }
  let t = 1.0f / (1.0f + 0.3275911f * a);
  let p = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  let r = 1.0f - p * exp(-a * a);
  return select(r, -r, x < 0.0f);
}"""
# pow: as C's powf for a negative base (an integer exponent), x^0 = 1; exact squares
_POW = f"""fn ember_pow(a: f32, b: f32) -> f32 {{
  if (b == 0.0f) {{ return 1.0f; }}
  if (b == 1.0f) {{ return a; }}
  if (b == 2.0f) {{ return a * a; }}
  let odd = floor(b) == b && b - 2.0f * floor(0.5f * b) == 1.0f;
  if (a == 0.0f) {{     // the builtin is exp2(b * log2(a)): wrong for a zero base
    let z = select(0.0f, bitcast<f32>(ember_bits_inf), b < 0.0f);
    return select(z, -z, odd && (bitcast<u32>(a) >> 31u) == 1u);
  }}
  let r = pow(abs(a), b);
  if (!(a < 0.0f)) {{ return r; }}
  if (floor(b) != b) {{ return {_NAN}; }}
  return select(r, -r, odd);
}}"""



# the f32 intrinsics written with a helper function: name -> writer of (generator, arguments)
def _tanh(g, args):
    g.helper("ember_isnan", _ISNAN)
    return f"{g.helper('ember_tanh', _TANH)}({args[0]})"


def _erf(g, args):
    g.helper("ember_isnan", _ISNAN)
    return f"{g.helper('ember_erf', _ERF)}({args[0]})"


def _pow(g, args):
    for sp in ("nan", "inf"):
        g.helper(f"ember_bits_{sp}", f"var<private> ember_bits_{sp}: u32 = {_SPECIAL[sp]:#x}u;")
    return f"{g.helper('ember_pow', _POW)}({args[0]}, {args[1]})"


def _inverse_trig(fn: str):
    def write(g, args):     # lavapipe's asin and acos are coarse (1e-4); atan2 is not
        g.helper("ember_isnan", _ISNAN)
        g.helper("ember_bits_nan", f"var<private> ember_bits_nan: u32 = {_SPECIAL['nan']:#x}u;")
        ratio = "x, r" if fn == "asin" else "r, x"
        name = g.helper(f"ember_{fn}", f"fn ember_{fn}(x: f32) -> f32 {{\n"
                                       f"  if (ember_isnan(x) || abs(x) > 1.0f) {{ return {_NAN}; }}\n"
                                       f"  let r = sqrt((1.0f - x) * (1.0f + x));\n  return atan2({ratio});\n}}")
        return f"{name}({args[0]})"
    return write


def _fmod(g, args):     # WGSL's % is a - b * trunc(a / b): NaN for an infinite b, where fmod gives a
    fn = g.helper("ember_fmod", "fn ember_fmod(a: f32, b: f32) -> f32 {\n"
                                "  if ((bitcast<u32>(b) & 0x7fffffffu) == 0x7f800000u && "
                                "(bitcast<u32>(a) & 0x7fffffffu) < 0x7f800000u) { return a; }\n"
                                "  return a % b;\n}")
    return f"{fn}({args[0]}, {args[1]})"


def _atan(g, args):     # lavapipe's gives 0 for a NaN
    g.helper("ember_isnan", _ISNAN)
    fn = g.helper("ember_atan", "fn ember_atan(x: f32) -> f32 { return select(atan(x), x, ember_isnan(x)); }")
    return f"{fn}({args[0]})"


_F32_HELPERS = {"tanh": _tanh, "erf": _erf, "pow": _pow, "asin": _inverse_trig("asin"),
                "acos": _inverse_trig("acos"), "fmod": _fmod, "atan": _atan}


def printed_intrinsics() -> set:
    """The intrinsics (``ember.tir.intrinsics``) WGSL can print (for some dtype)."""
    return {"no_contract", "isnan", "abs", "pow"} | set(_F32_HELPERS) | set(_BUILTIN)

def _ty(dtype: str) -> str:
    t = TYPES.get(dtype)
    if t is None:
        what = {"float64": "64-bit float", "uint64": "64-bit integer (uint64 wraps at 2**64, not 2**32)"}
        raise CodegenError(f"dtype {dtype} is not supported by the WebGPU backend (WGSL has no "
                           f"{what.get(dtype, dtype)} type)")
    return t


def _zero(t: str) -> str:
    return {"f32": "0.0f", "i32": "0i", "u32": "0u", "bool": "false"}[t]


def _one(t: str) -> str:
    return {"f32": "1.0f", "i32": "1i", "u32": "1u", "bool": "true"}[t]


def special_f32(v: float) -> str | None:
    """The name of the private variable holding the bits of a NaN or an infinity ``v``, else None."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "ninf"
    return None


def f32_literal(v: float) -> str:
    """A finite float32 (NaN and infinity: :func:`special_f32`)."""
    f = np.float32(v)
    if np.isinf(f):
        raise CodegenError(f"the constant {v} does not fit in float32")
    s = f"{float(f):.9g}"
    if "e" not in s and "." not in s:
        s += ".0"
    return f"({s}f)" if s.startswith("-") else s + "f"


def int_literal(v: int, dtype: str, where: str) -> str:
    if dtype == "int64":
        v = _SENTINELS.get(v, v)
    if TYPES[dtype] == "u32":
        if not 0 <= v < (1 << 32):
            raise CodegenError(f"{where}: the {dtype} constant {v} does not fit in 32 bits (WGSL has no 64-bit "
                               "integers)")
        return f"{v}u"
    if not -(1 << 31) <= v < (1 << 31):
        raise CodegenError(f"{where}: the {dtype} constant {v} does not fit in 32 bits (WGSL has no 64-bit "
                           "integers)")
    if v == -(1 << 31):
        return "i32(-2147483647 - 1)"
    return f"{v}i" if v >= 0 else f"({v}i)"


def _has_check(e: Expr) -> bool:
    if isinstance(e, IndexCheck):
        return True
    return any(_has_check(c) for c in _children(e))


def _children(e: Expr) -> list:
    if isinstance(e, BinOp):
        return [e.a, e.b]
    if isinstance(e, (Not, Cast)):
        return [e.a]
    if isinstance(e, Call):
        return list(e.args)
    if isinstance(e, Select):
        return [e.cond, e.t, e.f]
    if isinstance(e, Load):
        return [e.index]
    if isinstance(e, IndexCheck):
        return [e.index, e.extent]
    return []


class _Binding:
    """One storage binding of a kernel: where it comes from (the runtime's argument spec) and
    whether it is written and written by parts of words (atomics)."""

    def __init__(self, spec: list, writable: bool):
        self.spec, self.writable, self.atomic, self.used, self.var = spec, writable, False, False, ""


def _windows(items: list, pool: str) -> dict:
    """Bindings for the buffers of a kernel that lie in one device buffer: ``items`` is
    [(buffer, byte offset, bytes)]; windows of consecutive buffers, each within MAX_BINDING_BYTES."""
    out: dict = {}
    cur: list = []

    def close():
        if cur:
            lo = cur[0][1]
            hi = max(off + n for _, off, n in cur)
            b = _Binding([pool, lo, (hi - lo + 3) // 4 * 4], pool == "arena")
            for buf, off, _ in cur:
                out[buf] = (b, off - lo)
    for buf, off, n in sorted(items, key=lambda t: t[1]):
        if n > MAX_BINDING_BYTES:
            raise CodegenError(f"buffer {buf.name} has {n} bytes: a WebGPU storage binding holds at most "
                               f"{MAX_BINDING_BYTES}")
        if cur and off + n - cur[0][1] > MAX_BINDING_BYTES:
            close()
            cur = []
        cur.append((buf, off, n))
    close()
    return out


class WGSLGenerator(GPUGenerator):
    """Writes one WGSL shader module per kernel (see the module's docstring); made by
    :func:`ember.codegen.gpu.generator` for the ``wgsl`` language.  The expression walk is the C
    writer's; loads, stores, constants, casts, selects, operators and calls are WGSL's own."""

    def __init__(self, limits: DeviceLimits | None = None):
        self.lang = sys.modules[__name__]
        self.limits = limits or LIMITS
        self.kernels: list[str] = []
        self.contract = True
        self.fp64 = False

    # ---- names, helpers ------------------------------------------------------------------------

    def name(self, obj, hint: str) -> str:
        return unique_name(self._names, self._used, obj, "v_" + hint)

    def tmp(self, hint: str) -> str:
        return self.name(object(), hint)

    # ---- storage -------------------------------------------------------------------------------

    def _where(self, buf) -> tuple:
        b, off = self._views[buf]
        b.used = True
        return b, off

    def _read(self, b: _Binding, w: str) -> str:
        return f"atomicLoad(&{b.var}[{w}])" if b.atomic else f"{b.var}[{w}]"

    def _write(self, b: _Binding, w: str, v: str) -> str:
        return f"atomicStore(&{b.var}[{w}], {v});" if b.atomic else f"{b.var}[{w}] = {v};"

    def load(self, e: Load) -> str:
        buf = e.buffer
        idx = self.expr(e.index)
        if buf.scope != "global":
            return f"{self.name(buf, buf.name)}[{idx}]"
        b, off = self._where(buf)
        width, dt = _WIDTH.get(buf.dtype), buf.dtype
        _ty(dt)
        if width == 4:
            raw = self._read(b, f"{off // 4}i + {idx}")
            return {"f32": f"bitcast<f32>({raw})", "i32": f"bitcast<i32>({raw})", "u32": raw}[TYPES[dt]]
        if width == 8:
            fn = f"ember_ld64_{b.var}"
            self.helper(fn, f"fn {fn}(w: i32) -> i32 {{\n  let lo = {self._read(b, 'w')};\n"
                            f"  let hi = {self._read(b, 'w + 1i')};\n"
                            "  if (hi != u32(bitcast<i32>(lo) >> 31u)) { "
                            f"atomicOr(&ember_bad[0], {FLAG_INT64}u); }}\n  return bitcast<i32>(lo);\n}}")
            self._flag = True
            return f"{fn}({off // 4}i + 2i * ({idx}))"
        fn = f"ember_ld{width * 8}_{b.var}"
        mask = "0xffu" if width == 1 else "0xffffu"
        self.helper(fn, f"fn {fn}(byte: i32) -> u32 {{\n"
                        f"  return ({self._read(b, 'byte >> 2u')} >> (u32(byte & 3i) * 8u)) & {mask};\n}}")
        raw = f"{fn}({off}i + {width}i * ({idx}))"
        if dt == "bool":
            return f"({raw} != 0u)"
        if dt in ("int8", "int16"):
            s = 32 - 8 * width
            return f"(bitcast<i32>({raw} << {s}u) >> {s}u)"
        return f"i32({raw})"

    def store(self, s: Store, ind: str, out: list) -> None:
        buf = s.buffer
        idx, val = self.expr(s.index), self.expr(s.value)
        self.flush(ind, out)
        if buf.scope != "global":
            out.append(f"{ind}{self.name(buf, buf.name)}[{idx}] = {val};")
            return
        b, off = self._where(buf)
        width, dt = _WIDTH[buf.dtype], buf.dtype
        if width == 4:
            v = val if TYPES[dt] == "u32" else f"bitcast<u32>({val})"
            out.append(f"{ind}{self._write(b, f'{off // 4}i + {idx}', v)}")
        elif width == 8:
            w, v = self.tmp("w"), self.tmp("v")
            out.append(f"{ind}{{ let {w} = {off // 4}i + 2i * ({idx}); let {v} = {val};")
            hi, lo = f"bitcast<u32>({v} >> 31u)", f"bitcast<u32>({v})"
            out.append(f"{ind}  {self._write(b, w, lo)} {self._write(b, f'{w} + 1i', hi)} }}")
        else:
            fn = f"ember_st{width * 8}_{b.var}"
            mask = "0xffu" if width == 1 else "0xffffu"
            self.helper(fn, f"fn {fn}(byte: i32, v: u32) {{\n"
                            "  let w = byte >> 2u;\n  let sh = u32(byte & 3i) * 8u;\n"
                            f"  atomicAnd(&{b.var}[w], ~({mask} << sh));\n"
                            f"  atomicOr(&{b.var}[w], ({mask} & v) << sh);\n}}")
            v = f"select(0u, 1u, {val})" if dt == "bool" else (f"bitcast<u32>({val})" if TYPES[dt] == "i32" else val)
            out.append(f"{ind}{fn}({off}i + {width}i * ({idx}), {v});")

    # ---- expressions -----------------------------------------------------------------------------

    def const(self, c: Const) -> str:
        if c.dtype == "bool":
            return "true" if c.value else "false"
        if c.dtype == "float32":
            sp = special_f32(c.value)
            if sp is None:
                return f32_literal(c.value)
            name = f"ember_bits_{sp}"
            return f"bitcast<f32>({self.helper(name, f'var<private> {name}: u32 = {_SPECIAL[sp]:#x}u;')})"
        _ty(c.dtype)
        return int_literal(int(c.value), c.dtype, f"GPU kernel {self._kname}")

    def index_check(self, e: IndexCheck) -> str:
        self.helper("ember_index", "fn ember_index(i: i32, n: i32) -> i32 {\n"
                                   "  let j = select(i, i + n, i < 0i);\n"
                                   f"  if (j < 0i || j >= n) {{ atomicOr(&ember_bad[0], {FLAG_INDEX}u); return 0i; }}\n"
                                   "  return j;\n}")
        self._flag = True
        return f"ember_index({self.expr(e.index)}, {self.expr(e.extent)})"

    def select(self, e: Select) -> str:
        if not (_has_check(e.t) or _has_check(e.f)):
            return f"select({self.expr(e.f)}, {self.expr(e.t)}, {self.expr(e.cond)})"
        # a side with effects (an index check) runs only when chosen: an if before the statement
        tmp = self.tmp("sel")
        cond = self.expr(e.cond)
        self._pre.append(f"var {tmp}: {_ty(e.dtype)};")
        self._pre.append(f"if ({cond}) {{")
        for side, word in ((e.t, "} else {"), (e.f, "}")):
            outer, self._pre = self._pre, []
            v = self.expr(side)
            inner, self._pre = self._pre, outer
            self._pre += ["  " + x for x in inner] + [f"  {tmp} = {v};", word]
        return tmp

    def flush(self, ind: str, out: list) -> None:
        out += [ind + x for x in self._pre]
        self._pre = []

    def cast(self, e: Cast) -> str:
        a, src, dst = self.expr(e.a), e.a.dtype, e.dtype
        st, dt = _ty(src), _ty(dst)
        if dt == "bool":
            return f"({a} != {_zero(st)})" if st != "bool" else a
        if st == "bool":
            v = f"select({_zero(dt)}, {_one(dt)}, {a})"
        elif st == dt:
            v = a
        else:
            v = f"{dt}({a})"
        if dst in ("int8", "int16"):
            s = 32 - 8 * _WIDTH[dst]
            return f"(({v} << {s}u) >> {s}u)"
        if dst in ("uint8", "uint16"):
            return f"({v} & {'255i' if dst == 'uint8' else '65535i'})"
        return v

    def binop(self, e: BinOp) -> str:
        a, b = self.expr(e.a), self.expr(e.b)
        dt = e.a.dtype
        t = _ty(dt)
        if t == "bool" and e.op in ("add", "sub", "mul", "max", "min"):
            return f"({a} {dict(add='||', sub='!=', mul='&&', max='||', min='&&')[e.op]} {b})"
        if e.op in ("and", "or") and t != "bool":
            raise CodegenError(f"GPU kernel {self._kname}: logical {e.op} on {dt}")
        if e.op == "ne" and t == "f32":      # a driver may make != ordered (false with a NaN); == is
            return f"(!({a} == {b}))"          # ordered in IEEE too
        if e.op in _BINOPS:
            return f"({a} {_BINOPS[e.op]} {b})"
        if e.op in ("max", "min"):
            if t != "f32":
                return f"{e.op}({a}, {b})"
            self.helper("ember_isnan", _ISNAN)
            cmp = ">" if e.op == "max" else "<"
            fn = self.helper(f"ember_{e.op}", f"fn ember_{e.op}(a: f32, b: f32) -> f32 "
                                              f"{{ return select(b, a, a {cmp} b || ember_isnan(a)); }}")
            return f"{fn}({a}, {b})"
        if e.op in ("div", "mod"):
            if t == "f32":
                return f"({a} {'/' if e.op == 'div' else '%'} {b})"    # WGSL's f32 % is C's fmod
            if isinstance(e.b, Const) and e.b.value > 0:
                return f"({a} {'/' if e.op == 'div' else '%'} {b})"
            # C's division, defined for a zero divisor (0) and for MIN / -1 (as the CPU backend)
            if t == "i32":
                body = ("if (b == 0i) { return 0i; } if (b == -1i) { return -a; } return a / b;" if e.op == "div"
                        else "if (b == 0i || b == -1i) { return 0i; } return a % b;")
            else:
                body = f"if (b == 0u) {{ return 0u; }} return a {'/' if e.op == 'div' else '%'} b;"
            fn = self.helper(f"ember_{e.op}_{t}", f"fn ember_{e.op}_{t}(a: {t}, b: {t}) -> {t} {{ {body} }}")
            return f"{fn}({a}, {b})"
        raise CodegenError(f"unknown binary op {e.op}")

    def call(self, e: Call) -> str:
        args = [self.expr(a) for a in e.args]
        dt = e.args[0].dtype
        t = _ty(dt)
        if e.fn == "no_contract":
            return args[0]          # WGSL does not fuse a multiply into an add on its own
        if e.fn == "isnan":
            return f"{self.helper('ember_isnan', _ISNAN)}({args[0]})" if t == "f32" else "false"
        if e.fn == "abs" and t != "f32":
            return f"abs({args[0]})" if t == "i32" else args[0]
        if e.fn == "pow" and t != "f32":
            neg = ("  if (b < 0i) { if (a == -1i) { return select(1i, -1i, (b & 1i) != 0i); } "
                   "return select(0i, 1i, a == 1i); }\n" if t == "i32" else "")
            fn = self.helper(f"ember_pow_{t}", f"fn ember_pow_{t}(x: {t}, y: {t}) -> {t} {{\n"
                                               f"  var a = x; var b = y; var r = {_one(t)};\n" + neg
                                               + f"  loop {{ if (b <= {_zero(t)}) {{ break; }} "
                                               f"if ((b & {_one(t)}) != {_zero(t)}) {{ r = r * a; }} "
                                               f"a = a * a; b = b >> 1u; }}\n  return r;\n}}")
            return f"{fn}({args[0]}, {args[1]})"
        if t == "f32" and e.fn in _F32_HELPERS:
            return _F32_HELPERS[e.fn](self, args)
        if t == "f32" and e.fn in _BUILTIN:
            return f"{_BUILTIN[e.fn]}({', '.join(args)})"
        raise no_printing(e.fn, dt, "WebGPU")

    # ---- statements --------------------------------------------------------------------------------

    def bound_var(self, v: str, prefix: str, axis: str, extent: int) -> str:
        src = self._block[axis] if prefix == "blockIdx" else f"i32(ember_lid.{axis})"
        return f"let {v}: i32 = {src};  // one of {extent}"

    def loop_head(self, v: str, s: For) -> list:
        return [f"for (var {v}: i32 = 0i; {v} < {s.extent}i; {v} = {v} + 1i) {{"]

    def allocate(self, b, ind: str, out: list) -> None:
        decl = f"array<{_ty(b.dtype)}, {b.size}>"
        if b.scope == "shared":
            self._workgroup.append(f"var<workgroup> {self.name(b, b.name)}: {decl};")
        else:
            out.append(f"{ind}var {self.name(b, b.name)}: {decl};")

    def kernel(self, f: PrimFunc, places: list | None = None) -> str:
        """Check and write kernel ``f`` as a shader module; returns it.  ``places`` gives each
        parameter's storage (the driver's ``["input", k]``, ``["output", k]``, ``["arena", offset,
        bytes]``, ``["const", offset, bytes]``); without it each parameter is a binding of its own
        (``["param", k]``).  ``f.attrs["launch"]`` receives the dispatch size, the block and the
        bindings in order (``"bindings"``: those argument specs, ``["flag"]`` for the flag)."""
        launch = check_kernel(f, self.limits)
        self._kname = f.name
        if f.attrs.get("index_bits", 64) != 32:
            raise CodegenError(f"GPU kernel {f.name}: a buffer or the launch has 2**31 elements or more; WGSL "
                               "indices are 32-bit")
        self._names, self._used, self.helpers = {}, set(), {}
        self._pre: list[str] = []
        self._workgroup: list[str] = []
        self._flag = False
        kname = self.name(f, f.name)
        # the bindings: windows of the arena and the constants, one per input, output or parameter
        self._views: dict = {}
        pools: dict = {"arena": [], "const": []}
        for k, buf in enumerate(f.params):
            p = list(places[k]) if places else ["param", k]
            if p[0] in pools:
                pools[p[0]].append((buf, int(p[1]), int(p[2])))
            else:
                self._views[buf] = (_Binding(p, p[0] != "input" and not buf.const), 0)
        for pool, items in pools.items():
            self._views.update(_windows(items, pool))
        for s in walk_stmts(f.body):
            if isinstance(s, Store) and s.buffer.scope == "global" and _WIDTH.get(s.buffer.dtype, 4) < 4:
                self._views[s.buffer][0].atomic = True
        bindings = list(dict.fromkeys(b for b, _ in self._views.values()))
        for k, b in enumerate(bindings):
            b.var = f"ember_b{k}"
        # the grid: as it is, or linear over a 2-D dispatch where an axis has more than 65535 blocks
        grid = launch.grid
        total = grid[0] * grid[1] * grid[2]
        body: list[str] = []
        if max(grid) > MAX_DISPATCH:
            dx = MAX_DISPATCH
            dispatch = [dx, -(-total // dx), 1]
            body.append(f"  let ember_blk = i32(ember_wid.x + ember_wid.y * {dx}u);")
            body.append(f"  if (ember_blk >= {total}i) {{ return; }}")
            self._block = {"x": f"ember_blk % {grid[0]}i", "y": f"(ember_blk / {grid[0]}i) % {grid[1]}i",
                           "z": f"ember_blk / {grid[0] * grid[1]}i"}
        else:
            dispatch = list(grid)
            self._block = {a: f"i32(ember_wid.{a})" for a in "xyz"}
        self.stmt(f.body, "  ", body)
        used = [b for b in bindings if b.used]
        decls = []
        for k, b in enumerate(used):
            elem = "atomic<u32>" if b.atomic else "u32"
            access = "read_write" if (b.writable or b.atomic) else "read"
            decls.append(f"@group(0) @binding({k}) var<storage, {access}> {b.var}: array<{elem}>;")
        specs = [b.spec for b in used]
        if self._flag:
            decls.append(f"@group(0) @binding({len(used)}) var<storage, read_write> ember_bad: array<atomic<u32>>;")
            specs.append(["flag"])
        blk = launch.block
        comment = f"// {f.comment}\n" if f.comment else ""
        src = (f"{MARKER}{kname}\n{comment}" + "".join(d + "\n" for d in decls + self._workgroup)
               + "".join(h + "\n" for h in self.helpers.values())
               + f"@compute @workgroup_size({blk[0]}, {blk[1]}, {blk[2]})\n"
               f"fn {kname}(@builtin(workgroup_id) ember_wid: vec3<u32>, "
               "@builtin(local_invocation_id) ember_lid: vec3<u32>) {\n" + "\n".join(body) + "\n}\n")
        f.attrs["launch"] = {"name": kname, "grid": dispatch, "block": list(blk), "checks": self._flag,
                             "bindings": specs}
        self.kernels.append(src)
        return src

    def source(self) -> str:
        """Every kernel's shader module, in order, each after its ``// ember kernel NAME`` line."""
        return "// WGSL generated by Ember: one shader module per kernel\n" + "\n".join(self.kernels)


def split_modules(source: str) -> dict:
    """The shader module of each kernel in an artifact's WGSL source, by kernel name."""
    out = {}
    for part in source.split("\n" + MARKER)[1:]:
        name = part.split("\n", 1)[0].strip()
        out[name] = MARKER + part
    return out

"""C code generation for CPUs from the loop IR.

Vector code uses the C compiler's vector extensions (``vector_size``), so the same source
serves AVX2 (8 floats), SSE, NEON, wasm SIMD128 and RVV (4 floats) depending on the target's
vector width.  What the vector extensions cannot say (NaN-propagating max/min, rounding, 8-bit dot
products, a barrier against fused multiply-adds) comes from the target's ISA module
(``isa_x86``, ``isa_neon``, ``isa_wasm``, ``isa_riscv``) with the generic C of ``isa_generic``
as every intrinsic's fallback.  Calls of the loop IR's intrinsics (``ember.tir.intrinsics``) are
written from the tables of ``c_intrinsics``.
A loop marked "parallel" at the top of a kernel is outlined into a task function that the
runtime's thread pool runs in chunks (``ember_parallel_for``).  A kernel with run-time checks
(``IndexCheck``) takes the run's ``ember_check`` as its last argument (see ember_kernel.h); the
generator collects the checks' sites, which :func:`module_source` writes as a table.

Every kernel is first written in a *canonical* form that holds nothing of the model: the kernel
is ``ember__kernel``, its parameters and size variables ``ember__p<k>`` and ``ember__s<k>``, its
check sites numbered from 0 (:class:`KernelC`).  Its symbol, ``ember_k_<hash>``, is a hash of that
form, so the same kernel in two models is one object file (``toolchain.cc`` caches objects by
it), and :func:`model_units` gives a model as C files: one header shared by all of them
(``model.h``: the preamble), one per distinct kernel, written with the readable names (the
group's, the tensors') and ``#define NAME ember_k_<hash>``, and the entry's (``model.c``).
:func:`module_source` gives the same code as one translation unit.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import CodegenError
from ..tir.expr import (BinOp, Broadcast, Call, Cast, Const, Expr, IndexCheck, Load, Not, Ramp, Select, Shuffle, SizeVar, Var,
                        COMPARISONS, is_float_dtype)
from ..tir.stmt import Allocate, Buffer, For, IfThenElse, PrimFunc, Seq, Stmt, Store, walk_stmts
from ..tir.analysis import kept, planned_extent, size_vars_of, upper_bound
from ..tir.intrinsics import DOT_CALLS
from ..tir.transform import lanes_of
from . import c_dtypes, c_intrinsics, isa_generic, isa_neon, isa_riscv, isa_wasm, isa_x86
from .c_shared import SharedPlan

#: the C type that stores each dtype (bfloat16 and the narrow types: see ``c_dtypes``)
C_TYPES = {
    "float32": "float", "float64": "double", "float16": "_Float16",
    "int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "int64": "int64_t",
    "uint8": "uint8_t", "uint16": "uint16_t", "uint32": "uint32_t", "uint64": "uint64_t",
    "bool": "_Bool", **c_dtypes.STORAGE,
}

_BINOPS = {"add": "+", "sub": "-", "mul": "*", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">",
           "ge": ">=", "and": "&&", "or": "||"}
_VEC_BINOPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "eq": "==", "ne": "!=", "lt": "<", "le": "<=",
               "gt": ">", "ge": ">=", "and": "&", "or": "|"}

def c_type(dtype: str) -> str:
    try:
        return C_TYPES[dtype]
    except KeyError:
        raise CodegenError(f"dtype {dtype} is not supported by the C backend yet") from None


def c_ident(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    if not s or s[0].isdigit():
        s = "t_" + s
    return s


#: Identifiers generated code must not define: C keywords, what the headers it includes declare
#: (math, stdlib, string, stdint, time), and the names the preamble and runtime use.  Names that
#: start with "_" or "ember"/"EMBER" are reserved for Ember itself.
RESERVED = frozenset("""
auto break case char const continue default do double else enum extern float for goto if inline
int long register restrict return short signed sizeof static struct switch typedef union unsigned
void volatile while main _Bool _Complex _Float16 bool true false NULL asm typeof
acos acosf acosh acoshf acoshl acosl asin asinf asinh asinhf asinhl asinl atan atan2 atan2f atan2l
atanf atanh atanhf atanhl atanl cbrt cbrtf ceil ceilf ceill copysign copysignf cos cosf cosh coshf
coshl cosl erf erfc erfcf erff exp exp10 exp2 exp2f expf expl expm1 expm1f fabs fabsf fabsl fdim
fdimf floor floorf floorl fma fmaf fmax fmaxf fmin fminf fmod fmodf frexp gamma hypot hypotf ilogb
isfinite isinf isnan isnormal j0 j1 jn ldexp lgamma llrint llround log log10 log10f log1p log1pf
log2 log2f logb logf logl lrint lround modf nan nanf nearbyint nearbyintf nextafter pow powf
remainder remquo rint rintf round roundf scalbn signbit significand sin sincos sinf sinh sinhf
sinhl sinl sqrt sqrtf sqrtl tan tanf tanh tanhf tanhl tanl tgamma trunc truncf y0 y1 yn
INFINITY NAN HUGE_VAL M_PI M_E
abs labs llabs div ldiv lldiv abort atexit exit malloc calloc realloc free aligned_alloc
posix_memalign qsort bsearch rand srand atoi atol atof strtol strtod getenv system
memcpy memmove memset memcmp memchr strlen strcmp strncmp strcpy strncpy strcat strchr strstr
int8_t int16_t int32_t int64_t uint8_t uint16_t uint32_t uint64_t intptr_t uintptr_t size_t
ptrdiff_t INT64_C UINT64_C INT64_MIN INT64_MAX INT32_MIN INT32_MAX
clock_gettime timespec time clock arena inputs outputs errno syms offsets blocks
""".split())


def safe_ident(name: str) -> str:
    """``name`` as a C identifier that cannot clash with anything the generated file declares."""
    s = c_ident(name)
    if s in RESERVED or s.startswith("_") or s.lower().startswith("ember"):
        s = "v_" + s.lstrip("_") if s.startswith("_") else "v_" + s
    return s


def unique_name(names: dict, used: set, obj, hint: str) -> str:
    """The C name of ``obj`` (a variable or buffer) in a function whose names so far are ``names``
    (object -> name) and ``used``: ``hint`` made safe, with a number where it is taken."""
    if obj in names:
        return names[obj]
    base = safe_ident(hint)
    n, k = base, 0
    while n in used:
        k += 1
        n = f"{base}_{k}"
    used.add(n)
    names[obj] = n
    return n


def float_literal(v: float, dtype: str) -> str:
    """C for the float ``v`` (NAN and INFINITY by name; an ``f`` suffix for float32)."""
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    s = repr(float(v))
    if "e" not in s and "." not in s:
        s += ".0"
    return s + "f" if dtype == "float32" else s


def c_string(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{out}"'


#: vector type of each element type of vector code (lanes as many as float32 lanes)
VECTOR_TYPES = {"float32": "ember_vf", "int32": "ember_vi", "int16": "ember_vs16", "uint16": "ember_vu16",
                "int8": "ember_vs8", "uint8": "ember_vu8"}

# the narrow vector types, their unaligned variants (loads and stores of any address), integer
# max/min/select, and the 8-bit dot product of the integer kernels
INT_VECTORS_C = """
static inline ember_vi ember_vmaxi(ember_vi a, ember_vi b) { ember_vi m = a > b; return (a & m) | (b & ~m); }
static inline ember_vi ember_vmini(ember_vi a, ember_vi b) { ember_vi m = a < b; return (a & m) | (b & ~m); }
/* lane select of integer vectors by a mask of int32 lanes (what comparisons give) */
#define EMBER_VSELECT(VT, m, t, f) ({ VT _t = (t), _f = (f); VT _m = __builtin_convertvector((m), VT); (_t & _m) | (_f & ~_m); })
/* a vector load whose lanes may fall outside [0, n) (lanes a select will discard): those read 0 */
#define EMBER_VLOAD_CHECKED(VT, p, base, stride, n) ({ VT _r = {0}; int64_t _b = (base); \\
  for (int _i = 0; _i < EMBER_LANES; ++_i) { int64_t _j = _b + _i * (stride); if (_j >= 0 && _j < (n)) _r[_i] = (p)[_j]; } _r; })
/* 8-bit lanes to int32 lanes and back (truncating, as C converts); AVX2 has instructions for
   them that the compiler's generic conversions do not find */
@widen_narrow@static inline int32_t ember_sat16(int32_t v) { return v < -32768 ? -32768 : v > 32767 ? 32767 : v; }
/* sat16(x0 w0 + x1 w1) + sat16(x2 w2 + x3 w3): x86's 8-bit multiply-add (vpmaddubsw) then the
   pairwise int32 add of its int16 results */
static inline int32_t ember_dot4_sat16(int32_t x0, int32_t x1, int32_t x2, int32_t x3,
                                       int32_t w0, int32_t w1, int32_t w2, int32_t w3) {
  return ember_sat16(x0 * w0 + x1 * w1) + ember_sat16(x2 * w2 + x3 * w3);
}
/* x0 w0 + x1 w1 + x2 w2 + x3 w3, exactly (int32) */
static inline int32_t ember_dot4(int32_t x0, int32_t x1, int32_t x2, int32_t x3,
                                 int32_t w0, int32_t w1, int32_t w2, int32_t w3) {
  return x0 * w0 + x1 * w1 + x2 * w2 + x3 * w3;
}
static inline uint32_t ember_load_u32(const void* p) { uint32_t v; memcpy(&v, p, 4); return v; }
/* ember_dot4 of the 4 bytes of x (uint8) with the 4 bytes of every lane of w (int8): one
   vpdpbusd with VNNI */
static inline ember_vi ember_vdot4(uint32_t x, const int8_t* w) {
@vdot4@}
/* acc + ember_vdot4(x, w): one vpdpbusd into the accumulator with VNNI */
static inline ember_vi ember_vdot4_acc(ember_vi acc, uint32_t x, const int8_t* w) {
@vdot4_acc@}
/* ember_dot4_sat16 of the 4 bytes of x (uint8) with the 4 bytes of every lane of w (int8) */
static inline ember_vi ember_vdot4_sat16(uint32_t x, const int8_t* w) {
@vdot4_sat16@}
/* TFLite's MultiplyByQuantizedMultiplier (the fixed_point_mul intrinsic): x 2^max(s, 0)
   saturated, gemmlowp's SaturatingRoundingDoublingHighMul by m (floor((x m + 2^30) / 2^31) is
   its quotient (x m + nudge) / 2^31 truncated), then RoundingDivideByPOT by max(-s, 0); shifts
   clamped to [-31, 31] */
static inline int32_t ember_fixed_point_mul(int32_t x, int32_t m, int32_t s) {
  int left = s > 0 ? (s < 31 ? s : 31) : 0, right = s < 0 ? (s > -31 ? -s : 31) : 0;
  int64_t xl = (int64_t)x * (INT64_C(1) << left);
  xl = xl > INT32_MAX ? INT32_MAX : xl < INT32_MIN ? INT32_MIN : xl;
  int64_t h = (xl * m + (INT64_C(1) << 30)) >> 31;
  int32_t r = h > INT32_MAX ? INT32_MAX : (int32_t)h;
  int32_t mask = (int32_t)((UINT32_C(1) << right) - 1u), threshold = (mask >> 1) + (r < 0);
  return (r >> right) + ((r & mask) > threshold);
}
/* ember_fixed_point_mul lane by lane: 32x32 -> 64-bit multiplies (vpmuldq) with AVX2 */
static inline ember_vi ember_vfixed_point_mul(ember_vi x, ember_vi m, ember_vi s) {
@vfixed_point_mul@}
"""


#: the ISA modules of the code generator, by ``Target.isa``
ISA_MODULES = {m.NAME: m for m in (isa_x86, isa_neon, isa_wasm, isa_riscv, isa_generic)}


def isa_module(isa: str):
    try:
        return ISA_MODULES[isa]
    except KeyError:
        raise CodegenError(f"no ISA module '{isa}' in the C code generator; it has "
                           f"{', '.join(ISA_MODULES)}") from None


def intrinsic_helpers(lanes: int, isa: str = "x86") -> frozenset[str]:
    """The preamble's helpers that a file calls only after defining ``EMBER_INTRINSICS``, with
    vectors of ``lanes`` floats and the ISA module ``isa``: their intrinsic branches, and the
    ISA's intrinsics header, are compiled only then (``INTRINSIC_HELPERS`` of the ISA module)."""
    return frozenset(getattr(isa_module(isa), "INTRINSIC_HELPERS", {}).get(lanes, ()))


def uses_intrinsics(code: str, helpers: frozenset[str]) -> bool:
    """Whether C ``code`` calls one of ``helpers`` (:func:`intrinsic_helpers`)."""
    return bool(helpers) and not helpers.isdisjoint(_IDENT.findall(code))


def include_model_header(code: str, helpers: frozenset[str], header: str = "model.h") -> str:
    """The lines a C file of ``code`` starts with: ``#define EMBER_INTRINSICS`` where it calls
    one of ``helpers`` (:func:`intrinsic_helpers`), then ``#include`` of the preamble ``header``."""
    return ("#define EMBER_INTRINSICS 1\n" if uses_intrinsics(code, helpers) else "") + f"#include \"{header}\"\n"


def _fill(template: str, hooks: dict) -> str:
    for name, text in hooks.items():
        template = template.replace(f"@{name}@", text)
    return template


def preamble(lanes: int, isa: str = "x86") -> str:
    """The C every generated file starts with: vector types of ``lanes`` floats, vector math,
    the integer vector helpers, with the intrinsics of the ISA module ``isa`` (``Target.isa``)
    and the generic C as the fallback of each (``isa_generic``)."""
    vb = 4 * lanes
    module = isa_module(isa)
    B = {name: isa_generic.hook(module, name) for name in isa_generic.HOOKS}
    dup = ", ".join(["s"] * lanes)
    return f"""\
#define EMBER_LANES {lanes}
#include <string.h>
{B['include']}typedef float ember_vf __attribute__((vector_size({vb})));
typedef int32_t ember_vi __attribute__((vector_size({vb})));
typedef int16_t ember_vs16 __attribute__((vector_size({vb // 2})));
typedef uint16_t ember_vu16 __attribute__((vector_size({vb // 2})));
typedef int8_t ember_vs8 __attribute__((vector_size({vb // 4})));
typedef uint8_t ember_vu8 __attribute__((vector_size({vb // 4})));
typedef int32_t ember_vi_u __attribute__((vector_size({vb}), aligned(1)));
typedef int16_t ember_vs16_u __attribute__((vector_size({vb // 2}), aligned(1)));
typedef uint16_t ember_vu16_u __attribute__((vector_size({vb // 2}), aligned(1)));
typedef int8_t ember_vs8_u __attribute__((vector_size({vb // 4}), aligned(1)));
typedef uint8_t ember_vu8_u __attribute__((vector_size({vb // 4}), aligned(1)));
typedef float ember_vf_u __attribute__((vector_size({vb}), aligned(4)));
/* a float in every lane */
static inline ember_vf ember_vdup(float s) {{ return (ember_vf){{{dup}}}; }}
static inline ember_vf ember_vload(const float* p) {{ return *(const ember_vf_u*)p; }}
static inline void ember_vstore(float* p, ember_vf v) {{ *(ember_vf_u*)p = v; }}
static inline ember_vf ember_vsel(ember_vi m, ember_vf a, ember_vf b) {{
  return (ember_vf)((m & (ember_vi)a) | (~m & (ember_vi)b));
}}
{B['maxmin']}/* a vector load whose lanes may fall outside [0, n) (lanes a select will discard): those read 0 */
static inline ember_vf ember_vload_checked(const float* p, int64_t base, int64_t stride, int64_t n) {{
  int64_t last = base + (EMBER_LANES - 1) * stride;
  if (stride == 1 && base >= 0 && last < n) return ember_vload(p + base);
  ember_vf r = {{0}};
  for (int i = 0; i < EMBER_LANES; ++i) {{ int64_t j = base + i * stride; if (j >= 0 && j < n) r[i] = p[j]; }}
  return r;
}}
static inline int64_t ember_ipow(int64_t a, int64_t b) {{
  if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
  uint64_t r = 1, x = (uint64_t)a;
  for (; b; b >>= 1, x *= x) if (b & 1) r *= x;
  return (int64_t)r;
}}
static inline uint64_t ember_upow(uint64_t a, uint64_t b) {{
  uint64_t r = 1;
  for (; b; b >>= 1, a *= a) if (b & 1) r *= a;
  return r;
}}
#define EMBER_VMAP1(fn, x) ({{ ember_vf _x = (x), _r; for (int _i = 0; _i < EMBER_LANES; ++_i) _r[_i] = fn(_x[_i]); _r; }})
#define EMBER_VMAP2(fn, x, y) ({{ ember_vf _x = (x), _y = (y), _r; for (int _i = 0; _i < EMBER_LANES; ++_i) _r[_i] = fn(_x[_i], _y[_i]); _r; }})
#define EMBER_IDIV(a, b) ({{ __auto_type _a = (a); __auto_type _b = (b); _b == 0 ? 0 : (_b == -1 ? -_a : _a / _b); }})
#define EMBER_IMOD(a, b) ({{ __auto_type _a = (a); __auto_type _b = (b); (_b == 0 || _b == -1) ? 0 : _a % _b; }})
#define EMBER_UDIV(a, b) ({{ __auto_type _a = (a); __auto_type _b = (b); _b == 0 ? 0 : _a / _b; }})
#define EMBER_UMOD(a, b) ({{ __auto_type _a = (a); __auto_type _b = (b); _b == 0 ? 0 : _a % _b; }})
#define EMBER_MAX(a, b) ({{ __auto_type _a = (a); __auto_type _b = (b); (_a > _b || _a != _a) ? _a : _b; }})
#define EMBER_MIN(a, b) ({{ __auto_type _a = (a); __auto_type _b = (b); (_a < _b || _a != _a) ? _a : _b; }})
/* lanes picked from two vectors of one type (blocks transposed in registers: tir.transform.transpose_blocks) */
#if defined(__clang__) || __GNUC__ >= 12
#define EMBER_SHUFFLE(a, b, ...) __builtin_shufflevector((a), (b), __VA_ARGS__)
#else
#define EMBER_SHUFFLE(a, b, ...) __builtin_shuffle((a), (b), (ember_vi){{__VA_ARGS__}})
#endif
/* a value rounded where it is computed: the compiler may not fuse its multiply into a later add */
{B['no_contract']}#define EMBER_LOAD_CHECKED(p, i, n) ({{ int64_t _j = (i); (_j >= 0 && _j < (n)) ? (p)[_j] : (__typeof__((p)[0]))0; }})
""" + _fill(c_intrinsics.VECTOR_MATH_C, B) + _fill(INT_VECTORS_C, B) + c_dtypes.C_SOURCE


@dataclass
class _Ctx:
    names: dict = field(default_factory=dict)     # Var/Buffer -> C name
    used: set = field(default_factory=set)
    vec_locals: set = field(default_factory=set)  # local buffers stored as vector arrays
    temps: int = 0                                # temporaries named so far (t0, t1, ...)


class CGenerator:
    """Emits C for kernels (PrimFuncs) with vectors of ``lanes`` floats, for a target with
    ``registers`` vector registers (``Target.vector_registers``)."""

    def __init__(self, lanes: int = 8, registers: int = 16):
        self.lanes = lanes
        self.tile_accumulators = tile_accumulators(registers)
        self.helpers: list[str] = []
        self.kernel_names: set[str] = set()
        #: two strings per run-time check: where it is (node, op, kernel) and what it checks
        self.check_sites: list[str] = []
        #: every kernel written, in order (its canonical form: see :class:`KernelC`)
        self.kernels: list[KernelC] = []
        self._kernel = ""
        self._site_base = 0            # the kernel's first site in check_sites (its site 0)
        self._check_mode = "report"    # how IndexCheck is written now: "fast" or "report"
        self._fast_checks = False      # whether a fast check was written (see _checked)
        self._tasks: dict[int, tuple[str, str]] = {}   # parallel loop -> its task and context
        self._checks = True            # whether the kernel written now has run-time checks
        self._shared: SharedPlan | None = None   # the named subexpressions of the statement written

    # ---- names ---------------------------------------------------------------------------

    def name(self, ctx: _Ctx, obj, hint: str) -> str:
        return unique_name(ctx.names, ctx.used, obj, hint)

    # ---- expressions ---------------------------------------------------------------------

    def const(self, c: Const) -> str:
        v = c.value
        if c_dtypes.is_special(c.dtype):
            return c_dtypes.const(v, c.dtype)
        if c.dtype == "bool":
            return "1" if v else "0"
        if is_float_dtype(c.dtype):
            s = float_literal(v, c.dtype)
            return s if c.dtype in ("float32", "float64") else f"(({c_type(c.dtype)}){s})"
        if c.dtype == "int64":
            return "INT64_MIN" if v == -(1 << 63) else f"INT64_C({v})"
        if c.dtype == "uint64":
            return f"UINT64_C({v})"
        return f"(({c_type(c.dtype)}){v})"

    def expr(self, e: Expr, ctx: _Ctx, guard: bool = False) -> str:
        """C for a scalar expression.  ``guard``: the expression sits in a branch of a vector
        select, which evaluates both branches, so its loads may be out of bounds in the lanes
        the select discards: they are bounds-checked."""
        if lanes_of(e) > 1:
            return self.vexpr(e, ctx, guard)
        if isinstance(e, Const):
            return self.const(e)
        if isinstance(e, Var):
            return self.name(ctx, e, e.name)
        if self._shared is not None:
            got = self._shared.name_of(e, lambda x, g: self.expr(x, ctx, g))
            if got is not None:
                return got
        if isinstance(e, IndexCheck):
            i, n = self.expr(e.index, ctx, guard), self.expr(e.extent, ctx, guard)
            if self._check_mode == "fast":
                self._fast_checks = True
                return f"ember_index_fast({i}, {n}, &{BAD_FLAG})"
            site = len(self.check_sites) // 2 - self._site_base
            where = f"{e.op or 'kernel'} node '{e.node}'" if e.node else "a kernel"
            self.check_sites += [f"{where} (kernel '{self._kernel}')", e.what]
            return f"ember_index({CHECK_ARG}, {site}, {i}, {n})"
        if isinstance(e, Load):
            buf = self.name(ctx, e.buffer, e.buffer.name)
            if guard and not _in_bounds(e.index, 1, 1, e.buffer.size):
                raw = f"EMBER_LOAD_CHECKED({buf}, {self.expr(e.index, ctx, guard)}, {self.extent(e.buffer.size, ctx)})"
            else:
                raw = f"{buf}[{self.expr(e.index, ctx, guard)}]"
            return c_dtypes.load(e.dtype, raw)
        if isinstance(e, BinOp):
            a = self.expr(e.a, ctx, guard)
            if e.op in ("and", "or"):      # C evaluates the right operand only when it matters
                b = self.branch(e, 1, guard, lambda g: self.expr(e.b, ctx, g))
            else:
                b = self.expr(e.b, ctx, guard)
            dt = e.a.dtype
            if e.op in _BINOPS:
                if e.op in ("add", "sub", "mul") and dt == "bool":
                    return f"((_Bool)({a} {_BINOPS[e.op]} {b}))"
                return f"({a} {_BINOPS[e.op]} {b})"
            if e.op == "max":
                return f"EMBER_MAX({a}, {b})"
            if e.op == "min":
                return f"EMBER_MIN({a}, {b})"
            if e.op in ("div", "mod"):
                if is_float_dtype(dt):
                    if e.op == "div":
                        return f"({a} / {b})"
                    return c_intrinsics.math_call("fmod", [a, b], dt)
                if isinstance(e.b, Const) and e.b.value not in (0, -1):
                    return f"({a} {'/' if e.op == 'div' else '%'} {b})"
                if _is_size(e.b):
                    # a divisor made of symbolic sizes (a tile count) is never negative; where it
                    # is 0 the loops that use the quotient run no iterations: a plain division
                    # that gcc can hoist and share (the guarded macro's branches defeat that)
                    return f"({a} {'/' if e.op == 'div' else '%'} ({{ int64_t _n = {b}; _n + (_n == 0); }}))"
                signed = not dt.startswith("uint") and dt != "bool"
                macro = ("EMBER_IDIV" if e.op == "div" else "EMBER_IMOD") if signed else \
                        ("EMBER_UDIV" if e.op == "div" else "EMBER_UMOD")
                return f"{macro}({a}, {b})"
            raise CodegenError(f"unknown binary op {e.op}")
        if isinstance(e, Not):
            return f"(!{self.expr(e.a, ctx, guard)})"
        if isinstance(e, Cast):
            a = self.expr(e.a, ctx, guard)
            special = c_dtypes.cast(e.a.dtype, e.dtype, a, e.saturate, e.round_mode, c_type)
            if special is not None:
                return special
            if e.dtype == "bool":
                return f"((_Bool)({a} != 0))"
            return f"(({c_type(e.dtype)})({a}))"
        if isinstance(e, Select):
            # C evaluates only the branch taken: no guard needed inside
            return (f"({self.expr(e.cond, ctx, guard)} ? {self.branch(e, 0, guard, lambda g: self.expr(e.t, ctx, g))}"
                    f" : {self.branch(e, 1, guard, lambda g: self.expr(e.f, ctx, g))})")
        if isinstance(e, Call):
            args = [self.expr(a, ctx, guard) if k == 0 or e.fn != "pow" or a.dtype != "bool"
                    else self.branch(e, 1, guard, lambda g, a=a: self.expr(a, ctx, g))   # a || !b
                    for k, a in enumerate(e.args)]
            return self.call(e.fn, args, e.args[0].dtype, e.dtype)
        raise CodegenError(f"cannot generate C for {type(e).__name__}")

    def branch(self, e: Expr, k: int, guard: bool, emit) -> str:
        """``emit(guard)``, the C of operand ``k`` of ``e`` that C computes only under a
        condition (or, with ``guard``, bounds-checked): its own region of named subexpressions
        (see ``c_shared``)."""
        plan = self._shared
        if plan is None:
            return emit(guard)
        outer = plan.enter(e, k, guard)
        try:
            text = emit(guard)
        except BaseException:
            plan.region = outer
            raise
        return plan.leave(outer, text)

    def shared(self, exprs: list, ctx: _Ctx) -> SharedPlan:
        """The plan of named subexpressions of a statement computing ``exprs``."""
        L = self.lanes

        def load_safe(e: Load) -> bool:
            if e.lanes > 1:
                return e.buffer in ctx.vec_locals or (
                    isinstance(e.index, Ramp) and _in_bounds(e.index.base, e.index.stride, L, e.buffer.size))
            return _in_bounds(e.index, 1, 1, e.buffer.size)

        def new_name() -> str:
            while True:
                n = f"t{ctx.temps}"
                ctx.temps += 1
                if n not in ctx.used:
                    ctx.used.add(n)
                    return n

        return SharedPlan(exprs, load_safe, new_name)

    def extent(self, n, ctx: _Ctx) -> str:
        """C for a loop extent or buffer size: an int, or an expression of size variables."""
        if isinstance(n, int):
            return str(n)
        return self.expr(n, ctx)

    def call(self, fn: str, args: list[str], arg_dtype: str, dtype: str) -> str:
        return c_intrinsics.scalar(fn, args, arg_dtype, dtype, c_type)

    def vexpr(self, e: Expr, ctx: _Ctx, guard: bool = False) -> str:
        L = self.lanes
        if self._shared is not None and not isinstance(e, (Ramp, Broadcast)):
            got = self._shared.name_of(e, lambda x, g: self.vexpr(x, ctx, g))
            if got is not None:
                return got
        if isinstance(e, Broadcast):
            v = self.expr(e.value, ctx, guard)
            if e.value.dtype == "bool":
                return f"((ember_vi){{}} - (int32_t)({v}))"
            lanes = ", ".join(["_s"] * L)
            if e.dtype == "float32":
                return f"ember_vdup({v})"
            t = c_type(e.dtype)
            return f"({{ {t} _s = ({t})({v}); ({vector_type(e.dtype)}){{{lanes}}}; }})"
        if isinstance(e, Load):
            if e.dtype == "bool":        # bytes of 0 / 1 to a lane mask of -1 / 0
                return f"(ember_vwiden_u8({self.vload(e, 'uint8', ctx, guard)}) != (ember_vi){{}})"
            return self.vload(e, e.dtype, ctx, guard)
        if isinstance(e, BinOp) and e.op in COMPARISONS and e.a.dtype not in VECTOR_TYPES:
            return self.index_mask(e, ctx, guard)
        if isinstance(e, BinOp) and e.op == "add" and isinstance(e.b, Call) and e.b.fn == "dot4" \
                and lanes_of(e.a) > 1:
            # an accumulation of the exact dot product: into the accumulator where one
            # instruction does both (VNNI)
            return self.vdot4(e.b, ctx, guard, acc=self.vexpr(e.a, ctx, guard))
        if isinstance(e, BinOp):
            a, b = self.vexpr(e.a, ctx, guard), self.vexpr(e.b, ctx, guard)
            if e.op in _VEC_BINOPS:
                return f"({a} {_VEC_BINOPS[e.op]} {b})"
            integer = e.a.dtype == "int32"
            if e.op == "max":
                return f"ember_vmax{'i' if integer else ''}({a}, {b})"
            if e.op == "min":
                return f"ember_vmin{'i' if integer else ''}({a}, {b})"
            if e.op == "mod" and not integer:
                return f"EMBER_VMAP2(fmodf, {a}, {b})"
            raise CodegenError(f"vector op {e.op} on {e.a.dtype}")
        if isinstance(e, Not):
            return f"(~{self.vexpr(e.a, ctx, guard)})"
        if isinstance(e, Cast):
            a = self.vexpr(e.a, ctx, guard)
            if e.a.dtype == "bool":      # a lane mask (-1 / 0) to 1 / 0
                return f"__builtin_convertvector(-({a}), {vector_type(e.dtype)})"
            return vector_cast(a, e.a.dtype, e.dtype)
        if isinstance(e, Select):
            if isinstance(e.cond, Broadcast):
                # one condition for every lane: a C conditional evaluates only the branch taken
                return (f"({self.expr(e.cond.value, ctx, guard)} ? "
                        f"{self.branch(e, 0, guard, lambda g: self.vexpr(e.t, ctx, g))} : "
                        f"{self.branch(e, 1, guard, lambda g: self.vexpr(e.f, ctx, g))})")
            # a lane-wise select computes both branches: their loads must stay in bounds
            cond = self.vexpr(e.cond, ctx, guard)
            t = self.branch(e, 0, True, lambda g: self.vexpr(e.t, ctx, g))
            f = self.branch(e, 1, True, lambda g: self.vexpr(e.f, ctx, g))
            if e.dtype == "float32":
                return f"ember_vsel({cond}, {t}, {f})"
            return f"EMBER_VSELECT({vector_type(e.dtype)}, {cond}, {t}, {f})"
        if isinstance(e, Call) and e.fn in DOT_CALLS:
            return self.vdot4(e, ctx, guard)
        if isinstance(e, Call):
            return c_intrinsics.vector(e.fn, [self.vexpr(a, ctx, guard) for a in e.args])
        if isinstance(e, Shuffle):
            if e.lanes != L or lanes_of(e.a) != L:
                raise CodegenError(f"a shuffle of {lanes_of(e.a)} to {e.lanes} lanes (vectors have {L})")
            return (f"EMBER_SHUFFLE({self.vexpr(e.a, ctx, guard)}, {self.vexpr(e.b, ctx, guard)}, "
                    f"{', '.join(map(str, e.indices))})")
        if isinstance(e, Ramp):
            raise CodegenError("an index vector outside a load")
        raise CodegenError(f"cannot vectorize {type(e).__name__}")

    def vload(self, e: Load, dtype: str, ctx: _Ctx, guard: bool) -> str:
        """A vector load of ``e``'s lanes as a vector of ``dtype``."""
        L = self.lanes
        buf = self.name(ctx, e.buffer, e.buffer.name)
        idx = e.index
        if not isinstance(idx, Ramp):
            raise CodegenError("vector load with a non-ramp index")
        if e.buffer in ctx.vec_locals:
            return f"{buf}[{idx.base.value // L}]"
        base = self.expr(idx.base, ctx, guard)
        vt = vector_type(dtype)
        if guard and not _in_bounds(idx.base, idx.stride, L, e.buffer.size):
            n = self.extent(e.buffer.size, ctx)
            if dtype == "float32":
                return f"ember_vload_checked({buf}, {base}, {idx.stride}, {n})"
            return f"EMBER_VLOAD_CHECKED({vt}, {buf}, {base}, {idx.stride}, {n})"
        if idx.stride == 1:
            if dtype == "float32":
                return f"ember_vload(&{buf}[{base}])"
            return f"(*(const {vt}_u*)&{buf}[{base}])"
        lanes = ", ".join(f"{buf}[_b + {k * idx.stride}]" for k in range(L))
        return f"({{ int64_t _b = {base}; ({vt}){{{lanes}}}; }})"

    def vdot4(self, e: Call, ctx: _Ctx, guard: bool, acc: str | None = None) -> str:
        """A vector ``dot4_sat16`` or ``dot4``: the four x operands are scalars (the same for
        every lane), the four w operands vectors.  When the w operands are the interleaved lanes
        of one int8 block (w[4 l + k] for operand k) it is one ember_vdot4_sat16 (vpmaddubsw on
        AVX2) or ember_vdot4 (vpdpbusd with VNNI); otherwise lane by lane.  ``acc``: the C of
        an int32 vector the ``dot4`` is added to (ember_vdot4_acc: vpdpbusd into it)."""
        if acc is not None and e.fn != "dot4":
            return f"({acc} + {self.vdot4(e, ctx, guard)})"
        fn = e.fn
        xs, ws = e.args[:4], e.args[4:]
        if any(lanes_of(x) > 1 for x in xs):
            raise CodegenError(f"{fn} with vector x operands")
        sx = [self.expr(x, ctx, guard) for x in xs]
        packed = None
        if not guard and all(isinstance(x, Load) for x in xs) and \
                all(x.buffer is xs[0].buffer for x in xs) and _consecutive([x.index for x in xs]):
            xbuf = self.name(ctx, xs[0].buffer, xs[0].buffer.name)
            packed = f"ember_load_u32(&{xbuf}[{self.expr(xs[0].index, ctx, guard)}])"
        if packed is None:
            packed = " | ".join(f"((uint32_t)(uint8_t)({v}) << {8 * k})" for k, v in enumerate(sx))
        if (all(isinstance(w, Load) and isinstance(w.index, Ramp) and w.index.stride == 4 and w.buffer is ws[0].buffer
                and w.dtype == "int8" for w in ws) and _consecutive([w.index.base for w in ws])
                and all(x.dtype == "uint8" for x in xs) and ws[0].buffer not in ctx.vec_locals
                and not (guard and not _in_bounds(ws[0].index.base, 1, 4 * self.lanes, ws[0].buffer.size))):
            wbuf = self.name(ctx, ws[0].buffer, ws[0].buffer.name)
            if acc is not None:
                return f"ember_vdot4_acc({acc}, {packed}, &{wbuf}[{self.expr(ws[0].index.base, ctx, guard)}])"
            return f"ember_v{fn}({packed}, &{wbuf}[{self.expr(ws[0].index.base, ctx, guard)}])"
        vw = [self.vexpr(w, ctx, guard) if lanes_of(w) > 1 else self.expr(w, ctx, guard) for w in ws]
        wl = [f"_w{k}[_i]" if lanes_of(w) > 1 else f"_w{k}" for k, w in enumerate(ws)]
        decl = " ".join(f"__typeof__({v}) _w{k} = {v};" for k, v in enumerate(vw))
        lane_by_lane = (f"({{ {decl} int32_t _x[4] = {{{', '.join(sx)}}}; ember_vi _r; "
                        f"for (int _i = 0; _i < EMBER_LANES; ++_i) _r[_i] = ember_{fn}(_x[0], _x[1], _x[2], _x[3], "
                        f"{', '.join(wl)}); _r; }})")
        return lane_by_lane if acc is None else f"({acc} + {lane_by_lane})"

    def index_mask(self, e: BinOp, ctx: _Ctx, guard: bool) -> str:
        """A comparison of index vectors (ramps and broadcasts of int64): the lane mask, built
        from one scalar comparison per lane."""
        decls, lane = [], []
        for name, x in (("_p", e.a), ("_q", e.b)):
            if isinstance(x, Ramp):
                decls.append(f"int64_t {name} = {self.expr(x.base, ctx, guard)};")
                lane.append(lambda k, name=name, st=x.stride: f"({name} + {k * st})" if k * st else name)
            elif isinstance(x, Broadcast):
                decls.append(f"int64_t {name} = {self.expr(x.value, ctx, guard)};")
                lane.append(lambda k, name=name: name)
            else:
                raise CodegenError(f"cannot generate an index mask from {type(x).__name__}")
        op = _BINOPS[e.op]
        lanes = ", ".join(f"-(int32_t)({lane[0](k)} {op} {lane[1](k)})" for k in range(self.lanes))
        return f"({{ {' '.join(decls)} (ember_vi){{{lanes}}}; }})"

    # ---- statements ----------------------------------------------------------------------

    def stmt(self, s: Stmt, ctx: _Ctx, ind: str, out: list[str], depth: int, fname: str) -> None:
        if isinstance(s, Seq):
            stmts, k = s.stmts, 0
            while k < len(stmts):
                run = _store_run(stmts, k)
                if run > 1:
                    # stores side by side (an unrolled transform's points) that read nothing
                    # they write: one plan of named subexpressions for all of them, so a part
                    # they share (the row sums of a Winograd tile) is written once
                    with self.statement([e for x in stmts[k:k + run] for e in (x.index, x.value)],
                                        ctx, ind, out) as lines:
                        for x in stmts[k:k + run]:
                            self.store(x, ctx, ind, lines)
                    k += run
                else:
                    self.stmt(stmts[k], ctx, ind, out, depth, fname)
                    k += 1
        elif isinstance(s, For):
            if s.kind == "parallel" and depth == 0 and (not isinstance(s.extent, int) or s.extent > 1):
                self.parallel(s, ctx, ind, out, fname)
                return
            v = self.name(ctx, s.var, s.var.name)
            if s.kind in ("simd", "vectorized"):
                out.append(f"{ind}#pragma GCC ivdep")
            elif s.kind == "unrolled":
                out.append(f"{ind}#pragma GCC unroll 8")
            elif _register_tile_update(s.body, self.tile_accumulators):
                # the C compiler would unroll a short reduction loop (a first convolution's 3
                # input channels) and run out of vector registers for the tile's accumulators
                out.append(f"{ind}#pragma GCC unroll 1")
            out.append(f"{ind}for (int64_t {v} = 0; {v} < {self.extent(s.extent, ctx)}; ++{v}) {{")
            self.stmt(s.body, ctx, ind + "  ", out, depth + 1, fname)
            out.append(f"{ind}}}")
        elif isinstance(s, Store):
            with self.statement([s.index, s.value], ctx, ind, out) as lines:
                self.store(s, ctx, ind, lines)
        elif isinstance(s, Allocate):
            # its own block: unrolling may repeat an allocation side by side
            b = s.buffer
            name = self.name(ctx, b, b.name)
            inner = ind + "  "
            out.append(f"{ind}{{")
            if _vector_local(b, s.body, self.lanes):
                ctx.vec_locals.add(b)
                out.append(f"{inner}{vector_type(b.dtype)} {name}[{b.size // self.lanes}];")
                self.stmt(s.body, ctx, inner, out, depth, fname)
            else:
                # a symbolic size is allocated at its largest (the size variables' limits); one
                # without a limit on the stack at its planned size when that is small, on the
                # heap when a run needs more
                size = b.size if isinstance(b.size, int) else upper_bound(b.size)
                nbytes = None if size is None else size * _itemsize(b.dtype)
                planned = None if size is not None else planned_extent(b.size)
                if planned is not None and planned * _itemsize(b.dtype) <= 32768:
                    count = self.extent(b.size, ctx)
                    ct = c_type(b.dtype)
                    out.append(f"{inner}{ct} {name}_stack[{max(planned, 1)}] __attribute__((aligned(64)));")
                    out.append(f"{inner}int64_t {name}_count = (int64_t)({count});")
                    out.append(f"{inner}{ct}* {name} = {name}_count <= {max(planned, 1)} ? {name}_stack : "
                               f"({ct}*)malloc((size_t){name}_count * {_itemsize(b.dtype)} + 1);")
                    out.append(f"{inner}if (!{name}) return;")
                    self.stmt(s.body, ctx, inner, out, depth, fname)
                    out.append(f"{inner}if ({name} != {name}_stack) free({name});")
                elif nbytes is None or nbytes > 32768:
                    count = self.extent(b.size, ctx)
                    out.append(f"{inner}{c_type(b.dtype)}* {name} = ({c_type(b.dtype)}*)malloc("
                               f"(size_t)({count}) * {_itemsize(b.dtype)} + 1);")
                    out.append(f"{inner}if (!{name}) return;")
                    self.stmt(s.body, ctx, inner, out, depth, fname)
                    out.append(f"{inner}free({name});")
                else:
                    out.append(f"{inner}{c_type(b.dtype)} {name}[{max(size, 1)}] __attribute__((aligned(64)));")
                    self.stmt(s.body, ctx, inner, out, depth, fname)
            out.append(f"{ind}}}")
        elif isinstance(s, IfThenElse):
            with self.statement([s.cond], ctx, ind, out) as lines:
                lines.append(f"{ind}if ({self.expr(s.cond, ctx)}) {{")
            self.stmt(s.then, ctx, ind + "  ", out, depth, fname)
            if s.other is not None:
                out.append(f"{ind}}} else {{")
                self.stmt(s.other, ctx, ind + "  ", out, depth, fname)
            out.append(f"{ind}}}")
        else:
            raise CodegenError(f"cannot generate C for {type(s).__name__}")

    def store(self, s: Store, ctx: _Ctx, ind: str, out: list[str]) -> None:
        buf = self.name(ctx, s.buffer, s.buffer.name)
        if isinstance(s.index, Ramp):
            idx = s.index
            val = self.vexpr(s.value, ctx)
            dtype = s.buffer.dtype
            if dtype == "bool":          # a lane mask of -1 / 0 to bytes of 0 / 1
                val, dtype = f"ember_vnarrow_u8(-({val}))", "uint8"
            if s.buffer in ctx.vec_locals:
                out.append(f"{ind}{buf}[{idx.base.value // self.lanes}] = {val};")
            elif idx.stride == 1 and dtype == "float32":
                out.append(f"{ind}ember_vstore(&{buf}[{self.expr(idx.base, ctx)}], {val});")
            elif idx.stride == 1:
                out.append(f"{ind}*({vector_type(dtype)}_u*)&{buf}[{self.expr(idx.base, ctx)}] = {val};")
            else:
                parts = " ".join(f"{buf}[_b + {k * idx.stride}] = _v[{k}];" for k in range(self.lanes))
                out.append(f"{ind}{{ int64_t _b = {self.expr(idx.base, ctx)}; {vector_type(dtype)} _v = {val}; "
                           f"{parts} }}")
        else:
            value = c_dtypes.store(s.buffer.dtype, self.expr(s.value, ctx))
            out.append(f"{ind}{buf}[{self.expr(s.index, ctx)}] = {value};")

    @contextmanager
    def statement(self, exprs: list, ctx: _Ctx, ind: str, out: list[str]):
        """Around the writing of one statement computing ``exprs``: the lines written in the
        block get the declarations of the statement's named subexpressions in front."""
        plan = self._shared = self.shared(exprs, ctx)
        lines: list[str] = []
        try:
            yield lines
        finally:
            self._shared = None
        out += [f"{ind}{d}" for d in plan.root.defs] + lines

    def _checked(self, emit, ind: str) -> list[str]:
        """The lines ``emit(ind)`` writes, with run-time checks in their fast form (an index out
        of range only sets a local flag, so loops stay branch-free and vectorizable); when it
        wrote any, followed by the same code with the checks in their reporting form, run only
        when the flag was set, to find the index that failed and record it (the code computes
        nothing else differently: its inputs are unchanged, so it meets the same indices)."""
        outer = (self._check_mode, self._fast_checks)
        self._check_mode, self._fast_checks = "fast", False
        try:
            fast = emit(ind)
            if not self._fast_checks:
                return fast
            self._check_mode = "report"
            report = emit(ind + "  ")
        finally:
            self._check_mode, self._fast_checks = outer
        return [f"{ind}int64_t {BAD_FLAG} = 0;", *fast,
                f"{ind}if (EMBER_UNLIKELY({BAD_FLAG})) {{  /* an index was out of range: find and record it */",
                *report, f"{ind}}}"]

    def parallel(self, s: For, ctx: _Ctx, ind: str, out: list[str], fname: str) -> None:
        """Outline the body of a parallel loop into a task run by the thread pool."""
        if id(s) in self._tasks:      # written again (the reporting copy of a checked body)
            task, init = self._tasks[id(s)]
            out.append(f"{ind}{{ struct {task}_ctx _ctx = {{{init}}};")
            out.append(f"{ind}  ember_parallel_for({self.extent(s.extent, ctx)}, {task}, &_ctx); }}")
            return
        bufs = _buffers_used(s.body)
        task = f"ember_task{len(self._tasks)}_{fname}"
        fields = []
        for b in bufs:
            name = self.name(ctx, b, b.name)
            fields.append((b, name))
        sizes = [(v, self.name(ctx, v, v.name)) for v in size_vars_of(s.body)]
        sctx = _Ctx(names={b: n for b, n in fields + sizes}, used={n for _, n in fields + sizes},
                    vec_locals=set(ctx.vec_locals))
        v = self.name(sctx, s.var, s.var.name)

        def emit(ind: str) -> list[str]:
            lines = [f"{ind}for (int64_t {v} = _begin; {v} < _end; ++{v}) {{"]
            self.stmt(s.body, sctx, ind + "  ", lines, 1, task)
            return lines + [f"{ind}}}"]

        body = self._checked(emit, "  ")
        struct = "".join(f" {'const ' if b.const else ''}{_ptr_type(b, sctx)}* {n};" for b, n in fields)
        struct += "".join(f" int64_t {n};" for _, n in sizes)
        unpack = "".join(
            f"  {'const ' if b.const else ''}{_ptr_type(b, sctx)}* restrict {n} = _c->{n};\n" for b, n in fields)
        unpack += "".join(f"  const int64_t {n} = _c->{n};\n" for _, n in sizes)
        fields = fields + sizes
        if self._checks and has_checks(s.body):     # (none in a part of a kernel without)
            struct += f" ember_check* {CHECK_ARG};"
            unpack += f"  ember_check* {CHECK_ARG} = _c->{CHECK_ARG};\n"
            fields.append((None, CHECK_ARG))
        self.helpers.append(
            f"struct {task}_ctx {{{struct} }};\n"
            f"static void {task}(void* _vc, int64_t _begin, int64_t _end) {{\n"
            f"  const struct {task}_ctx* _c = (const struct {task}_ctx*)_vc;\n{unpack}" + "\n".join(body) + "\n}\n")
        init = ", ".join(f"{n}" for _, n in fields)
        self._tasks[id(s)] = (task, init)
        out.append(f"{ind}{{ struct {task}_ctx _ctx = {{{init}}};")
        out.append(f"{ind}  ember_parallel_for({self.extent(s.extent, ctx)}, {task}, &_ctx); }}")

    def kernel(self, f: PrimFunc) -> str:
        """The C definition of kernel ``f`` (a ``static`` function, for :func:`module_source`);
        its canonical form is appended to :attr:`kernels`.  ``f.name`` is made a safe, unique
        file-scope identifier first (a kernel named after a node ``tanh`` must not redefine
        libm's), so callers read the name to call from ``f.name`` afterwards."""
        name, k = safe_ident(f.name), 0
        base = name
        while name in self.kernel_names:
            k += 1
            name = f"{base}_{k}"
        self.kernel_names.add(name)
        f.name = name
        # the canonical names: nothing of the model (its tensors' and symbols' names) in the code
        ctx = _Ctx()
        readable: dict[str, str] = {}
        params = []
        for k, b in enumerate(f.params):
            n = ctx.names[b] = f"{CANONICAL}p{k}"
            ctx.used.add(n)
            readable[n] = b.name
            params.append(f"{'const ' if b.const else ''}{c_type(b.dtype)}* restrict {n}")
        for k, v in enumerate(f.attrs.get("size_vars", ())):
            n = ctx.names[v] = f"{CANONICAL}s{k}"
            ctx.used.add(n)
            readable[n] = v.name
            params.append(f"int64_t {n}")
        self._checks = has_checks(f.body)
        if self._checks:
            params.append(f"ember_check* {CHECK_ARG}")
        self._kernel = f.name
        self._tasks = {}
        self._site_base = len(self.check_sites) // 2
        start = len(self.helpers)

        def emit(ind: str) -> list[str]:
            lines: list[str] = []
            self.stmt(f.body, ctx, ind, lines, 0, CANONICAL_KERNEL)
            return lines

        body = self._checked(emit, "  ")
        helpers = "".join(self.helpers[start:])
        code = f"{helpers}void {CANONICAL_KERNEL}({', '.join(params)}) {{\n" + "\n".join(body) + "\n}\n"
        kc = KernelC(name, code, f.comment or "", readable, [p.rsplit(" ", 1)[0] for p in params],
                     self._site_base, len(self.check_sites) // 2 - self._site_base)
        self.kernels.append(kc)
        return kc.definition("static")


    def alias(self, kc: "KernelC", name: str, comment: str, input_names: list[str]) -> "KernelC":
        """Another kernel with the code of ``kc`` (a group with the same structure and types,
        whose kernel would be the same): named ``name`` (made unique as :meth:`kernel` does),
        its inputs ``input_names``; appended to :attr:`kernels`.  ``kc`` must have no check
        sites (their descriptions name the nodes)."""
        if kc.sites:
            raise CodegenError(f"kernel {kc.name} has run-time checks: it cannot stand for another")
        base = n = safe_ident(name)
        k = 0
        while n in self.kernel_names:
            k += 1
            n = f"{base}_{k}"
        self.kernel_names.add(n)
        names = dict(kc.names)
        names.update({f"{CANONICAL}p{k}": h for k, h in enumerate(input_names)})
        out = KernelC(n, kc.code, comment, names, kc.param_types, len(self.check_sites) // 2, 0)
        self.kernels.append(out)
        return out


#: the prefix of the canonical names of a kernel's parameters and size variables (``ember__p0``);
#: names with "ember" are never a model's, and none of Ember's own has two underscores there
CANONICAL = "ember__"
#: the canonical name of a kernel (see :class:`KernelC`)
CANONICAL_KERNEL = "ember__kernel"
#: the C names the canonical form replaces
_CANONICAL_NAMES = re.compile(r"\bember__[ps]\d+\b|ember__kernel")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class KernelC:
    """One kernel's C in its canonical form, and what makes it readable again.

    ``code`` defines ``void ember__kernel(...)`` (and the tasks of its parallel loops, named
    ``ember_task<k>_ember__kernel``), with parameters and size variables ``ember__p<k>`` and
    ``ember__s<k>`` and check sites numbered from 0: nothing in it depends on the model around
    the kernel, so two models (or two places in one) with the same kernel give the same code,
    and its ``symbol`` (a hash of it) names one object file of that code (see
    ``toolchain.cc``).  The readable form (:meth:`definition`, :meth:`unit`) gives the kernel
    its model's name and the parameters their tensors' names: the same code under other local
    names, which compiles to the same object."""

    name: str                  # the readable C name (unique in its model)
    code: str                  # the canonical code
    comment: str               # what it fuses
    names: dict                # canonical parameter / size variable name -> its hint (the tensor's, the symbol's)
    param_types: list          # the C types of its parameters, in order
    site_base: int             # its first check site in the model's table (CGenerator.check_sites)
    sites: int                 # how many check sites it has

    def __post_init__(self):
        self.symbol = "ember_k_" + hashlib.sha256(self.code.encode()).hexdigest()[:20]
        self._text: str | None = None      # the readable code, once made

    def _readable(self) -> str:
        if self._text is not None:
            return self._text
        taken = set(_IDENT.findall(self.code)) | {self.name}
        names = {CANONICAL_KERNEL: self.name}
        for canon, hint in self.names.items():
            unique_name(names, taken, canon, hint)
        self._text = _CANONICAL_NAMES.sub(lambda m: names[m.group(0)], self.code)
        return self._text

    def definition(self, linkage: str = "static") -> str:
        """The readable definition, the kernel's function declared ``linkage`` (``static`` in a
        model of one translation unit, ``EMBER_HIDDEN`` in a unit of its own)."""
        text = self._readable()
        at = text.rindex(f"void {self.name}(")
        comment = f"/* {_comment_text(self.comment)} */\n" if self.comment else ""
        return f"{text[:at]}{comment}{linkage} {text[at:]}"

    def unit(self, header: str = "model.h", helpers: frozenset[str] = frozenset()) -> str:
        """The kernel as a C file of its own: it includes ``header`` (the preamble; after
        defining ``EMBER_INTRINSICS`` where the code calls one of ``helpers``, see
        :func:`include_model_header`) and defines its readable name as its symbol, which the
        entry calls it by."""
        return (include_model_header(self.code, helpers, header) + f"#define {self.name} {self.symbol}\n\n"
                + self.definition("EMBER_HIDDEN"))

    def declaration(self) -> str:
        """What a file that calls the kernel by its readable name declares."""
        return (f"#define {self.name} {self.symbol}\n"
                f"EMBER_HIDDEN void {self.name}({', '.join(self.param_types) or 'void'});\n")


#: the name of a checking kernel's ember_check argument (names with "ember" are never a model's)
CHECK_ARG = "ember_chk"
#: the local flag the fast form of the checks sets
BAD_FLAG = "ember_bad"


def has_checks(s: Stmt) -> bool:
    """Whether the statement holds run-time checks (so its kernel takes the ember_check).  A
    kernel is asked this several times (its body, its parallel loops, the entry's call): the
    answer is kept on the statement (it lives as long as the statement, no longer), and a
    subexpression the statement's expressions share is looked at once."""
    def look(s: Stmt) -> bool:
        seen: set[int] = set()
        return any(isinstance(x, IndexCheck) for _, e in _exprs_of(s) for x in _subexprs(e, seen))
    return kept(s, "_has_checks", look)


def _subexprs(e: Expr, seen: set[int] | None = None):
    """Every subexpression of ``e`` once (expressions are DAGs: unrolled Winograd transforms
    share theirs), parents before children, children in the order ``rebuild`` visits them;
    none that ``seen`` (ids, added to) holds already."""
    from ..tir.analysis import rebuild

    if seen is None:
        seen = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        t = type(x)
        if t is BinOp:
            stack += (x.b, x.a)
        elif t is Load:
            stack.append(x.index)
        elif t is Ramp:
            stack.append(x.base)
        elif t is Broadcast:
            stack.append(x.value)
        elif t is Not or t is Cast:
            stack.append(x.a)
        elif t is Call:
            stack += reversed(x.args)
        elif t is IndexCheck:
            stack += (x.extent, x.index)
        elif t is Select:
            if isinstance(x.cond, Const):       # as rebuild: only the branch taken
                stack += (x.t if x.cond.value else x.f, x.cond)
            else:
                stack += (x.f, x.t, x.cond)
        elif t not in (Const, Var, SizeVar):
            kids: list = []
            rebuild(x, lambda c: kids.append(c) or c)
            stack += reversed(kids)


def checked_call(call: str, site_base: int = 0) -> str:
    """The entry's line calling a kernel with checks (``call`` ends with its ``&ember_chk``
    argument), whose site 0 is site ``site_base`` of the model's table
    (:attr:`KernelC.site_base`): after it, a failed check ends the run."""
    sites = f"ember_check_sites + {2 * site_base}" if site_base else "ember_check_sites"
    return (f"{call} if (EMBER_UNLIKELY(ember_check_failed(&{CHECK_ARG}))) "
            f"return ember_check_report(&{CHECK_ARG}, {sites});")


def _in_bounds(base: Expr, stride: int, lanes: int, size) -> bool:
    """Whether the loop ranges prove ``base + k * stride`` (k < lanes) inside [0, size)."""
    from ..tir.analysis import bound

    if not isinstance(size, int):
        return False
    b = bound(base)
    if b is None:
        return False
    lo = b[0] + min(0, (lanes - 1) * stride)
    hi = b[1] + max(0, (lanes - 1) * stride)
    return lo >= 0 and hi < size


def _ptr_type(b: Buffer, ctx: _Ctx) -> str:
    return vector_type(b.dtype) if b in ctx.vec_locals else c_type(b.dtype)


def vector_cast(code: str, src: str, dst: str) -> str:
    """C converting the vector ``code`` of ``src`` lanes to ``dst`` lanes (as C converts each)."""
    if src == dst:
        return code
    narrow = {"uint8": "u8", "int8": "s8"}
    if src in narrow:
        wide = f"ember_vwiden_{narrow[src]}({code})"
        return wide if dst == "int32" else vector_cast(wide, "int32", dst)
    if dst in narrow:
        if src != "int32":
            code, src = vector_cast(code, src, "int32"), "int32"
        return f"ember_vnarrow_{narrow[dst]}({code})"
    return f"__builtin_convertvector({code}, {vector_type(dst)})"


def vector_type(dtype: str) -> str:
    try:
        return VECTOR_TYPES[dtype]
    except KeyError:
        raise CodegenError(f"no vectors of {dtype} in the C backend") from None


def _consecutive(indices) -> bool:
    """Whether the index expressions are i, i + 1, i + 2, ..."""
    from ..tir.analysis import simplify_index

    base = indices[0]
    for k, ix in enumerate(indices[1:], 1):
        d = simplify_index(ix - base)
        if not (isinstance(d, Const) and d.value == k):
            return False
    return True


def _itemsize(dtype: str) -> int:
    return {"float64": 8, "int64": 8, "uint64": 8, "float32": 4, "int32": 4, "uint32": 4,
            "float16": 2, "bfloat16": 2, "int16": 2, "uint16": 2}.get(dtype, 1)


_walk_stmt = walk_stmts


def _exprs_of(s: Stmt):
    for x in _walk_stmt(s):
        if isinstance(x, Store):
            yield x, x.index
            yield None, x.value
        elif isinstance(x, IfThenElse):
            yield None, x.cond


def _store_run(stmts, k: int) -> int:
    """How many stores from ``stmts[k]`` on may share one plan of named subexpressions
    (``CGenerator.stmt``): consecutive stores of which none writes a buffer that any of them
    reads (so computing their values before the first store reads the same data) and without
    run-time checks (whose first failure is the one reported); 0 or 1 when not two."""
    n = k
    while n < len(stmts) and isinstance(stmts[n], Store):
        n += 1
    if n - k < 2:
        return n - k
    written = {id(x.buffer) for x in stmts[k:n]}
    seen: set[int] = set()
    for x in stmts[k:n]:
        for e in (x.index, x.value):
            for y in _subexprs(e, seen):
                if isinstance(y, IndexCheck) or (isinstance(y, Load) and id(y.buffer) in written):
                    return 1
    return n - k


def _loads(e: Expr):
    return [x for x in _subexprs(e) if isinstance(x, Load)]


def _vector_local(b: Buffer, body: Stmt, lanes: int) -> bool:
    if b.dtype not in ("float32", "int32") or not isinstance(b.size, int) or b.size % lanes:
        return False
    seen = False
    for store, e in _exprs_of(body):
        if store is not None:
            if store.buffer is b:
                seen = True
                if not _aligned_ramp(store.index, lanes):
                    return False
            loads = _loads(store.index)
        else:
            loads = _loads(e)
        for ld in loads:
            if ld.buffer is b:
                seen = True
                if not _aligned_ramp(ld.index, lanes):
                    return False
    return seen


def _aligned_ramp(idx: Expr, lanes: int) -> bool:
    return (isinstance(idx, Ramp) and idx.stride == 1 and idx.lanes == lanes and isinstance(idx.base, Const)
            and idx.base.value % lanes == 0)


def _buffers_used(s: Stmt) -> list[Buffer]:
    allocated = {x.buffer for x in _walk_stmt(s) if isinstance(x, Allocate)}
    seen: dict[int, Buffer] = {}
    looked: set[int] = set()        # subexpressions already looked at (their loads' buffers are in seen)
    for store, e in _exprs_of(s):
        if store is not None and store.buffer not in allocated:
            seen.setdefault(id(store.buffer), store.buffer)
        for ld in _subexprs(e, looked):
            if isinstance(ld, Load) and ld.buffer not in allocated:
                seen.setdefault(id(ld.buffer), ld.buffer)
    return list(seen.values())


def profiled(entry_body: list[str], kernel_names: list[str]) -> tuple[list[str], str]:
    """Wrap every kernel call of the entry in a clock, and define ``ember_profile`` (exported)
    that hands out the accumulated nanoseconds per kernel and the kernels' names."""
    n = len(kernel_names)
    body = []
    k = 0
    for line in entry_body:
        if line.startswith("memcpy"):
            body.append(line)
            continue
        body.append(f"{{ struct timespec _t0, _t1; clock_gettime(EMBER_PROFILE_CLOCK, &_t0); {line} "
                    f"clock_gettime(EMBER_PROFILE_CLOCK, &_t1); ember_kernel_ns[{k}] += "
                    f"(unsigned long long)((_t1.tv_sec - _t0.tv_sec) * 1000000000LL + (_t1.tv_nsec - _t0.tv_nsec)); }}")
        k += 1
    names = ", ".join(c_string(x) for x in kernel_names)
    defs = ("#include <time.h>\n#ifndef EMBER_PROFILE_CLOCK\n#define EMBER_PROFILE_CLOCK CLOCK_MONOTONIC\n#endif\n"
            f"static unsigned long long ember_kernel_ns[{max(n, 1)}];\n"
            f"static const char* const ember_kernel_names[{max(n, 1)}] = {{{names}}};\n"
            "__attribute__((visibility(\"default\"))) int ember_profile(const unsigned long long** ns, "
            "const char* const** names) {\n"
            f"  *ns = ember_kernel_ns; *names = ember_kernel_names; return {n};\n}}\n")
    return body, defs


def dim_c(d, sym_index: dict[str, int], syms: str = "syms", saturating: bool = False) -> str:
    """C (int64 arithmetic) for a dimension: an int, or a symbolic expression whose symbol k is
    ``syms[k]``.  Floor divisions and remainders of symbolic dimensions have non-negative
    operands, where C's division agrees.  ``saturating``: products and sums saturate at
    INT64_MAX instead of wrapping (``ember_sat_mul``/``ember_sat_add``; sizes of tensors the
    data decides, whose symbols may hold any value)."""
    from ..symbolic import Sym

    if not isinstance(d, Sym):
        return f"INT64_C({int(d)})"

    def atom(a) -> str:
        if isinstance(a, str):
            return f"{syms}[{sym_index[a]}]"
        return f"({dim_c(a[1], sym_index, syms, saturating)} {'/' if a[0] == '//' else '%'} INT64_C({a[2]}))"

    if saturating:
        total = f"INT64_C({d.const})"
        for mono, coef in d.terms:
            term = f"INT64_C({coef})"
            for a in mono:
                term = f"ember_sat_mul({term}, {atom(a)})"
            total = f"ember_sat_add({total}, {term})"
        return total
    parts = []
    for mono, coef in d.terms:
        factors = [atom(a) for a in mono]
        if coef != 1:
            factors.insert(0, f"INT64_C({coef})")
        parts.append(" * ".join(factors))
    if d.const:
        parts.append(f"INT64_C({d.const})")
    return "(" + " + ".join(parts) + ")"


def check_lines(checks, sym_index: dict) -> list[str]:
    """C lines that make ``checks`` (``Graph.checks``: (dim, op, what)) on the symbols' values
    ``syms``, each failure an error of the run (``return -1``)."""
    lines = []
    for d, op, what in checks:
        v = dim_c(d, sym_index)
        text = c_string(f"the input shapes fail a check of the model: {what} ({d} {op} 0 fails: it is ")[1:-1]
        lines.append(f"if (!({v} {op} 0)) {{ ember_set_error(\"{text}%lld)\", (long long)({v})); return -1; }}")
    return lines


def shape_function(inputs: list[tuple[str, tuple]], outputs: list[tuple[str, tuple]],
                   symbols: list[str], bounds: list[int], limits: dict | None = None, checks=()) -> str:
    """C of the symbol tables and ``ember_model_shapes`` of a model with symbolic dimensions
    (see ember_kernel.h): bind every symbol from the input shapes, check each input dimension
    against them, the symbols with a limit against it and the model's ``checks``
    (``Graph.checks``), and compute the output shapes; ``bounds`` are the planning sizes
    ``ember_symbol_bound`` reports."""
    from ..symbolic import Sym, dim_range

    idx = {n: k for k, n in enumerate(symbols)}
    names = ", ".join(c_string(n) for n in symbols)
    lines = [f"static const char* const ember_symbol_names[] = {{{names}}};",
             f"static const int64_t ember_symbol_bounds[] = {{{', '.join(f'INT64_C({b})' for b in bounds)}}};",
             "int ember_model_symbols(const char* const** names, const int64_t** bounds) {",
             f"  *names = ember_symbol_names; *bounds = ember_symbol_bounds; return {len(symbols)};",
             "}",
             "int ember_model_shapes(const int64_t* const* in_shapes, int64_t* syms, int64_t* const* out_shapes) {",
             f"  for (int k = 0; k < {len(symbols)}; ++k) syms[k] = -1;"]

    def plain(d):
        return isinstance(d, Sym) and d.name is not None

    for i, (name, dims) in enumerate(inputs):
        for k, d in enumerate(dims):
            got = f"in_shapes[{i}][{k}]"
            where = c_string(f"input '{name}' dimension {k}")[1:-1]
            if plain(d):
                j = idx[d.name]
                lines.append(f"  if (syms[{j}] < 0) syms[{j}] = {got};")
                lines.append(f"  else if (syms[{j}] != {got}) {{ ember_set_error(\"{where} is %lld, but "
                             f"'{symbols[j]}' is %lld from an earlier input\", (long long){got}, "
                             f"(long long)syms[{j}]); return -1; }}")
    for i, (name, dims) in enumerate(inputs):
        for k, d in enumerate(dims):
            if plain(d):
                continue
            got = f"in_shapes[{i}][{k}]"
            want = dim_c(d, idx)
            where = c_string(f"input '{name}' dimension {k}")[1:-1]
            lines.append(f"  if ({got} != {want}) {{ ember_set_error(\"{where} is %lld, expected %lld ({c_string(str(d))[1:-1]})\", "
                         f"(long long){got}, (long long){want}); return -1; }}")
    for j, n in enumerate(symbols):
        b = (limits or {}).get(n)
        if b is not None:
            lines.append(f"  if (syms[{j}] > INT64_C({b})) {{ ember_set_error(\"the input shapes give {n} = %lld, "
                         f"above its limit {b} (the model only works up to it)\", (long long)syms[{j}]); return -1; }}")
    lines += ["  " + x for x in check_lines(checks, idx)]
    # an output dimension that inputs too small for the model make negative (an STFT's frame
    # count (samples - 400)//160 + 1) is an error
    for i, (name, dims) in enumerate(outputs):
        for k, d in enumerate(dims):
            if isinstance(d, Sym) and dim_range(d)[0] < 0:
                where = c_string(f"dimension {k} ({d}) of output '{name}'")[1:-1]
                lines.append(f"  if ({dim_c(d, idx)} < 0) {{ ember_set_error(\"the inputs make {where} %lld: they are "
                             f"too small for the model\", (long long)({dim_c(d, idx)})); return -1; }}")
    lines.append("  if (out_shapes) {")
    for i, (name, dims) in enumerate(outputs):
        for k, d in enumerate(dims):
            lines.append(f"    out_shapes[{i}][{k}] = {dim_c(d, idx)};")
    lines.append("  }")
    lines.append("  return 0;\n}\n")
    return "\n".join(lines)


def buffer_table(buffers: list, plan, sym_index: dict) -> str:
    """C of ``ember_model_buffers`` and ``ember_model_buffer_sizes`` of a model with symbolic
    dimensions (see ember_kernel.h): the memory plan's intermediates, in the order of the
    entry's ``offsets``, with their planned offsets and sizes and lifetimes, and the bytes each
    needs for given symbol values (rounded up to the plan's alignment)."""
    n = max(len(buffers), 1)

    def table(ctype: str, name: str, values) -> str:
        vals = ", ".join(str(int(x)) for x in values) or "0"
        return f"static const {ctype} {name}[{n}] = {{{vals}}};"

    align = plan.alignment
    lines = [table("int64_t", "ember_buffer_offsets", (plan.offsets[v] for v in buffers)),
             table("int64_t", "ember_buffer_sizes", (plan.sizes[v] for v in buffers)),
             table("int32_t", "ember_buffer_first", (plan.lifetimes[v][0] for v in buffers)),
             table("int32_t", "ember_buffer_last", (plan.lifetimes[v][1] for v in buffers)),
             "int ember_model_buffers(const int64_t** offsets, const int64_t** sizes, const int32_t** first,",
             "                        const int32_t** last) {",
             "  *offsets = ember_buffer_offsets; *sizes = ember_buffer_sizes;",
             f"  *first = ember_buffer_first; *last = ember_buffer_last; return {len(buffers)};",
             "}",
             "void ember_model_buffer_sizes(const int64_t* syms, int64_t* sizes) {",
             "  (void)syms; (void)sizes;"]
    for k, v in enumerate(buffers):
        nbytes = v.type.num_elements * _itemsize(v.dtype)
        lines.append(f"  sizes[{k}] = (({dim_c(nbytes, sym_index)}) + {align - 1}) / {align} * {align};")
    lines.append("}\n")
    return "\n".join(lines)


def model_header(lanes: int, isa: str = "x86") -> str:
    """``model.h``, the header every C file of a model includes first: the runtime's
    interface and the preamble (:func:`preamble`)."""
    return ("/* Generated by Ember: the header every C file of a model includes. Do not edit. */\n"
            "#ifndef EMBER_MODEL_H\n#define EMBER_MODEL_H\n#include \"ember_kernel.h\"\n#include <stdlib.h>\n\n"
            + preamble(lanes, isa) + "#endif\n")


def module_source(model_name: str, lanes: int, kernels: list[str], entry_body: list[str], metadata: dict,
                  arena_bytes: int, profile_names: list[str] | None = None, shapes_c: str = "",
                  check_sites: list[str] = (), data_entry: str | None = None, isa: str = "x86") -> str:
    """The whole C translation unit of a compiled model, ``kernels`` the definitions
    :meth:`CGenerator.kernel` returned; with ``profile_names``, every kernel call is timed (see
    :func:`profiled`).  ``shapes_c`` is the shape function of a model with symbolic dimensions
    (:func:`shape_function`); the entry reads the symbols' values from ``syms``.
    ``check_sites`` (``CGenerator.check_sites``) describe the kernels' run-time checks: the entry
    then holds the run's ``ember_check``.  ``data_entry`` (the parameters after the outputs)
    makes the entry ``ember_model_entry_data`` of a model that binds symbols from data
    (``build.data_dims``); ``isa`` picks the preamble's ISA module (``Target.isa``).
    :func:`model_units` gives the same model as C files."""
    return (f"/* Generated by Ember from model '{_comment_text(model_name)}'. Do not edit. */\n"
            "#include \"ember_kernel.h\"\n#include <stdlib.h>\n\n" + preamble(lanes, isa)
            + _entry_source(entry_body, metadata, arena_bytes, profile_names, shapes_c, check_sites, data_entry,
                            "\n".join(kernels)))


def model_units(model_name: str, lanes: int, kernels: "list[KernelC]", entry_body: list[str], metadata: dict,
                arena_bytes: int, profile_names: list[str] | None = None, shapes_c: str = "",
                check_sites: list[str] = (), data_entry: str | None = None, isa: str = "x86") -> dict[str, str]:
    """The C files of a compiled model (the arguments as :func:`module_source`'s, with
    ``kernels`` the generator's :attr:`CGenerator.kernels`): ``model.h`` (:func:`model_header`),
    one file per distinct kernel named by its symbol (``ember_k_<hash>.c``, :meth:`KernelC.unit`;
    kernels with the same code share it) and ``model.c``, the entry, which calls each kernel by
    its readable name, defined (``#define``) as its symbol."""
    files = {"model.h": model_header(lanes, isa)}
    helpers = intrinsic_helpers(lanes, isa)
    decls, first = [], {}
    for kc in kernels:
        seen = first.setdefault(kc.symbol, kc)
        if seen is kc:
            files[f"{kc.symbol}.c"] = kc.unit(helpers=helpers)
        elif seen.code != kc.code:
            raise CodegenError(f"kernels {seen.name} and {kc.name} have different code under one hash")
        else:
            decls.append(f"/* {kc.name}: the same code as {seen.name} */\n")
        decls.append(kc.declaration())
    body = ("/* the kernels, each in the file named by its symbol */\n" + "".join(decls)
            + _entry_source(entry_body, metadata, arena_bytes, profile_names, shapes_c, check_sites, data_entry, ""))
    files["model.c"] = (f"/* Generated by Ember from model '{_comment_text(model_name)}'. Do not edit. */\n"
                        + include_model_header(body, helpers) + "\n" + body)
    return files


def units_listing(files: dict[str, str]) -> str:
    """The C files of :func:`model_units` as one text to read (a dump's ``model.c``): each
    file under a line naming it, the header first and the entry last."""
    names = ["model.h"] + [n for n in files if n not in ("model.h", "model.c")] + ["model.c"]
    return "".join(f"/* ==== {n} ==== */\n{files[n]}\n" for n in names if n in files)


def _comment_text(text: str) -> str:
    return text.replace("*/", "* /")


def _entry_source(entry_body: list[str], metadata: dict, arena_bytes: int, profile_names: list[str] | None,
                  shapes_c: str, check_sites, data_entry: str | None, kernels: str) -> str:
    """Everything of a model's C after the preamble: the tables, ``kernels`` and the entry."""
    meta = json.dumps(metadata, separators=(",", ":"))
    checks = ""
    if check_sites:
        checks = ("static const char* const ember_check_sites[] = {\n"
                  + "".join(f"  {c_string(x)},\n" for x in check_sites) + "};\n")
    prof = ""
    if profile_names is not None:
        entry_body, prof = profiled(entry_body, profile_names)
    if check_sites:
        entry_body = [f"ember_check {CHECK_ARG} = {{0, 0, 0, 0}};"] + list(entry_body)
    return (
        prof
        + "\nextern const unsigned char ember_constants[];\n"
        + f"const char ember_model_metadata[] = {c_string(meta)};\n"
        + f"const unsigned long long ember_model_arena_bytes = {arena_bytes}ULL;\n\n"
        + (shapes_c + "\n" if shapes_c else "")
        + checks
        + kernels
        + (_DYNAMIC_ENTRY if shapes_c else "")
        + (f"\nint ember_model_entry_data(unsigned char* arena, void* const* inputs, void* const* outputs, "
           f"{data_entry}) {{\n  (void)arena; (void)inputs; (void)outputs; (void)syms; (void)offsets; (void)blocks;\n"
           if data_entry else
           f"\nint ember_model_entry{'_dynamic' if shapes_c else ''}(unsigned char* arena, void* const* inputs, "
           f"void* const* outputs{', const int64_t* syms, const int64_t* offsets' if shapes_c else ''}) {{\n"
           + f"  (void)arena; (void)inputs; (void)outputs;{' (void)syms; (void)offsets;' if shapes_c else ''}\n")
        + "".join(f"  {line}\n" for line in entry_body)
        + "  return 0;\n}\n"
    )


def tile_accumulators(registers: int) -> int:
    """Vector accumulators from which a register tile leaves too few of ``registers`` (a quarter
    or less) for the C compiler to unroll its reduction loop: 12 of 16, 6 of 8.  Capped at 12,
    the value measured on 16 registers: on 32 (AVX-512, AArch64) unrolling tiles of 12 to 23
    accumulators has not been shown faster, so their code stays as it was measured."""
    return min(12, registers - registers // 4)


def _register_tile_update(body: Stmt, accumulators: int) -> bool:
    """A loop body that updates a large register tile: one vector store per accumulator (at least
    ``accumulators``), all to one local buffer."""
    if not isinstance(body, Seq):
        return False
    stores = [x for x in body.stmts if isinstance(x, Store) and isinstance(x.index, Ramp)]
    return (len(stores) >= accumulators and len({id(x.buffer) for x in stores}) == 1
            and stores[0].buffer.scope == "local")


#: the entry without shapes of a model with symbolic dimensions: it needs them
_DYNAMIC_ENTRY = """
int ember_model_entry(unsigned char* arena, void* const* inputs, void* const* outputs) {
  (void)arena; (void)inputs; (void)outputs;
  ember_set_error("the model has symbolic dimensions: run it with the input shapes");
  return -1;
}
"""


def _is_size(e: Expr) -> bool:
    """Whether an integer expression is built of size variables and non-negative constants by
    +, *, and division or remainder by positive constants (so it is never negative)."""
    if isinstance(e, SizeVar):
        return True
    if isinstance(e, BinOp) and e.op in ("add", "mul"):
        return all(_is_size(x) or (isinstance(x, Const) and isinstance(x.value, int) and x.value >= 0)
                   for x in (e.a, e.b))
    if isinstance(e, BinOp) and e.op in ("div", "mod"):
        return _is_size(e.a) and isinstance(e.b, Const) and isinstance(e.b.value, int) and e.b.value > 0
    return False

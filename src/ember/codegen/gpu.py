"""GPU kernels from the loop IR: CUDA C++, OpenCL C or Metal Shading Language by a C-style
generator, WGSL by a writer on it (``lang_wgsl``; :func:`generator` picks).

The loop IR of a GPU kernel (:mod:`ember.tir.gpu`) maps onto the C dialects line by line: a loop
bound to a block or thread axis becomes a constant holding that index (``blockIdx.x`` in CUDA,
``get_group_id(0)`` in OpenCL, a ``[[threadgroup_position_in_grid]]`` parameter in Metal), a
shared buffer an array in the block's shared memory, a barrier ``__syncthreads()``,
``barrier(CLK_LOCAL_MEM_FENCE)`` or ``threadgroup_barrier(mem_flags::mem_threadgroup)``, and
everything else the same scalar C in all three.  What differs between the dialects (type names,
index and barrier words, the functions of the float intrinsics (``MATH``, keyed by the names of
``ember.tir.intrinsics``), reserved words, the kernel signature) sits in a small language module:
``lang_cuda``, ``lang_opencl``, ``lang_metal``.

Indices are 32-bit ``int`` where the kernel's sizes allow (``PrimFunc.attrs["index_bits"]``),
else 64-bit.  A run-time index check (``IndexCheck``) that fails sets the flag ``ember_bad`` (an
extra ``int`` buffer argument of the kernels that have checks) and goes on with index 0, so no
access leaves its buffer; the runtime reports the failure after the run.

float16 (``-dtype=float16`` targets) is a storage type: a float16 buffer in device memory is
``__half`` (CUDA, ``cuda_fp16.h``) or ``half`` (OpenCL, read and written by ``vload_half`` and
``vstore_half_rte``, which need no ``cl_khr_fp16``); each load widens to ``float``, arithmetic
runs in float32, each store and each cast to float16 rounds to nearest even; local and shared
float16 buffers hold floats (:data:`HALF` has the words of each language).
"""

from __future__ import annotations

from ..errors import CodegenError
from ..tir.expr import (BinOp, Broadcast, Call, Cast, Const, Expr, IndexCheck, Load, Not, Ramp, Select, Var,
                        is_float_dtype)
from ..tir.gpu import check_kernel, DeviceLimits
from ..tir.stmt import Allocate, Barrier, For, IfThenElse, PrimFunc, Seq, Stmt, Store
from . import lang_cuda, lang_metal, lang_opencl
from .c import c_ident, float_literal, unique_name

LANGUAGES = {m.NAME: m for m in (lang_cuda, lang_opencl, lang_metal)}

#: the language of each GPU target kind
KIND_LANGUAGE = {"cuda": "cuda", "opencl": "opencl", "metal": "metal", "webgpu": "wgsl"}

#: float16 in device memory, per language: (pointer type, load of ``{b}[{i}]``, store of ``{v}``
#: at ``{b}[{i}]``, round ``{v}`` to the nearest float16, header).  OpenCL rounds with the
#: helper ``ember_round_half`` (no ``half`` values without cl_khr_fp16).
HALF = {
    "cuda": ("__half", "__half2float({b}[{i}])", "{b}[{i}] = __float2half_rn({v});",
             "__half2float(__float2half_rn({v}))", "#include <cuda_fp16.h>\n"),
    "opencl": ("half", "vload_half({i}, {b})", "vstore_half_rte({v}, {i}, {b});", "ember_round_half({v})", ""),
}

#: OpenCL C: a float rounded to the nearest float16 value (ties to even; overflow to infinity)
_ROUND_HALF = """static inline float ember_round_half(float x) {
  uint u = as_uint(x), a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) return x;                                   /* infinity, NaN */
  if (a >= 0x477ff000u) return as_float((u & 0x80000000u) | 0x7f800000u);
  if (a < 0x38800000u) return copysign(rint(fabs(x) * 16777216.0f) * 5.9604644775390625e-8f, x);
  a = (a + 0xfffu + ((a >> 13) & 1u)) & ~0x1fffu;                   /* 10 fraction bits, to even */
  return as_float((u & 0x80000000u) | a);
}"""

#: the flag buffer of kernels with run-time index checks
BAD_FLAG = "ember_bad"

_BINOPS = {"add": "+", "sub": "-", "mul": "*", "eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">",
           "ge": ">=", "and": "&&", "or": "||"}

#: the intrinsics (``ember.tir.intrinsics``) the C-style generator writes the same way in every
#: language (as it does integer ``abs`` and ``pow``); the float intrinsics each language writes
#: from its table ``MATH`` (name -> function)
GENERIC_CALLS = ("no_contract", "isnan", "fixed_point_mul")


def printed_intrinsics(language: str) -> set:
    """The intrinsics the GPU language ``language`` can print (for some dtype)."""
    if language == "wgsl":
        from . import lang_wgsl
        return lang_wgsl.printed_intrinsics()
    return set(GENERIC_CALLS) | set(LANGUAGES[language].MATH)


def no_printing(fn: str, dtype: str, language: str) -> CodegenError:
    """The error of an intrinsic that ``language`` does not print on ``dtype``."""
    return CodegenError(f"the intrinsic {fn} on {dtype} is not supported by the {language} backend yet "
                        f"(it has no printing of it)")


class GPUGenerator:
    """Writes GPU kernels in ``language`` (``"cuda"``, ``"opencl"`` or ``"metal"``); ``source()`` is the
    translation unit of every kernel written so far."""

    def __init__(self, language: str, limits: DeviceLimits | None = None):
        try:
            self.lang = LANGUAGES[language]
        except KeyError:
            raise CodegenError(f"no GPU language {language!r}; known: {', '.join(LANGUAGES)}") from None
        self.limits = limits or getattr(self.lang, "LIMITS", None) or DeviceLimits()
        self.helpers: dict[str, str] = {}
        self.kernels: list[str] = []
        self.fp64 = False
        self.fp16 = False
        self.contract = True            # False: some kernel asks for unfused multiply-adds
        self._names: dict = {}
        self._used: set = set()
        self._index = "int"

    # ---- types and names -------------------------------------------------------------------

    def ctype(self, dtype: str) -> str:
        if dtype == "float16":
            self._half(0)                    # (a float16 value is a float where float16 is stored)
            dtype = "float32"
        t = self.lang.TYPES.get(dtype)
        if t is None:
            raise CodegenError(f"dtype {dtype} is not supported by the {self.lang.NAME} backend yet")
        if dtype == "float64":
            self.fp64 = True
        return t

    def _half(self, k: int) -> str:
        """Word ``k`` of :data:`HALF` for this language (float16 is used)."""
        words = HALF.get(self.lang.NAME)
        if words is None:
            raise CodegenError(f"float16 is not supported by the {self.lang.NAME} backend yet")
        self.fp16 = True
        return words[k]

    @staticmethod
    def _in_memory_half(buf) -> bool:
        return buf.dtype == "float16" and buf.scope == "global"

    def name(self, obj, hint: str) -> str:
        if c_ident(hint) in getattr(self.lang, "RESERVED", ()):
            hint = "v_" + hint
        return unique_name(self._names, self._used, obj, hint)

    def helper(self, name: str, code: str) -> str:
        self.helpers.setdefault(name, code)
        return name

    # ---- expressions -----------------------------------------------------------------------

    def const(self, c: Const) -> str:
        v = c.value
        if c.dtype == "bool":
            return "1" if v else "0"
        if is_float_dtype(c.dtype):
            s = float_literal(v, c.dtype)
            if c.dtype == "float16":
                return float_literal(v, "float32")       # (already a float16 value)
            return s if c.dtype in ("float32", "float64") else f"(({self.ctype(c.dtype)}){s})"
        if c.dtype == "int64":
            if self._index == "int" and -(1 << 31) < v < (1 << 31):
                return str(v)          # (an index: every index of this kernel fits in an int)
            if v == -(1 << 63):
                return f"(-9223372036854775807{self.lang.INT64_SUFFIX} - 1)"
            return f"{v}{self.lang.INT64_SUFFIX}"
        if c.dtype == "uint64":
            return f"{v}U{self.lang.INT64_SUFFIX}"
        return f"(({self.ctype(c.dtype)}){v})"

    def expr(self, e: Expr) -> str:
        if isinstance(e, (Ramp, Broadcast)) or getattr(e, "lanes", 1) > 1:
            raise CodegenError("vector expressions are not generated for GPU kernels (threads are scalar)")
        if isinstance(e, Const):
            return self.const(e)
        if isinstance(e, Var):
            return self.name(e, e.name)
        if isinstance(e, Load):
            return self.load(e)
        if isinstance(e, IndexCheck):
            return self.index_check(e)
        if isinstance(e, BinOp):
            return self.binop(e)
        if isinstance(e, Not):
            return f"(!{self.expr(e.a)})"
        if isinstance(e, Cast):
            return self.cast(e)
        if isinstance(e, Select):
            return self.select(e)
        if isinstance(e, Call):
            return self.call(e)
        raise CodegenError(f"cannot generate {self.lang.NAME} for {type(e).__name__}")

    def load(self, e: Load) -> str:
        if self._in_memory_half(e.buffer):
            return self._half(1).format(b=self.name(e.buffer, e.buffer.name), i=self.expr(e.index))
        return f"{self.name(e.buffer, e.buffer.name)}[{self.expr(e.index)}]"

    def index_check(self, e: IndexCheck) -> str:
        i64 = self.lang.TYPES["int64"]
        glob = getattr(self.lang, "POINTER_SPACE", "")
        fn = self.helper("ember_index", f"{self.lang.FUNC} {i64} ember_index({i64} i, {i64} n, {glob}int* bad) {{\n"
                                        f"  {i64} j = i < 0 ? i + n : i;\n"
                                        "  if (j < 0 || j >= n) { *bad = 1; return 0; }\n"
                                        "  return j;\n}")
        self._checks = True
        return f"{fn}({self.expr(e.index)}, {self.expr(e.extent)}, {BAD_FLAG})"

    def cast(self, e: Cast) -> str:
        a = self.expr(e.a)
        if e.dtype == "bool":
            return f"(({a}) != 0)"
        if e.dtype == "float16":
            if self.lang.NAME == "opencl":
                self.helper("ember_round_half", _ROUND_HALF)
            return self._half(3).format(v=f"((float)({a}))")
        return f"(({self.ctype(e.dtype)})({a}))"

    def select(self, e: Select) -> str:
        return f"({self.expr(e.cond)} ? {self.expr(e.t)} : {self.expr(e.f)})"

    def binop(self, e: BinOp) -> str:
        a, b = self.expr(e.a), self.expr(e.b)
        dt = e.a.dtype
        if e.op in _BINOPS:
            if e.op in ("add", "sub", "mul") and dt == "bool":
                return f"(({a} {_BINOPS[e.op]} {b}) != 0)"
            return f"({a} {_BINOPS[e.op]} {b})"
        t = self.ctype(dt) if dt != "bool" else "int"
        tag = t.replace(" ", "_")
        if e.op in ("max", "min"):
            cmp = ">" if e.op == "max" else "<"
            nan = " || a != a" if is_float_dtype(dt) else ""
            fn = self.helper(f"ember_{e.op}_{tag}", f"{self.lang.FUNC} {t} ember_{e.op}_{tag}({t} a, {t} b) "
                                                    f"{{ return (a {cmp} b{nan}) ? a : b; }}")
            return f"{fn}({a}, {b})"
        if e.op in ("div", "mod"):
            if is_float_dtype(dt):
                return f"({a} / {b})" if e.op == "div" else f"{self.lang.math('fmod', dt)}({a}, {b})"
            if isinstance(e.b, Const) and e.b.value > 0:
                return f"({a} {'/' if e.op == 'div' else '%'} {b})"
            # C's division, defined for a zero divisor (0) and for MIN / -1 (as the CPU backend)
            signed = not dt.startswith("uint") and dt != "bool"
            if e.op == "div":
                body = "b == 0 ? 0 : (b == -1 ? -a : a / b)" if signed else "b == 0 ? 0 : a / b"
            else:
                body = "(b == 0 || b == -1) ? 0 : a % b" if signed else "b == 0 ? 0 : a % b"
            fn = self.helper(f"ember_{e.op}_{tag}", f"{self.lang.FUNC} {t} ember_{e.op}_{tag}({t} a, {t} b) "
                                                    f"{{ return {body}; }}")
            return f"{fn}({a}, {b})"
        raise CodegenError(f"unknown binary op {e.op}")

    def call(self, e: Call) -> str:
        args = [self.expr(a) for a in e.args]
        dt = e.args[0].dtype
        if e.fn == "no_contract":
            self.contract = False
            return args[0]
        if e.fn == "isnan":
            return self.lang.isnan(args[0]) if is_float_dtype(dt) else "0"
        if e.fn == "abs" and not is_float_dtype(dt):
            return args[0] if dt.startswith("uint") or dt == "bool" else f"({args[0]} < 0 ? -{args[0]} : {args[0]})"
        if e.fn == "pow" and not is_float_dtype(dt):
            t = self.ctype(dt)
            tag = t.replace(" ", "_")
            # a negative exponent: the integer part of the real power, as the CPU's ember_ipow
            neg = "" if dt.startswith("uint") or dt == "bool" else \
                "  if (b < 0) return a == 1 ? 1 : (a == -1 ? ((b & 1) ? -1 : 1) : 0);\n"
            fn = self.helper(f"ember_pow_{tag}", f"{self.lang.FUNC} {t} ember_pow_{tag}({t} a, {t} b) {{\n"
                                                 f"  {t} r = 1;\n{neg}"
                                                 "  while (b > 0) { if (b & 1) r *= a; a *= a; b >>= 1; }\n"
                                                 "  return r;\n}")
            return f"{fn}({args[0]}, {args[1]})"
        if e.fn == "fixed_point_mul":
            return f"{self.fixed_point_mul()}({', '.join(args)})"
        if not is_float_dtype(dt) or e.fn not in self.lang.MATH:
            raise no_printing(e.fn, dt, self.lang.NAME)
        if dt not in ("float32", "float64", "float16"):
            raise CodegenError(f"math on {dt} is not supported by the {self.lang.NAME} backend yet")
        for name, code in getattr(self.lang, "helpers", lambda fn: {})(e.fn).items():
            self.helper(name, code)
        # float16 values are floats: float32's function; the store or cast after it rounds
        return f"{self.lang.math(e.fn, 'float32' if dt == 'float16' else dt)}({', '.join(args)})"

    def fixed_point_mul(self) -> str:
        """The helper of the ``fixed_point_mul`` intrinsic, in 64-bit integers (as the CPU's
        scalar ember_fixed_point_mul)."""
        i, L = self.ctype("int32"), self.ctype("int64")
        return self.helper("ember_fixed_point_mul", f"""{self.lang.FUNC} {i} ember_fixed_point_mul({i} x, {i} m, {i} s) {{
  {i} left = s > 0 ? (s < 31 ? s : 31) : 0;
  {i} right = s < 0 ? (s > -31 ? -s : 31) : 0;
  {L} hi = ({L})2147483647, lo = -hi - 1;
  {L} xl = ({L})x * ((({L})1) << left);
  xl = xl > hi ? hi : (xl < lo ? lo : xl);
  {L} h = (xl * ({L})m + ((({L})1) << 30)) >> 31;
  {i} r = ({i})(h > hi ? hi : h);
  {i} mask = ({i})((1u << right) - 1u);
  {i} threshold = (mask >> 1) + (r < 0 ? 1 : 0);
  return (r >> right) + ((r & mask) > threshold ? 1 : 0);
}}""")

    # ---- statements ------------------------------------------------------------------------

    def stmt(self, s: Stmt, ind: str, out: list[str]) -> None:
        if isinstance(s, Seq):
            for x in s.stmts:
                self.stmt(x, ind, out)
        elif isinstance(s, For):
            v = self.name(s.var, s.var.name)
            if s.kind.startswith(("blockIdx.", "threadIdx.")):
                prefix, axis = s.kind.split(".")
                out.append(ind + self.bound_var(v, prefix, axis, s.extent))
                self.stmt(s.body, ind, out)
                return
            out += [ind + line for line in self.loop_head(v, s)]
            self.stmt(s.body, ind + "  ", out)
            out.append(f"{ind}}}")
        elif isinstance(s, Store):
            self.store(s, ind, out)
        elif isinstance(s, Allocate):
            self.allocate(s.buffer, ind, out)
            self.stmt(s.body, ind, out)
        elif isinstance(s, IfThenElse):
            cond = self.expr(s.cond)
            self.flush(ind, out)
            out.append(f"{ind}if ({cond}) {{")
            self.stmt(s.then, ind + "  ", out)
            if s.other is not None:
                out.append(f"{ind}}} else {{")
                self.stmt(s.other, ind + "  ", out)
            out.append(f"{ind}}}")
        elif isinstance(s, Barrier):
            out.append(f"{ind}{self.lang.BARRIER}")
        else:
            raise CodegenError(f"cannot generate {self.lang.NAME} for {type(s).__name__}")

    # the parts of a statement that differ between languages

    def bound_var(self, v: str, prefix: str, axis: str, extent: int) -> str:
        """The declaration of ``v``, the index of the block or thread on ``axis``."""
        word = self.lang.INDEX[prefix].format(axis=axis, dim="xyz".index(axis))
        return f"const {self._index} {v} = ({self._index}){word};  /* one of {extent} */"

    def loop_head(self, v: str, s: For) -> list[str]:
        pragma = ["#pragma unroll"] if s.kind == "unrolled" else []
        return pragma + [f"for ({self._index} {v} = 0; {v} < {s.extent}; ++{v}) {{"]

    def store(self, s: Store, ind: str, out: list[str]) -> None:
        buf = self.name(s.buffer, s.buffer.name)
        if self._in_memory_half(s.buffer):
            out.append(ind + self._half(2).format(b=buf, i=self.expr(s.index), v=self.expr(s.value)))
            return
        out.append(f"{ind}{buf}[{self.expr(s.index)}] = {self.expr(s.value)};")

    def allocate(self, b, ind: str, out: list[str]) -> None:
        word = f"{self.lang.SHARED} " if b.scope == "shared" else ""
        out.append(f"{ind}{word}{self.ctype(b.dtype)} {self.name(b, b.name)}[{b.size}];")

    def flush(self, ind: str, out: list[str]) -> None:
        """Statements an expression just written needs before its statement (none in C)."""

    def kernel(self, f: PrimFunc) -> str:
        """Check ``f`` (:func:`ember.tir.gpu.check_kernel`) and write it; returns its source.
        ``f.attrs["launch"]`` receives its grid and block sizes and whether it takes the flag."""
        launch = check_kernel(f, self.limits)
        self._names, self._used = {}, set()
        self._index = "int" if f.attrs.get("index_bits", 64) == 32 else self.lang.TYPES["int64"]
        self._checks = False
        kname = self.name(f, f.name)
        params = [(self._half(0) if self._in_memory_half(b) else self.ctype(b.dtype), self.name(b, b.name), b.const)
                  for b in f.params]
        body: list[str] = []
        self.stmt(f.body, "  ", body)
        if self._checks:
            params.append(("int", BAD_FLAG, False))
        most = getattr(self.lang, "MAX_BUFFERS", None)
        if most is not None and len(params) > most:
            raise CodegenError(f"kernel {kname} ({f.comment or 'one fused group'}) takes {len(params)} buffers; "
                               f"a {self.lang.NAME} kernel takes {most} at most")
        head = self.lang.kernel_head(kname, params, launch.block)
        comment = f"/* {f.comment} */\n" if f.comment else ""
        src = comment + head + " {\n" + "\n".join(body) + "\n}\n"
        f.attrs["launch"] = {"name": kname, "grid": list(launch.grid), "block": list(launch.block),
                             "checks": self._checks}
        self.kernels.append(src)
        return src

    def source(self) -> str:
        """The translation unit: the prelude, the helpers used, every kernel."""
        parts = [self.lang.prelude(self.fp64)]
        if self.fp16:
            parts.append(self._half(4))
        if self.lang.NAME == "cuda":
            parts.append("#define INFINITY __int_as_float(0x7f800000)\n#define NAN __int_as_float(0x7fffffff)\n")
        parts += [h + "\n" for h in self.helpers.values()]
        parts += ["\n" + k for k in self.kernels]
        return "".join(parts)


def generator(language: str, limits: DeviceLimits | None = None):
    """The kernel writer of ``language``: ``cuda``, ``opencl`` (:class:`GPUGenerator`) or ``wgsl``
    (:class:`~ember.codegen.lang_wgsl.WGSLGenerator`, whose ``kernel`` also takes the parameters'
    places)."""
    if language == "wgsl":
        from .lang_wgsl import WGSLGenerator

        return WGSLGenerator(limits)
    return GPUGenerator(language, limits)

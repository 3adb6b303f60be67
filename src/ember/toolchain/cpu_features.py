"""The processor features an artifact's code may use, for its load-time check (``ember_cpu_check``).

Whatever the flags (``-march=native``, ``-march=skylake-avx512``, ``-mavx2`` ...), the C compiler
says which instruction-set extensions they enable through its predefined macros.  Every macro
the flags define that the baseline (the same flags without any ``-m`` option, for the
architecture's baseline: x86-64, armv8-a) does not define names an extension the code may use,
so the list is complete by construction.  :func:`header` turns it into ``ember_cpu_features.h``,
which ``runtime.c`` includes:

* x86: each extension tested with ``__builtin_cpu_supports`` where the compiler knows its name
  (one probe compile asks it), else from its CPUID bit (:data:`X86_CPUID`, with the register
  state the OS must enable for vector extensions); an extension neither knows is refused: the
  check fails naming it (nothing can tell whether this processor has it).
* aarch64: each ``__ARM_FEATURE_*`` extension as a bit of ``getauxval(AT_HWCAP / AT_HWCAP2)``
  (:data:`ARM_HWCAP`); one not in the table is refused likewise.
* 32-bit ARM and RISC-V (Linux): the extensions of :data:`ARM32_HWCAP` and :data:`RISCV_HWCAP`
  the flags enable (NEON, VFPv4, dotprod; the vector extension V), each a bit of ``AT_HWCAP``,
  whether or not the baseline has them (its default differs between compilers).
* other architectures (WebAssembly: the engine refuses a module with instructions it lacks
  when it compiles it): no list; the check passes everything.

The baseline of a cross compiler (``zig cc -target TRIPLE``) is its default processor for the
triple, the flags without their ``-m`` options.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from typing import Sequence

#: Macros the flags may add that name no instruction-set extension (or one another macro names).
X86_NOT_FEATURES = re.compile(r"^__(FP_FAST_FMA\w*|EVEX512__|MMX_WITH_SSE__|SSE_MATH__|SSE2_MATH__|"
                              r"GCC_ASM_FLAG_OUTPUTS__|SEG_FS|SEG_GS|CET__|BIGGEST_ALIGNMENT__|"
                              r"FLT_EVAL_METHOD\w*|SIZEOF\w*|pic__|PIC__|pie__|PIE__)$")

#: x86 macro names whose ``__builtin_cpu_supports`` name is not the plain lower-case spelling
X86_NAMES = {"SSE4_1": "sse4.1", "SSE4_2": "sse4.2", "LAHF_SAHF": "lahf_lm", "APX_F": "apxf",
             "AVX10_1_256": "avx10.1-256", "AVX10_1_512": "avx10.1-512", "AVX10_1": "avx10.1-256",
             "GCC_HAVE_SYNC_COMPARE_AND_SWAP_16": "cmpxchg16b"}

_EAX, _EBX, _ECX, _EDX = range(4)
#: XCR0 bits the OS must set before a vector extension's registers are usable
_YMM, _ZMM, _AMX = 0x6, 0xE6, 0x60000

#: x86 extensions by CPUID: name -> (leaf, subleaf, register, bit, XCR0 state needed).  Used for
#: the names the compiler's ``__builtin_cpu_supports`` does not know.
X86_CPUID = {
    "sse3": (1, 0, _ECX, 0, 0), "pclmul": (1, 0, _ECX, 1, 0), "ssse3": (1, 0, _ECX, 9, 0),
    "fma": (1, 0, _ECX, 12, _YMM), "cmpxchg16b": (1, 0, _ECX, 13, 0), "sse4.1": (1, 0, _ECX, 19, 0),
    "sse4.2": (1, 0, _ECX, 20, 0), "crc32": (1, 0, _ECX, 20, 0), "movbe": (1, 0, _ECX, 22, 0),
    "popcnt": (1, 0, _ECX, 23, 0), "aes": (1, 0, _ECX, 25, 0), "xsave": (1, 0, _ECX, 26, 0),
    "avx": (1, 0, _ECX, 28, _YMM), "f16c": (1, 0, _ECX, 29, _YMM), "rdrnd": (1, 0, _ECX, 30, 0),
    "fxsr": (1, 0, _EDX, 24, 0), "sse": (1, 0, _EDX, 25, 0), "sse2": (1, 0, _EDX, 26, 0),
    "fsgsbase": (7, 0, _EBX, 0, 0), "bmi": (7, 0, _EBX, 3, 0), "avx2": (7, 0, _EBX, 5, _YMM),
    "bmi2": (7, 0, _EBX, 8, 0), "avx512f": (7, 0, _EBX, 16, _ZMM), "avx512dq": (7, 0, _EBX, 17, _ZMM),
    "rdseed": (7, 0, _EBX, 18, 0), "adx": (7, 0, _EBX, 19, 0), "avx512ifma": (7, 0, _EBX, 21, _ZMM),
    "clflushopt": (7, 0, _EBX, 23, 0), "clwb": (7, 0, _EBX, 24, 0), "avx512cd": (7, 0, _EBX, 28, _ZMM),
    "sha": (7, 0, _EBX, 29, 0), "avx512bw": (7, 0, _EBX, 30, _ZMM), "avx512vl": (7, 0, _EBX, 31, _ZMM),
    "prefetchwt1": (7, 0, _ECX, 0, 0), "avx512vbmi": (7, 0, _ECX, 1, _ZMM), "pku": (7, 0, _ECX, 3, 0),
    "waitpkg": (7, 0, _ECX, 5, 0), "avx512vbmi2": (7, 0, _ECX, 6, _ZMM), "shstk": (7, 0, _ECX, 7, 0),
    "gfni": (7, 0, _ECX, 8, 0), "vaes": (7, 0, _ECX, 9, _YMM), "vpclmulqdq": (7, 0, _ECX, 10, _YMM),
    "avx512vnni": (7, 0, _ECX, 11, _ZMM), "avx512bitalg": (7, 0, _ECX, 12, _ZMM),
    "avx512vpopcntdq": (7, 0, _ECX, 14, _ZMM), "rdpid": (7, 0, _ECX, 22, 0), "kl": (7, 0, _ECX, 23, 0),
    "cldemote": (7, 0, _ECX, 25, 0), "movdiri": (7, 0, _ECX, 27, 0), "movdir64b": (7, 0, _ECX, 28, 0),
    "enqcmd": (7, 0, _ECX, 29, 0), "uintr": (7, 0, _EDX, 5, 0), "avx512vp2intersect": (7, 0, _EDX, 8, _ZMM),
    "serialize": (7, 0, _EDX, 14, 0), "tsxldtrk": (7, 0, _EDX, 16, 0), "pconfig": (7, 0, _EDX, 18, 0),
    "amx-bf16": (7, 0, _EDX, 22, _AMX), "avx512fp16": (7, 0, _EDX, 23, _ZMM), "amx-tile": (7, 0, _EDX, 24, _AMX),
    "amx-int8": (7, 0, _EDX, 25, _AMX), "sha512": (7, 1, _EAX, 0, _YMM), "sm3": (7, 1, _EAX, 1, 0),
    "sm4": (7, 1, _EAX, 2, _YMM), "raoint": (7, 1, _EAX, 3, 0), "avxvnni": (7, 1, _EAX, 4, _YMM),
    "avx512bf16": (7, 1, _EAX, 5, _ZMM), "cmpccxadd": (7, 1, _EAX, 7, 0), "amx-fp16": (7, 1, _EAX, 21, _AMX),
    "hreset": (7, 1, _EAX, 22, 0), "avxifma": (7, 1, _EAX, 23, _YMM), "avxvnniint8": (7, 1, _EDX, 4, _YMM),
    "avxneconvert": (7, 1, _EDX, 5, _YMM), "amx-complex": (7, 1, _EDX, 8, _AMX),
    "avxvnniint16": (7, 1, _EDX, 10, _YMM), "prefetchi": (7, 1, _EDX, 14, 0),
    "xsaveopt": (0xD, 1, _EAX, 0, 0), "xsavec": (0xD, 1, _EAX, 1, 0), "xsaves": (0xD, 1, _EAX, 3, 0),
    "lahf_lm": (0x80000001, 0, _ECX, 0, 0), "abm": (0x80000001, 0, _ECX, 5, 0),
    "lzcnt": (0x80000001, 0, _ECX, 5, 0), "sse4a": (0x80000001, 0, _ECX, 6, 0),
    "prfchw": (0x80000001, 0, _ECX, 8, 0), "xop": (0x80000001, 0, _ECX, 11, _YMM),
    "lwp": (0x80000001, 0, _ECX, 15, 0), "fma4": (0x80000001, 0, _ECX, 16, _YMM),
    "tbm": (0x80000001, 0, _ECX, 21, 0), "mwaitx": (0x80000001, 0, _ECX, 29, 0),
    "clzero": (0x80000008, 0, _EBX, 0, 0), "wbnoinvd": (0x80000008, 0, _EBX, 9, 0),
}

_AT_HWCAP, _AT_HWCAP2 = 16, 26
#: aarch64 ``__ARM_FEATURE_*`` macros -> the HWCAP bits (Linux's asm/hwcap.h) they need
ARM_HWCAP = {
    "CRC32": [(_AT_HWCAP, 7)], "AES": [(_AT_HWCAP, 3), (_AT_HWCAP, 4)], "SHA2": [(_AT_HWCAP, 6)],
    "CRYPTO": [(_AT_HWCAP, 3), (_AT_HWCAP, 4), (_AT_HWCAP, 5), (_AT_HWCAP, 6)],
    "ATOMICS": [(_AT_HWCAP, 8)], "FP16_SCALAR_ARITHMETIC": [(_AT_HWCAP, 9)],
    "FP16_VECTOR_ARITHMETIC": [(_AT_HWCAP, 10)], "QRDMX": [(_AT_HWCAP, 12)], "JCVT": [(_AT_HWCAP, 13)],
    "COMPLEX": [(_AT_HWCAP, 14)], "RCPC": [(_AT_HWCAP, 15)], "SHA3": [(_AT_HWCAP, 17)],
    "SM3": [(_AT_HWCAP, 18)], "SM4": [(_AT_HWCAP, 19)], "DOTPROD": [(_AT_HWCAP, 20)],
    "SHA512": [(_AT_HWCAP, 21)], "SVE": [(_AT_HWCAP, 22)], "FP16_FML": [(_AT_HWCAP, 23)],
    "FLAGM": [(_AT_HWCAP, 27)], "SSBS": [(_AT_HWCAP, 28)], "SB": [(_AT_HWCAP, 29)],
    "PAUTH": [(_AT_HWCAP, 30)], "SVE2": [(_AT_HWCAP2, 1)], "SVE2_AES": [(_AT_HWCAP2, 2)],
    "SVE2_BITPERM": [(_AT_HWCAP2, 4)], "SVE2_SHA3": [(_AT_HWCAP2, 5)], "SVE2_SM4": [(_AT_HWCAP2, 6)],
    "FLAGM2": [(_AT_HWCAP2, 7)], "FRINT": [(_AT_HWCAP2, 8)], "SVE_MATMUL_INT8": [(_AT_HWCAP2, 9)],
    "MATMUL_INT8": [(_AT_HWCAP2, 13)], "BF16_VECTOR_ARITHMETIC": [(_AT_HWCAP2, 14)],
    "BF16_SCALAR_ARITHMETIC": [(_AT_HWCAP2, 14)], "RNG": [(_AT_HWCAP2, 16)], "BTI": [(_AT_HWCAP2, 17)],
    "MEMORY_TAGGING": [(_AT_HWCAP2, 18)], "SVE_BF16": [(_AT_HWCAP2, 12)], "SME": [(_AT_HWCAP2, 23)],
    "MOPS": [(_AT_HWCAP2, 43)],
}
#: 32-bit ARM macros -> (name, AT_HWCAP bit) (Linux's arch/arm hwcap.h): NEON, VFPv4 (fused
#: multiply-add), ASIMDDP
ARM32_HWCAP = {"__ARM_NEON": ("neon", 12), "__ARM_FEATURE_FMA": ("vfpv4", 16),
               "__ARM_FEATURE_DOTPROD": ("asimddp", 24)}
#: RISC-V macros -> (name, AT_HWCAP bit): a single-letter extension is bit (letter - 'a')
RISCV_HWCAP = {"__riscv_vector": ("v", ord("v") - ord("a"))}

#: aarch64 macros the flags may add that need nothing of the processor beyond armv8-a
ARM_NOT_FEATURES = re.compile(r"^__ARM_(FEATURE_(CLZ|FMA|IDIV|NUMERIC_MAXMIN|UNALIGNED|DIRECTED_ROUNDING|"
                              r"SVE_BITS|SVE_VECTOR_OPERATORS|SVE_PREDICATE_OPERATORS|PAC_DEFAULT|"
                              r"BTI_DEFAULT|LDREX|QBIT|SAT|SIMD32|DSP)|ARCH\w*|FP\w*|NEON\w*|ALIGN_MAX\w*|"
                              r"SIZEOF\w*|PCS\w*|64BIT_STATE|ACLE|BIG_ENDIAN|STATE_\w+)$|^__(pic|PIC|pie|PIE)__$|"
                              r"^__FP_FAST_FMA\w*$")

_memo: dict = {}
_memo_lock = threading.Lock()


def predefined_macros(command: Sequence[str], flags: Sequence[str]) -> dict[str, str]:
    """The macros the compiler ``command`` predefines with ``flags`` (empty when it cannot be asked)."""
    proc = subprocess.run([*command, *flags, "-dM", "-E", "-x", "c", os.devnull], capture_output=True, text=True,
                          timeout=60)
    if proc.returncode != 0:
        return {}
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split(None, 2)
        if len(parts) >= 2 and parts[0] == "#define":
            out[parts[1]] = parts[2] if len(parts) > 2 else ""
    return out


def _baseline(flags: Sequence[str], arch: str, command: Sequence[str] = ()) -> list[str]:
    """The flags without any machine option, for the architecture's baseline (a cross
    compiler's ``-target`` names it already)."""
    kept = [f for f in flags if not f.startswith("-m")]
    return kept if "-target" in command else kept + [f"-march={arch}"]


def x86_features(added: Sequence[str]) -> list[str]:
    """The ``__builtin_cpu_supports`` spellings of the extensions named by the macros in ``added``
    (those the flags define beyond the baseline)."""
    names = []
    for m in sorted(added):
        if X86_NOT_FEATURES.match(m) or not re.fullmatch(r"__[A-Z][A-Z0-9_]*", m):
            continue   # tuning and architecture names (__znver3__, __tune_...) are lower case
        core = m[2:-2] if m.endswith("__") else m[2:]
        names.append(X86_NAMES.get(core, core.lower().replace("_", "-")))
    return sorted(set(names))


def _builtin_names(command: Sequence[str], names: Sequence[str]) -> set[str]:
    """The names the compiler's ``__builtin_cpu_supports`` accepts (one compile; the rejected
    ones are the lines it reports errors on)."""
    if not names:
        return set()
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write("".join(f"int ember_probe_{k}(void) {{ return __builtin_cpu_supports(\"{n}\"); }}\n"
                            for k, n in enumerate(names)))
        proc = subprocess.run([*command, "-march=x86-64", "-fsyntax-only", "-c", src], capture_output=True,
                              text=True, timeout=60)
    if proc.returncode == 0:
        return set(names)
    bad = {int(x) for x in re.findall(r"probe\.c:(\d+):(?:\d+:)?\s*error", proc.stderr)}
    if not bad:
        return set()
    return {n for k, n in enumerate(names, 1) if k not in bad}


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def header(command: Sequence[str], flags: Sequence[str]) -> str:
    """The text of ``ember_cpu_features.h`` for code compiled by ``command`` with ``flags``."""
    key = (tuple(command), tuple(flags))
    with _memo_lock:
        hit = _memo.get(key)
    if hit is not None:
        return hit
    text = _header(command, flags)
    with _memo_lock:
        _memo[key] = text
    return text


def _header(command: Sequence[str], flags: Sequence[str]) -> str:
    lines = ["/* ember_cpu_features.h: generated by ember.toolchain.cpu_features for the flags of this build:",
             " * the instruction-set extensions its code may use beyond the baseline (see runtime.c). */"]
    actual = predefined_macros(command, flags)
    builtin, cpuid, hwcap, unknown = [], [], [], []
    if "__x86_64__" in actual:
        added = set(actual) - set(predefined_macros(command, _baseline(flags, "x86-64", command)))
        names = x86_features(added)
        known = _builtin_names(command, names)
        for n in names:
            if n in known:
                builtin.append(n)
            elif n in X86_CPUID:
                cpuid.append(n)
            else:
                unknown.append(n)
    elif "__aarch64__" in actual:
        added = set(actual) - set(predefined_macros(command, _baseline(flags, "armv8-a", command)))
        for m in sorted(added):
            if ARM_NOT_FEATURES.match(m) or not m.startswith("__ARM_FEATURE_"):
                continue
            core = m[len("__ARM_FEATURE_"):]
            if core in ARM_HWCAP:
                hwcap += [(core.lower(), w, b) for w, b in ARM_HWCAP[core]]
            else:
                unknown.append(core.lower())
    elif "__arm__" in actual or "__riscv" in actual:
        table = ARM32_HWCAP if "__arm__" in actual else RISCV_HWCAP
        hwcap += [(name, _AT_HWCAP, bit) for m, (name, bit) in table.items() if m in actual]
    lines.append("#define EMBER_CPU_BUILTIN(X)" + "".join(f" X({_c_string(n)})" for n in builtin))
    lines.append("#define EMBER_CPU_CPUID(X)" + "".join(
        f" X({_c_string(n)}, {X86_CPUID[n][0]:#x}u, {X86_CPUID[n][1]}u, {X86_CPUID[n][2]}, {X86_CPUID[n][3]}, "
        f"{X86_CPUID[n][4]:#x}u)" for n in cpuid))
    lines.append("#define EMBER_CPU_HWCAP(X)" + "".join(f" X({_c_string(n)}, {w}, {b})" for n, w, b in hwcap))
    lines.append(f"#define EMBER_CPU_UNKNOWN {_c_string(', '.join(unknown))}")
    return "\n".join(lines) + "\n"

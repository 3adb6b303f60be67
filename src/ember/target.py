"""Targets are values: the kind of device, its instruction set and the features code may use.

A :class:`Target` describes an ISA: the compiler triple, the vector registers and lanes per dtype,
FMA, the 8-bit dot product (:attr:`Target.dot_kind`), the C compiler flags, and the ISA module
of the code generator (``codegen/isa_*.py``).  ``cpu`` is this machine (its features detected);
the named targets of :data:`TARGETS` are other machines, built with a cross compiler
(``toolchain/cc.py``) and run there (or under an emulator).  Schedule knobs (``knobs``) tune
code for a target but are not part of its description.
"""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from .errors import TargetError


#: per-core L2 cache assumed when the machine does not say (Zen 2/3 cores have 512 KiB)
DEFAULT_L2_BYTES = 512 * 1024

#: x86 features with an 8-bit dot product (vpdpbusd) that sums uint8 x int8 products exactly
VNNI_FEATURES = frozenset({"avx512_vnni", "avx_vnni"})
X86_ARCHS = ("x86_64", "amd64", "i386", "i686")


def _l2_bytes() -> int:
    """This machine's per-core L2 cache size, from sysfs (Linux); the default elsewhere."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for idx in sorted(os.listdir(base)):
            with open(f"{base}/{idx}/level") as f:
                if f.read().strip() != "2":
                    continue
            with open(f"{base}/{idx}/size") as f:
                text = f.read().strip().upper()
            scale = {"K": 1024, "M": 1024 * 1024}.get(text[-1:], 1)
            return int(text.rstrip("KM")) * scale
    except (OSError, ValueError):
        pass
    return DEFAULT_L2_BYTES


def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@dataclass(frozen=True)
class CoreModel:
    """What the register-tile cost model of the CPU schedules (``schedules/cpu_model.py``) knows
    of one core: the vector registers the compiler may allocate, the vector FMA and load ports,
    the cycles an FMA's result takes to feed the next one, and the loop overhead of a tile."""

    registers: int
    fma_ports: int = 2
    load_ports: int = 2
    fma_chain_cycles: float = 5      # one FMA's latency (4) plus slack: the floor of any tile's step
    tile_overhead_cycles: float = 0.25   # loop and epilogue, spread over the reduction

    def limited(self, registers: int) -> "CoreModel":
        """This model with at most ``registers`` vector registers (tiles planned smaller)."""
        from dataclasses import replace

        return replace(self, registers=min(self.registers, registers))


#: the ports and latencies of :class:`CoreModel` per ISA module (``Target.isa``), besides the
#: registers, which come from :attr:`Target.vector_registers`.  x86: two FMA and two vector-load
#: ports, a 4-cycle FMA (Zen 2-4, Skylake and later; what the schedules were measured on).  NEON:
#: Cortex-A76/A78/Neoverse-N1 have the same (two FMA pipes, two loads, a 4-cycle FMA); the
#: others are the same numbers, not measured (wasm runs on whatever core its engine runs on).
CORE_MODELS: dict[str, dict] = {
    "x86": {"fma_ports": 2, "load_ports": 2, "fma_chain_cycles": 5, "tile_overhead_cycles": 0.25},
    "neon": {"fma_ports": 2, "load_ports": 2, "fma_chain_cycles": 5, "tile_overhead_cycles": 0.25},
    "wasm": {"fma_ports": 2, "load_ports": 2, "fma_chain_cycles": 5, "tile_overhead_cycles": 0.25},
    "riscv": {"fma_ports": 2, "load_ports": 2, "fma_chain_cycles": 5, "tile_overhead_cycles": 0.25},
    "generic": {"fma_ports": 2, "load_ports": 2, "fma_chain_cycles": 5, "tile_overhead_cycles": 0.25},
}


#: dot-product kinds: x86 VNNI (vpdpbusd), ARM i8mm (usdot: uint8 x int8) and dotprod (sdot: int8
#: x int8, used for uint8 x int8 with a correction), none ("")
DOT_KINDS = ("vnni", "usdot", "sdot", "")


_ASKED: ContextVar[dict | None] = ContextVar("ember_asked_knobs", default=None)


@contextmanager
def asked_knobs():
    """Listen to the schedule knobs asked inside the block: yields a dict that receives each
    knob's name and the value it had the first time it was asked (the tuner's search space)."""
    asked: dict = {}
    token = _ASKED.set(asked)
    try:
        yield asked
    finally:
        _ASKED.reset(token)


@dataclass(frozen=True)
class Target:
    kind: str = "cpu"
    arch: str = field(default_factory=platform.machine)
    features: frozenset = field(default_factory=frozenset)
    threads: int = 0            # 0: decided by the runtime (number of cores)
    l2_bytes: int = DEFAULT_L2_BYTES   # one core's L2 cache: schedules choose loop orders by it
    #: schedule knobs set by the user or a tuner, as sorted (name, value) pairs; a schedule asks
    #: ``knob(name, default)`` and uses its own default (a cost model) for every knob not set here
    knobs: tuple = ()
    #: the text it was made from: "cpu" for this machine, else a name of :data:`TARGETS` with its
    #: ``+feature`` suffixes and options (``"aarch64-linux -mcpu=cortex-a76"``)
    name: str = "cpu"
    #: the C compiler's target triple; "" for this machine (the host compiler, ``-march=native``)
    triple: str = ""
    #: flags for the C compiler that select the processor (``-mcpu=...``, ``-msimd128``)
    cflags: tuple = ()

    @property
    def family(self) -> str:
        """The kind whose schedules this target shares (:mod:`ember.schedules`): ``cpu`` for
        every CPU, whatever its instruction set; ``gpu`` for every GPU kind (:data:`GPU_KINDS`)."""
        return "gpu" if self.kind in GPU_KINDS else self.kind

    @property
    def cross(self) -> bool:
        """Whether code for this target is built with a cross compiler (and cannot run here)."""
        return bool(self.triple)

    @property
    def isa(self) -> str:
        """The code generator's ISA module (``codegen/isa_<isa>.py``): x86, neon, wasm, riscv or
        generic."""
        a = self.arch.lower()
        if a in X86_ARCHS:
            return "x86"
        if a in ("aarch64", "arm64") or (a.startswith("armv7") and "neon" in self.features):
            return "neon"
        if a.startswith("wasm") and "simd128" in self.features:
            return "wasm"
        if a.startswith("riscv"):
            return "riscv"
        return "generic"

    def knob(self, name: str, default):
        """The value of schedule knob ``name``: the one set on this target, else ``default``
        (noted where :func:`asked_knobs` listens)."""
        value = default
        for k, v in self.knobs:
            if k == name:
                value = v
                break
        asked = _ASKED.get()
        if asked is not None:
            asked.setdefault(name, value)
        return value

    def with_knobs(self, knobs) -> "Target":
        """This target with the schedule knobs ``knobs`` (a mapping) set, over any set before."""
        from dataclasses import replace

        merged = dict(self.knobs)
        merged.update(knobs)
        return replace(self, knobs=tuple(sorted(merged.items())))

    @property
    def vector_bits(self) -> int:
        """Bits of one vector register as generated code uses it: 512 with AVX-512, 256 with
        AVX, else 128 (SSE, NEON, wasm SIMD128, RVV at its minimum VLEN of 128 bits, and the
        generic-C vectors of a target without any, which the compiler splits)."""
        if "avx512f" in self.features:
            return 512
        if "avx2" in self.features or "avx" in self.features:
            return 256
        return 128

    @property
    def lanes(self) -> int:
        """float32 lanes of one vector register used by generated code: the register's (16 with
        AVX-512, 8 with AVX2), or fewer where the knob ``vector.lanes`` says so; 1 on a GPU,
        whose threads run scalar code."""
        if self.family == "gpu":
            return 1
        return min(self.knob("vector.lanes", self.vector_bits // 32), self.vector_bits // 32)

    def lanes_of(self, dtype: str) -> int:
        """Lanes of ``dtype`` in one vector register (``vector_bits`` over the element size)."""
        import numpy as np

        return max(1, self.vector_bits // (8 * np.dtype(dtype).itemsize))

    @property
    def vector_registers(self) -> int:
        """Vector registers the generated code's compiler may allocate: 32 on x86 with AVX-512VL
        (the EVEX encodings reach ymm16-31 for 256-bit code too), else 16.  (AArch64 and RVV
        have 32, but the schedules have not been measured with more than 16: the description
        says so in :func:`describe`.)"""
        return 32 if "avx512vl" in self.features else 16

    @property
    def core(self) -> CoreModel:
        """The register-tile cost model's view of this target's cores (:data:`CORE_MODELS`)."""
        return CoreModel(self.vector_registers, **CORE_MODELS[self.isa])

    @property
    def isa_registers(self) -> int:
        """Vector registers the ISA has (what :func:`describe` reports)."""
        a = self.arch.lower()
        if a in X86_ARCHS:
            return self.vector_registers
        if self.isa == "neon":
            return 32 if a in ("aarch64", "arm64") else 16
        if self.isa == "riscv":
            return 32 if "rvv" in self.features else 0
        return 16 if self.isa == "wasm" else 0

    @property
    def dot_kind(self) -> str:
        """The exact 8-bit dot product of four the generated code can use (:data:`DOT_KINDS`)."""
        if self.arch.lower() in X86_ARCHS:
            return "vnni" if self.features & VNNI_FEATURES else ""
        if "i8mm" in self.features:
            return "usdot"
        if self.features & {"dotprod", "asimddp"}:       # (Linux's /proc/cpuinfo says asimddp)
            return "sdot"
        return ""

    @property
    def int8_pairs_saturate(self) -> bool:
        """Whether this target's fast uint8 x int8 multiply-add clamps each pair of products to
        int16: x86 without VNNI (vpmaddubsw), where onnxruntime's kernels do the same.  Integer
        products that ask for pair saturation compute it only here (``passes.pair_saturation``)."""
        return self.arch.lower() in X86_ARCHS and not (self.features & VNNI_FEATURES)

    @property
    def int8_dot(self) -> bool:
        """Whether generated code has an exact uint8 x int8 dot product of four (``vpdpbusd``)
        at the vector width ``lanes``: AVX512-VNNI for 16 lanes, with AVX512-VL or AVX-VNNI for
        8."""
        f = self.features
        if self.arch.lower() not in X86_ARCHS:
            # ARM: usdot (i8mm), or sdot (dotprod) with a correction for the unsigned operand
            return self.lanes == 4 and self.dot_kind in ("usdot", "sdot")
        if self.lanes == 16:
            return "avx512_vnni" in f
        return self.lanes == 8 and ("avx_vnni" in f or {"avx512_vnni", "avx512vl"} <= f)

    @property
    def fma(self) -> bool:
        return "fma" in self.features or self.arch in ("aarch64", "arm64")

    @property
    def num_cores(self) -> int:
        return self.threads or os.cpu_count() or 1

    def key(self) -> str:
        """A string that identifies everything about the target that changes generated code."""
        knobs = "".join(f"-{k}={v}" for k, v in self.knobs)
        return (f"{self.kind}-{self.arch}-{self.vector_bits}-{int(self.fma)}-r{self.vector_registers}"
                f"-s{int(self.int8_pairs_saturate)}-d{int(self.int8_dot)}"
                f"-l2:{self.l2_bytes}{knobs}"
                + (f"-{self.triple}-{'+'.join(sorted(self.features))}-{' '.join(self.cflags)}" if self.cross else ""))

    def __str__(self) -> str:
        if self.cross:
            return f"{self.spec} ({self.triple}, {self.vector_bits}-bit vectors{', FMA' if self.fma else ''})"
        return f"{self.kind} ({self.arch}, {self.vector_bits}-bit vectors{', FMA' if self.fma else ''})"

    @property
    def spec(self) -> str:
        """The text :func:`resolve` makes this target from."""
        return self.name

    def describe(self) -> dict:
        """The ISA description, as ``ember targets`` prints it."""
        return {
            "name": self.spec, "triple": self.triple or "(host)", "arch": self.arch, "isa": self.isa,
            "vector_bits": self.vector_bits,
            "lanes": {d: self.lanes_of(d) for d in ("float32", "int32", "int16", "int8")},
            "vector_registers": self.isa_registers, "fma": self.fma, "dot": self.dot_kind or "none",
            "features": sorted(self.features), "cflags": list(self.cflags),
        }


@dataclass(frozen=True)
class TargetSpec:
    """A named target: its triple, architecture, baseline features and flags, and the ``+feature``
    suffixes and ``-mcpu=`` processors it takes (each with the features it adds)."""

    triple: str
    arch: str
    features: frozenset
    cflags: tuple
    summary: str
    #: ``+name`` suffix -> (features it adds, flags it adds)
    extensions: dict = field(default_factory=dict)
    #: ``-mcpu=`` processor -> the features it has beyond the baseline
    cpus: dict = field(default_factory=dict)
    #: the processor ``+feature`` suffixes are added to (zig cc's ``-mcpu=BASE+FEATURE``)
    base_cpu: str = "generic"


_ARM64_CPUS = {
    "cortex-a53": (), "cortex-a72": (), "cortex-a55": ("dotprod",), "cortex-a76": ("dotprod",),
    "cortex-a78": ("dotprod",), "neoverse-n1": ("dotprod",), "cortex-x1": ("dotprod",),
    "cortex-a710": ("dotprod", "i8mm"), "neoverse-n2": ("dotprod", "i8mm"), "neoverse-v1": ("dotprod", "i8mm"),
}

#: the named targets (``ember targets`` lists them)
TARGETS: dict[str, TargetSpec] = {
    "aarch64-linux": TargetSpec(
        "aarch64-linux-gnu", "aarch64", frozenset({"neon", "fma"}), (),
        "64-bit ARM Linux, NEON (Raspberry Pi 3/4/5 with a 64-bit OS, Cortex-A53/A72/A76)",
        extensions={"dotprod": ({"dotprod"}, "+dotprod"), "i8mm": ({"i8mm", "dotprod"}, "+i8mm+dotprod")},
        cpus={k: frozenset(v) for k, v in _ARM64_CPUS.items()}),
    "armv7-linux": TargetSpec(
        "arm-linux-gnueabihf", "armv7", frozenset({"neon", "vfpv4", "fma"}), ("-mcpu=cortex_a7",),
        "32-bit ARM Linux, hard float, NEON and VFPv4 (Raspberry Pi 2/3/4 with 32-bit Raspberry Pi OS)",
        cpus={"cortex-a7": frozenset(), "cortex-a53": frozenset(), "cortex-a72": frozenset()}),
    "riscv64-linux": TargetSpec(
        "riscv64-linux-gnu", "riscv64", frozenset({"fma"}), (),
        "64-bit RISC-V Linux, RV64GC (scalar and generic-C vectors); +v for the vector extension (RVV 1.0)",
        extensions={"v": ({"rvv"}, "+v")}, base_cpu="baseline_rv64"),
    "wasm32": TargetSpec(
        "wasm32-wasi", "wasm32", frozenset({"simd128"}), ("-msimd128",),
        "WebAssembly with SIMD128 (WASI; Node.js, browsers), one thread"),
}


#: the GPU target kinds: ``cuda`` (NVIDIA, CUDA C++ compiled by NVRTC; ``-arch=sm_XX``),
#: ``opencl`` (OpenCL C for any OpenCL device), ``metal`` (Metal Shading Language for Apple GPUs)
#: and ``webgpu`` (WGSL compute shaders, run through the ``wgpu`` package or a browser)
GPU_KINDS = ("cuda", "opencl", "metal", "webgpu")
DEFAULT_CUDA_ARCH = "sm_80"


def gpu_target(kind: str, options: list[str]) -> Target:
    """A GPU target: ``cuda`` takes ``-arch=sm_XX`` (default sm_80); ``cuda`` and ``opencl`` take
    ``-dtype=float16`` (activations and weights stored in half precision, arithmetic and sums in
    float32: the feature ``fp16``) or ``-dtype=float32`` (the default); ``metal`` and ``webgpu``
    no option."""
    arch = DEFAULT_CUDA_ARCH if kind == "cuda" else kind
    features = frozenset()
    for opt in options:
        k, sep, value = opt.partition("=")
        if kind == "cuda" and k == "-arch" and sep and value.startswith("sm_") and value[3:].isdigit() \
                and int(value[3:]) >= 50:
            arch = value
        elif k == "-dtype" and value in ("float16", "float32") and kind in ("cuda", "opencl"):
            features = frozenset({"fp16"}) if value == "float16" else frozenset()
        else:
            raise TargetError(f"target option {opt!r} is not understood: "
                              + ("cuda takes -arch=sm_XX (sm_50 or newer) and -dtype=float16 or -dtype=float32"
                                 if kind == "cuda" else "opencl takes -dtype=float16 or -dtype=float32"
                                 if kind == "opencl" else f"{kind} takes no option"))
    name = f"cuda -arch={arch}" if kind == "cuda" else kind
    if "fp16" in features:
        name += " -dtype=float16"
    return Target(kind, arch, features, name=name)


def host() -> Target:
    return Target("cpu", platform.machine(), _cpu_flags(), l2_bytes=_l2_bytes())


def portable() -> Target:
    """Any processor: the generic C of ``codegen/isa_generic.py`` (GCC/Clang vector extensions,
    128-bit vectors, no FMA or dot product assumed), for a C package that builds anywhere
    (``ember export --format c``)."""
    return Target("cpu", "generic", frozenset(), name="portable")


def resolve(spec: "str | Target") -> Target:
    """A Target from a value or a name; "cpu" and "host" mean this machine.  A named target
    (:data:`TARGETS`) takes ``+feature`` suffixes and an ``-mcpu=`` option:
    ``"aarch64-linux+dotprod"``, ``"aarch64-linux -mcpu=cortex-a76"``, ``"riscv64-linux+v"``."""
    if isinstance(spec, Target):
        return spec
    if not isinstance(spec, str):
        raise TargetError(f"a target is a name or an ember.Target, not {type(spec).__name__}")
    if spec.strip() in ("cpu", "host", "llvm", "c"):
        return host()
    words = spec.split()
    if not words:
        raise TargetError(f"unknown target {spec!r}; {_known()}")
    if words[0] in GPU_KINDS:
        return gpu_target(words[0], words[1:])
    name, *exts = words[0].split("+")
    ts = TARGETS.get(name)
    if ts is None:
        raise TargetError(f"unknown target {spec!r}; {_known()}")
    features, cflags = set(ts.features), list(ts.cflags)
    march = ""
    for e in exts:
        if e not in ts.extensions:
            raise TargetError(f"target {name} has no feature '+{e}'; it takes "
                              f"{', '.join('+' + x for x in ts.extensions) or 'none'}")
        features |= ts.extensions[e][0]
        march += ts.extensions[e][1]
    for opt in words[1:]:
        key, sep, value = opt.partition("=")
        if key != "-mcpu" or not sep:
            raise TargetError(f"target option {opt!r} is not understood: a target takes -mcpu=PROCESSOR")
        if value not in ts.cpus:
            raise TargetError(f"target {name} does not know the processor {value!r}; it knows "
                              f"{', '.join(sorted(ts.cpus)) or 'none'}")
        features |= ts.cpus[value]
        cflags = [f for f in cflags if not f.startswith("-mcpu=")] + [f"-mcpu={value.replace('-', '_')}{march}"]
        march = ""
    if march:
        cflags = [f for f in cflags if not f.startswith("-mcpu=")] + [f"-mcpu={ts.base_cpu}{march}"]
    return Target("cpu", ts.arch, frozenset(features), name=" ".join(words), triple=ts.triple, cflags=tuple(cflags))


def _known() -> str:
    return ("known targets: cpu (this machine), " + ", ".join(TARGETS) + ", " + ", ".join(GPU_KINDS)
            + " (see `ember targets`)")


def named_targets() -> list[Target]:
    """The host and every named target at its baseline, for listings."""
    return [host()] + [resolve(n) for n in TARGETS]

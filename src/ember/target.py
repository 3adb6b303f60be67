"""Targets are values: the kind of device, its architecture and the features code may use."""

from __future__ import annotations

import os
import platform
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
class Target:
    kind: str = "cpu"
    arch: str = field(default_factory=platform.machine)
    features: frozenset = field(default_factory=frozenset)
    threads: int = 0            # 0: decided by the runtime (number of cores)
    l2_bytes: int = DEFAULT_L2_BYTES   # one core's L2 cache: schedules choose loop orders by it
    #: schedule knobs set by the user or a tuner, as sorted (name, value) pairs; a schedule asks
    #: ``knob(name, default)`` and uses its own default (a cost model) for every knob not set here
    knobs: tuple = ()

    def knob(self, name: str, default):
        """The value of schedule knob ``name``: the one set on this target, else ``default``."""
        for k, v in self.knobs:
            if k == name:
                return v
        return default

    def with_knobs(self, knobs) -> "Target":
        """This target with the schedule knobs ``knobs`` (a mapping) set, over any set before."""
        from dataclasses import replace

        merged = dict(self.knobs)
        merged.update(knobs)
        return replace(self, knobs=tuple(sorted(merged.items())))

    @property
    def vector_bits(self) -> int:
        if "avx512f" in self.features:
            return 512
        if "avx2" in self.features or "avx" in self.features:
            return 256
        return 128

    @property
    def lanes(self) -> int:
        """float32 lanes of one vector register used by generated code: the register's (16 with
        AVX-512, 8 with AVX2), or fewer where the knob ``vector.lanes`` says so."""
        return min(self.knob("vector.lanes", self.vector_bits // 32), self.vector_bits // 32)

    @property
    def vector_registers(self) -> int:
        """Vector registers the generated code's compiler may allocate: 32 on x86 with AVX-512VL
        (the EVEX encodings reach ymm16-31 for 256-bit code too), else 16.  (AArch64 has 32,
        but its schedules have not been measured with more than 16.)"""
        return 32 if "avx512vl" in self.features else 16

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
                f"-l2:{self.l2_bytes}{knobs}")

    def __str__(self) -> str:
        return f"{self.kind} ({self.arch}, {self.vector_bits}-bit vectors{', FMA' if self.fma else ''})"


def host() -> Target:
    return Target("cpu", platform.machine(), _cpu_flags(), l2_bytes=_l2_bytes())


def resolve(spec: "str | Target") -> Target:
    """A Target from a value or a name; "cpu" and "host" mean this machine."""
    if isinstance(spec, Target):
        return spec
    if spec in ("cpu", "host", "llvm", "c"):
        return host()
    raise TargetError(f"unknown target {spec!r}; this build of Ember supports: cpu")

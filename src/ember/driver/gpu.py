"""``ember.compile`` for a GPU target: from a graph to GPU kernels and their launch sequence.

The graph goes through the same passes as for a CPU, except the CPU layout passes (NCHWc,
Winograd, packed weights, fused attention: they exist for vector registers), then the same
fusion and static memory plan (aligned for device sub-buffers).  Each fused group becomes one
GPU kernel through the ``gpu`` schedules and the GPU loop-IR pipeline (``tir.gpu``), written by
``codegen.gpu`` in the target's language.  The result is a :class:`~ember.runtime.gpu.GPUArtifact`:
the source, the launches in graph order (grid, block and each argument's place: an input, an
output, the arena at an offset, the constants at an offset) and the constants.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .. import __version__
from ..errors import CodegenError, EmberError, TargetError
from ..codegen.c import c_ident
from ..codegen.gpu import KIND_LANGUAGE, LANGUAGES, generator
from ..graph.ir import Graph, Value
from ..passes import fuse, optimize, plan_memory
from ..target import Target
from .kernels import group_kernel
from .program import needs_program
from .regions import is_region

#: alignment of every buffer in the arena and the constants (an OpenCL sub-buffer's origin must be
#: a multiple of the device's base address alignment, 128 bytes on common devices)
DEVICE_ALIGN = 256


def generate_gpu(graph: Graph, target: Target, opt_level: int = 3, dump: Callable | None = None,
                 progress: Callable[[str], Any] | None = None):
    """The :class:`~ember.runtime.gpu.GPUArtifact` of ``graph`` for the GPU ``target``."""
    from ..runtime.gpu import GPUArtifact

    say = progress or (lambda msg: None)
    if needs_program(graph):
        raise TargetError(f"model '{graph.name}' has host steps (string ops): GPU targets cannot run them")
    in_names = [v.name for v in graph.inputs]
    out_names = [v.name for v in graph.outputs]
    for v in list(graph.inputs) + list(graph.outputs):
        if not v.type.is_static:
            raise CodegenError(f"GPU targets need static shapes: '{v.name}' is {v.type}; give "
                               "shapes= (ember compile --shape) to pin its dimensions")
    if graph.defaults:
        raise CodegenError("inputs with default values are not supported on GPU targets yet")
    g = optimize(graph, opt_level, dump=dump)
    groups = fuse(g)
    for grp in groups:
        if is_region(grp):
            raise CodegenError(f"control flow ({grp.nodes[0].op} node '{grp.nodes[0].name}') is not "
                               "supported on GPU targets yet")
    plan = plan_memory(g, groups, alignment=DEVICE_ALIGN)
    say(f"generating {len(groups)} GPU kernels ({target.kind})")

    blob = bytearray()
    const_at: dict[Value, tuple[int, int]] = {}
    for v in dict.fromkeys(g.constants()):
        arr = np.ascontiguousarray(v.const)
        blob += b"\0" * ((-len(blob)) % DEVICE_ALIGN)
        const_at[v] = (len(blob), arr.nbytes)
        blob += arr.tobytes()
    blob += b"\0" * ((-len(blob)) % DEVICE_ALIGN or DEVICE_ALIGN)
    in_index = {v: k for k, v in enumerate(g.inputs)}
    out_index: dict[Value, int] = {}
    for k, v in enumerate(g.outputs):
        out_index.setdefault(v, k)

    def place(v: Value) -> list:
        if v in in_index:
            return ["input", in_index[v]]
        if v in const_at:
            return ["const", *const_at[v]]
        if v in out_index:
            return ["output", out_index[v]]
        if v in plan.offsets:
            return ["arena", plan.offsets[v], int(v.type.nbytes)]
        raise CodegenError(f"value {v.name} has no storage")

    language = KIND_LANGUAGE[target.kind]
    gen = generator(language)
    launches, kernels = [], []
    for k, grp in enumerate(groups):
        if not grp.output.type.nbytes:
            continue            # an empty output: nothing to compute (a launch needs a block)
        names = {v: c_ident(v.name) for v in grp.inputs}
        f = group_kernel(grp, target, names)
        if f.attrs.get("size_vars"):
            raise CodegenError(f"kernel {f.name}: symbolic sizes are not supported on GPU targets yet")
        places = [place(v) for v in grp.inputs] + [place(grp.output)]
        if language == "wgsl":      # WGSL binds windows of the arena and the constants, not each buffer
            gen.kernel(f, places)
        else:
            gen.kernel(f)
        if dump:
            dump(f"kernel_{k:03d}_{f.name}", f)
        lau = f.attrs["launch"]
        args = lau["bindings"] if language == "wgsl" else places + ([["flag"]] if lau["checks"] else [])
        launches.append({"kernel": lau["name"], "grid": lau["grid"], "block": lau["block"], "args": args,
                         "nodes": f.comment})
        kernels.append(f)
    # outputs no kernel writes: an input, a constant, or a value listed twice
    copies = []
    for k, v in enumerate(g.outputs):
        if out_index[v] != k:
            copies.append([k, ["output", out_index[v]]])
        elif v in in_index or v in const_at:
            copies.append([k, place(v)])
    source = gen.source()
    meta = {
        "format": 1, "ember_version": __version__, "name": g.name, "target": target.spec,
        "inputs": [{"name": n, "dtype": v.dtype, "shape": list(v.shape)} for n, v in zip(in_names, g.inputs)],
        "outputs": [{"name": n, "dtype": v.dtype, "shape": list(v.shape)} for n, v in zip(out_names, g.outputs)],
        "arena_bytes": plan.arena_bytes, "constants_bytes": len(blob), "kernels": len(launches),
        "intermediate_bytes": plan.total_intermediate_bytes,
        "gpu": {"language": language, "arch": target.arch, "launches": launches, "copies": copies,
                "fmad": gen.contract},
    }
    return GPUArtifact(meta, source, bytes(blob)), kernels


def compile_gpu(model: Any, target: Target, opt_level: int = 3, *, shapes: Mapping[str, tuple] | None = None,
                bounds=None, knobs=None, dump=None, progress=None):
    """``ember.compile`` for a GPU target (no cache: a GPU build is quick and its artifact small);
    returns a :class:`~ember.runtime.gpu.GPUModule` (running it needs a device of its kind)."""
    from ..runtime.gpu import GPUModule
    from .compile import _Dumper, to_graph

    from ..schedules.gpu import check_knobs

    if not isinstance(opt_level, int) or not 0 <= opt_level <= 3:
        raise EmberError(f"opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
    if knobs:
        target = target.with_knobs(check_knobs(knobs))
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    say("reading model")
    graph = to_graph(model, shapes, bounds)
    if "fp16" in target.features:
        from ..passes.half_precision import to_half

        graph = to_half(graph)
    dumper = _Dumper(Path(dump)) if dump else None
    art, _ = generate_gpu(graph, target, opt_level, dump=dumper, progress=say)
    if dumper:
        suffix = ".wgsl" if art.language == "wgsl" else LANGUAGES[art.language].SUFFIX
        dumper.write(f"model{suffix}", art.source)
    if target.kind == "cuda":
        from ..toolchain import nvrtc

        if nvrtc.available():
            say("compiling CUDA to PTX with NVRTC")
            art.ptx = nvrtc.compile_ptx(art.source, target.arch, fmad=art.meta["gpu"]["fmad"])
    say(f"done in {time.perf_counter() - t0:.1f} s")
    return GPUModule(art)

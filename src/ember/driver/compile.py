"""``ember.compile``: from a model to a loaded, runnable artifact.

frontend -> graph passes -> CPU preparation (pads, weight packing) -> fusion -> memory plan ->
one kernel per fused group (tensor expressions, schedules, loop IR) -> C -> shared library.

Whole compiled models are cached by a hash of everything a compile reads and everything that
changes its output (``_model_key``): the model and its external data files, the options, the
target, the C compiler and Ember's own source, so compiling the same model again only loads the
artifact, and a change to any of them compiles it again.

Symbolic dimensions (``ember.symbolic``) stay symbolic through the whole pipeline: the kernels
take the symbols' values as arguments, the memory plan is sized with every symbol at its
planning size, and the artifact binds the symbols from the input shapes of each run (checking
them against their limits) and computes the output shapes.  A symbol's limit is what the model
implies (BERT's 512 positions) or a bound the translation relied on; without one, the bound from
``bounds=`` (or ``DEFAULT_BOUND``) is only a planning size: a larger input grows the arena.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .. import __version__
from .. import limits as ember_limits
from ..errors import ArtifactError, EmberError, ShapeError, TargetError, ToolchainError
from ..graph.ir import Graph, Value, constant
from ..symbolic import Sym, is_identifier
from ..target import Target, asked_knobs, resolve
from ..schedules.knobs import MODEL_KNOBS, check_knobs
from ..timings import Timings, timed

# The compiler proper (the passes, the ops, the schedules, the C generator) is imported by the
# functions that run it, not with this module: a compile that the model cache answers needs
# only the key and the load (importing it all took 0.18 s of CPU of such a compile).

ProgressFn = Callable[[str], None]

CONST_ALIGN = 64

#: the upper bound of a symbol that neither ``bounds=`` nor the model bounds
DEFAULT_BOUND = 64

#: the size schedules plan for along an image's height or width (a symbol of axis 2 or 3 of a
#: 4-D floating-point input) that neither ``bounds=`` nor the model bounds: tile choices made
#: for 64 fit the small maps deep in a network badly (a 2-wide map for 64 / 32); the memory plan
#: keeps ``DEFAULT_BOUND`` (the arena grows for a larger image)
DEFAULT_IMAGE_SIZE = 224


def _source_digest() -> str:
    """Hash of Ember's own code: a new compiler never reuses an old compiler's artifacts."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        h = hashlib.sha256(__version__.encode())
        root = Path(__file__).resolve().parent.parent
        for p in sorted(root.rglob("*")):
            if p.suffix in (".py", ".c", ".h") and p.is_file():
                h.update(str(p.relative_to(root)).encode())
                h.update(p.read_bytes())
        _SOURCE_DIGEST = h.hexdigest()
    return _SOURCE_DIGEST


_SOURCE_DIGEST: str | None = None


class CompiledModel:
    """Everything the compiler produced, before it becomes a library (for dumps and reports):
    ``units``, the C files (``codegen.c.model_units``), ``object_keys``, what each kernel's file
    is cached by (its canonical code: ``toolchain.build_shared``), and ``source``, the files as
    one text to read.  ``constants`` is the blob, bytes or a read-only memoryview of bytes."""

    def __init__(self, graph: Graph, groups, plan, units: dict[str, str], constants: "bytes | memoryview", kernels,
                 object_keys: dict[str, str] | None = None, kernel_files: dict[str, str] | None = None,
                 workloads: dict | None = None, constants_sha256: str | None = None):
        from ..codegen.c import units_listing

        self.graph = graph
        self.groups = groups
        self.plan = plan
        self.units = units
        self.source = units_listing(units)
        self.constants = constants
        self.constants_sha256 = constants_sha256 or hashlib.sha256(constants).hexdigest()
        self.kernels = kernels
        self.object_keys = object_keys or {}
        self.kernel_files = kernel_files or {}     # each kernel's C name -> the file that defines it
        #: with ``kernel_knobs``: each distinct kernel's :class:`~ember.driver.kernels.Workload` by key
        self.workloads = workloads


def to_graph(model: Any, shapes: Mapping[str, tuple] | None = None,
             bounds: Mapping[str, int] | None = None) -> Graph:
    if isinstance(model, Graph):
        if bounds:
            model = model.copy()
            model.hints.update({k: int(v) for k, v in bounds.items() if k not in model.bounds})
        return model
    from ..frontend.files import graph_from_file

    return graph_from_file(model, shapes, bounds)


def symbol_bounds(graph: Graph) -> dict[str, int]:
    """The planning size of every symbol of the graph's input shapes: its limit, else its hint
    (``DEFAULT_BOUND`` where neither the user nor the model gave one), in the order of
    ``graph.symbols()``."""
    from .data_dims import data_symbols

    inputs_syms = graph.symbols()
    syms = inputs_syms + data_symbols(graph)
    unknown = sorted((set(graph.bounds) | set(graph.hints)) - set(syms))
    if unknown:
        raise EmberError(f"bounds are given for {', '.join(map(repr, unknown))}, which the model's input "
                         f"shapes do not use; its symbols are {', '.join(map(repr, syms)) or '(none)'}")
    bindable = {d.name for v in graph.inputs for d in v.shape if isinstance(d, Sym) and d.name}
    for name in inputs_syms:
        if name not in bindable or not is_identifier(name):
            raise ShapeError(f"symbol '{name}' is not a whole dimension of any input, so its value cannot be "
                             "read from the input shapes at run time")
    out = {}
    for name in syms:
        b = graph.bounds.get(name, graph.hints.get(name, DEFAULT_BOUND))
        if not isinstance(b, int) or b < 0:
            raise EmberError(f"the bound of symbol '{name}' must be a non-negative integer, got {b!r}")
        out[name] = b
    return out


def schedule_hints(graph: Graph, bounds: dict[str, int]) -> dict[str, int]:
    """The sizes the schedules plan for: the planning sizes, with ``DEFAULT_IMAGE_SIZE`` for
    the defaulted height and width symbols of images."""
    image = {d.name for v in graph.inputs if len(v.shape) == 4 and v.dtype.startswith(("float", "bfloat"))
             for d in v.shape[2:] if isinstance(d, Sym) and d.name}
    return {n: DEFAULT_IMAGE_SIZE if n in image and n not in graph.bounds and n not in graph.hints else b
            for n, b in bounds.items()}


def generate(graph: Graph, target: Target, opt_level: int = 3, dump: Callable | None = None,
             progress: ProgressFn | None = None, profile: bool = False, observe: bool = False,
             disabled_passes=(), kernel_knobs: Mapping[str, Mapping] | None = None,
             timings: Timings | None = None, kernel_steps: Mapping[str, list] | None = None,
             early=None) -> CompiledModel:
    """Run the compiler on a graph up to the C source and the constants blob.  ``observe``
    (``ember bisect``) makes every kernel's result an output too (see :func:`observe_kernels`).
    ``disabled_passes`` names passes of the pipeline (``driver.pipeline``) not to run.
    ``kernel_knobs`` (tuning: ``ember.tune``) maps workload keys (``kernels.workload_key``) to
    schedule knobs set for those kernels only; with it, even empty, the result lists every
    distinct kernel's workload and the knobs it asked (``CompiledModel.workloads``).
    ``kernel_steps`` maps workload keys to recorded schedule steps (``Schedule.steps``) those
    kernels replay instead of running their op's schedule (``kernels.group_kernel``; steps that
    do not apply fall back to the knobs).  ``timings`` receives the time of every step
    (:mod:`ember.timings`).  ``early`` (a ``toolchain.cc.Prebuild``) receives each kernel's C file
    as soon as it is made, to compile it in the background."""
    from ..passes.base import paused_gc
    from .pipeline import check_disabled

    with paused_gc():          # collected after each pass and every few kernels instead
        return _generate(graph, target, opt_level, dump, progress, profile, observe,
                         check_disabled(disabled_passes), kernel_knobs, timings, kernel_steps, early)


def observe_kernels(g: Graph, groups, out_names: list[str]) -> None:
    """Make the result of every group an output of ``g`` (named ``ember_observe_<k>``), after
    fusion, so the groups and their kernels stay what they are: each kernel writes into an
    output buffer instead of the arena, where ``ember bisect`` reads it."""
    from .regions import is_region

    for grp in groups:
        for v in grp.nodes[0].outputs if is_region(grp) else [grp.output]:
            g.outputs.append(v)
            out_names.append(f"ember_observe_{len(out_names)}")


def _generate(graph: Graph, target: Target, opt_level: int, dump: Callable | None, progress: ProgressFn | None,
              profile: bool, observe: bool = False, disabled_passes: frozenset = frozenset(),
              kernel_knobs: Mapping[str, Mapping] | None = None, timings: Timings | None = None,
              kernel_steps: Mapping[str, list] | None = None, early=None) -> CompiledModel:
    from ..codegen.c import (CGenerator, buffer_table, c_type, dim_c, intrinsic_helpers, model_units,
                             shape_function)
    from ..passes import fuse, plan_memory
    from .data_dims import DataDims
    from .kernels import kernel_call, new_workload, tuning_key, workload_key
    from .pipeline import Context, run_graph
    from .regions import Regions, is_region

    say = progress or (lambda msg: None)
    if kernel_steps and kernel_knobs is None:
        kernel_knobs = {}
    say(f"optimizing graph ({len(graph.nodes)} nodes, opt level {opt_level})")
    in_names = [v.name for v in graph.inputs]
    out_names = [v.name for v in graph.outputs]
    ctx = Context(target, opt_level, frozenset(disabled_passes), dump, progress, timings)
    g = run_graph(graph, ctx)
    with ctx.timed("fusion"):
        groups = fuse(g)
    if observe:
        observe_kernels(g, groups, out_names)
    bounds = symbol_bounds(g)
    limits = {n: g.bounds[n] for n in bounds if n in g.bounds}
    sym_index = {n: k for k, n in enumerate(bounds)}
    if bounds:
        say("symbolic dimensions: " + ", ".join(f"{n} <= {b}" if n in limits else f"{n} (planned for {b})"
                                                for n, b in bounds.items()))
    regions = Regions(target, opt_level, limits, bounds, sym_index, {grp.name for grp in groups}, dump, ctx)
    with ctx.timed("regions"):
        regions.prepare(groups)     # compiles region bodies; each region group gets its scratch buffer
    hints = schedule_hints(g, bounds)
    with ctx.timed("memory plan"):
        dd = DataDims(g, groups, sym_index, limits)
        plan = plan_memory(g, groups, bounds=bounds, exclude=set(dd.blocks))
        check_memory(g, plan)
    say(f"generating {len(groups)} kernels")

    # where every value lives at run time
    with ctx.timed("constants"):
        const_offsets, default_offsets, blob = _constants(g.constants() + regions.constants(), in_names,
                                                          graph.defaults)
        weights_sha256 = hashlib.sha256(blob).hexdigest()
    buffer_index = {v: k for k, v in enumerate(plan.offsets)} if bounds else {}
    in_index = {v: k for k, v in enumerate(g.inputs)}
    out_index: dict[Value, int] = {}
    for k, v in enumerate(g.outputs):
        out_index.setdefault(v, k)

    def where(v: Value) -> str:
        t = c_type(v.dtype)
        # an input or constant that is also an output is read where it lies: its output buffer
        # is only filled (memcpy) after the kernels have run
        if v in in_index:
            return f"(const {t}*)inputs[{in_index[v]}]"
        if v in dd.blocks:        # sized by the data during the run (build.data_dims)
            return dd.where(v)
        if v in const_offsets:
            return f"(const {t}*)(ember_constants + {const_offsets[v]})"
        if v in out_index:
            return f"({t}*)outputs[{out_index[v]}]"
        if v in buffer_index:     # a model with symbols places them by a table (ember_model_buffers)
            return f"({t}*)(arena + offsets[{buffer_index[v]}])"
        if v in plan.offsets:
            return f"({t}*)(arena + {plan.offsets[v]})"
        raise EmberError(f"value {v.name} has no storage")

    gen = CGenerator(target.lanes, target.vector_registers)
    kernels, entry = [], []
    # groups alike share one lowering (kernels.group_signature); a dump shows each kernel's own
    same_groups: dict | None = {} if dump is None else None
    entry_names: list[str] = []     # what each line of the entry runs (a kernel, or a region)
    workloads: dict | None = None if kernel_knobs is None else {}
    target_key = tuning_key(target) if kernel_knobs is not None else ""

    def _kernel(k: int, grp) -> None:
        entry_names.append(grp.name)
        if is_region(grp):
            block, _ = regions.emit(grp, where, gen)
            entry.append(block)
            return
        wk = workload_key(grp, target_key, hints) if workloads is not None else None
        own = target.with_knobs(kernel_knobs[wk]) if wk is not None and kernel_knobs.get(wk) else target
        with asked_knobs() as asked:
            f, _, call = kernel_call(grp, own, where, gen, limits, bounds, sym_index, hints, ctx, same_groups,
                                     (kernel_steps or {}).get(wk) if wk is not None else None)
        if wk is not None:
            w = workloads.get(wk) or workloads.setdefault(wk, new_workload(wk, grp, f))
            w.groups.append(grp.name)
            w.knobs.update({n: v for n, v in asked.items() if n not in MODEL_KNOBS and n not in w.knobs})
        kernels.append(f)
        entry.append(call)
        entry.extend(dd.after_kernel(grp.output, where(grp.output)))
        if dump:
            dump(f"kernel_{k:03d}_{f.name}", f)

    helpers = intrinsic_helpers(target.lanes, target.isa)
    sent: set[str] = set()
    looked = [0]        # how many of gen.kernels were looked at

    def send_new_kernels() -> None:
        """Each new kernel's C file (``model_units`` makes the same) to the background compiles."""
        if early is None:
            return
        for kc in gen.kernels[looked[0]:]:
            if kc.symbol not in sent:
                early.submit(f"{kc.symbol}.c", kc.unit(helpers=helpers), kc.code)
                sent.add(kc.symbol)
        looked[0] = len(gen.kernels)

    last_said = time.perf_counter()
    for k, grp in enumerate(groups):
        t_kernel = time.perf_counter()
        with ctx.timed("kernels: signatures, reuse, calls"):      # (lowering and C are steps of their own)
            _kernel(k, grp)
            if k % 32 == 31:
                gc.collect(0)       # what the last kernels left (see passes.base.paused_gc)
        with ctx.timed("C generation"):
            send_new_kernels()
        now = time.perf_counter()
        if now - last_said >= 5.0 and k + 1 < len(groups):     # long work says how far it got
            say(f"generated {k + 1} of {len(groups)} kernels (the last, {grp.name}, took {now - t_kernel:.1f} s)")
            last_said = now

    # outputs not produced by a kernel (inputs, constants, or a value listed twice)
    def nbytes(v: Value) -> str:
        if v.type.is_static:
            return str(v.type.nbytes)
        return f"(size_t){dim_c(v.type.num_elements * np.dtype(v.dtype if v.dtype != 'bfloat16' else 'uint16').itemsize, sym_index)}"

    for k, v in enumerate(g.outputs):
        first = out_index[v]
        if v in dd.blocks:
            continue              # the runtime owns it (ember_model_output)
        if first != k:
            entry.append(f"memcpy(outputs[{k}], outputs[{first}], {nbytes(v)});")
        elif v.producer is None or v in in_index or v in const_offsets:
            entry.append(f"memcpy(outputs[{k}], {where_src(v, in_index, const_offsets)}, {nbytes(v)});")

    def dims(shape) -> list:
        return [d if isinstance(d, int) else str(d) for d in shape]

    meta = {
        "format": 1, "ember_version": __version__, "name": g.name, "target": target.spec if target.cross else target.kind,
        **({"triple": target.triple, "features": sorted(target.features)} if target.cross else {}),
        "inputs": [{"name": n, "dtype": v.dtype, "shape": dims(v.shape),
                    **({"default": {"offset": default_offsets[n], "shape": list(graph.defaults[n].shape)}}
                       if n in default_offsets else {})} for n, v in zip(in_names, g.inputs)],
        "outputs": [{"name": n, "dtype": v.dtype, "shape": dims(v.shape),
                     **({"squeeze": list(g.squeezes[k])} if k in g.squeezes else {})}
                    for k, (n, v) in enumerate(zip(out_names, g.outputs))],
        "arena_bytes": plan.arena_bytes, "constants_bytes": len(blob),
        "weights_sha256": weights_sha256,
        "kernels": len(kernels) + len(regions.kernels),
        "intermediate_bytes": plan.total_intermediate_bytes,
    }
    shapes_c = ""
    if bounds:
        meta["symbols"] = [{"name": n, "bound": b, **({"limit": limits[n]} if n in limits else {}),
                            **({"data": True} if n in dd.syms else {})}
                           for n, b in bounds.items()]
        if g.checks:
            meta["checks"] = [{"dim": str(d), "op": op, "what": what} for d, op, what in g.checks]
        # the dimensions the data decides are unknown before the run: -1
        known = [(n, tuple(-1 if isinstance(d, Sym) and d.symbols() & dd.syms else d for d in v.shape))
                 for n, v in zip(out_names, g.outputs)]
        shapes_c = shape_function([(n, v.shape) for n, v in zip(in_names, g.inputs)], known,
                                  list(bounds), list(bounds.values()), limits, g.checks)
        shapes_c += buffer_table(list(buffer_index), plan, sym_index)
        if dd:
            shapes_c += dd.functions([(n, v.shape) for n, v in zip(out_names, g.outputs)])
    with ctx.timed("C generation"):
        units = model_units(g.name, target.lanes, gen.kernels, entry, meta, plan.arena_bytes,
                            entry_names if profile else None, shapes_c, gen.check_sites,
                            data_entry=dd.entry_params if dd else None, isa=target.isa)
    # the blob as it is, read-only (a bytes copy of BERT-base's 437 MB took 0.2-0.3 s of CPU)
    return CompiledModel(g, groups, plan, units, memoryview(blob).toreadonly(), kernels + regions.kernels,
                         {f"{kc.symbol}.c": kc.code for kc in gen.kernels},
                         {kc.name: f"{kc.symbol}.c" for kc in gen.kernels}, workloads, weights_sha256)


def _constants(values, in_names, defaults) -> tuple[dict[Value, int], dict[str, int], bytearray]:
    """The constants blob: every constant of ``values`` (once) and the default values of inputs
    a caller may leave out (read only when it does), each 64-byte aligned; returns where each
    constant and each default lies in it, and the blob."""
    parts: list[tuple[int, np.ndarray]] = []
    size = 0

    def place(arr) -> int:
        nonlocal size
        arr = np.ascontiguousarray(arr)
        size += (-size) % CONST_ALIGN
        parts.append((size, arr))
        size += arr.nbytes
        return parts[-1][0]

    const_offsets = {v: place(v.const) for v in dict.fromkeys(values)}
    default_offsets = {n: place(defaults[n]) for n in in_names if n in defaults}
    size += (-size) % CONST_ALIGN or CONST_ALIGN
    blob = bytearray(size)          # zeros between the arrays; each array copied in once
    whole = np.frombuffer(blob, np.uint8)
    for offset, arr in parts:
        whole[offset:offset + arr.nbytes] = arr.reshape(-1).view(np.uint8)
    del whole
    return const_offsets, default_offsets, blob


def check_memory(g: Graph, plan) -> None:
    """The resource policy on a planned model: every intermediate within ``tensor_bytes`` with
    the symbols at their bounds, the arena and the constants together within ``memory_bytes``."""
    lim = ember_limits.current()
    for v, n in plan.sizes.items():
        if n > lim.tensor_bytes and not v.type.is_static:
            p = v.producer
            ember_limits.check_tensor(n, f"%{v.name} ({v.type}) with the symbols at their bounds", limits=lim,
                                node=p.name if p else None, op=p.op if p else None)
    const_bytes = sum(v.const.nbytes for v in g.constants())
    ember_limits.check_count("memory_bytes", plan.arena_bytes + const_bytes,
                             f"the memory of model '{g.name}' (arena {ember_limits.format_bytes(plan.arena_bytes)} "
                             f"and constants {ember_limits.format_bytes(const_bytes)})", limits=lim)


def where_src(v: Value, in_index, const_offsets) -> str:
    if v in in_index:
        return f"inputs[{in_index[v]}]"
    return f"(ember_constants + {const_offsets[v]})"


def _model_key(model: Any, target: Target, opt_level: int, shapes=None, bounds=None, profile: bool = False,
               cflags: tuple[str, ...] = (), disabled: frozenset = frozenset(),
               kernel_knobs: Mapping[str, Mapping] | None = None, stamps: list | None = None,
               kernel_steps: Mapping[str, list] | None = None) -> str | None:
    """The cache key of a compile: a hash of everything it reads and everything that changes its
    output: Ember's own source, the target (every processor feature: the C is compiled for this
    machine), the C compiler, the options, the model's bytes and the contents of every external
    data file the model refers to.  ``None`` (not cached) for what cannot be keyed that way: an
    ember Graph, a ModelProto whose weights lie in external files, a file that cannot be read."""
    h = hashlib.sha256()

    def put(tag: str, data: bytes | str) -> None:
        data = data.encode("utf-8") if isinstance(data, str) else data
        h.update(f"{tag}:{len(data)}:".encode())
        h.update(data)

    put("ember", _source_digest())
    put("target", json.dumps([target.key(), target.kind, target.arch, sorted(target.features), target.threads,
                              target.l2_bytes, [list(k) for k in target.knobs]], default=str))
    from ..toolchain import compiler_identity

    put("compiler", compiler_identity(tuple(cflags), target))
    put("options", json.dumps({
        "opt_level": opt_level, "profile": bool(profile), "cflags": [str(f) for f in cflags],
        "disabled_passes": sorted(disabled),
        "shapes": sorted((str(k), v) for k, v in (shapes or {}).items()),
        "bounds": sorted((str(k), v) for k, v in (bounds or {}).items()),
        "kernel_knobs": sorted((w, sorted(k.items())) for w, k in (kernel_knobs or {}).items()),
        "kernel_steps": sorted((w, list(st)) for w, st in (kernel_steps or {}).items()),
    }, default=repr))
    # what folds depends on fold_bytes, and a model compiled under larger limits must still be
    # refused under smaller ones
    put("limits", json.dumps(sorted(ember_limits.current().as_dict().items()), default=str))
    if isinstance(model, (str, os.PathLike)):
        from ..frontend.files import ONNX, file_type
        from ..frontend.onnx_files import file_stamp

        path, kind = os.fspath(model), file_type(model)
        put("format", kind.name)
        if kind is not ONNX:            # one self-contained file; a SavedModel folder is not cached
            if not os.path.isfile(path):
                return None
            with open(path, "rb") as f:
                if stamps is not None:
                    stamps.append((path, file_stamp(os.fstat(f.fileno()))))
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            return h.hexdigest()
        try:
            _hash_model_files(path, h, stamps)   # the model and its external data, read safely
        except EmberError:
            return None   # not cached: the frontend reports what is wrong with the files
        return h.hexdigest()
    if isinstance(model, (bytes, bytearray, memoryview)):
        put("model", bytes(model))      # bytes cannot refer to external data (no folder)
        return h.hexdigest()
    onnx = sys.modules.get("onnx")    # an onnx.ModelProto exists only once onnx is imported
    if onnx is not None and isinstance(model, onnx.ModelProto):
        if _external_locations(model):
            return None                  # where its data lies is not known here
        put("model", model.SerializeToString(deterministic=True))
        return h.hexdigest()
    return None   # graphs are not cached (cheap to hash wrongly, so we do not guess)


#: a file changed less than this many seconds before it was hashed is not remembered: a second
#: write within the file system's time stamp granularity could leave its stamp as it was
RACY_SECONDS = 2.0


def _hash_model_files(path: str, h, stamps: list | None) -> None:
    """Feed ``h`` the sha256 of the ONNX model at ``path`` and its external data files
    (``onnx_files.hash_model_files``), remembered in ``Cache("hashes")`` by the model file's
    stamp (``file_stamp``: the file, its size, its modification and change times), with every
    file's stamp: while every stamp holds, no file was written (a write sets the change time
    to now), so the digest is used without reading the files again.  Files written within
    ``RACY_SECONDS`` before they were hashed are not remembered."""
    from ..frontend.onnx_files import file_stamp, hash_model_files
    from ..toolchain import Cache

    files: list = []
    memo = Cache("hashes", suffix=".json")
    try:
        mkey = hashlib.sha256(repr((os.path.abspath(path), file_stamp(os.stat(path)))).encode()).hexdigest()
        hit = memo.get(mkey)
        if hit is not None:
            rec = json.loads(hit.read_text())
            files = [(p, tuple(st)) for p, st in rec["files"]]
            if files and _unchanged(files):
                h.update(bytes.fromhex(rec["sha256"]))
                if stamps is not None:
                    stamps.extend(files)
                return
    except (OSError, ValueError, KeyError, TypeError):
        mkey = None       # no memo (the frontend reports a file it cannot read)
    files = []
    inner = hashlib.sha256()
    hash_model_files(path, inner, files)
    h.update(inner.digest())
    if stamps is not None:
        stamps.extend(files)
    newest = max(st[4] for _, st in files) / 1e9          # the latest change time
    if mkey is not None and time.time() - newest > RACY_SECONDS:
        try:
            memo.put_bytes(mkey, json.dumps({"sha256": inner.hexdigest(), "files": files}).encode())
        except (OSError, EmberError):
            pass          # only an optimization


def _unchanged(stamps: list) -> bool:
    """Whether every file of ``stamps`` (``(path, file_stamp)`` taken when the key hashed it)
    is still the same file with the same size and modification and change times: any write to
    it since changed its change time (``st_ctime``), so it holds what the key hashed."""
    from ..frontend.onnx_files import file_stamp

    try:
        return all(file_stamp(os.stat(p)) == st for p, st in stamps)
    except OSError:
        return False


def _external_locations(mp) -> set[str]:
    """The ``location`` of every tensor of the model that keeps its data in an external file
    (initializers, sparse initializers, attributes, in subgraphs and functions too)."""
    from onnx import TensorProto

    found: set[str] = set()

    def tensor(t) -> None:
        if t.data_location == TensorProto.EXTERNAL:
            found.update(e.value for e in t.external_data if e.key == "location")

    def graph(g) -> None:
        for t in g.initializer:
            tensor(t)
        for st in g.sparse_initializer:
            tensor(st.values)
            tensor(st.indices)
        nodes(g.node)

    def nodes(ns) -> None:
        for n in ns:
            for a in n.attribute:
                if a.HasField("t"):
                    tensor(a.t)
                for t in a.tensors:
                    tensor(t)
                if a.HasField("sparse_tensor"):
                    tensor(a.sparse_tensor.values)
                    tensor(a.sparse_tensor.indices)
                for st in a.sparse_tensors:
                    tensor(st.values)
                    tensor(st.indices)
                if a.HasField("g"):
                    graph(a.g)
                for g in a.graphs:
                    graph(g)

    graph(mp.graph)
    for f in mp.functions:
        nodes(f.node)
    return found


def compile(model: Any, target: "str | Target" = "cpu", opt_level: int = 3, *,
            shapes: Mapping[str, tuple] | None = None, bounds: Mapping[str, int] | None = None,
            dump: str | os.PathLike | None = None,
            progress: ProgressFn | None = None, cache: bool = True, profile: bool = False,
            cflags: tuple[str, ...] = (), knobs: Mapping[str, Any] | None = None,
            limits: "ember_limits.Limits | Mapping[str, Any] | str | None" = None,
            disabled_passes: tuple[str, ...] = (), tuning: str | os.PathLike | None = None,
            records: str | os.PathLike | None = None):
    """Compile ``model`` (a path, an ``onnx.ModelProto`` or an ember ``Graph``) for ``target``.

    Returns a loaded :class:`ember.runtime.Module`; for a cross target (``"aarch64-linux"``,
    ``"wasm32"``, ... see ``ember.target.TARGETS``) a :class:`~ember.runtime.cross.CrossArtifact`,
    built but not loadable on this machine.  Dimensions the model leaves symbolic stay
    symbolic: one artifact runs every size up to the symbols' bounds (``bounds={"seq": 512}``;
    ``shapes=`` pins or names input dimensions).  ``dump`` (or ``$EMBER_DUMP``) names a folder
    that receives the graph after every pass, the fused groups, each kernel's loop IR and the
    generated C.  ``progress`` is called with a message at each step.  ``profile=True`` times
    every kernel call (``Module.profile()`` reports the totals).  ``cflags`` are extra flags for
    the C compiler (e.g. ``("-O1",)`` where compile time matters more than speed).  ``knobs``
    sets schedule choices the schedules otherwise make by their cost models, e.g.
    ``{"matmul.rows": 4, "conv2d.order": "rows"}`` (``ember.schedules.knobs.KNOBS`` lists them):
    for tuning; every valid value gives the same results.  ``limits`` changes the resource
    policy (``ember.limits``): ``{"tensor_bytes": "2G", "nodes": 100000}``; a model above it
    raises :class:`~ember.errors.LimitError` before anything is allocated.  ``disabled_passes``
    names passes of the pipeline not to run (``ember passes`` lists them; those that decide the
    results cannot be disabled).  ``tuning`` names a tuning records file (``ember tune``,
    :mod:`ember.driver.records`; ``records`` is another name for it): each kernel it holds
    records of for this target gets the schedule of its fastest one, replayed from the recorded
    steps where they apply, else by its knobs.

    The result's ``timings`` (an :class:`ember.timings.Timings`) says the wall and CPU seconds
    of every step of the compile (``ember compile --timings`` prints its ``table()``).
    """
    if tuning is not None and records is not None and os.fspath(tuning) != os.fspath(records):
        raise EmberError("tuning= and records= name the same option (the tuning records file): give one")
    tuning = tuning if tuning is not None else records
    tm = Timings()
    try:
        lim = limits if isinstance(limits, ember_limits.Limits) else ember_limits.current().updated(limits)
    except ValueError as e:
        raise EmberError(str(e)) from None
    if disabled_passes:
        from .pipeline import check_disabled

        disabled = check_disabled(disabled_passes)
    else:
        disabled = frozenset()
    with ember_limits.using(lim):
        result = _compile(model, target, opt_level, shapes=shapes, bounds=bounds, dump=dump, progress=progress,
                          cache=cache, profile=profile, cflags=cflags, knobs=knobs,
                          disabled=disabled, tuning=tuning, tm=tm)
    result.timings = tm.finish()
    return result


def _compile(model: Any, target: "str | Target", opt_level: int, *, shapes, bounds, dump, progress, cache: bool,
             profile: bool, cflags: tuple[str, ...], knobs, disabled: frozenset = frozenset(), tuning=None,
             tm: Timings):
    from ..toolchain import Cache

    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    tgt = resolve(target)
    if tgt.family == "gpu":
        from .gpu import compile_gpu

        if tuning is not None:
            raise TargetError("tuning records apply to CPU targets only")
        from ..passes.base import paused_gc

        with tm.step("GPU compile"), paused_gc():        # the passes collect (see passes.base.paused_gc)
            return compile_gpu(model, tgt, opt_level, shapes=shapes, bounds=bounds, knobs=knobs,
                               dump=dump or os.environ.get("EMBER_DUMP") or None, progress=progress)
    if knobs:
        tgt = tgt.with_knobs(check_knobs(knobs))
    tuned = tuned_steps = None
    if tuning is not None:
        from .records import replay_schedules

        tuned, tuned_steps = replay_schedules(tuning, tgt)
        say(f"tuning records: {len(tuned)} kernel{'s' * (len(tuned) != 1)} for this target, "
            f"{len(tuned_steps)} with schedule steps to replay")
    if not isinstance(opt_level, int) or not 0 <= opt_level <= 3:
        raise EmberError(f"opt_level must be 0, 1, 2 or 3, got {opt_level!r}")
    dump = dump or os.environ.get("EMBER_DUMP") or None
    models = Cache("models", suffix=".so")
    stamps: list = []       # a model file's: what says that it did not change while it was read
    with tm.step("cache key (hash the model)"):
        key = _model_key(model, tgt, opt_level, shapes, bounds, profile, tuple(cflags), disabled, tuned, stamps,
                         tuned_steps) \
            if cache and not dump else None
    if key is not None:
        for kind in (models, Cache("programs", suffix=".ember")):
            hit = kind.get(key)
            if hit is None:
                continue
            if not _entry_is_its_own(kind, key, hit):
                # another artifact, or one whose record another process is about to write: a miss,
                # left where it is (this compile's store replaces it; removing it could take the
                # entry another process has just stored and is about to load)
                break
            try:
                seen = os.stat(hit)
                with tm.step("load"):
                    module = _loaded(hit, tgt)
            except OSError:             # removed meanwhile (cache trimmed or cleared)
                break
            except ArtifactError:       # damaged, or built for another processor: build it again
                _remove_unless_replaced(kind, key, seen)
                break
            say(f"found in cache ({time.perf_counter() - t0:.2f} s)")
            return module
    # the runtime's objects and the precompiled header do not depend on the model: compiled in
    # the background while Python reads the model and generates the kernels
    from ..codegen.c import model_header
    from ..passes.base import paused_gc
    from ..toolchain.cc import prebuild

    early = prebuild({"model.h": model_header(tgt.lanes, tgt.isa)}, pch="model.h", flags=cflags, target=tgt)
    try:
        with paused_gc():       # the passes collect (see passes.base.paused_gc)
            return _compile_model(model, tgt, opt_level, shapes, bounds, dump=dump, say=say, profile=profile,
                                  cflags=cflags, disabled=disabled, tuned=tuned, tuned_steps=tuned_steps, tm=tm,
                                  key=key, stamps=stamps, models=models, early=early, t0=t0,
                                  report_steps=bool(progress))
    finally:
        early.close()       # (nothing left to do after a wait; after an error, the threads stop)


def _compile_model(model, tgt: Target, opt_level: int, shapes, bounds, *, dump, say, profile: bool, cflags,
                   disabled: frozenset, tuned, tuned_steps, tm: Timings, key, stamps: list, models, early,
                   t0: float, report_steps: bool):
    """The rest of :func:`_compile` after a miss of the model cache."""
    from .program import needs_program
    from ..runtime import load

    say("reading model")
    with tm.step("frontend (import the model)"):
        graph = to_graph(model, shapes, bounds)
    with tm.step("cache key (hash the model)"):
        # the files changed while they were read: do not file this under either key
        if key is not None and not (_unchanged(stamps) if stamps else
                                    _model_key(model, tgt, opt_level, shapes, bounds, profile, tuple(cflags),
                                               disabled, tuned, None, tuned_steps) == key):
            key = None
    dumper = _Dumper(Path(dump)) if dump else None
    if dumper:
        dumper("input", graph)
    if needs_program(graph):
        if tgt.cross:
            raise TargetError(f"model '{graph.name}' has host steps (string ops), which only the Python runtime "
                              f"runs: it cannot be built for {tgt.spec}")
        path = _compile_program(graph, tgt, opt_level, dumper, say, profile, tuple(cflags), key, disabled, tuned,
                                tm, tuned_steps, early)
        say(f"done in {time.perf_counter() - t0:.1f} s")
        with tm.step("load"):
            return load(path)
    lib = _build_library(graph, tgt, opt_level, dumper, say, profile, tuple(cflags), report_steps, disabled,
                         tuned, tm, tuned_steps, early, loading=True)
    if key is not None:
        with tm.step("cache store"):
            _store_entry(models, key, lib, link=True)     # the same file as the library cache's entry
    say(f"done in {time.perf_counter() - t0:.1f} s")
    with tm.step("load"):
        return _loaded(lib, tgt)


#: suffix of the file beside a model cache entry that records the digest of the artifact stored
#: under that key (the artifact's trailer digest, its identity)
_DIGEST_SUFFIX = ".digest"


def _store_entry(kind, key: str, path: Path, **how) -> Path:
    """Stores the artifact ``path`` under ``key`` in the cache ``kind`` (``Cache.put(**how)``), then
    records its digest beside it: :func:`_entry_is_its_own` loads an entry only when its trailer
    still names that artifact, so another (whole, valid) artifact put under the key is not run."""
    from ..runtime.artifact import trailer_digest

    digest = trailer_digest(path)       # (read from this compile's own file: the entry is shared)
    stored = kind.put(key, path, **how)
    kind.beside(_DIGEST_SUFFIX).put_bytes(key, digest.hex().encode())
    return stored


def _remove_unless_replaced(kind, key: str, seen: os.stat_result) -> None:
    """Removes the entry under ``key`` if it is still the file ``seen`` (one that failed to load),
    not one another process has stored since."""
    try:
        now = os.stat(kind.path_for(key))
    except OSError:
        return
    if (now.st_dev, now.st_ino) == (seen.st_dev, seen.st_ino):
        kind.remove(key)


def _entry_is_its_own(kind, key: str, hit: Path) -> bool:
    """Whether the cache entry ``hit`` is the artifact :func:`_store_entry` stored under ``key``
    (its trailer's digest is the one recorded; no hashing: the load checks the payload against
    the trailer).  An entry without a record (stored by an older Ember, a store cut short
    between the two writes, or one another process is making) is not, nor one without a whole
    trailer."""
    from ..runtime.artifact import trailer_digest

    record = kind.beside(_DIGEST_SUFFIX).get(key)
    if record is None:
        return False
    try:
        return record.read_bytes().strip() == trailer_digest(hit).hex().encode()
    except (OSError, ArtifactError):
        return False


def _loaded(path: Path, tgt: Target):
    """The artifact at ``path``, loaded; for a cross target, a handle that is not loaded."""
    from ..runtime import load
    from ..runtime.cross import CrossArtifact

    return CrossArtifact(path, tgt.spec) if tgt.cross else load(path)


def _build_library(graph: Graph, tgt: Target, opt_level: int, dumper, say: ProgressFn, profile: bool,
                   cflags: tuple[str, ...], report_steps: bool = False, disabled: frozenset = frozenset(),
                   kernel_knobs: Mapping[str, Mapping] | None = None, timings: Timings | None = None,
                   kernel_steps: Mapping[str, list] | None = None, early=None, loading: bool = False) -> Path:
    """Compile ``graph`` (no host ops) to a sealed shared library; returns its path.  ``early``
    (a ``toolchain.cc.Prebuild``) is waited for before the C compiles; ``loading``: see
    :func:`build_library`."""
    cm = generate(graph, tgt, opt_level, dump=dumper, progress=say, profile=profile, disabled_passes=disabled,
                  kernel_knobs=kernel_knobs, timings=timings, kernel_steps=kernel_steps,
                  early=early)
    if early is not None:
        with timed(timings, "C: wait for the background compiles") as step:
            detail = early.wait()
        if step is not None:
            step.detail = detail
        if report_steps:
            for fname in early.compiled:
                say(f"compile {Path(fname).name} (in the background)")
    return build_library(cm, graph.name, tgt, dumper, say, cflags, report_steps, timings, loading)


def build_library(cm: CompiledModel, name: str, tgt: Target, dumper, say: ProgressFn, cflags: tuple[str, ...],
                  report_steps: bool = False, timings: Timings | None = None, loading: bool = False,
                  store_at: Path | None = None) -> Path:
    """The sealed shared library of what :func:`generate` made (``cm``); returns its path.
    ``loading``: the caller loads it next (``build_shared(loading=)``: sealed through the
    private copy that load opens); ``store_at``: put there, not in the cache
    (``build_shared(store_at=)``)."""
    from ..codegen.c import c_ident
    from ..toolchain import build_shared

    if dumper:
        dumper.write("groups.txt", "\n".join(k.comment for k in cm.kernels) + "\n")
        dumper.write("model.c", cm.source)
        for fname, text in cm.units.items():
            dumper.write(f"c/{fname}", text)
        dumper.write("memory_plan.txt", cm.plan.summary() + "\n")
    _check_float16(cm, tgt, cflags)
    n = len(cm.object_keys)
    say(f"compiling C: {n} distinct kernel{'s' * (n != 1)} and the entry, one file each "
        f"({sum(map(len, cm.units.values())) // 1024} KiB), {len(cm.constants) / 1e6:.1f} MB constants")
    return build_shared(cm.units, {"ember_constants": cm.constants}, flags=list(cflags), name=c_ident(name),
                        progress=(lambda step, done, total: say(step)) if report_steps else None, target=tgt,
                        object_keys=cm.object_keys, pch="model.h", timings=timings,
                        blob_keys={"ember_constants": cm.constants_sha256}, loading=loading and not tgt.cross,
                        store_at=store_at)


def _check_float16(cm: CompiledModel, tgt: Target, cflags: tuple[str, ...]) -> None:
    """ToolchainError naming the first kernel that computes in float16 (C's ``_Float16``) when the
    target's C compiler has no such type, instead of the compiler's own errors."""
    from ..toolchain.cc import find_compiler, has_float16

    users = [k for k in cm.kernels if "_Float16" in cm.units.get(cm.kernel_files.get(k.name, ""), "")]
    if not users or has_float16(cflags, tgt):
        return
    name, _, fuses = users[0].comment.partition(": ")
    compiler = "zig cc" if tgt.cross else " ".join(find_compiler().command)
    raise ToolchainError(f"kernel '{name}' ({fuses}) computes in float16, and the C compiler for {tgt.spec} "
                         f"({compiler}) has no _Float16 type (GCC before 12 on x86, and clang for wasm32, have "
                         "none): convert the model's float16 tensors to float32, or use a C compiler that has it "
                         "(on x86, GCC 12 or newer, or clang; set $CC)")


def _compile_program(graph: Graph, tgt: Target, opt_level: int, dumper, say: ProgressFn, profile: bool,
                     cflags: tuple[str, ...], key: str | None, disabled: frozenset = frozenset(),
                     kernel_knobs: Mapping[str, Mapping] | None = None, timings: Timings | None = None,
                     kernel_steps: Mapping[str, list] | None = None, early=None) -> Path:
    """Compile a graph with host steps to a program file in the cache (``build.program``);
    returns its path."""
    from ..ops import get_op
    from ..runtime.program import write_program
    from .pipeline import Context, generic_steps, run_graph
    from .program import const_entry, json_attrs, partition
    from ..toolchain import Cache

    g = run_graph(graph, Context(tgt, opt_level, disabled, dumper, say, timings), generic_steps())
    steps = partition(g)
    slots: dict[Value, int] = {}

    def slot(v: Value) -> int:
        return slots.setdefault(v, len(slots))

    def dims(shape) -> list:
        return [d if isinstance(d, int) else str(d) for d in shape]

    in_slots = [slot(v) for v in g.inputs]
    consts: list[dict] = []

    def read(v: Value) -> int:
        if v.is_const and v not in slots:
            consts.append(const_entry(slot(v), v))
        return slot(v)

    header_steps: list[dict] = []
    libs: list[Path] = []
    for st in steps:
        if st.host:
            n = st.nodes[0]
            header_steps.append({"kind": "host", "kernel": get_op(n.op).host_kernel, "node": n.name, "op": n.op,
                                 "attrs": json_attrs(n.attrs), "inputs": [read(v) for v in st.inputs],
                                 "outputs": [slot(o) for o in st.outputs]})
            continue
        if not st.outputs:
            continue
        k = len(libs)
        sub = st.segment_graph(f"{g.name}_segment{k}", g.bounds, g.checks)
        say(f"segment {k}: {len(sub.nodes)} nodes")
        seg_dump = _Dumper(dumper.folder / f"segment_{k}") if dumper else None
        libs.append(_build_library(sub, tgt, opt_level, seg_dump, say, profile, cflags, disabled=disabled,
                                   kernel_knobs=kernel_knobs, timings=timings, kernel_steps=kernel_steps,
                                   early=early if k == 0 else None))    # (waited for by the first)
        header_steps.append({"kind": "segment", "segment": k, "inputs": [read(v) for v in st.inputs],
                             "outputs": [slot(o) for o in st.outputs]})
    out_slots = [read(v) for v in g.outputs]
    input_syms = {s for v in g.inputs for s in v.type.symbols}
    header = {
        "ember_version": __version__, "name": g.name, "target": tgt.kind,
        "inputs": [{"name": v.name, "dtype": v.dtype, "shape": dims(v.shape),
                    **({"default": {k: e for k, e in const_entry(-1, constant(g.defaults[v.name], dtype=v.dtype)).items()
                                    if k != "slot"}} if v.name in g.defaults else {})} for v in g.inputs],
        "outputs": [{"name": v.name, "dtype": v.dtype, "shape": dims(v.shape)} for v in g.outputs],
        "symbols": [{"name": s, "bound": b} for s, b in g.bounds.items() if s in input_syms],
        "input_slots": in_slots, "output_slots": out_slots, "constants": consts, "steps": header_steps,
    }
    say(f"program: {len(libs)} compiled segment(s), {sum(st.host for st in steps)} host step(s)")
    programs = Cache("programs", suffix=".ember")
    scratch = programs.scratch_dir()
    try:
        path = write_program(scratch / "model.ember", header, libs)
        entry = key or hashlib.sha256(path.read_bytes()).hexdigest()
        return _store_entry(programs, entry, path, move=True) if key else programs.put(entry, path, move=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


class _Dumper:
    """Writes numbered snapshots of every compiler stage into a folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.n = 0
        folder.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, text: str) -> None:
        (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
        (self.folder / name).write_text(text)

    def __call__(self, stage: str, obj) -> None:
        from ..tir.printer import print_func

        self.n += 1
        if isinstance(obj, Graph):
            from ..graph.text import print_graph

            text = print_graph(obj, elide_constants=True)
            self.write(f"{self.n:03d}_{stage}.graph.txt", text)
        else:
            self.write(f"{self.n:03d}_{stage}.tir.txt", print_func(obj))

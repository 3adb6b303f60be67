"""The ``ember`` command: a thin layer over the public API.

    ember compile MODEL -o OUT [--target cpu] [--opt-level N] [--dump DIR] [--shape NAME=D1,D2]
                               [--bound SYMBOL=N] [--knob NAME=VALUE] [--limit NAME=SIZE]
                               [--disable-pass PASS]
    ember run ARTIFACT|MODEL [--inputs in.npz] [--output out.npz] [--threads N] [--iters N]
                             [--target T] [compile options] [--limit NAME=SIZE]
    ember info MODEL [--shape NAME=D1,D2] [--bound SYMBOL=N]
    ember bench MODEL [--threads 2] [--runs 30] [--warmup 5] [--size SYMBOL=N]
    ember export --format c MODEL -o DIR [--target portable] [--weights blob|array] [compile options]
    ember targets
    ember passes
    ember cache [--clear]
    ember prebuild-runtime [--target T]
    ember bisect MODEL [--inputs in.npz] [--rtol R] [--atol A] [--seed N] [compile options]
    ember view MODEL [--after PASS] [--kernel NAME] [--profile [--runs N]] [-o report.html] [compile options]
    ember tune MODEL [--budget 10m] [--tuning FILE] [--trials N] [--threads N] [--runs N] [--ray [ADDRESS]]
               [compile options]
    ember tune [MODEL] --show KERNEL|WORKLOAD [--tuning FILE] [compile options]

``--tuning FILE`` (``compile``, ``run``, ``bench``, ``tune``; ``--records`` is another name for
it) names a tuning records file, by default ``tuning/records.sqlite`` in the cache directory for
``tune``.

``--target`` takes ``cpu`` (this machine) or a target ``ember targets`` lists, with ``+feature``
suffixes and ``-mcpu=`` (``--target "aarch64-linux -mcpu=cortex-a76"``); ``ember run`` runs a
cross target's artifact here under qemu user mode (Linux targets) or Node.js (wasm32).

Symbolic dimensions of a model stay symbolic unless ``--shape`` fixes them: ``--bound`` gives
the size to plan memory and schedules for (larger inputs still run, unless the model itself
limits a dimension), ``--size`` the sizes ``bench`` times.

``--limit`` changes the resource policy (``ember.limits``), e.g. ``--limit tensor_bytes=2G``.

Results go to stdout, progress to stderr.  Every :class:`ember.errors.EmberError` ends the
command with ``ember: error: <message>`` and exit status 1; set ``EMBER_DEBUG=1`` to see the
traceback too.  ``ember bisect`` exits with status 3 when the compiled model disagrees with
the reference interpreter.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import limits
from .errors import ArtifactError, EmberError, InputError, ModelLoadError
from .frontend.files import MODEL_SUFFIXES  # the files ``ember run`` compiles before it runs them


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with limits.using(dict(getattr(args, "limit", []) or [])):
            return args.func(args) or 0
    except EmberError as e:
        if os.environ.get("EMBER_DEBUG") == "1":
            traceback.print_exc()
        print(f"ember: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ember: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(prog="ember", description="Ember, a deep-learning inference compiler.")
    p.add_argument("--version", action="version", version=f"ember {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("compile", help="compile a model into an artifact",
                       description="Compile a model into a self-contained artifact.")
    c.add_argument("model", help="model file (.onnx)")
    c.add_argument("-o", "--output", required=True, metavar="OUT", help="artifact to write; for --target wasm32, "
                                                                          "a folder (no .wasm suffix) gets the web "
                                                                          "package: model.wasm, model.mjs, index.html")
    _add_compile_options(c)
    c.add_argument("--dump", metavar="DIR", help="write the graph after every pass, the kernels' loop IR "
                                                 "and the generated source to DIR")
    c.add_argument("--disable-pass", action="append", default=[], metavar="PASS",
                   help="do not run this pass of the pipeline (repeatable; 'ember passes' lists them)")
    c.add_argument("--timings", action="store_true", help="print the wall and CPU seconds of every step of the "
                                                          "compile (frontend, each pass, lowering, C generation, "
                                                          "C compiles, link, load)")
    _add_records_option(c)
    c.set_defaults(func=cmd_compile)

    r = sub.add_parser("run", help="run an artifact (or compile a model and run it) on inputs from an .npz file",
                       description="Run a compiled artifact on the arrays of an .npz file; a model is compiled "
                                   "for --target first.  An artifact for another target (aarch64-linux, "
                                   "armv7-linux, riscv64-linux, wasm32) runs here under qemu user mode or Node.js.")
    r.add_argument("artifact", help="artifact written by 'ember compile', or a model file (.onnx) to compile")
    r.add_argument("--inputs", metavar="NPZ", help="inputs, one array per input name (default: the deterministic "
                                                   "test pattern of ember.runtime.pattern_array)")
    r.add_argument("--output", metavar="NPZ", help="write the outputs here")
    r.add_argument("--threads", type=_positive_int, metavar="N", help="worker threads")
    r.add_argument("--iters", type=_positive_int, default=1, metavar="N",
                   help="timed runs after the first (default: 1); the median is printed")
    r.add_argument("--emulate-cpu", metavar="NAME", help="a cross artifact: the processor qemu emulates "
                                                         "(e.g. cortex-a72; default: one with every extension)")
    _add_compile_options(r)
    _add_records_option(r)
    r.set_defaults(func=cmd_run)

    i = sub.add_parser("info", help="describe a model: signature, ops, parameters, FLOPs",
                       description="Describe a model: its inputs and outputs, the ops of the ONNX model "
                                   "and of the Ember graph, its parameters and FLOPs.")
    i.add_argument("model", help="model file (.onnx), or a compiled artifact: what it says it is, its "
                                 "signature, its weights and the size of its runtime without them")
    i.add_argument("--shape", action="append", type=_shape_arg, default=[], metavar="NAME=D1,D2,...",
                   help="fix the shape of an input (repeatable)")
    i.add_argument("--bound", action="append", type=_size_arg, default=[], metavar="SYMBOL=N",
                   help="the size to plan a symbolic dimension for (repeatable; larger sizes still run)")
    i.set_defaults(func=cmd_info)

    b = sub.add_parser("bench", help="time a model with Ember and with onnxruntime",
                       description="Compile a model, time it on random inputs and compare with "
                                   "onnxruntime on the same inputs and thread count; the two take "
                                   "turns in blocks of runs, so that a busy stretch of the machine "
                                   "slows both alike.")
    b.add_argument("model", help="model file (.onnx)")
    _add_compile_options(b)
    b.add_argument("--threads", type=_positive_int, default=2, metavar="N", help="threads (default: 2)")
    b.add_argument("--runs", type=_positive_int, default=30, metavar="N", help="timed runs (default: 30)")
    b.add_argument("--warmup", type=int, default=5, metavar="N", help="untimed runs first (default: 5)")
    b.add_argument("--block", type=int, default=10, metavar="N",
                   help="timed runs of one engine before the other's turn (default: 10; 0: all at once)")
    b.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    b.add_argument("--profile", action="store_true",
                   help="then each kernel's time (a compile with profiling, --runs runs): ms per run, share, "
                        "GFLOP/s and the nodes it fuses, sorted")
    b.add_argument("--size", action="append", type=_size_arg, default=[], metavar="SYMBOL=N",
                   help="size of a symbolic dimension in the random inputs (default: 1; repeatable)")
    _add_records_option(b)
    b.set_defaults(func=cmd_bench)

    d = sub.add_parser("bisect", help="find the first kernel, pass and node where a compiled model "
                                      "disagrees with the reference interpreter",
                       description="Compile a model, run it kernel by kernel against the reference interpreter, "
                                   "then the reference interpreter pass by pass against the frontend's graph, and "
                                   "name the first kernel, pass and node whose results differ (exit status 3).")
    d.add_argument("model", help="model file (.onnx)")
    d.add_argument("--inputs", metavar="NPZ", help="inputs, one array per input name (default: seeded random)")
    d.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default: 0)")
    d.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance (default: 1e-3)")
    d.add_argument("--atol", type=float, default=1e-4, help="absolute tolerance (default: 1e-4)")
    _add_compile_options(d)
    d.set_defaults(func=cmd_bisect)

    v = sub.add_parser("view", help="show the passes, the graph after one, the kernels, their loop IR and C, "
                                    "the per-kernel profile",
                       description="Show what the compiler made of a model: the passes and the fused kernels; "
                                   "with --after the graph after a pass, with --kernel a kernel's loop IR and C, "
                                   "with --profile the time of every kernel, sorted.")
    v.add_argument("model", help="model file (.onnx)")
    v.add_argument("--after", metavar="PASS", help="print the graph after this pass (its number, or its name; "
                                                   "NAME#2 for the second run of a pass; 'input': the frontend's)")
    v.add_argument("--kernel", metavar="NAME", help="print the fused nodes, loop IR and C of this kernel "
                                                    "(its name or number)")
    v.add_argument("--profile", action="store_true", help="compile with profiling, run on random inputs and "
                                                          "print the per-kernel times sorted")
    v.add_argument("--runs", type=_positive_int, default=10, metavar="N", help="runs to profile (default: 10)")
    v.add_argument("-o", "--output", metavar="HTML", help="write all of it as one self-contained HTML page instead "
                                                          "(--after: the pass it shows first, --kernel: the kernel "
                                                          "it opens, --profile: a bar chart of the times)")
    _add_compile_options(v)
    v.set_defaults(func=cmd_view)

    e = sub.add_parser("export", help="write a model as a C source package that builds with no Ember present",
                       description="Write a model as a C source package: the generated kernels, the runtime's C "
                                   "files, the weights, a header, a Makefile and a README.  It builds with any "
                                   "C compiler (make CC=...).  --target portable (the default) writes generic "
                                   "C for any processor; a named target writes its own intrinsics.  --format web "
                                   "writes a wasm32 build for browsers and Node.js instead: model.wasm, the ES "
                                   "module model.mjs that loads and runs it, and an example page index.html.")
    e.add_argument("model", help="model file (.onnx)")
    e.add_argument("--format", choices=["c", "web"], default="c",
                   help="the package's form: c (default), or web: for browsers: with --target webgpu the WGSL "
                        "with a JS loader (ember_webgpu.js), else wasm32 (model.wasm, model.mjs, index.html)")
    e.add_argument("-o", "--output", required=True, metavar="DIR", help="folder to write (new, empty, or an "
                                                                          "earlier export)")
    e.add_argument("--weights", choices=["blob", "array"], default="blob",
                   help="weights as weights.bin with an .incbin (blob, default) or a C array in weights.c")
    _add_compile_options(e)
    e.set_defaults(func=cmd_export, target="portable")

    tu = sub.add_parser("tune", help="search the schedule knobs of every kernel of a model and record the best",
                        description="Search the schedule knobs of each distinct kernel of a model within a budget "
                                    "of wall time: candidates are compiled and timed in child processes (one "
                                    "that crashes, hangs or changes the outputs is skipped and recorded), guided "
                                    "by a cost model when scikit-learn is installed (pip install ember[tune]). "
                                    "Every measurement is appended to the records file (SQLite) with the schedule "
                                    "steps its kernel was lowered with; 'ember compile --tuning FILE' replays the "
                                    "best schedule of each kernel.  The final table gives each kernel's untuned "
                                    "and best time, its bound on this machine (its operations at the measured "
                                    "FMA peak, its bytes at the measured L1, L2 and memory bandwidths: what no "
                                    "schedule beats), how near it is, its share of the time and whether it has "
                                    "knobs at all.  With --show, print what the records replay for one kernel "
                                    "instead (and, given the model, its bound and the kernel rebuilt from them).")
    tu.add_argument("model", nargs="?", help="model file (.onnx); optional with --show")
    tu.add_argument("--budget", type=_duration_arg, default=600.0, metavar="TIME",
                    help="wall time to spend: seconds, or with s, m or h (default: 10m)")
    tu.add_argument("--tuning", "--records", dest="tuning", metavar="FILE",
                    help="records file to append to (default: tuning/records.sqlite in the cache directory; "
                         "JSON-lines records of earlier Embers are read and appended to as they are)")
    tu.add_argument("--show", metavar="KERNEL|WORKLOAD",
                    help="print the knobs and schedule steps the records replay for this kernel (its name, or "
                         "its workload key or the key's first 6 or more characters) and, given MODEL, the "
                         "kernel's loop IR rebuilt from them")
    tu.add_argument("--threads", type=_positive_int, metavar="N", help="threads to time with (default: the runtime's)")
    tu.add_argument("--runs", type=_positive_int, default=10, metavar="N", help="timed runs per candidate (default: 10)")
    tu.add_argument("--seed", type=int, default=0, help="seed of the search and of the inputs (default: 0)")
    tu.add_argument("--trials", type=_positive_int, metavar="N", help="stop after N trials, even with budget left")
    tu.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                    help="measure on the nodes of a Ray cluster (pip install ember[tune-ray]), one trial per node "
                         "at a time, each compiled on its node for that node's CPU: the cluster at ADDRESS, else "
                         "the one this machine runs, else Ray started here")
    _add_compile_options(tu)
    tu.set_defaults(func=cmd_tune)

    t = sub.add_parser("targets", help="list the targets --target accepts",
                       description="List the targets: this machine and the cross targets, with their ISA.")
    t.set_defaults(func=cmd_targets)
    ps = sub.add_parser("passes", help="list the passes of the compiler's pipeline",
                        description="List the pipeline's passes in order: the IR each rewrites, the lowest "
                                    "opt level that runs it, and what it does.")
    ps.set_defaults(func=cmd_passes)
    ca = sub.add_parser("cache", help="show (or clear) the cache of compiled models and kernels",
                        description="Show where the cache is, what it holds per kind and its bound "
                                    "(EMBER_CACHE_MAX, default 10G; the least recently used entries go first).")
    ca.add_argument("--clear", action="store_true", help="remove every entry")
    ca.set_defaults(func=cmd_cache)
    pr = sub.add_parser("prebuild-runtime", help="build the runtime's objects and the precompiled preamble for a "
                                                 "target into the runtime store",
                        description="Build what every compile for a target links or includes whatever the model "
                                    "(the runtime's C files and the precompiled preamble model.h) into the runtime "
                                    "store (EMBER_RUNTIME_DIR, else lib/ember/runtime under the installation's "
                                    "prefix), so that a cold compile does not build them.  `make venv` runs it for "
                                    "this machine; without it the first compile for a target fills the store.  It "
                                    "also writes the bytecode of Ember's own modules where it is missing, which "
                                    "the interpreter reads even when told not to write it (PYTHONDONTWRITEBYTECODE).")
    pr.add_argument("--target", default="cpu", help="target to build for (default: cpu, the host; "
                                                    "see 'ember targets')")
    pr.set_defaults(func=cmd_prebuild_runtime)
    return p


def _add_compile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default="cpu", help="target to compile for (default: cpu, the host; "
                                                   "see 'ember targets')")
    p.add_argument("--opt-level", type=int, default=3, choices=range(4), metavar="N",
                   help="optimization level 0-3 (default: 3)")
    p.add_argument("--shape", action="append", type=_shape_arg, default=[], metavar="NAME=D1,D2,...",
                   help="fix or name the dimensions of an input (repeatable)")
    p.add_argument("--bound", action="append", type=_size_arg, default=[], metavar="SYMBOL=N",
                   help="the size to plan a symbolic dimension for (repeatable; larger sizes still run)")
    p.add_argument("--knob", action="append", type=_knob_arg, default=[], metavar="NAME=VALUE",
                   help="set a schedule knob, e.g. matmul.rows=4 (repeatable; see docs/design.md)")
    _add_limit_option(p)


def _add_records_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tuning", "--records", dest="tuning", metavar="FILE",
                   help="tuning records written by 'ember tune': each kernel gets the schedule of its fastest "
                        "record for this target, replayed from its steps (else set by its knobs)")


def _add_limit_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", action="append", type=_limit_arg, default=[], metavar="NAME=SIZE",
                   help="change a resource limit, e.g. tensor_bytes=2G or nodes=100000 (repeatable; "
                        "see docs/errors.md, E105)")


def _limit_arg(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or name.strip() not in limits.Limits.names():
        raise argparse.ArgumentTypeError(f"expected NAME=SIZE with NAME one of {', '.join(limits.Limits.names())}, "
                                         f"got {text!r}")
    try:
        return name.strip(), limits.parse_size(value, name.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _size_arg(text: str) -> tuple[str, int]:
    name, sep, n = text.rpartition("=")
    if not sep or not name or not n.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected NAME=N (a symbol and a size), got {text!r}")
    return name.strip(), int(n)


def _knob_arg(text: str) -> tuple[str, int | str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (a schedule knob), got {text!r}")
    value = value.strip()
    return name.strip(), int(value) if value.lstrip("-").isdigit() else value


def _duration_arg(text: str) -> float:
    t = text.strip().lower()
    scale = {"s": 1, "m": 60, "h": 3600}.get(t[-1:], None)
    try:
        value = float(t[:-1] if scale else t) * (scale or 1)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a time such as 90, 90s, 10m or 1h, got {text!r}")
    return value


def _shape_arg(text: str) -> tuple[str, tuple[int | str, ...]]:
    name, sep, dims = text.rpartition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=D1,D2,..., got {text!r}")
    shape = tuple(int(d) if d.strip().isdigit() else d.strip() for d in dims.split(",") if d.strip())
    return name, shape


def _positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return n


# ---- commands -------------------------------------------------------------------------------

def cmd_compile(args: argparse.Namespace) -> int:
    _require_file(args.model)
    module, seconds = _compile(args.model, args, shapes=dict(args.shape) or None)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if getattr(module, "machine", "") == "wasm32" and out.suffix.lower() != ".wasm":
        from .driver.export import export_web

        export_web(module, out)               # a folder: model.wasm, model.mjs, index.html
        print(f"wrote {out}: model.wasm, model.mjs (load and run it in a page or Node.js), index.html (an example)")
        print(f"  model.wasm {_bytes(_path_size(out / 'model.wasm'))}; serve the folder over HTTP to open the page")
        print(f"  compiled in {seconds:.2f} s")
        _print_timings(module, args)
        return 0
    module.save(str(out))
    meta = getattr(module, "metadata", {}) or {}
    print(f"wrote {out}")
    print(f"  artifact   {_bytes(_path_size(out))}")
    print(f"  arena      {_bytes(module.arena_bytes)}")
    if "constants_bytes" in meta:
        print(f"  constants  {_bytes(meta['constants_bytes'])}")
    if "kernels" in meta:
        kernels = meta["kernels"]
        print(f"  kernels    {len(kernels) if isinstance(kernels, (list, tuple, dict)) else kernels}")
    if getattr(module, "symbols", None):
        print(f"  symbols    {_describe_symbols(module.symbols, module.limits)}")
    hosts = getattr(module, "host_steps", None)
    if hosts:
        print(f"  host steps {len(hosts)} ({', '.join(sorted({op for _, op in hosts}))}): a program for the "
              "Python runtime (ember.load); the C API cannot run it")
    print(f"  compiled in {seconds:.2f} s")
    _print_timings(module, args)
    return 0


def _print_timings(module: Any, args: argparse.Namespace) -> None:
    timings = getattr(module, "timings", None)
    if args.timings and timings is not None:
        print("\ntimings (own wall and CPU seconds of each step; CPU counts every thread and the C compiler):")
        print(timings.table(), end="")


def cmd_tune(args: argparse.Namespace) -> int:
    from .tune import default_records, tune

    if args.show is not None:
        from .tune.show import show

        if args.model is not None:
            _require_file(args.model)
        print(show(args.tuning or default_records(), args.show, args.model, args.target, opt_level=args.opt_level,
                   shapes=dict(args.shape) or None, bounds=dict(args.bound) or None,
                   knobs=dict(args.knob) or None), end="")
        return 0
    if args.model is None:
        raise EmberError("ember tune needs a model file (or --show KERNEL)")
    _require_file(args.model)
    runner = None
    if args.ray is not None:
        from .tune.ray_runner import RayRunner

        runner = RayRunner(args.ray or None)
    result = tune(args.model, args.target, budget_s=args.budget, records=args.tuning, opt_level=args.opt_level,
                  shapes=dict(args.shape) or None, bounds=dict(args.bound) or None,
                  knobs=dict(args.knob) or None, runs=args.runs, threads=args.threads, seed=args.seed,
                  max_trials=args.trials, runner=runner)
    print(result.table())
    print(f"trials {result.trials}, candidates skipped {result.failures}, "
          f"search {'guided by the cost model' if result.cost_model else 'at random'}, {result.seconds:.0f} s")
    tuned = "failed its check" if result.tuned_ms is None else f"{result.tuned_ms:.3f} ms"
    print(f"untuned {result.untuned_ms:.3f} ms, tuned {tuned} per run"
          + (f"; tuned over untuned, run in turn: {result.paired_ratio:.3f} of the time, "
             f"{result.cpu_ratio:.3f} of the CPU time" if result.paired_ratio and result.cpu_ratio else ""))
    if runner is not None:
        print("trials per node: " + ", ".join(f"{node} {n}" for node, n in sorted(result.nodes.items())))
    print(f"records: {result.records} (ember compile --tuning {result.records} ...)")
    return 0 if result.tuned_ms is not None else 1


def cmd_export(args: argparse.Namespace) -> int:
    from .driver.export import export_c, export_web

    _require_file(args.model)
    if args.format == "web" and args.target == "webgpu":
        from . import compile as compile_model

        m = compile_model(args.model, target="webgpu", opt_level=args.opt_level, shapes=dict(args.shape) or None,
                          knobs=dict(args.knob) or None, progress=_Progress())
        out = m.export_web(args.output)
        print(f"wrote {out} ({_bytes(_path_size(out))}); serve it and import ember_webgpu.js (loadModel)")
        return 0
    if args.format == "web":
        if args.target not in ("portable", "wasm32"):
            raise InputError(f"--format web is a wasm32 or webgpu build, not one for {args.target}")
        args.target = "wasm32"
        module, _ = _compile(args.model, args, shapes=dict(args.shape) or None)
        out = export_web(module, args.output)
        print(f"wrote {out}: model.wasm, model.mjs, index.html; serve the folder over HTTP to open the page")
        return 0
    progress = _Progress()
    print(f"exporting for {args.target} at -O{args.opt_level}", file=sys.stderr, flush=True)
    out = export_c(args.model, args.output, target=args.target, opt_level=args.opt_level,
                   shapes=dict(args.shape) or None, bounds=dict(args.bound) or None,
                   knobs=dict(args.knob) or None, weights=args.weights, progress=progress)
    print(f"wrote {out} ({_bytes(_path_size(out))}); build it with: make -C {out}")
    return 0


def cmd_bisect(args: argparse.Namespace) -> int:
    from .tools.bisect import DISAGREES, bisect

    _require_file(args.model)
    inputs = _load_npz(args.inputs) if args.inputs else None
    report = bisect(args.model, inputs, target=args.target, opt_level=args.opt_level, shapes=dict(args.shape) or None,
                    bounds=dict(args.bound) or None, knobs=dict(args.knob) or None, rtol=args.rtol, atol=args.atol,
                    seed=args.seed, progress=_Progress())
    print(report, end="")
    return 0 if report.agrees else DISAGREES


def cmd_view(args: argparse.Namespace) -> int:
    from .tools import view
    from .tools.stages import trace

    _require_file(args.model)
    shapes, bounds = dict(args.shape) or None, dict(args.bound) or None
    tr = trace(args.model, args.target, args.opt_level, shapes=shapes, bounds=bounds, knobs=dict(args.knob) or None)
    if args.output:
        return _view_html(args, tr, shapes, bounds)
    if args.after:
        print(view.graph_after(tr, args.after), end="")
    if args.kernel:
        print(view.kernel_text(tr.kernel(args.kernel)), end="")
    if args.profile:
        print(view.profile(args.model, tr, args.runs, shapes=shapes, bounds=bounds), end="")
    if not (args.after or args.kernel or args.profile):
        print(view.overview(tr), end="")
    return 0


def cmd_prebuild_runtime(args: argparse.Namespace) -> int:
    from .codegen.c import model_header
    from .errors import TargetError
    from .target import resolve
    from .toolchain.cc import prebuild_runtime, runtime_store_dir

    tgt = resolve(args.target)
    if tgt.family == "gpu":
        raise TargetError(f"{tgt.spec} is a GPU target: its kernels are built by the device's compiler, with no "
                          "C runtime to prebuild")
    bytecode = compile_bytecode()       # (first: it needs no C compiler)
    said = prebuild_runtime({"model.h": model_header(tgt.lanes, tgt.isa)}, pch="model.h", target=tgt)
    print(f"runtime store: {runtime_store_dir()} (target {tgt.spec})")
    for line in said:
        print(f"  {line}")
    print(bytecode)
    return 0


def compile_bytecode(root: "str | os.PathLike | None" = None) -> str:
    """Writes the bytecode of every module of the package at ``root`` (default: Ember's own)
    where it is missing or stale (``compileall``: ``__pycache__`` beside the sources, or under
    ``sys.pycache_prefix``), and says how many modules have it.  An interpreter told not to write
    bytecode (``PYTHONDONTWRITEBYTECODE``, an editable install in a read-only tree) still reads
    it: without it every compile in a new process parsed and compiled Ember's 130 modules again
    (0.4 s of CPU of the demo's cold compile).  A folder that cannot be written is left as it
    is."""
    import compileall
    import importlib.util

    base = Path(root) if root is not None else Path(__file__).resolve().parent
    compileall.compile_dir(base, quiet=2, workers=1)
    sources = [p for p in base.rglob("*.py") if "__pycache__" not in p.parts]
    have = sum(Path(importlib.util.cache_from_source(str(p))).is_file() for p in sources)
    return f"bytecode: {have} of {len(sources)} modules of {base}" + ("" if have == len(sources) else
                                                                     " (the others' folders cannot be written)")


def cmd_cache(args: argparse.Namespace) -> int:
    from .toolchain import cache
    from .toolchain.cc import runtime_store_dir

    root = cache.cache_dir()
    if args.clear:
        print(f"cleared {root}: {cache.clear(root) / 2**20:.1f} MiB freed")
        return 0
    kinds: dict[str, list] = {}
    for path, st in cache.entries(root):
        kinds.setdefault(path.parent.name, []).append(st)
    limit = cache.cache_limit()
    print(f"cache: {root}")
    print(f"bound: {'none' if limit is None else f'{limit / 2**30:.1f} GiB'} (EMBER_CACHE_MAX)")
    for kind, sts in sorted(kinds.items()):
        print(f"  {kind:<10} {len(sts):>6} entries {sum(st.st_size for st in sts) / 2**20:>10.1f} MiB")
    print(f"in all: {cache.usage(root) / 2**20:.1f} MiB on disk (a file under two keys counted once)")
    store = runtime_store_dir()
    objs = [p.stat().st_size for p in (store / "obj").glob("*.obj")] if (store / "obj").is_dir() else []
    print(f"runtime store: {store}: {len(objs)} entries, {sum(objs) / 2**20:.1f} MiB (not cleared with the cache; "
          "`ember prebuild-runtime` fills it)")
    return 0


def _view_html(args: argparse.Namespace, tr, shapes, bounds) -> int:
    from .tools import view, view_html

    times = view.measure(args.model, tr, args.runs, shapes=shapes, bounds=bounds) if args.profile else None
    page = view_html.render(tr, times, args.runs, after=args.after, kernel=args.kernel)
    out = view_html.write(args.output, page)
    print(f"wrote {out} ({_bytes(out.stat().st_size)}): {len(tr.passes)} passes, {len(tr.kernels)} kernels")
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    from .target import TARGETS, host, resolve

    rows = [("cpu", host(), "this machine (features detected)", [])]
    for name, ts in TARGETS.items():
        opts = [f"+{e}" for e in ts.extensions] + ([f"-mcpu={{{','.join(sorted(ts.cpus))}}}"] if ts.cpus else [])
        rows.append((name, resolve(name), ts.summary, opts))
    for name, tgt, summary, opts in rows:
        d = tgt.describe()
        lanes = ", ".join(f"{k} x{v}" for k, v in d["lanes"].items())
        print(f"{name:<15} {summary}")
        print(f"{'':<15} triple {d['triple']}, isa {d['isa']}, {d['vector_bits']}-bit vectors ({lanes}), "
              f"{d['vector_registers']} vector registers, FMA {'yes' if d['fma'] else 'no'}, dot product {d['dot']}")
        if opts:
            print(f"{'':<15} options: {' '.join(opts)}")
    print(f"{'cuda':<15} NVIDIA GPUs: CUDA C++ compiled to PTX by NVRTC (running it is not built yet)")
    print(f"{'':<15} options: -arch=sm_XX (default sm_80)")
    print(f"{'opencl':<15} OpenCL devices: OpenCL C run through pyopencl")
    print(f"{'metal':<15} Apple GPUs: Metal Shading Language and a launch plan for a Metal host program "
          "(not run by Ember)")
    print(f"{'webgpu':<15} WebGPU: WGSL compute shaders run through wgpu (Vulkan, Metal, D3D12) or a browser")
    return 0


def cmd_passes(args: argparse.Namespace) -> int:
    from .driver.pipeline import steps

    for st in steps():
        level = "always (required)" if st.required else f"-O{st.opt_level}"
        print(f"{st.name:<18} {st.ir:<6} {level:<18} {st.doc}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import ember
    from .runtime.artifact import artifact_machine, host_machine
    from .runtime.cross import CrossArtifact
    from .target import resolve

    if not os.path.exists(args.artifact):
        raise ArtifactError(f"no such artifact or model: {args.artifact}")
    inputs = _load_npz(args.inputs) if args.inputs else None
    if Path(args.artifact).suffix.lower() in MODEL_SUFFIXES:     # a model: compile it for --target first
        module, _ = _compile(args.artifact, args, shapes=dict(args.shape) or None)
    elif artifact_machine(args.artifact) not in ("", host_machine()):
        module = CrossArtifact(args.artifact, None if args.target == "cpu" else args.target)
    else:
        module = ember.load(args.artifact)
        if args.target != "cpu" and resolve(args.target).cross:
            raise ArtifactError(f"'{args.artifact}' is an artifact for this {host_machine()} machine, "
                                f"not for {args.target}")
    if args.emulate_cpu and not isinstance(module, CrossArtifact):
        raise InputError("--emulate-cpu is for a cross target's artifact (run under qemu)")
    if isinstance(module, CrossArtifact):
        outputs = module.run(inputs, threads=args.threads, iters=args.iters, cpu=args.emulate_cpu)
        how = f"under {'Node.js' if module.machine == 'wasm32' else 'qemu-' + module.machine} "
        ms = module.last.latency_ms
    else:
        if args.threads:
            module.num_threads = args.threads
        feeds = inputs if inputs is not None else module.pattern_inputs()
        outputs = module.run(feeds)
        times = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            module.run(feeds)
            times.append((time.perf_counter() - t0) * 1e3)
        how, ms = "", sorted(times)[len(times) // 2]
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        print(f"{name}  {arr.dtype}[{', '.join(map(str, arr.shape))}]  {_preview(arr)}")
    print(f"ran {how}in {ms:.3f} ms (median of {args.iters})", file=sys.stderr)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        np.savez(args.output, **outputs)
        print(f"wrote {args.output}")
    return 0


def _describe_symbols(planned: dict, limits: dict, defaulted=()) -> str:
    """``batch planned for 8, seq <= 512``: each symbol's limit, else the size it is planned for."""
    parts = []
    for n, b in planned.items():
        if n in limits:
            parts.append(f"{n} <= {limits[n]}")
        else:
            parts.append(f"{n} planned for {b}{' (default)' if n in defaulted else ''}")
    return ", ".join(parts)


def cmd_info(args: argparse.Namespace) -> int:
    import ember
    from .runtime.artifact import trailer_ok

    if Path(args.model).suffix.lower() not in MODEL_SUFFIXES and trailer_ok(args.model):
        return _print_artifact(Path(args.model))
    from .frontend.files import ONNX, file_type, graph_from_file

    kind = file_type(args.model)
    if kind is not ONNX:
        graph = graph_from_file(args.model, dict(args.shape) or None, dict(args.bound) or None)
        print(f"model     {args.model}")
        print(f"format    {kind.name} ({kind.translated})")
        return _print_ember_graph(graph, {})
    model = _load_onnx(args.model)
    g = model.graph
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    producer = " ".join(x for x in (model.producer_name, model.producer_version) if x)
    print(f"model     {args.model} ({_bytes(_path_size(Path(args.model)))})")
    print(f"format    ONNX ir {model.ir_version}, opset {opsets}" + (f", from {producer}" if producer else ""))
    print()
    init_names = {t.name for t in g.initializer}
    _print_signature("inputs", [(v.name, _onnx_type(v)) for v in g.input if v.name not in init_names])
    _print_signature("outputs", [(v.name, _onnx_type(v)) for v in g.output])
    onnx_params = sum(int(np.prod(t.dims)) for t in g.initializer)
    print()
    _print_histogram(f"ONNX ops ({len(g.node)} nodes, {len(init_names)} initializers, "
                     f"{onnx_params:,} weights)", _onnx_histogram(model))

    graph = ember.from_onnx(args.model, shapes=dict(args.shape) or None, bounds=dict(args.bound) or None)
    return _print_ember_graph(graph, {v.name: _onnx_type(v) for v in list(g.input) + list(g.output)})


def _print_artifact(path: Path) -> int:
    """What a compiled artifact says it is (checked: whole, and a cross artifact's metadata against
    its code), its signature and how its bytes divide (weights, runtime, machine code)."""
    from .runtime.artifact import artifact_machine, host_machine, verify_artifact
    from .runtime.cross import check_metadata, read_metadata
    from .runtime.sizes import artifact_sizes

    digest = verify_artifact(path)
    meta = read_metadata(path)
    machine = artifact_machine(path) or "unknown"
    if "triple" in meta:
        check_metadata(meta, machine, f"'{path}'")
    sizes = artifact_sizes(path, meta)
    features = meta.get("features")
    needs = (", ".join(features) or "nothing beyond the baseline") if features is not None else \
        "the features of the machine it was compiled on (checked on load)"
    print(f"artifact  {path} ({_bytes(sizes['artifact'])}), sha256 {digest.hex()}")
    print(f"format    metadata {meta.get('format')}, Ember {meta.get('ember_version', '?')}, model '{meta.get('name')}'")
    print(f"target    {meta.get('target')} ({meta.get('triple', host_machine() + ' host')}; code for {machine}), "
          f"requires {needs}")
    print()
    shape = lambda x: f"{x['dtype']}[{', '.join(map(str, x['shape']))}]"   # noqa: E731
    _print_signature("inputs", [(x["name"], shape(x)) for x in meta.get("inputs", [])])
    _print_signature("outputs", [(x["name"], shape(x)) for x in meta.get("outputs", [])])
    print()
    print(f"weights   {_bytes(sizes['weights'])}" + (f", sha256 {meta['weights_sha256']}" if "weights_sha256" in meta else ""))
    print(f"runtime   {_bytes(sizes['runtime'])} without weights ({sizes['runtime']:,} bytes; machine code "
          f"{_bytes(sizes['code'])}), arena {_bytes(int(meta.get('arena_bytes', 0)))}")
    return 0


def _print_ember_graph(graph, framework_types: dict) -> int:
    """The Ember graph's ops, its signature where it differs from the framework's, parameters,
    symbols and FLOPs."""
    from .graph.stats import count_flops, count_params

    print()
    _print_histogram(f"Ember graph ({len(graph.nodes)} nodes)", graph.op_histogram())
    ember_in = [(v.name, str(v.type)) for v in graph.inputs]
    ember_out = [(v.name, str(v.type)) for v in graph.outputs]
    if any(framework_types.get(n) != t for n, t in ember_in + ember_out):
        print()
        _print_signature("Ember inputs", ember_in)
        _print_signature("Ember outputs", ember_out)
    count, nbytes = count_params(graph)
    print()
    print(f"parameters  {count:,} ({_bytes(nbytes)})")
    symbols = graph.symbols()
    if symbols:
        from .driver.compile import DEFAULT_BOUND

        planned = {s: graph.bounds.get(s, graph.hints.get(s, DEFAULT_BOUND)) for s in symbols}
        defaulted = [s for s in symbols if s not in graph.bounds and s not in graph.hints]
        print(f"symbols     {_describe_symbols(planned, graph.bounds, defaulted)}")
    flops = count_flops(graph, {s: 1 for s in symbols})
    note = f" with {', '.join(f'{s}=1' for s in symbols)}" if symbols else ""
    print(f"FLOPs       {_si(flops)}FLOPs ({flops:,}){note}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import ember
    from .benchmark import TimingStats, onnxruntime_available, onnxruntime_session, random_inputs, time_runs
    from .errors import ShapeError
    from .graph.stats import count_flops

    _require_file(args.model)
    print(f"model     {args.model}")
    print(f"threads   {args.threads}, {args.runs} runs after {args.warmup} warm-up runs", flush=True)
    shapes = dict(args.shape) or None
    sizes = dict(args.size)
    try:
        flops = count_flops(ember.from_onnx(args.model, shapes=shapes, bounds=dict(args.bound) or None),
                            {**{s: 1 for s in sizes}, **sizes})
    except ShapeError:
        flops = None
    module, seconds = _compile(args.model, args, shapes=shapes)  # by path, so the compile cache applies
    print(f"compiled  in {seconds:.2f} s, arena {_bytes(module.arena_bytes)}")
    module.num_threads = args.threads
    symbols = getattr(module, "symbols", {})
    if symbols:
        print(f"sizes     {', '.join(f'{n}={sizes.get(n, 1)}' for n in symbols)} "
              f"({_describe_symbols(symbols, module.limits)})")
    inputs = random_inputs(module, seed=args.seed, dims=sizes)

    engines = {"ember": lambda _: module.run(inputs)}
    if onnxruntime_available():
        sess = onnxruntime_session(args.model, args.threads)
        feed = {i.name: inputs[i.name] for i in sess.get_inputs() if i.name in inputs}
        engines["onnxruntime"] = lambda _: sess.run(None, feed)
    else:
        print("onnxruntime is not installed: timing Ember alone")
    times = time_runs(engines, None, max(args.warmup, 0), args.runs, max(args.block, 0))
    rows = [(name, TimingStats(tuple(t * 1e3 for t in times[name]))) for name in engines]

    print()
    print(f"{'':14}{'median':>10}{'p10':>10}{'p90':>10}   ms" + ("     GFLOP/s" if flops else ""))
    for name, st in rows:
        rate = f"{flops / st.median / 1e6:12.1f}" if flops else ""
        print(f"{name:14}{st.median:10.3f}{st.p10:10.3f}{st.p90:10.3f}     {rate}")
    if len(rows) == 2:
        ratio = rows[0][1].median / rows[1][1].median
        verdict = f"{1 / ratio:.2f}x faster" if ratio < 1 else f"{ratio:.2f}x slower"
        print(f"\nratio     ember / onnxruntime = {ratio:.2f} (median; Ember is {verdict})")
        ours = module.run(inputs)
        theirs = dict(zip((o.name for o in sess.get_outputs()), sess.run(None, feed)))
        diffs = [np.max(np.abs(np.asarray(ours[n], np.float64) - np.asarray(theirs[n], np.float64)))
                 for n in ours if n in theirs and np.size(ours[n])]
        if diffs:
            print(f"max |ember - onnxruntime| = {max(diffs):.3g}")
    if args.profile:
        from .tools import view
        from .tools.stages import trace

        bounds = dict(args.bound) or None
        tr = trace(args.model, args.target, args.opt_level, shapes=shapes, bounds=bounds, knobs=dict(args.knob) or None)
        print(f"\nper kernel ({args.runs} runs with profiling, {args.threads} threads)")
        print(view.profile(args.model, tr, args.runs, args.seed, shapes, bounds,
                           threads=args.threads, dims=sizes, tuning=getattr(args, "tuning", None)), end="")
    return 0


# ---- helpers --------------------------------------------------------------------------------

class _Progress:
    """The ``progress`` callable given to :func:`ember.compile`: prints each step on stderr with
    the time since the compile began."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, step: Any, *detail: Any, **more: Any) -> None:
        words = [str(step), *map(str, detail), *(f"{k}={v}" for k, v in more.items())]
        print(f"  [{time.perf_counter() - self.start:7.2f} s] {' '.join(words)}", file=sys.stderr, flush=True)


def _compile(model: Any, args: argparse.Namespace, shapes: dict | None):
    import ember

    progress = _Progress()
    print(f"compiling for {args.target} at -O{args.opt_level}", file=sys.stderr, flush=True)
    module = ember.compile(model, target=args.target, opt_level=args.opt_level,
                           shapes=shapes, bounds=dict(getattr(args, "bound", []) or []) or None,
                           dump=getattr(args, "dump", None), progress=progress,
                           knobs=dict(getattr(args, "knob", []) or []) or None,
                           disabled_passes=tuple(getattr(args, "disable_pass", []) or ()),
                           tuning=getattr(args, "tuning", None))
    return module, time.perf_counter() - progress.start


def _require_file(path: str) -> None:
    # what else the path may be (a directory, a FIFO, a device) the frontend tells, without reading it
    if not os.path.exists(path):
        raise ModelLoadError(f"no such model file: {path}")


def _load_onnx(path: str):
    """The model at ``path`` without its external data (read safely by the frontend, which
    ``from_onnx(path)`` reads the data through)."""
    from .frontend.onnx import load_model

    _require_file(path)
    return load_model(path)


def _load_npz(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise InputError(f"no such inputs file: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read '{path}' as an .npz file of arrays: {e}") from e


def _onnx_type(value_info) -> str:
    from .frontend.onnx import _ONNX_DTYPES
    from .frontend.onnx_proto import dtype_name

    t = value_info.type
    if not t.HasField("tensor_type"):
        return t.WhichOneof("value") or "?"
    tt = t.tensor_type
    dtype = _ONNX_DTYPES.get(tt.elem_type) or dtype_name(tt.elem_type).lower()
    if not tt.HasField("shape"):
        return f"{dtype}[?]"
    dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]
    return f"{dtype}[{', '.join(dims)}]"


def _onnx_histogram(model) -> dict[str, int]:
    hist: dict[str, int] = {}
    for n in model.graph.node:
        key = f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
        hist[key] = hist.get(key, 0) + 1
    return dict(sorted(hist.items(), key=lambda kv: (-kv[1], kv[0])))


def _print_signature(title: str, items: list[tuple[str, str]]) -> None:
    print(title)
    width = max((len(n) for n, _ in items), default=0)
    for name, t in items:
        print(f"  {name:{width}}  {t}")


def _print_histogram(title: str, hist: dict[str, int], columns: int = 3) -> None:
    print(title)
    cells = [f"{op:<22}{n:>5}" for op, n in hist.items()]
    for k in range(0, len(cells), columns):
        print("  " + "   ".join(cells[k:k + columns]))


def _preview(arr: np.ndarray, count: int = 5) -> str:
    flat = arr.reshape(-1)
    shown = np.array2string(flat[:count], precision=5, separator=", ", max_line_width=10**6)
    return shown[:-1] + ", ...]" if flat.size > count else shown


def _path_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _si(n: float) -> str:
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f} "


if __name__ == "__main__":
    sys.exit(main())

"""``ember view``: what the compiler made of a model, as text: the passes, the graph after one
of them, the fused groups and their kernels, a kernel's loop IR and C, and the per-kernel
profile (``ember.compile(..., profile=True)``, ``Module.profile()``) sorted by time."""

from __future__ import annotations

from typing import Any, Mapping

from ..graph.text import print_graph
from .stages import Kernel, Trace, host_target


def overview(tr: Trace) -> str:
    """The passes with their node counts, then the fused groups with their kernels."""
    lines = [f"model '{tr.graph.name}' for {tr.target.kind} at -O{tr.opt_level}", "", "passes (--after N or NAME)"]
    lines += [f"  {k:>3}  {name:24} {len(g.nodes):>6} nodes" for k, (name, g) in enumerate(tr.passes)]
    if tr.compiled is None:
        lines += ["", "the model has host steps (string ops): it is built per segment; its kernels are not listed"]
        return "\n".join(lines) + "\n"
    lines += ["", f"kernels ({len(tr.kernels)}; --kernel NAME or N)"]
    lines += [f"  {k.index:>3}  {k.name}\n         fuses {k.nodes}" for k in tr.kernels]
    return "\n".join(lines) + "\n"


def graph_after(tr: Trace, which: str) -> str:
    k, name, g = tr.after(which)
    return f"# the graph after pass #{k} {name}\n" + print_graph(g, elide_constants=True)


def kernel_text(k: Kernel) -> str:
    lines = [f"kernel #{k.index} {k.name}", f"fuses {k.nodes}", "", "loop IR:",
             k.loop_ir or "(a region: its bodies are kernels of their own)", "", "C:", k.c or "(none)"]
    return "\n".join(lines).rstrip() + "\n"


def profile_table(totals: Mapping[str, float], runs: int, kernels: list[Kernel]) -> str:
    """``Module.profile()``'s totals over ``runs`` runs as a table sorted by time: kernel, ms
    per run, share of the kernels' time, GFLOP/s (its nodes' operations, ``graph.stats``; "-"
    for a kernel of none, or of symbolic sizes), the nodes it fuses."""
    from ..driver.kernels import kernel_cost

    fused = {k.name: k.nodes for k in kernels}
    flops = {k.name: kernel_cost(k.group)[0] for k in kernels if k.group is not None}
    total = sum(totals.values()) or 1.0
    lines = [f"{'kernel':44} {'ms/run':>9} {'share':>7} {'GFLOP/s':>8}  fuses"]
    all_flops = 0
    for name, sec in sorted(totals.items(), key=lambda kv: -kv[1]):
        n = flops.get(name, 0)
        all_flops += n
        rate = f"{n * runs / sec / 1e9:8.1f}" if n and sec > 0 else f"{'-':>8}"
        lines.append(f"{name[:44]:44} {sec * 1e3 / runs:9.3f} {100 * sec / total:6.1f}% {rate}  {fused.get(name, '')}")
    rate = f"{all_flops * runs / total / 1e9:8.1f}" if all_flops else f"{'-':>8}"
    lines.append(f"{'total':44} {total * 1e3 / runs:9.3f} {100.0:6.1f}% {rate}")
    return "\n".join(lines) + "\n"


def measure(model: Any, tr: Trace, runs: int = 10, seed: int = 0, shapes=None, bounds=None, *,
            threads: int | None = None, dims: Mapping[str, int] | None = None, tuning=None) -> dict[str, float]:
    """Compile ``model`` with profiling (as ``ember.compile``, with the records of ``tuning``),
    run it ``runs`` times on seeded random inputs (symbolic sizes from ``dims``, else 1) on
    ``threads`` threads (None: the runtime's) and return each kernel's seconds over the
    ``runs`` runs (the target of ``tr`` carries its knobs)."""
    from ..benchmark import random_inputs
    from ..driver.compile import compile as ember_compile

    host_target(tr.target, "ember view --profile")
    module = ember_compile(model, tr.target, tr.opt_level, shapes=shapes, bounds=bounds, profile=True, tuning=tuning)
    if threads:
        module.num_threads = threads
    feeds = random_inputs(module, seed=seed, dims=dims or {})
    before = module.profile()
    for _ in range(runs):
        module.run(feeds)
    after = module.profile()
    return {n: t - before.get(n, 0.0) for n, t in after.items()}


def profile(model: Any, tr: Trace, runs: int = 10, seed: int = 0, shapes=None, bounds=None, **more) -> str:
    """:func:`measure` (``more``: its keyword options), as :func:`profile_table`."""
    return profile_table(measure(model, tr, runs, seed, shapes, bounds, **more), runs, tr.kernels)

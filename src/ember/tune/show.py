"""``ember tune --show KERNEL|WORKLOAD``: what a tuning records file replays for one kernel: its
chosen knobs, its schedule steps and, given the model, its bound on this machine
(:mod:`.roofline`) beside its measured times and the kernel rebuilt from them (its loop IR, as
``ember.compile(..., tuning=FILE)`` lowers it)."""

from __future__ import annotations

import os
from typing import Any, Mapping

from ..driver import records as rec
from ..driver.kernels import tuning_key
from ..errors import EmberError
from ..schedules.knobs import check_knobs
from ..target import resolve


def show(tuning: str | os.PathLike, what: str, model: str | os.PathLike | None = None, target: str = "cpu", *,
         opt_level: int = 3, shapes: Mapping[str, tuple] | None = None, bounds: Mapping[str, int] | None = None,
         knobs: Mapping[str, Any] | None = None) -> str:
    """The text ``ember tune --show`` prints: for each workload of ``target`` in ``tuning`` whose
    key starts with ``what`` or whose kernel is named ``what``, the record chosen for it (knobs,
    steps) and, with ``model``, the kernel rebuilt from them."""
    if not os.path.exists(tuning):
        raise EmberError(f"tuning records {os.fspath(tuning)!r} do not exist")
    tgt = resolve(target)
    if knobs:
        tgt = tgt.with_knobs(check_knobs(knobs))
    chosen = rec.best_records(tuning, tuning_key(tgt))
    found = {w: r for w, r in chosen.items() if r["kernel"] == what or (len(what) >= 6 and w.startswith(what))}
    if not found:
        names = sorted({r["kernel"] for r in chosen.values()})
        raise EmberError(f"tuning records {os.fspath(tuning)!r} hold no kernel or workload {what!r} for {target}"
                         + (f"; their kernels: {', '.join(names)}" if names else " (none for this target)"))
    rebuilt = _rebuild(model, tgt, opt_level, shapes, bounds, found) if model is not None else {}
    out = []
    for w, r in sorted(found.items()):
        lines = [f"workload {w} (kernel {r['kernel']}, target {tuning_key(tgt)})"]
        if r["defaults"]:
            lines.append("chosen: its defaults (no candidate measured clearly faster)")
        else:
            lines.append(f"chosen: {r['ratio']:.3f} of its defaults' time (median of the measurements beside them)")
        lines.append("knobs: " + (", ".join(f"{k}={v}" for k, v in sorted(r["knobs"].items())) or "(none)"))
        if r["steps"] is None:
            lines.append("steps: none recorded (replayed by its knobs)")
        else:
            lines.append(f"steps ({len(r['steps'])}):")
            lines += [f"  {st[0]}.{st[1]}({', '.join(map(str, st[2:]))})" for st in r["steps"]]
        if w in rebuilt:
            lines += _limit_lines(tgt, r, rebuilt[w][1])
            lines.append("")
            lines.append(rebuilt[w][0])
        elif model is not None:
            lines.append(f"(model {os.fspath(model)!r} has no kernel of this workload for {target})")
        else:
            lines.append("(give the model to rebuild the kernel's loop IR)")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _limit_lines(tgt, r: dict, workload) -> list[str]:
    """The kernel's bound on this machine (:mod:`.roofline`: the limits ``ember tune`` kept for
    the target, else measured now on every CPU) beside its measured times."""
    from . import roofline

    machine = roofline.known(tuning_key(tgt))
    if machine is None:
        machine = roofline.remember(tuning_key(tgt), roofline.measure_machine(os.cpu_count() or 1))
    lim = roofline.bound(workload.flops, workload.bytes, machine)
    if lim is None:
        return ["bound: none (symbolic sizes)"]
    out = [f"bound: {lim.ms:.4f} ms per call on {machine.threads} threads ({workload.flops / 1e6:.2f} MFLOP at "
           f"{machine.fma_gflops:.0f} GFLOP/s: {lim.flops_ms:.4f} ms; {workload.bytes / 1e6:.3f} MB at least, "
           f"{lim.bytes_ms:.4f} ms, bound by {lim.level})"]
    if r.get("default_ms"):
        best = r["default_ms"] * r["ratio"]
        out.append(f"times: defaults {r['default_ms']:.4f} ms, chosen {best:.4f} ms per call (as measured, on the "
                   f"tuner's thread count): {roofline.verdict(lim, best, bool(r['knobs']), workload.op)}")
    return out


def _rebuild(model, tgt, opt_level: int, shapes, bounds, found: dict) -> dict[str, tuple]:
    """Each of ``found``'s workloads that ``model`` has: its kernel's loop IR, lowered from the
    recorded steps (or its knobs where they do not replay), and its ``Workload``."""
    from ..driver.compile import generate, to_graph
    from ..tir.printer import print_func

    graph = to_graph(model, shapes, bounds)
    cm = generate(graph, tgt, opt_level, kernel_knobs={w: r["knobs"] for w, r in found.items()},
                  kernel_steps={w: r["steps"] for w, r in found.items() if r["steps"] is not None})
    by_name = {f.name: f for f in cm.kernels}
    out = {}
    for w in found:
        wl = (cm.workloads or {}).get(w)
        if wl is not None and wl.groups and wl.groups[0] in by_name:
            out[w] = (print_func(by_name[wl.groups[0]]), wl)
    return out

"""Where a compile's time goes: wall and CPU seconds per step.

``ember.compile`` records every step it runs in a :class:`Timings` (``Module.timings``;
``ember compile --timings`` prints its :meth:`~Timings.table`): the cache key, the frontend,
each graph pass, fusion, the memory plan, kernel lowering, each loop-IR pass, C generation, the
C compiles (how many files were compiled and how many came from the object cache, and the
wait for those compiled in the background while Python generated the kernels), the link,
sealing and loading.  A step's times are its own: a step run inside another (a loop-IR pass
inside kernel lowering) counts for itself only, so the rows add up to the whole compile (the
rest is the ``other`` row).  CPU seconds are the process's (every thread) and those of the
compiler processes it waited for, so on a loaded machine they say what the step cost when its
wall time says how long it waited (a background compile's CPU counts in the step that ran
when it ended).
"""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Iterator


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of the child processes it waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class StepTime:
    """One step's own time, over every time it ran (``count``), and what it says (``detail``)."""

    name: str
    wall: float = 0.0
    cpu: float = 0.0
    count: int = 0
    detail: str = ""


def timed(timings: "Timings | None", name: str) -> AbstractContextManager:
    """``timings.step(name)``, or a context that times nothing where no timings are kept."""
    return timings.step(name) if timings is not None else nullcontext()


class Timings:
    """The steps of one compile in the order they first ran (``steps``), with the whole
    compile's ``wall`` and ``cpu`` seconds once :meth:`finish` was called.  Steps are timed from
    one thread (the compile's)."""

    def __init__(self) -> None:
        self.steps: dict[str, StepTime] = {}
        self._open: list[list[float]] = []      # per open step: the wall and CPU seconds of steps inside it
        self._start = (time.perf_counter(), cpu_seconds())
        self.wall = 0.0
        self.cpu = 0.0

    @contextmanager
    def step(self, name: str) -> Iterator[StepTime]:
        """Times the ``with`` block as step ``name`` (added to its earlier runs)."""
        s = self.steps.get(name) or self.steps.setdefault(name, StepTime(name))
        w0, c0 = time.perf_counter(), cpu_seconds()
        self._open.append([0.0, 0.0])
        try:
            yield s
        finally:
            inner_w, inner_c = self._open.pop()
            w, c = time.perf_counter() - w0, cpu_seconds() - c0
            s.wall += max(0.0, w - inner_w)
            s.cpu += max(0.0, c - inner_c)
            s.count += 1
            if self._open:
                self._open[-1][0] += w
                self._open[-1][1] += c

    def note(self, name: str, detail: str) -> None:
        """Says ``detail`` of step ``name`` (how many files it compiled, ...)."""
        (self.steps.get(name) or self.steps.setdefault(name, StepTime(name))).detail = detail

    def finish(self) -> "Timings":
        """Sets the whole compile's times (from when this was made) and returns this."""
        self.wall = time.perf_counter() - self._start[0]
        self.cpu = cpu_seconds() - self._start[1]
        return self

    @property
    def other(self) -> StepTime:
        """What no step covers: the whole compile less every step's own time."""
        ran = [s for s in self.steps.values() if s.count]
        return StepTime("other", max(0.0, self.wall - sum(s.wall for s in ran)),
                        max(0.0, self.cpu - sum(s.cpu for s in ran)), 1)

    def as_dict(self) -> dict:
        """The steps as ``{name: {"wall": s, "cpu": s, "count": n, "detail": text}}`` with
        ``"other"`` and ``"total"`` last."""
        rows = [s for s in self.steps.values() if s.count] + [self.other, StepTime("total", self.wall, self.cpu, 1)]
        return {s.name: {"wall": s.wall, "cpu": s.cpu, "count": s.count, "detail": s.detail} for s in rows}

    def table(self) -> str:
        """The steps as a table: own wall and CPU seconds, how often each ran, what it says."""
        rows = self.as_dict()
        width = max(len(n) for n in rows)
        lines = [f"{'step':<{width}}  {'wall s':>7}  {'cpu s':>7}  {'runs':>5}"]
        for name, r in rows.items():
            if name == "total":
                lines.append("-" * len(lines[0]))
            detail = f"  {r['detail']}" if r["detail"] else ""
            lines.append(f"{name:<{width}}  {r['wall']:7.3f}  {r['cpu']:7.3f}  {r['count']:>5}{detail}")
        return "\n".join(lines) + "\n"

    def __repr__(self) -> str:
        return f"<Timings {len(self.steps)} steps, {self.wall:.2f} s wall, {self.cpu:.2f} s cpu>"

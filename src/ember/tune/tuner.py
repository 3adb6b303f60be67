"""``ember tune``: search the schedule knobs of every distinct kernel of a model within a budget
of wall time, and append what was measured to a records file.

1. The untuned model is compiled, run and profiled in a child process (:mod:`.measure`): that
   gives each distinct kernel (a *workload*, keyed by its canonical content and the target), the
   knobs its lowering asked with their defaults (its :class:`~.space.Space`), its time per call,
   and the outputs every candidate is compared with.
2. Each *trial* compiles the model once with one candidate set on every kernel still being
   searched (each kernel's own knobs, ``generate(kernel_knobs=...)``) and reads every kernel's
   time from the per-kernel profile, so one compile measures a candidate of every kernel.
   Candidates come from the cost model (:mod:`.costmodel`) where it is installed and trained,
   with some picked at random to keep exploring; without it, all at random.
3. A trial whose child crashes, hangs past its timeout, is refused by the compiler or gives
   other outputs than the untuned model is split in halves and each half tried again, down to
   the one candidate at fault, which is recorded with why and never tried again.
   The untuned model runs in the same child in turn with each candidate's, so every kernel's
   time is compared with its defaults' at the same moments of the machine; a candidate that
   would replace a kernel's defaults is measured again in a later trial before it does
   (``records.choose``: the lowest median ratio of those measured at least twice, 3% below 1
   and clear of the noise of the kernel's repeated measurements; one within the noise is
   measured again, up to ``records.MAX_CONFIRMATIONS`` times).
4. When the budget is spent (or every space searched), the best knobs of all kernels are
   compiled together once more, checked against the untuned outputs and timed beside the
   untuned model.

Trials go to a runner (:mod:`.runners`): this machine's child processes, one at a time, or the
nodes of a Ray cluster (:mod:`.ray_runner`), one trial per node at a time and as many in flight
as there are nodes.  Every measured candidate is appended to the records file as it comes, with the
schedule steps its kernel was lowered with (:mod:`ember.driver.records`).
"""

from __future__ import annotations

import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from ..driver import records as rec
from ..driver.records import frozen
from ..errors import EmberError
from ..schedules.knobs import check_knobs
from . import costmodel, roofline
from .runners import LocalRunner, Runner
from .space import Space

#: share of candidates picked at random even when the cost model is trained
EXPLORE = 0.25

#: candidates the cost model ranks per kernel and trial
POOL = 48

#: every this many trials, the defaults are timed again (a kernel's default time is the median
#: of those timings; candidates are judged by their ratio to the defaults timed in turn with them)
DEFAULTS_EVERY = 5


def default_records() -> Path:
    """Where ``ember tune`` writes its records unless told: under the cache directory."""
    from ..toolchain.cache import cache_dir

    return cache_dir() / "tuning" / "records.sqlite"


@dataclass
class KernelResult:
    """One kernel's search: its workload and space, the times measured of its defaults, and each
    candidate's times over its defaults' measured in turn with it (``measured``); :attr:`best`
    is the candidate the records' rule (``records.choose``) picks, else the defaults."""

    workload: dict
    space: Space
    defaults: list
    tried: set = field(default_factory=set)
    failed: int = 0
    measured: dict = field(default_factory=dict)     # frozen knobs -> [ratio to the defaults, ...]

    @property
    def default_ms(self) -> float:
        return rec.median(self.defaults)

    @property
    def chosen(self) -> tuple | None:
        return rec.choose(self.measured)

    @property
    def wins(self) -> bool:
        return self.chosen is not None

    @property
    def best(self) -> dict:
        c = self.chosen
        return dict(c) if c is not None else dict(self.space.default)

    @property
    def ratio(self) -> float:
        c = self.chosen
        return rec.median(self.measured[c]) if c is not None else 1.0

    @property
    def best_ms(self) -> float:
        return self.ratio * self.default_ms

    def to_confirm(self, busy=()) -> dict | None:
        """The fastest candidate that would replace the defaults (and the best so far) if it
        measured so again: measured fewer than ``CONFIRMATIONS`` times, or fewer than
        ``MAX_CONFIRMATIONS`` while its gain is within the kernel's noise (``records.bar``); not
        one being measured now (``busy``: frozen knobs); None if there is none."""
        bar = min(1.0 - rec.MIN_GAIN, self.ratio)
        # measured too few times, or within the noise of this kernel's measurements: again
        open_ = [(rec.median(r), k) for k, r in self.measured.items()
                 if k not in busy and rec.median(r) < bar and
                 (len(r) < rec.CONFIRMATIONS or
                  len(r) < rec.MAX_CONFIRMATIONS and rec.median(r) >= rec.bar(self.measured, len(r)))]
        return dict(min(open_)[1]) if open_ else None

    @property
    def gain(self) -> float:
        return 1.0 - self.ratio


@dataclass
class TuneResult:
    records: Path
    kernels: dict            # workload key -> KernelResult
    trials: int
    failures: int
    untuned_ms: float
    tuned_ms: float | None
    cost_model: bool
    seconds: float
    nodes: dict = field(default_factory=dict)     # machine -> trials it finished
    #: the measuring machine's limits (:mod:`.roofline`), None where they were not measured
    machine: roofline.Machine | None = None
    #: the final check's medians of each tuned run's time over the untuned run's after it, and
    #: of the tuned model's CPU time per run over the untuned one's (None: not measured)
    paired_ratio: float | None = None
    cpu_ratio: float | None = None

    def limit(self, k: KernelResult) -> roofline.Limit | None:
        """Kernel ``k``'s bound on the measuring machine (per call), None when unknown."""
        if self.machine is None:
            return None
        return roofline.bound(k.workload.get("flops", 0), k.workload.get("bytes", 0), self.machine)

    def table(self) -> str:
        """Per kernel, the largest share of the kernels' time first: the op, calls per run, the
        untuned and the best time per call, the candidates measured, its bound per call (what
        no schedule beats, :mod:`.roofline`), the best time's share of it, the kernel's share of
        the untuned kernels' time, the verdict, the best knobs; then where the time goes."""
        total = sum(k.default_ms * len(k.workload["groups"]) for k in self.kernels.values()) or 1.0
        lines = [f"{'kernel':28} {'op':14} {'calls':>5} {'untuned ms':>10} {'best ms':>9} {'tried':>5} "
                 f"{'bound ms':>9} {'% bound':>7} {'share':>6}  verdict; knobs"]
        order = sorted(self.kernels.values(), key=lambda k: -k.default_ms * len(k.workload["groups"]))
        for k in order:
            w = k.workload
            lim = self.limit(k)
            knobs = ", ".join(f"{n}={v}" for n, v in k.best.items()) if k.wins else "(defaults)"
            bound_ms = f"{lim.ms:9.4f}" if lim is not None else f"{'-':>9}"
            eff = f"{100 * lim.ms / k.best_ms:6.0f}%" if lim is not None and k.best_ms > 0 else f"{'-':>7}"
            why = roofline.verdict(lim, k.best_ms, k.space.size > 1, w["op"]) if self.machine is not None else \
                ("searched" if k.space.size > 1 else "not searched: no knobs")
            lines.append(f"{w['name'][:28]:28} {w['op'][:14]:14} {len(w['groups']):5d} {k.default_ms:10.4f} "
                         f"{k.best_ms:9.4f} {len(k.measured) + k.failed:5d} {bound_ms} {eff} "
                         f"{100 * k.default_ms * len(w['groups']) / total:5.1f}%  {why}; {knobs}")
        return "\n".join(lines + self.summary())

    def summary(self) -> list[str]:
        """Where the kernels' time goes: searched or without knobs (by kind), and how far the
        kernels are from their bounds together."""
        by: dict[str, float] = {}
        count: Counter = Counter()
        total = bound_total = best_total = 0.0
        for k in self.kernels.values():
            calls = len(k.workload["groups"])
            what = "with knobs searched" if k.space.size > 1 else roofline.kind_of(k.workload["op"])
            by[what] = by.get(what, 0.0) + k.default_ms * calls
            count[what] += 1
            total += k.default_ms * calls
            best_total += k.best_ms * calls
            lim = self.limit(k)
            if lim is not None:
                bound_total += lim.ms * calls
        if total <= 0:
            return []
        parts = [f"{what} {100 * ms / total:.1f}% ({count[what]} kernels)" for what, ms in
                 sorted(by.items(), key=lambda kv: (kv[0] != "with knobs searched", -kv[1]))]
        out = ["", f"kernel time {total:.3f} ms per run (untuned): " + "; ".join(parts)]
        if self.untuned_ms > total:
            out.append(f"the kernels' time is {100 * total / self.untuned_ms:.0f}% of the untuned model's "
                       f"{self.untuned_ms:.3f} ms per run (the rest: between and around kernels, the thread "
                       f"pool's hand-offs and the runtime; on a busy machine, waits for a core)")
        unsearched = total - by.get("with knobs searched", 0.0)
        if unsearched > 0:
            out.append(f"not searched (no knobs): {100 * unsearched / total:.1f}% of the kernel time")
        if bound_total > 0:
            out.append(f"all kernels at their bounds: {bound_total:.3f} ms per run; the best times: {best_total:.3f} ms, "
                       f"together at {100 * bound_total / best_total:.0f}% of their bounds: at most "
                       f"{best_total / bound_total:.2f}x left to any schedule")
        if self.machine is not None:
            m = self.machine
            out.append(f"machine ({m.threads} threads): FMA peak {m.fma_gflops:.1f} GFLOP/s; copy {m.l1_gbs:.0f} GB/s "
                       f"in L1, {m.l2_gbs:.0f} GB/s in L2, "
                       + (f"{m.llc_gbs:.0f} GB/s in L3, " if m.llc_gbs > 0 else "")
                       + f"{m.memory_gbs:.1f} GB/s from memory")
        return out


class Tuner:
    """Tunes ``model`` (a path to an ONNX model) for ``target`` within ``budget_s`` seconds.

    ``runner`` is where the trials are measured (:mod:`.runners`; default: a
    :class:`~.runners.LocalRunner` running ``child``, the command that measures a candidate,
    default ``python -m ember.tune.measure``); ``trial_timeout_s`` how long one may take before
    it counts as hung (default: four times the untuned model's measurement, at least 30 s);
    ``runs`` the timed runs per candidate; ``final_rounds`` how often the tuned and the untuned
    model are timed at the end; ``max_trials`` ends the search after that many trials even with
    budget left; ``say`` receives the progress lines (default: stderr)."""

    def __init__(self, model: str | os.PathLike, target: str = "cpu", *, budget_s: float = 600.0,
                 records: str | os.PathLike | None = None, opt_level: int = 3,
                 shapes: Mapping[str, tuple] | None = None, bounds: Mapping[str, int] | None = None,
                 knobs: Mapping[str, Any] | None = None, runs: int = 10, threads: int | None = None,
                 seed: int = 0, rtol: float = 1e-3, atol: float = 1e-4, child: list[str] | None = None,
                 trial_timeout_s: float | None = None, use_cost_model: bool = True, final_rounds: int = 2,
                 max_trials: int | None = None, runner: Runner | None = None,
                 say: Callable[[str], None] | None = None):
        if not os.path.isfile(model):
            raise EmberError(f"ember tune needs a model file; {os.fspath(model)!r} is not one")
        self.model = os.path.abspath(model)
        if runner is not None and child:
            raise EmberError("ember tune: give the measuring command to the runner, not with runner= as well")
        self.runner = runner or LocalRunner(child)
        self.runner.check(target)
        if knobs:
            check_knobs(knobs)
        self.target_spec, self.knobs = target, dict(knobs or {})
        self.budget_s = float(budget_s)
        self.records = Path(records) if records is not None else default_records()
        self.base = {"model": self.model, "target": target, "opt_level": opt_level, "knobs": self.knobs,
                     "shapes": {k: list(v) for k, v in (shapes or {}).items()} or None,
                     "bounds": dict(bounds or {}) or None, "runs": runs, "threads": threads,
                     "seed": seed, "rtol": rtol, "atol": atol}
        self.trial_timeout_s = trial_timeout_s
        self.final_rounds = max(1, int(final_rounds))
        self.max_trials = max_trials
        self.rng = random.Random(seed)
        self.model_cost = costmodel.load(seed) if use_cost_model else None
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.trials = 0
        self.failures = 0
        self.nodes: Counter = Counter()
        self.machine: roofline.Machine | None = None

    # ---- trials -----------------------------------------------------------------------------

    def _submit(self, kernel_knobs: dict, timeout: float, **extra) -> int:
        """Hand one trial to the runner; returns its ticket."""
        self.trials += 1
        return self.runner.submit({**self.base, "kernel_knobs": kernel_knobs, **extra}, timeout)

    def _wait(self) -> tuple[int, str, Any]:
        """The next finished trial: (ticket, "ok", result) or (ticket, status, why) with status
        crash, timeout, wrong, error or lost."""
        done = self.runner.wait()
        if done.status != "lost":
            self.nodes[done.node] += 1
        if done.status == "ok":
            # what a trial takes, to plan the rest of the budget: the first (every kernel compiled)
            # and then a running average (most kernels' objects come from the cache)
            dt = done.result.get("wall_s", 0.0) - done.result.get("machine_s", 0.0)    # not what a trial takes
            self.trial_s = dt if not hasattr(self, "trial_s") else 0.5 * (self.trial_s + dt)
        return done.ticket, done.status, done.result

    def _measure(self, kernel_knobs: dict, timeout: float, **extra) -> tuple[str, Any]:
        """One trial, waited for (nothing else in flight): ("ok", result) or (status, why)."""
        while True:
            ticket = self._submit(kernel_knobs, timeout, **extra)
            got, status, res = self._wait()
            assert got == ticket
            if status != "lost":
                return status, res
            self.say(f"ember tune: a trial was lost ({res}); trying it again")

    # ---- search ------------------------------------------------------------------------------

    def run(self) -> TuneResult:
        t0 = time.monotonic()
        self.deadline = t0 + self.budget_s
        try:
            self.target_key = self.runner.start(self.base)
            return self._run(t0)
        finally:
            self.runner.close()

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _run(self, t0: float) -> TuneResult:
        self.say(f"ember tune: {os.path.basename(self.model)} for {self.target_spec}, budget {self.budget_s:.0f} s, "
                 f"records {self.records}; measuring on {self.runner.describe()}")
        if self.model_cost is None:
            self.say("ember tune: " + ("scikit-learn is not installed (pip install ember[tune]): searching at random"
                                       if costmodel.load() is None else "cost model off: searching at random"))
        # the untuned model: its outputs, and its library (kept by the runner on the machine that
        # measured it, built again by the first trial that needs it on any other), timed in turn
        # with every candidate
        status, res = self._measure({}, max(1.0, self._left()), save_outputs=True, keep_untuned=True, machine=True)
        if status != "ok":
            raise EmberError(f"ember tune: the untuned model failed to compile or run ({status}: {res})")
        if isinstance(res.get("machine"), dict):
            self.machine = roofline.remember(self.target_key, roofline.Machine.from_dict(res["machine"]))
        elif res.get("machine_error"):
            self.say(f"ember tune: the machine's limits were not measured ({res['machine_error']})")
        ref = res["outputs"]
        timeout = self.trial_timeout_s or max(30.0, 4 * self.trial_s)
        untuned_ms = res["total_ms"]
        kernels: dict[str, KernelResult] = {}
        new = []
        for key, w in res["workloads"].items():
            sp = Space(w["knobs"])
            ms = res["ms"][key]
            kernels[key] = KernelResult(w, sp, [ms], {frozen(sp.default)})
            if sp.axes:
                new.append(rec.record(key, self.target_key, w["name"], sp.default, "ok", ms, defaults=True,
                                      steps=w.get("steps")))
        rec.append_many(self.records, new)
        searching = [k for k, kr in kernels.items() if kr.space.size > 1]
        self.say(f"ember tune: untuned {untuned_ms:.3f} ms per run; {len(kernels)} distinct kernels, "
                 f"{len(searching)} with knobs to search; the first compile and run took {self.trial_s:.1f} s")
        pending: list[dict] = []        # batches to try again, smaller, after a failure
        inflight: dict[int, dict] = {}  # ticket -> its batch ({}: the defaults timed again)
        first, stop = self.trials, False
        while True:
            # as many trials in flight as the runner measures at once
            while not stop and len(inflight) < self.runner.slots:
                if self._left() <= (2 * self.final_rounds + 1.5) * self.trial_s or \
                        (self.max_trials is not None and self.trials - first >= self.max_trials):
                    stop = True
                    break
                final_reserve = (2 * self.final_rounds + 0.5) * self.trial_s
                if not pending and self.trials % DEFAULTS_EVERY == 0:
                    inflight[self._submit({}, min(timeout, self._left() - final_reserve))] = {}
                    continue
                busy = {(key, frozen(knobs)) for b in inflight.values() for key, knobs in b.items()}
                batch = pending.pop() if pending else self._next_batch(kernels, searching, busy)
                if not batch:
                    if not inflight:
                        self.say("ember tune: every kernel's space is searched")
                        stop = True
                    break
                inflight[self._submit(batch, min(timeout, self._left() - final_reserve), paired=True)] = batch
            if not inflight:
                break
            ticket, status, res = self._wait()
            batch = inflight.pop(ticket)
            final_reserve = (2 * self.final_rounds + 0.5) * self.trial_s
            if status == "lost":
                self.say(f"ember tune: a trial was lost ({res}); trying it again")
                if batch:
                    pending.append(batch)
                continue
            if status == "timeout" and self._left() <= final_reserve + 1:
                stop = True             # the budget ran out, not the candidate's fault
                continue
            if not batch:
                if status == "ok":
                    self._defaults_again(kernels, res)
                continue
            if status == "ok":
                self._took(kernels, batch, res)
            elif len(batch) > 1:
                items = list(batch.items())
                half = len(items) // 2
                pending += [dict(items[half:]), dict(items[:half])]
            else:
                (key, knobs), = batch.items()
                self.failures += 1
                kernels[key].failed += 1
                rec.append(self.records, key, self.target_key, kernels[key].workload["name"], knobs, status,
                           None, str(res))
                self.say(f"  {kernels[key].workload['name']}: candidate {_knobs_text(knobs)} skipped ({status}: {res})")
            self._progress(t0, kernels, untuned_ms)
        tuned_ms = self._final(kernels, ref, untuned_ms)
        untuned_ms = getattr(self, "untuned_final_ms", untuned_ms)
        return TuneResult(self.records, kernels, self.trials, self.failures, untuned_ms, tuned_ms,
                          self.model_cost is not None, time.monotonic() - t0, dict(self.nodes), self.machine,
                          getattr(self, "final_ratio", None), getattr(self, "final_cpu_ratio", None))

    def _next_batch(self, kernels: dict, searching: list[str], busy: set = frozenset()) -> dict:
        """A candidate for every kernel searched: one to measure again, else a new one; none that
        is in flight (``busy``: (workload, frozen knobs))."""
        batch = {}
        for key in searching:
            kr = kernels[key]
            again = kr.to_confirm({k for w, k in busy if w == key})
            if again is not None:
                batch[key] = again
                continue
            pool = kr.space.sample(self.rng, POOL, kr.tried)
            if not pool:
                continue
            pick = pool[0]
            if self.model_cost is not None and self.model_cost.ready and self.rng.random() > EXPLORE:
                pred = self.model_cost.predict(kr.workload, kr.space.default, pool)
                pick = pool[min(range(len(pool)), key=pred.__getitem__)]
            kr.tried.add(frozen(pick))
            batch[key] = pick
        return batch

    def _took(self, kernels: dict, batch: dict, res: dict) -> None:
        new = []
        for key, knobs in batch.items():
            kr = kernels[key]
            ms, base = res["ms"].get(key), res["paired_ms"].get(key)
            if ms is None or not base:   # the candidate changed what the kernel is: not comparable
                continue
            new.append(rec.record(key, self.target_key, kr.workload["name"], knobs, "ok", ms, base_ms=base,
                                  steps=_steps(res, key)))
            if self.model_cost is not None:
                self.model_cost.add(kr.workload, kr.space.default, knobs, ms / base)
            was = kr.chosen
            kr.measured.setdefault(frozen(knobs), []).append(ms / base)
            if kr.chosen is not None and kr.chosen != was:
                self.say(f"  {kr.workload['name']} ({kr.workload['op']}, x{len(kr.workload['groups'])}): "
                         f"{kr.default_ms:.4f} -> {kr.best_ms:.4f} ms ({-100 * kr.gain:+.1f}%) with {_knobs_text(kr.best)}")
        rec.append_many(self.records, new)
        if self.model_cost is not None:
            self.model_cost.fit()

    def _defaults_again(self, kernels: dict, res: dict) -> None:
        new = []
        for key, kr in kernels.items():
            ms = res["ms"].get(key)
            if ms is None:
                continue
            if kr.space.axes:
                new.append(rec.record(key, self.target_key, kr.workload["name"], kr.space.default, "ok", ms,
                                      defaults=True, steps=_steps(res, key)))
            kr.defaults.append(ms)
        rec.append_many(self.records, new)

    def _progress(self, t0: float, kernels: dict, untuned_ms: float) -> None:
        spent = time.monotonic() - t0
        done = min(1.0, spent / self.budget_s)
        bar = "#" * int(20 * done) + "-" * (20 - int(20 * done))
        saved = sum((k.default_ms - k.best_ms) * len(k.workload["groups"]) for k in kernels.values())
        better = sum(k.wins for k in kernels.values())
        self.say(f"ember tune: [{bar}] {spent:5.0f}/{self.budget_s:.0f} s  trial {self.trials}, "
                 f"{self.failures} skipped; {better} kernels faster, about {untuned_ms - saved:.3f} ms per run "
                 f"(untuned {untuned_ms:.3f})")

    def _final(self, kernels: dict, ref: bytes, untuned_ms: float) -> float | None:
        """The best knobs of every kernel together: checked against the untuned outputs and timed
        beside the untuned model (``final_rounds`` rounds each, the lowest median); None if it failed."""
        best = {k: kr.best for k, kr in kernels.items() if kr.wins}
        if not best:
            self.say("ember tune: no kernel got faster than its defaults")
            return untuned_ms
        timeout = max(60.0, 4 * self.trial_s)
        tuned, untuned, ratios, cpu = [], [], [], []
        for _ in range(self.final_rounds):
            status, res = self._measure(best, timeout, reference_npz=ref, paired=True)
            if status != "ok":
                self.say(f"ember tune: the tuned model failed its final check ({status}: {res})")
                return None
            tuned.append(res["total_ms"])
            untuned.append(res["paired_total_ms"])
            if "paired_ratio" in res:
                ratios.append(res["paired_ratio"])
            if res.get("paired_cpu_ms"):
                cpu.append(res["cpu_ms"] / res["paired_cpu_ms"])
        self.untuned_final_ms = min(untuned)
        # the lowest medians can come from different moments of a busy machine; each run over the
        # untuned run after it, and the CPU times, are less disturbed: said beside them
        self.final_ratio = rec.median(ratios) if ratios else None
        self.final_cpu_ratio = rec.median(cpu) if cpu else None
        extra = "".join([f"; each run over the untuned run after it: {self.final_ratio:.3f} (median)"
                         if self.final_ratio else "",
                         f"; CPU time {self.final_cpu_ratio:.3f} of the untuned model's" if self.final_cpu_ratio else ""])
        self.say(f"ember tune: tuned {min(tuned):.3f} ms per run, untuned {self.untuned_final_ms:.3f} ms "
                 f"(run in turn; outputs match the untuned model's){extra}")
        return min(tuned)


def _steps(res: dict, key: str) -> list | None:
    """The schedule steps a measurement's kernel of workload ``key`` was lowered with."""
    return (res.get("workloads") or {}).get(key, {}).get("steps")


def _knobs_text(knobs: dict) -> str:
    return ", ".join(f"{n}={v}" for n, v in knobs.items()) or "(no knobs)"


def tune(model: str | os.PathLike, target: str = "cpu", *, budget_s: float = 600.0,
         records: str | os.PathLike | None = None, **options) -> TuneResult:
    """Tune ``model`` for ``target`` within ``budget_s`` seconds (see :class:`Tuner`); the records
    go to ``records`` (default: :func:`default_records`)."""
    return Tuner(model, target, budget_s=budget_s, records=records, **options).run()

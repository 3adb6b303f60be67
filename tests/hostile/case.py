"""What a hostile case is, what it expects, and the registry of all of them."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

#: What a case expects of Ember.
REFUSE = "must be refused"      # invalid: an EmberError (at compile, load or run time)
RUN = "must run"                # valid: runs and agrees with the reference
EITHER = "either is fine"       # runs and agrees with the reference, or is refused with an EmberError

KINDS = ("bytes", "structure", "types", "external", "bombs", "inputs", "artifacts")
KIND_TITLES = {
    "bytes": "byte mutations of valid models",
    "structure": "structural damage",
    "types": "type damage",
    "external": "external-data tricks",
    "bombs": "resource bombs",
    "inputs": "bad run-time inputs",
    "artifacts": "damaged artifacts",
}


@dataclass
class Ctx:
    """Where a case runs: its own empty folder, and the run's shared folder of prepared
    artifacts (``prepare.py``)."""

    dir: Path
    run_dir: Path

    def artifact(self, name: str) -> Path:
        return self.run_dir / "prepared" / name


@dataclass
class Ran:
    """What a case that ran produced.  ``expected`` (output name -> array) is the reference
    when the case knows it; ``oracle_model`` names an ONNX file whose onnxruntime outputs on
    ``feeds`` are the reference otherwise."""

    outputs: dict
    expected: dict | None = None
    oracle_model: str | None = None
    feeds: dict | None = None


class Skip(Exception):
    """Raised by a case's setup when this machine cannot express it (reported, not judged)."""


@dataclass
class Case:
    """One hostile case.  ``setup(ctx)`` builds what the case needs (the harness's work: an
    exception there is a bug of the suite, reported as such); ``act(ctx, state)`` does the one
    thing asked of Ember and returns a :class:`Ran` when Ember did not refuse."""

    name: str                   # "<kind>/<slug>", unique
    expect: str
    act: Callable[[Ctx, Any], Ran]
    setup: Callable[[Ctx], Any] = field(default=lambda ctx: None)
    timeout: float = 20.0       # seconds of wall clock before it counts as a hang
    #: The same thing asked of onnxruntime, for the comparison (``--ort``); None where there is
    #: no equivalent (Ember's artifacts).
    ort: Callable[[Ctx, Any], Ran] | None = None
    #: A failure Ember has today (what is wrong), reported as a known failure (a strict xfail
    #: under pytest) instead of failing the run; when the case passes, the mark must go.
    known: str = ""

    @property
    def kind(self) -> str:
        return self.name.split("/", 1)[0]


def timeout_scale() -> float:
    return float(os.environ.get("HOSTILE_TIMEOUT_SCALE", "1"))


_registry: dict[str, Case] | None = None


def all_cases() -> dict[str, Case]:
    """Every case, by name, in a stable order (kind by kind)."""
    global _registry
    if _registry is None:
        from .kinds import generators

        reg: dict[str, Case] = {}
        for gen in generators():
            for c in gen():
                if c.name in reg:
                    raise ValueError(f"two hostile cases are named {c.name!r}")
                if c.kind not in KINDS or c.expect not in (REFUSE, RUN, EITHER):
                    raise ValueError(f"hostile case {c.name!r}: bad kind or expectation")
                reg[c.name] = c
        _registry = reg
    return _registry


_extra: dict[str, Case] = {}


def register_extra(case: Case) -> Case:
    """A case outside the seven kinds' lists (the suite's own after-run check)."""
    _extra[case.name] = case
    return case


def lookup(name: str) -> Case:
    if name not in _extra:
        from . import suite  # noqa: F401  (registers the suite's own checks)
    return _extra[name] if name in _extra else all_cases()[name]


def select(kinds=None, patterns=None) -> list[Case]:
    """The cases of the given kinds whose names contain any of ``patterns`` (all when None)."""
    out = []
    for c in all_cases().values():
        if kinds and c.kind not in kinds:
            continue
        if patterns and not any(p in c.name for p in patterns):
            continue
        out.append(c)
    return out

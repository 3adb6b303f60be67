"""What the cross-target tests share: why a target's artifacts cannot run here (a tool is
missing: the tests skip with the reason), the file name to save an artifact under, and running one
under its emulator (:mod:`ember.toolchain.emulator`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ember.toolchain.emulator import missing as _missing, target_machine

ROOT = Path(__file__).resolve().parents[2]


def zig_missing() -> str:
    try:
        import ziglang  # noqa: F401
    except ImportError:
        return "the cross compiler is missing: pip install ziglang (make cross-deps)"
    return ""


def missing(target) -> str:
    """Why ``target``'s artifacts cannot be built and run here ("" if they can)."""
    return zig_missing() or _missing(target_machine(target))


def artifact_name(stem: str, target) -> str:
    return f"{stem}-{target.spec.replace('+', '_').replace(' ', '_')}{'.wasm' if target.arch == 'wasm32' else '.so'}"


def run_artifact(art, feeds=None) -> list[np.ndarray]:
    """The outputs of the cross artifact ``art`` run under its emulator, in order."""
    return list(art.run(feeds).values())

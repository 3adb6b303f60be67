"""A cross-compiled artifact: built for another target, so this machine cannot load it.

:func:`ember.compile` for a cross target (``aarch64-linux``, ``wasm32``, ...) returns a
:class:`CrossArtifact`: the sealed artifact in the cache, its target and the model's metadata,
with ``save``, and ``run``, which runs it here under an emulator
(:mod:`ember.toolchain.emulator`): a Linux target's shared library with ``runners/run_model.c``
built by the same cross compiler under qemu user mode, a ``wasm32`` module with
``runners/run_model.mjs`` under Node.js (see docs/design.md, "Targets").
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..errors import ArtifactError
from .artifact import TRAILER_SIZE, artifact_machine, verify_artifact

#: how the metadata string of an artifact begins (``codegen.c.module_source``: compact JSON)
_META_START = b'{"format":'


def read_metadata(path: Path) -> dict:
    """The model's metadata, read from the artifact's bytes (the JSON string that
    ``ember_metadata()`` returns, stored verbatim and NUL-terminated in its read-only data)."""
    data = path.read_bytes()[:-TRAILER_SIZE]
    at = data.find(_META_START)
    while at >= 0:
        end = data.find(b"\0", at)
        try:
            meta = json.loads(data[at:end].decode("utf-8"))
            if isinstance(meta, dict) and "inputs" in meta and "outputs" in meta:
                return meta
        except (UnicodeDecodeError, ValueError):
            pass
        at = data.find(_META_START, at + 1)
    raise ArtifactError(f"'{path}' holds no model metadata")


class CrossArtifact:
    """A sealed artifact for another target (not loadable here): ``path``, ``target`` (its
    spec, e.g. ``"aarch64-linux -mcpu=cortex-a76"``), ``machine``, ``metadata``, ``save``."""

    def __init__(self, path: str | os.PathLike, target: str):
        self.path = Path(path)
        verify_artifact(self.path)
        self.target = target
        self.machine = artifact_machine(self.path)
        self.metadata = read_metadata(self.path)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", self.path.stem))

    @property
    def arena_bytes(self) -> int:
        return int(self.metadata.get("arena_bytes", 0))

    @property
    def input_names(self) -> list[str]:
        return [x["name"] for x in self.metadata["inputs"]]

    @property
    def output_names(self) -> list[str]:
        return [x["name"] for x in self.metadata["outputs"]]

    def save(self, path: str | os.PathLike) -> Path:
        """Copies the artifact to ``path`` (a file, or a folder to put it in) atomically."""
        from .module import replacing

        dest = Path(path)
        if dest.is_dir():
            dest = dest / self.path.name
        with replacing(dest) as tmp:
            shutil.copyfile(self.path, tmp)
            os.chmod(tmp, 0o644)
        return dest

    def run(self, feeds=None, *, threads: int | None = None, iters: int = 1):
        """Runs the artifact here under its emulator (qemu user mode, Node.js: see
        :mod:`ember.toolchain.emulator`) on ``feeds`` (by input name; None: the deterministic
        pattern of :func:`ember.runtime.pattern_array`); returns the outputs by name.  ``.last``
        keeps the latency and what the runner printed."""
        from ..toolchain.emulator import run

        self.last = run(self, feeds, threads=threads, iters=iters)
        return self.last.outputs

    __call__ = run

    def __repr__(self) -> str:
        return f"CrossArtifact('{self.name}', target='{self.target}', path='{self.path}')"

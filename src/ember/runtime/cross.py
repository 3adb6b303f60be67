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
    data = Path(path).read_bytes()[:-TRAILER_SIZE]
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


def check_metadata(meta: dict, machine: str, where: str):
    """The target the metadata ``meta`` of a cross artifact (code for ``machine``, from its
    header) names, after checking what the artifact says it is: the metadata format, a known
    target whose triple and machine are those of the code, the required processor features,
    and a well-formed signature.  ArtifactError naming what does not hold."""
    from ..errors import EmberError
    from ..target import resolve
    from ..toolchain.emulator import target_machine
    from .module import METADATA_FORMAT, _boundary_dtype

    def bad(why: str) -> ArtifactError:
        return ArtifactError(f"{where} has malformed metadata: {why}")

    if meta.get("format") != METADATA_FORMAT:
        raise ArtifactError(f"{where} has metadata format {meta.get('format')!r}; this Ember reads format "
                            f"{METADATA_FORMAT}")
    spec = meta.get("target")
    try:
        target = resolve(str(spec))
    except EmberError:
        raise bad(f"it names the target {spec!r}, which this Ember does not know") from None
    if not target.cross:
        raise bad(f"it names the target {spec!r}, not a cross target")
    if meta.get("triple") != target.triple or target_machine(target) != machine:
        raise ArtifactError(f"{where} says it is for {spec} ({meta.get('triple')}) but its code is for "
                            f"{machine or 'no known machine'}: it was altered or is not an Ember artifact")
    features = meta.get("features", sorted(target.features))
    if not isinstance(features, list) or set(features) != set(target.features):
        raise bad(f"its required features {features!r} are not those of {spec} ({sorted(target.features)})")
    for kind in ("inputs", "outputs"):
        entries = meta.get(kind)
        if not isinstance(entries, list):
            raise bad(f"no '{kind}' list")
        for e in entries:
            if not (isinstance(e, dict) and isinstance(e.get("name"), str) and isinstance(e.get("shape"), list)
                    and all(isinstance(d, (int, str)) and not isinstance(d, bool) for d in e["shape"])):
                raise bad(f"an entry of '{kind}' lacks a name or a shape")
            try:
                _boundary_dtype(str(e.get("dtype")))
            except (TypeError, ValueError):
                raise bad(f"{kind[:-1]} '{e['name']}' has the unknown dtype {e.get('dtype')!r}") from None
    return target


def check_target(artifact_target, wanted: str, where: str) -> None:
    """ArtifactError unless an artifact built for ``artifact_target`` runs on the target spec
    ``wanted``: the same architecture, and every processor feature it requires."""
    from ..target import resolve
    from ..toolchain.emulator import target_machine

    want = resolve(wanted)
    if want.cross and target_machine(want) == target_machine(artifact_target):
        lacking = sorted(artifact_target.features - want.features)
        if not lacking:
            return
        raise ArtifactError(f"{where} is compiled for {artifact_target.spec}, which requires "
                            f"{', '.join(lacking)}; {want.spec} lacks {'it' if len(lacking) == 1 else 'them'}")
    raise ArtifactError(f"{where} is an artifact for {artifact_target.spec} ({artifact_target.triple}), "
                        f"not for {want.spec}")


class CrossArtifact:
    """A sealed artifact for another target (not loadable here): ``path``, ``target`` (its
    spec, e.g. ``"aarch64-linux -mcpu=cortex-a76"``), ``machine``, ``metadata``, ``save``.
    Opening one checks what it is (:func:`check_metadata`); with ``target``, that it is for
    that target (:func:`check_target`)."""

    def __init__(self, path: str | os.PathLike, target: str | None = None):
        self.path = Path(path)
        verify_artifact(self.path)
        self.machine = artifact_machine(self.path)
        self.metadata = read_metadata(self.path)
        built = check_metadata(self.metadata, self.machine, f"'{self.path}'")
        if target:
            check_target(built, target, f"'{self.path}'")
        self.target = built.spec

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

    def run(self, feeds=None, *, threads: int | None = None, iters: int = 1, cpu: str | None = None):
        """Runs the artifact here under its emulator (qemu user mode, Node.js: see
        :mod:`ember.toolchain.emulator`) on ``feeds`` (by input name; None: the deterministic
        pattern of :func:`ember.runtime.pattern_array`); returns the outputs by name.  ``.last``
        keeps the latency and what the runner printed.  ``cpu``: the processor qemu emulates
        (``cortex-a72``; default: one with every extension)."""
        from ..toolchain.emulator import run

        self.last = run(self, feeds, threads=threads, iters=iters, cpu=cpu)
        return self.last.outputs

    __call__ = run

    def __repr__(self) -> str:
        return f"CrossArtifact('{self.name}', target='{self.target}', path='{self.path}')"

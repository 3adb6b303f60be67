"""The Metal bundle: the folder ``ember compile --target metal`` writes for a Metal host program.

Ember cannot run Metal (it needs an Apple GPU and the Metal framework); what it makes is what a
host program on macOS or iOS needs to run the model, in one folder:

- ``model.metal``: the kernels in Metal Shading Language, one ``kernel`` function each (compile
  it with fast math off: ``MTLCompileOptions.fastMathEnabled = NO``);
- ``constants.bin``: the model's constants, one blob;
- ``launch.json``: the launch plan.  ``inputs``/``outputs``: name, dtype and shape of each;
  ``arena_bytes``: one scratch buffer for the intermediate values (the static memory plan);
  ``kernels``: in graph order, each with ``threadgroups`` (threadgroups per grid, x y z),
  ``threads`` (threads per threadgroup) and ``buffers``, the buffer bound at ``[[buffer(i)]]`` for
  each i: ``{"input": k}``, ``{"output": k}``, ``{"arena": offset, "bytes": n}``, ``{"constants":
  offset, "bytes": n}`` or ``{"flag": 0}`` (a 4-byte int the host zeroes before the run: a kernel
  sets it to 1 when a gather or slice index is out of range, and the outputs are then invalid);
  ``copies``: outputs no kernel writes, each ``[k, buffer]`` (copy that buffer to output k after
  the run).  Offsets are multiples of 256 bytes.  A host runs the kernels in order on one command
  queue (``dispatchThreadgroups:threadsPerThreadgroup:``) and reads the outputs at the end.
  ``sha256`` holds the digests of the other two files; ``ember`` the artifact's metadata.

The folder is written next to its destination and renamed into place, so it is whole or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import ArtifactError

SOURCE, CONSTANTS, PLAN = "model.metal", "constants.bin", "launch.json"
FORMAT = 1


def _buffer(arg: list) -> dict:
    kind = arg[0]
    if kind in ("input", "output"):
        return {kind: arg[1]}
    if kind in ("arena", "const"):
        return {"arena" if kind == "arena" else "constants": arg[1], "bytes": arg[2]}
    return {"flag": 0}


def launch_plan(meta: dict, source: str, constants: bytes) -> dict:
    """The ``launch.json`` of an artifact's metadata (see the module's docstring)."""
    gpu = meta["gpu"]
    return {
        "format": FORMAT, "language": "metal", "source": SOURCE, "constants": CONSTANTS,
        "compile_options": {"fastMathEnabled": False},
        "sha256": {SOURCE: hashlib.sha256(source.encode()).hexdigest(),
                   CONSTANTS: hashlib.sha256(constants).hexdigest()},
        "inputs": meta["inputs"], "outputs": meta["outputs"], "arena_bytes": meta["arena_bytes"],
        "constants_bytes": len(constants),
        "kernels": [{"kernel": lau["kernel"], "threadgroups": lau["grid"], "threads": lau["block"],
                     "buffers": [_buffer(a) for a in lau["args"]], "nodes": lau.get("nodes", "")}
                    for lau in gpu["launches"]],
        "copies": [[k, _buffer(src)] for k, src in gpu["copies"]],
        "ember": meta,
    }


def write_bundle(meta: dict, source: str, constants: bytes, dest: str | os.PathLike) -> Path:
    """Writes the bundle to the folder ``dest`` (replacing an earlier bundle there; any other
    existing file or non-empty folder is refused with ArtifactError); returns its path."""
    dest = Path(dest)
    if dest.exists() and not (dest.is_dir() and (not any(dest.iterdir()) or (dest / PLAN).is_file())):
        raise ArtifactError(f"'{dest}' exists and is not a Metal bundle: a Metal build writes a folder "
                            f"({SOURCE}, {PLAN}, {CONSTANTS}); give a new path")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    old = None
    try:
        (tmp / SOURCE).write_text(source)
        (tmp / CONSTANTS).write_bytes(constants)
        (tmp / PLAN).write_text(json.dumps(launch_plan(meta, source, constants), indent=1) + "\n")
        os.chmod(tmp, 0o755)
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.replace(dest, old / "bundle")
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and not dest.exists():
            os.replace(old / "bundle", dest)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return dest


def read_bundle(path: str | os.PathLike) -> tuple[dict, str, bytes]:
    """The launch plan, source and constants of the bundle at ``path``, checked against the
    plan's digests (ArtifactError when a file is missing or damaged)."""
    p = Path(path)
    try:
        plan = json.loads((p / PLAN).read_text())
        source = (p / SOURCE).read_text()
        constants = (p / CONSTANTS).read_bytes()
        digests = plan["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"'{p}' is not a readable Metal bundle: {e}") from None
    if (digests.get(SOURCE) != hashlib.sha256(source.encode()).hexdigest()
            or digests.get(CONSTANTS) != hashlib.sha256(constants).hexdigest()):
        raise ArtifactError(f"'{p}' is damaged: a file does not match the digest in {PLAN}")
    return plan, source, constants

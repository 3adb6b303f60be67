"""Programs: compiled models that run part of their work on the host.

A model whose graph holds ops that cannot be compiled ahead of time (strings; see
``ember.runtime.host``) becomes a *program*: a sequence of steps over numbered value slots.  A
*segment* step runs a compiled artifact (an ordinary ``Module``, shared library and all); a
*host* step runs a host kernel in Python.  Values cross between steps as numpy arrays.  A model
without host steps never becomes a program: it stays one shared library.

A program is one file, checked like every artifact (the trailer of ``module.py``)::

    b"EMBERPRG" | header length (u64, little-endian) | header (JSON) | segment artifacts...
        | trailer (EMBERART, payload length, sha256)

The header holds the signature (``inputs``, ``outputs``: name, dtype, shape), the slots of the
inputs and outputs, the constants the host steps and outputs read (as JSON lists), the steps in
order (a segment step names its artifact, a host step its kernel, node, op and attributes,
each with the slots it reads and writes), and where each segment artifact lies in the file
(``offset`` from the end of the header, ``size``).  Loading a program reads the file once,
checks it, and loads each segment by its content (``library.py``).  A header that does not
describe a program this runtime can run (a missing field, a slot no step writes, a segment
that lies outside the file) raises ``ArtifactError`` when it is loaded.  Programs need this
(Python) runtime: the C API loads shared libraries only.
"""

from __future__ import annotations

import json
import os
import struct
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ArtifactError, EmberError, EmberRuntimeError, InputError
from ..graph.types import TensorType, is_string
from ..symbolic import SymbolicError, bind
from .host import get_kernel
from .artifact import TRAILER_SIZE, seal_artifact, verify_bytes
from .library import load_bytes
from .module import LoadedModel, Module, _boundary_dtype, pattern_array, replacing

PROGRAM_MAGIC = b"EMBERPRG"
#: The program header ``format`` this module reads and writes.
PROGRAM_FORMAT = 1


def is_program(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` starts like a program (no integrity check)."""
    try:
        with open(path, "rb") as f:
            return f.read(len(PROGRAM_MAGIC)) == PROGRAM_MAGIC
    except OSError:
        return False


def write_program(path: str | os.PathLike, header: dict, segments: Sequence[str | os.PathLike]) -> Path:
    """Writes a program file: ``header`` (without ``segments``, which this adds) and the
    artifacts at the paths ``segments``.  The file is written under a temporary name in the
    destination's folder, sealed, and renamed into place."""
    dest = Path(path)
    blobs = [Path(p).read_bytes() for p in segments]
    offset, entries = 0, []
    for b in blobs:
        entries.append({"offset": offset, "size": len(b)})
        offset += len(b)
    head = json.dumps({**header, "format": PROGRAM_FORMAT, "segments": entries},
                      separators=(",", ":")).encode("utf-8")
    with replacing(dest) as tmp:
        with open(tmp, "wb") as f:
            f.write(PROGRAM_MAGIC + struct.pack("<Q", len(head)) + head)
            for b in blobs:
                f.write(b)
        seal_artifact(tmp)
        os.chmod(tmp, 0o644)
    return dest


def _const_array(entry: dict) -> np.ndarray:
    dtype, shape = entry["dtype"], tuple(entry["shape"])
    if is_string(dtype):
        arr = np.empty(shape, dtype=object)
        arr.reshape(-1)[:] = list(entry["data"])
        return arr
    return np.array(entry["data"], dtype=_boundary_dtype(dtype)).reshape(shape)


class ProgramModule(LoadedModel):
    """A compiled model with host steps, loaded and ready to run: the same interface as
    :class:`~ember.runtime.Module` (``run``, calling it, the signature, ``save``), string
    inputs and outputs as numpy object arrays of ``str``."""

    def __init__(self, path: str | os.PathLike):
        path = Path(os.path.abspath(path))
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"no artifact at '{path}'") from None
        except OSError as e:
            raise ArtifactError(f"cannot read the artifact '{path}': {e.strerror or e}") from None
        self._digest = verify_bytes(data, f"'{path}'")    # read once: what is checked is what runs
        self._path = path
        payload = memoryview(data)[:-TRAILER_SIZE]
        start = len(PROGRAM_MAGIC) + 8
        if len(payload) < start or bytes(payload[:len(PROGRAM_MAGIC)]) != PROGRAM_MAGIC:
            raise ArtifactError(f"'{path}' is not an Ember program")
        (head_len,) = struct.unpack("<Q", payload[len(PROGRAM_MAGIC):start])
        if head_len > len(payload) - start:
            raise ArtifactError(f"'{path}' has a malformed program header: it records {head_len} bytes "
                                f"but the file holds {len(payload) - start} after its start")
        try:
            header = json.loads(bytes(payload[start:start + head_len]).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ArtifactError(f"'{path}' has a malformed program header: {e}") from None
        if not isinstance(header, dict) or header.get("format") != PROGRAM_FORMAT:
            raise ArtifactError(f"'{path}' has program format {header.get('format') if isinstance(header, dict) else None!r}; "
                                f"this Ember reads format {PROGRAM_FORMAT}")
        self._metadata = header
        try:
            self._parse(header)
            self._check_steps()
            blobs = self._segment_blobs(payload[start + head_len:], header["segments"])
        except ArtifactError:
            raise
        except Exception as e:     # any other shape of JSON than a program's
            raise ArtifactError(f"'{path}' has a malformed program header: {type(e).__name__}: {e}") from None
        self._segments = [Module(f"{path}#segment{k}", library=load_bytes(b, f"segment {k} of '{path}'"))
                          for k, b in enumerate(blobs)]
        for s in self._steps:
            if s["kind"] != "segment":
                continue
            seg = self._segments[s["segment"]]
            if len(s["inputs"]) != len(seg.input_names) or len(s["outputs"]) != len(seg.output_names):
                raise ArtifactError(f"'{path}' has a malformed program header: a step passes "
                                    f"{len(s['inputs'])} -> {len(s['outputs'])} values to segment "
                                    f"{s['segment']}, which takes {len(seg.input_names)} -> "
                                    f"{len(seg.output_names)}")

    def _parse(self, h: dict) -> None:
        def ttype(e: dict) -> TensorType:
            if not isinstance(e["shape"], list) or not isinstance(e["dtype"], str):
                raise ValueError(f"{e['name']!r} has a shape that is not a list or a dtype that is not a string")
            return TensorType(tuple(e["shape"]), e["dtype"])

        self._in_names = [str(e["name"]) for e in h["inputs"]]
        self._in_types = [ttype(e) for e in h["inputs"]]
        self._out_names = [str(e["name"]) for e in h["outputs"]]
        self._out_types = [ttype(e) for e in h["outputs"]]
        self._in_slots = [int(s) for s in h["input_slots"]]
        self._out_slots = [int(s) for s in h["output_slots"]]
        self._consts = {int(c["slot"]): _const_array(c) for c in h["constants"]}
        self._steps = list(h["steps"])
        self._symbols = {str(e["name"]): int(e["bound"]) for e in h.get("symbols", [])}
        self._limits = dict(self._symbols)      # a program's segments are compiled for its bounds
        self._in_index = {n: i for i, n in enumerate(self._in_names)}
        self._defaults = {i: _const_array(e["default"]) for i, e in enumerate(h["inputs"]) if "default" in e}
        for i, arr in self._defaults.items():
            if arr.dtype != _boundary_dtype(self._in_types[i].dtype):
                raise ValueError(f"input {self._in_names[i]!r} has a default of another dtype")
            bind(self._in_types[i].shape, arr.shape, {}, f"the default of input {self._in_names[i]!r}")
        self._has_default = frozenset(self._defaults)
        # after which step each slot is read for the last time (outputs are never dropped)
        last: dict[int, int] = {}
        for k, s in enumerate(self._steps):
            for slot in s["inputs"]:
                last[int(slot)] = k
        keep = set(self._out_slots) | set(self._consts)
        self._drop = [[slot for slot, k2 in last.items() if k2 == k and slot not in keep]
                      for k in range(len(self._steps))]

    def _check_steps(self) -> None:
        """Every step is of a known kind and reads slots that hold values by then; so do the
        outputs (ValueError otherwise)."""
        if len(self._in_slots) != len(self._in_names) or len(self._out_slots) != len(self._out_names):
            raise ValueError("the input or output slots do not match the signature")
        ready = set(self._in_slots) | set(self._consts)
        nseg = len(self._metadata["segments"])
        for k, s in enumerate(self._steps):
            kind = s["kind"]
            if kind == "host":
                get_kernel(str(s["kernel"]))        # this runtime must know every kernel the program uses
                if not isinstance(s["attrs"], dict):
                    raise ValueError(f"step {k} has attributes that are not an object")
                str(s["node"]), str(s["op"])
            elif kind == "segment":
                if type(s["segment"]) is not int or not 0 <= s["segment"] < nseg:
                    raise ValueError(f"step {k} runs segment {s['segment']!r}, which the file lacks")
            else:
                raise ValueError(f"step {k} is of unknown kind {kind!r}")
            missing = [int(x) for x in s["inputs"] if int(x) not in ready]
            if missing:
                raise ValueError(f"step {k} reads slot(s) {missing} before anything writes them")
            ready.update(int(x) for x in s["outputs"])
        missing = [x for x in self._out_slots if x not in ready]
        if missing:
            raise ValueError(f"output slot(s) {missing} are never written")

    def _segment_blobs(self, blob: memoryview, entries: list) -> list[memoryview]:
        out = []
        for k, e in enumerate(entries):
            off, size = int(e["offset"]), int(e["size"])
            if off < 0 or size <= 0 or off + size > len(blob):
                raise ArtifactError(f"'{self._path}' is damaged: segment {k} lies outside the file")
            out.append(blob[off:off + size])
        return out

    def _write_artifact(self, f) -> None:
        """Copies the program file, which must still be the one loaded."""
        where = f"'{self._path}'"
        try:
            data = self._path.read_bytes()
            same = verify_bytes(data, where) == self._digest
        except (OSError, ArtifactError):
            same = False
        if not same:
            raise ArtifactError(f"{where} has changed since '{self.name}' was loaded from it; "
                                "load it again (or compile the model again) to save it")
        f.write(data)

    # ---- description -------------------------------------------------------------------------

    @property
    def segments(self) -> list[Module]:
        """The compiled segments, in the order the steps first run them."""
        return list(self._segments)

    @property
    def host_steps(self) -> list[tuple[str, str]]:
        """(node, op) of every host step, in order."""
        return [(s["node"], s["op"]) for s in self._steps if s["kind"] == "host"]

    @property
    def arena_bytes(self) -> int:
        """Scratch bytes the compiled segments hold, together."""
        return sum(m.arena_bytes for m in self._segments)

    @property
    def num_threads(self) -> int:
        return self._segments[0].num_threads if self._segments else 1

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        n = self._thread_count(n)
        for m in self._segments:
            m.num_threads = n

    def output_shapes(self, input_shapes) -> list:
        raise EmberRuntimeError(f"'{self.name}' runs host steps whose output shapes depend on the data; "
                                "run it to learn them")

    def profile(self) -> "OrderedDict[str, float]":
        """Seconds per kernel of every compiled segment (compiled with ``profile=True``)."""
        totals: OrderedDict[str, float] = OrderedDict()
        for m in self._segments:
            totals.update(m.profile())
        return totals

    def pattern_inputs(self) -> "OrderedDict[str, np.ndarray]":
        """The deterministic test inputs of :func:`~ember.runtime.pattern_array` (numeric inputs
        of static shapes only: strings have no pattern)."""
        strs = [n for n, t in zip(self._in_names, self._in_types) if is_string(t.dtype)]
        if strs:
            raise InputError(f"'{self.name}' takes string input(s) {', '.join(map(repr, strs))}; there is no "
                             "test pattern for strings: give them explicitly")
        if self._symbols or not all(t.is_static for t in self._in_types):
            raise EmberRuntimeError(f"'{self.name}' has symbolic input shapes; pattern inputs need static ones")
        return OrderedDict((n, pattern_array(t)) for n, t in zip(self._in_names, self._in_types))

    def __repr__(self) -> str:
        return (f"<ember.Module {self._signature()}; {len(self._segments)} compiled segment(s), "
                f"{len(self.host_steps)} host step(s)>")

    # ---- running -------------------------------------------------------------------------------

    def _check_input(self, i: int, arr: Any, env: dict) -> np.ndarray:
        name, t = self._in_names[i], self._in_types[i]
        arr = np.asarray(arr)
        got = f"{arr.dtype}[{', '.join(str(d) for d in arr.shape)}]"
        if is_string(t.dtype):
            if arr.dtype.kind == "U":
                arr = arr.astype(object)
            if arr.dtype != object or not all(isinstance(s, str) for s in arr.reshape(-1)):
                raise InputError(f"input '{name}' of '{self.name}' expects {t}, got {got}: give a numpy "
                                 "array of str (dtype object or str_)")
        else:
            dt = _boundary_dtype(t.dtype)
            if arr.dtype != dt:
                raise InputError(f"input '{name}' of '{self.name}' expects {t}, got {got}: "
                                 f"convert it explicitly (e.g. x.astype(np.{dt}))")
        try:
            bind(t.shape, arr.shape, env, f"input '{name}' ({t})")
        except SymbolicError as e:
            raise InputError(f"'{self.name}': {e}") from None
        return arr

    @property
    def input_defaults(self) -> "OrderedDict[str, np.ndarray]":
        return OrderedDict((self._in_names[i], self._defaults[i].copy()) for i in sorted(self._defaults))

    def _execute(self, arrays: list) -> "OrderedDict[str, np.ndarray]":
        env: dict[str, int] = {}
        slots: dict[int, np.ndarray] = dict(self._consts)
        arrays = [self._defaults[i] if a is None else a for i, a in enumerate(arrays)]
        for i, arr in enumerate(arrays):
            slots[self._in_slots[i]] = self._check_input(i, arr, env)
        for sym, value in env.items():
            bound = self._symbols.get(sym)
            if bound is not None and value > bound:
                raise InputError(f"'{self.name}': the inputs give {sym} = {value}, above its bound {bound}; "
                                 f"compile with bounds={{'{sym}': {value}}} (or more) to run this size")
        for step, drop in zip(self._steps, self._drop):
            ins = [slots[int(s)] for s in step["inputs"]]
            if step["kind"] == "host":
                outs = self._run_host(step, ins)
            else:
                seg = self._segments[step["segment"]]
                outs = list(seg.run(dict(zip(seg.input_names, ins))).values())
            for s, arr in zip(step["outputs"], outs):
                slots[int(s)] = arr
            for s in drop:
                slots.pop(s, None)
        outs = []
        for s in self._out_slots:
            arr = slots[s]
            outs.append(arr.copy() if s in self._in_slots or s in self._consts else arr)
        return OrderedDict(zip(self._out_names, outs))

    def _run_host(self, step: dict, ins: list) -> list:
        try:
            outs = get_kernel(step["kernel"])(step["attrs"], *ins)
        except EmberError:
            raise
        except Exception as e:  # a kernel that rejects these values
            raise EmberRuntimeError(f"host step failed: {type(e).__name__}: {e}",
                                    node=step["node"], op=step["op"]) from None
        return list(outs) if isinstance(outs, (list, tuple)) else [outs]

    # ---- files ----------------------------------------------------------------------------------


"""Loading and running compiled artifacts.

An artifact is a shared library (kernels, constants, the C runtime of ``runtime/c``) sealed with
an integrity trailer (``artifact.py``).  :func:`load` checks it before the library is opened, so
a truncated or damaged file raises :class:`~ember.errors.ArtifactError` instead of crashing the
process in ``dlopen``, and loads it by its content (``library.py``): a file saved over another
one is a new library, and a library nobody uses any more is unloaded.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import sys
import tempfile
import threading
from collections import OrderedDict
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import limits
from ..errors import (ArtifactError, DataShapeError, EmberError, EmberRuntimeError, IndexOutOfRangeError, InputError,
                      RuntimeLimitError)
from ..graph.types import NARROW_DTYPES, TensorType
from ..symbolic import SymbolicError, bind, evaluate, failed_check, parse
from .artifact import TRAILER_MAGIC, TRAILER_SIZE, seal_artifact, trailer_ok, verify_artifact  # noqa: F401
from .library import (_WORKER_SLOTS, ABI_VERSION, Library, load_file, process_threads,  # noqa: F401
                      set_process_threads)

#: What a run returns when a kernel met an out-of-range index (``EMBER_ERROR_INDEX``).
EMBER_ERROR_INDEX = -2
#: ... when the data gave an invalid dimension (``EMBER_ERROR_SHAPE``).
EMBER_ERROR_SHAPE = -3
#: ... when a tensor the data sizes is above the tensor limit (``EMBER_ERROR_LIMIT``).
EMBER_ERROR_LIMIT = -4
#: The metadata ``format`` this module reads.
METADATA_FORMAT = 1


# ---- dtypes at the boundary ---------------------------------------------------------------------

#: dtypes numpy lacks -> the unsigned integer type of their raw bits
_RAW_BITS = {"bfloat16": np.dtype(np.uint16), **{d: np.dtype(np.uint8) for d in NARROW_DTYPES}}


class OutputRecycler:
    """Output arrays of earlier runs, handed out again once nothing else references them.

    Writing a result into memory the process has never touched costs a page fault per 4 KiB
    page (a fresh 200 MB array, such as a language model's logits at batch 8, costs 50,000 of
    them, and their cost varies with the kernel's state from run to run); an array the caller
    has dropped is reused instead.  An array is reused only when this recycler holds the sole
    reference to it: a result the caller keeps, or any view of it (numpy views reference the
    array that owns the memory), is never overwritten.  Small arrays are left to the allocator.
    """

    MIN_BYTES = 1 << 20
    PER_OUTPUT = 2          # a caller that keeps one result while computing the next

    def __init__(self, count: int):
        self._kept: list[list[np.ndarray]] = [[] for _ in range(count)]

    def array(self, i: int, shape: tuple, dtype: np.dtype, name: str = "") -> np.ndarray:
        """An array for output ``i``: a dropped one of the same shape and dtype, else a new one,
        checked against the resource policy first (``RuntimeLimitError`` naming output ``name``)."""
        kept = self._kept[i]
        for a in kept:
            # references: the list, the loop variable and getrefcount's argument
            if sys.getrefcount(a) <= 3 and a.shape == shape and a.dtype == dtype:
                return a
        nbytes = dtype.itemsize
        for d in shape:
            nbytes *= d
        if nbytes > limits.current().tensor_bytes:
            limits.check_tensor(nbytes, f"output '{name or i}' of shape {list(shape)}", runtime=True)
        out = np.empty(shape, dtype)
        if out.nbytes >= self.MIN_BYTES and dtype != object:
            if len(kept) >= self.PER_OUTPUT:
                kept.pop(0)
            kept.append(out)
        return out


def _boundary_dtype(dtype: str) -> np.dtype:
    """The numpy dtype of the buffers a model reads and writes for IR dtype ``dtype``.

    bfloat16 and the narrow types (float8, float4, int4, int2: one element a byte) hold raw
    bits: they are given and returned as ``ml_dtypes`` arrays when that package is installed,
    else as ``uint16`` (bfloat16) or ``uint8``."""
    if dtype in _RAW_BITS:
        try:
            import ml_dtypes

            return np.dtype(getattr(ml_dtypes, dtype))
        except ImportError:
            return _RAW_BITS[dtype]
    try:
        return np.dtype(dtype)
    except TypeError:
        raise ArtifactError(f"the artifact uses dtype '{dtype}', which this runtime does not know") from None


def pattern_array(ttype: TensorType) -> np.ndarray:
    """The deterministic test input ``src/ember/runtime/runners/run_model.c`` uses, for one tensor type.

    With ``v = (i * 7919) % 1000`` for flat index ``i``: floats are ``float32(v / 1000 - 0.5)``
    converted to the dtype; signed integers ``v % 200 - 100``; unsigned ``v % 200``; bools
    ``v % 2``.  The narrow types (float8, float4, int4, int2) have no pattern.
    """
    if ttype.dtype in NARROW_DTYPES:
        raise InputError(f"there is no test pattern for {ttype.dtype} inputs: give them explicitly")
    shape = tuple(int(d) for d in ttype.shape)
    n = int(np.prod(shape, dtype=np.int64))
    v = (np.arange(n, dtype=np.int64) * 7919) % 1000
    dt = _boundary_dtype(ttype.dtype)
    if ttype.dtype in ("float16", "bfloat16", "float32", "float64"):
        f32 = (v / 1000.0 - 0.5).astype(np.float32)
        if ttype.dtype == "bfloat16":
            bits = f32.view(np.uint32)
            bits = ((bits + (((bits >> 16) & 1) + 0x7FFF)) >> 16).astype(np.uint16)
            out = bits.view(dt) if dt.itemsize == 2 else bits
        else:
            out = f32.astype(dt)
    elif ttype.dtype == "bool":
        out = (v % 2).astype(np.bool_)
    elif dt.kind == "i":
        out = (v % 200 - 100).astype(dt)
    else:
        out = (v % 200).astype(dt)
    return out.reshape(shape)


class LoadedModel:
    """What every loaded model offers, one library (:class:`Module`) or a program of compiled
    segments and host steps (:class:`~ember.runtime.program.ProgramModule`): its signature,
    ``run`` with a mapping of inputs, a call with positional ones, ``save``.  Subclasses set
    ``_path``, ``_metadata``, ``_in_names`` / ``_in_types`` / ``_out_names`` / ``_out_types``,
    ``_in_index``, ``_symbols`` and ``_has_default`` (indices of the inputs with a default
    value), and implement ``_execute(arrays)``, where ``None`` stands for an input left to its
    default, and ``input_defaults``."""

    _path: Path
    _metadata: dict
    _has_default: frozenset = frozenset()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def metadata(self) -> dict:
        return json.loads(json.dumps(self._metadata))

    @property
    def name(self) -> str:
        return str(self._metadata.get("name", self._path.stem))

    @property
    def input_names(self) -> list[str]:
        return list(self._in_names)

    @property
    def output_names(self) -> list[str]:
        return list(self._out_names)

    @property
    def input_types(self) -> list[TensorType]:
        return list(self._in_types)

    @property
    def output_types(self) -> list[TensorType]:
        return list(self._out_types)

    @property
    def default_inputs(self) -> list[str]:
        """The inputs that have a default value (ONNX initializers that are also graph inputs):
        ``run`` and a call may leave them out, and then the default is used."""
        return [n for i, n in enumerate(self._in_names) if i in self._has_default]

    @property
    def input_defaults(self) -> "OrderedDict[str, np.ndarray]":
        """The default values of :attr:`default_inputs` (copies)."""
        raise NotImplementedError

    @property
    def symbols(self) -> dict[str, int]:
        """The symbolic dimensions of the inputs and the size each was planned for (empty for a
        model of static shapes); larger sizes run too, up to a symbol's limit (``limits``)."""
        return dict(self._symbols)

    @property
    def limits(self) -> dict[str, int]:
        """The symbols that cannot exceed a size (the model's own limits, such as a table of 512
        positions, or a bound its translation relied on) and that size."""
        return dict(self._limits)

    @property
    def is_dynamic(self) -> bool:
        return bool(self._symbols)

    @staticmethod
    def _thread_count(n) -> int:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise EmberError(f"num_threads must be a positive integer, not {n!r}")
        return int(n)

    def _signature(self) -> str:
        ins = ", ".join(f"{n}: {t}" + (" = default" if i in self._has_default else "")
                        for i, (n, t) in enumerate(zip(self._in_names, self._in_types)))
        outs = ", ".join(f"{n}: {t}" for n, t in zip(self._out_names, self._out_types))
        return f"'{self.name}' ({ins}) -> ({outs})"

    def run(self, feeds: Mapping[str, Any]) -> "OrderedDict[str, np.ndarray]":
        """Runs the model on ``feeds`` (input name -> array; an input with a default may be left
        out); returns the outputs in model order."""
        names = self._in_names
        if not isinstance(feeds, Mapping):
            raise InputError(f"run() takes a mapping of input names to arrays, not {type(feeds).__name__}; "
                             "call the module with positional arrays instead")
        feeds = dict(feeds)
        for i, j in self._in_sequences:
            if names[i] in feeds:
                feeds[names[i]], shapes = self._packed(i, j, feeds[names[i]], feeds.get(names[j]))
                feeds[names[j]] = shapes
        unknown = [k for k in feeds if k not in self._in_index]
        if unknown:
            raise InputError(f"unknown input(s) {', '.join(repr(k) for k in unknown)} for "
                             f"'{self.name}'; its inputs are {', '.join(names) or '(none)'}")
        missing = [n for i, n in enumerate(names) if n not in feeds and i not in self._has_default]
        if missing:
            raise InputError(f"missing input(s) {', '.join(repr(n) for n in missing)} for "
                             f"'{self.name}'; its inputs are {', '.join(names)}")
        return self._unpacked(self._execute(self._presence([feeds.get(n) for n in names])))

    @staticmethod
    def _sequence_pairs(names: list, types: list) -> list[tuple[int, int]]:
        """(data, shapes) positions of the sequences among inputs or outputs ``names`` of
        ``types``: a 1-D ``x`` and an int64 ``[count, rank]`` ``x#shapes`` (an ONNX sequence
        whose length and element shapes the run decides: its elements' data one after the
        other, in row-major order, and their shapes)."""
        index = {n: k for k, n in enumerate(names)}
        pairs = []
        for j, (n, t) in enumerate(zip(names, types)):
            i = index.get(n[:-len("#shapes")]) if n.endswith("#shapes") else None
            if i is not None and t.dtype == "int64" and t.rank == 2 and types[i].rank == 1:
                pairs.append((i, j))
        return pairs

    @cached_property
    def _in_sequences(self) -> list[tuple[int, int]]:
        return self._sequence_pairs(self._in_names, self._in_types)

    @cached_property
    def _out_sequences(self) -> list[tuple[int, int]]:
        return self._sequence_pairs(self._out_names, self._out_types)

    def _packed(self, i: int, j: int, value: Any, shapes: Any) -> tuple:
        """Sequence input ``i`` (shapes input ``j``) given as ``value``: a list of arrays packed
        as (data, shapes); data and shapes given as arrays checked to agree."""
        name, t = self._in_names[i], self._in_types[j]
        rank = t.shape[1]
        if isinstance(value, (list, tuple)):
            if shapes is not None:
                raise InputError(f"input '{name}' is given as a list of arrays, so '{self._in_names[j]}' must be "
                                 f"left out")
            dt = _boundary_dtype(self._in_types[i].dtype)
            items = [np.asarray(a) for a in value]
            for k, a in enumerate(items):
                if isinstance(rank, int) and a.ndim != rank:
                    raise InputError(f"element {k} of the sequence '{name}' has rank {a.ndim}, but the model's "
                                     f"elements have rank {rank}")
                if a.dtype != dt and not np.can_cast(a.dtype, dt, casting="same_kind"):
                    raise InputError(f"element {k} of the sequence '{name}' is {a.dtype}, but the model takes {dt}")
            ranks = {a.ndim for a in items}
            if len(ranks) > 1:
                raise InputError(f"the elements of the sequence '{name}' have different ranks {sorted(ranks)}")
            r = ranks.pop() if ranks else (rank if isinstance(rank, int) else 0)
            data = np.concatenate([a.astype(dt, copy=False).reshape(-1) for a in items]) if items \
                else np.zeros((0,), dt)
            return data, np.array([a.shape for a in items], dtype=np.int64).reshape(len(items), r)
        if shapes is None:
            raise InputError(f"input '{name}' is a sequence: give it as a list of arrays (or its data with "
                             f"'{self._in_names[j]}')")
        data, shapes = np.asarray(value), np.asarray(shapes)
        if shapes.ndim != 2 or shapes.dtype.kind not in "iu" or (shapes < 0).any() or data.ndim != 1 or \
                int(np.prod(shapes, axis=1, dtype=np.int64).sum()) != data.size:
            raise InputError(f"input '{self._in_names[j]}' must be the [count, rank] shapes of the elements whose "
                             f"data '{name}' holds ({data.size} values)")
        return data, shapes

    def _unpacked(self, outs: "OrderedDict[str, np.ndarray]") -> "OrderedDict[str, np.ndarray]":
        """``outs`` with each sequence output (data ``y`` and shapes ``y#shapes``) as one list of
        arrays ``y``."""
        pairs = self._out_sequences
        if not pairs:
            return outs
        values = list(outs.values())
        for i, j in pairs:
            data, shapes = values[i], np.asarray(values[j])
            items, off = [], 0
            for row in shapes:
                n = int(np.prod(row, dtype=np.int64))
                items.append(data[off:off + n].reshape(tuple(int(d) for d in row)).copy())
                off += n
            values[i] = items
        drop = {j for _, j in pairs}
        return OrderedDict((n, v) for k, (n, v) in enumerate(zip(outs.keys(), values)) if k not in drop)

    @cached_property
    def _optional_inputs(self) -> list[tuple[int, int]]:
        """(flag, value) input positions of the optional inputs: an input ``x`` with a bool
        scalar input ``x?``, which says whether the optional holds a value (ONNX optional tensor
        inputs; both have defaults, so an empty optional leaves both out)."""
        pairs = []
        for i, (n, t) in enumerate(zip(self._in_names, self._in_types)):
            j = self._in_index.get(n[:-1]) if n.endswith("?") else None
            if j is not None and t.dtype == "bool" and t.shape == () and {i, j} <= self._has_default:
                pairs.append((i, j))
        return pairs

    def _presence(self, arrays: list) -> list:
        """``arrays`` with the presence flag of each optional input that the caller left out
        set from its value: true where the value is given."""
        for i, j in self._optional_inputs:
            if arrays[i] is None:
                arrays[i] = np.array(arrays[j] is not None)
            elif arrays[j] is None and np.asarray(arrays[i]).size == 1 and bool(np.asarray(arrays[i]).reshape(())):
                raise InputError(f"input '{self._in_names[i]}' says that the optional '{self._in_names[j]}' holds a "
                                 f"value, but none is given")
        return arrays

    def __call__(self, *arrays: Any) -> "np.ndarray | tuple[np.ndarray, ...]":
        """Runs the model on positional inputs; inputs with a default may be ``None`` or, at the
        end, left out; a sequence input takes a list of arrays (its ``#shapes`` input then ``None``
        or, at the end, left out)."""
        n = len(self._in_names)
        packed = {j for _, j in self._in_sequences}   # from a list
        need = max((i + 1 for i in range(n) if i not in self._has_default and i not in packed), default=0)
        if not need <= len(arrays) <= n:
            want = str(n) if need == n else f"{need} to {n}"
            raise InputError(f"'{self.name}' takes {want} input(s) ({', '.join(self._in_names)}), got {len(arrays)}")
        arrays = list(arrays) + [None] * (n - len(arrays))
        for i, j in self._in_sequences:
            if arrays[i] is not None:
                arrays[i], arrays[j] = self._packed(i, j, arrays[i], arrays[j])
        absent = [self._in_names[i] for i, a in enumerate(arrays) if a is None and i not in self._has_default]
        if absent:
            raise InputError(f"input(s) {', '.join(map(repr, absent))} of '{self.name}' have no default: "
                             "give them a value")
        outs = tuple(self._unpacked(self._execute(self._presence(arrays))).values())
        return outs[0] if len(outs) == 1 else outs

    def _execute(self, arrays: list) -> "OrderedDict[str, np.ndarray]":
        raise NotImplementedError

    def save(self, path: str | os.PathLike) -> Path:
        """Writes the artifact this model runs to ``path`` (a file, or a folder to put it in)
        atomically (a whole file or none); returns the path."""
        dest = Path(path)
        if dest.is_dir():
            dest = dest / self._path.name
        with replacing(dest) as tmp:
            with open(tmp, "wb") as f:
                self._write_artifact(f)
            os.chmod(tmp, 0o644)
        return dest

    def _write_artifact(self, f) -> None:
        raise NotImplementedError


class Module(LoadedModel):
    """A compiled model, loaded and ready to run.

    >>> m = ember.load("model.so")
    >>> m.input_names, m.input_types
    >>> outputs = m.run({"x": x})          # dict of output name -> array, in model order
    >>> y = m(x)                            # positional inputs; one array, or a tuple

    Every input is checked (name, dtype, shape) before anything runs; dtypes are never converted.
    A model compiled with symbolic dimensions (``symbols``) takes any input shapes that agree
    on each symbol's value and keep it within its bound, and returns outputs of the matching
    shapes.
    Each Module owns its own model instance (arena); calls on one Module are serialized, calls on
    different Modules may run at once from different threads.
    """

    def __init__(self, path: str | os.PathLike, *, library: Library | None = None):
        self._model = None
        path = Path(os.path.abspath(path))
        # by content: the file at ``path`` is copied and checked, and a library with the same
        # content already loaded is shared
        lib = library if library is not None else load_file(path)
        fns = lib.fns
        if fns["ember_cpu_check"]() != 0:
            raise ArtifactError(f"'{path}': {fns['ember_last_error']().decode(errors='replace')}; "
                                "compile the model again on this machine")
        raw = fns["ember_metadata"]()
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ArtifactError(f"'{path}' has malformed metadata: {e}") from None
        self._path = path
        self._library = lib
        self._fns = fns
        self._metadata = meta
        self._parse_signature(meta)
        if fns["ember_num_inputs"]() != len(self._in_names) or fns["ember_num_outputs"]() != len(self._out_names):
            raise ArtifactError(f"'{path}' has malformed metadata: "
                                f"{fns['ember_last_error']().decode(errors='replace')}")

        model = lib.new_instance()
        if not model:
            raise EmberRuntimeError(
                f"cannot create an instance of '{self.name}': "
                f"{fns['ember_last_error']().decode(errors='replace')}")
        self._model = model
        self._run = fns["ember_model_run"]
        self._in_ptrs = (ctypes.c_void_p * max(1, len(self._in_names)))()
        self._out_ptrs = (ctypes.c_void_p * max(1, len(self._out_names)))()
        self._shape_ptrs = (ctypes.c_void_p * max(1, len(self._in_names)))()
        self._lock = threading.Lock()
        self._outputs = OutputRecycler(len(self._out_names))
        if fns["ember_num_symbols"]() != len(self._symbols):
            raise ArtifactError(f"'{path}' has malformed metadata: its symbols do not match the library's")

    def _parse_signature(self, meta: Any) -> None:
        def bad(why: str) -> ArtifactError:
            return ArtifactError(f"'{self._path}' has malformed metadata: {why}")

        if not isinstance(meta, dict):
            raise bad("not a JSON object")
        if meta.get("format") != METADATA_FORMAT:
            raise ArtifactError(f"'{self._path}' has metadata format {meta.get('format')!r}; "
                                f"this Ember reads format {METADATA_FORMAT}")
        sig = {}
        for kind in ("inputs", "outputs"):
            entries = meta.get(kind)
            if not isinstance(entries, list):
                raise bad(f"no '{kind}' list")
            names, types, np_types = [], [], []
            for e in entries:
                try:
                    name, dtype, shape = e["name"], e["dtype"], e["shape"]
                except (TypeError, KeyError):
                    raise bad(f"an entry of '{kind}' lacks name, dtype or shape") from None
                try:
                    ttype = TensorType(tuple(shape), dtype)
                except Exception as exc:
                    raise bad(f"{kind[:-1]} '{name}': {exc}") from None
                names.append(name)
                types.append(ttype)
                np_types.append((_boundary_dtype(dtype), tuple(ttype.shape)))
            sig[kind] = (names, types, np_types)
        symbols = meta.get("symbols", [])
        try:
            self._symbols = {str(e["name"]): int(e["bound"]) for e in symbols}
            self._limits = {str(e["name"]): int(e["limit"]) for e in symbols if "limit" in e}
            self._data_symbols = {str(e["name"]) for e in symbols if e.get("data")}
        except (TypeError, KeyError, ValueError):
            raise bad("malformed 'symbols'") from None
        try:
            self._checks = [(parse(str(e["dim"])), str(e["op"]), str(e["what"])) for e in meta.get("checks", [])]
        except (TypeError, KeyError, ValueError, SymbolicError):
            raise bad("malformed 'checks'") from None
        if any(op not in ("==", ">=") for _, op, _ in self._checks):
            raise bad("a check of 'checks' has an unknown op")
        used = {s for kind in ("inputs", "outputs") for t in sig[kind][1] for s in t.symbols}
        if used - set(self._symbols):
            raise bad(f"shapes use symbols {sorted(used - set(self._symbols))} that 'symbols' does not list")
        self._in_names, self._in_types, self._in_np = sig["inputs"]
        self._default_shapes: dict[int, tuple[int, ...]] = {}
        for i, e in enumerate(meta["inputs"]):
            if "default" in e:
                try:
                    shape = tuple(int(d) for d in e["default"]["shape"])
                    bind(self._in_types[i].shape, shape, {}, "its default")
                except (TypeError, KeyError, ValueError, SymbolicError):
                    raise bad(f"input '{self._in_names[i]}' has a malformed default") from None
                self._default_shapes[i] = shape
        self._has_default = frozenset(self._default_shapes)
        self._out_names, self._out_types, self._out_np = sig["outputs"]
        # outputs whose rank the run decides: these axes are dropped where their size is 1
        try:
            self._squeezes = {i: tuple(int(a) for a in e["squeeze"]) for i, e in enumerate(meta["outputs"])
                              if "squeeze" in e}
        except (TypeError, ValueError):
            raise bad("an output has a malformed 'squeeze'") from None
        if any(not 0 <= a < len(self._out_types[i].shape) for i, axes in self._squeezes.items() for a in axes):
            raise bad("an output's 'squeeze' names an axis it lacks")
        # outputs whose shape the data decides: the runtime owns them (read after the run)
        self._owned = [bool(t.symbols & self._data_symbols) for t in self._out_types]
        self._in_index = {n: i for i, n in enumerate(self._in_names)}
        if len(self._in_index) != len(self._in_names):
            raise bad("two inputs have the same name")

    # ---- description -------------------------------------------------------------------------

    @property
    def arena_bytes(self) -> int:
        """Scratch bytes an instance holds (for a symbolic model: planned at the bounds)."""
        return int(self._fns["ember_arena_bytes"]())

    def output_shapes(self, input_shapes: "Mapping[str, tuple] | list") -> list[tuple[int, ...]]:
        """The output shapes for inputs of the given shapes (by name or in order)."""
        if isinstance(input_shapes, Mapping):
            input_shapes = [input_shapes[n] for n in self._in_names]
        env = self._bind_shapes([tuple(int(d) for d in s) for s in input_shapes])
        # a dimension the data decides is only known after a run: -1
        return [tuple(-1 if not isinstance(d, int) and d.symbols() & self._data_symbols else evaluate(d, env)
                      for d in self._out_types[i].shape) if self._owned[i] else self._output_shape(i, env)
                for i in range(len(self._out_types))]

    def _output_shape(self, i: int, env: dict) -> tuple[int, ...]:
        """Output ``i``'s shape given the symbols' values; InputError when the inputs are too
        small for the model (a dimension such as ``(samples - 400)//160 + 1`` below 0)."""
        shape = tuple(evaluate(d, env) for d in self._out_types[i].shape)
        for k, (d, n) in enumerate(zip(self._out_types[i].shape, shape)):
            if n < 0:
                raise InputError(f"'{self.name}': the inputs make dimension {k} ({d}) of output "
                                 f"'{self._out_names[i]}' {n}: they are too small for the model")
        return shape

    @property
    def num_threads(self) -> int:
        """Threads the artifact's pool uses (shared by every Module of the same content); all
        Modules of the process together use at most :func:`process_threads` at once."""
        return int(self._fns["ember_get_num_threads"]())

    @num_threads.setter
    def num_threads(self, n: int) -> None:
        self._fns["ember_set_num_threads"](self._thread_count(n))

    def __repr__(self) -> str:
        return f"<ember.Module {self._signature()}>"

    # ---- running -------------------------------------------------------------------------------

    def _bind_shapes(self, shapes: list) -> dict[str, int]:
        """The symbols' values given the input shapes; InputError when the shapes disagree
        with the model, with each other or with the symbols' limits."""
        env: dict[str, int] = {}
        for name, t, shape in zip(self._in_names, self._in_types, shapes):
            try:
                bind(t.shape, shape, env, f"input '{name}' ({t})")
            except SymbolicError as e:
                raise InputError(f"'{self.name}': {e}") from None
        for sym, value in env.items():
            limit = self._limits.get(sym)
            if limit is not None and value > limit:
                raise InputError(f"'{self.name}': the inputs give {sym} = {value}, above its limit {limit} "
                                 f"(the model only works up to it)")
        failed = failed_check(self._checks, env) if self._checks else None
        if failed:
            raise InputError(f"'{self.name}': the input shapes fail a check of the model: {failed}")
        return env

    @property
    def input_defaults(self) -> "OrderedDict[str, np.ndarray]":
        out = OrderedDict()
        for i in sorted(self._has_default):
            shape = ctypes.POINTER(ctypes.c_int64)()
            ptr = self._fns["ember_input_default"](i, ctypes.byref(shape))
            if not ptr:
                raise ArtifactError(f"'{self._path}' holds no default for input '{self._in_names[i]}'")
            dt = self._in_np[i][0]
            dims = self._default_shapes[i]
            n = int(np.prod(dims, dtype=np.int64))
            raw = ctypes.string_at(ptr, n * dt.itemsize)
            out[self._in_names[i]] = np.frombuffer(raw, dtype=dt).reshape(dims).copy()
        return out

    def _execute(self, arrays: list) -> "OrderedDict[str, np.ndarray]":
        if self._symbols:
            return self._execute_dynamic(arrays)
        self._checked_inputs(arrays)
        with self._lock:
            outs = [self._outputs.array(i, shape, dt, self._out_names[i])
                    for i, (dt, shape) in enumerate(self._out_np)]
            in_ptrs, out_ptrs = self._in_ptrs, self._out_ptrs
            for i, arr in enumerate(arrays):
                in_ptrs[i] = None if arr is None else arr.ctypes.data
            for i, arr in enumerate(outs):
                out_ptrs[i] = arr.ctypes.data
            rc = self._run(self._model, in_ptrs, out_ptrs)
        if rc != 0:
            self._failed(rc)
        return OrderedDict(zip(self._out_names, outs))

    def _execute_dynamic(self, arrays: list) -> "OrderedDict[str, np.ndarray]":
        for i, (arr, (dt, _)) in enumerate(zip(arrays, self._in_np)):
            if arr is None:
                continue
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            if arr.dtype != dt:
                arr = self._check_input(i, arr, check_shape=False)
            if not arr.flags.c_contiguous or not arr.flags.aligned:
                arr = self._dense(i, arr)
            arrays[i] = arr
        given = [self._default_shapes[i] if a is None else a.shape for i, a in enumerate(arrays)]
        env = self._bind_shapes(given)
        shapes = [np.array(s, dtype=np.int64) for s in given]
        with self._lock:
            outs = [None if self._owned[i] else self._outputs.array(i, self._output_shape(i, env), dt, self._out_names[i])
                    for i, (dt, _) in enumerate(self._out_np)]
            in_ptrs, out_ptrs, shape_ptrs = self._in_ptrs, self._out_ptrs, self._shape_ptrs
            for i, arr in enumerate(arrays):
                in_ptrs[i] = None if arr is None else arr.ctypes.data
                shape_ptrs[i] = shapes[i].ctypes.data
            for i, arr in enumerate(outs):
                out_ptrs[i] = None if arr is None else arr.ctypes.data
            if self._data_symbols:
                self._fns["ember_model_set_tensor_limit"](self._model, limits.current().tensor_bytes)
            rc = self._fns["ember_model_run_dynamic"](self._model, shape_ptrs, in_ptrs, out_ptrs)
            if rc == 0 and self._data_symbols:
                outs = [self._owned_output(i) if arr is None else arr for i, arr in enumerate(outs)]
        if rc != 0:
            self._failed(rc)
        for i, axes in self._squeezes.items():      # a rank the run decides (ONNX Squeeze)
            drop = tuple(a for a in axes if outs[i].shape[a] == 1)
            if drop:
                outs[i] = outs[i].reshape(tuple(d for k, d in enumerate(outs[i].shape) if k not in drop))
        return OrderedDict(zip(self._out_names, outs))

    def _owned_output(self, i: int) -> np.ndarray:
        """A copy of output ``i``, which the runtime holds after the run (its shape decided by
        the data): read with ``ember_model_output_shape`` and ``ember_model_output``."""
        rank = len(self._out_types[i].shape)
        shape = (ctypes.c_int64 * max(rank, 1))()
        if self._fns["ember_model_output_shape"](self._model, i, shape) != 0:
            self._failed(-1)
        dims = tuple(int(shape[k]) for k in range(rank))
        dt = self._out_np[i][0]
        out = np.empty(dims, dt)
        if out.nbytes:
            ptr = self._fns["ember_model_output"](self._model, i)
            if not ptr:
                self._failed(-1)
            ctypes.memmove(out.ctypes.data, ptr, out.nbytes)
        return out

    def _failed(self, rc: int) -> None:
        """Raises the error of a run that returned ``rc`` (see ember_runtime.h)."""
        msg = self._fns["ember_last_error"]().decode(errors="replace")
        cls = {EMBER_ERROR_INDEX: IndexOutOfRangeError, EMBER_ERROR_SHAPE: DataShapeError,
               EMBER_ERROR_LIMIT: RuntimeLimitError}.get(rc, EmberRuntimeError)
        raise cls(f"'{self.name}' failed: {msg or f'status {rc}'}")

    def _checked_inputs(self, arrays: list) -> None:
        """Replaces each input of ``arrays`` (of a model of static shapes) by a dense array of its
        dtype and shape, or raises InputError; ``None`` (an input left to its default) stays."""
        for i, (arr, (dt, shape)) in enumerate(zip(arrays, self._in_np)):
            if arr is None:             # its default, which the artifact holds
                continue
            if type(arr) is not np.ndarray:
                arr = np.asarray(arr)
            if arr.dtype != dt or arr.shape != shape:
                arr = self._check_input(i, arr)
            if not arr.flags.c_contiguous or not arr.flags.aligned:
                arr = self._dense(i, arr)
            arrays[i] = arr

    def _dense(self, i: int, arr: np.ndarray) -> np.ndarray:
        """A dense, aligned copy of input ``i`` (a strided or broadcast view), its size checked
        against the resource limits first."""
        limits.check_tensor(int(arr.size) * arr.dtype.itemsize, f"a dense copy of input '{self._in_names[i]}'",
                            runtime=True)
        return np.ascontiguousarray(arr)

    def _check_input(self, i: int, arr: np.ndarray, check_shape: bool = True) -> np.ndarray:
        """Accepts ``arr`` for input ``i`` or raises InputError naming what is wrong."""
        name, ttype = self._in_names[i], self._in_types[i]
        dt, shape = self._in_np[i]
        got = f"{arr.dtype}[{', '.join(str(d) for d in arr.shape)}]"
        if arr.dtype != dt:
            # bfloat16 and the narrow types may also be given as their raw bits
            if arr.dtype == _RAW_BITS.get(ttype.dtype) and arr.dtype.itemsize == dt.itemsize:
                arr = arr.view(dt)
            else:
                ns = "ml_dtypes" if ttype.dtype in _RAW_BITS else "np"
                raise InputError(f"input '{name}' of '{self.name}' expects {ttype}, got {got}: "
                                 f"convert it explicitly (e.g. x.astype({ns}.{dt}))")
        if check_shape and arr.shape != shape:
            raise InputError(f"input '{name}' of '{self.name}' expects {ttype}, got {got}")
        return arr

    def profile(self) -> "OrderedDict[str, float]":
        """Seconds spent in each kernel over every run so far (of every Module of this content), in
        kernel order; for artifacts compiled with ``profile=True`` (they export ``ember_profile``).
        """
        try:
            fn = self._library.symbol("ember_profile")
        except AttributeError:
            raise EmberRuntimeError(f"'{self.name}' was not compiled with profiling; "
                                    "compile it with profile=True") from None
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.POINTER(ctypes.POINTER(ctypes.c_ulonglong)),
                       ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p))]
        ns = ctypes.POINTER(ctypes.c_ulonglong)()
        names = ctypes.POINTER(ctypes.c_char_p)()
        count = fn(ctypes.byref(ns), ctypes.byref(names))
        totals: OrderedDict[str, float] = OrderedDict()
        for i in range(count):
            name = names[i].decode(errors="replace")
            totals[name] = totals.get(name, 0.0) + ns[i] * 1e-9
        return totals

    def pattern_inputs(self) -> "OrderedDict[str, np.ndarray]":
        """The deterministic inputs ``src/ember/runtime/runners/run_model.c`` feeds this model (see
        :func:`pattern_array`)."""
        if self._symbols:
            raise EmberRuntimeError(f"'{self.name}' has symbolic input shapes; pattern inputs need static ones")
        return OrderedDict((n, pattern_array(t)) for n, t in zip(self._in_names, self._in_types))

    # ---- files ----------------------------------------------------------------------------------

    def _write_artifact(self, f) -> None:
        self._library.write_to(f)     # what this Module runs, whatever lies at its path now

    def __del__(self) -> None:
        model, self._model = getattr(self, "_model", None), None
        if model:
            try:
                self._library.free_instance(model)
            except Exception:
                pass


@contextlib.contextmanager
def replacing(dest: Path):
    """Yields a temporary path in ``dest``'s folder for the caller to write; renames it to
    ``dest`` when the block ends, or removes it if the block fails: ``dest`` is a whole file or
    is left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent or ".")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def load(path: str | os.PathLike) -> "Module":
    """Loads the artifact at ``path`` (checked for integrity first): a :class:`Module`, or a
    :class:`~ember.runtime.program.ProgramModule` for a model with host steps."""
    from .artifact import artifact_path, check_machine
    from .program import ProgramModule, is_program

    from .gpu import is_gpu_artifact, load_gpu

    path = artifact_path(path)
    if is_gpu_artifact(path):
        return load_gpu(path)
    check_machine(path)
    if is_program(path):
        return ProgramModule(path)
    return Module(path)

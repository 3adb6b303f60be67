"""The resource policy: how big a model may make Ember's work before Ember refuses it.

A hostile or broken model can ask for a tensor of 2**40 elements, a loop whose carried value
doubles every iteration or a graph of millions of nodes.  Every layer checks the size of what it
is about to allocate, expand or build against one :class:`Limits` *before* doing it, and raises
:class:`ember.errors.LimitError` (``E105``, at compile time: the frontend, the passes, the build
driver) or :class:`ember.errors.RuntimeLimitError` (``E304``, at run time: the reference
interpreter and ``Module`` when sizes depend on the input shapes) naming the node, the op, the
size and the limit, instead of hanging or dying of ``MemoryError``.

The limits:

* ``tensor_bytes``: the largest single tensor (default: the memory this process can hold, see
  :func:`available_memory`);
* ``memory_bytes``: the arena plus the constants of one compiled model (same default);
* ``fold_bytes``: the largest constant that compile-time evaluation may *grow* (an ``Expand``,
  ``Tile``, ``ConstantOfShape``, ``Range`` or ``Concat`` of constants whose result outweighs its
  inputs; default 64 MiB): a larger result is computed at run time instead;
* ``nodes``: nodes of a graph (default 64,000: a graph of 100,000 nodes takes minutes to compile);
* ``loop_iterations``: iterations of a Loop or Scan unrolled at compile time (default 4096);
* ``subgraph_depth``: nesting of subgraphs and function bodies (default 64).

Where they come from, last wins: the defaults, ``$EMBER_LIMITS``
(``"tensor_bytes=1G,nodes=100000"``), ``ember.compile(..., limits={...})`` (or ``ember compile
--limit NAME=VALUE``), and ``with ember.limits.using(...)`` for code that loads and runs
artifacts or calls the interpreter.  Sizes accept the suffixes K, M, G, T (powers of 1024).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, fields, replace
from typing import Any, Iterator, Mapping

from .errors import LimitError, RuntimeLimitError

__all__ = ["Limits", "available_memory", "current", "using", "resolve", "parse_size", "format_bytes",
           "check_tensor", "check_count", "may_fold"]

_SUFFIXES = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

_UNBOUNDED = 1 << 62


def available_memory() -> int:
    """Bytes this process can hold: the least of physical memory, the address-space and data
    limits of ``setrlimit`` and the cgroup's ``memory.max``, where the platform tells them."""
    found = []
    try:
        found.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import resource

        for which in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", None)):
            if which is None:
                continue
            soft, _ = resource.getrlimit(which)
            if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
                found.append(int(soft))
    except (ImportError, ValueError, OSError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            text = f.read().strip()
        if text.isdigit():
            found.append(int(text))
    except OSError:
        pass
    return min(found) if found else _UNBOUNDED


def parse_size(value: Any, name: str = "size") -> int:
    """An int from an int or a string such as ``"512M"``, ``"2G"``, ``"100000"``."""
    if isinstance(value, bool):
        raise ValueError(f"limit {name} must be a non-negative integer or a size like '2G', got {value!r}")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        unit = text[-1:] if text[-1:] in _SUFFIXES else ""
        digits = text[:-1] if unit else text
        try:
            n = int(float(digits) * _SUFFIXES[unit]) if "." in digits else int(digits) * _SUFFIXES[unit]
        except ValueError:
            raise ValueError(f"limit {name} must be a non-negative integer or a size like '2G', got {value!r}") from None
    else:
        raise ValueError(f"limit {name} must be a non-negative integer or a size like '2G', got {value!r}")
    if n < 0:
        raise ValueError(f"limit {name} must not be negative, got {value!r}")
    return n


def format_bytes(n: int) -> str:
    """``n`` bytes for people: ``4.0 TiB``, ``512 B``."""
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Limits:
    """One resource policy; see the module's documentation for each field."""

    tensor_bytes: int
    memory_bytes: int
    fold_bytes: int = 64 << 20
    nodes: int = 64_000
    loop_iterations: int = 4096
    subgraph_depth: int = 64

    @classmethod
    def defaults(cls) -> "Limits":
        mem = available_memory()
        return cls(tensor_bytes=mem, memory_bytes=mem)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def updated(self, changes: "Mapping[str, Any] | str | None") -> "Limits":
        """These limits with ``changes`` applied: a mapping, or ``"name=value,name=value"``."""
        if not changes:
            return self
        if isinstance(changes, str):
            pairs = {}
            for item in changes.replace(";", ",").split(","):
                if not item.strip():
                    continue
                key, sep, val = item.partition("=")
                if not sep:
                    raise ValueError(f"limits are given as NAME=VALUE, got {item.strip()!r}")
                pairs[key.strip()] = val.strip()
            changes = pairs
        unknown = sorted(set(changes) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown limit(s) {', '.join(map(repr, unknown))}; the limits are "
                             f"{', '.join(self.names())}")
        return replace(self, **{k: parse_size(v, k) for k, v in changes.items()})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def resolve(limits: "Limits | Mapping[str, Any] | str | None" = None) -> Limits:
    """The limits in force given ``limits`` (a :class:`Limits`, or changes to the defaults and
    ``$EMBER_LIMITS``); a bad name or value raises ``ValueError``."""
    if isinstance(limits, Limits):
        return limits
    base = Limits.defaults().updated(os.environ.get("EMBER_LIMITS") or None)
    return base.updated(limits)


_CURRENT: contextvars.ContextVar[Limits | None] = contextvars.ContextVar("ember_limits", default=None)
_DEFAULT: dict[str, Limits] = {}     # the defaults with $EMBER_LIMITS, read once per process


def current() -> Limits:
    """The limits in force here: those of the innermost :func:`using`, else the defaults with
    ``$EMBER_LIMITS`` applied (the variable and the machine's memory are read the first time
    they are needed; later changes need :func:`using`)."""
    lim = _CURRENT.get()
    if lim is not None:
        return lim
    lim = _DEFAULT.get("")
    if lim is None:
        lim = _DEFAULT[""] = resolve(None)
    return lim


@contextlib.contextmanager
def using(limits: "Limits | Mapping[str, Any] | str | None") -> Iterator[Limits]:
    """Runs the block under ``limits`` (changes apply to the limits in force outside it)."""
    lim = limits if isinstance(limits, Limits) else current().updated(limits)
    token = _CURRENT.set(lim)
    try:
        yield lim
    finally:
        _CURRENT.reset(token)


def _hint(name: str) -> str:
    return f"(limit {name}: raise it with limits={{'{name}': ...}}, --limit {name}=... or EMBER_LIMITS)"


def check_tensor(nbytes: int, what: str, *, node: str | None = None, op: str | None = None,
                 runtime: bool = False, limits: Limits | None = None) -> None:
    """Raises when one tensor of ``nbytes`` bytes (``what`` describes it) is above
    ``tensor_bytes``: :class:`LimitError`, or :class:`RuntimeLimitError` when ``runtime``."""
    lim = limits or current()
    if nbytes > lim.tensor_bytes:
        cls = RuntimeLimitError if runtime else LimitError
        raise cls(f"{what} needs {format_bytes(nbytes)}, above the {format_bytes(lim.tensor_bytes)} a tensor "
                  f"may take {_hint('tensor_bytes')}", node=node, op=op, limit="tensor_bytes",
                  size=nbytes, maximum=lim.tensor_bytes)


def check_count(name: str, value: int, what: str, *, node: str | None = None, op: str | None = None,
                limits: Limits | None = None) -> None:
    """Raises :class:`LimitError` when ``value`` (of ``what``) is above limit ``name``
    (``memory_bytes``, ``nodes``, ``loop_iterations``, ``subgraph_depth``)."""
    lim = limits or current()
    maximum = getattr(lim, name)
    if value > maximum:
        shown = format_bytes(value) if name.endswith("_bytes") else f"{value:,}"
        most = format_bytes(maximum) if name.endswith("_bytes") else f"{maximum:,}"
        raise LimitError(f"{what} is {shown}, above the limit of {most} {_hint(name)}", node=node, op=op,
                         limit=name, size=value, maximum=maximum)


def may_fold(out_bytes: int, in_bytes: int, limits: Limits | None = None) -> bool:
    """Whether compile-time evaluation may create a constant of ``out_bytes`` from constants of
    ``in_bytes`` (each distinct input counted once): always when it does not grow them, else
    only up to ``fold_bytes``."""
    lim = limits or current()
    return out_bytes <= max(in_bytes, lim.fold_bytes) and out_bytes <= lim.tensor_bytes

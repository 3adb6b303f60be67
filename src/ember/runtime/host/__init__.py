"""Host kernels: the parts of a model that are not compiled ahead of time.

Some ops cannot become C kernels (everything on strings: normalizing, splitting, regular
expressions, string-keyed lookups).  A model that uses them is compiled to a *program*
(``ember.runtime.program``): compiled segments and host steps, in order.  A host step runs one
of the kernels registered here, in Python, between the compiled segments.

A kernel is a function ``kernel(attrs, *arrays) -> list[np.ndarray]``: the node's attributes
(a mapping; sequences may be tuples or lists, as they come from the graph or from an artifact's
JSON) and its input arrays (strings are numpy object arrays of ``str``).  The core op that a
kernel implements (``ember.ops.strings``) uses the same function as its numpy reference, so each
op is defined once.  This package is part of the runtime: it knows nothing of the compiler.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

from ...errors import EmberRuntimeError

Kernel = Callable[..., "list[np.ndarray]"]

#: every host kernel by name
KERNELS: dict[str, Kernel] = {}


def kernel(name: str):
    """Decorator: register a host kernel under ``name``."""
    def register(fn: Kernel) -> Kernel:
        assert name not in KERNELS, f"host kernel {name!r} registered twice"
        KERNELS[name] = fn
        return fn
    return register


def get_kernel(name: str) -> Kernel:
    try:
        return KERNELS[name]
    except KeyError:
        raise EmberRuntimeError(f"unknown host kernel '{name}'; this runtime has "
                                f"{', '.join(sorted(KERNELS)) or 'none'}") from None


def run_kernel(name: str, attrs: Mapping, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run host kernel ``name`` on ``arrays``; always returns a list of arrays."""
    out = get_kernel(name)(attrs, *arrays)
    return list(out) if isinstance(out, (list, tuple)) else [out]


# importing the modules registers their kernels
from . import images, strings  # noqa: E402,F401

__all__ = ["KERNELS", "get_kernel", "kernel", "run_kernel"]

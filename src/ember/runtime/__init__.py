"""The runtime: load a compiled artifact, check inputs, run it.

It knows nothing of the compiler, so a deployed artifact needs only this package (and numpy).
The same artifact is usable from C through ``runtime/c/ember_runtime.h``.
"""

from .module import (ABI_VERSION, Module, load, pattern_array, process_threads, seal_artifact,
                     set_process_threads, trailer_ok, verify_artifact)

__all__ = ["ABI_VERSION", "Module", "load", "pattern_array", "process_threads", "seal_artifact",
           "set_process_threads", "trailer_ok", "verify_artifact"]

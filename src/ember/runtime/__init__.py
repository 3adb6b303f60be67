"""The runtime: load a compiled artifact, check inputs, run it.

It knows nothing of the compiler, so a deployed artifact needs only this package (and numpy).
The same artifact is usable from C through ``runtime/c/ember_runtime.h``.  A model with host
steps (string ops) is a program (``program.py``): compiled segments and host kernels
(``host/``), run by this package only.
"""

from .module import (ABI_VERSION, LoadedModel, Module, load, pattern_array, process_threads, seal_artifact,
                     set_process_threads, trailer_ok, verify_artifact)
from .program import ProgramModule, is_program, write_program

__all__ = ["ABI_VERSION", "LoadedModel", "Module", "ProgramModule", "is_program", "load", "pattern_array", "process_threads",
           "seal_artifact", "set_process_threads", "trailer_ok", "verify_artifact", "write_program"]

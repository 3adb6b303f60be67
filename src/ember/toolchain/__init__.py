"""The native toolchains behind one interface, with a content-addressed cache.

For CPU targets: :func:`build_shared` turns generated C sources and constant blobs into one
sealed shared library (an Ember artifact) in the cache.  :class:`Cache` is the generic
on-disk cache (also used to keep whole compiled models by model hash); :func:`cache_dir` is its
root (``$EMBER_CACHE_DIR``, else ``$XDG_CACHE_HOME/ember``, else ``~/.cache/ember``).
"""

from .cache import Cache, cache_dir, cache_limit, trim, usage
from .cc import (DEFAULT_CFLAGS, Compiler, build_shared, compiler_identity, find_compiler, runtime_dir,
                 runtime_files)

__all__ = ["Cache", "Compiler", "DEFAULT_CFLAGS", "build_shared", "cache_dir", "cache_limit", "compiler_identity", "trim", "usage",
           "find_compiler", "runtime_dir", "runtime_files"]

"""What the fork server (``suite.context``) loads before it forks the first case.

Every case runs in a child forked from that server, so whatever a case would otherwise do first
in its own process (build the case registry, import the modules Ember imports on first use,
compute the memos of a compile's cache key: Ember's source digest, the C compiler's identity)
is done here once and inherited, instead of once per case: about a third of a second of CPU
each, several hundred times a run.  Nothing here compiles C, starts a thread or reads or writes
a compile cache (the server runs under the user's environment, not a case's); a case still
translates, compiles, loads and runs its model in its own child with the run's cache.

Nothing here may resolve Ember's default limits (``ember.limits.current``: translating a model
does): they are read from the memory the process may use, once per process, and a case's must
come from its own memory limit (a Pad of 8 GiB is refused under 2 GiB; resolved here, without
that limit, it would be accepted and fail at run time).
"""

from __future__ import annotations

import importlib

from ember.target import host
from ember.toolchain import compiler_identity

from . import child  # noqa: F401  (the cases' entry point and the imports it holds)
from . import models as M
from .case import all_cases, lookup
from .suite import STILL_GOOD


def warm() -> None:
    lookup(STILL_GOOD.name)   # imports the suite's own checks
    all_cases()
    # what a compile imports on first use (the frontend's op tables, the files it reads)
    for name in ("ember.frontend.onnx_ops", "ember.frontend.files", "concurrent.futures"):
        importlib.import_module(name)
    # the memos every compile's cache key reads (ember.driver.compile._model_key)
    compiler_identity(tuple(M.CFLAGS), host())
    importlib.import_module("ember.driver.compile")._source_digest()


warm()

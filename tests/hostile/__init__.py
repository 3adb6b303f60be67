"""Ember's hostile-input suite.

Several hundred cases of damaged models, resource bombs, bad run-time inputs and damaged
artifacts, each run in a child process of its own under a memory limit and a wall-clock limit,
and judged automatically: a case passes when Ember either runs it correctly or refuses it with
an ``ember.errors.EmberError``, as the case expects; it fails on a crash, a hang, a memory
blow-up, any other exception, an invalid model accepted, or a wrong result.

    python -m tests.hostile                 # every case; prints a table per kind
    python -m tests.hostile --kind bombs    # one kind
    python -m tests.hostile -k gather       # the cases whose name contains 'gather'
    pytest tests/hostile -k structure       # the same cases as pytest items

``case.py`` defines a case, ``kinds/`` generates them (one module per kind), ``child.py`` runs
one in a child process, ``oracle.py`` computes onnxruntime's answer, ``suite.py`` runs many in a
pool of two workers and tabulates the results.

Environment: ``HOSTILE_WORKERS`` (default 2), ``HOSTILE_MEM_MB`` (address space a case may add
to what its child holds at the start, default 2048), ``HOSTILE_TIMEOUT_SCALE`` (multiplies every
case's time limit, for slow machines).
"""

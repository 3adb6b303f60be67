"""Region ops: control flow decided at run time, whose attributes hold their bodies as graphs.

* ``if(cond, *captures) {then_branch, else_branch}``: runs one branch on the captured values.
  Both branches take the captures as their inputs (in order; a branch may leave some unused)
  and give outputs of the same types, which are the node's.
* ``loop(M, cond, *carried, *captures) {body, num_carried, length, counted}``: runs ``body``
  while the iteration number is below ``M`` and ``cond`` holds.  The body takes the iteration
  number (int64), the condition (bool), the carried values and the captures, and gives the
  next condition, the next carried values (of the same types) and the *scan outputs* of the
  iteration, which the node stacks along a new first axis of size ``length``: a loop with scan
  outputs must run exactly ``length`` iterations (a dimension, possibly a data symbol bound
  from the trip count before the loop; the frontend gives it where nothing can stop the loop
  early), and an outcome of another count is an error of the run.  With ``counted`` the loop
  may stop earlier: ``length`` is then the most rows it can write (the trip count), the rows
  past the iterations run are zeros, and the node gives one more output, the number of
  iterations run (int64), from which the frontend cuts the rows out; more iterations than
  ``length`` are an error of the run.  The node's outputs are the final carried values, the
  stacked scan outputs, then (``counted``) the count.

A body is a plain graph of core ops (regions nest); the outer values a body reads are explicit
operands (captures), so graph passes treat a region node like any other opaque node.  The
reference (the semantics) runs the bodies on the reference interpreter, which passes itself in
as ``run``.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .base import REQUIRED, Op, Pattern, register
from ..graph.types import TensorType, np_dtype


def _one_value(op: Op, t: TensorType, dtypes: tuple[str, ...], what: str) -> None:
    if t.dtype not in dtypes or not t.is_static or t.size != 1:
        raise op.fail(f"{what} must be one {' or '.join(dtypes)} value, got {t}")


def _check_inputs(op: Op, body, types, what: str) -> None:
    if len(body.inputs) != len(types):
        raise op.fail(f"{what} takes {len(body.inputs)} inputs, the node gives {len(types)}")
    for k, (v, t) in enumerate(zip(body.inputs, types)):
        if v.type != t:
            raise op.fail(f"input {k} (%{v.name}) of {what} has type {v.type}, the node gives {t}")


class RegionOp(Op):
    """An op whose attributes hold graphs (``bodies``) that it runs."""

    pattern = Pattern.OPAQUE
    region = True
    num_inputs = (1, 1 << 20)

    def bodies(self, a: dict) -> list:
        raise NotImplementedError

    def output_count(self, a: dict) -> int:
        raise NotImplementedError

    def run(self, a: dict, arrays, run, sizes) -> list[np.ndarray]:
        """The outputs for operand ``arrays``; ``run(graph, arrays)`` runs a body, ``sizes`` are
        the values of the symbols."""
        raise NotImplementedError

    def reference(self, a: dict, *arrays):
        from ..graph.interpreter import run_graph    # the bodies run on the reference interpreter

        return self.run(a, list(arrays), run_graph, {})


@register
class If(RegionOp):
    name = "if"
    attrs = {"then_branch": REQUIRED, "else_branch": REQUIRED}

    def bodies(self, a):
        return [a["then_branch"], a["else_branch"]]

    def output_count(self, a):
        return len(a["then_branch"].outputs)

    def infer(self, a, cond, *captures):
        _one_value(self, cond, ("bool",), "the condition")
        then, other = a["then_branch"], a["else_branch"]
        _check_inputs(self, then, captures, "then_branch")
        _check_inputs(self, other, captures, "else_branch")
        t_types = [v.type for v in then.outputs]
        e_types = [v.type for v in other.outputs]
        if t_types != e_types:
            raise self.fail(f"the branches give different types: then {', '.join(map(str, t_types))}, "
                            f"else {', '.join(map(str, e_types))}")
        return t_types

    def run(self, a, arrays, run, sizes):
        taken = a["then_branch"] if bool(np.asarray(arrays[0]).reshape(())) else a["else_branch"]
        return run(taken, arrays[1:])


@register
class Loop(RegionOp):
    name = "loop"
    attrs = {"body": REQUIRED, "num_carried": REQUIRED, "length": None, "counted": False}

    def bodies(self, a):
        return [a["body"]]

    def output_count(self, a):
        return len(a["body"].outputs) - 1 + bool(a["counted"])

    def infer(self, a, m, cond, *rest):
        _one_value(self, m, ("int64",), "the trip count M")
        _one_value(self, cond, ("bool",), "the condition")
        body, n = a["body"], a["num_carried"]
        if not isinstance(n, int) or not 0 <= n <= len(rest):
            raise self.fail(f"num_carried must be an integer from 0 to {len(rest)}, got {n!r}")
        if len(body.inputs) < 2:
            raise self.fail("the body must take the iteration number and the condition")
        _one_value(self, body.inputs[0].type, ("int64",), "the body's iteration number")
        _one_value(self, body.inputs[1].type, ("bool",), "the body's condition")
        _check_inputs(self, _Inputs(body.inputs[2:]), list(rest), "the body (after the iteration number and "
                                                                   "the condition)")
        outs = [v.type for v in body.outputs]
        if len(outs) < 1 + n:
            raise self.fail(f"the body gives {len(outs)} outputs for the condition and {n} carried values")
        _one_value(self, outs[0], ("bool",), "the condition the body gives")
        for k in range(n):
            if outs[1 + k] != rest[k]:
                raise self.fail(f"carried value {k} changes type in the body: {rest[k]} -> {outs[1 + k]}")
        scans = outs[1 + n:]
        if scans and a["length"] is None:
            raise self.fail("scan outputs need the number of iterations (the length attribute)")
        if not isinstance(a["counted"], bool) or (a["counted"] and not scans):
            raise self.fail(f"counted must be a bool, true only with scan outputs, got {a['counted']!r}")
        return list(rest[:n]) + [TensorType((a["length"],) + tuple(t.shape), t.dtype) for t in scans] + (
            [TensorType((), "int64")] if a["counted"] else [])

    def run(self, a, arrays, run, sizes):
        body, n = a["body"], a["num_carried"]
        trip = int(np.asarray(arrays[0]).reshape(()))
        go = bool(np.asarray(arrays[1]).reshape(()))
        state = list(arrays[2:2 + n])
        captures = list(arrays[2 + n:])
        it_t, cond_t = body.inputs[0].type, body.inputs[1].type
        scans: list[list] = [[] for _ in body.outputs[1 + n:]]
        i = 0
        while i < trip and go:
            outs = run(body, [np.array(i, np.int64).reshape(it_t.shape), np.array(go).reshape(cond_t.shape)]
                       + state + captures)
            go = bool(np.asarray(outs[0]).reshape(()))
            state = [np.asarray(x) for x in outs[1:1 + n]]
            for s, x in zip(scans, outs[1 + n:]):
                s.append(np.asarray(x))
            i += 1
        length = a["length"]
        if scans and (i > length if a["counted"] else i != length):
            raise InputError(f"a loop with scan outputs of length {length} ran {i} iterations")
        stacked = []
        for s, v in zip(scans, body.outputs[1 + n:]):
            rows = np.zeros((length,) + v.type.concrete(sizes), np_dtype(v.dtype))
            if s:
                rows[:i] = np.stack(s)
            stacked.append(rows)
        return state + stacked + ([np.array(i, np.int64)] if a["counted"] else [])


class _Inputs:
    """A stand-in graph holding only some inputs (for ``_check_inputs``)."""

    def __init__(self, inputs):
        self.inputs = inputs


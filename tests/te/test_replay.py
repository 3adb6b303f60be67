"""Replaying recorded schedule steps (``te/replay.py``) on a tensor expression: the replayed
schedule lowers to the same loop IR and logs the same steps; steps that do not fit are clean
errors naming the step."""

from __future__ import annotations

import pytest

from ember import te
from ember.te.lower import lower
from ember.te.replay import ReplayError, replay
from ember.te.schedule import create_schedule
from ember.tir.printer import print_func


def _matmul():
    A = te.placeholder((24, 40), "float32", "A")
    B = te.placeholder((40, 36), "float32", "B")
    k = te.reduce_axis(40, "k")
    mm = te.compute((24, 36), lambda i, j: te.sum(A[i, k] * B[k, j], [k]), name="mm")
    return A, B, mm


def _tiled(mm):
    s = create_schedule(mm)
    root, red = s.root, s[mm]
    i, j = root.leaves
    jo, ji = root.split(j, 8)
    io, ii = root.split(i, 3)
    root.reorder(jo, io, ii, ji)
    par = root.fuse(jo, io)
    root.parallel(par)
    root.unroll(ii)
    root.vectorize(ji)
    red.compute_at(root, par)
    ri, rj = red.tensor.axes
    red.reorder(*red.reduce_axes, ri, rj)
    red.vectorize(rj)
    return s


def test_reduction_root_and_reduction_get_distinct_labels():
    _, _, mm = _matmul()
    s = create_schedule(mm)
    assert s.root.label == "mm" and s[mm].label == "mm#2"
    assert s.stage("mm#2") is s[mm]
    with pytest.raises(Exception, match="no stage 'nope'"):
        s.stage("nope")


def test_replayed_steps_lower_to_the_same_loop_ir():
    A, B, mm = _matmul()
    s = _tiled(mm)
    want = print_func(lower(s, "k", [A, B, s.output]))
    again = replay(create_schedule(mm), [list(step) for step in s.steps])
    assert again.steps == s.steps
    assert print_func(lower(again, "k", [A, B, again.output])) == want
    # and differs from an untouched schedule's: the steps are what made the kernel
    plain = create_schedule(mm)
    assert print_func(lower(plain, "k", [A, B, plain.output])) != want


@pytest.mark.parametrize("step, why", [
    (["mm", "split", "i9", 4], "no loop 'i9'"),
    (["nope", "split", "i0", 4], "no stage 'nope'"),
    (["mm", "split", "i0", "4"], "not an integer"),
    (["mm", "twist", "i0"], "unknown schedule primitive 'twist'"),
    (["mm", "fuse", "i0"], "does not apply"),
    (["mm", "fuse", "i1i", "i0"], "adjacent"),
    (["mm#2", "compute_at", "k"], "no loop 'k'"),
    ("mm.split(i0, 4)", "not a schedule step"),
])
def test_steps_that_do_not_fit_are_replay_errors(step, why):
    _, _, mm = _matmul()
    with pytest.raises(ReplayError, match=why) as e:
        replay(create_schedule(mm), [["mm", "split", "i1", 4], step])
    assert "step 2 (" in str(e.value)


def test_an_ambiguous_loop_name_is_a_replay_error():
    A = te.placeholder((8, 8), "float32", "A")
    r1, r2 = te.reduce_axis(8, "r"), te.reduce_axis(8, "r")
    t = te.compute((8,), lambda i: te.sum(A[i, r1] * A[r2, i], [r1, r2]), name="t")
    with pytest.raises(ReplayError, match="2 loops named 'r'"):
        replay(create_schedule(t), [["t#2", "split", "r", 2]])

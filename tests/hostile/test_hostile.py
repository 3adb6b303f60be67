"""The hostile-input suite as pytest items: one item per case (``-k`` picks kinds or cases),
all the selected cases run once, two at a time, by a session fixture; then the run's compile
cache must be intact and still give correct modules, and the user's cache untouched.

A failing item says why (crash, hang, memory, leak, accepted, refused-valid, wrong) and what
happened (a case with a ``known`` failure is a strict xfail); the table per kind is printed at the end of the session (``conftest.py``)."""

from __future__ import annotations

import shutil

import pytest

from .case import all_cases
from .suite import check_cache, cold_children, make_run_dir, run_cases, run_one, snapshot_cache, user_cache_changes
from .suite import STILL_GOOD, Result

RESULTS_KEY = pytest.StashKey[list]()

#: the session fixture runs every case at once: under pytest-xdist (make test's --dist loadgroup)
#: all items of this file go to one worker, so the suite runs once, not once per worker
pytestmark = pytest.mark.xdist_group("hostile")


class Run:
    def __init__(self, results: list[Result], run_dir, cache_problems, user_changes, still_good: Result):
        self.results = {r.case: r for r in results}
        self.run_dir = run_dir
        self.cache_problems = cache_problems
        self.user_changes = user_changes
        self.still_good = still_good


@pytest.fixture(scope="session")
def hostile(request):
    names = [item.callspec.params["name"] for item in request.session.items
             if getattr(item, "originalname", None) == "test_case" and hasattr(item, "callspec")]
    cases = [all_cases()[n] for n in names]
    run_dir = make_run_dir()
    before = snapshot_cache()
    try:
        results = run_cases(cases, run_dir)
        still_good = run_one(STILL_GOOD, run_dir, run_dir / "cache")
        run = Run(results, run_dir, check_cache(run_dir / "cache"), user_cache_changes(before), still_good)
        request.config.stash[RESULTS_KEY] = results
        yield run
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


@pytest.mark.parametrize("name", list(all_cases()))
def test_case(name, hostile):
    r = hostile.results[name]
    if r.verdict == "SKIP":
        pytest.skip(r.detail)
    known = all_cases()[name].known
    if known:   # a strict xfail: it must still fail, and when it passes the mark must go
        assert r.verdict == "FAIL", f"{name} passes now: remove its known failure ({known})"
        pytest.xfail(f"known failure: {known} ({r.reason}: {r.detail})")
    assert r.verdict == "PASS", f"{name} [{r.expect}]: {r.reason}: {r.detail}"


def test_run_cache_intact(hostile):
    """Every entry of the run's cache verifies, and it still compiles correct modules."""
    assert not hostile.cache_problems, "\n".join(hostile.cache_problems)
    r = hostile.still_good
    assert r.verdict == "PASS", f"after the suite the cache gives: {r.reason}: {r.detail}"


def test_cases_forked_from_a_loaded_server(hostile):
    """Every case's child was forked from a fork server that had loaded Ember and the suite
    (``suite.context``); else each case imports them again, seconds a case."""
    cold = cold_children(list(hostile.results.values()))
    assert not cold, f"{len(cold)} cases ran in children that imported Ember themselves, e.g. {cold[:3]}"


def test_user_cache_untouched(hostile):
    assert not hostile.user_changes, "\n".join(hostile.user_changes)


def test_suite_grouped_under_xdist(request):
    """Under ``--dist loadgroup`` this file's items carry the group, so one worker runs the suite
    (a pytest / pytest-xdist pair that drops the mark makes every worker run all the cases)."""
    if not getattr(request.config.option, "loadgroup", False):
        pytest.skip("not a pytest-xdist worker with --dist loadgroup")
    assert request.node.nodeid.endswith("@hostile"), request.node.nodeid

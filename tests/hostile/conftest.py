"""Prints the hostile suite's table per kind at the end of a pytest session."""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    from .suite import table
    from .test_hostile import RESULTS_KEY

    results = config.stash.get(RESULTS_KEY, None)
    if not results:
        return
    terminalreporter.section("hostile inputs")
    terminalreporter.write_line(table(results))

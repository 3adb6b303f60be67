"""Fixtures shared by the runtime tests."""

from __future__ import annotations

import pytest

from ember.runtime import process_threads, set_process_threads


@pytest.fixture
def four_threads():
    """All Modules of the process together may use 4 threads (so a pool of 4 has 3 workers)."""
    old = process_threads()
    set_process_threads(4)
    yield
    set_process_threads(old)

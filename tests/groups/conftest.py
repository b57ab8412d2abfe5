"""Fixtures of the group-commit proof suite (issue 5).

Group commit writes concurrent ``write`` calls in one transaction and serves
concurrent claims with one claim transaction; these tests check only what a
user can see: IDs, bodies, order, errors, rows in the file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.groups.groups_support import ASYNC_KITS, AsyncKit, adapter_threads


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture(params=sorted(ASYNC_KITS))
def kit(request: pytest.FixtureRequest) -> AsyncKit:
    """The asyncio or the trio adapter, behind one small interface."""
    return ASYNC_KITS[request.param]


@pytest.fixture(autouse=True)
def _no_thread_outlives_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """A closed broker leaves no adapter worker thread behind (known bugs exempt)."""
    before = set(threading.enumerate())
    yield
    known_bug = request.node.get_closest_marker("xfail") is not None
    left = adapter_threads(before, timeout=0.5 if known_bug else 5.0)
    if not known_bug:
        assert not left, f"{len(left)} adapter worker thread(s) outlived the test: {sorted(t.name for t in left)}"

"""Fixtures of the waiting suite, borrowed from the suites that already run once per adapter.

- ``broker`` / ``make_broker`` / ``adapter`` / ``db_path`` (``tests/contract``): a
  synchronous facade per adapter (blocking, asyncio, trio), checked clean and
  closed after the test; :mod:`tests.waiting.waiting_support` runs calls that
  wait concurrently beside it.
- ``anyio_backend`` / ``kit`` (``tests/async_adapters``): async test bodies run
  on asyncio and on trio, each bounded by the async suite's hang guard.
- No adapter or bridge thread may outlive a test (the contract suite's check).
"""

from __future__ import annotations

import pytest

from tests.async_adapters.conftest import anyio_backend, kit, pytest_pyfunc_call
from tests.contract.conftest import (
    _no_thread_outlives_the_test,
    adapter,
    broker,
    db_path,
    make_broker,
    make_target,
    target,
)


@pytest.fixture
def backend() -> str:
    """SQLite files (waiting on PostgreSQL: tests/postgres_waiting)."""
    return "sqlite"


__all__ = [
    "_no_thread_outlives_the_test",
    "adapter",
    "anyio_backend",
    "broker",
    "db_path",
    "kit",
    "make_broker",
    "make_target",
    "pytest_pyfunc_call",
    "target",
]

"""Fixtures of the async suite: one test body, run on asyncio and on trio.

``@pytest.mark.anyio`` tests run once per ``anyio_backend``; ``kit`` is that
runtime's :class:`~tests.async_adapters.kit.Kit`. A test that asks for
``cancel_style`` runs once per way that runtime's users cancel (see
``CANCEL_STYLES``). Every async test body is bounded by ``HANG_TIMEOUT``, so a
hang fails the test instead of the run. Runtime-specific tests (plain
functions that call ``asyncio.run``/``trio.run`` themselves) share the
thread check.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.async_adapters.asyncio_support import reap_worker_threads
from tests.async_adapters.kit import CANCEL_STYLES, HANG_TIMEOUT, KITS, Kit
from tests.support.threads import adapter_threads, threads_left

BACKENDS = ["asyncio", "trio"]
# aiosqlite's and the trio adapter's worker threads.
WORKER_MARKERS = ("_connection_worker_thread", "sansio-broker-trio-worker")


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """A test asking for ``cancel_style`` runs once per (runtime, style) pair."""
    if callable(obj) and name.startswith("test_") and "cancel_style" in inspect.signature(obj).parameters:
        pairs = [(backend, style) for backend in BACKENDS for style in CANCEL_STYLES[backend]]
        ids = [f"{backend}-{style}" for backend, style in pairs]
        pytest.mark.parametrize(("anyio_backend", "cancel_style"), pairs, ids=ids)(obj)


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def kit(anyio_backend: str) -> Kit:
    return KITS[anyio_backend]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """Bound every async test body by HANG_TIMEOUT (anyio's plugin then runs it)."""
    original = pyfuncitem.obj
    if inspect.iscoroutinefunction(original):

        @functools.wraps(original)
        async def bounded(*args: Any, **kwargs: Any) -> Any:
            with anyio.fail_after(HANG_TIMEOUT):
                return await original(*args, **kwargs)

        pyfuncitem.obj = bounded
    try:
        return (yield)
    finally:
        pyfuncitem.obj = original


@pytest.fixture(autouse=True)
def _no_thread_outlives_the_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test closes what it opens: no adapter worker thread may survive it.

    (aiosqlite's threads are not daemons, so one left behind would also keep
    the test process from exiting: it is stopped. The trio adapter's are
    daemons; a leaked one would keep a connection and its file open.) Tests
    of known bugs are exempt.
    """
    before = adapter_threads(WORKER_MARKERS)
    yield
    known_bug = request.node.get_closest_marker("xfail") is not None
    left = threads_left(before, timeout=0.5 if known_bug else 5, markers=WORKER_MARKERS)
    if left:
        reap_worker_threads({t for t in left if "_connection_worker_thread" in t.name})
    if not known_bug:
        assert not left, f"worker thread(s) outlived the test: {sorted(t.name for t in left)}"

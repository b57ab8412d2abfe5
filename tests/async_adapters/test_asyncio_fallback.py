"""The asyncio adapter without aiosqlite's and aiosqlitepool's internals.

``adapters/_aiosqlite.py`` checks at import that the internals of its fast path
exist and falls back to a worker thread of its own and aiosqlitepool's public
pool when they do not. The checks are tested here on fake modules, so they do
not depend on the installed releases; the adapter is run here on the fallback
for what a user sees. CI runs the whole asyncio suite on the fallback too
(``SANSIO_BROKER_AIOSQLITE_FALLBACK=1``).
"""

from __future__ import annotations

import asyncio
import importlib.util
import queue
import sys
import threading
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sansio_broker import BrokerClosedError, DatabaseError
from sansio_broker.adapters import _aiosqlite
from sansio_broker.adapters.asyncio import AsyncQueue, async_broker
from sansio_broker.commands import Execute
from tests.support.internals import driver_handlers, open_connections

QUIET = {"BROKER_AUTO_VACUUM": "0"}


# ------------------------------------------------------------ fake modules
class FakeConnection(threading.Thread):
    """Shaped as aiosqlite's ``Connection`` before 0.22 (it is the thread)."""

    def __init__(self, connector: Callable[[], Any], iter_chunk_size: int) -> None:
        super().__init__()
        self._tx: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._running = True
        self._connection = None

    async def close(self) -> None: ...


class FakePool:
    def __init__(
        self,
        connection_factory: Callable[[], Any],
        pool_size: int = 5,
        acquisition_timeout: int | None = 30,
        idle_timeout: int | None = 86400,
        operation_timeout: int | None = 10,
    ) -> None:
        self._connection_registry: dict[str, Any] = {}

    @property
    def size(self) -> int:
        return 0

    async def acquire(self) -> Any: ...

    async def release(self, conn: Any) -> None: ...

    async def close(self) -> None: ...


class FakePoolConnection:
    def __init__(self, connection: Any) -> None:
        self.raw_connection = connection


def fake_aiosqlite(connection_class: type = FakeConnection) -> types.ModuleType:
    module = types.ModuleType("aiosqlite")
    module.Connection = connection_class  # type: ignore[attr-defined]
    return module


def fake_aiosqlitepool(pool_class: type = FakePool, entry_class: type = FakePoolConnection) -> types.ModuleType:
    module = types.ModuleType("aiosqlitepool")
    module.PoolClosedError = type("PoolClosedError", (Exception,), {})  # type: ignore[attr-defined]
    module.SQLiteConnectionPool = object  # type: ignore[attr-defined]
    module.pool = types.SimpleNamespace(Pool=pool_class)  # type: ignore[attr-defined]
    module.connection = types.SimpleNamespace(PoolConnection=entry_class)  # type: ignore[attr-defined]
    return module


class NoQueue(FakeConnection):
    def __init__(self, connector: Callable[[], Any], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        del self._tx


class NoRunningFlag(FakeConnection):
    def __init__(self, connector: Callable[[], Any], iter_chunk_size: int) -> None:
        super().__init__(connector, iter_chunk_size)
        del self._running


class RenamedParameters(FakeConnection):
    def __init__(self, factory: Callable[[], Any], chunk_size: int) -> None:
        super().__init__(factory, chunk_size)


class NoRegistry(FakePool):
    def __init__(
        self,
        connection_factory: Callable[[], Any],
        pool_size: int = 5,
        acquisition_timeout: int | None = 30,
        idle_timeout: int | None = 86400,
        operation_timeout: int | None = 10,
    ) -> None:
        super().__init__(connection_factory, pool_size)
        del self._connection_registry


class SyncAcquire(FakePool):
    def acquire(self) -> Any:
        return None


class RenamedEntry:
    def __init__(self, connection: Any) -> None:
        self.connection = connection


def load_fresh(monkeypatch: pytest.MonkeyPatch, aiosqlite: types.ModuleType, pool: types.ModuleType) -> Any:
    """Import ``_aiosqlite`` anew, as a program would, with these modules installed."""
    monkeypatch.setitem(sys.modules, "aiosqlite", aiosqlite)
    monkeypatch.setitem(sys.modules, "aiosqlitepool", pool)
    spec = importlib.util.spec_from_file_location("fresh_aiosqlite_probe", _aiosqlite.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ checks
def test_the_fast_paths_are_chosen_when_every_internal_is_there(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_aiosqlite.FALLBACK_ENV, raising=False)
    fresh = load_fresh(monkeypatch, fake_aiosqlite(), fake_aiosqlitepool())
    assert (fresh.FAST_WORKER, fresh.FAST_POOL) == (True, True)


@pytest.mark.parametrize("connection_class", [NoQueue, NoRunningFlag, RenamedParameters])
def test_a_missing_aiosqlite_internal_selects_the_own_worker(
    monkeypatch: pytest.MonkeyPatch, connection_class: type
) -> None:
    monkeypatch.delenv(_aiosqlite.FALLBACK_ENV, raising=False)
    fresh = load_fresh(monkeypatch, fake_aiosqlite(connection_class), fake_aiosqlitepool())
    assert (fresh.FAST_WORKER, fresh.FAST_POOL) == (False, True)


@pytest.mark.parametrize(
    ("pool_class", "entry_class"),
    [(NoRegistry, FakePoolConnection), (SyncAcquire, FakePoolConnection), (FakePool, RenamedEntry)],
)
def test_a_missing_aiosqlitepool_internal_selects_the_public_pool(
    monkeypatch: pytest.MonkeyPatch, pool_class: type, entry_class: type
) -> None:
    monkeypatch.delenv(_aiosqlite.FALLBACK_ENV, raising=False)
    fresh = load_fresh(monkeypatch, fake_aiosqlite(), fake_aiosqlitepool(pool_class, entry_class))
    assert (fresh.FAST_WORKER, fresh.FAST_POOL) == (True, False)


def test_a_module_without_the_pool_submodule_selects_the_public_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_aiosqlite.FALLBACK_ENV, raising=False)
    pool = fake_aiosqlitepool()
    del pool.pool
    fresh = load_fresh(monkeypatch, fake_aiosqlite(), pool)
    assert fresh.FAST_POOL is False


def test_the_environment_forces_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_aiosqlite.FALLBACK_ENV, "1")
    fresh = load_fresh(monkeypatch, fake_aiosqlite(), fake_aiosqlitepool())
    assert (fresh.FAST_WORKER, fresh.FAST_POOL) == (False, False)


# ---------------------------------------------------- the adapter on it
@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The asyncio adapter on the fallback, whatever the installed releases have."""
    monkeypatch.setattr(_aiosqlite, "FAST_WORKER", False)
    monkeypatch.setattr(_aiosqlite, "FAST_POOL", False)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.mark.usefixtures("fallback")
def test_the_fallback_runs_every_kind_of_operation(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=3, config=QUIET) as broker:
            queue = AsyncQueue("q", broker)
            await asyncio.gather(*(queue.write(f"m{i}") for i in range(20)))
            async with broker.transaction():
                await queue.write("in a transaction")
                first = await queue.peek()
                assert first is not None and first.body == "m0"
            bodies = await asyncio.gather(*(queue.read() for _ in range(21)))
            assert sorted(b for b in bodies if b is not None) == sorted(
                [f"m{i}" for i in range(20)] + ["in a transaction"]
            )
            assert await queue.read() is None
            connections = open_connections(broker)
            assert 1 <= len(connections) <= 3
            assert all(isinstance(c.aio, _aiosqlite.ThreadWorker) for c in connections)

    asyncio.run(main())


@pytest.mark.usefixtures("fallback")
def test_the_fallback_stops_a_long_statement_of_a_cancelled_caller(db_path: Path) -> None:
    """The interrupt reaches a statement running on the fallback's own thread."""

    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            queue = AsyncQueue("q", broker)
            await queue.write("before")
            reached = threading.Event()
            (connection,) = open_connections(broker)
            handlers = driver_handlers(connection.driver)
            original = handlers[Execute]

            def endless_then_insert(command: Execute) -> Any:
                if "INSERT INTO messages" in command.sql and not reached.is_set():
                    reached.set()
                    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
                    connection.driver.connection.execute(endless).fetchall()
                return original(command)

            handlers[Execute] = endless_then_insert
            try:
                task = asyncio.create_task(queue.write("cancelled"))
                while not reached.is_set():
                    await asyncio.sleep(0.001)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            finally:
                handlers[Execute] = original
            await queue.write("after")
            assert await queue.read_all() == ["before", "after"]

    asyncio.run(main())


@pytest.mark.usefixtures("fallback")
def test_the_fallback_refuses_a_missing_directory_and_leaves_no_thread(tmp_path: Path) -> None:
    before = set(threading.enumerate())

    async def main() -> None:
        async with async_broker(tmp_path / "missing" / "broker.db", config=QUIET):
            pass

    with pytest.raises(DatabaseError, match="does not exist"):
        asyncio.run(main())
    for thread in set(threading.enumerate()) - before:
        thread.join(5)
        assert not thread.is_alive(), thread.name


@pytest.mark.usefixtures("fallback")
def test_the_fallback_close_stops_its_threads_and_refuses_work(db_path: Path) -> None:
    before = set(threading.enumerate())

    async def main() -> set[threading.Thread]:
        async with async_broker(db_path, pool_size=2, config=QUIET) as broker:
            await asyncio.gather(*(broker.write_many("q", [str(i)]) for i in range(10)))
            workers = {t for t in set(threading.enumerate()) - before if "_connection_worker_thread" in t.name}
            assert workers and all(t.daemon for t in workers)
            connection = open_connections(broker)[0]
        with pytest.raises(BrokerClosedError):
            connection.aio.submit(print)
        return workers

    for thread in asyncio.run(main()):
        thread.join(5)
        assert not thread.is_alive()

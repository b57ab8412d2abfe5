"""The async adapters' own surface, on asyncio and trio: opening, closing, config, the pool and its bound.

Every operation, for every adapter, is in tests/contract/; the method list,
every method once and the documented examples are in test_asyncio_api.py
and test_trio_api.py.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sansio_broker import BrokerClosedError, ConfigError, InvalidInputError, InvalidTypeError, MessageError
from tests.async_adapters.kit import QUIET, Kit
from tests.support import internals
from tests.support.rawdb import meta, rows
from tests.support.threads import threads_left

pytestmark = pytest.mark.anyio


# ------------------------------------------------------------------ opening
async def test_the_broker_function_yields_an_open_broker(
    kit: Kit, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with kit.open_broker(db_path) as broker:
        assert isinstance(broker, kit.Broker)
        assert broker.pool_size == kit.default_pool_size
        # Opened eagerly: the file exists with the v6 schema before any operation.
        assert meta(db_path)["schema_version"] == 6
        assert await broker.list_queues() == []
    # The default path, relative to the working directory, as the other adapters use.
    monkeypatch.chdir(db_path.parent)
    async with kit.broker_function() as broker:
        await kit.Queue("tasks", broker).write("hello")
    assert [b for _, b, _, _ in rows(db_path.parent / ".broker.db")] == ["hello"]


async def test_a_broker_used_directly_as_an_async_context_manager(kit: Kit, db_path: Path) -> None:
    before = kit.worker_threads()
    async with kit.Broker(db_path, pool_size=2, config=QUIET) as broker:
        assert await broker.write("q", "x") > 0
        assert len(kit.worker_threads() - before) == len(internals.open_connections(broker)) == 1
    assert internals.is_closed(broker) and internals.open_connections(broker) == []
    with pytest.raises(BrokerClosedError):
        await broker.peek("q")
    assert not threads_left(before, timeout=2, markers=(kit.worker_marker,))
    assert [b for _, b, _, _ in rows(db_path)] == ["x"]


async def test_operations_after_close_raise_broker_closed(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, config=QUIET) as broker:
        await broker.write("q", "a")
    await broker.close()  # idempotent
    with pytest.raises(BrokerClosedError):
        await broker.write("q", "b")
    with pytest.raises(BrokerClosedError):
        await broker.claim("q")
    with pytest.raises(BrokerClosedError):
        async with broker.transaction():
            pass
    assert [b for _, b, _, _ in rows(db_path)] == ["a"]


# ------------------------------------------------------------------- config
async def test_config_none_reads_the_environment_and_explicit_config_wins(
    kit: Kit, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "8")
    monkeypatch.setenv("BROKER_BUSY_TIMEOUT", "1234")
    async with kit.open_broker(db_path, pool_size=2) as broker:
        assert broker.config.max_message_size == 8
        await broker.write("q", "12345678")
        with pytest.raises(MessageError):
            await broker.write("q", "123456789")
        (connection,) = internals.sqlite_connections(broker)
        assert connection.execute("PRAGMA busy_timeout").fetchone() == (1234,)
    async with kit.open_broker(db_path, config={"BROKER_MAX_MESSAGE_SIZE": "100"}) as broker:
        assert broker.config.max_message_size == 100
        await broker.write("q", "longer than eight bytes")
    assert [b for _, b, _, _ in rows(db_path)] == ["12345678", "longer than eight bytes"]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("BROKER_BUSY_TIMEOUT", "soon"),
        ("BROKER_BUSY_TIMEOUT", "-1"),
        ("BROKER_SYNC_MODE", "SOMETIMES"),
        ("BROKER_MAX_MESSAGE_SIZE", "0"),
        ("BROKER_VACUUM_THRESHOLD", "150"),
    ],
)
async def test_invalid_config_is_refused_by_the_constructor(
    kit: Kit, db_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    """The broker class itself refuses, before any connection or file exists.

    (The broker functions refusing a mapping or the environment, for every
    adapter, is in tests/contract/test_contract_config.py.)
    """
    before = kit.worker_threads()
    with pytest.raises(ConfigError, match=key) as info:
        kit.Broker(db_path, config={key: value})
    assert info.value.key == key
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=key):
        kit.Broker(db_path)
    assert not db_path.exists()
    assert kit.worker_threads() <= before


@pytest.mark.parametrize(
    ("pool_size", "error"), [(0, InvalidInputError), (-2, InvalidInputError), ("3", InvalidTypeError)]
)
async def test_invalid_pool_size_is_refused(kit: Kit, db_path: Path, pool_size: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="pool_size"):
        async with kit.open_broker(db_path, pool_size=pool_size):
            raise AssertionError("opened")
    assert not db_path.exists()


# --------------------------------------------------------------------- pool
@pytest.mark.parametrize("pool_size", [1, 3])
async def test_pool_size_bounds_the_connections_opened_under_load(kit: Kit, db_path: Path, pool_size: int) -> None:
    seen: list[int] = []
    async with kit.open_broker(db_path, pool_size=pool_size, config=QUIET) as broker:
        done = anyio.Event()

        async def watch() -> None:
            while not done.is_set():
                seen.append(len(internals.open_connections(broker)))
                await anyio.sleep(0)

        async def work(n: int) -> None:
            for i in range(4):
                await broker.write("q", f"{n}-{i}")
                await broker.peek("q")
                await broker.claim("q")
                seen.append(len(internals.open_connections(broker)))

        async with anyio.create_task_group() as watcher:
            watcher.start_soon(watch)
            async with anyio.create_task_group() as workers:
                for n in range(50):
                    workers.start_soon(work, n)
            done.set()
        assert await broker.queue_stats("q") == ("q", 0, 200)
    assert max(seen) <= pool_size
    # The bound is reached: the pool really is used, not one connection for all.
    assert max(seen) == pool_size

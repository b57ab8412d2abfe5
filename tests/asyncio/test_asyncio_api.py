"""The asyncio adapter's own surface: opening, the pool and its bound, the documented example.

Every operation, for every adapter, is in tests/contract/.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncio_support import QUIET, registry, run, worker_threads
from support.rawdb import meta

from sansio_broker import ConfigError, InvalidInputError, InvalidTypeError
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker


# ------------------------------------------------------------------ opening
def test_async_broker_yields_an_open_async_broker(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path) as broker:
            assert isinstance(broker, AsyncBroker)
            assert broker.pool_size == 10
            # Opened eagerly: the file exists with the v6 schema before any operation.
            assert meta(db_path)["schema_version"] == 6
            assert await broker.list_queues() == []

    run(main())


@pytest.mark.parametrize("pool_size", [1, 3])
def test_pool_size_bounds_the_connections_opened_under_load(db_path: Path, pool_size: int) -> None:
    seen: list[int] = []

    async def main() -> None:
        async with async_broker(db_path, pool_size=pool_size, config=QUIET) as broker:
            done = asyncio.Event()

            async def watch() -> None:
                while not done.is_set():
                    seen.append(len(registry(broker)))
                    await asyncio.sleep(0)

            async def work(n: int) -> None:
                for i in range(4):
                    await broker.write("q", f"{n}-{i}")
                    await broker.peek("q")
                    await broker.claim("q")
                    seen.append(len(registry(broker)))

            watcher = asyncio.create_task(watch())
            await asyncio.gather(*(work(n) for n in range(50)))
            done.set()
            await watcher
            assert await broker.queue_stats("q") == (("q", 0, 200))

    run(main())
    assert max(seen) <= pool_size
    # The bound is reached: the pool really is used, not one connection for all.
    assert max(seen) == pool_size


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
def test_invalid_config_is_refused_by_the_constructor(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: str
) -> None:
    """``AsyncBroker(...)`` itself refuses, before any connection or file exists.

    (``async_broker`` refusing a mapping or the environment, for every
    adapter, is in tests/contract/test_contract_config.py.)
    """
    before = worker_threads()
    with pytest.raises(ConfigError, match=key) as info:
        AsyncBroker(db_path, config={key: value})
    assert info.value.key == key
    monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=key):
        AsyncBroker(db_path)
    assert not db_path.exists()
    assert worker_threads() <= before


@pytest.mark.parametrize(
    ("pool_size", "error"), [(0, InvalidInputError), (-2, InvalidInputError), ("3", InvalidTypeError)]
)
def test_invalid_pool_size_is_refused(db_path: Path, pool_size: object, error: type[Exception]) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=pool_size):  # type: ignore[arg-type]
            raise AssertionError("opened")

    with pytest.raises(error, match="pool_size"):
        run(main())
    assert not db_path.exists()


def test_the_documented_example_runs(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The module docstring's usage, with the default relative path."""
    monkeypatch.chdir(db_path.parent)
    printed: list[object] = []

    async def main() -> None:
        async with async_broker("app.db", pool_size=10) as broker:
            queue = AsyncQueue("tasks", broker)
            await queue.write("hello")
            printed.append(await queue.read())
            # The original example's quick start.
            for i in range(3):
                await queue.write(f"task {i}")
            printed.append(await queue.size())
            printed.append(await queue.read_all())
            async for message in queue.stream(peek=True):
                printed.append(message)
            printed.append(await broker.list_queues())
            printed.append(await broker.get_queue_stats())

    run(main())
    assert printed == ["hello", 3, ["task 0", "task 1", "task 2"], ["tasks"], [("tasks", 0, 4)]]
    assert (db_path.parent / "app.db").exists()

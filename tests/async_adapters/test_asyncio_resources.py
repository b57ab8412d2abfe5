"""Close with work in flight (asyncio); the rest of close on both runtimes is in test_async_resources.py."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from sansio_broker import BrokerClosedError
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue
from sansio_broker.commands import Execute
from tests.async_adapters.asyncio_support import QUIET, registry, run, threads_left, worker_threads
from tests.async_adapters.kit import blocked_insert, grow
from tests.support import internals
from tests.support.rawdb import rows


class Boom(Exception):
    pass


def test_close_while_work_is_in_flight(db_path: Path) -> None:
    """Close with an abandoned operation still running, an open stream batch and a held transaction."""
    before = worker_threads()

    async def main() -> None:
        broker = await AsyncBroker(db_path, pool_size=4, config=QUIET).open()
        await grow(broker)
        await broker.write_many("jobs", ["a", "b", "c", "d"])

        # 1. An operation whose caller was cancelled, still blocked in its worker thread.
        proceed = threading.Event()
        reached = threading.Event()
        drivers = [c.driver for c in registry(broker)]
        originals = [internals.driver_handlers(d)[Execute] for d in drivers]

        blocking = blocked_insert(reached, proceed)
        for driver, original in zip(drivers, originals, strict=True):
            internals.driver_handlers(driver)[Execute] = blocking(original)
        abandoned = asyncio.create_task(broker.write("q", "abandoned"))
        while not reached.is_set():
            await asyncio.sleep(0.001)
        abandoned.cancel()
        threading.Timer(0.2, proceed.set).start()

        # 2. A stream whose batch is open (it holds the write lock) in another task.
        in_batch = asyncio.Event()

        async def consumer() -> None:
            async for _ in AsyncQueue("jobs", broker).stream(commit_interval=3):
                in_batch.set()
                await asyncio.sleep(30)

        streaming = asyncio.create_task(consumer())
        await in_batch.wait()

        # 3. A transaction held open by a third task.
        holding = asyncio.Event()

        async def holder() -> None:
            async with broker.transaction():
                holding.set()
                await asyncio.sleep(30)

        held = asyncio.create_task(holder())
        await asyncio.sleep(0.02)

        await asyncio.wait_for(broker.close(), 20)
        assert not threads_left(before, timeout=2)
        for task in (streaming, held, abandoned):
            task.cancel()
        await asyncio.gather(streaming, held, abandoned, return_exceptions=True)
        with pytest.raises(BrokerClosedError):
            await broker.write("q", "after close")

    run(main())
    assert not threads_left(before, timeout=2)
    # Nothing that was open got committed: the batch and the abandoned write are gone.
    assert [b for q, b, _, c in rows(db_path) if q == "jobs" and c == 1] == []
    assert "abandoned" not in [b for _, b, _, _ in rows(db_path)]

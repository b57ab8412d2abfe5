"""asyncio streams: cancelled consumers, ``aclose``/``async with``, dropped streams, many tasks.

What every adapter shares (redelivery, commit, exactly-once claims, peeks,
refusals while a batch is open) is in tests/contract/test_contract_streams.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncio_support import QUIET, assert_clean, run, settle
from support.rawdb import rows

from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker

JOBS = [f"job{i}" for i in range(7)]


def claimed(path: Path, queue: str = "jobs") -> list[str]:
    """Bodies committed as claimed, as another connection sees them."""
    return [b for _, b, _, c in rows(path, queue) if c == 1]


async def loaded(path: Path, pool_size: int = 3) -> tuple[AsyncBroker, AsyncQueue]:
    broker = await AsyncBroker(path, pool_size=pool_size, config=QUIET).open()
    queue = AsyncQueue("jobs", broker)
    await queue.write_many(JOBS)
    return broker, queue


def test_cancellation_of_the_consumer_rolls_back_and_redelivers(db_path: Path) -> None:
    async def main() -> None:
        broker, queue = await loaded(db_path)
        try:
            got: list[str] = []
            holding = asyncio.Event()

            async def consumer() -> None:
                async for body in queue.stream(commit_interval=3):
                    got.append(body)
                    if len(got) == 4:
                        holding.set()
                        await asyncio.sleep(30)

            task = asyncio.create_task(consumer())
            await holding.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await settle(broker)
            assert claimed(db_path) == JOBS[:3]
            assert await queue.read_all() == JOBS[3:]
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


def test_explicit_aclose_and_async_with_roll_back(db_path: Path) -> None:
    async def main() -> None:
        broker, queue = await loaded(db_path)
        try:
            stream = broker.stream("jobs", commit_interval=10)
            assert (await stream.__anext__()).body == "job0"  # type: ignore[attr-defined]
            await stream.aclose()  # type: ignore[attr-defined]
            await stream.aclose()  # type: ignore[attr-defined]  # idempotent
            with pytest.raises(StopAsyncIteration):
                await stream.__anext__()
            assert claimed(db_path) == []

            async with queue.stream(commit_interval=2) as bodies:  # type: ignore[attr-defined]
                assert await bodies.__anext__() == "job0"
            assert claimed(db_path) == []
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


def test_a_dropped_batch_is_closed_in_the_background(db_path: Path) -> None:
    """A stream dropped without closing rolls back in the background; the task is not held."""

    async def main() -> None:
        broker, queue = await loaded(db_path, pool_size=1)
        try:
            stream = queue.stream(commit_interval=3)
            assert await stream.__anext__() == "job0"
            del stream
            # The only connection comes back once the batch rolled back.
            assert await asyncio.wait_for(queue.write("new"), 10) > 0
            await settle(broker)
            assert claimed(db_path) == []
            assert await queue.size() == 8
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


def test_streams_of_many_tasks_share_the_queue(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=4, config=QUIET) as broker:
            await broker.write_many("jobs", [f"j{i}" for i in range(60)])

            async def consumer() -> list[str]:
                return [b async for b in AsyncQueue("jobs", broker).stream(commit_interval=5)]

            results = await asyncio.gather(*(consumer() for _ in range(4)))
            everything = [b for r in results for b in r]
            assert sorted(everything) == sorted(f"j{i}" for i in range(60))
            assert len(everything) == 60  # all batches committed: no redelivery
            await assert_clean(broker)

    run(main())

"""Streams: at-least-once batches, exactly-once claims, peeks, and how they end."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncio_support import QUIET, assert_clean, run, settle
from support.rawdb import rows

from sansio_broker import Message, TransactionError
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker

JOBS = [f"job{i}" for i in range(7)]


class Boom(Exception):
    pass


def claimed(path: Path, queue: str = "jobs") -> list[str]:
    """Bodies committed as claimed, as another connection sees them."""
    return [b for _, b, _, c in rows(path, queue) if c == 1]


async def loaded(path: Path, pool_size: int = 3) -> tuple[AsyncBroker, AsyncQueue]:
    broker = await AsyncBroker(path, pool_size=pool_size, config=QUIET).open()
    queue = AsyncQueue("jobs", broker)
    await queue.write_many(JOBS)
    return broker, queue


def test_a_batch_commits_when_the_next_one_is_requested(db_path: Path) -> None:
    async def main() -> None:
        broker, queue = await loaded(db_path)
        try:
            stream = queue.stream(commit_interval=3)
            got = [await stream.__anext__() for _ in range(3)]
            assert got == JOBS[:3]
            assert claimed(db_path) == []  # the batch is still open
            assert await stream.__anext__() == "job3"  # asking for more committed it
            assert claimed(db_path) == JOBS[:3]
            rest = [b async for b in stream]
            assert rest == JOBS[4:]
            assert claimed(db_path) == JOBS  # exhausting commits the last batch
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


def test_break_rolls_back_and_redelivers(db_path: Path) -> None:
    async def main() -> None:
        broker, queue = await loaded(db_path)
        try:
            seen = []
            async for body in queue.stream(commit_interval=3):
                seen.append(body)
                if len(seen) == 5:
                    break
            await settle(broker)
            assert claimed(db_path) == JOBS[:3]  # first batch committed; the second rolled back
            assert [b async for b in queue.stream(commit_interval=3)] == JOBS[3:]
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


def test_an_exception_rolls_back_and_redelivers(db_path: Path) -> None:
    async def main() -> None:
        broker, queue = await loaded(db_path)
        try:
            with pytest.raises(Boom):
                async for message in broker.stream("jobs", commit_interval=4):
                    if message.body == "job1":
                        raise Boom
            await settle(broker)
            assert claimed(db_path) == []
            assert await queue.read_all() == JOBS
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


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


def test_the_consuming_task_may_read_inside_a_batch(db_path: Path) -> None:
    async def main() -> None:
        broker, queue = await loaded(db_path)
        try:
            async for body in queue.stream(commit_interval=3):
                if body == "job1":
                    # Reads see the batch's own (uncommitted) claims, and never wait for its lock.
                    # (Called directly: asyncio.wait_for would run them in another task.)
                    assert await queue.size() == 4
                    assert (await broker.peek("jobs")).body == "job3"  # type: ignore[union-attr]
                    for call in (
                        lambda: broker.claim("jobs"),
                        lambda: broker.write_many("other", ["x"]),
                        lambda: broker.move("jobs", "other"),
                        lambda: broker.delete("other"),
                        lambda: broker.vacuum(),
                    ):
                        with pytest.raises(TransactionError):
                            await call()
                    with pytest.raises(TransactionError):
                        async with broker.transaction():
                            pass
                    with pytest.raises(TransactionError):
                        async for _ in broker.stream("jobs", commit_interval=2):
                            pass
            assert claimed(db_path) == JOBS
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


def test_exactly_once_stream_commits_each_message_before_handing_it_over(db_path: Path) -> None:
    async def main() -> None:
        broker, queue = await loaded(db_path)
        try:
            seen = []
            async for body in queue.stream():
                seen.append(body)
                assert claimed(db_path) == seen
                # Writes from the consuming task are fine: nothing is held between messages.
                await broker.write("results", body)
                if len(seen) == 3:
                    break
            await settle(broker)
            assert claimed(db_path) == JOBS[:3]
            assert [b for _, b, _, _ in rows(db_path, "results")] == JOBS[:3]
            messages = [m async for m in queue.messages()]
            assert [m.body for m in messages] == JOBS[3:]
            assert all(isinstance(m, Message) for m in messages)
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


def test_at_most_one_message_without_all_messages(db_path: Path) -> None:
    async def main() -> None:
        broker, queue = await loaded(db_path)
        try:
            assert [b async for b in queue.stream(all_messages=False)] == ["job0"]
            assert [b async for b in queue.stream(all_messages=False, peek=True)] == ["job1"]
            ids = [m.id for m in await queue.peek_many(10)]
            got = [b async for b in broker.stream_read("jobs", exact_timestamp=ids[2])]
            assert got == ["job3"]
            assert claimed(db_path) == ["job0", "job3"]
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())


def test_peek_stream_pages_through_without_claiming(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config={**QUIET, "BROKER_GENERATOR_BATCH_SIZE": "4"}) as broker:
            ids = await broker.write_many("q", [f"m{i}" for i in range(11)])
            assert [m.id async for m in broker.stream("q", peek=True)] == ids
            assert [m.id async for m in broker.stream("q", peek=True, after_timestamp=ids[8])] == ids[9:]
            await broker.claim("q")
            assert [m.id async for m in broker.stream("q", peek=True, include_claimed=True)] == ids
            assert [m.id async for m in broker.stream("q", peek=True)] == ids[1:]
            assert claimed(db_path, "q") == ["m0"]
            await assert_clean(broker)

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

"""``async with broker.transaction():`` claim-and-write atomicity, scope, refusals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncio_support import QUIET, assert_clean, run, settle
from support.rawdb import meta, rows

from sansio_broker import Message, TransactionError
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker


class Boom(Exception):
    pass


def bodies(path: Path, queue: str) -> list[tuple[str, int]]:
    """``(body, claimed)`` of one queue, in ID order, as another connection sees them."""
    return [(b, c) for _, b, _, c in rows(path, queue)]


def test_claims_and_writes_commit_together(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            (task,) = await broker.write_many("tasks", ["job"])
            async with broker.transaction() as tx:
                assert tx is broker
                message = await broker.claim("tasks")
                assert message == Message("job", task)
                await broker.write("results", "job:done")
                await AsyncQueue("log", broker).write("claimed job")
                # Own writes are visible inside; other connections see nothing yet.
                assert [m.body for m in await broker.peek_many("results", 5)] == ["job:done"]
                assert bodies(db_path, "results") == []
                assert bodies(db_path, "tasks") == [("job", 0)]
            assert bodies(db_path, "tasks") == [("job", 1)]
            assert bodies(db_path, "results") == [("job:done", 0)]
            assert bodies(db_path, "log") == [("claimed job", 0)]
            await assert_clean(broker)

    run(main())


def test_an_exception_inside_rolls_back_claims_and_writes(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            (task,) = await broker.write_many("tasks", ["job"])
            before = rows(db_path)
            last_ts = meta(db_path)["last_ts"]
            with pytest.raises(Boom):
                async with broker.transaction():
                    assert await broker.claim("tasks") == Message("job", task)
                    await broker.write("results", "job:done")
                    await broker.write_many("results", ["more", "rows"])
                    await broker.move("tasks", "elsewhere", message_id=task)
                    raise Boom
            assert rows(db_path) == before
            assert meta(db_path)["last_ts"] == last_ts
            assert not await broker.queue_exists("results")
            assert await broker.claim("tasks") == Message("job", task)  # pending again
            await assert_clean(broker)

    run(main())


@pytest.mark.parametrize("where", ["between operations", "during an operation"])
def test_cancellation_inside_rolls_back(db_path: Path, where: str) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=2, config=QUIET) as broker:
            await broker.write_many("tasks", ["job", "other job"])
            before = rows(db_path)
            inside = asyncio.Event()

            async def worker() -> None:
                async with broker.transaction():
                    await broker.claim("tasks")
                    await broker.write("results", "job:done")
                    inside.set()
                    if where == "between operations":
                        await asyncio.sleep(30)
                    else:
                        while True:
                            await broker.write("results", "more")

            task = asyncio.create_task(worker())
            await inside.wait()
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await settle(broker)
            assert rows(db_path) == before
            assert [b async for b in AsyncQueue("tasks", broker).stream()] == ["job", "other job"]
            await assert_clean(broker)

    run(main())


def test_nested_transaction_is_refused(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            async with broker.transaction():
                await broker.write("q", "outer")
                with pytest.raises(TransactionError, match="nested"):
                    async with broker.transaction():
                        pass
                await broker.write("q", "still outer")
            assert [b for b, _ in bodies(db_path, "q")] == ["outer", "still outer"]
            await assert_clean(broker)

    run(main())


def test_other_tasks_are_not_part_of_the_transaction(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=3, config=QUIET) as broker:
            await broker.write_many("tasks", ["job"])

            async def reader() -> list[Message]:
                return await broker.peek_many("tasks", 5)

            async def writer() -> int:
                return await broker.write("independent", "from another task")

            with pytest.raises(Boom):
                async with broker.transaction():
                    await broker.claim("tasks")
                    await broker.write("results", "mine")
                    # A task started inside reads committed state on its own connection.
                    seen = await asyncio.create_task(reader())
                    assert [m.body for m in seen] == ["job"]
                    # A write from another task waits for our write lock, then commits on its own.
                    other = asyncio.create_task(writer())
                    await asyncio.sleep(0.05)
                    assert not other.done()
                    raise Boom
            written = await asyncio.wait_for(other, 10)
            assert [(b, ts) for _, b, ts, _ in rows(db_path, "independent")] == [("from another task", written)]
            assert bodies(db_path, "tasks") == [("job", 0)]
            assert bodies(db_path, "results") == []

            # And a task that runs after a committed transaction is independent of it too.
            async with broker.transaction():
                await broker.claim("tasks")
            assert await asyncio.create_task(writer()) > 0
            assert bodies(db_path, "tasks") == [("job", 1)]
            assert len(bodies(db_path, "independent")) == 2
            await assert_clean(broker)

    run(main())


def test_two_tasks_each_with_a_transaction(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=4, config=QUIET) as broker:
            await broker.write_many("tasks", [f"job{i}" for i in range(20)])

            failed_once: list[str] = []

            async def worker(n: int) -> int:
                done = 0
                while True:
                    try:
                        async with broker.transaction():
                            message = await broker.claim("tasks")
                            if message is None:
                                return done
                            await broker.write("results", f"{message.body} by {n}")
                            if message.body == "job5" and not failed_once:
                                failed_once.append(message.body)
                                raise Boom
                    except Boom:
                        pass
                    done += 1

            counts = await asyncio.gather(*(worker(n) for n in range(4)))
            assert sum(counts) == 21  # one transaction rolled back and its job was done again
            results = [b for b, _ in bodies(db_path, "results")]
            assert sorted(r.split(" by ")[0] for r in results) == sorted(f"job{i}" for i in range(20))
            await assert_clean(broker)

    run(main())


def test_an_at_least_once_stream_inside_is_refused(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            await broker.write_many("tasks", ["a", "b", "c"])
            async with broker.transaction():
                with pytest.raises(TransactionError, match="commit_interval"):
                    async for _ in broker.stream("tasks", commit_interval=2):
                        pass
                with pytest.raises(TransactionError):
                    async for _ in AsyncQueue("tasks", broker).stream(commit_interval=3):
                        pass
                # The transaction is still usable and commits normally.
                assert (await broker.claim("tasks")).body == "a"  # type: ignore[union-attr]
            assert bodies(db_path, "tasks") == [("a", 1), ("b", 0), ("c", 0)]
            await assert_clean(broker)

    run(main())


def test_an_exactly_once_stream_inside_joins_the_transaction(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            await broker.write_many("tasks", ["a", "b", "c"])
            with pytest.raises(Boom):
                async with broker.transaction():
                    async for body in AsyncQueue("tasks", broker).stream():
                        await broker.write("results", body.upper())
                    raise Boom
            assert bodies(db_path, "tasks") == [("a", 0), ("b", 0), ("c", 0)]
            assert bodies(db_path, "results") == []

            async with broker.transaction():
                async for message in broker.stream("tasks"):
                    await broker.write("results", message.body.upper())
                    assert bodies(db_path, "results") == []  # not committed yet
            assert bodies(db_path, "tasks") == [("a", 1), ("b", 1), ("c", 1)]
            assert bodies(db_path, "results") == [("A", 0), ("B", 0), ("C", 0)]
            await assert_clean(broker)

    run(main())


def test_vacuum_inside_a_transaction_is_refused(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, config=QUIET) as broker:
            await broker.write("q", "a")
            await broker.claim("q")
            async with broker.transaction():
                with pytest.raises(TransactionError):
                    await broker.vacuum()
                await broker.write("q", "b")
            assert await broker.vacuum() == 1
            await assert_clean(broker)

    run(main())


def test_a_transaction_holds_one_connection_and_gives_it_back(db_path: Path) -> None:
    async def main() -> None:
        broker = AsyncBroker(db_path, pool_size=1, config=QUIET)
        await broker.open()
        try:
            for i in range(30):
                with pytest.raises(Boom):
                    async with broker.transaction():
                        await broker.write("q", f"rolled back {i}")
                        raise Boom
                async with broker.transaction():
                    await broker.write("q", f"kept {i}")
            assert await broker.queue_stats("q") == ("q", 30, 30)
            await assert_clean(broker)
        finally:
            await broker.close()

    run(main())

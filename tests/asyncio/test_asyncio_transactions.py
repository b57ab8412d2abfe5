"""``async with broker.transaction():`` under cancellation, across tasks, and its pooled connection.

What every adapter shares (atomicity, rollback, nesting, refusals inside a
transaction) is in tests/contract/test_contract_transactions.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncio_support import QUIET, assert_clean, run, settle
from support.rawdb import rows

from sansio_broker import Message
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker


class Boom(Exception):
    pass


def bodies(path: Path, queue: str) -> list[tuple[str, int]]:
    """``(body, claimed)`` of one queue, in ID order, as another connection sees them."""
    return [(b, c) for _, b, _, c in rows(path, queue)]


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

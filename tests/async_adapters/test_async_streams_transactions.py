"""At-least-once streams and ``async with broker.transaction():`` on asyncio and trio.

A write by the consuming task inside an open batch fails at once; ``break``
out of a stream, then writing, works and the batch is delivered again; a
stream closed by ``aclose``/``async with``, dropped, or whose consumer is
cancelled rolls its batch back. Claims and writes inside a transaction commit
together and roll back together on an exception or a cancellation in each
runtime's idiom; tasks started inside are not part of it. What every adapter
shares is in tests/contract/test_contract_streams.py and
test_contract_transactions.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from sansio_broker import Message, TransactionError
from tests.async_adapters.kit import QUIET, Kit, assert_clean, settle
from tests.support.rawdb import meta, rows

pytestmark = pytest.mark.anyio

JOBS = [f"job{i}" for i in range(7)]


class Boom(Exception):
    pass


def claimed(path: Path, queue: str = "jobs") -> list[str]:
    """Bodies committed as claimed, as another connection sees them."""
    return [b for _, b, _, c in rows(path, queue) if c == 1]


def bodies(path: Path, queue: str) -> list[tuple[str, int]]:
    """``(body, claimed)`` of one queue, in ID order, as another connection sees them."""
    return [(b, c) for _, b, _, c in rows(path, queue)]


# ------------------------------------------------------------------ streams
async def test_a_batch_commits_when_the_next_one_is_requested(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=2, config=QUIET) as broker:
        queue = kit.Queue("jobs", broker)
        await queue.write_many(JOBS)
        stream = queue.stream(commit_interval=3)
        assert [await stream.__anext__() for _ in range(3)] == JOBS[:3]
        assert claimed(db_path) == []  # the batch is still open
        assert await stream.__anext__() == "job3"  # asking for more committed it
        assert claimed(db_path) == JOBS[:3]
        assert [b async for b in stream] == JOBS[4:]
        assert claimed(db_path) == JOBS
        await assert_clean(broker)


async def test_explicit_aclose_and_async_with_roll_back(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=3, config=QUIET) as broker:
        queue = kit.Queue("jobs", broker)
        await queue.write_many(JOBS)
        stream = broker.stream("jobs", commit_interval=10)
        assert (await stream.__anext__()).body == "job0"
        await stream.aclose()
        await stream.aclose()  # idempotent
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        assert claimed(db_path) == []

        async with queue.stream(commit_interval=2) as bodies_:
            assert await bodies_.__anext__() == "job0"
        assert claimed(db_path) == []
        await assert_clean(broker)


async def test_a_write_inside_an_open_batch_raises_transaction_error_at_once(kit: Kit, db_path: Path) -> None:
    elapsed: list[float] = []
    # A long busy timeout: a write that waited on the batch's lock would take 5 s.
    async with kit.open_broker(db_path, pool_size=3, config={**QUIET, "BROKER_BUSY_TIMEOUT": "5000"}) as broker:
        queue = kit.Queue("jobs", broker)
        await queue.write_many(JOBS)
        with pytest.raises(TransactionError, match="stream") as info:
            async for _body in queue.stream(commit_interval=5):
                start = time.monotonic()
                try:
                    await queue.write("result")
                finally:
                    elapsed.append(time.monotonic() - start)
        assert "commit_interval=1" in str(info.value) or "transaction()" in str(info.value)
        await settle(broker)
        # The abandoned batch rolled back; the write never landed.
        assert claimed(db_path) == []
        assert await queue.read_all() == JOBS
        await assert_clean(broker)
    assert elapsed and elapsed[0] < 1.0
    assert "result" not in [b for _, b, _, _ in rows(db_path)]


async def test_other_writes_of_the_consuming_task_fail_at_once_too(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=3, config=QUIET) as broker:
        queue = kit.Queue("jobs", broker)
        await queue.write_many(JOBS)
        async for body in queue.stream(commit_interval=3):
            if body != "job1":
                continue
            # Reads see the batch's own claims and never wait for its lock.
            assert await queue.size() == 4
            peeked = await broker.peek("jobs")
            assert peeked is not None and peeked.body == "job3"
            for call in (
                lambda: broker.claim("jobs"),
                lambda: broker.write_many("other", ["x"]),
                lambda: broker.move("jobs", "other"),
                lambda: broker.delete("other"),
                lambda: broker.vacuum(),
            ):
                with anyio.fail_after(2), pytest.raises(TransactionError):
                    await call()
            with pytest.raises(TransactionError):
                async with broker.transaction():
                    pass
        assert claimed(db_path) == JOBS
        await assert_clean(broker)


@pytest.mark.parametrize("pool_size", [1, 4])
async def test_break_then_write_works_and_the_batch_is_delivered_again(kit: Kit, db_path: Path, pool_size: int) -> None:
    async with kit.open_broker(db_path, pool_size=pool_size, config=QUIET) as broker:
        queue = kit.Queue("jobs", broker)
        await queue.write_many(JOBS)
        async for body in queue.stream(commit_interval=5):
            assert body == "job0"
            break
        with anyio.fail_after(10):
            written = await queue.write("after the break")
            await broker.write("elsewhere", "also after")
        await settle(broker)
        # The write committed on its own: the batch's rollback did not take it along.
        after = [(b, ts) for _, b, ts, _ in rows(db_path, "jobs") if b == "after the break"]
        assert after == [("after the break", written)]
        assert bodies(db_path, "elsewhere") == [("also after", 0)]
        assert claimed(db_path) == []
        again = [b async for b in queue.stream(commit_interval=5)]
        assert again == [*JOBS, "after the break"]
        await assert_clean(broker)


async def test_break_after_a_committed_batch_redelivers_only_the_open_one(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=2, config=QUIET) as broker:
        queue = kit.Queue("jobs", broker)
        await queue.write_many(JOBS)
        seen = []
        async for body in queue.stream(commit_interval=3):
            seen.append(body)
            if len(seen) == 5:
                break
        await settle(broker)
        assert claimed(db_path) == JOBS[:3]
        assert [b async for b in queue.stream(commit_interval=3)] == JOBS[3:]
        await assert_clean(broker)


async def test_a_cancelled_consumer_rolls_back_and_the_batch_is_delivered_again(
    kit: Kit, cancel_style: str, db_path: Path
) -> None:
    async with kit.open_broker(db_path, pool_size=2, config=QUIET) as broker:
        queue = kit.Queue("jobs", broker)
        await queue.write_many(JOBS)
        got: list[str] = []
        holding = threading.Event()

        async def consume() -> None:
            async for body in queue.stream(commit_interval=3):
                got.append(body)
                if len(got) == 4:
                    holding.set()
                    await anyio.sleep_forever()

        ended = await kit.run_cancelled(consume, cancel_style, when=holding)
        assert ended.kind == "cancelled"
        await settle(broker)
        assert got == JOBS[:4]
        assert claimed(db_path) == JOBS[:3]
        assert await queue.read_all() == JOBS[3:]
        await assert_clean(broker)


async def test_a_dropped_open_batch_is_closed_in_the_background(kit: Kit, db_path: Path) -> None:
    """A stream dropped without closing rolls back in the background; the task is not held."""
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        queue = kit.Queue("jobs", broker)
        await queue.write_many(JOBS)
        stream = queue.stream(commit_interval=3)
        assert await stream.__anext__() == "job0"
        del stream
        with anyio.fail_after(10):  # the only connection comes back once the batch rolled back
            assert await queue.write("new") > 0
        await settle(broker)
        assert claimed(db_path) == []
        assert await queue.size() == 8
        await assert_clean(broker)


async def test_streams_of_many_tasks_share_the_queue(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=4, config=QUIET) as broker:
        await broker.write_many("jobs", [f"j{i}" for i in range(60)])
        results: list[list[str]] = []

        async def consumer() -> None:
            results.append([b async for b in kit.Queue("jobs", broker).stream(commit_interval=5)])

        async with anyio.create_task_group() as group:
            for _ in range(4):
                group.start_soon(consumer)
        everything = [b for r in results for b in r]
        assert sorted(everything) == sorted(f"j{i}" for i in range(60))
        assert len(everything) == 60  # all batches committed: no redelivery
        await assert_clean(broker)


# ------------------------------------------------------------ transactions
async def test_claim_and_write_commit_together(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, config=QUIET) as broker:
        (task,) = await broker.write_many("tasks", ["job"])
        async with broker.transaction():
            assert await broker.claim("tasks") == Message("job", task)
            await broker.write("results", "job:done")
            await kit.Queue("log", broker).write("claimed job")
            # Own writes are visible inside; other connections see nothing yet.
            assert [m.body for m in await broker.peek_many("results", 5)] == ["job:done"]
            assert bodies(db_path, "results") == []
            assert bodies(db_path, "tasks") == [("job", 0)]
        assert bodies(db_path, "tasks") == [("job", 1)]
        assert bodies(db_path, "results") == [("job:done", 0)]
        assert bodies(db_path, "log") == [("claimed job", 0)]
        await assert_clean(broker)


async def test_an_exception_rolls_claim_and_write_back_together(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, config=QUIET) as broker:
        (task,) = await broker.write_many("tasks", ["job"])
        before, last_ts = rows(db_path), meta(db_path)["last_ts"]
        with pytest.raises(Boom):
            async with broker.transaction():
                assert await broker.claim("tasks") == Message("job", task)
                await broker.write("results", "job:done")
                await broker.write_many("results", ["more", "rows"])
                raise Boom
        assert rows(db_path) == before
        assert meta(db_path)["last_ts"] == last_ts
        assert await broker.claim("tasks") == Message("job", task)  # pending again
        await assert_clean(broker)


@pytest.mark.parametrize("where", ["between operations", "during an operation"])
async def test_cancellation_inside_a_transaction_rolls_back(
    kit: Kit, cancel_style: str, db_path: Path, where: str
) -> None:
    async with kit.open_broker(db_path, pool_size=2, config=QUIET) as broker:
        await broker.write_many("tasks", ["job", "other job"])
        before = rows(db_path)
        inside = threading.Event()

        async def worker() -> None:
            async with broker.transaction():
                await broker.claim("tasks")
                await broker.write("results", "job:done")
                inside.set()
                if where == "between operations":
                    await anyio.sleep_forever()
                while True:
                    await broker.write("results", "more")

        ended = await kit.run_cancelled(worker, cancel_style, when=inside)
        assert ended.kind == "cancelled"
        await settle(broker)
        assert rows(db_path) == before
        assert [b async for b in kit.Queue("tasks", broker).stream()] == ["job", "other job"]
        await assert_clean(broker)


async def test_nested_transaction_and_batches_inside_are_refused(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, config=QUIET) as broker:
        await broker.write_many("tasks", ["a", "b"])
        async with broker.transaction():
            await broker.write("q", "outer")
            with pytest.raises(TransactionError, match="nested"):
                async with broker.transaction():
                    pass
            with pytest.raises(TransactionError, match="commit_interval"):
                async for _ in broker.stream("tasks", commit_interval=2):
                    pass
            # An exactly-once stream joins the transaction.
            assert [b async for b in kit.Queue("tasks", broker).stream()] == ["a", "b"]
            await broker.write("q", "still outer")
        assert bodies(db_path, "q") == [("outer", 0), ("still outer", 0)]
        assert bodies(db_path, "tasks") == [("a", 1), ("b", 1)]
        await assert_clean(broker)


async def test_tasks_started_inside_are_not_part_of_the_transaction(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=3, config=QUIET) as broker:
        await broker.write_many("tasks", ["job"])
        written: list[int] = []
        seen: list[list[Message]] = []

        async def writer() -> None:
            written.append(await broker.write("independent", "from another task"))

        async def reader() -> None:
            seen.append(await broker.peek_many("tasks", 5))

        async with anyio.create_task_group() as group:
            with pytest.raises(Boom):
                async with broker.transaction():
                    await broker.claim("tasks")
                    await broker.write("results", "mine")
                    group.start_soon(reader)
                    group.start_soon(writer)
                    # The reader sees committed state; the writer waits for our lock.
                    with anyio.fail_after(5):
                        while not seen:
                            await anyio.sleep(0.005)
                    await anyio.sleep(0.05)
                    assert not written
                    raise Boom
        assert [m.body for m in seen[0]] == ["job"]
        assert [(b, ts) for _, b, ts, _ in rows(db_path, "independent")] == [("from another task", written[0])]
        assert bodies(db_path, "tasks") == [("job", 0)]
        assert bodies(db_path, "results") == []

        # And a task that runs after a committed transaction is independent of it too.
        async with broker.transaction():
            await broker.claim("tasks")
        async with anyio.create_task_group() as group:
            group.start_soon(writer)
        assert written[1] > 0
        assert bodies(db_path, "tasks") == [("job", 1)]
        assert len(bodies(db_path, "independent")) == 2
        await assert_clean(broker)


async def test_a_transaction_gives_its_only_connection_back_every_time(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        for i in range(20):
            with pytest.raises(Boom):
                async with broker.transaction():
                    await broker.write("q", f"rolled back {i}")
                    raise Boom
            with anyio.move_on_after(0.001):
                async with broker.transaction():
                    await broker.write("q", f"cancelled {i}")
                    await anyio.sleep_forever()
            async with broker.transaction():
                await broker.write("q", f"kept {i}")
        assert await broker.queue_stats("q") == ("q", 20, 20)
        await assert_clean(broker)


async def test_transactions_of_many_tasks_each_job_done_once(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=4, config=QUIET) as broker:
        await broker.write_many("tasks", [f"job{i}" for i in range(40)])
        failed_once: list[str] = []
        done: list[Any] = []

        async def worker(n: int) -> None:
            while True:
                try:
                    async with broker.transaction():
                        message = await broker.claim("tasks")
                        if message is None:
                            return
                        await broker.write("results", f"{message.body} by {n}")
                        if message.body == "job5" and not failed_once:
                            failed_once.append(message.body)
                            raise Boom
                except Boom:
                    pass
                done.append(n)

        async with anyio.create_task_group() as group:
            for n in range(6):
                group.start_soon(worker, n)
        results = [b for b, _ in bodies(db_path, "results")]
        assert sorted(r.split(" by ")[0] for r in results) == sorted(f"job{i}" for i in range(40))
        assert failed_once == ["job5"]  # one transaction rolled back; its job was done again
        assert len(done) == 41
        await assert_clean(broker)

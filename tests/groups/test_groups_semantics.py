"""A single caller, and explicit transactions, behave as before (issue 5, item 6).

One caller writing and reading in turn sees its own messages, oldest first.
Writes inside ``broker.transaction()`` are never grouped with other callers'
writes: nobody sees them before the transaction commits, a rollback removes
exactly them while concurrent writers outside land, a committed transaction's
messages are contiguous in ID order, and claims rolled back go back to
pending for the others.
"""

from __future__ import annotations

import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker, Queue
from tests.groups.groups_support import QUIET, AsyncKit, Written, check_claimed_exactly_once, check_written, run_threads
from tests.support.rawdb import connect, rows


class Boom(Exception):
    """Raised inside a transaction to roll it back."""


def visible(path: Path, bodies: list[str]) -> list[str]:
    """Which of ``bodies`` a separate plain-sqlite3 reader sees now."""
    with connect(path) as raw:
        found = {b for (b,) in raw.execute("SELECT body FROM messages")}
    return [b for b in bodies if b in found]


# ---------------------------------------------------- one caller, in turn
def test_single_caller_round_trips(kit: AsyncKit, db_path: Path) -> None:
    async def main() -> None:
        async with kit.open(db_path) as broker:
            queue = kit.queue("q", broker)
            first = await broker.write("q", "hello")
            assert await broker.peek("q") == Message("hello", first)
            assert await broker.claim("q") == Message("hello", first)
            assert await broker.claim("q") is None
            ids = [await queue.write(f"m{i}") for i in range(5)]
            assert all(a < b for a, b in pairwise([first, *ids]))
            assert await queue.read() == "m0"
            assert await queue.claim() == Message("m1", ids[1])
            more = await queue.write_many(["m5", "m6"])
            assert ids[-1] < more[0] < more[1]
            assert await queue.read_all() == ["m2", "m3", "m4", "m5", "m6"]
            assert await queue.read() is None
            # A write is visible to anyone the moment it returns; a claim likewise.
            last = await broker.write("q", "last")
            assert visible(db_path, ["last"]) == ["last"]
            assert await broker.claim("q", message_id=last) == Message("last", last)
        assert [(b, c) for _, b, _, c in rows(db_path)] == [
            ("hello", 1),
            *[(f"m{i}", 1) for i in range(7)],
            ("last", 1),
        ]

    kit.run(main)


def test_blocking_single_caller_round_trips(db_path: Path) -> None:
    with Broker(db_path, config=QUIET) as broker:
        queue = Queue("q", broker)
        first = broker.write("q", "hello")
        assert broker.claim("q") == Message("hello", first)
        assert broker.claim("q") is None
        ids = [queue.write(f"m{i}") for i in range(5)]
        assert all(a < b for a, b in pairwise([first, *ids]))
        assert queue.read() == "m0"
        assert queue.claim() == Message("m1", ids[1])
        assert queue.read_all() == ["m2", "m3", "m4"]
        assert queue.read() is None
        last = broker.write("q", "last")
        assert visible(db_path, ["last"]) == ["last"]
        assert broker.claim("q", message_id=last) == Message("last", last)


def test_read_many_claims_a_batch_in_one_go(kit: AsyncKit, db_path: Path) -> None:
    async def main() -> None:
        async with kit.open(db_path) as broker:
            queue = kit.queue("q", broker)
            await queue.write_many([f"m{i}" for i in range(5)])
            assert await queue.read_many(3) == ["m0", "m1", "m2"]
            assert await queue.read_many(10) == ["m3", "m4"]
            assert await queue.read_many(1) == []
        assert [c for _, _, _, c in rows(db_path)] == [1] * 5

    kit.run(main)


def test_blocking_read_many_claims_a_batch_in_one_go(db_path: Path) -> None:
    with Broker(db_path, config=QUIET) as broker:
        queue = Queue("q", broker)
        queue.write_many([f"m{i}" for i in range(5)])
        assert queue.read_many(3) == ["m0", "m1", "m2"]
        assert queue.read_many(10) == ["m3", "m4"]
        assert queue.read_many(1) == []
    assert [c for _, _, _, c in rows(db_path)] == [1] * 5


# ------------------------------------------- transactions among group commits
OUTSIDE = 30
PER_OUTSIDE = 5


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_transaction_writes_are_not_grouped_with_concurrent_writers(kit: AsyncKit, db_path: Path, outcome: str) -> None:
    outside: list[Written] = [[] for _ in range(OUTSIDE)]
    inside: Written = []
    seen_early: list[str] = []

    async def main() -> None:
        async with kit.open(db_path) as broker:
            begun = False

            async def transaction() -> None:
                nonlocal begun
                try:
                    async with broker.transaction():
                        for i in range(5):
                            body = f"tx-{i}"
                            inside.append(("q", body, await broker.write("q", body)))
                            begun = True
                            await kit.sleep(0.01)  # the outside writers queue up meanwhile
                        # Written, not committed: nobody else may see it yet.
                        seen_early.extend(visible(db_path, [b for _, b, _ in inside]))
                        if outcome == "rollback":
                            raise Boom
                except Boom:
                    pass

            async def writer(n: int) -> None:
                while not begun and n % 2:  # half of them start once the transaction holds the lock
                    await kit.sleep(0.001)
                for i in range(PER_OUTSIDE):
                    body = f"out{n}-{i}"
                    outside[n].append(("q", body, await broker.write("q", body)))

            await kit.gather([transaction] + [lambda n=n: writer(n) for n in range(OUTSIDE)])
            # The broker works on afterwards.
            outside.append([("q", "after", await broker.write("q", "after"))])

    kit.run(main)
    assert not seen_early, f"uncommitted transaction writes visible to others: {seen_early}"
    assert len(inside) == 5
    if outcome == "rollback":
        check_written(db_path, outside)  # exact: none of the transaction's rows
    else:
        check_written(db_path, [*outside, inside])
        order = [body for _, body, _, _ in rows(db_path)]
        start = order.index("tx-0")
        assert order[start : start + 5] == [f"tx-{i}" for i in range(5)], "the transaction's IDs are not contiguous"


def test_claims_rolled_back_go_back_to_the_other_readers(kit: AsyncKit, db_path: Path) -> None:
    async def main() -> None:
        async with kit.open(db_path) as broker:
            bodies = [f"m{i}" for i in range(200)]
            written = dict(zip(await broker.write_many("q", bodies), bodies, strict=True))
            in_transaction: list[Message] = []
            per_reader: list[list[Message]] = [[] for _ in range(20)]
            begun = False

            async def transaction() -> None:
                nonlocal begun
                try:
                    async with broker.transaction():
                        for _ in range(5):
                            message = await broker.claim("q")
                            assert message is not None
                            in_transaction.append(message)
                            await broker.write("results", f"done {message.body}")
                            begun = True
                            await kit.sleep(0.01)
                        raise Boom
                except Boom:
                    pass

            async def reader(n: int) -> None:
                while not begun:
                    await kit.sleep(0.001)
                while (message := await broker.claim("q")) is not None:
                    per_reader[n].append(message)

            await kit.gather([transaction] + [lambda n=n: reader(n) for n in range(20)])
            assert [m.id for m in in_transaction] == sorted(written)[:5]
            check_claimed_exactly_once(db_path, [m for got in per_reader for m in got], written, "q")
            assert await broker.peek_many("results", 10) == []

    kit.run(main)


# ---------------------------------------------------------------- blocking
@pytest.mark.parametrize("outcome", ["rollback", "commit"])
def test_blocking_transaction_writes_are_not_grouped_with_other_threads(db_path: Path, outcome: str) -> None:
    outside: list[Written] = [[] for _ in range(8)]
    inside: Written = []
    seen_early: list[str] = []
    begun = threading.Event()

    with Broker(db_path, config=QUIET) as broker:

        def work(n: int, barrier: threading.Barrier) -> None:
            barrier.wait()
            if n == 0:
                try:
                    with broker.transaction():
                        for i in range(5):
                            body = f"tx-{i}"
                            inside.append(("q", body, broker.write("q", body)))
                            begun.set()
                            time.sleep(0.01)
                        seen_early.extend(visible(db_path, [b for _, b, _ in inside]))
                        if outcome == "rollback":
                            raise Boom
                except Boom:
                    pass
                return
            if n % 2:
                begun.wait(10)
            for i in range(20):
                body = f"out{n}-{i}"
                outside[n].append(("q", body, broker.write("q", body)))

        run_threads(8, work)
    assert not seen_early, f"uncommitted transaction writes visible to others: {seen_early}"
    if outcome == "rollback":
        check_written(db_path, outside)
    else:
        check_written(db_path, [*outside, inside])
        order = [body for _, body, _, _ in rows(db_path)]
        start = order.index("tx-0")
        assert order[start : start + 5] == [f"tx-{i}" for i in range(5)], "the transaction's IDs are not contiguous"

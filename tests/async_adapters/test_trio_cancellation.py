"""Cancellation (``move_on_after``, ``fail_after``, a cancelled nursery) at any point.

A claim either hands its message to a task that goes on, leaves it pending,
or (cancelled while COMMIT ran) raises ``CommitOutcomeUnknown``; nothing
else. No transaction stays open, no connection leaks, a long statement is
interrupted rather than waited out, and the connection is usable again.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from sansio_broker import Message
from sansio_broker.adapters.trio import CommitOutcomeUnknown, TrioBroker, TrioQueue, trio_broker
from sansio_broker.commands import Commit
from tests.async_adapters.trio_support import (
    QUIET,
    assert_clean,
    busy,
    open_transactions,
    patched_handler,
    run,
    settle,
    slow_commit,
)
from tests.support import internals
from tests.support.rawdb import connect, meta, rows

STYLES = ["move_on_after", "fail_after", "nursery"]


# ------------------------------------------------------------------ helpers
def slow_row_sql(seconds: float) -> Callable[[Any], Any]:
    def slow_row(value: Any) -> Any:
        time.sleep(seconds)
        return value

    return slow_row


def install_slow_triggers(broker: TrioBroker, seconds_per_row: float) -> None:
    """Make every row an UPDATE, INSERT or DELETE touches cost ``seconds_per_row``.

    A SQL function that sleeps, called by TEMP triggers: they exist only on
    the pooled connections (the file and other connections are untouched).
    """
    for connection in internals.open_connections(broker):
        raw = connection.driver.connection
        raw.create_function("slow_row", 1, slow_row_sql(seconds_per_row))
        for event, row in (("UPDATE", "NEW"), ("INSERT", "NEW"), ("DELETE", "OLD")):
            raw.execute(
                f"CREATE TEMP TRIGGER slow_{event.lower()} AFTER {event} ON main.messages "
                f"BEGIN SELECT slow_row({row}.ts); END"
            )


async def wait_until_free(broker: TrioBroker, timeout: float) -> float:
    """Seconds until no abandoned operation runs on any connection (``timeout`` if never)."""
    start = time.monotonic()
    while any(busy(broker)) and time.monotonic() - start < timeout:
        await trio.sleep(0.005)
    return time.monotonic() - start


# ------------------------------------------- random cancellation of claims
def test_commit_outcome_unknown_is_not_swallowed_by_the_cancel_scope(db_path: Path) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            started = threading.Event()
            with patched_handler(broker, Commit, slow_commit(started, 0.5)), pytest.raises(CommitOutcomeUnknown):
                with trio.move_on_after(0.1):  # the write reaches COMMIT within this
                    await broker.write("q", "x")
                raise AssertionError("move_on_after swallowed CommitOutcomeUnknown")
            assert started.is_set()
            await settle(broker)
            await assert_clean(broker)

    run(main)


def test_cancelled_while_waiting_for_another_connections_write_lock(db_path: Path) -> None:
    """The worker waits in BEGIN IMMEDIATE; once the lock is free, nothing is written for the gone caller."""

    async def main() -> None:
        async with trio_broker(db_path, pool_size=2, config={**QUIET, "BROKER_BUSY_TIMEOUT": "10000"}) as broker:
            await broker.write("q", "before")
            before = rows(db_path)
            with connect(db_path) as other:
                other.execute("BEGIN IMMEDIATE")
                start = time.monotonic()
                with trio.move_on_after(0.1) as scope:
                    await broker.write("q", "cancelled")
                assert scope.cancelled_caught
                assert time.monotonic() - start < 1.0
                await trio.sleep(0.2)
                other.execute("ROLLBACK")
            await settle(broker)
            assert rows(db_path) == before
            await assert_clean(broker)

    run(main)


# ---------------------------------------------------- long statements
INTERRUPTIBLE: dict[str, Callable[[TrioBroker], Awaitable[Any]]] = {
    "claim_all": lambda b: b.claim_all("q"),
    "read all": lambda b: b.read("q", all_messages=True),
    "move_all": lambda b: b.move_all("q", "elsewhere"),
    "delete queue": lambda b: b.delete("q"),
    "delete all": lambda b: b.delete(),
    "stream batch": lambda b: TrioQueue("q", b).stream(commit_interval=1000).__anext__(),
}


@pytest.mark.parametrize("operation", list(INTERRUPTIBLE))
def test_a_long_statement_is_interrupted_not_waited_out(db_path: Path, operation: str) -> None:
    rows_count, per_row = 200, 0.01  # 2 s for the statement to finish on its own

    async def main() -> None:
        config = {**QUIET, "BROKER_GENERATOR_BATCH_SIZE": "1000"}
        async with trio_broker(db_path, pool_size=1, config=config) as broker:
            await broker.write_many("q", [f"m{i}" for i in range(rows_count)])
            before = rows(db_path)
            install_slow_triggers(broker, per_row)
            start = time.monotonic()
            with trio.move_on_after(0.15) as scope:
                await INTERRUPTIBLE[operation](broker)
            returned = time.monotonic() - start
            freed = await wait_until_free(broker, timeout=5)
            assert scope.cancelled_caught
            assert returned < 0.5, f"the caller waited {returned:.2f}s"
            assert freed < 0.6, f"the worker ran on for {freed:.2f}s: the statement was waited out"
            await settle(broker)
            assert rows(db_path) == before  # rolled back
            assert not any(open_transactions(broker))
            with trio.fail_after(1):  # the only connection is usable again at once
                assert await broker.queue_stats("q") == ("q", rows_count, rows_count)
            await assert_clean(broker)

    run(main)


@pytest.mark.parametrize("operation", ["write_many", "delete_messages"])
def test_a_long_batch_of_statements_cancelled_returns_at_once_and_rolls_back(db_path: Path, operation: str) -> None:
    """Many statements in one command (``executemany``): the caller goes at once, nothing lands."""

    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            ids = await broker.write_many("q", [f"m{i}" for i in range(100)])
            before, last_ts = rows(db_path), meta(db_path)["last_ts"]
            install_slow_triggers(broker, 0.01)
            start = time.monotonic()
            with trio.move_on_after(0.1) as scope:
                if operation == "write_many":
                    await broker.write_many("q", [f"n{i}" for i in range(100)])
                else:
                    await broker.delete_messages("q", ids)
            assert scope.cancelled_caught
            assert time.monotonic() - start < 0.5
            await settle(broker, timeout=10)
            assert rows(db_path) == before
            assert meta(db_path)["last_ts"] == last_ts
            await assert_clean(broker)

    run(main)


def test_a_cancelled_huge_write_many_frees_its_connection_promptly(db_path: Path) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            await broker.write("q", "x")
            install_slow_triggers(broker, 0.01)  # 100 rows: 1 s on its own
            with trio.move_on_after(0.1):
                await broker.write_many("q", [f"n{i}" for i in range(100)])
            freed = await wait_until_free(broker, timeout=5)
            assert freed < 0.6, f"the worker ran on for {freed:.2f}s after its caller was cancelled"

    run(main)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.25])
def test_a_cancelled_vacuum_releases_its_lock_file_and_loses_no_pending_message(db_path: Path, delay: float) -> None:
    async def main() -> None:
        config = {**QUIET, "BROKER_VACUUM_BATCH_SIZE": "10"}
        async with trio_broker(db_path, pool_size=1, config=config) as broker:
            await broker.write_many("q", [f"m{i}" for i in range(60)])
            await broker.claim_many("q", 40)
            install_slow_triggers(broker, 0.005)  # 10 rows a batch: 50 ms each
            with trio.move_on_after(delay), contextlib.suppress(CommitOutcomeUnknown):
                await broker.vacuum()
            await settle(broker)
            assert not any(open_transactions(broker))
            stats = await broker.queue_stats("q")
            assert stats.pending == 20 and 20 <= stats.total <= 60
            # The vacuum lock file was released: the next vacuum removes the rest.
            assert await broker.vacuum() == stats.total - 20
            assert await broker.queue_stats("q") == ("q", 20, 20)
            await assert_clean(broker)

    run(main)


def test_a_large_queue_claimed_and_peeked_with_cancellation_stays_intact(db_path: Path) -> None:
    """No slow function: a real large queue, cancelled early at random points."""
    rng = random.Random(4)
    total = 60_000

    async def main() -> None:
        config = {**QUIET, "BROKER_GENERATOR_BATCH_SIZE": str(total)}
        async with trio_broker(db_path, pool_size=2, config=config) as broker:
            await broker.write_many("q", [f"m{i}" for i in range(total)])
            unknown = 0
            for i in range(6):
                with trio.move_on_after(rng.uniform(0.001, 0.02)):
                    try:
                        if i % 3 == 0:
                            await broker.claim_all("q")
                        elif i % 3 == 1:
                            await broker.move_all("q", "elsewhere")
                        else:
                            await broker.peek_many("q", total)
                    except CommitOutcomeUnknown:
                        unknown += 1
                await settle(broker)
                assert not any(open_transactions(broker))
                stats = await broker.get_queue_stats()
                if not unknown:  # every cancelled claim or move was rolled back whole
                    assert stats in ([("q", total, total)], [("elsewhere", total, total)]), stats
                assert sum(s.total for s in stats) == total
            await assert_clean(broker)

    run(main)


# --------------------------------------------------- cancelled acquisitions
def test_a_waiter_cancelled_as_it_is_woken_does_not_strand_the_others(db_path: Path) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            await broker.write("q", "x")
            first_waiter = trio.CancelScope()
            holding, release = trio.Event(), trio.Event()
            got: list[Message | None] = []

            async def holder() -> None:
                async with broker.transaction():
                    await broker.write("q", "held")
                    holding.set()
                    await release.wait()
                # The transaction gave the connection back and woke the first waiter;
                # that waiter is cancelled before it runs (no checkpoint in between).
                first_waiter.cancel()

            async def waiter(scope: trio.CancelScope | None) -> None:
                with scope or trio.CancelScope():
                    got.append(await broker.peek("q"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(holder)
                await holding.wait()
                nursery.start_soon(waiter, first_waiter)
                await trio.sleep(0.02)
                nursery.start_soon(waiter, None)
                await trio.sleep(0.02)
                release.set()
                with trio.move_on_after(0.5):
                    while not got:
                        await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
            assert [m.body for m in got if m is not None] == ["x"], "the second waiter never got the idle connection"

    run(main)


def test_a_cancelled_opening_wakes_a_task_waiting_for_pool_room(db_path: Path) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=3, config=QUIET) as broker:
            await broker.write("q", "x")
            connect = internals.connect_function(broker)

            def slow_connect(worker: Any) -> Any:  # opening a connection takes a while
                time.sleep(0.3)
                return connect(worker)

            internals.replace_connect(broker, slow_connect)
            got: list[Message | None] = []
            z_done = trio.Event()
            y_scope = trio.CancelScope()

            async def holder() -> None:  # each holds a connection until Z is served
                async with broker.transaction():
                    await z_done.wait()

            async def y() -> None:
                with y_scope:
                    await broker.peek("q")

            async def z() -> None:
                got.append(await broker.peek("q"))
                z_done.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(holder)  # the existing connection
                await trio.sleep(0.05)
                nursery.start_soon(holder)  # opens the second (slowly), holding the open lock
                await trio.sleep(0.05)
                nursery.start_soon(y)  # waits for the open lock: 1 open + 2 opening = pool_size
                await trio.sleep(0.02)
                nursery.start_soon(z)  # no room: parks
                await trio.sleep(0.02)
                y_scope.cancel()  # room for a third connection now
                with trio.move_on_after(2):
                    await z_done.wait()
                nursery.cancel_scope.cancel()
            assert got and got[0] is not None, "Z was never woken although the pool had room"

    run(main)


# ---------------------------------------------- mixed operations cancelled

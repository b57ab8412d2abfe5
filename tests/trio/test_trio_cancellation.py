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
from support.rawdb import connect, meta, rows
from trio_support import (
    QUIET,
    Outcomes,
    assert_clean,
    busy,
    check_claim_accounting,
    open_transactions,
    patched_handler,
    run,
    settle,
    slow_commit,
    wait_for_thread_event,
    warm,
)

from sansio_broker import Message, OutcomeUnknownError
from sansio_broker.adapters.trio import CommitOutcomeUnknown, TrioBroker, TrioQueue, trio_broker
from sansio_broker.commands import Commit, Execute

STYLES = ["move_on_after", "fail_after", "nursery"]


# ------------------------------------------------------------------ helpers
async def cancelled_claims(
    broker: TrioBroker, rng: random.Random, count: int, max_delay: float, style: str, queue: str = "q"
) -> Outcomes:
    """``count`` concurrent claims, each cancelled after a random delay up to ``max_delay``.

    ``move_on_after``/``fail_after``: a deadline per claim. ``nursery``: the
    claims come in groups of ten, each group's nursery cancelled at once.
    """
    out = Outcomes()

    async def claim() -> None:
        try:
            message = await broker.claim(queue)
        except CommitOutcomeUnknown:
            out.unknown += 1
            return
        # Handed over: no checkpoint between the return and the record.
        if message is None:
            out.empty += 1
        else:
            out.handed.append(message)

    async def with_deadline() -> None:
        delay = rng.uniform(0, max_delay)
        if style == "move_on_after":
            with trio.move_on_after(delay) as scope:
                await claim()
            out.cancelled += scope.cancelled_caught
        else:
            try:
                with trio.fail_after(delay):
                    await claim()
            except trio.TooSlowError:
                out.cancelled += 1

    async def group(size: int) -> None:
        async with trio.open_nursery() as nursery:
            for _ in range(size):
                nursery.start_soon(claim)
            await trio.sleep(rng.uniform(0, max_delay))
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        if style == "nursery":
            for _ in range(count // 10):
                nursery.start_soon(group, 10)
        else:
            for _ in range(count):
                nursery.start_soon(with_deadline)
    if style == "nursery":  # every claim that did not end otherwise was cancelled
        out.cancelled = count // 10 * 10 - len(out.handed) - out.unknown - out.empty
    return out


async def time_claims(broker: TrioBroker, count: int) -> float:
    """How long ``count`` concurrent claims take here, now (to spread cancellations over them)."""
    await broker.write_many("calibration", ["x"] * count)
    start = time.monotonic()
    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(broker.claim, "calibration")
    return time.monotonic() - start


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
    for connection in broker._connections:
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
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("seed", [1, 2])
def test_randomly_cancelled_claims_lose_nothing(db_path: Path, seed: int, style: str) -> None:
    rng = random.Random(seed)

    async def main() -> None:
        async with trio_broker(db_path, pool_size=4, config=QUIET) as broker:
            await warm(broker)
            # Cancellation times span the run of the claims, however fast this machine is
            # now. Shared claims finish in a few transactions, so one slow fsync can make
            # every claim outlast (or beat) its deadline: a round that did not exercise both
            # sides is repeated on a fresh queue with another time scale.
            span = await time_claims(broker, 300)
            for round_, max_delay in enumerate((3 * span, 0.05, 0.2, 10 * span, 1.0)):
                queue = f"q{round_}"
                await broker.write_many(queue, [f"m{i}" for i in range(300)])
                out = await cancelled_claims(broker, rng, 300, max_delay=max_delay, style=style, queue=queue)
                await settle(broker)
                assert not any(open_transactions(broker))
                check_claim_accounting(db_path, out, queue)
                await assert_clean(broker)
                # The rest is still there and deliverable.
                rest = await broker.claim_all(queue)
                assert 300 - out.unknown <= len(rest) + len(out.handed) <= 300
                check_claim_accounting(db_path, Outcomes(out.handed + rest, out.unknown), queue)
                if out.handed and out.cancelled:
                    break
            # Both sides were exercised: some claims finished, many were cancelled.
            assert out.handed and out.cancelled, out

    run(main)


def test_randomly_cancelled_claims_while_the_pool_grows(tmp_path: Path) -> None:
    """The same on a cold pool: connections are being opened while claims are cancelled."""

    async def main() -> None:
        for round_ in range(4):
            path = tmp_path / f"round{round_}.db"
            async with trio_broker(path, pool_size=8, config=QUIET) as broker:
                await broker.write_many("q", [f"m{i}" for i in range(200)])
                out = await cancelled_claims(broker, random.Random(round_), 200, 0.05, STYLES[round_ % 3])
                await settle(broker)
                check_claim_accounting(path, out)
                await assert_clean(broker)

    run(main)


# ------------------------------------------------- deterministic COMMIT races
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("operation", ["write", "transaction"])
def test_cancellation_during_commit_raises_commit_outcome_unknown(db_path: Path, operation: str, style: str) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["job"])
            started = threading.Event()
            caught: list[BaseException] = []
            scope = trio.CancelScope()

            async def attempt() -> None:
                if operation == "claim":  # by ID: not a shared claim
                    await broker.claim("q", message_id=message_id)
                elif operation == "write":
                    await broker.write("q", "new")
                else:
                    async with broker.transaction():
                        await broker.claim("q")
                        await broker.write("results", "done")

            async def cancelled_attempt(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                try:
                    if style == "move_on_after":
                        with trio.move_on_after(30) as deadline:
                            task_status.started(deadline)
                            await attempt()
                    elif style == "fail_after":
                        with trio.fail_after(30) as deadline:
                            task_status.started(deadline)
                            await attempt()
                    else:
                        task_status.started(scope)
                        await attempt()
                except BaseException as exc:
                    caught.append(exc)
                    if not isinstance(exc, CommitOutcomeUnknown):
                        raise

            # Only this connection's COMMIT is slowed, and only while the attempt runs.
            with patched_handler(broker, Commit, slow_commit(started, 0.3)):
                async with trio.open_nursery() as nursery:
                    target = await nursery.start(cancelled_attempt)
                    await wait_for_thread_event(started)
                    if style == "nursery":
                        nursery.cancel_scope.cancel()
                    else:
                        target.deadline = trio.current_time()  # the deadline passes now
                (exc,) = caught
                # Not Cancelled, not TooSlowError: the caller is told the outcome is unknown.
                assert isinstance(exc, CommitOutcomeUnknown), repr(exc)
                assert isinstance(exc, OutcomeUnknownError)
                await settle(broker)
            # Here the COMMIT went through: the outcome was real, only unknown to the caller.
            if operation == "write":
                assert [b for _, b, _, _ in rows(db_path, "q")] == ["job", "new"]
                # The caller waited for the COMMIT's end, so it is told the ID that landed.
                assert exc.message_ids == (rows(db_path, "q")[1][2],)
            else:
                assert rows(db_path, "q")[0][2:] == (message_id, 1)
            if operation == "transaction":
                assert [b for _, b, _, _ in rows(db_path, "results")] == ["done"]
            await assert_clean(broker)

    run(main)


CLAIM_SHAPES = {
    "plain": lambda broker, message_id: broker.claim("q"),
    "by_id": lambda broker, message_id: broker.claim("q", message_id=message_id),
    "claim_many": lambda broker, message_id: broker.claim_many("q", 5),
    "read_all": lambda broker, message_id: broker.read("q", all_messages=True),
}


@pytest.mark.parametrize("shape", sorted(CLAIM_SHAPES))
def test_a_claim_cancelled_during_commit_gives_its_message_back(db_path: Path, shape: str) -> None:
    """Every claim shape: cancelled once its COMMIT runs, its message is not
    lost but pending again (no reader was waiting for it), and the caller
    sees a plain cancellation."""

    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["job"])
            started = threading.Event()
            with patched_handler(broker, Commit, slow_commit(started, 0.3)):
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(CLAIM_SHAPES[shape], broker, message_id)
                        await wait_for_thread_event(started)
                        scope.cancel()
                assert scope.cancelled_caught
                await settle(broker)
            assert rows(db_path, "q")[0][2:] == (message_id, 0)
            assert await broker.claim("q") == Message("job", message_id)
            await assert_clean(broker)

    run(main)


def test_a_shared_claim_cancelled_during_commit_hands_its_message_to_a_waiting_reader(db_path: Path) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["job"])
            started = threading.Event()
            got: list[Message | None] = []

            async def second() -> None:
                got.append(await broker.claim("q"))

            with patched_handler(broker, Commit, slow_commit(started, 0.3)):
                async with trio.open_nursery() as nursery:
                    with trio.CancelScope() as first:
                        async with trio.open_nursery() as inner:
                            inner.start_soon(broker.claim, "q")
                            await wait_for_thread_event(started)
                            nursery.start_soon(second)  # waits for the next group
                            await trio.sleep(0.01)
                            first.cancel()
                await settle(broker)
            assert got == [Message("job", message_id)]
            assert rows(db_path, "q")[0][2:] == (message_id, 1)
            await assert_clean(broker)

    run(main)


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


@pytest.mark.parametrize("operation", ["claim", "write", "write_many", "move", "transaction"])
def test_cancellation_before_commit_changes_nothing_and_releases_the_caller_at_once(
    db_path: Path, operation: str
) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["job"])
            before, last_ts = rows(db_path), meta(db_path)["last_ts"]
            reached, proceed = threading.Event(), threading.Event()
            finished_at: list[float] = []

            def make(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
                def execute(command: Execute) -> Any:
                    # The claim, the move, or the write's ID allocation: before any COMMIT.
                    if command.sql.lstrip().startswith(("UPDATE", "INSERT INTO messages")):
                        reached.set()
                        proceed.wait(10)
                    return original(command)

                return execute

            async def attempt() -> None:
                if operation == "claim":
                    await broker.claim("q")
                elif operation == "write":
                    await broker.write("q", "new")
                elif operation == "write_many":
                    await broker.write_many("q", ["new", "newer"])
                elif operation == "move":
                    await broker.move("q", "elsewhere", message_id=message_id)
                else:
                    async with broker.transaction():
                        await broker.claim("q")

            async def cancellable() -> None:
                with trio.CancelScope() as scope:
                    scopes.append(scope)
                    await attempt()
                finished_at.append(time.monotonic())
                assert scope.cancelled_caught

            scopes: list[trio.CancelScope] = []
            with patched_handler(broker, Execute, make):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancellable)
                    await wait_for_thread_event(reached)
                    scopes[0].cancel()
                    if operation != "transaction":
                        # The caller is released while its worker thread is still blocked.
                        with trio.move_on_after(5):
                            while not finished_at:
                                await trio.sleep(0.001)
                        assert finished_at and not proceed.is_set()
                        assert any(busy(broker))
                    else:
                        # A transaction's task waits (shielded) for the statement to end and its rollback.
                        await trio.sleep(0.05)
                        assert not finished_at
                    proceed.set()
                await settle(broker)
            assert rows(db_path) == before  # still pending; nothing written
            assert meta(db_path)["last_ts"] == last_ts
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
def test_a_thousand_cancelled_acquisitions_never_leak_the_only_connection(db_path: Path) -> None:
    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            await broker.write("q", "m")
            holding, finish = trio.Event(), trio.Event()

            async def holder() -> None:
                async with broker.transaction():
                    await broker.write("q", "from the holder")
                    holding.set()
                    await finish.wait()

            ran: list[int] = []

            async def waiter(i: int) -> None:
                if i % 3:
                    await broker.peek("q")
                elif i % 2:
                    await broker.claim("q")
                else:
                    await broker.write("q", "x")
                ran.append(i)

            async with trio.open_nursery() as outer:
                outer.start_soon(holder)
                await holding.wait()
                async with trio.open_nursery() as waiters:
                    for i in range(1000):
                        waiters.start_soon(waiter, i)
                    await trio.sleep(0.05)  # every one is waiting for the pool
                    waiters.cancel_scope.cancel()
                finish.set()
            assert ran == []
            with trio.fail_after(10):
                assert [m.body for m in await broker.peek_many("q", 10)] == ["m", "from the holder"]
            assert len(broker._connections) == 1
            assert [b for _, b, _, _ in rows(db_path)] == ["m", "from the holder"]  # none of them ran
            await assert_clean(broker)

    run(main)


@pytest.mark.parametrize("seed", [7, 2, 3, 12])
def test_acquisitions_cancelled_around_hand_overs(db_path: Path, seed: int) -> None:
    """Deadlines expiring while the only connection passes from task to task.

    A task looping on ``transaction()`` takes the connection again and again:
    nothing a cancelled claim does before its cancellation goes on may wait
    for a pooled connection (seeds 2, 3 and 12 hung when one did)."""
    rng = random.Random(seed)

    async def main() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            await broker.write_many("q", [f"m{i}" for i in range(300)])
            stop = trio.Event()

            async def busy_holder() -> None:
                while not stop.is_set():
                    async with broker.transaction():
                        await broker.peek("q")
                        await trio.sleep(0.001)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(busy_holder)
                out = await cancelled_claims(broker, rng, 300, max_delay=0.1, style="move_on_after")
                stop.set()
            await settle(broker)
            check_claim_accounting(db_path, out)
            assert len(broker._connections) == 1
            await assert_clean(broker)

    run(main)


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
            connect = broker._connect

            def slow_connect(worker: Any) -> Any:  # opening a connection takes a while
                time.sleep(0.3)
                return connect(worker)

            broker._connect = slow_connect  # type: ignore[method-assign]
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
def test_mixed_operations_cancelled_at_random_points(db_path: Path) -> None:
    """Writes and claim-and-write transactions, each with a random deadline."""
    rng = random.Random(11)

    async def main() -> None:
        async with trio_broker(db_path, pool_size=5, config=QUIET) as broker:
            await broker.write_many("tx_jobs", [f"t{i}" for i in range(150)])
            await warm(broker)
            written: dict[int, str] = {}
            unknown = {"write": 0, "tx": 0}

            async def writer(n: int) -> None:
                try:
                    for i in range(5):
                        body = f"w{n}-{i}"
                        written[await broker.write("written", body)] = body
                except CommitOutcomeUnknown:
                    unknown["write"] += 1

            async def transactor() -> None:
                with contextlib.suppress(CommitOutcomeUnknown):
                    while True:
                        async with broker.transaction():
                            message = await broker.claim("tx_jobs")
                            if message is None:
                                return
                            await broker.write("results", message.body)

            async def with_deadline(n: int) -> None:
                with trio.move_on_after(rng.uniform(0, 0.15)):
                    await (writer(n) if n % 2 else transactor())

            async with trio.open_nursery() as nursery:
                for n in range(120):
                    nursery.start_soon(with_deadline, n)
            await settle(broker)
            assert not any(open_transactions(broker))
            stored = rows(db_path)
            # Every write that returned an ID is there with its body; others only if unknown.
            in_written = {ts: b for q, b, ts, _ in stored if q == "written"}
            assert written.items() <= in_written.items()
            assert len(in_written) - len(written) <= unknown["write"]
            # Transactions: a job is claimed exactly when its result exists.
            tx_claimed = sorted(b for q, b, _, c in stored if q == "tx_jobs" and c == 1)
            assert tx_claimed == sorted(b for q, b, _, _ in stored if q == "results")
            await assert_clean(broker)

    run(main)


def test_at_least_once_streams_cancelled_at_random_points(db_path: Path) -> None:
    """Whatever a cancelled stream committed was handed over; the rest is delivered again."""
    rng = random.Random(13)
    total = 600

    async def main() -> None:
        async with trio_broker(db_path, pool_size=5, config=QUIET) as broker:
            await broker.write_many("jobs", [f"s{i}" for i in range(total)])
            await warm(broker)
            streamed: list[str] = []

            async def streamer() -> None:
                # Asking for the next batch commits the last one: a cancellation
                # then may report CommitOutcomeUnknown (that batch was handed over).
                with trio.move_on_after(rng.uniform(0, 0.03)), contextlib.suppress(CommitOutcomeUnknown):
                    async for body in broker.stream_read("jobs", all_messages=True, commit_interval=3):
                        streamed.append(body)
                        await trio.sleep(0.001)  # work on it, holding the batch

            for _ in range(5):
                async with trio.open_nursery() as nursery:
                    for _ in range(4):
                        nursery.start_soon(streamer)
                await settle(broker)
                assert not any(open_transactions(broker))
            committed = {b for _, b, _, c in rows(db_path, "jobs") if c == 1}
            assert committed <= set(streamed)
            assert len(committed) < len(streamed)  # some batches were rolled back and delivered again
            rest = [b async for b in broker.stream_read("jobs", all_messages=True, commit_interval=3)]
            assert sorted(committed | set(rest)) == sorted(f"s{i}" for i in range(total))
            assert not committed & set(rest)
            await assert_clean(broker)

    run(main)


def test_cancelling_the_opening_of_a_broker_leaves_nothing_behind(tmp_path: Path) -> None:
    """Cancelled before, while or just after ``async with trio_broker(...)`` opens (new file or existing)."""
    rng = random.Random(3)

    async def main() -> list[bool]:
        entered_log: list[bool] = []
        for n in range(24):
            path = tmp_path / f"b{n % 4}.db"
            entered = False
            opened: list[TrioBroker] = []
            with trio.move_on_after(0 if n % 3 == 0 else rng.uniform(0, 0.004)) as scope:
                async with trio_broker(path, pool_size=2, config=QUIET) as broker:
                    opened.append(broker)
                    entered = True
                    with contextlib.suppress(CommitOutcomeUnknown):
                        await broker.write("q", "x")
                    await trio.sleep(0.01)
            assert scope.cancelled_caught
            entered_log.append(entered)
            for broker in opened:
                assert broker._closed and broker._connections == []
        return entered_log

    entered = run(main)
    assert not all(entered), "no cancellation landed before the body"
    # The autouse fixture checks that no worker thread survived.

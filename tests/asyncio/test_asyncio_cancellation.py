"""Cancellation at any await: no open transaction, no leaked connection, no lost message.

A claim either hands its message to a task that completes, leaves it pending,
or (cancelled while COMMIT ran) raises ``CommitOutcomeUnknown``; nothing else.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from asyncio_support import (
    QUIET,
    assert_clean,
    idle_count,
    open_transactions,
    registry,
    run,
    settle,
)
from support.rawdb import meta, rows

from sansio_broker import Message, OutcomeUnknownError
from sansio_broker.adapters.asyncio import AsyncBroker, CommitOutcomeUnknown, async_broker
from sansio_broker.commands import Commit, Execute


# ------------------------------------------------------------------ helpers
@dataclass
class Outcomes:
    handed: list[Message] = field(default_factory=list)
    unknown: int = 0
    cancelled: int = 0
    empty: int = 0


async def cancelled_claims(
    broker: AsyncBroker, rng: random.Random, count: int, max_delay: float, queue: str = "q"
) -> Outcomes:
    """``count`` claim tasks, each cancelled after a random delay up to ``max_delay``."""
    out = Outcomes()

    async def claim() -> None:
        try:
            message = await broker.claim(queue)
        except CommitOutcomeUnknown:
            out.unknown += 1
            raise
        except asyncio.CancelledError:
            out.cancelled += 1
            raise
        # Handed over: the task got the message (no await between here and the record).
        if message is None:
            out.empty += 1
        else:
            out.handed.append(message)

    loop = asyncio.get_running_loop()
    tasks = []
    for _ in range(count):
        task = asyncio.create_task(claim())
        loop.call_later(rng.uniform(0, max_delay), task.cancel)
        tasks.append(task)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for result in results:
        assert result is None or isinstance(result, asyncio.CancelledError), repr(result)
    return out


def check_claim_accounting(path: Path, out: Outcomes, queue: str = "q") -> None:
    """Every message is handed over, pending, or covered by a CommitOutcomeUnknown."""
    handed = [m.id for m in out.handed]
    assert len(handed) == len(set(handed)), "a message was handed over twice"
    state = {ts: c for q, _, ts, c in rows(path) if q == queue}
    claimed = {ts for ts, c in state.items() if c == 1}
    assert set(handed) <= claimed, "a handed-over message is not claimed"
    lost = claimed - set(handed)
    assert len(lost) <= out.unknown, (
        f"{len(lost)} message(s) claimed but never handed over, "
        f"only {out.unknown} CommitOutcomeUnknown raised ({out.cancelled} plain cancellations)"
    )


async def warm(broker: AsyncBroker) -> None:
    """Open every connection of the pool, so none is being opened during the test."""
    holders = asyncio.Event()
    started = 0

    async def hold() -> None:
        nonlocal started
        connection = await broker._acquire()
        started += 1
        try:
            await holders.wait()
        finally:
            broker._release(connection)

    tasks = [asyncio.create_task(hold()) for _ in range(broker.pool_size)]
    while started < broker.pool_size:
        await asyncio.sleep(0.005)
    holders.set()
    await asyncio.gather(*tasks)
    await settle(broker)
    assert len(registry(broker)) == idle_count(broker) == broker.pool_size


@contextmanager
def patched_handler(broker: AsyncBroker, command: type, make: Callable[[Any], Callable[[Any], Any]]) -> Iterator[None]:
    """Replace the driver's handler for ``command`` on every pooled connection."""
    drivers = [c.raw_connection.driver for c in registry(broker)]
    originals = [d._handlers[command] for d in drivers]
    for driver, original in zip(drivers, originals, strict=True):
        driver._handlers[command] = make(original)
    try:
        yield
    finally:
        for driver, original in zip(drivers, originals, strict=True):
            driver._handlers[command] = original


def slow_commit(started: threading.Event, seconds: float) -> Callable[[Any], Callable[[Any], Any]]:
    def make(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def commit(command: Any) -> Any:
            started.set()
            time.sleep(seconds)
            return original(command)

        return commit

    return make


async def time_claims(broker: AsyncBroker, count: int) -> float:
    """How long ``count`` concurrent claims take here, now (to spread cancellations over them)."""
    await broker.write_many("calibration", ["x"] * count)
    start = time.monotonic()
    await asyncio.gather(*(broker.claim("calibration") for _ in range(count)))
    return time.monotonic() - start


# ------------------------------------------- random cancellation of claims
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_randomly_cancelled_claims_lose_nothing(db_path: Path, seed: int) -> None:
    rng = random.Random(seed)

    async def main() -> None:
        async with async_broker(db_path, pool_size=4, config=QUIET) as broker:
            await warm(broker)
            # Cancellation times span the run of the claims, however fast this machine is
            # now. Shared claims finish in a few transactions, so one slow fsync can make
            # every claim outlast (or beat) its deadline: a round that did not exercise both
            # sides is repeated on a fresh queue with another time scale.
            span = await time_claims(broker, 300)
            for round_, max_delay in enumerate((3 * span, 0.05, 0.2, 10 * span, 1.0)):
                queue = f"q{round_}"
                await broker.write_many(queue, [f"m{i}" for i in range(300)])
                out = await cancelled_claims(broker, rng, 300, max_delay=max_delay, queue=queue)
                await settle(broker)
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

    run(main())


def test_randomly_cancelled_claims_while_the_pool_grows(tmp_path: Path) -> None:
    """The same on a cold pool: connections are being opened while claims are cancelled."""

    async def main() -> None:
        for round_ in range(5):
            path = tmp_path / f"round{round_}.db"
            async with async_broker(path, pool_size=10, config=QUIET) as broker:
                await broker.write_many("q", [f"m{i}" for i in range(300)])
                out = await cancelled_claims(broker, random.Random(round_), 300, max_delay=0.05)
                await settle(broker, timeout=0.5)
                check_claim_accounting(path, out)
                assert idle_count(broker) == len(registry(broker)), "connection(s) leaked"

    run(main())


def test_cancelled_while_giving_the_connection_back(db_path: Path) -> None:
    """Deterministic form of the test above.

    aiosqlitepool holds ``Pool._lock`` across awaits while it opens a new
    connection (and while it resets one on release); the test holds it itself
    to make that window certain.
    """

    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["only"])
            caught: list[BaseException] = []
            got: list[Message | None] = []

            async def claim() -> None:
                try:
                    got.append(await broker.claim("q"))
                except BaseException as exc:
                    caught.append(exc)
                    raise

            await broker._pool._lock.acquire()
            task = asyncio.create_task(claim())
            deadline = time.monotonic() + 5
            while rows(db_path)[0][3] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.002)  # the claim commits; then its task waits for the pool
            await asyncio.sleep(0.02)
            task.cancel()
            broker._pool._lock.release()
            await asyncio.gather(task, return_exceptions=True)
            assert rows(db_path)[0][3] == 1  # the claim committed
            # Handed over, or reported as possibly committed: never silently lost.
            assert got == [Message("only", message_id)] or isinstance(caught[0], CommitOutcomeUnknown)
            await settle(broker, timeout=2)
            assert idle_count(broker) == len(registry(broker)) == 1, "the connection leaked"

    run(main())


# ------------------------------------------------- deterministic COMMIT races
@pytest.mark.parametrize("operation", ["write", "transaction"])
def test_cancellation_during_commit_raises_commit_outcome_unknown(db_path: Path, operation: str) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["job"])
            started = threading.Event()
            caught: list[BaseException] = []

            async def attempt() -> None:
                try:
                    if operation == "claim":  # by ID: not a shared claim
                        await broker.claim("q", message_id=message_id)
                    elif operation == "write":
                        await broker.write("q", "new")
                    else:
                        async with broker.transaction():
                            await broker.claim("q")
                            await broker.write("results", "done")
                except BaseException as exc:
                    caught.append(exc)
                    raise

            with patched_handler(broker, Commit, slow_commit(started, 0.3)):
                task = asyncio.create_task(attempt())
                while not started.is_set():
                    await asyncio.sleep(0.001)
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as info:
                    await task
                assert isinstance(info.value, CommitOutcomeUnknown)
                (exc,) = caught
                assert isinstance(exc, CommitOutcomeUnknown)
                assert isinstance(exc, asyncio.CancelledError)
                assert isinstance(exc, OutcomeUnknownError)
                assert task.cancelled()
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

    run(main())


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
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["job"])
            started = threading.Event()
            with patched_handler(broker, Commit, slow_commit(started, 0.3)):
                task = asyncio.ensure_future(CLAIM_SHAPES[shape](broker, message_id))
                while not started.is_set():
                    await asyncio.sleep(0.001)
                task.cancel()
                with pytest.raises(asyncio.CancelledError) as info:
                    await task
                assert not isinstance(info.value, CommitOutcomeUnknown)
                await settle(broker)
            assert rows(db_path, "q")[0][2:] == (message_id, 0)
            assert await broker.claim("q") == Message("job", message_id)
            await assert_clean(broker)

    run(main())


def test_a_shared_claim_cancelled_during_commit_hands_its_message_to_a_waiting_reader(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["job"])
            started = threading.Event()
            with patched_handler(broker, Commit, slow_commit(started, 0.3)):
                first = asyncio.create_task(broker.claim("q"))
                while not started.is_set():
                    await asyncio.sleep(0.001)
                second = asyncio.create_task(broker.claim("q"))  # waits for the next group
                await asyncio.sleep(0.01)
                first.cancel()
                assert await second == Message("job", message_id)
                with pytest.raises(asyncio.CancelledError):
                    await first
                await settle(broker)
            assert rows(db_path, "q")[0][2:] == (message_id, 1)
            await assert_clean(broker)

    run(main())


@pytest.mark.parametrize("operation", ["claim", "write", "write_many", "move", "transaction"])
def test_cancellation_before_commit_changes_nothing(db_path: Path, operation: str) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            (message_id,) = await broker.write_many("q", ["job"])
            before = rows(db_path)
            last_ts = meta(db_path)["last_ts"]
            reached = threading.Event()
            proceed = threading.Event()
            caught: list[BaseException] = []

            def make(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
                def execute(command: Execute) -> Any:
                    # The claim, the move, or the write's ID allocation: before any COMMIT.
                    if command.sql.lstrip().startswith(("UPDATE", "INSERT INTO messages")):
                        reached.set()
                        proceed.wait(10)
                    return original(command)

                return execute

            async def attempt() -> None:
                try:
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
                except BaseException as exc:
                    caught.append(exc)
                    raise

            with patched_handler(broker, Execute, make):
                task = asyncio.create_task(attempt())
                while not reached.is_set():
                    await asyncio.sleep(0.001)
                task.cancel()
                await asyncio.sleep(0.01)
                if operation != "transaction":
                    # The caller does not wait for the worker thread. (A transaction's
                    # task waits for the statement to end and its rollback, shielded.)
                    assert task.done()
                proceed.set()
                with pytest.raises(asyncio.CancelledError):
                    await task
                (exc,) = caught
                assert not isinstance(exc, OutcomeUnknownError)
                await settle(broker)
            assert rows(db_path) == before  # the message is still pending; nothing written
            assert meta(db_path)["last_ts"] == last_ts
            await assert_clean(broker)

    run(main())


# --------------------------------------------------- cancelled acquisitions
def test_a_thousand_cancelled_acquisitions_never_leak_the_only_connection(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            await broker.write("q", "m")
            holding = asyncio.Event()
            finish = asyncio.Event()

            async def holder() -> None:
                async with broker.transaction():
                    await broker.write("q", "from the holder")
                    holding.set()
                    await finish.wait()

            hold = asyncio.create_task(holder())
            await holding.wait()
            waiters = [
                asyncio.create_task(op)
                for i in range(1000)
                for op in [broker.peek("q") if i % 3 else broker.claim("q") if i % 2 else broker.write("q", "x")]
            ]
            await asyncio.sleep(0.05)  # every one is waiting for the pool
            assert not any(w.done() for w in waiters)
            for w in waiters:
                w.cancel()
            results = await asyncio.gather(*waiters, return_exceptions=True)
            assert all(isinstance(r, asyncio.CancelledError) for r in results)
            finish.set()
            await hold
            assert [m.body for m in await asyncio.wait_for(broker.peek_many("q", 10), 10)] == ["m", "from the holder"]
            await settle(broker)
            assert len(registry(broker)) == 1
            assert idle_count(broker) == 1
            assert [b for _, b, _, _ in rows(db_path)] == ["m", "from the holder"]  # none of them ran
            await assert_clean(broker)

    run(main())


def test_acquisitions_cancelled_around_hand_overs(db_path: Path) -> None:
    """Cancellations landing while the only connection passes from task to task."""
    rng = random.Random(7)

    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            await broker.write_many("q", [f"m{i}" for i in range(400)])
            stop = asyncio.Event()

            async def busy_holder() -> None:
                while not stop.is_set():
                    async with broker.transaction():
                        await broker.peek("q")
                        await asyncio.sleep(0.001)

            holder = asyncio.create_task(busy_holder())
            out = await cancelled_claims(broker, rng, 400, max_delay=0.1)
            stop.set()
            await holder
            await settle(broker)
            check_claim_accounting(db_path, out)
            assert len(registry(broker)) == 1
            await assert_clean(broker)

    run(main())


# ---------------------------------------------- mixed operations cancelled
def test_mixed_operations_cancelled_at_random_points(db_path: Path) -> None:
    """Writes and claim-and-write transactions, cancelled at random."""
    rng = random.Random(11)

    async def main() -> None:
        async with async_broker(db_path, pool_size=5, config=QUIET) as broker:
            await broker.write_many("tx_jobs", [f"t{i}" for i in range(150)])
            await warm(broker)
            written: dict[int, str] = {}
            write_unknown = 0

            async def writer(n: int) -> None:
                nonlocal write_unknown
                try:
                    for i in range(5):
                        body = f"w{n}-{i}"
                        written[await broker.write("written", body)] = body
                except CommitOutcomeUnknown:
                    write_unknown += 1
                    raise

            async def transactor() -> None:
                while True:
                    async with broker.transaction():
                        message = await broker.claim("tx_jobs")
                        if message is None:
                            return
                        await broker.write("results", message.body)

            loop = asyncio.get_running_loop()
            tasks = []
            for n in range(120):
                coro = writer(n) if n % 2 else transactor()
                task = asyncio.create_task(coro)
                loop.call_later(rng.uniform(0, 0.15), task.cancel)
                tasks.append(task)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), results
            await settle(broker)
            assert not any(open_transactions(broker))

            stored = rows(db_path)
            # Every write that returned an ID is there with its body; others only if unknown.
            in_written = {ts: b for q, b, ts, _ in stored if q == "written"}
            assert written.items() <= in_written.items()
            assert len(in_written) - len(written) <= write_unknown
            # Transactions: a job is claimed exactly when its result exists.
            tx_claimed = sorted(b for q, b, _, c in stored if q == "tx_jobs" and c == 1)
            results_written = sorted(b for q, b, _, _ in stored if q == "results")
            assert tx_claimed == results_written
            await assert_clean(broker)

    run(main())


def test_timeouts_around_operations_lose_nothing(db_path: Path) -> None:
    """``asyncio.wait_for`` with tiny timeouts is cancellation too."""
    rng = random.Random(5)

    async def main() -> None:
        async with async_broker(db_path, pool_size=3, config=QUIET) as broker:
            await broker.write_many("q", [f"m{i}" for i in range(200)])
            await warm(broker)
            out = Outcomes()

            async def one() -> None:
                try:
                    message = await asyncio.wait_for(broker.claim("q"), rng.uniform(0, 0.01))
                except TimeoutError as exc:
                    # wait_for turns the inner CommitOutcomeUnknown into TimeoutError (its cause).
                    if isinstance(exc.__cause__, CommitOutcomeUnknown):
                        out.unknown += 1
                    else:
                        out.cancelled += 1
                else:
                    if message is not None:
                        out.handed.append(message)

            await asyncio.gather(*(one() for _ in range(200)))
            await settle(broker)
            check_claim_accounting(db_path, out)
            await assert_clean(broker)

    run(main())


def test_cancelling_the_opening_of_a_broker_leaves_nothing_behind(tmp_path: Path) -> None:
    """Cancelled while ``async with async_broker(...)`` opens (new file or existing one)."""
    rng = random.Random(3)

    async def main() -> int:
        cancelled = 0
        for n in range(20):
            path = tmp_path / f"b{n % 4}.db"
            entered = asyncio.Event()

            async def use(path: Path = path, entered: asyncio.Event = entered) -> None:
                async with async_broker(path, pool_size=2, config=QUIET) as broker:
                    entered.set()
                    await broker.write("q", "x")

            task = asyncio.create_task(use())
            await asyncio.sleep(rng.uniform(0, 0.006))
            if not entered.is_set():  # only while opening (close is tested on its own)
                task.cancel()
            results = await asyncio.gather(task, return_exceptions=True)
            cancelled += isinstance(results[0], asyncio.CancelledError)
            assert results[0] is None or isinstance(results[0], asyncio.CancelledError)
        return cancelled

    assert run(main()) > 0
    # The autouse fixture checks that no worker thread survived.


# ------------------------------------------------------ streams cancelled
def test_at_least_once_streams_cancelled_at_random_points(db_path: Path) -> None:
    """Whatever a cancelled stream committed was handed over; the rest is delivered again."""
    rng = random.Random(13)
    total = 1000  # more than the rounds can consume

    async def main() -> None:
        async with async_broker(db_path, pool_size=5, config=QUIET) as broker:
            await broker.write_many("jobs", [f"s{i}" for i in range(total)])
            await warm(broker)
            streamed: list[str] = []

            async def streamer() -> None:
                async for body in broker.stream_read("jobs", all_messages=True, commit_interval=3):
                    streamed.append(body)
                    await asyncio.sleep(0.001)  # work on it, holding the batch

            loop = asyncio.get_running_loop()
            for _ in range(6):
                # Fewer streams than connections: each finds an idle one at once.
                tasks = [asyncio.create_task(streamer()) for _ in range(4)]
                for task in tasks:
                    loop.call_later(rng.uniform(0, 0.03), task.cancel)
                results = await asyncio.gather(*tasks, return_exceptions=True)
                assert all(r is None or isinstance(r, asyncio.CancelledError) for r in results), results
                await settle(broker)
                assert not any(open_transactions(broker))
            stored = rows(db_path, "jobs")
            committed = {b for _, b, _, c in stored if c == 1}
            assert committed <= set(streamed)
            assert len(committed) < len(streamed)  # some batches were rolled back and delivered again
            rest = [b async for b in broker.stream_read("jobs", all_messages=True, commit_interval=3)]
            assert sorted(committed | set(rest)) == sorted(f"s{i}" for i in range(total))
            await assert_clean(broker)

    run(main())


def test_a_stream_cancelled_while_waiting_for_a_connection(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=QUIET) as broker:
            await broker.write_many("jobs", ["a", "b"])
            holding = asyncio.Event()
            finish = asyncio.Event()

            async def holder() -> None:
                async with broker.transaction():
                    holding.set()
                    await finish.wait()

            async def consumer() -> list[str]:
                return [b async for b in broker.stream_read("jobs", all_messages=True, commit_interval=2)]

            hold = asyncio.create_task(holder())
            await holding.wait()
            task = asyncio.create_task(consumer())
            await asyncio.sleep(0.05)  # waiting for the only connection
            task.cancel()
            (result,) = await asyncio.gather(task, return_exceptions=True)
            finish.set()
            await hold
            assert isinstance(result, asyncio.CancelledError), repr(result)

    run(main())

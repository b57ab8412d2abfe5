"""Cancellation at any await, on asyncio and trio, in each runtime's idiom.

A claim either hands its message to a task that goes on, leaves it pending,
or (cancelled while COMMIT ran) raises ``CommitOutcomeUnknown``; nothing
else. No transaction stays open, no connection leaks, no message is lost.
What only one runtime has is in ``test_asyncio_cancellation.py`` and
``test_trio_cancellation.py``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from sansio_broker import Message, OutcomeUnknownError
from sansio_broker.commands import Commit, Execute
from tests.async_adapters.kit import (
    QUIET,
    Kit,
    Outcomes,
    assert_clean,
    cancel_mixed_operations,
    check_claim_accounting,
    check_mixed_operations,
    open_transactions,
    settle,
    slow_commit,
    time_claims,
    wait_for_thread_event,
    warm,
)
from tests.support import internals
from tests.support.rawdb import meta, rows

pytestmark = pytest.mark.anyio


# ------------------------------------------- random cancellation of claims
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_randomly_cancelled_claims_lose_nothing(kit: Kit, cancel_style: str, db_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    async with kit.open_broker(db_path, pool_size=4, config=QUIET) as broker:
        await warm(broker)
        # Cancellation times span the run of the claims, however fast this machine is
        # now. Shared claims finish in a few transactions, so one slow fsync can make
        # every claim outlast (or beat) its deadline: a round that did not exercise both
        # sides is repeated on a fresh queue with another time scale.
        span = await time_claims(broker, 300)
        scales = (3 * span, 0.05, 0.2, 10 * span, 1.0, span, 30 * span, 0.5, span / 2, 2.0)
        for round_, max_delay in enumerate(scales):
            queue = f"q{round_}"
            await broker.write_many(queue, [f"m{i}" for i in range(300)])
            out = await kit.cancelled_claims(broker, rng, 300, max_delay, cancel_style, queue)
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


async def test_randomly_cancelled_claims_while_the_pool_grows(kit: Kit, tmp_path: Path) -> None:
    """The same on a cold pool: connections are being opened while claims are cancelled."""
    styles = {"asyncio": ["task.cancel"], "trio": ["move_on_after", "fail_after", "nursery"]}[kit.name]
    for round_ in range(5):
        path = tmp_path / f"round{round_}.db"
        async with kit.open_broker(path, pool_size=10, config=QUIET) as broker:
            await broker.write_many("q", [f"m{i}" for i in range(300)])
            style = styles[round_ % len(styles)]
            out = await kit.cancelled_claims(broker, random.Random(round_), 300, 0.05, style)
            await settle(broker)
            check_claim_accounting(path, out)
            await assert_clean(broker)


# ------------------------------------------------- deterministic COMMIT races
@pytest.mark.parametrize("operation", ["write", "transaction"])
async def test_cancellation_during_commit_raises_commit_outcome_unknown(
    kit: Kit, cancel_style: str, db_path: Path, operation: str
) -> None:
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        (message_id,) = await broker.write_many("q", ["job"])
        started = threading.Event()

        async def attempt() -> None:
            if operation == "write":
                await broker.write("q", "new")
            else:
                async with broker.transaction():
                    await broker.claim("q")
                    await broker.write("results", "done")

        # Only this connection's COMMIT is slowed, and only while the attempt runs.
        with internals.patched_handler(broker, Commit, slow_commit(started, 0.3)):
            ended = await kit.run_cancelled(attempt, cancel_style, when=started)
            assert ended.kind == "unknown", ended
            exc = ended.error
            assert isinstance(exc, kit.CommitOutcomeUnknown) and isinstance(exc, OutcomeUnknownError)
            await settle(broker)
        # Here the COMMIT went through: the outcome was real, only unknown to the caller.
        if operation == "write":
            assert [b for _, b, _, _ in rows(db_path, "q")] == ["job", "new"]
            # The caller waited for the COMMIT's end, so it is told the ID that landed.
            assert exc.message_ids == (rows(db_path, "q")[1][2],)
        else:
            assert rows(db_path, "q")[0][2:] == (message_id, 1)
            assert [b for _, b, _, _ in rows(db_path, "results")] == ["done"]
        await assert_clean(broker)


CLAIM_SHAPES: dict[str, Callable[[Any, int], Any]] = {
    "plain": lambda broker, message_id: broker.claim("q"),
    "by_id": lambda broker, message_id: broker.claim("q", message_id=message_id),
    "claim_many": lambda broker, message_id: broker.claim_many("q", 5),
    "read_all": lambda broker, message_id: broker.read("q", all_messages=True),
}


@pytest.mark.parametrize("shape", sorted(CLAIM_SHAPES))
async def test_a_claim_cancelled_during_commit_gives_its_message_back(kit: Kit, db_path: Path, shape: str) -> None:
    """Every claim shape: cancelled once its COMMIT runs, its message is not
    lost but pending again (no reader was waiting for it), and the caller
    sees a plain cancellation."""
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        (message_id,) = await broker.write_many("q", ["job"])
        started = threading.Event()
        style = "task.cancel" if kit.name == "asyncio" else "nursery"
        with internals.patched_handler(broker, Commit, slow_commit(started, 0.3)):
            ended = await kit.run_cancelled(lambda: CLAIM_SHAPES[shape](broker, message_id), style, when=started)
            assert ended.kind == "cancelled", ended
            await settle(broker)
        assert rows(db_path, "q")[0][2:] == (message_id, 0)
        assert await broker.claim("q") == Message("job", message_id)
        await assert_clean(broker)


async def test_a_shared_claim_cancelled_during_commit_hands_its_message_to_a_waiting_reader(
    kit: Kit, db_path: Path
) -> None:
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        (message_id,) = await broker.write_many("q", ["job"])
        started, go = threading.Event(), threading.Event()
        got: list[Message | None] = []
        firsts: list[Any] = []

        async def second() -> None:
            await wait_for_thread_event(started)
            group.start_soon(lambda: _append(got, broker.claim("q")))  # waits for the next group
            await anyio.sleep(0.01)
            go.set()

        style = "task.cancel" if kit.name == "asyncio" else "nursery"
        with internals.patched_handler(broker, Commit, slow_commit(started, 0.3)):
            async with anyio.create_task_group() as group:
                group.start_soon(second)
                firsts.append(await kit.run_cancelled(lambda: broker.claim("q"), style, when=go))
            await settle(broker)
        assert firsts[0].kind == "cancelled", firsts
        assert got == [Message("job", message_id)]
        assert rows(db_path, "q")[0][2:] == (message_id, 1)
        await assert_clean(broker)


async def _append(into: list[Any], call: Any) -> None:
    into.append(await call)


@pytest.mark.parametrize("operation", ["claim", "write", "write_many", "move", "transaction"])
async def test_cancellation_before_commit_changes_nothing_and_releases_the_caller_at_once(
    kit: Kit, cancel_style: str, db_path: Path, operation: str
) -> None:
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        (message_id,) = await broker.write_many("q", ["job"])
        before, last_ts = rows(db_path), meta(db_path)["last_ts"]
        reached, proceed = threading.Event(), threading.Event()
        ended: list[Any] = []

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

        async def cancelled() -> None:
            ended.append(await kit.run_cancelled(attempt, cancel_style, when=reached))

        with internals.patched_handler(broker, Execute, make):
            async with anyio.create_task_group() as group:
                group.start_soon(cancelled)
                await wait_for_thread_event(reached)
                if operation != "transaction":
                    # The caller is released while its worker thread is still blocked.
                    with anyio.move_on_after(5):
                        while not ended:
                            await anyio.sleep(0.001)
                    assert ended and not proceed.is_set()
                else:
                    # A transaction's task waits (shielded) for the statement to end and its rollback.
                    await anyio.sleep(0.05)
                    assert not ended
                proceed.set()
            assert ended[0].kind == "cancelled", ended  # not an OutcomeUnknownError
            await settle(broker)
        assert rows(db_path) == before  # still pending; nothing written
        assert meta(db_path)["last_ts"] == last_ts
        await assert_clean(broker)


# --------------------------------------------------- cancelled acquisitions
async def test_a_thousand_cancelled_acquisitions_never_leak_the_only_connection(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        await broker.write("q", "m")
        holding, finish = anyio.Event(), anyio.Event()
        ran: list[int] = []

        async def holder() -> None:
            async with broker.transaction():
                await broker.write("q", "from the holder")
                holding.set()
                await finish.wait()

        async def waiter(i: int) -> None:
            if i % 3:
                await broker.peek("q")
            elif i % 2:
                await broker.claim("q")
            else:
                await broker.write("q", "x")
            ran.append(i)

        async with anyio.create_task_group() as outer:
            outer.start_soon(holder)
            await holding.wait()
            async with anyio.create_task_group() as waiters:
                for i in range(1000):
                    waiters.start_soon(waiter, i)
                await anyio.sleep(0.05)  # every one is waiting for the pool
                waiters.cancel_scope.cancel()
            finish.set()
        assert ran == []
        with anyio.fail_after(10):
            assert [m.body for m in await broker.peek_many("q", 10)] == ["m", "from the holder"]
        await settle(broker)
        assert len(internals.open_connections(broker)) == internals.idle_connections(broker) == 1
        assert [b for _, b, _, _ in rows(db_path)] == ["m", "from the holder"]  # none of them ran
        await assert_clean(broker)


@pytest.mark.parametrize("seed", [7, 2, 3, 12])
async def test_acquisitions_cancelled_around_hand_overs(kit: Kit, db_path: Path, seed: int) -> None:
    """Cancellations landing while the only connection passes from task to task.

    A task looping on ``transaction()`` takes the connection again and again:
    nothing a cancelled claim does before its cancellation goes on may wait
    for a pooled connection (trio: seeds 2, 3 and 12 hung when one did)."""
    rng = random.Random(seed)
    style = "task.cancel" if kit.name == "asyncio" else "move_on_after"
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        await broker.write_many("q", [f"m{i}" for i in range(300)])
        stop = anyio.Event()

        async def busy_holder() -> None:
            while not stop.is_set():
                async with broker.transaction():
                    await broker.peek("q")
                    await anyio.sleep(0.001)

        async with anyio.create_task_group() as group:
            group.start_soon(busy_holder)
            out = await kit.cancelled_claims(broker, rng, 300, 0.1, style)
            stop.set()
        await settle(broker)
        check_claim_accounting(db_path, out)
        assert len(internals.open_connections(broker)) == 1
        await assert_clean(broker)


# ---------------------------------------------- mixed operations cancelled
async def test_mixed_operations_cancelled_at_random_points(kit: Kit, cancel_style: str, db_path: Path) -> None:
    """Writes and claim-and-write transactions, each cancelled at a random moment."""
    rng = random.Random(11)
    async with kit.open_broker(db_path, pool_size=5, config=QUIET) as broker:
        await broker.write_many("tx_jobs", [f"t{i}" for i in range(150)])
        await warm(broker)
        written, write_unknown = await cancel_mixed_operations(kit, broker, cancel_style, rng, 120, 0.15)
        await settle(broker)
        assert not any(open_transactions(broker))
        check_mixed_operations(rows(db_path), written, write_unknown)
        await assert_clean(broker)


async def test_at_least_once_streams_cancelled_at_random_points(kit: Kit, cancel_style: str, db_path: Path) -> None:
    """Whatever a cancelled stream committed was handed over; the rest is delivered again.

    Asking for the next batch commits the last one: a cancellation then may
    report CommitOutcomeUnknown (that batch was handed over)."""
    rng = random.Random(13)
    total = 1000  # more than the rounds can consume
    async with kit.open_broker(db_path, pool_size=5, config=QUIET) as broker:
        await broker.write_many("jobs", [f"s{i}" for i in range(total)])
        await warm(broker)
        streamed: list[str] = []

        async def streamer() -> None:
            async for body in broker.stream_read("jobs", all_messages=True, commit_interval=3):
                streamed.append(body)
                await anyio.sleep(0.001)  # work on it, holding the batch

        async def one() -> None:
            await kit.run_cancelled(streamer, cancel_style, after=rng.uniform(0, 0.03))

        for _ in range(6):
            # Fewer streams than connections: each finds an idle one at once.
            async with anyio.create_task_group() as group:
                for _ in range(4):
                    group.start_soon(one)
            await settle(broker)
            assert not any(open_transactions(broker))
        committed = {b for _, b, _, c in rows(db_path, "jobs") if c == 1}
        assert committed <= set(streamed)
        assert len(committed) < len(streamed)  # some batches were rolled back and delivered again
        rest = [b async for b in broker.stream_read("jobs", all_messages=True, commit_interval=3)]
        assert sorted(committed | set(rest)) == sorted(f"s{i}" for i in range(total))
        assert not committed & set(rest)
        await assert_clean(broker)


async def test_cancelling_the_opening_of_a_broker_leaves_nothing_behind(kit: Kit, tmp_path: Path) -> None:
    """Cancelled before, while or just after ``async with <runtime>_broker(...)`` opens (new file or existing)."""
    rng = random.Random(3)
    cancel_style = "task.cancel" if kit.name == "asyncio" else "move_on_after"
    entered_log: list[bool] = []
    for n in range(24):
        path = tmp_path / f"b{n % 4}.db"
        entered: list[bool] = []
        opened: list[Any] = []

        async def use(path: Path = path, entered: list[bool] = entered, opened: list[Any] = opened) -> None:
            async with kit.open_broker(path, pool_size=2, config=QUIET) as broker:
                opened.append(broker)
                entered.append(True)
                try:
                    await broker.write("q", "x")
                except kit.CommitOutcomeUnknown:
                    if kit.name == "asyncio":
                        raise  # a CancelledError: the cancellation goes on
                await anyio.sleep(0.01)

        delay = 0.0 if n % 3 == 0 else rng.uniform(0, 0.004)
        ended = await kit.run_cancelled(use, cancel_style, after=delay)
        assert ended.kind in ("returned", "cancelled", "unknown"), ended
        entered_log.append(bool(entered))
        for broker in opened:
            assert internals.is_closed(broker) and internals.open_connections(broker) == []
    assert not all(entered_log), "no cancellation landed before the body"
    # The autouse fixture checks that no worker thread survived.

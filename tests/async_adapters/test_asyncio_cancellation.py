"""Cancellation that only asyncio has: aiosqlitepool's lock, ``asyncio.wait_for``.

What both runtimes share is in ``test_async_cancellation.py``.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path

from sansio_broker import Message
from sansio_broker.adapters.asyncio import CommitOutcomeUnknown, async_broker
from tests.async_adapters.asyncio_support import (
    QUIET,
    assert_clean,
    idle_count,
    registry,
    run,
    settle,
)
from tests.async_adapters.kit import Outcomes, check_claim_accounting, warm
from tests.support.internals import pool_lock
from tests.support.rawdb import rows


def test_cancelled_while_giving_the_connection_back(db_path: Path) -> None:
    """A claim cancelled while it waits to give its connection back.

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

            await pool_lock(broker).acquire()
            task = asyncio.create_task(claim())
            deadline = time.monotonic() + 5
            while rows(db_path)[0][3] == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.002)  # the claim commits; then its task waits for the pool
            await asyncio.sleep(0.02)
            task.cancel()
            pool_lock(broker).release()
            await asyncio.gather(task, return_exceptions=True)
            assert rows(db_path)[0][3] == 1  # the claim committed
            # Handed over, or reported as possibly committed: never silently lost.
            assert got == [Message("only", message_id)] or isinstance(caught[0], CommitOutcomeUnknown)
            await settle(broker, timeout=2)
            assert idle_count(broker) == len(registry(broker)) == 1, "the connection leaked"

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

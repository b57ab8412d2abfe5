"""Waiting gets given up at random moments while producers write: every message accounted for once.

Async adapters (anyio runs each body on asyncio and on trio): 1,000 waiting
``get_message`` calls, each given up after a random delay in the runtime's own
idiom (asyncio: ``task.cancel()``, ``asyncio.timeout``; trio: ``move_on_after``,
``fail_after``, a cancelled nursery; both: the ``timeout`` argument), while
producer tasks write. Blocking: the same with the ``timeout`` argument, from
threads. At the end every message written was either returned by exactly one
get or is still pending (it is read out): none lost, none twice. And 1,000
waiting tasks do not take the pool away from a writer.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker, Queue
from tests.async_adapters.kit import QUIET, Ended, Kit, Outcomes, assert_clean, check_claim_accounting, warm
from tests.support.rawdb import rows

GETS = 1000
PRODUCERS = 10
PER_PRODUCER = 60  # about 600 messages for 1,000 gets: some gets are served, some give up waiting
MAX_DELAY = 0.3  # each get gives up after a random delay up to this (seconds)

STYLES = [
    ("asyncio", "task.cancel"),
    ("asyncio", "asyncio.timeout"),
    ("asyncio", "timeout-argument"),
    ("trio", "move_on_after"),
    ("trio", "fail_after"),
    ("trio", "nursery"),
    ("trio", "timeout-argument"),
]


class _GetsAsClaims:
    """What the kit's ``cancelled_claims`` calls as ``broker.claim(queue)``: here a waiting get."""

    def __init__(self, broker: Any, kit: Kit) -> None:
        self.broker = broker
        self.kit = kit

    def claim(self, queue: str) -> Awaitable[Message | None]:
        return self.kit.Queue(queue, self.broker).get_message()  # type: ignore[no-any-return]


async def _given_up(kit: Kit, get: Callable[..., Awaitable[Any]], style: str, after: float) -> Ended:
    """One get, given up after ``after`` seconds in a way the kit does not cover."""
    if style == "timeout-argument":
        value = await get(timeout=after)
        return Ended("returned", value) if value is not None else Ended("cancelled")
    assert style == "asyncio.timeout"
    try:
        async with asyncio.timeout(after):
            return Ended("returned", await get())
    except kit.CommitOutcomeUnknown as exc:
        return Ended("unknown", error=exc)
    except TimeoutError as exc:
        if isinstance(exc.__cause__, kit.CommitOutcomeUnknown):
            return Ended("unknown", error=exc.__cause__)
        return Ended("cancelled")


async def _cancelled_gets(kit: Kit, broker: Any, rng: random.Random, style: str) -> Outcomes:
    if style in ("timeout-argument", "asyncio.timeout"):
        out = Outcomes()
        queue = kit.Queue("q", broker)

        async def one() -> None:
            out.record(await _given_up(kit, queue.get_message, style, rng.uniform(0, MAX_DELAY)))

        async with anyio.create_task_group() as group:
            for _ in range(GETS):
                group.start_soon(one)
        return out
    return await kit.cancelled_claims(_GetsAsClaims(broker, kit), rng, GETS, MAX_DELAY, style, "q")


def check_exactly_once(
    path: Path, written: list[int], out: Outcomes, drained: list[Message], vacuumed: bool = False
) -> None:
    """Every written message was returned by exactly one get, or was still pending; nothing else.

    ``vacuumed``: auto-vacuum ran meanwhile and may have removed claimed rows,
    so only the bodies of rows still in the file can be compared."""
    got = [m.id for m in out.handed]
    twice = [i for i, n in Counter(got).items() if n > 1]
    assert not twice, f"{len(twice)} message(s) returned by two gets"
    left = {m.id for m in drained}
    assert not left & set(got), "a message returned by a get was still pending"
    lost = set(written) - set(got) - left
    assert not lost, (
        f"{len(lost)} message(s) neither returned nor pending "
        f"({out.unknown} outcome-unknown errors, {out.cancelled} gets given up)"
    )
    assert sorted(got + sorted(left)) == sorted(written)
    bodies = {ts: body for _, body, ts, _ in rows(path, "q")}
    kept = [m for m in [*out.handed, *drained] if not vacuumed or m.id in bodies]
    assert all(bodies[m.id] == m.body for m in kept), "a body came back changed"
    assert all(claimed == 1 for *_, claimed in rows(path, "q"))


@pytest.mark.anyio
@pytest.mark.parametrize(("anyio_backend", "style"), STYLES, ids=[f"{b}-{s}" for b, s in STYLES])
async def test_gets_given_up_at_random_moments_lose_nothing(kit: Kit, db_path: Path, style: str) -> None:
    rng = random.Random(f"{kit.name}-{style}")
    written: list[int] = []
    async with kit.open_broker(db_path, pool_size=4, config=QUIET) as broker:
        await warm(broker)

        async def produce(tag: int) -> None:
            i = 0
            while i < PER_PRODUCER:
                await anyio.sleep(rng.uniform(0, 2 * MAX_DELAY / PER_PRODUCER))
                if i % 5 == 4:  # now and then a small burst
                    written.extend(await broker.write_many("q", [f"p{tag}-{i + k}" for k in range(3)]))
                    i += 3
                else:
                    written.append(await broker.write("q", f"p{tag}-{i}"))
                    i += 1

        async with anyio.create_task_group() as group:
            for tag in range(PRODUCERS):
                group.start_soon(produce, tag)
            out = await _cancelled_gets(kit, broker, rng, style)
        drained = await broker.claim_all("q")
        check_exactly_once(db_path, written, out, drained)
        check_claim_accounting(db_path, Outcomes([*out.handed, *drained]), "q")
        # Both sides were exercised: some gets were served, some gave up waiting.
        assert out.handed and out.cancelled, out
        await assert_clean(broker)


@pytest.mark.anyio
async def test_a_thousand_waiting_tasks_do_not_starve_a_writer(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=10, config=QUIET) as broker:
        queue = kit.Queue("idle", broker)
        got: list[Message] = []
        started = 0

        async def wait_for_one() -> None:
            nonlocal started
            started += 1
            got.append(await queue.get_message())

        async with anyio.create_task_group() as group:
            for _ in range(GETS):
                group.start_soon(wait_for_one)
            while started < GETS:
                await anyio.sleep(0.01)
            await anyio.sleep(0.2)  # every waiter reaches its wait
            assert not got
            # The pool is the writer's: a write, a claim and a transaction all complete.
            with anyio.fail_after(15):
                message_id = await broker.write("other", "not starved")
                assert await broker.claim("other") == Message("not starved", message_id)
                async with broker.transaction():
                    await broker.write("other", "in a transaction")
                assert [m.body for m in await broker.peek_many("other", 10)] == ["in a transaction"]
            # Then one message for each waiter.
            ids = await broker.write_many("idle", [f"m{i}" for i in range(GETS)])
        assert sorted(m.id for m in got) == sorted(ids)
        assert await broker.peek_many("idle", 10) == []
        await assert_clean(broker)


# ---------------------------------------------------------------- blocking
@pytest.mark.parametrize("vacuum", [False, True], ids=["quiet", "auto-vacuum every 10 commits"])
def test_blocking_gets_timing_out_at_random_moments_lose_nothing(tmp_path: Path, vacuum: bool) -> None:
    path = tmp_path / "broker.db"
    consumers, gets_each, producers, per_producer = 40, GETS // 40, 4, 150
    out = Outcomes()
    written: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    config = {"BROKER_AUTO_VACUUM_INTERVAL": "10"} if vacuum else QUIET  # the default, checking often
    with Broker(path, config=config) as broker:
        queue_name = "q"

        def consume(seed: int) -> None:
            rng = random.Random(seed)
            queue = Queue(queue_name, broker)
            try:
                for _ in range(gets_each):
                    message = queue.get_message(timeout=rng.uniform(0, 0.03))
                    with lock:
                        out.record(Ended("returned", message) if message is not None else Ended("cancelled"))
            except BaseException as exc:
                errors.append(exc)

        def produce(seed: int) -> None:
            rng = random.Random(seed)
            try:
                for i in range(per_producer):
                    time.sleep(rng.uniform(0, 0.004))
                    if i % 10 == 9:
                        ids = broker.write_many(queue_name, [f"b{seed}-{i}-{k}" for k in range(2)])
                    else:
                        ids = [broker.write(queue_name, f"s{seed}-{i}")]
                    with lock:
                        written.extend(ids)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=consume, args=(k,)) for k in range(consumers)]
        threads += [threading.Thread(target=produce, args=(1000 + k,)) for k in range(producers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(t.is_alive() for t in threads), "a consumer or producer hung"
        assert not errors, errors
        drained = broker.claim_all(queue_name)
    check_exactly_once(path, written, out, drained, vacuumed=vacuum)
    assert out.handed and out.cancelled, out

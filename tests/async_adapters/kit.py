"""One test body for asyncio and trio: what differs between the runtimes, behind one object.

A test of the merged suite asks for ``kit`` (a :class:`Kit` for the runtime
anyio runs it on) and writes its body with anyio (task groups, events,
sleeps) and the kit: the broker and queue classes, ``open_broker``, the
runtime's ``CommitOutcomeUnknown``, and cancellation *in the runtime's own
idiom* (``task.cancel()`` on asyncio; ``move_on_after``, ``fail_after`` or a
cancelled nursery on trio), because that is what users of each runtime write
and what each adapter must survive. What the pool looks like inside goes
through :mod:`tests.support.internals`.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import trio

from sansio_broker import Message
from sansio_broker.adapters import asyncio as asyncio_adapter
from sansio_broker.adapters import trio as trio_adapter
from tests.support import internals
from tests.support.rawdb import rows
from tests.support.threads import adapter_threads

# Settings that keep tests independent of automatic vacuum unless they test it.
QUIET = {"BROKER_AUTO_VACUUM": "0"}
# Generous "does not hang" bound for a whole test body (conftest applies it).
HANG_TIMEOUT = 40.0
# Makes a driver's command handler from the original (see internals.patched_handler).
HandlerMaker = Callable[[Callable[[Any], Any]], Callable[[Any], Any]]
# How each runtime's users cancel an operation; a test asking for ``cancel_style`` runs once per pair.
CANCEL_STYLES = {"asyncio": ("task.cancel",), "trio": ("move_on_after", "fail_after", "nursery")}


# ------------------------------------------------------------ outcomes
@dataclass
class Ended:
    """How a cancelled call ended, as its caller saw it."""

    kind: str = "cancelled"  # "returned", "cancelled" or "unknown" (CommitOutcomeUnknown)
    value: Any = None
    error: BaseException | None = None


@dataclass
class Outcomes:
    """What cancelled claims ended with."""

    handed: list[Message] = field(default_factory=list)
    unknown: int = 0
    cancelled: int = 0
    empty: int = 0

    def record(self, ended: Ended) -> None:
        if ended.kind == "unknown":
            self.unknown += 1
        elif ended.kind == "cancelled":
            self.cancelled += 1
        elif ended.value is None:
            self.empty += 1
        else:
            self.handed.append(ended.value)


def check_claim_accounting(path: Path, out: Outcomes, queue: str = "q") -> None:
    """Every message is handed over, pending, or covered by a CommitOutcomeUnknown."""
    handed = [m.id for m in out.handed]
    assert len(handed) == len(set(handed)), "a message was handed over twice"
    state = {ts: (b, c) for q, b, ts, c in rows(path) if q == queue}
    assert all(state[m.id][0] == m.body for m in out.handed), "a handed-over body differs from the stored one"
    claimed = {ts for ts, (_, c) in state.items() if c == 1}
    assert set(handed) <= claimed, "a handed-over message is not claimed"
    lost = claimed - set(handed)
    assert len(lost) <= out.unknown, (
        f"{len(lost)} message(s) claimed but never handed over, "
        f"only {out.unknown} CommitOutcomeUnknown raised ({out.cancelled} plain cancellations)"
    )


# ------------------------------------------------------- runtime-neutral
def open_transactions(broker: Any) -> list[bool]:
    """For each open connection: does its sqlite3 connection have a transaction open?"""
    return [c.in_transaction for c in internals.sqlite_connections(broker)]


def _all_idle(broker: Any) -> bool:
    return (
        not internals.cleaning_up(broker)
        and internals.idle_connections(broker) == len(internals.open_connections(broker))
        and not any(internals.busy_after_cancel(broker))
    )


async def settle(broker: Any, timeout: float = 5.0) -> None:
    """Wait until background clean-up has finished and every connection is idle again.

    Returns after ``timeout`` seconds even if that never happens; the caller asserts.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _all_idle(broker):
            # One more look after a short pause: a release may be between steps.
            await anyio.sleep(0.02)
            if _all_idle(broker):
                return
        await anyio.sleep(0.01)


async def assert_clean(broker: Any) -> None:
    """After a settle: no transaction open anywhere, nothing leaked, the broker still works."""
    await settle(broker)
    assert not any(open_transactions(broker)), open_transactions(broker)
    opened = len(internals.open_connections(broker))
    assert internals.idle_connections(broker) == opened, (
        f"{opened - internals.idle_connections(broker)} connection(s) never came back to the pool"
    )
    assert not internals.held_by_task(broker), internals.held_by_task(broker)
    assert getattr(broker, "last_background_error", None) is None, repr(broker.last_background_error)
    assert opened <= broker.pool_size
    with anyio.fail_after(10):
        probe = await broker.write("_probe", "still works")
        message = await broker.claim("_probe", message_id=probe)
    assert message == Message("still works", probe)


async def warm(broker: Any) -> None:
    """Open every connection of the pool, so none is being opened during the test."""
    release = anyio.Event()
    holding = 0

    async def hold() -> None:
        nonlocal holding
        connection = await internals.acquire(broker)
        holding += 1
        try:
            await release.wait()
        finally:
            internals.release(broker, connection)

    async with anyio.create_task_group() as group:
        for _ in range(broker.pool_size):
            group.start_soon(hold)
        while holding < broker.pool_size:
            await anyio.sleep(0.005)
        release.set()
    await settle(broker)
    assert len(internals.open_connections(broker)) == internals.idle_connections(broker) == broker.pool_size


def slow_commit(started: threading.Event, seconds: float) -> HandlerMaker:
    """A Commit handler that reports it began, then sleeps before committing."""

    def make(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def commit(command: Any) -> Any:
            started.set()
            time.sleep(seconds)
            return original(command)

        return commit

    return make


def blocked_insert(
    reached: threading.Event, proceed: threading.Event
) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """An Execute handler that, at the first INSERT of a message, reports it and waits for ``proceed``."""

    def make(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def execute(command: Any) -> Any:
            if "INSERT INTO messages" in command.sql and not reached.is_set():
                reached.set()
                proceed.wait(10)
            return original(command)

        return execute

    return make


async def grow(broker: Any, queue: str = "q") -> None:
    """Use the broker from many tasks at once, so the pool opens several connections.

    Batch calls: concurrent single writes and claims would share one connection (group commit).
    """
    async with anyio.create_task_group() as group:
        for i in range(40):
            group.start_soon(broker.write_many, queue, [str(i)])
    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(broker.claim_many, queue, 1)


async def wait_for_thread_event(event: threading.Event, timeout: float = 10.0) -> None:
    """Poll a threading.Event (it is set in a worker thread) from the event loop."""
    with anyio.fail_after(timeout):
        while not event.is_set():
            await anyio.sleep(0.001)


async def time_claims(broker: Any, count: int) -> float:
    """How long ``count`` concurrent claims take here, now (to spread cancellations over them)."""
    await broker.write_many("calibration", ["x"] * count)
    start = time.monotonic()
    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(broker.claim, "calibration")
    return time.monotonic() - start


# ------------------------------------------------------------- the kits
class Kit:
    """The runtime-specific part of a merged test."""

    name: str
    Broker: Any
    Queue: Any
    CommitOutcomeUnknown: type[BaseException]
    default_pool_size: int
    broker_function: Callable[..., AbstractAsyncContextManager[Any]]  # async_broker, trio_broker
    worker_marker: str  # in the name of each connection's worker thread

    def worker_threads(self) -> set[threading.Thread]:
        """The connection worker threads of this runtime's adapter alive now."""
        return adapter_threads((self.worker_marker,))

    def open_broker(self, path: str | Path, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        return self.broker_function(path, **kwargs)

    async def run_cancelled(
        self,
        call: Callable[[], Awaitable[Any]],
        style: str,
        *,
        after: float = math.inf,
        when: threading.Event | None = None,
    ) -> Ended:
        """Run ``call()``, cancelled ``after`` seconds or once ``when`` is set, as users of this runtime do."""
        raise NotImplementedError

    async def cancelled_claims(
        self, broker: Any, rng: random.Random, count: int, max_delay: float, style: str, queue: str = "q"
    ) -> Outcomes:
        """``count`` concurrent claims, each cancelled after a random delay up to ``max_delay``."""
        out = Outcomes()

        async def one() -> None:
            out.record(await self.run_cancelled(lambda: broker.claim(queue), style, after=rng.uniform(0, max_delay)))

        async with anyio.create_task_group() as group:
            for _ in range(count):
                group.start_soon(one)
        return out


class AsyncioKit(Kit):
    name = "asyncio"
    Broker = asyncio_adapter.AsyncBroker
    Queue = asyncio_adapter.AsyncQueue
    CommitOutcomeUnknown = asyncio_adapter.CommitOutcomeUnknown
    default_pool_size = 10
    broker_function = staticmethod(asyncio_adapter.async_broker)
    worker_marker = "_connection_worker_thread"  # aiosqlite's

    async def run_cancelled(
        self,
        call: Callable[[], Awaitable[Any]],
        style: str,
        *,
        after: float = math.inf,
        when: threading.Event | None = None,
    ) -> Ended:
        task = asyncio.ensure_future(call())
        if after != math.inf:
            asyncio.get_running_loop().call_later(after, task.cancel)
        if when is not None:
            await wait_for_thread_event(when)
            task.cancel()
        try:
            value = await task
        except self.CommitOutcomeUnknown as exc:
            # A CancelledError: timeouts and task groups treat it as the cancellation it is.
            assert task.cancelled() and isinstance(exc, asyncio.CancelledError)
            return Ended("unknown", error=exc)
        except asyncio.CancelledError as exc:
            return Ended("cancelled", error=exc)
        return Ended("returned", value)


class TrioKit(Kit):
    name = "trio"
    Broker = trio_adapter.TrioBroker
    Queue = trio_adapter.TrioQueue
    CommitOutcomeUnknown = trio_adapter.CommitOutcomeUnknown
    default_pool_size = 4
    broker_function = staticmethod(trio_adapter.trio_broker)
    worker_marker = "sansio-broker-trio-worker"

    async def run_cancelled(
        self,
        call: Callable[[], Awaitable[Any]],
        style: str,
        *,
        after: float = math.inf,
        when: threading.Event | None = None,
    ) -> Ended:
        ended = Ended()

        async def attempt(task_status: trio.TaskStatus[trio.CancelScope | None]) -> None:
            try:
                if style == "nursery":
                    task_status.started(None)
                    ended.value, ended.kind = await call(), "returned"
                    return
                deadline = trio.move_on_after(after) if style == "move_on_after" else trio.fail_after(after)
                with deadline as scope:
                    task_status.started(scope)
                    ended.value, ended.kind = await call(), "returned"
            except trio.TooSlowError:
                pass
            except self.CommitOutcomeUnknown as exc:
                # Not Cancelled, not TooSlowError: the caller is told the outcome is unknown.
                ended.kind, ended.error = "unknown", exc

        async with trio.open_nursery() as nursery:
            scope = await nursery.start(attempt)
            if when is not None:
                await wait_for_thread_event(when)
                if scope is not None:
                    scope.deadline = trio.current_time()  # the deadline passes now
            elif style == "nursery":
                with trio.move_on_after(after):
                    while ended.kind == "cancelled":  # not ended yet
                        await trio.sleep(0.001)
            if style == "nursery":
                nursery.cancel_scope.cancel()
        return ended

    async def cancelled_claims(
        self, broker: Any, rng: random.Random, count: int, max_delay: float, style: str, queue: str = "q"
    ) -> Outcomes:
        """As the base, but ``nursery``: the claims come in groups of ten, each group's nursery cancelled at once."""
        if style != "nursery":
            return await super().cancelled_claims(broker, rng, count, max_delay, style, queue)
        out = Outcomes()

        async def claim() -> None:
            try:
                message = await broker.claim(queue)
            except self.CommitOutcomeUnknown:
                out.unknown += 1
                return
            out.record(Ended("returned", message))  # no checkpoint between the return and the record

        async def group(size: int) -> None:
            async with trio.open_nursery() as nursery:
                for _ in range(size):
                    nursery.start_soon(claim)
                await trio.sleep(rng.uniform(0, max_delay))
                nursery.cancel_scope.cancel()

        async with trio.open_nursery() as nursery:
            for _ in range(count // 10):
                nursery.start_soon(group, 10)
        # Every claim that did not end otherwise was cancelled.
        out.cancelled = count // 10 * 10 - len(out.handed) - out.unknown - out.empty
        return out


KITS: dict[str, Kit] = {"asyncio": AsyncioKit(), "trio": TrioKit()}


async def cancel_mixed_operations(
    kit: Kit, broker: Any, style: str, rng: random.Random, tasks: int, max_delay: float
) -> tuple[dict[int, str], int]:
    """``tasks`` tasks, writers (5 writes each) and claim-and-write
    transactions (on ``tx_jobs``) alternately, each cancelled after a random
    delay; returns the writes that returned an ID, and how many writers
    ended outcome-unknown."""
    written: dict[int, str] = {}
    write_unknown = 0

    async def writer(n: int) -> None:
        for i in range(5):
            body = f"w{n}-{i}"
            written[await broker.write("written", body)] = body

    async def transactor() -> None:
        while True:
            async with broker.transaction():
                message = await broker.claim("tx_jobs")
                if message is None:
                    return
                await broker.write("results", message.body)

    async def one(n: int) -> None:
        nonlocal write_unknown
        call = (lambda: writer(n)) if n % 2 else transactor
        ended = await kit.run_cancelled(call, style, after=rng.uniform(0, max_delay))
        write_unknown += n % 2 and ended.kind == "unknown"

    async with anyio.create_task_group() as group:
        for n in range(tasks):
            group.start_soon(one, n)
    return written, write_unknown


def check_mixed_operations(
    stored: list[tuple[str, str, int, Any]], written: dict[int, str], write_unknown: int
) -> None:
    """Every write that returned an ID is stored with its body (others only
    if outcome-unknown); a job is claimed exactly when its result exists."""
    in_written = {ts: b for q, b, ts, _ in stored if q == "written"}
    assert written.items() <= in_written.items()
    assert len(in_written) - len(written) <= write_unknown
    tx_claimed = sorted(b for q, b, _, c in stored if q == "tx_jobs" and c)
    assert tx_claimed == sorted(b for q, b, _, _ in stored if q == "results")

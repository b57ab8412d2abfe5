"""Helpers of the group-commit proof suite: one interface over the asyncio and
trio adapters, and the checks every test makes against the file itself.

Nothing here looks inside a broker: the checks read the SQLite file with
plain ``sqlite3`` (``support.rawdb``), so they hold whatever the adapters do
internally to group writes and claims.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import trio

from sansio_broker import Message
from sansio_broker.adapters.asyncio import AsyncQueue, async_broker
from sansio_broker.adapters.trio import TrioQueue, trio_broker
from tests.support.rawdb import rows

T = TypeVar("T")

# Claimed rows must stay in the file for the checks: no automatic vacuum.
QUIET: dict[str, str] = {"BROKER_AUTO_VACUUM": "0"}
# Generous "does not hang" bound for one test body (not a speed assertion).
HANG_TIMEOUT = 60.0
# Names of the adapters' worker threads (aiosqlite's and the trio adapter's).
WORKER_THREAD_MARKS = ("_connection_worker_thread", "sansio-broker-trio-worker")


# ------------------------------------------------------------------ runners
def run_asyncio(fn: Callable[[], Coroutine[Any, Any, T]], timeout: float = HANG_TIMEOUT) -> T:
    """``asyncio.run(fn())``, failing (not hanging) after ``timeout`` seconds."""

    async def guarded() -> T:
        return await asyncio.wait_for(fn(), timeout)

    return asyncio.run(guarded())


def run_trio(fn: Callable[[], Awaitable[T]], timeout: float = HANG_TIMEOUT) -> T:
    """``trio.run(fn)``, failing (not hanging) after ``timeout`` seconds."""

    async def guarded() -> T:
        with trio.fail_after(timeout):
            return await fn()

    return trio.run(guarded)


async def _asyncio_gather(fns: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    return list(await asyncio.gather(*(fn() for fn in fns)))


async def _trio_gather(fns: Sequence[Callable[[], Awaitable[T]]]) -> list[T]:
    results: list[Any] = [None] * len(fns)

    async def one(i: int) -> None:
        results[i] = await fns[i]()

    async with trio.open_nursery() as nursery:
        for i in range(len(fns)):
            nursery.start_soon(one, i)
    return results


@dataclass(frozen=True)
class AsyncKit:
    """What a test needs of an async adapter: open a broker, run, run tasks together."""

    name: str
    _open: Callable[..., AbstractAsyncContextManager[Any]]
    _run: Callable[[Callable[[], Any], float], Any]
    gather: Callable[[Sequence[Callable[[], Awaitable[Any]]]], Awaitable[list[Any]]]
    sleep: Callable[[float], Awaitable[None]]
    queue: Callable[[str, Any], Any]  # AsyncQueue / TrioQueue
    default_pool_size: int

    def open(
        self, path: Path, *, config: Mapping[str, str] | None = None, pool_size: int | None = None
    ) -> AbstractAsyncContextManager[Any]:
        """The adapter's broker on ``path`` (``async with``); the adapter's default pool unless given."""
        kwargs: dict[str, Any] = {"config": dict(QUIET if config is None else config)}
        if pool_size is not None:
            kwargs["pool_size"] = pool_size
        return self._open(path, **kwargs)

    def run(self, fn: Callable[[], Awaitable[T]], timeout: float = HANG_TIMEOUT) -> T:
        return self._run(fn, timeout)  # type: ignore[no-any-return]


ASYNC_KITS: dict[str, AsyncKit] = {
    "asyncio": AsyncKit("asyncio", async_broker, run_asyncio, _asyncio_gather, asyncio.sleep, AsyncQueue, 10),
    "trio": AsyncKit("trio", trio_broker, run_trio, _trio_gather, trio.sleep, TrioQueue, 4),
}


# ------------------------------------------------------------------ threads
def adapter_threads(before: Iterable[threading.Thread], timeout: float) -> set[threading.Thread]:
    """Adapter worker threads started since ``before`` still alive after ``timeout`` seconds."""
    known = set(before)
    deadline = time.monotonic() + timeout
    while True:
        left = {
            t
            for t in threading.enumerate()
            if t.is_alive() and t not in known and any(mark in t.name for mark in WORKER_THREAD_MARKS)
        }
        if not left or time.monotonic() > deadline:
            return left
        for t in left:
            t.join(0.05)


def run_threads(count: int, target: Callable[[int, threading.Barrier], None]) -> None:
    """Run ``target(n, barrier)`` in ``count`` threads (they wait on the barrier to start
    together) and re-raise the first error any of them raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def body(n: int) -> None:
        try:
            target(n, barrier)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=body, args=(n,), name=f"groups-test-{n}") for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(HANG_TIMEOUT)
    assert not any(t.is_alive() for t in threads), "a test thread hangs"
    if errors:
        real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
        raise (real or errors)[0]


# ------------------------------------------------------------------- checks
# What one producer wrote, in the order it wrote it: (queue, body, returned ID).
Written = list[tuple[str, str, int]]


def check_written(path: Path, producers: Sequence[Written], *, exact: bool = True) -> None:
    """The writes the producers got IDs for, against the file.

    Every returned ID is unique; each producer's IDs increase in the order it
    wrote; the file holds each (queue, body) under the ID its writer got back.
    With ``exact`` the file holds nothing else, and nothing is claimed.
    """
    everything = [w for producer in producers for w in producer]
    counts = Counter(ident for _, _, ident in everything)
    duplicates = [ident for ident, n in counts.items() if n > 1]
    assert not duplicates, f"{len(duplicates)} ID(s) returned to more than one write, e.g. {duplicates[:3]}"
    for n, producer in enumerate(producers):
        ids = [ident for _, _, ident in producer]
        assert all(a < b for a, b in pairwise(ids)), f"producer {n}: IDs do not increase in the order it wrote"
    stored = {ts: (queue, body, claimed) for queue, body, ts, claimed in rows(path)}
    missing = [w for w in everything if w[2] not in stored]
    assert not missing, f"{len(missing)} returned ID(s) are not in the file, e.g. {missing[:3]}"
    wrong = [w for w in everything if stored[w[2]][:2] != (w[0], w[1])]
    assert not wrong, f"{len(wrong)} ID(s) hold another queue/body than written, e.g. {wrong[:3]}"
    if exact:
        extra = set(stored) - set(counts)
        assert not extra, f"{len(extra)} row(s) in the file that no write returned"
        claimed = [ts for ts, (_, _, c) in stored.items() if c]
        assert not claimed, f"{len(claimed)} row(s) claimed though nobody read"


def check_read_back(messages: Sequence[Message], producers: Sequence[Written], queue: str) -> None:
    """Reading ``queue`` back returned exactly its messages, in ID order."""
    expected = sorted((ident, body) for producer in producers for q, body, ident in producer if q == queue)
    got = [(m.id, m.body) for m in messages]
    assert got == expected, (
        f"read back {len(got)} message(s) of {queue!r}, expected {len(expected)}; "
        f"in ID order: {got == sorted(got)}, same set: {set(got) == set(expected)}"
    )


def check_claimed_exactly_once(path: Path, taken: Iterable[Message], written: Mapping[int, str], queue: str) -> None:
    """Each message of ``queue`` went to exactly one reader, with its body, and
    the file shows every one claimed and none pending."""
    taken = list(taken)
    counts = Counter(m.id for m in taken)
    twice = [ident for ident, n in counts.items() if n > 1]
    assert not twice, f"{len(twice)} message(s) handed to more than one reader, e.g. {twice[:3]}"
    assert set(counts) == set(written), (
        f"{len(set(written) - set(counts))} message(s) never handed over, "
        f"{len(set(counts) - set(written))} handed over that were never written"
    )
    assert all(written[m.id] == m.body for m in taken), "a reader got another body than the one written"
    state = {ts: (body, claimed) for q, body, ts, claimed in rows(path) if q == queue}
    assert state == {ident: (body, 1) for ident, body in written.items()}, (
        f"{sum(1 for _, c in state.values() if not c)} row(s) still pending, "
        f"{len(set(state) ^ set(written))} row(s) differ from what was written"
    )


async def aiter_list(source: AsyncIterator[T]) -> list[T]:
    return [item async for item in source]

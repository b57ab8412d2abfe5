"""Auto-vacuum failures never fail an operation that committed; they are logged.

The default configuration, with auto-vacuum due after every commit
(``BROKER_AUTO_VACUUM_INTERVAL=1``, ``BROKER_VACUUM_THRESHOLD=0``), and every
vacuum failing: ``LockVacuumFile`` raising ``PermissionError`` (a lock file
another user account created), or the claimed-rows delete raising
``OverflowError`` (``BROKER_VACUUM_BATCH_SIZE`` of 2**63). Every write and
read returns its committed result, nothing is lost or duplicated, and the
failure is visible in the ``sansio_broker`` logger.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from sansio_broker import Message
from sansio_broker.commands import Execute, LockVacuumFile
from sansio_broker.sqlite import SQLITE
from tests.faults.faults_support import (
    TRIAL_SECONDS,
    VACUUM_EVERY_COMMIT,
    Injector,
    PersistentFault,
    RawDb,
    open_fds,
    run_with_watchdog,
)
from tests.support.threads import adapter_threads, threads_left

WRITES = [f"m{i}" for i in range(4)]
BATCH = ["x", "y", "z"]
# How many vacuum commands the fault refused so far (the workloads wait for one).
_ATTEMPTS = [0]


def _lock_refused() -> BaseException:
    return PermissionError(13, "Permission denied", "broker.db.vacuum.lock")


def _batch_overflows() -> BaseException:
    return OverflowError("Python int too large to convert to SQLite INTEGER")


FAULTS: dict[str, tuple[Callable[[object], bool], Callable[[], BaseException]]] = {
    "lock-PermissionError": (lambda c: isinstance(c, LockVacuumFile), _lock_refused),
    "delete-OverflowError": (
        lambda c: isinstance(c, Execute) and c.sql == SQLITE.DELETE_CLAIMED_BATCH,
        _batch_overflows,
    ),
}


class Seen:
    """What the workload's callers got back."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.bodies: list[str | None] = []
        self.batch_ids: list[int] = []
        self.claimed: list[Message] = []


def blocking_workload(path: Path) -> Seen:
    from sansio_broker.adapters.blocking import Broker, Queue

    seen = Seen()
    with Broker(path, config=VACUUM_EVERY_COMMIT) as broker:
        queue = Queue("vq", broker)
        seen.ids = [queue.write(body) for body in WRITES]
        seen.bodies = [queue.read() for _ in WRITES]
        seen.batch_ids = queue.write_many(BATCH)
        seen.claimed = queue.claim_many(len(BATCH))
        wait_for_vacuum_attempt()
    return seen


async def async_workload(broker: Any, queue: Any, seen: Seen, pause: Callable[[], Any]) -> None:
    seen.ids = [await queue.write(body) for body in WRITES]
    seen.bodies = [await queue.read() for _ in WRITES]
    seen.batch_ids = await queue.write_many(BATCH)
    seen.claimed = await queue.claim_many(len(BATCH))
    # Vacuum may run in the background: let it try before the broker closes.
    deadline = time.monotonic() + 2
    while not _ATTEMPTS[0] and time.monotonic() < deadline:
        await pause()


def asyncio_workload(path: Path, loop_errors: list[str]) -> Seen:
    from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

    seen = Seen()

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _, c: loop_errors.append(str(c.get("message"))))
        async with async_broker(path, pool_size=2, config=VACUUM_EVERY_COMMIT) as broker:
            await async_workload(broker, AsyncQueue("vq", broker), seen, lambda: asyncio.sleep(0.01))

    asyncio.run(main())
    return seen


def trio_workload(path: Path, loop_errors: list[str]) -> Seen:
    from sansio_broker.adapters.trio import TrioQueue, trio_broker

    seen = Seen()

    async def main() -> None:
        async with trio_broker(path, pool_size=2, config=VACUUM_EVERY_COMMIT) as broker:
            await async_workload(broker, TrioQueue("vq", broker), seen, lambda: trio.sleep(0.01))

    trio.run(main)
    return seen


def wait_for_vacuum_attempt(seconds: float = 2.0) -> None:
    deadline = time.monotonic() + seconds
    while not _ATTEMPTS[0] and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("adapter", ["blocking", "asyncio", "trio"])
def test_failing_auto_vacuum_never_fails_committed_operations(
    adapter: str, fault: str, tmp_path: Path, injector: Injector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="sansio_broker")
    matches, make = FAULTS[fault]
    _ATTEMPTS[0] = 0

    def counted() -> BaseException:
        _ATTEMPTS[0] += 1
        return make()

    injector.faults.append(PersistentFault(matches, counted))
    path = tmp_path / "vacuum.db"
    before = adapter_threads()
    loop_errors: list[str] = []
    if adapter == "blocking":
        seen = blocking_workload(path)
    elif adapter == "asyncio":
        seen = run_with_watchdog(lambda: asyncio_workload(path, loop_errors), 30, lambda: "asyncio workload")
    else:
        seen = run_with_watchdog(lambda: trio_workload(path, loop_errors), 30, lambda: "trio workload")

    # Every committed result reached its caller.
    assert seen.bodies == WRITES
    assert len(seen.ids) == len(WRITES) and all(isinstance(i, int) for i in seen.ids)
    assert seen.claimed == [Message(body, i) for body, i in zip(BATCH, seen.batch_ids, strict=True)]
    raw = RawDb(path)
    try:
        rows = raw.rows("vq")
    finally:
        raw.close()
    # Vacuum never succeeded, so every row is still there, each claimed exactly once.
    assert [(b, t) for b, t, _ in rows] == list(zip(WRITES + BATCH, seen.ids + seen.batch_ids, strict=True))
    assert all(claimed for _, _, claimed in rows)

    assert _ATTEMPTS[0] > 0, f"auto-vacuum never ran, so {fault} was never met (due after every commit)"
    error_name = make().__class__.__name__
    logged = [
        r
        for r in caplog.records
        if (r.name == "sansio_broker" or r.name.startswith("sansio_broker."))
        and r.levelno >= logging.WARNING
        and (error_name in r.getMessage() or (r.exc_info is not None and isinstance(r.exc_info[1], type(make()))))
    ]
    assert logged, (
        f"no WARNING or worse naming {error_name} in the sansio_broker logger; records: "
        f"{[(r.name, r.levelname, r.getMessage()) for r in caplog.records]}"
    )
    assert not loop_errors, f"errors reached the event loop: {loop_errors}"
    left = threads_left(before, timeout=TRIAL_SECONDS / 2)
    assert not left, f"threads left after close: {sorted(t.name for t in left)}"
    assert not open_fds(path), f"descriptors left on the database: {open_fds(path)}"

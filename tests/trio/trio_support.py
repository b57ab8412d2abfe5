"""Helpers for the trio-adapter tests: running, watching threads and the pool, forcing races.

There is no pytest-trio: every test is a plain function that hands an inner
async function to :func:`run`, which puts an upper bound on it so a hang
fails the test instead of the whole run. (A hang inside a shielded scope
cannot be bounded that way; scenarios that might hang like that run in a
subprocess with a timeout instead.)
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import trio
from support.rawdb import rows
from support.workers import clean_env

from sansio_broker import Message
from sansio_broker.adapters.trio import TrioBroker

T = TypeVar("T")

# Settings that keep tests independent of automatic vacuum unless they test it.
QUIET = {"BROKER_AUTO_VACUUM": "0"}
# Generous "does not hang" bound for a whole test body.
HANG_TIMEOUT = 40.0
WORKER_NAME = "sansio-broker-trio-worker"


def run(fn: Callable[..., Awaitable[T]], *args: Any, timeout: float = HANG_TIMEOUT) -> T:
    """``trio.run(fn, *args)``, failing (not hanging) after ``timeout`` seconds."""

    async def guarded() -> T:
        with trio.fail_after(timeout):
            return await fn(*args)

    return trio.run(guarded)


# ------------------------------------------------------------------ threads
def worker_threads() -> set[threading.Thread]:
    """The trio adapter's connection worker threads that are alive now."""
    return {t for t in threading.enumerate() if t.is_alive() and t.name == WORKER_NAME}


def threads_left(before: Iterable[threading.Thread], timeout: float = 5.0) -> set[threading.Thread]:
    """Worker threads started since ``before`` still alive after ``timeout`` seconds."""
    known = set(before)
    deadline = time.monotonic() + timeout
    while True:
        left = worker_threads() - known
        if not left or time.monotonic() > deadline:
            return left
        for t in left:
            t.join(0.05)


# --------------------------------------------------------------------- pool
def open_transactions(broker: TrioBroker) -> list[bool]:
    """For each pooled connection: does its sqlite3 connection have a transaction open?"""
    return [c.driver.connection.in_transaction for c in broker._connections]


def busy(broker: TrioBroker) -> list[bool]:
    """For each pooled connection: is an operation its caller abandoned still running?"""
    return [c.busy is not None and not c.busy.finished for c in broker._connections]


async def settle(broker: TrioBroker, timeout: float = 5.0) -> None:
    """Wait until background clean-up has finished and every connection is idle again.

    Returns after ``timeout`` seconds even if that never happens; the caller asserts.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not broker._cleaning and len(broker._idle) == len(broker._connections) and not any(busy(broker)):
            # One more look after a short pause: a release may be between steps.
            await trio.sleep(0.02)
            if not broker._cleaning and len(broker._idle) == len(broker._connections):
                return
        await trio.sleep(0.01)


async def assert_clean(broker: TrioBroker) -> None:
    """After a settle: no transaction open anywhere, nothing leaked, the broker still works."""
    await settle(broker)
    assert not any(open_transactions(broker)), open_transactions(broker)
    assert len(broker._idle) == len(broker._connections), (
        f"{len(broker._connections) - len(broker._idle)} connection(s) never came back to the pool"
    )
    assert not broker._held, broker._held
    assert broker.last_background_error is None, repr(broker.last_background_error)
    assert len(broker._connections) <= broker.pool_size
    with trio.fail_after(10):
        probe = await broker.write("_probe", "still works")
        message = await broker.claim("_probe", message_id=probe)
    assert message == Message("still works", probe)


async def warm(broker: TrioBroker) -> None:
    """Open every connection of the pool, so none is being opened during the test."""
    held = [await broker._acquire() for _ in range(broker.pool_size)]
    for connection in held:
        broker._release(connection)
    await settle(broker)
    assert len(broker._connections) == len(broker._idle) == broker.pool_size


@contextmanager
def patched_handler(
    broker: TrioBroker, command: type, make: Callable[[Callable[[Any], Any]], Callable[[Any], Any]]
) -> Iterator[None]:
    """Replace the driver's handler for ``command`` on every pooled connection."""
    drivers = [c.driver for c in broker._connections]
    originals = [d._handlers[command] for d in drivers]
    for driver, original in zip(drivers, originals, strict=True):
        driver._handlers[command] = make(original)
    try:
        yield
    finally:
        for driver, original in zip(drivers, originals, strict=True):
            driver._handlers[command] = original


def slow_commit(started: threading.Event, seconds: float) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
    """A Commit handler that reports it began, then sleeps before committing."""

    def make(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def commit(command: Any) -> Any:
            started.set()
            time.sleep(seconds)
            return original(command)

        return commit

    return make


async def wait_for_thread_event(event: threading.Event, timeout: float = 10.0) -> None:
    """Poll a threading.Event from trio (it is set in a worker thread)."""
    with trio.fail_after(timeout):
        while not event.is_set():
            await trio.sleep(0.001)


# ------------------------------------------------------- claim accounting
@dataclass
class Outcomes:
    """What cancelled claims ended with."""

    handed: list[Message] = field(default_factory=list)
    unknown: int = 0
    cancelled: int = 0
    empty: int = 0


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


# ------------------------------------------------------------- processes
SCRIPT_PRELUDE = """
import sys, threading, time
import trio
from sansio_broker.adapters.trio import TrioBroker, TrioQueue, trio_broker
path = sys.argv[1]

def worker_threads():
    return [t for t in threading.enumerate() if t.name == "sansio-broker-trio-worker" and t.is_alive()]
"""

EXIT_TIMEOUT = 15.0  # "exits promptly": generous, only to tell exiting from hanging


def start_script(tmp_path: Path, body: str, name: str = "script") -> subprocess.Popen[str]:
    """Run ``SCRIPT_PRELUDE + body`` in a fresh interpreter on ``<tmp_path>/<name>.db``."""
    script = tmp_path / f"{name}.py"
    script.write_text(textwrap.dedent(SCRIPT_PRELUDE) + textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / f"{name}.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
    )


def finish(proc: subprocess.Popen[str], timeout: float = EXIT_TIMEOUT) -> tuple[int, str, str]:
    """Wait (bounded) for the script; returns (returncode, stdout, stderr)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the script did not exit within {timeout}s\n{out}\n{err}") from None
    return proc.returncode, out, err

"""Close is explicit and complete: leaving ``async with trio_broker(...)`` in any way
closes every connection and stops every worker thread; scripts exit promptly."""

from __future__ import annotations

import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from sansio_broker import BrokerClosedError, TransactionError
from sansio_broker.adapters.trio import TrioBroker, TrioQueue, trio_broker
from sansio_broker.commands import Execute
from tests.async_adapters.kit import blocked_insert, grow
from tests.async_adapters.trio_support import (
    QUIET,
    busy,
    finish,
    patched_handler,
    run,
    start_script,
    threads_left,
    worker_threads,
)
from tests.support import internals
from tests.support.rawdb import rows


class Boom(Exception):
    pass


@pytest.mark.parametrize("how", ["move_on_after", "fail_after", "outer nursery"])
@pytest.mark.parametrize("held", ["transaction", "batch"])
def test_leaving_by_cancellation_with_work_in_flight_closes_everything(db_path: Path, held: str, how: str) -> None:
    """Cancelled while a task inside holds a transaction or an open batch (the write
    lock), others wait for it, and others read."""
    before = worker_threads()
    opened: list[TrioBroker] = []

    async def body(ready: trio.Event) -> None:
        async with trio_broker(db_path, pool_size=4, config=QUIET) as broker:
            opened.append(broker)
            await grow(broker)
            await broker.write_many("jobs", ["a", "b", "c", "d"])
            holding = trio.Event()

            async def holder() -> None:
                async with broker.transaction():
                    await broker.claim("q")
                    await broker.write("results", "never committed")
                    holding.set()
                    await trio.sleep_forever()

            async def consumer() -> None:
                async for _ in TrioQueue("jobs", broker).stream(commit_interval=3):
                    holding.set()
                    await trio.sleep_forever()

            async def waiting_writer() -> None:
                while True:
                    await broker.write("never", "x")

            async def reader() -> None:
                while True:
                    await broker.peek_many("q", 100)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(holder if held == "transaction" else consumer)
                await holding.wait()
                nursery.start_soon(waiting_writer)
                nursery.start_soon(reader)
                nursery.start_soon(reader)
                await trio.sleep(0.05)
                ready.set()
                await trio.sleep_forever()

    async def main() -> None:
        ready = trio.Event()
        if how == "move_on_after":
            with trio.move_on_after(0.5) as scope:
                await body(ready)
            assert scope.cancelled_caught
        elif how == "fail_after":
            with pytest.raises(trio.TooSlowError), trio.fail_after(0.5):
                await body(ready)
        else:
            async with trio.open_nursery() as outer:
                outer.start_soon(body, ready)
                await ready.wait()
                outer.cancel_scope.cancel()
        assert ready.is_set()

    run(main)
    assert not threads_left(before, timeout=2)
    (broker,) = opened
    assert (
        internals.is_closed(broker)
        and internals.open_connections(broker) == []
        and internals.idle_connections(broker) == 0
    )
    assert broker.last_background_error is None, repr(broker.last_background_error)
    stored = rows(db_path)
    assert [b for q, b, _, c in stored if q == "jobs" and c == 1] == []  # the open batch rolled back
    assert [b for q, b, _, _ in stored if q in ("results", "never")] == []  # nothing of the held or waiting work
    assert sum(c for q, _, _, c in stored if q == "q") == 20  # the held transaction's claim rolled back


def test_a_batch_dropped_just_before_close_is_rolled_back_not_failed(db_path: Path) -> None:
    async def main() -> TrioBroker:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            queue = TrioQueue("jobs", broker)
            await queue.write_many(["a", "b", "c"])
            async for _ in queue.stream(commit_interval=2):
                break  # the batch is rolled back in the background... while the block closes the broker
        return broker

    broker = run(main)
    assert [b for _, b, _, c in rows(db_path) if c == 1] == []  # (closing the connection rolled it back)
    assert broker.last_background_error is None, repr(broker.last_background_error)


def test_background_work_arriving_as_the_run_ends_is_dropped_not_a_crash(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Work queued for the background just before trio closes its system nursery
    (a give-back from a worker thread, a stream finalized late) cannot start: it is
    dropped with a warning, and trio does not fail with TrioInternalError."""
    started: list[bool] = []

    async def work() -> None:
        started.append(True)

    async def body() -> None:
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            with monkeypatch.context() as patch:
                patch.setattr(trio.lowlevel, "spawn_system_task", _nursery_closed)
                internals.in_background(broker, work())
                await trio.sleep(0.01)  # the scheduled start runs, and fails to spawn
            assert not internals.cleaning_up(broker)  # close() does not wait for it
            await broker.write("q", "after")
        async with trio_broker(db_path, pool_size=1, config=QUIET) as broker:
            assert await broker.read("q") == ["after"]

    run(body)
    assert started == []
    assert "dropped: the trio run ended first" in caplog.text


def _nursery_closed(*args: object, **kwargs: object) -> None:
    raise RuntimeError("Nursery is closed to new arrivals")


def test_close_waits_for_an_abandoned_operation_still_running(db_path: Path) -> None:
    before = worker_threads()

    async def main() -> None:
        async with trio_broker(db_path, pool_size=2, config=QUIET) as broker:
            await grow(broker)
            reached, proceed = threading.Event(), threading.Event()

            with patched_handler(broker, Execute, blocked_insert(reached, proceed)):
                with trio.move_on_after(5) as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(broker.write, "q", "abandoned")
                        while not reached.is_set():
                            await trio.sleep(0.001)
                        nursery.cancel_scope.cancel()
                assert not scope.cancelled_caught
                assert any(busy(broker))  # the worker still runs it
                threading.Timer(0.2, proceed.set).start()
                with trio.fail_after(10):
                    await broker.close()  # queued behind it, so it runs after it
            assert not threads_left(before, timeout=2)
            with pytest.raises(BrokerClosedError):
                await broker.write("q", "after close")

    run(main)
    assert "abandoned" not in [b for _, b, _, _ in rows(db_path)]


@pytest.mark.parametrize("error", ["user exception", "TransactionError from an operation"])
def test_an_exception_leaves_the_block_as_itself(db_path: Path, error: str) -> None:
    """As with ``async_broker``: what the block raises is what the caller catches."""

    async def main() -> None:
        async with trio_broker(db_path, config=QUIET) as broker:
            if error == "user exception":
                raise Boom
            await broker.write("q", "x")
            async for _ in broker.stream("q", commit_interval=2):
                await broker.write("q", "inside the batch")

    expected = Boom if error == "user exception" else TransactionError
    with pytest.raises(expected):
        run(main)


# ------------------------------------------------------------- processes
# Ctrl-C at the worst moment: just after an operation's job was queued for its
# worker thread, before its task waits for the result. A SIGINT raised there
# is handled by trio's handler at the next bytecode, exactly as a real one
# landing there would be (the interrupted-script test above hits it by chance).
CTRL_C_AFTER_QUEUEING = """
import signal

class CtrlCAfterPut:
    def __init__(self, inner):
        self.inner, self.armed = inner, False

    def put(self, item):
        self.inner.put(item)
        if self.armed and item is not None:
            self.armed = False
            signal.raise_signal(signal.SIGINT)

    def get(self, *args, **kwargs):
        return self.inner.get(*args, **kwargs)

async def main():
    async with trio_broker(path, pool_size=1) as broker:
        await broker.write("q", "x")
        (connection,) = internals.open_connections(broker)
        internals.wrap_worker_jobs(connection, CtrlCAfterPut).armed = True
        async with trio.open_nursery() as nursery:
            nursery.start_soon(broker.peek, "q")
            await trio.sleep(2)
        print("never interrupted", flush=True)

def leaves(exc):
    if isinstance(exc, BaseExceptionGroup):
        return [name for inner in exc.exceptions for name in leaves(inner)]
    return [type(exc).__name__]

try:
    trio.run(main)
except BaseException as exc:
    print("ended with", *sorted(set(leaves(exc))), flush=True)
for thread in worker_threads():
    thread.join(5)
print("threads", len(worker_threads()), flush=True)
"""


@pytest.mark.slow
def test_ctrl_c_just_after_an_operation_is_queued_is_a_clean_keyboard_interrupt(tmp_path: Path) -> None:
    code, out, err = finish(start_script(tmp_path, CTRL_C_AFTER_QUEUEING))
    assert code == 0, err
    assert "TrioInternalError" not in err + out and "Exception in thread" not in err, err
    assert out.splitlines() == ["ended with KeyboardInterrupt", "threads 0"], out + err


# Work that outlives its broker: tasks of an outer nursery still hold a
# transaction or an open batch when the broker closes. Leaving that work must
# not hang, commit anything, or fail with anything but what it asked for.
# (In subprocesses: a hang may be in a shielded clean-up no timeout cancels.)
OUTLIVING: dict[str, tuple[str, list[str]]] = {
    "a held transaction is cancelled": (
        """
        async def work(broker, holding):
            async with broker.transaction():
                await broker.write("q", "never committed")
                holding.set()
                await trio.sleep_forever()
        """,
        ["broker closed", "left"],
    ),
    "a held transaction writes again": (
        """
        async def work(broker, holding):
            async with broker.transaction():
                await broker.write("q", "never committed")
                holding.set()
                await closed.wait()
                try:
                    await broker.write("q", "after close")
                except Exception as exc:
                    print("raised", type(exc).__name__, flush=True)
                    raise
        """,
        ["broker closed", "raised BrokerClosedError", "error BrokerClosedError"],
    ),
    "an open batch is closed": (
        """
        async def work(broker, holding):
            async with broker.stream("jobs", commit_interval=3) as stream:
                async for _ in stream:
                    holding.set()
                    await trio.sleep_forever()
        """,
        ["broker closed", "left"],
    ),
}

OUTLIVING_TIMEOUT = 4.0  # for all of them together: each needs well under a second
Outliving = tuple[dict[str, tuple[Path, subprocess.Popen[str]]], float]

OUTLIVING_MAIN = """
closed = trio.Event()

async def main():
    async with trio.open_nursery() as outer:
        async with trio_broker(path, pool_size=2) as broker:
            await broker.write_many("jobs", ["a", "b", "c", "d"])
            holding = trio.Event()
            outer.start_soon(work, broker, holding)
            await holding.wait()
        closed.set()
        print("broker closed", flush=True)
        await trio.sleep(0.2)
        outer.cancel_scope.cancel()
    print("left", flush=True)

def leaves(exc):
    if isinstance(exc, BaseExceptionGroup):
        return [name for inner in exc.exceptions for name in leaves(inner)]
    return [type(exc).__name__]

try:
    trio.run(main)
except BaseException as exc:
    print("error", *leaves(exc), flush=True)
"""


@pytest.fixture(scope="module")
def outliving(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outliving]:
    """Every OUTLIVING scenario started at once, with one deadline for all (each may hang)."""
    started: dict[str, tuple[Path, subprocess.Popen[str]]] = {}
    for n, (name, (work, _)) in enumerate(OUTLIVING.items()):
        tmp = tmp_path_factory.mktemp(f"outliving{n}")
        started[name] = (tmp, start_script(tmp, textwrap.dedent(work) + OUTLIVING_MAIN))
    yield started, time.monotonic() + OUTLIVING_TIMEOUT
    for _, proc in started.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(OUTLIVING))
def test_work_outliving_its_broker_neither_hangs_nor_commits(outliving: Outliving, scenario: str) -> None:
    started, deadline = outliving
    tmp, proc = started[scenario]
    code, out, err = finish(proc, timeout=max(0.5, deadline - time.monotonic()))
    assert code == 0, err
    assert out.splitlines() == OUTLIVING[scenario][1], err
    stored = rows(tmp / "script.db")
    assert "never committed" not in [b for _, b, _, _ in stored]
    assert [b for q, b, _, c in stored if q == "jobs" and c == 1] == []

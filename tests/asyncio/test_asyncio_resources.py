"""Close is explicit and complete: no worker thread or connection outlives it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from asyncio_support import QUIET, registry, run, threads_left, worker_threads
from support.rawdb import rows
from support.workers import clean_env

from sansio_broker import BrokerClosedError
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker
from sansio_broker.commands import Execute

EXIT_TIMEOUT = 15.0  # "exits promptly": generous, only to tell exiting from hanging


class Boom(Exception):
    pass


async def grow(broker: AsyncBroker, queue: str = "q") -> None:
    """Use the broker from many tasks at once, so the pool opens several connections."""
    # Batch calls: concurrent single writes and claims would share one
    # connection (group commit).
    await asyncio.gather(*(broker.write_many(queue, [str(i)]) for i in range(40)))
    await asyncio.gather(*(broker.claim_many(queue, 1) for _ in range(20)))


def test_close_stops_every_worker_thread(db_path: Path) -> None:
    before = worker_threads()
    during: set[threading.Thread] = set()

    async def main() -> None:
        broker = await AsyncBroker(db_path, pool_size=4, config=QUIET).open()
        await grow(broker)
        during.update(worker_threads() - before)
        assert len(during) == len(registry(broker)) > 1
        await broker.close()
        assert registry(broker) == []

    run(main())
    assert not threads_left(before, timeout=2)
    assert not any(t.is_alive() for t in during)


def test_leaving_async_with_by_an_exception_closes_everything(db_path: Path) -> None:
    before = worker_threads()
    opened: list[AsyncBroker] = []

    async def main() -> None:
        async with async_broker(db_path, pool_size=3, config=QUIET) as broker:
            opened.append(broker)
            await grow(broker)
            async with broker.transaction():
                await broker.claim("q")
                raise Boom

    with pytest.raises(Boom):
        run(main())
    assert not threads_left(before, timeout=2)
    assert registry(opened[0]) == []
    assert opened[0]._closed
    # The transaction was rolled back before the connection closed.
    assert sum(c for _, _, _, c in rows(db_path)) == 20


def test_close_while_work_is_in_flight(db_path: Path) -> None:
    """Close with an abandoned operation still running, an open stream batch and a held transaction."""
    before = worker_threads()

    async def main() -> None:
        broker = await AsyncBroker(db_path, pool_size=4, config=QUIET).open()
        await grow(broker)
        await broker.write_many("jobs", ["a", "b", "c", "d"])

        # 1. An operation whose caller was cancelled, still blocked in its worker thread.
        proceed = threading.Event()
        reached = threading.Event()
        drivers = [c.raw_connection.driver for c in registry(broker)]
        originals = [d._handlers[Execute] for d in drivers]

        def blocking(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
            def execute(command: Execute) -> Any:
                if "INSERT INTO messages" in command.sql and not reached.is_set():
                    reached.set()
                    proceed.wait(10)
                return original(command)

            return execute

        for driver, original in zip(drivers, originals, strict=True):
            driver._handlers[Execute] = blocking(original)
        abandoned = asyncio.create_task(broker.write("q", "abandoned"))
        while not reached.is_set():
            await asyncio.sleep(0.001)
        abandoned.cancel()
        threading.Timer(0.2, proceed.set).start()

        # 2. A stream whose batch is open (it holds the write lock) in another task.
        in_batch = asyncio.Event()

        async def consumer() -> None:
            async for _ in AsyncQueue("jobs", broker).stream(commit_interval=3):
                in_batch.set()
                await asyncio.sleep(30)

        streaming = asyncio.create_task(consumer())
        await in_batch.wait()

        # 3. A transaction held open by a third task.
        holding = asyncio.Event()

        async def holder() -> None:
            async with broker.transaction():
                holding.set()
                await asyncio.sleep(30)

        held = asyncio.create_task(holder())
        await asyncio.sleep(0.02)

        await asyncio.wait_for(broker.close(), 20)
        assert not threads_left(before, timeout=2)
        for task in (streaming, held, abandoned):
            task.cancel()
        await asyncio.gather(streaming, held, abandoned, return_exceptions=True)
        with pytest.raises(BrokerClosedError):
            await broker.write("q", "after close")

    run(main())
    assert not threads_left(before, timeout=2)
    # Nothing that was open got committed: the batch and the abandoned write are gone.
    assert [b for q, b, _, c in rows(db_path) if q == "jobs" and c == 1] == []
    assert "abandoned" not in [b for _, b, _, _ in rows(db_path)]


@pytest.mark.filterwarnings("ignore:coroutine 'PoolConnection.close' was never awaited:RuntimeWarning")
def test_a_cancelled_close_still_stops_every_thread(db_path: Path) -> None:
    before = worker_threads()

    async def main() -> None:
        broker = await AsyncBroker(db_path, pool_size=3, config=QUIET).open()
        await grow(broker)
        closing = asyncio.create_task(broker.close())
        await asyncio.sleep(0)  # close() is now waiting for the connections to close
        closing.cancel()
        await asyncio.gather(closing, return_exceptions=True)
        await broker.close()  # whatever the first one left undone

    run(main())
    assert not threads_left(before, timeout=1)


# ------------------------------------------------------------- processes
SCRIPT_PRELUDE = """
import asyncio, sys
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker
path = sys.argv[1]
"""

USE_AND_EXIT = """
async def main():
    async with async_broker(path, pool_size=4) as broker:
        queue = AsyncQueue("q", broker)
        await asyncio.gather(*(queue.write(str(i)) for i in range(50)))
        await asyncio.gather(*(queue.read() for _ in range(10)))
        async for _ in queue.stream(commit_interval=5):
            break                                   # an abandoned batch
        task = asyncio.create_task(queue.read_all(peek=True))
        await asyncio.sleep(0)
        task.cancel()                               # a cancelled operation
        async with broker.transaction():
            await queue.read()
        print("pending", await queue.size(), flush=True)
asyncio.run(main())
"""

EXIT_BY_EXCEPTION = """
async def main():
    async with async_broker(path, pool_size=3) as broker:
        await asyncio.gather(*(broker.write("q", str(i)) for i in range(20)))
        async with broker.transaction():
            await broker.claim("q")
            raise RuntimeError("boom")
asyncio.run(main())
"""

INTERRUPTED = """
async def main():
    async with async_broker(path, pool_size=3) as broker:
        print("ready", flush=True)
        while True:
            await asyncio.gather(broker.write("q", "x"), broker.claim("q"), broker.peek("q"))
asyncio.run(main())
"""

NEVER_CLOSED = """
async def main():
    broker = await AsyncBroker(path, pool_size=3).open()
    await asyncio.gather(*(broker.write("q", str(i)) for i in range(10)))
    print(len(await broker.read("q", all_messages=True)), flush=True)
asyncio.run(main())
"""


def start_script(tmp_path: Path, body: str) -> subprocess.Popen[str]:
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(SCRIPT_PRELUDE) + textwrap.dedent(body))
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "script.db")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
    )


def finish(proc: subprocess.Popen[str], timeout: float = EXIT_TIMEOUT) -> tuple[int, str, str, float]:
    """Wait (bounded) for the script; returns (returncode, stdout, stderr, seconds)."""
    start = time.monotonic()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the script did not exit within {timeout}s\n{out}\n{err}") from None
    return proc.returncode, out, err, time.monotonic() - start


@pytest.mark.slow
def test_a_script_that_uses_a_broker_exits_promptly(tmp_path: Path) -> None:
    code, out, err, _ = finish(start_script(tmp_path, USE_AND_EXIT))
    assert code == 0, err
    assert out.split() == ["pending", "39"]  # 10 read, 1 in the transaction; the batch rolled back


@pytest.mark.slow
def test_a_script_leaving_by_an_exception_exits_promptly(tmp_path: Path) -> None:
    code, _, err, _ = finish(start_script(tmp_path, EXIT_BY_EXCEPTION))
    assert code == 1
    assert "RuntimeError: boom" in err
    assert sum(c for _, _, _, c in rows(tmp_path / "script.db")) == 0


@pytest.mark.slow
def test_an_interrupted_script_exits_promptly(tmp_path: Path) -> None:
    proc = start_script(tmp_path, INTERRUPTED)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)  # in the middle of its work
    proc.send_signal(signal.SIGINT)
    code, _, err, _ = finish(proc)
    assert code != 0
    assert "KeyboardInterrupt" in err


@pytest.mark.slow
def test_a_script_that_never_closes_its_broker_still_exits(tmp_path: Path) -> None:
    # It does its work in well under a second; then it must not hang.
    code, out, err, _ = finish(start_script(tmp_path, NEVER_CLOSED), timeout=6)
    assert code == 0, err
    assert out.strip() == "10"

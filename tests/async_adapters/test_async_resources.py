"""Close is explicit and complete, on asyncio and trio: no worker thread or connection outlives it.

Scripts that use a broker exit promptly. What only one runtime has is in
test_asyncio_resources.py and test_trio_resources.py.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.async_adapters.kit import QUIET, Kit, grow
from tests.async_adapters.scripts import finish, start_script
from tests.support import internals
from tests.support.rawdb import rows
from tests.support.threads import threads_left

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


def left(kit: Kit, before: set[threading.Thread], timeout: float) -> set[threading.Thread]:
    return threads_left(before, timeout=timeout, markers=(kit.worker_marker,))


async def test_close_stops_every_worker_thread(kit: Kit, db_path: Path) -> None:
    before = kit.worker_threads()
    async with kit.open_broker(db_path, pool_size=4, config=QUIET) as broker:
        await grow(broker)
        during = kit.worker_threads() - before
        assert len(during) == len(internals.open_connections(broker)) > 1
        raw = internals.sqlite_connections(broker)
        await broker.close()
        assert internals.open_connections(broker) == []
        for connection in raw:  # every sqlite3 connection is closed
            with pytest.raises(Exception, match="closed"):
                connection.execute("SELECT 1")
        assert not left(kit, before, timeout=2)
    assert not any(t.is_alive() for t in during)


async def test_leaving_by_an_exception_closes_everything_and_rolls_back(kit: Kit, db_path: Path) -> None:
    before = kit.worker_threads()
    opened: list[Any] = []
    with pytest.raises(Boom):
        async with kit.open_broker(db_path, pool_size=3, config=QUIET) as broker:
            opened.append(broker)
            await grow(broker)
            async with broker.transaction():
                await broker.claim("q")
                raise Boom
    assert not left(kit, before, timeout=2)
    assert internals.is_closed(opened[0]) and internals.open_connections(opened[0]) == []
    assert sum(c for _, _, _, c in rows(db_path)) == 20  # the transaction's claim rolled back


@pytest.mark.filterwarnings("ignore:coroutine 'PoolConnection.close' was never awaited:RuntimeWarning")
async def test_a_cancelled_close_still_stops_every_thread(kit: Kit, cancel_style: str, db_path: Path) -> None:
    before = kit.worker_threads()
    async with kit.open_broker(db_path, pool_size=3, config=QUIET) as broker:
        await grow(broker)
        await kit.run_cancelled(broker.close, cancel_style, after=0)  # cancelled as it begins
        await broker.close()  # whatever the first one left undone (none on trio: close is shielded)
        assert internals.open_connections(broker) == []
        assert not left(kit, before, timeout=2)


# ------------------------------------------------------------- processes
# Each script in the runtime's idiom (the prelude is in tests/async_adapters/scripts.py).
SCRIPTS = {
    "USE_AND_EXIT": {
        "asyncio": """
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
    for t in worker_threads():
        t.join(5)
    print("threads", len(worker_threads()), flush=True)
asyncio.run(main())
""",
        "trio": """
async def main():
    async with trio_broker(path, pool_size=4) as broker:
        queue = TrioQueue("q", broker)
        async with trio.open_nursery() as nursery:
            for i in range(50):
                nursery.start_soon(queue.write, str(i))
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(queue.read)
        async for _ in queue.stream(commit_interval=5):
            break                                   # an abandoned batch
        with trio.move_on_after(0.0005):
            await queue.read_all(peek=True)         # a cancelled operation
        async with broker.transaction():
            await queue.read()
        print("pending", await queue.size(), flush=True)
    for t in worker_threads():
        t.join(5)
    print("threads", len(worker_threads()), flush=True)
trio.run(main)
""",
    },
    "EXIT_BY_EXCEPTION": {
        "asyncio": """
async def main():
    async with async_broker(path, pool_size=3) as broker:
        await asyncio.gather(*(broker.write("q", str(i)) for i in range(20)))
        async with broker.transaction():
            await broker.claim("q")
            raise RuntimeError("boom")
asyncio.run(main())
""",
        "trio": """
async def main():
    async with trio_broker(path, pool_size=3) as broker:
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(broker.write, "q", str(i))
        async with broker.transaction():
            await broker.claim("q")
            raise RuntimeError("boom")
trio.run(main)
""",
    },
    "INTERRUPTED": {
        "asyncio": """
async def main():
    async with async_broker(path, pool_size=3) as broker:
        print("ready", flush=True)
        while True:
            await asyncio.gather(broker.write("q", "x"), broker.claim("q"), broker.peek("q"))
asyncio.run(main())
""",
        "trio": """
async def forever(operation, *args):
    while True:
        await operation(*args)

async def main():
    # Long-lived tasks: a Ctrl-C landing inside trio's own start_soon (which
    # trio does not protect) would corrupt trio itself, not test this library.
    async with trio_broker(path, pool_size=3) as broker:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forever, broker.write, "q", "x")
            nursery.start_soon(forever, broker.claim, "q")
            nursery.start_soon(forever, broker.peek, "q")
            print("ready", flush=True)
trio.run(main)
""",
    },
    "NEVER_CLOSED": {
        "asyncio": """
async def main():
    broker = await AsyncBroker(path, pool_size=3).open()
    await asyncio.gather(*(broker.write("q", str(i)) for i in range(10)))
    print(len(await broker.read("q", all_messages=True)), flush=True)
asyncio.run(main())
""",
        "trio": """
async def main():
    broker = await TrioBroker(path, pool_size=3, config=None).open()
    for i in range(10):
        await broker.write("q", str(i))
    print(len(await broker.read("q", all_messages=True)), flush=True)
trio.run(main)
""",
    },
}
RUNTIMES = pytest.mark.parametrize("runtime", ["asyncio", "trio"])


@pytest.mark.slow
@RUNTIMES
def test_a_script_that_uses_a_broker_exits_promptly(tmp_path: Path, runtime: str) -> None:
    code, out, err = finish(start_script(runtime, tmp_path, SCRIPTS["USE_AND_EXIT"][runtime]))
    assert code == 0, err
    # 10 read, 1 in the transaction; the abandoned batch rolled back.
    assert out.split() == ["pending", "39", "threads", "0"]


@pytest.mark.slow
@RUNTIMES
def test_a_script_leaving_by_an_exception_exits_promptly(tmp_path: Path, runtime: str) -> None:
    code, _, err = finish(start_script(runtime, tmp_path, SCRIPTS["EXIT_BY_EXCEPTION"][runtime]))
    assert code == 1
    assert "RuntimeError: boom" in err
    assert sum(c for _, _, _, c in rows(tmp_path / "script.db")) == 0


@pytest.mark.slow
@RUNTIMES
def test_an_interrupted_script_exits_promptly(tmp_path: Path, runtime: str) -> None:
    proc = start_script(runtime, tmp_path, SCRIPTS["INTERRUPTED"][runtime])
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)  # in the middle of its work
    proc.send_signal(signal.SIGINT)
    code, out, err = finish(proc)
    assert code != 0, out
    assert "KeyboardInterrupt" in err, err


@pytest.mark.slow
@RUNTIMES
def test_a_script_that_never_closes_its_broker_still_exits(tmp_path: Path, runtime: str) -> None:
    # It does its work in well under a second; then it must not hang.
    code, out, err = finish(start_script(runtime, tmp_path, SCRIPTS["NEVER_CLOSED"][runtime]), timeout=6)
    assert code == 0, err
    assert out.strip() == "10"


async def test_operations_racing_close_are_refused_cleanly_and_leave_nothing_open(kit: Kit, db_path: Path) -> None:
    """Callers still queued for a connection, or opening one, when close() runs get
    BrokerClosedError, never an error from a connection closed under them, and close
    leaves no connection or background work behind (it once left both, and hung)."""
    import anyio

    from sansio_broker import BrokerClosedError

    for _ in range(20):
        broker = await kit.Broker(db_path, pool_size=2, config=QUIET).open()
        errors: list[str] = []

        async def caller(number: int, broker: Any = broker, errors: list[str] = errors) -> None:
            try:
                await broker.claim(f"q{number % 3}")
                await broker.peek("r")
            except BrokerClosedError:
                pass
            except Exception as exc:
                errors.append(repr(exc))

        async with anyio.create_task_group() as group:
            for number in range(10):
                group.start_soon(caller, number)
            await anyio.sleep(0)
            with anyio.fail_after(10):
                await broker.close()
        assert errors == []
        assert internals.open_connections(broker) == []
        assert not internals.cleaning_up(broker)

"""A write that returned survives SIGKILL (issue 5, item 5), for all three adapters.

A subprocess (a fresh interpreter, not a fork) opens the broker with
``BROKER_SYNC_MODE=FULL`` and runs 50 concurrent writers (tasks, or threads
for the blocking adapter); each reports ``[body, id]`` on its stdout pipe the
moment its write returns. The test kills it with SIGKILL at a random moment
after at least 200 reports. Reopened by the blocking adapter and by
SimpleBroker 8.7.2, the file holds every reported message under its ID, each
writer's messages in the order it wrote them, and at most the one call each
writer had in flight beyond what it reported.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import sansio_broker
from sansio_broker.adapters.blocking import Broker
from tests.groups.groups_support import QUIET
from tests.support.rawdb import query
from tests.support.workers import clean_env

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")]

simplebroker = pytest.importorskip("simplebroker")
if simplebroker.__version__ != "8.7.2":
    pytest.skip(f"needs simplebroker 8.7.2, found {simplebroker.__version__}", allow_module_level=True)

WRITERS = 50
BATCH = 3  # every fifth writer uses write_many of this many bodies
TIMEOUT = 60.0
# The subprocess imports the same sansio_broker as this test process.
CODE_ROOT = str(Path(sansio_broker.__file__).resolve().parents[1])

WRITER_SCRIPT = """
import json, sys, threading
adapter, db, writers, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
lock = threading.Lock()

def report(bodies, ids):
    # Right after the write returned: one line per message, flushed to the pipe.
    with lock:
        sys.stdout.write("".join(json.dumps([b, i]) + "\\n" for b, i in zip(bodies, ids)))
        sys.stdout.flush()

def bodies_of(n, i):
    return [f"w{n}-{i}.{j}" for j in range(batch)] if n % 5 == 4 else [f"w{n}-{i}"]

if adapter == "blocking":
    from sansio_broker.adapters.blocking import Broker
    broker = Broker(db)  # config from BROKER_* in the environment

    def writer(n):
        i = 0
        while True:
            bodies = bodies_of(n, i)
            ids = broker.write_many("q", bodies) if len(bodies) > 1 else [broker.write("q", bodies[0])]
            report(bodies, ids)
            i += 1

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
elif adapter == "asyncio":
    import asyncio
    from sansio_broker.adapters.asyncio import async_broker

    async def main():
        async with async_broker(db) as broker:
            async def writer(n):
                i = 0
                while True:
                    bodies = bodies_of(n, i)
                    if len(bodies) > 1:
                        ids = await broker.write_many("q", bodies)
                    else:
                        ids = [await broker.write("q", bodies[0])]
                    report(bodies, ids)
                    i += 1
            await asyncio.gather(*(writer(n) for n in range(writers)))

    asyncio.run(main())
else:
    import trio
    from sansio_broker.adapters.trio import trio_broker

    async def main():
        async with trio_broker(db) as broker:
            async def writer(n):
                i = 0
                while True:
                    bodies = bodies_of(n, i)
                    if len(bodies) > 1:
                        ids = await broker.write_many("q", bodies)
                    else:
                        ids = [await broker.write("q", bodies[0])]
                    report(bodies, ids)
                    i += 1
            async with trio.open_nursery() as nursery:
                for n in range(writers):
                    nursery.start_soon(writer, n)

    trio.run(main)
"""

SIMPLEBROKER_SCRIPT = """
import json, sys
import simplebroker
queue = simplebroker.Queue("q", db_path=sys.argv[1], persistent=True)
try:
    peeked = queue.peek_many(1_000_000, with_timestamps=True)
    read = queue.read_many(1_000_000, with_timestamps=True)
finally:
    queue.close()
print(json.dumps({"peeked": peeked, "read": read}))
"""


def write_until_killed(tmp_path: Path, adapter: str, kill_after: int) -> list[tuple[str, int]]:
    """Run the writer script, SIGKILL it once it reported ``kill_after`` IDs; every report it made."""
    db = tmp_path / "broker.db"
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER_SCRIPT))
    env = clean_env({"BROKER_SYNC_MODE": "FULL", "BROKER_AUTO_VACUUM": "0", "PYTHONPATH": CODE_ROOT})
    proc = subprocess.Popen(
        [sys.executable, str(script), adapter, str(db), str(WRITERS), str(BATCH)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    lines: list[str] = []
    pump = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    pump.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(lines) < kill_after and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        assert proc.poll() is None, f"the writer exited early ({proc.returncode}): {proc.stderr.read()}"  # type: ignore[union-attr]
        assert len(lines) >= kill_after, f"only {len(lines)} IDs reported in {TIMEOUT}s"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        pump.join(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    # A line the kill cut short (no newline yet) was never fully reported.
    reported = [(str(body), int(ident)) for body, ident in (json.loads(line) for line in lines if line.endswith("\n"))]
    return reported


def check_durable(db: Path, reported: list[tuple[str, int]], stored: dict[str, int], who: str) -> None:
    """Every reported message is stored under its ID; per writer, the stored ones are
    its reported ones plus at most the one call it had in flight, in order."""
    missing = [(b, i) for b, i in reported if stored.get(b) != i]
    assert not missing, f"{who}: {len(missing)} reported write(s) lost after SIGKILL, e.g. {missing[:3]}"
    for n in range(WRITERS):
        mine = [b for b, i in reported if b.split("-")[0] == f"w{n}"]
        in_file = sorted((i, b) for b, i in stored.items() if b.split("-")[0] == f"w{n}")
        bodies = [b for _, b in in_file]
        assert bodies[: len(mine)] == mine, f"{who}: writer {n}'s messages are not its reports, in order"
        extra = len(bodies) - len(mine)
        assert extra <= (BATCH if n % 5 == 4 else 1), f"{who}: writer {n} has {extra} unreported messages"


@pytest.mark.parametrize("adapter", ["blocking", "asyncio", "trio"])
def test_reported_writes_survive_sigkill(tmp_path: Path, adapter: str) -> None:
    rng = random.Random(adapter)
    db = tmp_path / "broker.db"
    reported = write_until_killed(tmp_path, adapter, kill_after=rng.randint(200, 800))
    assert len({i for _, i in reported}) == len(reported), "an ID was reported twice"

    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    # Reopened by our blocking adapter.
    with Broker(db, config={**QUIET, "BROKER_SYNC_MODE": "FULL"}) as broker:
        ours = {m.body: m.id for m in broker.peek_many("q", 1_000_000)}
    check_durable(db, reported, ours, "sansio-broker")

    # Reopened by SimpleBroker 8.7.2, which also claims them all.
    done = subprocess.run(
        [sys.executable, "-c", SIMPLEBROKER_SCRIPT, str(db)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert [tuple(p) for p in seen["peeked"]] == sorted(ours.items(), key=lambda p: p[1])
    assert [tuple(p) for p in seen["read"]] == [tuple(p) for p in seen["peeked"]]
    check_durable(db, reported, {b: i for b, i in seen["read"]}, "simplebroker")
    assert query(db, "SELECT COUNT(*) FROM messages WHERE claimed = 0") == [(0,)]

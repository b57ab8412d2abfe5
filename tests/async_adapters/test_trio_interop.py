"""Our trio adapter and SimpleBroker 8.7.2 (the real library, in subprocesses) on one file at once.

- trio writer tasks while SimpleBroker reader processes claim;
- SimpleBroker writer processes while trio tasks claim.

Every message is delivered exactly once with the ID its writer got back, IDs
increase per writer and per reader, and the file is healthy after:
``PRAGMA integrity_check`` is ok and ``meta.last_ts >= MAX(ts)``.
Subprocesses run without ``PYTHONPATH`` or ``BROKER_*``, with a timeout.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import textwrap
from collections import Counter
from contextlib import closing
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import trio

from sansio_broker import Message
from sansio_broker.adapters.trio import TrioQueue, trio_broker
from tests.async_adapters.trio_support import run
from tests.support.workers import clean_env, finish_workers, mark_done, start_workers

simplebroker = pytest.importorskip("simplebroker")
if simplebroker.__version__ != "8.7.2":
    pytest.skip(f"needs simplebroker 8.7.2, found {simplebroker.__version__}", allow_module_level=True)

pytestmark = pytest.mark.slow

TIMEOUT = 60.0
QUEUE = "jobs"
Pairs = list[tuple[str, int]]

# A SimpleBroker worker: ``python worker.py ROLE DB QUEUE OPTIONS_JSON`` (PYTHONPATH from clean_env).
SB_WORKER = """
import json, os, sys, time
import simplebroker
from tests.support.workers import drain, mark_done, wait_for_go

role, db, name, raw = sys.argv[1:5]
options = json.loads(raw)
queue = simplebroker.Queue(name, db_path=db, persistent=True)
try:
    queue.exists()  # the file is open before ``ready``
    wait_for_go()
    if role == "reader":
        mode = options["mode"]

        def take():
            if mode == "read":
                got = queue.read(with_timestamps=True)
                return [] if got is None else [list(got)]
            if mode == "read_many":
                return [list(pair) for pair in queue.read_many(10, with_timestamps=True)]
            return [list(pair) for pair in queue.read_generator(with_timestamps=True)]

        before_done = [0]  # taken while the writers were still writing

        def counted():
            writing = not os.listdir(options["done"])
            got = take()
            before_done[0] += len(got) if writing else 0
            return got

        result = {"got": drain(counted, options["done"], upstream=1, pause=0.001), "before_done": before_done[0]}
    else:
        wrote = []
        for i in range(options["count"]):
            body = f"{options['tag']}-{i}"
            wrote.append([body, queue.write(body)])
            time.sleep(options["pause"])
        mark_done(options["done"], options["tag"])
        result = {"wrote": wrote}
finally:
    queue.close()
print(json.dumps(result), flush=True)
"""


def worker_commands(tmp_path: Path, role: str, db: Path, options: list[dict[str, Any]]) -> list[list[str]]:
    script = tmp_path / "sb_worker.py"
    script.write_text(textwrap.dedent(SB_WORKER))
    return [[sys.executable, str(script), role, str(db), QUEUE, json.dumps(o)] for o in options]


def assert_exactly_once(written: dict[str, Pairs], received: dict[str, Pairs]) -> None:
    """Every written message received once, with its writer's ID; IDs increasing per writer and per reader."""
    expected: dict[str, int] = {}
    for writer, pairs in written.items():
        ids = [ident for _, ident in pairs]
        assert all(a < b for a, b in pairwise(ids)), f"writer {writer}: IDs not strictly increasing"
        expected.update(pairs)
    total = sum(len(pairs) for pairs in written.values())
    assert len(expected) == total and len(set(expected.values())) == total, "bodies or IDs written twice"
    counts = Counter(body for pairs in received.values() for body, _ in pairs)
    assert [body for body, n in counts.items() if n > 1] == [], "delivered more than once"
    assert sorted(set(expected) - set(counts)) == [], "never delivered"
    assert sorted(set(counts) - set(expected)) == [], "delivered but never written"
    for reader, pairs in received.items():
        assert all(expected[body] == ident for body, ident in pairs), f"reader {reader}: IDs differ from the writer's"
        ids = [ident for _, ident in pairs]
        assert all(a < b for a, b in pairwise(ids)), f"reader {reader}: IDs not strictly increasing"


def assert_file_healthy(db: Path, written: dict[str, Pairs]) -> None:
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (last_ts,) = conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()
        (newest,) = conn.execute("SELECT MAX(ts) FROM messages").fetchone()
        (pending,) = conn.execute("SELECT COUNT(*) FROM messages WHERE claimed = 0 AND queue = ?", (QUEUE,)).fetchone()
    assert newest is not None and last_ts >= newest, f"meta.last_ts {last_ts} < MAX(ts) {newest}"
    assert last_ts >= max(ident for pairs in written.values() for _, ident in pairs)
    assert pending == 0


# ---------------------------------------- trio writers, SimpleBroker readers
TRIO_WRITERS = {"single0": "single", "single1": "single", "many0": "many", "many1": "many"}
PER_TRIO_WRITER = 120
SB_READER_MODES = ["read", "read_many", "generator"]


def test_trio_writers_with_simplebroker_readers(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    done = tmp_path / "done"
    done.mkdir()

    async def create() -> None:
        async with trio_broker(db, config={}) as broker:
            await broker.write("warmup", "x")  # the file exists before the readers open it

    run(create)
    readers = worker_commands(tmp_path, "reader", db, [{"mode": mode, "done": str(done)} for mode in SB_READER_MODES])
    procs = start_workers(readers, tmp_path, clean_env(), TIMEOUT)
    written: dict[str, Pairs] = {}

    async def write_all() -> None:
        async with trio_broker(db, pool_size=4, config={}) as broker:
            queue = TrioQueue(QUEUE, broker)

            async def writer(tag: str, mode: str) -> None:
                bodies = [f"{tag}-{i}" for i in range(PER_TRIO_WRITER)]
                ids: list[int] = []
                if mode == "single":
                    for body in bodies:
                        ids.append(await queue.write(body))
                        await trio.sleep(0.001)
                else:
                    for start in range(0, len(bodies), 10):
                        ids.extend(await queue.write_many(bodies[start : start + 10]))
                        await trio.sleep(0.01)
                written[tag] = list(zip(bodies, ids, strict=True))

            async with trio.open_nursery() as nursery:
                for tag, mode in TRIO_WRITERS.items():
                    nursery.start_soon(writer, tag, mode)

    try:
        run(write_all, timeout=TIMEOUT)
    finally:
        mark_done(str(done), "trio")  # every trio write has committed (or failed)
    results = finish_workers(procs, TIMEOUT)
    received = {}
    for mode, (out, err) in zip(SB_READER_MODES, results, strict=True):
        assert "Traceback" not in err and "Warning" not in err, err
        received[f"sb-{mode}"] = [(body, ident) for body, ident in out["got"]]
    assert_exactly_once(written, received)
    assert sum(1 for pairs in received.values() if pairs) > 1  # the readers shared the work
    assert sum(out["before_done"] for out, _ in results) > 0, "SimpleBroker's readers never overlapped the trio writers"
    assert_file_healthy(db, written)


# --------------------------------------- SimpleBroker writers, trio claimers
SB_WRITERS = ["sb0", "sb1", "sb2"]
PER_SB_WRITER = 150
CLAIM_MODES = ["claim", "claim_many", "stream", "batch"]


async def take(queue: TrioQueue, mode: str) -> list[Message]:
    if mode == "claim":
        message = await queue.claim()
        return [] if message is None else [message]
    if mode == "claim_many":
        return await queue.claim_many(10)
    if mode == "stream":  # exactly once, one transaction per message, to the end
        return [message async for message in queue.messages()]
    # at least once, batches of 5, run to the end (so nothing is delivered again)
    return [message async for message in queue.messages(commit_interval=5)]


def test_simplebroker_writers_with_trio_claimers(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    done = tmp_path / "done"
    done.mkdir()

    async def create() -> None:
        async with trio_broker(db, config={}) as broker:
            await broker.write("warmup", "x")

    run(create)
    writers = worker_commands(
        tmp_path,
        "writer",
        db,
        [
            {"tag": tag, "count": PER_SB_WRITER, "pause": 0.001 * (k + 1), "done": str(done)}
            for k, tag in enumerate(SB_WRITERS)
        ],
    )
    received: dict[str, Pairs] = {}
    before_done = 0

    async def claim_all() -> None:
        async with trio_broker(db, pool_size=len(CLAIM_MODES), config={}) as broker:
            queue = TrioQueue(QUEUE, broker)

            async def claimer(mode: str) -> None:
                nonlocal before_done
                got: Pairs = []
                while True:
                    finished = len(os.listdir(done)) >= len(SB_WRITERS)  # before looking
                    taken = [(m.body, m.id) for m in await take(queue, mode)]
                    got.extend(taken)
                    if not finished:
                        before_done += len(taken)
                    if taken:
                        await trio.sleep(0.001)
                        continue
                    if finished:
                        received[mode] = got
                        return
                    await trio.sleep(0.002)

            async with trio.open_nursery() as nursery:
                for mode in CLAIM_MODES:
                    nursery.start_soon(claimer, mode)

    procs = start_workers(writers, tmp_path, clean_env(), TIMEOUT)
    try:
        run(claim_all, timeout=TIMEOUT)
    finally:
        results = finish_workers(procs, TIMEOUT)
    written = {
        tag: [(body, ident) for body, ident in out["wrote"]] for tag, (out, _) in zip(SB_WRITERS, results, strict=True)
    }
    assert_exactly_once(written, received)
    assert before_done > 0, "the trio claimers never overlapped SimpleBroker's writers"
    assert_file_healthy(db, written)

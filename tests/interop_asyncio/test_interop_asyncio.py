"""Our asyncio adapter and SimpleBroker 8.7.2 on one file, at the same time.

Both directions, each with the real library (worker subprocesses, see
``interop_asyncio_sb_worker.py``) and the real ``broker`` CLI:

- several asyncio writer tasks while SimpleBroker readers claim;
- SimpleBroker writer processes while several asyncio tasks claim.

Every message is delivered exactly once with the ID its writer got back,
each writer's IDs and each reader's IDs are strictly increasing (IDs are
allocated in commit order by both programs), and the file is healthy after:
``PRAGMA integrity_check`` is ok and ``meta.last_ts >= MAX(ts)``.
Subprocesses run without ``PYTHONPATH`` or ``BROKER_*`` and with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, closing
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from sansio_broker import Message
from sansio_broker.adapters.asyncio import AsyncQueue, async_broker
from tests.support.workers import clean_env

simplebroker = pytest.importorskip("simplebroker")
if simplebroker.__version__ != "8.7.2":
    pytest.skip(f"needs simplebroker 8.7.2, found {simplebroker.__version__}", allow_module_level=True)

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parent / "interop_asyncio_sb_worker.py"
TIMEOUT = 60.0  # seconds: any one subprocess, and each scenario as a whole
QUEUE = "jobs"

Pairs = list[tuple[str, int]]


def _find_broker_cli() -> list[str]:
    """SimpleBroker's ``broker`` script, installed next to this interpreter."""
    beside = Path(sys.executable).parent / "broker"
    if os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("broker")
    return [found] if found else [sys.executable, "-m", "simplebroker"]


BROKER_CLI = _find_broker_cli()


# -------------------------------------------------------------- subprocesses
def worker_command(role: str, db: Path, **options: Any) -> list[str]:
    return [sys.executable, str(WORKER), role, str(db), QUEUE, json.dumps(options)]


@asynccontextmanager
async def started(commands: Sequence[list[str]], cwd: Path) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Start every worker and wait until each has opened the file; kill whatever is left at the end."""
    procs: list[asyncio.subprocess.Process] = []
    try:
        for command in commands:
            procs.append(
                await asyncio.create_subprocess_exec(
                    *command,
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=clean_env(),
                    cwd=cwd,
                )
            )
        for proc in procs:
            assert proc.stdout is not None and proc.stderr is not None
            line = await proc.stdout.readline()
            if line.strip() != b"ready":
                raise AssertionError(f"worker did not start: {line!r}\n{(await proc.stderr.read()).decode()}")
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def release(procs: Sequence[asyncio.subprocess.Process]) -> None:
    """Let every worker go at once."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(b"go\n")
    for proc in procs:
        assert proc.stdin is not None
        await proc.stdin.drain()


async def finish(proc: asyncio.subprocess.Process) -> Any:
    """A worker's JSON result, once it has exited cleanly."""
    out, err = await proc.communicate()
    stderr = err.decode()
    assert proc.returncode == 0, f"worker exit {proc.returncode}\n{stderr}"
    assert "Traceback" not in stderr and "Warning" not in stderr, stderr  # no resync warnings either
    return json.loads(out.decode().strip().splitlines()[-1])


async def cli(db: Path, *args: str) -> tuple[int, str, str]:
    """Run ``broker -f <db> <args>``: ``(exit code, stdout, stderr)``."""
    proc = await asyncio.create_subprocess_exec(
        *BROKER_CLI,
        "-f",
        str(db),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
        cwd=db.parent,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def parse_t(stdout: str) -> Pairs:
    """``<id>\\t<body>`` lines (``-t`` output) as ``(body, id)`` pairs."""
    pairs = []
    for line in stdout.splitlines():
        ident, _, body = line.partition("\t")
        pairs.append((body, int(ident)))
    return pairs


# ---------------------------------------------------------------- assertions
def assert_exactly_once(written: dict[str, Pairs], received: dict[str, Pairs]) -> None:
    """Every written message received once, with its writer's ID; IDs ascending per writer and per reader."""
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
        (pending,) = conn.execute("SELECT COUNT(*) FROM messages WHERE claimed = 0").fetchone()
    assert newest is None or last_ts >= newest, f"meta.last_ts {last_ts} < MAX(ts) {newest}"
    assert last_ts >= max(ident for pairs in written.values() for _, ident in pairs)
    assert pending == 0


# ------------------------------------- asyncio writers, SimpleBroker readers
ASYNC_WRITERS = {"single0": "single", "single1": "single", "many0": "many", "many1": "many"}
MESSAGES_PER_WRITER = 150
SB_READER_MODES = ["read", "read_many", "generator"]


async def asyncio_writer(queue: AsyncQueue, tag: str, mode: str) -> Pairs:
    bodies = [f"{tag}-{i}" for i in range(MESSAGES_PER_WRITER)]
    ids: list[int] = []
    if mode == "single":
        for body in bodies:
            ids.append(await queue.write(body))
            await asyncio.sleep(0.001)
    else:
        for start in range(0, len(bodies), 10):
            ids.extend(await queue.write_many(bodies[start : start + 10]))
            await asyncio.sleep(0.01)
    return list(zip(bodies, ids, strict=True))


async def cli_reader(db: Path, done: Path) -> Pairs:
    """``broker read <q> --all -t`` again and again until the queue is empty for good."""
    got: Pairs = []
    while True:
        finished = done.exists()  # before looking: an empty look after it is final
        code, out, err = await cli(db, "read", QUEUE, "--all", "-t")
        if code == 2:  # empty
            if finished:
                return got
            await asyncio.sleep(0.01)
            continue
        assert code == 0, err
        got.extend(parse_t(out))


async def asyncio_writers_with_sb_readers(db: Path, work: Path) -> tuple[dict[str, Pairs], dict[str, Pairs], int]:
    done = work / "writers-done"
    readers = [worker_command("reader", db, mode=mode, done=str(done), pause=0.001) for mode in SB_READER_MODES]
    async with asyncio.timeout(TIMEOUT), async_broker(db, pool_size=4, config={}) as broker:
        queue = AsyncQueue(QUEUE, broker)
        async with started(readers, work) as procs:
            await release(procs)
            cli_task = asyncio.create_task(cli_reader(db, done))
            try:
                writing = (asyncio_writer(queue, tag, mode) for tag, mode in ASYNC_WRITERS.items())
                results = await asyncio.gather(*writing)
            finally:
                done.touch()  # every write has committed (or failed): readers may stop once empty
            cli_got = await cli_task
            outputs = [await finish(proc) for proc in procs]
    written = dict(zip(ASYNC_WRITERS, results, strict=True))
    received = {
        f"sb-{mode}": [(body, ident) for body, ident in out["got"]]
        for mode, out in zip(SB_READER_MODES, outputs, strict=True)
    }
    received["cli"] = cli_got
    return written, received, sum(out["before_done"] for out in outputs)


def test_asyncio_writers_with_simplebroker_readers(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    written, received, before_done = asyncio.run(asyncio_writers_with_sb_readers(db, tmp_path))

    assert_exactly_once(written, received)
    assert before_done > 0, "SimpleBroker's readers never overlapped the asyncio writers"
    assert sum(len(pairs) for name, pairs in received.items() if name != "cli") > 0
    assert_file_healthy(db, written)


# ------------------------------------- SimpleBroker writers, asyncio claimers
SB_WRITERS = ["sb0", "sb1", "sb2"]
SB_MESSAGES_PER_WRITER = 200
CLI_WRITES = 8
CLAIM_MODES = ["claim", "claim_many", "stream", "batch"]


async def take(queue: AsyncQueue, mode: str) -> list[Message]:
    if mode == "claim":
        message = await queue.claim()
        return [] if message is None else [message]
    if mode == "claim_many":
        return await queue.claim_many(10)
    if mode == "stream":  # exactly once, one transaction per message, to the end
        return [message async for message in queue.messages()]
    if mode == "batch":  # at least once, batches of 5, run to the end (so nothing is redelivered)
        return [message async for message in queue.messages(commit_interval=5)]
    raise AssertionError(mode)


async def asyncio_claimer(queue: AsyncQueue, mode: str, writers_done: asyncio.Event) -> tuple[Pairs, int]:
    got: Pairs = []
    before_done = 0
    while True:
        finished = writers_done.is_set()  # before looking: an empty look after it is final
        taken = [(message.body, message.id) for message in await take(queue, mode)]
        got.extend(taken)
        if not finished:
            before_done += len(taken)
        if taken:
            await asyncio.sleep(0.001)
            continue
        if finished:
            return got, before_done
        await asyncio.sleep(0.002)


async def cli_writer(db: Path) -> Pairs:
    wrote: Pairs = []
    for i in range(CLI_WRITES):
        body = f"cli-{i}"
        code, out, err = await cli(db, "write", QUEUE, body, "-t")
        assert code == 0, err
        wrote.append((body, int(out.strip())))
    return wrote


async def sb_writers_with_asyncio_claimers(db: Path, work: Path) -> tuple[dict[str, Pairs], dict[str, Pairs], int]:
    writers = [
        worker_command("writer", db, tag=tag, count=SB_MESSAGES_PER_WRITER, pause=0.001 * (k + 1))
        for k, tag in enumerate(SB_WRITERS)
    ]
    writers_done = asyncio.Event()
    async with asyncio.timeout(TIMEOUT), async_broker(db, pool_size=len(CLAIM_MODES), config={}) as broker:
        queue = AsyncQueue(QUEUE, broker)
        async with started(writers, work) as procs:

            async def write_all() -> tuple[Pairs, list[Any]]:
                try:
                    await release(procs)
                    cli_wrote = await cli_writer(db)
                    return cli_wrote, [await finish(proc) for proc in procs]
                finally:
                    writers_done.set()

            async with asyncio.TaskGroup() as group:
                writing = group.create_task(write_all())
                claiming = [group.create_task(asyncio_claimer(queue, mode, writers_done)) for mode in CLAIM_MODES]
    cli_wrote, outputs = writing.result()
    written = {
        tag: [(body, ident) for body, ident in out["wrote"]] for tag, out in zip(SB_WRITERS, outputs, strict=True)
    }
    written["cli"] = cli_wrote
    received = {mode: task.result()[0] for mode, task in zip(CLAIM_MODES, claiming, strict=True)}
    return written, received, sum(task.result()[1] for task in claiming)


def test_simplebroker_writers_with_asyncio_claimers(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    written, received, before_done = asyncio.run(sb_writers_with_asyncio_claimers(db, tmp_path))

    assert_exactly_once(written, received)
    assert before_done > 0, "the asyncio claimers never overlapped SimpleBroker's writers"
    assert_file_healthy(db, written)

"""The benchmark report: every adapter against raw ``sqlite3``, one command, one table, JSON and charts.

Case groups (each against a raw ``sqlite3`` reference doing the same work in
the same run, one connection, the storage contract's SQL from ``_common``):

* ``concurrent-writes``: 100 asyncio tasks, 100 trio tasks, 8 threads on the
  blocking ``Broker`` (and on SimpleBroker) each writing one message per call,
  against raw one-message-per-transaction writes, sequential;
* ``concurrent-reads``: the same callers claiming one message per call until
  the pre-filled queue is empty, against raw single-claim transactions;
* ``bulk``: ``write_many(q, 1000 bodies)`` and ``claim_many(q, 1000)`` against
  raw batches (one transaction: ``executemany`` / ``UPDATE ... LIMIT 1000 RETURNING``);
* ``sequential``: one caller, one message per transaction, every adapter (what
  ``bench_*.py`` measure), checked against the previous ratios;
* ``scale`` (full mode or ``--scale``): the blocking adapter's write and claim
  rates with 1,000,000 messages pending against 1,000, and the memory a
  1M-message stream takes in a fresh process.

Everything runs at ``synchronous=FULL`` in WAL mode with the same busy
timeout. See ``benchmarks/README.md``.

    python benchmarks/report.py            # full: a few minutes, scale group included
    python benchmarks/report.py --short    # < 60 s: fewer messages, no scale group
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    ADVANCE_LAST_TS,
    BEGIN_IMMEDIATE,
    BUSY_TIMEOUT_MS,
    CACHE_MB,
    CLAIM_ONE,
    COMMIT,
    COUNTER_MASK,
    INSERT_MESSAGE,
    NOISY_SPREAD,
    PHYSICAL_MASK,
    QUEUE,
    ROLLBACK,
    SYNC_PRAGMA_VALUE,
    WAL_AUTOCHECKPOINT,
    connection_settings,
    floor_to,
    log,
    machine_info,
    open_raw_connection,
    percentile,
    refuse_memory_filesystem,
    remove_database,
    rotated,
    run_in_scratch,
    sansio_config,
)

from sansio_broker.adapters.blocking import Broker

SYNC = "FULL"
HERE = Path(__file__).resolve().parent
DEFAULT_JSON = HERE / "results" / "report.json"

GROUPS = ("concurrent-writes", "concurrent-reads", "bulk", "sequential", "scale")
GROUP_TITLES = {
    "concurrent-writes": "Concurrent writes: one message per call, many callers at once",
    "concurrent-reads": "Concurrent reads: one claim per call until the queue is empty",
    "bulk": "Bulk: write_many / claim_many of 1000 messages per call",
    "sequential": "Sequential single operations: one caller, one message per transaction",
    "scale": "Scale: {pending:,} pending messages against 1,000 (blocking adapter)",
}

# The ratios at synchronous=FULL before this report existed (bench_blocking.py,
# bench_asyncio.py, bench_trio.py): the sequential group must not fall more
# than BASELINE_TOLERANCE below them.
BASELINE = {
    "blocking": {"write": 0.888, "claim": 0.866},
    "asyncio": {"write": 0.623, "claim": 0.667},
    "trio": {"write": 0.585, "claim": 0.610},
}
BASELINE_TOLERANCE = 0.1
MEMORY_TARGET_MB = 50.0
BATCH = 1000
BODY_TAG_DIGITS = 9


# --------------------------------------------------------------------------- sizes and cases
@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does, per mode."""

    concurrent: int  # messages per concurrent measurement
    bulk_batches: int  # calls of 1000 messages per bulk measurement
    sequential: int  # operations per sequential measurement
    scale: int  # operations per scale measurement
    warmup: int  # untimed single operations of a sequential caller
    warmup_per_caller: int  # untimed single operations of each concurrent caller


MODES = {
    "full": Sizes(concurrent=10_000, bulk_batches=20, sequential=2000, scale=2000, warmup=100, warmup_per_caller=2),
    "short": Sizes(concurrent=2000, bulk_batches=3, sequential=300, scale=500, warmup=30, warmup_per_caller=1),
    "smoke": Sizes(concurrent=200, bulk_batches=2, sequential=40, scale=100, warmup=5, warmup_per_caller=1),
}


@dataclass(frozen=True)
class Impl:
    """One implementation of a case: who runs it, with how many callers, on how many pending messages."""

    key: str
    label: str
    family: str  # raw | blocking | asyncio | trio | simplebroker
    callers: int = 1
    base: int = 0  # messages already pending in the queue (scale group)


@dataclass(frozen=True)
class Case:
    group: str
    name: str
    kind: str  # write | claim | write_many | claim_many
    messages: int  # timed messages per measurement
    impls: tuple[Impl, ...]  # the first is the reference every ratio is taken against
    targets: dict[str, float] = field(default_factory=dict)  # impl key -> minimum ratio

    @property
    def reference(self) -> Impl:
        return self.impls[0]


def build_cases(args: argparse.Namespace) -> list[Case]:
    sizes: Sizes = args.sizes
    tasks, threads = args.tasks, args.threads
    sb = [] if args.no_simplebroker else ["simplebroker"]
    sb_label = f"simplebroker {args.simplebroker_version}" if sb else ""
    raw_single = Impl("raw", "raw sqlite3, 1 msg/txn, sequential", "raw")
    concurrent = (
        Impl("asyncio", f"asyncio, {tasks} tasks (pool {args.asyncio_pool})", "asyncio", tasks),
        Impl("trio", f"trio, {tasks} tasks (pool {args.trio_pool})", "trio", tasks),
        Impl("blocking", f"blocking Broker, {threads} threads", "blocking", threads),
        *([Impl("simplebroker", f"{sb_label} Queue, {threads} threads", "simplebroker", threads)] if sb else []),
    )
    cases: list[Case] = []
    if "concurrent-writes" in args.groups:
        cases.append(
            Case(
                "concurrent-writes",
                "write",
                "write",
                sizes.concurrent,
                (raw_single, *concurrent),
                {"asyncio": 10.0, "trio": 10.0, "blocking": 3.0},
            )
        )
    if "concurrent-reads" in args.groups:
        cases.append(
            Case(
                "concurrent-reads",
                "claim",
                "claim",
                sizes.concurrent,
                (Impl("raw", "raw sqlite3, 1 claim/txn, sequential", "raw"), *concurrent),
                {"asyncio": 8.0, "trio": 8.0},
            )
        )
    if "bulk" in args.groups:
        adapters = (
            Impl("blocking", "blocking Broker", "blocking"),
            Impl("asyncio", "asyncio", "asyncio"),
            Impl("trio", "trio", "trio"),
        )
        bulk_targets = {"blocking": 0.5, "asyncio": 0.5, "trio": 0.5}
        messages = sizes.bulk_batches * BATCH
        # SimpleBroker 8.7.2 has no batch write with generated IDs (insert_messages takes exact IDs).
        cases.append(
            Case(
                "bulk",
                f"write_many {BATCH}",
                "write_many",
                messages,
                (Impl("raw", f"raw sqlite3, executemany {BATCH}/txn", "raw"), *adapters),
                bulk_targets,
            )
        )
        cases.append(
            Case(
                "bulk",
                f"claim_many {BATCH}",
                "claim_many",
                messages,
                (
                    Impl("raw", f"raw sqlite3, UPDATE ... LIMIT {BATCH}/txn", "raw"),
                    *adapters,
                    *([Impl("simplebroker", f"{sb_label} Queue.read_many", "simplebroker")] if sb else []),
                ),
                bulk_targets,
            )
        )
    if "sequential" in args.groups:
        singles = (
            Impl("blocking", "blocking Broker", "blocking"),
            Impl("asyncio", f"asyncio (pool {args.asyncio_pool})", "asyncio"),
            Impl("trio", f"trio (pool {args.trio_pool})", "trio"),
            *([Impl("simplebroker", f"{sb_label} Queue", "simplebroker")] if sb else []),
        )
        cases.append(Case("sequential", "write", "write", sizes.sequential, (raw_single, *singles)))
        cases.append(
            Case(
                "sequential",
                "claim",
                "claim",
                sizes.sequential,
                (Impl("raw", "raw sqlite3, 1 claim/txn", "raw"), *singles),
            )
        )
    if "scale" in args.groups:
        small, large = 1000, args.scale_pending
        for kind in ("write", "claim"):
            for callers in (1, threads):
                who = "sequential" if callers == 1 else f"{threads} threads"
                cases.append(
                    Case(
                        "scale",
                        f"{kind}, {who}",
                        kind,
                        sizes.scale,
                        (
                            Impl("pending-small", f"blocking, {small:,} pending", "blocking", callers, small),
                            Impl("pending-large", f"blocking, {large:,} pending", "blocking", callers, large),
                        ),
                        {"pending-large": 0.8},
                    )
                )
    return cases


# --------------------------------------------------------------------------- bodies and files
def make_body(prefix: str, index: int, size: int) -> str:
    """A unique body: ``prefix`` and ``index`` padded to ``size`` characters, so every message can be accounted for."""
    tag = f"{prefix}{index:0{BODY_TAG_DIGITS}d}"
    return tag + "m" * (size - len(tag))


def next_ids(last: int, count: int) -> range:
    """``count`` consecutive IDs after ``last`` (contract §3.2: hybrid time in the high bits, counter in the low 12)."""
    now = time.time_ns() & PHYSICAL_MASK
    first = now if now > last & PHYSICAL_MASK else last + 1
    return range(first, first + count)


def insert_pending(path: str, bodies: Sequence[str]) -> None:
    """Add ``bodies`` as pending messages in one transaction (IDs after meta.last_ts, which is advanced), checkpoint."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        if bodies:
            conn.execute(BEGIN_IMMEDIATE)
            last = int(conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()[0])
            ids = next_ids(last, len(bodies))
            if not conn.execute(ADVANCE_LAST_TS, (ids[-1], ids[-1])).fetchall():
                raise RuntimeError("could not advance meta.last_ts for the prefill")
            conn.executemany(INSERT_MESSAGE, zip([QUEUE] * len(bodies), bodies, ids, strict=True))
            conn.execute(COMMIT)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def create_file(path: str, family: str) -> None:
    """An empty schema-v6 file, created by the implementation's own program (SimpleBroker makes its own)."""
    if family == "simplebroker":
        from simplebroker.db import BrokerDB

        BrokerDB(path, config=simplebroker_config()).close()
    else:
        Broker(path, config=sansio_config(SYNC)).close()


def last_ts(path: str) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()[0])
    finally:
        conn.close()


_CHECKED_BASES: set[str] = set()  # cached files found good (or built) by this process


def pending_base(cache_dir: str, pending: int, body_size: int) -> str:
    """A file with ``pending`` messages in the benchmark queue, built once and kept in ``cache_dir``.

    Created by the blocking adapter (schema v6), filled by raw ``executemany``
    with increasing IDs (``meta.last_ts`` advanced to the last), checkpointed.
    Reused while it still holds exactly ``pending`` pending messages.
    """
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, f"pending-{pending}-body{body_size}-v1.db")
    if path in _CHECKED_BASES and os.path.exists(path):
        return path
    _CHECKED_BASES.add(path)
    if os.path.exists(path):
        try:
            conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
            try:
                found = conn.execute(
                    "SELECT COUNT(*) FROM messages WHERE queue = ? AND claimed = 0", (QUEUE,)
                ).fetchone()[0]
                top = conn.execute("SELECT MAX(ts) FROM messages").fetchone()[0]
                ok = found == pending and int(
                    conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()[0]
                ) >= int(top or 0)
            finally:
                conn.close()
            if ok:
                return path
        except sqlite3.Error:
            pass
        log(f"  rebuilding {path}: not the expected content")
        remove_database(path)
    started = time.perf_counter()
    building = path + ".building"
    if os.path.exists(building):
        remove_database(building)
    create_file(building, "blocking")
    conn = sqlite3.connect(building, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute("PRAGMA synchronous=OFF")  # a throwaway build: fsync once at the end
        conn.execute(BEGIN_IMMEDIATE)
        last = int(conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()[0])
        ids = next_ids(last, pending)
        conn.execute(ADVANCE_LAST_TS, (ids[-1], ids[-1]))
        chunk = 100_000
        for start in range(0, pending, chunk):
            stop = min(start + chunk, pending)
            conn.executemany(
                INSERT_MESSAGE, ((QUEUE, make_body("b", i, body_size), ids[i]) for i in range(start, stop))
            )
        conn.execute(COMMIT)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    fsync_file(building)
    os.replace(building, path)
    if pending >= 100_000:
        size_mb = os.path.getsize(path) / 1e6
        log(f"  built {path} ({pending:,} messages, {size_mb:,.0f} MB) in {time.perf_counter() - started:.1f} s")
    return path


def fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def copy_base(base: str, path: str) -> None:
    """A private copy of a cached file, on disk before the measurement starts."""
    shutil.copyfile(base, path)
    fsync_file(path)


def counts_and_bodies(path: str, after_ts: int) -> tuple[int, int, Counter[str]]:
    """(total, pending) of the benchmark queue, and the pending bodies with an ID above ``after_ts``."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        total, pending = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(claimed = 0), 0) FROM messages WHERE queue = ?", (QUEUE,)
        ).fetchone()
        bodies = Counter(
            row[0]
            for row in conn.execute(
                "SELECT body FROM messages WHERE ts > ? AND queue = ? AND claimed = 0", (after_ts, QUEUE)
            )
        )
        return int(total), int(pending), bodies
    finally:
        conn.close()


# --------------------------------------------------------------------------- implementations
def simplebroker_config() -> Any:
    import simplebroker

    # Override keys carry the BROKER_ prefix; the environment is not read.
    return simplebroker.resolve_config(override=sansio_config(SYNC))


class RawOps:
    """Plain sqlite3 on one connection: the contract's single write / claim, and their batch forms."""

    def __init__(self, path: str) -> None:
        self.conn = open_raw_connection(path, SYNC)
        self.last = int(self.conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def _ids(self, count: int) -> range:
        last = self.last
        now = time.time_ns() & PHYSICAL_MASK
        if now > last & PHYSICAL_MASK:
            return range(now, now + count)
        if count == 1 and last & COUNTER_MASK == COUNTER_MASK:  # counter exhausted: wait for the clock
            while (now := time.time_ns() & PHYSICAL_MASK) <= last & PHYSICAL_MASK:
                time.sleep(1e-6)
            return range(now, now + 1)
        return range(last + 1, last + 1 + count)

    def write(self, body: str) -> int:
        conn = self.conn
        conn.execute(BEGIN_IMMEDIATE)
        try:
            ts = self._ids(1)[0]
            if not conn.execute(ADVANCE_LAST_TS, (ts, ts)).fetchall():
                raise RuntimeError("meta.last_ts moved: another writer is using the benchmark's file")
            conn.execute(INSERT_MESSAGE, (QUEUE, body, ts))
            conn.execute(COMMIT)
        except BaseException:
            conn.execute(ROLLBACK)
            raise
        self.last = ts
        return ts

    def write_many(self, bodies: Sequence[str]) -> None:
        conn = self.conn
        conn.execute(BEGIN_IMMEDIATE)
        try:
            ids = self._ids(len(bodies))
            if not conn.execute(ADVANCE_LAST_TS, (ids[-1], ids[0])).fetchall():
                raise RuntimeError("meta.last_ts moved: another writer is using the benchmark's file")
            conn.executemany(INSERT_MESSAGE, zip([QUEUE] * len(bodies), bodies, ids, strict=True))
            conn.execute(COMMIT)
        except BaseException:
            conn.execute(ROLLBACK)
            raise
        self.last = ids[-1]

    def claim_many(self, limit: int) -> list[str]:
        conn = self.conn
        conn.execute(BEGIN_IMMEDIATE)
        try:
            rows = conn.execute(CLAIM_ONE, (QUEUE, limit)).fetchall()
        except BaseException:
            conn.execute(ROLLBACK)
            raise
        conn.execute(COMMIT if rows else ROLLBACK)
        return [row[0] for row in rows]

    def claim(self) -> str | None:
        rows = self.claim_many(1)
        return rows[0] if rows else None


@dataclass
class Calls:
    """The four measured calls of one implementation, bound to the benchmark queue."""

    write: Callable[..., Any] | None
    claim: Callable[..., Any] | None
    write_many: Callable[..., Any] | None
    claim_many: Callable[..., Any] | None


def broker_calls(broker: Any) -> Calls:
    """The calls of a sansio-broker broker (blocking, asyncio or trio): ``broker.write(q, body)`` and so on."""
    return Calls(
        functools.partial(broker.write, QUEUE),
        functools.partial(broker.claim, QUEUE),
        functools.partial(broker.write_many, QUEUE),
        functools.partial(broker.claim_many, QUEUE),
    )


def body_of(item: Any) -> str:
    """The body of whatever a claim returned (a body, a Message, a (body, id) tuple)."""
    if isinstance(item, str):
        return item
    if isinstance(item, tuple):
        return str(item[0])
    return str(item.body)


# --------------------------------------------------------------------------- callers
@dataclass
class Plan:
    """What one caller does: untimed warm-up single operations, then its timed units of work."""

    warm_bodies: list[str]  # writes: written one by one before timing
    warm_claims: int  # claims: claimed one by one before timing
    units: list[Any]  # one per call: a body (write), a chunk of BATCH bodies (write_many), None (claims)


@dataclass
class CallerResult:
    start_ns: int
    end_ns: int
    latencies_ns: list[int]
    claimed: list[Any]


def make_plans(case: Case, impl: Impl, warm: int, body_size: int) -> list[Plan]:
    """The callers' shares: message ``i`` goes to caller ``i % callers``."""
    callers = impl.callers
    writes = case.kind in ("write", "write_many")
    plans = []
    for c in range(callers):
        if case.kind == "write":
            units: list[Any] = [make_body("w", i, body_size) for i in range(c, case.messages, callers)]
        elif case.kind == "write_many":
            batches = range(c, case.messages // BATCH, callers)
            units = [[make_body("w", b * BATCH + j, body_size) for j in range(BATCH)] for b in batches]
        elif case.kind == "claim":
            units = [None] * len(range(c, case.messages, callers))
        else:
            units = [None] * len(range(c, case.messages // BATCH, callers))
        plans.append(
            Plan(
                warm_bodies=[make_body("u", c * warm + j, body_size) for j in range(warm)] if writes else [],
                warm_claims=0 if writes else warm,
                units=units,
            )
        )
    return plans


def warm_sync(calls: Calls, plan: Plan) -> None:
    assert calls.write is not None and calls.claim is not None
    for body in plan.warm_bodies:
        calls.write(body)
    for _ in range(plan.warm_claims):
        if calls.claim() is None:
            raise RuntimeError("the pre-filled queue ran dry during the warm-up")


DRY = "the pre-filled queue ran dry: a message was lost, or delivered twice"


def run_units_sync(kind: str, calls: Calls, units: Sequence[Any]) -> CallerResult:
    """One caller's timed calls; the latencies chain, so they add up to its elapsed time."""
    clock = time.perf_counter_ns
    latencies: list[int] = []
    claimed: list[Any] = []
    add = latencies.append
    start = previous = clock()
    if kind == "write":
        write = calls.write
        assert write is not None
        for body in units:
            write(body)
            now = clock()
            add(now - previous)
            previous = now
    elif kind == "claim":
        claim = calls.claim
        assert claim is not None
        for _ in units:
            got = claim()
            now = clock()
            if got is None:
                raise RuntimeError(DRY)
            add(now - previous)
            claimed.append(got)
            previous = now
    elif kind == "write_many":
        write_many = calls.write_many
        assert write_many is not None
        for chunk in units:
            write_many(chunk)
            now = clock()
            add(now - previous)
            previous = now
    else:
        claim_many = calls.claim_many
        assert claim_many is not None
        for _ in units:
            got = claim_many(BATCH)
            now = clock()
            if len(got) != BATCH:
                raise RuntimeError(f"claim_many({BATCH}) returned {len(got)} messages: {DRY}")
            add(now - previous)
            claimed.extend(got)
            previous = now
    return CallerResult(start, previous, latencies, claimed)


async def warm_async(calls: Calls, plan: Plan) -> None:
    assert calls.write is not None and calls.claim is not None
    for body in plan.warm_bodies:
        await calls.write(body)
    for _ in range(plan.warm_claims):
        if await calls.claim() is None:
            raise RuntimeError("the pre-filled queue ran dry during the warm-up")


async def run_units_async(kind: str, calls: Calls, units: Sequence[Any]) -> CallerResult:
    """``run_units_sync`` awaited: one task's timed calls, under asyncio or trio alike."""
    clock = time.perf_counter_ns
    latencies: list[int] = []
    claimed: list[Any] = []
    add = latencies.append
    start = previous = clock()
    if kind == "write":
        write = calls.write
        assert write is not None
        for body in units:
            await write(body)
            now = clock()
            add(now - previous)
            previous = now
    elif kind == "claim":
        claim = calls.claim
        assert claim is not None
        for _ in units:
            got = await claim()
            now = clock()
            if got is None:
                raise RuntimeError(DRY)
            add(now - previous)
            claimed.append(got)
            previous = now
    elif kind == "write_many":
        write_many = calls.write_many
        assert write_many is not None
        for chunk in units:
            await write_many(chunk)
            now = clock()
            add(now - previous)
            previous = now
    else:
        claim_many = calls.claim_many
        assert claim_many is not None
        for _ in units:
            got = await claim_many(BATCH)
            now = clock()
            if len(got) != BATCH:
                raise RuntimeError(f"claim_many({BATCH}) returned {len(got)} messages: {DRY}")
            add(now - previous)
            claimed.extend(got)
            previous = now
    return CallerResult(start, previous, latencies, claimed)


# --------------------------------------------------------------------------- sessions
# An implementation stays open for a whole run (file, connections, threads,
# event loop), so the implementations of a case can take turns in blocks, as
# the other benchmarks do. Opening, warming up and closing are never timed.
class Session:
    """An open implementation: ``run_block`` runs every caller's slice at once and returns their results."""

    settings: list[dict[str, Any]]

    def run_block(self, kind: str, slices: list[Sequence[Any]]) -> list[CallerResult]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class ThreadCallers:
    """Persistent caller threads (a thread keeps its connection); the main thread hands each a job and waits."""

    def __init__(self, count: int) -> None:
        self.start = threading.Barrier(count + 1)
        self.done = threading.Barrier(count + 1)
        self.jobs: list[Callable[[], Any]] = []
        self.results: list[Any] = [None] * count
        self.errors: list[BaseException] = []
        self.stopping = False
        self.threads = [
            threading.Thread(target=self._work, args=(i,), name=f"bench-caller-{i}", daemon=True) for i in range(count)
        ]
        for thread in self.threads:
            thread.start()

    def _work(self, index: int) -> None:
        try:
            while True:
                self.start.wait()
                if self.stopping:
                    return
                self.results[index] = self.jobs[index]()
                self.done.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:
            self.errors.append(exc)
            self.start.abort()
            self.done.abort()

    def run(self, jobs: list[Callable[[], Any]]) -> list[Any]:
        """Release every thread on its job together; return when all are done."""
        self.jobs = jobs
        try:
            self.start.wait()
            self.done.wait()
        except threading.BrokenBarrierError:
            raise self.errors[0] if self.errors else RuntimeError("a caller thread failed") from None
        return list(self.results)

    def close(self) -> None:
        self.stopping = True
        if not self.start.broken:
            with contextlib.suppress(threading.BrokenBarrierError):
                self.start.wait(timeout=60)
        for thread in self.threads:
            thread.join(timeout=60)


class SyncSession(Session):
    """raw sqlite3, the blocking adapter or SimpleBroker: one caller inline, or one persistent thread per caller."""

    def __init__(self, impl: Impl, path: str, plans: list[Plan]) -> None:
        closers: list[Callable[[], None]] = []
        if impl.family == "raw":
            if impl.callers != 1:
                raise ValueError("the raw reference is sequential")
            raw = RawOps(path)
            closers.append(raw.close)
            self.calls = Calls(raw.write, raw.claim, raw.write_many, raw.claim_many)
        elif impl.family == "blocking":
            broker = Broker(path, config=sansio_config(SYNC))  # shared by the threads: a connection per thread
            closers.append(broker.close)
            self.calls = broker_calls(broker)
        else:
            import simplebroker

            # One persistent Queue shared by the threads: SimpleBroker gives each thread its own connection.
            queue = simplebroker.Queue(QUEUE, db_path=path, persistent=True, config=simplebroker_config())
            closers.append(queue.close)
            self.calls = Calls(queue.write, queue.read_one, None, queue.read_many)
        self.threads: ThreadCallers | None = None
        self._closers = closers
        try:
            if impl.callers == 1:
                warm_sync(self.calls, plans[0])
                self.settings = connection_settings(path)
            else:
                self.threads = ThreadCallers(impl.callers)
                lock = threading.Lock()
                self.settings = []

                def warm(plan: Plan) -> None:
                    warm_sync(self.calls, plan)

                def look() -> None:
                    with lock:  # each thread sees its own connection, even where connections are thread-bound
                        self.settings.extend(connection_settings(path))

                self.threads.run([functools.partial(warm, plan) for plan in plans])
                self.threads.run([look] * impl.callers)
        except BaseException:
            self.close()
            raise

    def run_block(self, kind: str, slices: list[Sequence[Any]]) -> list[CallerResult]:
        if self.threads is None:
            return [run_units_sync(kind, self.calls, slices[0])]
        return self.threads.run([functools.partial(run_units_sync, kind, self.calls, s) for s in slices])

    def close(self) -> None:
        if self.threads is not None:
            self.threads.close()
            self.threads = None
        while self._closers:
            self._closers.pop()()


class AsyncioSession(Session):
    """The asyncio adapter, in an event loop running in a thread of its own; its tasks are awaited there."""

    def __init__(self, path: str, plans: list[Plan], pool_size: int) -> None:
        from sansio_broker.adapters.asyncio import async_broker

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="bench-asyncio", daemon=True)
        self.thread.start()
        self.stack = contextlib.AsyncExitStack()

        async def open_() -> list[dict[str, Any]]:
            broker = await self.stack.enter_async_context(
                async_broker(path, pool_size=pool_size, config=sansio_config(SYNC))
            )
            self.calls = broker_calls(broker)
            await asyncio.gather(*(warm_async(self.calls, plan) for plan in plans))
            return connection_settings(path)

        try:
            self.settings = self._call(open_())
        except BaseException:
            self.close()
            raise

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        try:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
        finally:
            self.loop.close()

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def run_block(self, kind: str, slices: list[Sequence[Any]]) -> list[CallerResult]:
        async def block() -> list[CallerResult]:
            return list(await asyncio.gather(*(run_units_async(kind, self.calls, s) for s in slices)))

        return self._call(block())  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.loop.is_closed():
            return
        try:
            self._call(self.stack.aclose())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=60)


class TrioSession(Session):
    """The trio adapter, inside ``trio.run`` in a thread of its own; blocks run there as tasks of a nursery."""

    def __init__(self, path: str, plans: list[Plan], pool_size: int) -> None:
        import trio

        from sansio_broker.adapters.trio import trio_broker

        self.trio = trio
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self.token = trio.lowlevel.current_trio_token()
            self.stop = trio.Event()
            try:
                async with trio_broker(path, pool_size=pool_size, config=sansio_config(SYNC)) as broker:
                    self.calls = broker_calls(broker)
                    await trio_gather([functools.partial(warm_async, self.calls, plan) for plan in plans])
                    self.settings = connection_settings(path)
                    ready.set()
                    await self.stop.wait()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                raise

        def serve() -> None:
            try:
                trio.run(main)
            except BaseException as exc:
                if not failure:
                    failure.append(exc)
                ready.set()

        self.failure = failure
        self.thread = threading.Thread(target=serve, name="bench-trio", daemon=True)
        self.thread.start()
        ready.wait()
        if failure:
            self.thread.join(timeout=60)
            raise failure[0]

    def run_block(self, kind: str, slices: list[Sequence[Any]]) -> list[CallerResult]:
        functions = [functools.partial(run_units_async, kind, self.calls, s) for s in slices]
        return self.trio.from_thread.run(trio_gather, functions, trio_token=self.token)  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.thread.is_alive():
            self.trio.from_thread.run_sync(self.stop.set, trio_token=self.token)
            self.thread.join(timeout=60)
        if self.failure:
            raise self.failure[0]


async def trio_gather(functions: Sequence[Callable[[], Any]]) -> list[Any]:
    import trio

    results: list[Any] = [None] * len(functions)

    async def one(index: int) -> None:
        results[index] = await functions[index]()

    async with trio.open_nursery() as nursery:
        for index in range(len(functions)):
            nursery.start_soon(one, index)
    return results


def open_session(impl: Impl, path: str, plans: list[Plan], args: argparse.Namespace) -> Session:
    """Open ``impl`` on ``path`` and warm every caller up (untimed)."""
    if impl.family == "asyncio":
        return AsyncioSession(path, plans, args.asyncio_pool)
    if impl.family == "trio":
        return TrioSession(path, plans, args.trio_pool)
    return SyncSession(impl, path, plans)


# --------------------------------------------------------------------------- one run of a case
@dataclass
class Measurement:
    group: str
    case: str
    impl: str
    label: str
    repeat: int
    callers: int
    messages: int
    blocks: int
    seconds: float
    rate: float
    p50_us: float
    p99_us: float
    connections_checked: int
    latencies_ns: list[int] = field(repr=False)
    settings: list[dict[str, Any]] = field(repr=False)  # the distinct PRAGMA sets seen on its connections


def distinct(settings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [dict(items) for items in dict.fromkeys(tuple(sorted(d.items())) for d in settings)]


def warm_count(impl: Impl, sizes: Sizes) -> int:
    return sizes.warmup if impl.callers == 1 else sizes.warmup_per_caller


def block_count(case: Case, args: argparse.Namespace) -> int:
    """How many turns each implementation gets in one run (its messages are spread evenly over them)."""
    if case.kind in ("write_many", "claim_many"):
        return case.messages // BATCH  # one batch per turn
    concurrent = any(impl.callers > 1 for impl in case.impls)
    block = args.concurrent_block if concurrent else args.block
    return 1 if block <= 0 else max(1, math.ceil(case.messages / block))


def share(units: Sequence[Any], k: int, blocks: int) -> Sequence[Any]:
    """The ``k``-th of ``blocks`` near-equal consecutive slices of ``units``."""
    return units[k * len(units) // blocks : (k + 1) * len(units) // blocks]


def measure_case(case: Case, repeat: int, directory: str, args: argparse.Namespace) -> list[Measurement]:
    """One run of ``case``: every implementation on a fresh file, taking turns in blocks; all checked, then deleted.

    The order rotates every turn and every run, so disk and machine noise lands
    on all implementations alike. A block runs all of an implementation's
    callers at once on their slice; its wall time is the first caller's start
    to the last caller's end.
    """
    paths = {
        impl.key: os.path.join(directory, f"{case.group}-{case.kind}-{impl.key}-{impl.callers}-{repeat}.db")
        for impl in case.impls
    }
    plans = {impl.key: make_plans(case, impl, warm_count(impl, args.sizes), args.body_size) for impl in case.impls}
    base_ts: dict[str, int] = {}
    prefilled: dict[str, int] = {}
    claims = case.kind in ("claim", "claim_many")
    blocks = block_count(case, args)
    sessions: dict[str, Session] = {}
    results: dict[str, list[list[CallerResult]]] = {impl.key: [] for impl in case.impls}
    try:
        for impl in case.impls:
            path = paths[impl.key]
            if impl.base:
                copy_base(pending_base(args.cache_dir, impl.base, args.body_size), path)
            else:
                create_file(path, impl.family)
            base_ts[impl.key] = last_ts(path)
            count = warm_count(impl, args.sizes) * impl.callers + case.messages if claims else 0
            insert_pending(path, [make_body("p", i, args.body_size) for i in range(count)])
            prefilled[impl.key] = count
        for impl in rotated(case.impls, repeat):
            sessions[impl.key] = open_session(impl, paths[impl.key], plans[impl.key], args)
        gc.collect()
        for k in range(blocks):
            for impl in rotated(case.impls, repeat + k):
                slices = [share(p.units, k, blocks) for p in plans[impl.key]]
                results[impl.key].append(sessions[impl.key].run_block(case.kind, slices))
    finally:
        errors = []
        for session in sessions.values():
            try:
                session.close()
            except BaseException as exc:
                errors.append(exc)
        if errors and sys.exc_info()[0] is None:
            raise errors[0]

    measurements = []
    try:
        for impl in case.impls:
            per_block = results[impl.key]
            seconds = sum(max(r.end_ns for r in b) - min(r.start_ns for r in b) for b in per_block) / 1e9
            latencies = [x for b in per_block for r in b for x in r.latencies_ns]
            claimed = [body_of(x) for b in per_block for r in b for x in r.claimed]
            verify(case, impl, paths[impl.key], base_ts[impl.key], plans[impl.key], claimed, prefilled[impl.key])
            ordered = sorted(latencies)
            measurements.append(
                Measurement(
                    group=case.group,
                    case=case.name,
                    impl=impl.key,
                    label=impl.label,
                    repeat=repeat,
                    callers=impl.callers,
                    messages=case.messages,
                    blocks=blocks,
                    seconds=seconds,
                    rate=case.messages / seconds,
                    p50_us=percentile(ordered, 50) / 1000,
                    p99_us=percentile(ordered, 99) / 1000,
                    latencies_ns=latencies,
                    connections_checked=len(sessions[impl.key].settings),
                    settings=distinct(sessions[impl.key].settings),
                )
            )
    finally:
        for path in paths.values():
            remove_database(path)
    return measurements


def verify(
    case: Case, impl: Impl, path: str, base_ts: int, plans: list[Plan], claimed: list[str], prefilled: int
) -> None:
    """Fail loudly unless the file holds exactly the expected rows (nothing lost, nothing doubled)."""
    what = f"{case.group} / {case.name} / {impl.label}"
    total, pending, bodies = counts_and_bodies(path, base_ts)
    if case.kind in ("write", "write_many"):
        written = (b for plan in plans for unit in plan.units for b in (unit if case.kind == "write_many" else [unit]))
        expected = Counter(b for plan in plans for b in plan.warm_bodies)
        expected.update(written)
        want = (impl.base + sum(expected.values()),) * 2
        if (total, pending) != want or bodies != expected:
            missing = sum((expected - bodies).values())
            extra = sum((bodies - expected).values())
            raise RuntimeError(
                f"{what}: (total, pending) = {(total, pending)}, expected {want}; "
                f"{missing} written messages missing, {extra} unexpected"
            )
        return
    want = (impl.base + prefilled, impl.base)
    counted = Counter(claimed)
    doubled = sum(n - 1 for n in counted.values() if n > 1)
    # With nothing pending before (base 0) every pre-filled message must be gone; on top of a base, the
    # oldest (the base's) are claimed first and the pre-filled ones stay.
    left = 0 if impl.base else sum(bodies.values())
    if (total, pending) != want or len(claimed) != case.messages or doubled or left:
        raise RuntimeError(
            f"{what}: (total, pending) = {(total, pending)}, expected {want}; claimed {len(claimed)} "
            f"in the timed part, expected {case.messages}; {doubled} delivered twice; {left} "
            "pre-filled messages left pending"
        )
    if not all(b.startswith(("p", "b")) for b in counted):
        raise RuntimeError(f"{what}: claimed a message that was never written")


def check_settings(m: Measurement) -> list[str]:
    """Problems with the PRAGMAs seen on the implementation's own connections."""
    where = f"{m.group} / {m.case} / {m.label}"
    if not m.settings:
        return [f"{where}: no open connection found to check its PRAGMAs"]
    want = {
        "synchronous": SYNC_PRAGMA_VALUE[SYNC],
        "journal_mode": "wal",
        "busy_timeout": BUSY_TIMEOUT_MS,
        "cache_size": -CACHE_MB * 1024,
        "wal_autocheckpoint": WAL_AUTOCHECKPOINT,
    }
    problems = []
    for seen in m.settings:
        for name, value in want.items():
            if seen[name] != value:
                problems.append(f"{where}: PRAGMA {name} = {seen[name]!r}, expected {value!r}")
    return problems


# --------------------------------------------------------------------------- memory (scale group)
MEMORY_PROBES = ("blocking peek", "asyncio peek", "blocking claim", "asyncio claim")


def status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kb() -> int:
    value = status_kb("VmRSS")
    if value is None:  # no /proc: the peak so far is the best there is
        scale = 1 if sys.platform != "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // scale
    return value


def memory_probe(probe: str, path: str) -> dict[str, Any]:
    """In a fresh process: stream every message of the queue, reporting the RSS before, at the peak and its growth.

    ``peek``: ``stream(q, peek=True)``; ``claim``: ``stream(q, commit_interval=1000)`` (at least once).
    Bodies are counted and dropped, as a consumer that handles each message would.
    """
    adapter, mode = probe.split()
    stream_kwargs: dict[str, Any] = {"peek": True} if mode == "peek" else {"commit_interval": BATCH}
    sample_every = 10_000
    state = {"baseline": 0, "peak": 0, "hwm_reset": False, "count": 0, "seconds": 0.0}

    def begin() -> None:
        gc.collect()
        state["baseline"] = state["peak"] = rss_kb()
        try:  # reset the kernel's peak (VmHWM) so it covers the stream only
            Path("/proc/self/clear_refs").write_text("5")
            state["hwm_reset"] = True
        except OSError:
            pass
        state["started"] = time.perf_counter()

    def sample() -> None:
        state["peak"] = max(state["peak"], rss_kb())

    def end(count: int) -> None:
        state["seconds"] = time.perf_counter() - state["started"]
        sample()
        hwm = status_kb("VmHWM")
        if state["hwm_reset"] and hwm is not None:
            state["peak"] = max(state["peak"], hwm)
        state["count"] = count

    if adapter == "blocking":
        with Broker(path, config=sansio_config(SYNC)) as broker:
            broker.peek(QUEUE)  # the connection and its first page are part of the baseline
            begin()
            count = 0
            for _ in broker.stream(QUEUE, **stream_kwargs):
                count += 1
                if count % sample_every == 0:
                    sample()
            end(count)
    else:
        from sansio_broker.adapters.asyncio import async_broker

        async def main() -> None:
            async with async_broker(path, pool_size=1, config=sansio_config(SYNC)) as broker:
                await broker.peek(QUEUE)
                begin()
                count = 0
                async for _ in broker.stream(QUEUE, **stream_kwargs):
                    count += 1
                    if count % sample_every == 0:
                        sample()
                end(count)

        asyncio.run(main())
    growth = state["peak"] - state["baseline"]
    return {
        "probe": probe,
        "messages": state["count"],
        "seconds": state["seconds"],
        "baseline_mb": state["baseline"] / 1024,
        "peak_mb": state["peak"] / 1024,
        "growth_mb": growth / 1024,
        "peak_source": "VmHWM and VmRSS samples" if state["hwm_reset"] else "VmRSS samples",
    }


def run_memory_probes(args: argparse.Namespace, directory: str, progress: Callable[[str], None]) -> list[dict]:
    """Each probe in its own fresh Python process, on a private copy of the cached large file."""
    base = pending_base(args.cache_dir, args.scale_pending, args.body_size)
    results = []
    peek_copy = os.path.join(directory, "memory-peek.db")
    try:
        for probe in MEMORY_PROBES:
            if probe.endswith("peek"):
                if not os.path.exists(peek_copy):
                    copy_base(base, peek_copy)
                path = peek_copy
            else:
                path = os.path.join(directory, f"memory-{probe.replace(' ', '-')}.db")
                copy_base(base, path)
            try:
                done = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--memory-probe", probe, path],
                    capture_output=True,
                    text=True,
                    timeout=1800,
                )
                if done.returncode != 0:
                    raise RuntimeError(f"memory probe {probe!r} failed:\n{done.stderr}")
                result = json.loads(done.stdout.strip().splitlines()[-1])
                if result["messages"] != args.scale_pending:
                    raise RuntimeError(
                        f"memory probe {probe!r} streamed {result['messages']:,} messages, "
                        f"expected {args.scale_pending:,}"
                    )
                total, pending, _ = counts_and_bodies(path, 1 << 62)
                want_pending = 0 if probe.endswith("claim") else args.scale_pending
                if (total, pending) != (args.scale_pending, want_pending):
                    raise RuntimeError(
                        f"memory probe {probe!r}: (total, pending) = {(total, pending)}, "
                        f"expected {(args.scale_pending, want_pending)}"
                    )
            finally:
                if path != peek_copy:
                    remove_database(path)
            result["target_mb"] = MEMORY_TARGET_MB
            result["met"] = result["growth_mb"] < MEMORY_TARGET_MB
            results.append(result)
            progress(
                f"scale  memory  {probe:15} {result['messages']:,} msgs in {result['seconds']:.1f} s, "
                f"RSS +{result['growth_mb']:.1f} MB"
            )
    finally:
        if os.path.exists(peek_copy):
            remove_database(peek_copy)
    return results


# --------------------------------------------------------------------------- summary
@dataclass
class Row:
    group: str
    case: str
    impl: str
    label: str
    reference: str
    is_reference: bool
    runs: int
    messages: int
    callers: int
    median_rate: float
    rates: list[float]
    ratio: float | None
    ratios: list[float]
    p50_us: float
    p99_us: float


def summarize(cases: Sequence[Case], measurements: Sequence[Measurement]) -> list[Row]:
    rows = []
    for case in cases:
        ref = case.reference
        ref_rates = {
            m.repeat: m.rate for m in measurements if (m.group, m.case, m.impl) == (case.group, case.name, ref.key)
        }
        for impl in case.impls:
            runs = sorted(
                (m for m in measurements if (m.group, m.case, m.impl) == (case.group, case.name, impl.key)),
                key=lambda m: m.repeat,
            )
            if not runs:
                continue
            ratios = [m.rate / ref_rates[m.repeat] for m in runs if m.repeat in ref_rates]
            latencies = sorted(x for m in runs for x in m.latencies_ns)
            rows.append(
                Row(
                    group=case.group,
                    case=case.name,
                    impl=impl.key,
                    label=impl.label,
                    reference=ref.label,
                    is_reference=impl is ref,
                    runs=len(runs),
                    messages=case.messages,
                    callers=impl.callers,
                    median_rate=statistics.median(m.rate for m in runs),
                    rates=[m.rate for m in runs],
                    ratio=statistics.median(ratios) if ratios else None,
                    ratios=ratios,
                    p50_us=percentile(latencies, 50) / 1000 if latencies else math.nan,
                    p99_us=percentile(latencies, 99) / 1000 if latencies else math.nan,
                )
            )
    return rows


def evaluate(cases: Sequence[Case], rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Target verdicts: the median per-run ratio against each case's targets."""
    verdicts = []
    for case in cases:
        for r in rows:
            if (r.group, r.case) != (case.group, case.name) or r.impl not in case.targets or r.ratio is None:
                continue
            target = case.targets[r.impl]
            low, high = min(r.ratios), max(r.ratios)
            verdicts.append(
                {
                    "group": r.group,
                    "case": r.case,
                    "impl": r.impl,
                    "label": r.label,
                    "ratio": r.ratio,
                    "target": target,
                    "met": r.ratio >= target,
                    # The per-run ratios straddle the target and scatter widely: the verdict is a coin toss.
                    "noisy": low < target <= high and high - low > NOISY_SPREAD * max(1.0, target),
                    "runs": r.ratios,
                }
            )
    return verdicts


def baseline_checks(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """The sequential group against the ratios measured before (a drop of more than 0.1 is flagged)."""
    checks = []
    for r in rows:
        if r.group != "sequential" or r.impl not in BASELINE or r.ratio is None:
            continue
        before = BASELINE[r.impl][r.case]
        checks.append(
            {
                "case": r.case,
                "impl": r.impl,
                "label": r.label,
                "baseline": before,
                "ratio": r.ratio,
                "change": r.ratio - before,
                "dropped": r.ratio < before - BASELINE_TOLERANCE,
                "runs": r.ratios,
            }
        )
    return checks


def render_table(rows: Sequence[Row]) -> str:
    header = ("group", "case", "implementation", "msgs/s", "x ref", "per-run x ref", "p50 us", "p99 us")
    lines: list[tuple[str, ...]] = [header]
    previous: tuple[str, str] | None = None
    for r in rows:
        first = (r.group, r.case) != previous
        previous = (r.group, r.case)
        lines.append(
            (
                r.group if first else "",
                r.case if first else "",
                r.label + ("  (ref)" if r.is_reference else ""),
                f"{r.median_rate:,.0f}",
                "1" if r.is_reference else ("-" if r.ratio is None else floor_to(r.ratio, 3)),
                "" if r.is_reference else " ".join(floor_to(x, 2) for x in r.ratios),
                f"{r.p50_us:,.1f}",
                f"{r.p99_us:,.1f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, 1, 2, 5}
    out = []
    for k, line in enumerate(lines):
        if k > 1 and line[0]:
            out.append("")  # a blank line between groups
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def print_verdicts(verdicts: list[dict[str, Any]], checks: list[dict[str, Any]], memory: list[dict]) -> None:
    if verdicts:
        print("\nTargets (median of the per-run ratios to the case's reference):")
        for v in verdicts:
            verdict = "met" if v["met"] else "MISSED"
            if v["noisy"]:
                verdict += " (noisy: the runs straddle the target; rerun with more work or --repeats)"
            name = f"{v['group']} / {v['case']} / {v['label']}"
            print(f"  {name:70} {floor_to(v['ratio'], 3):>8} >= {v['target']:<5g} {verdict}")
    if checks:
        print(f"\nSequential against the previous ratios (flagged below baseline - {BASELINE_TOLERANCE}):")
        for c in checks:
            verdict = "DROPPED" if c["dropped"] else "ok"
            name = f"{c['case']} / {c['label']}"
            print(f"  {name:40} {floor_to(c['ratio'], 3)} (before {c['baseline']:.3f}, {c['change']:+.3f})  {verdict}")
    if memory:
        print(f"\nMemory: streaming every message in a fresh process (target: RSS growth < {MEMORY_TARGET_MB:g} MB)")
        for m in memory:
            verdict = "met" if m["met"] else "MISSED"
            print(
                f"  {m['probe']:15} {m['messages']:>10,} msgs  {m['seconds']:6.1f} s  "
                f"RSS {m['baseline_mb']:6.1f} -> {m['peak_mb']:6.1f} MB  (+{m['growth_mb']:.1f} MB)  {verdict}"
            )


# --------------------------------------------------------------------------- charts
COLORS = {
    "raw": "#999999",
    "blocking": "C1",
    "asyncio": "C2",
    "trio": "C3",
    "simplebroker": "C4",
    "pending-small": "#999999",
    "pending-large": "C1",
}


def write_charts(
    rows: Sequence[Row],
    cases: Sequence[Case],
    memory: list[dict],
    directory: Path,
    machine: dict[str, Any],
    scale_pending: int,
) -> list[str]:
    """One PNG bar chart per group: msgs/s per implementation (median, min-max whiskers), ratio on each bar."""
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no charts")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    groups = list(dict.fromkeys(c.group for c in cases))
    for group in groups:
        group_cases = [c for c in cases if c.group == group and any(r.case == c.name for r in rows if r.group == group)]
        if not group_cases:
            continue
        panels = len(group_cases) + (1 if group == "scale" and memory else 0)
        columns = min(panels, 3)
        lines = math.ceil(panels / columns)
        fig, axes = plt.subplots(
            lines, columns, figsize=(max(8.0, 4.6 * columns + 1), 5.2 * lines + 0.6), squeeze=False
        )
        flat = list(axes.flat)
        for ax in flat[panels:]:
            ax.set_visible(False)
        for ax, case in zip(flat, group_cases, strict=False):
            case_rows = [r for r in rows if (r.group, r.case) == (group, case.name)]
            labels = [r.label.replace(", ", ",\n", 1) for r in case_rows]
            medians = [r.median_rate for r in case_rows]
            low = [r.median_rate - min(r.rates) for r in case_rows]
            high = [max(r.rates) - r.median_rate for r in case_rows]
            colors = [COLORS.get(r.impl, "C5") for r in case_rows]
            bars = ax.bar(range(len(case_rows)), medians, yerr=[low, high], capsize=4, color=colors)
            for bar, r in zip(bars, case_rows, strict=True):
                note = "ref" if r.is_reference else ("-" if r.ratio is None else f"x{floor_to(r.ratio, 2)}")
                ax.annotate(
                    f"{r.median_rate:,.0f}/s\n{note}",
                    (bar.get_x() + bar.get_width() / 2, max(r.rates)),  # above the whisker
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    xytext=(0, 3),
                    textcoords="offset points",
                )
            ref_row = next((r for r in case_rows if r.is_reference), None)
            for index, r in enumerate(case_rows if ref_row is not None else []):
                assert ref_row is not None
                if r.impl in case.targets:  # the target, as a rate against this chart's reference
                    target = ref_row.median_rate * case.targets[r.impl]
                    ax.hlines(target, index - 0.45, index + 0.45, colors="red", linestyles="dashed")
                if group == "sequential" and r.impl in BASELINE:  # the ratio measured before
                    before = ref_row.median_rate * BASELINE[r.impl][case.name]
                    ax.hlines(before, index - 0.45, index + 0.45, colors="black", linestyles="dotted")
            ax.set_xticks(range(len(case_rows)), labels, rotation=30, ha="right", fontsize=8)
            ax.set_title(case.name, fontsize=10)
            ax.set_ylabel("messages/s (median of the runs; whiskers: min-max)")
            ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
            ax.margins(y=0.18)
        if group == "scale" and memory:
            ax = flat[panels - 1]
            bars = ax.bar(range(len(memory)), [m["growth_mb"] for m in memory], color="C4")
            ax.axhline(MEMORY_TARGET_MB, color="red", linestyle="dashed", linewidth=1)
            for bar, m in zip(bars, memory, strict=True):
                ax.annotate(
                    f"+{m['growth_mb']:.1f} MB",
                    (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    xytext=(0, 3),
                    textcoords="offset points",
                )
            ax.set_xticks(range(len(memory)), [m["probe"] for m in memory], rotation=30, ha="right", fontsize=8)
            ax.set_title(f"RSS growth streaming {memory[0]['messages']:,} messages", fontsize=10)
            ax.set_ylabel("MB")
            ax.set_ylim(0, max(MEMORY_TARGET_MB * 1.2, *(m["growth_mb"] * 1.2 for m in memory)))
        fig.suptitle(
            f"{GROUP_TITLES[group].format(pending=scale_pending)}\n"
            f"synchronous=FULL, WAL; fdatasync {machine['fdatasync_4k_median_us']} us; "
            "x: ratio to the grey reference; red dashes: targets"
            f"{'; black dots: the ratio before' if group == 'sequential' else ''}\n"
            f"sansio-broker {machine['sansio_broker']}, {machine['cpus_usable']} CPUs, "
            f"load {machine['load_average']}",
            fontsize=10,
        )
        fig.tight_layout()
        path = directory / f"{group}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
        log(f"wrote {path}")
    return written


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="fewer messages, no scale group: under a minute")
    mode.add_argument("--smoke", action="store_true", help="a tiny run (1 repeat, ~200 messages) to test the report")
    parser.add_argument("--groups", nargs="+", choices=GROUPS, default=None, help="the case groups to run")
    parser.add_argument("--scale", action="store_true", help="add the scale group (on by default in full mode)")
    parser.add_argument("--no-simplebroker", action="store_true", help="leave SimpleBroker out")
    parser.add_argument("--repeats", type=int, default=None, help="runs of every measurement (default 3; smoke 1)")
    parser.add_argument("--dir", default=None, help="scratch directory on a real disk (default: /var/tmp)")
    parser.add_argument("--allow-tmpfs", action="store_true", help="run even if the directory is on tmpfs")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--cache-dir", default=None, help="where the large pre-filled file is kept between runs")
    parser.add_argument(
        "--json", metavar="PATH", default=str(DEFAULT_JSON), help="results as JSON (default %(default)s)"
    )
    parser.add_argument("--charts", metavar="DIR", default=None, help="PNG directory (default: the JSON's directory)")
    parser.add_argument("--no-charts", action="store_true", help="no PNG charts")
    parser.add_argument(
        "--block",
        type=int,
        default=100,
        help="single-caller cases: operations per implementation per turn (default 100; 0: the whole run at once)",
    )
    parser.add_argument(
        "--concurrent-block",
        type=int,
        default=2000,
        help="concurrent cases: messages per implementation per turn (default 2000; 0: the whole run at once)",
    )
    parser.add_argument("--tasks", type=int, default=100, help="concurrent asyncio / trio tasks (default 100)")
    parser.add_argument("--threads", type=int, default=8, help="concurrent threads (default 8)")
    parser.add_argument("--asyncio-pool", type=int, default=10, help="async_broker pool_size (default 10)")
    parser.add_argument("--trio-pool", type=int, default=4, help="trio_broker pool_size (default 4)")
    parser.add_argument("--body-size", type=int, default=64, help="message body size in characters (default 64)")
    parser.add_argument("--scale-pending", type=int, default=1_000_000, help="the scale group's large queue")
    parser.add_argument("--n-concurrent", type=int, default=None, help="messages per concurrent measurement")
    parser.add_argument("--n-sequential", type=int, default=None, help="operations per sequential measurement")
    parser.add_argument("--n-scale", type=int, default=None, help="operations per scale measurement")
    parser.add_argument("--bulk-batches", type=int, default=None, help=f"calls of {BATCH} per bulk measurement")
    parser.add_argument("--memory-probe", nargs=2, metavar=("PROBE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        return args

    args.mode = "short" if args.short else "smoke" if args.smoke else "full"
    sizes = MODES[args.mode]
    overrides = {
        "concurrent": args.n_concurrent,
        "sequential": args.n_sequential,
        "scale": args.n_scale,
        "bulk_batches": args.bulk_batches,
    }
    args.sizes = Sizes(**{**asdict(sizes), **{k: v for k, v in overrides.items() if v is not None}})
    if args.repeats is None:
        args.repeats = 1 if args.smoke else 3
    if args.groups is None:
        args.groups = [g for g in GROUPS if g != "scale" or args.mode == "full" or args.scale]
    elif args.scale and "scale" not in args.groups:
        args.groups.append("scale")
    if args.repeats < 1 or args.tasks < 1 or args.threads < 1 or args.asyncio_pool < 1 or args.trio_pool < 1:
        parser.error("--repeats, --tasks, --threads and the pool sizes must be positive")
    if args.body_size < BODY_TAG_DIGITS + 1:
        parser.error(f"--body-size must be at least {BODY_TAG_DIGITS + 1} (every body is unique)")
    if min(asdict(args.sizes).values()) < 1 or args.scale_pending < 1:
        parser.error("the message counts must be positive")
    if args.tasks > args.sizes.concurrent or args.threads > args.sizes.concurrent:
        parser.error("every concurrent caller needs at least one message: raise --n-concurrent")
    args.simplebroker_version = None
    if not args.no_simplebroker:
        if importlib.util.find_spec("simplebroker") is None:
            log("simplebroker is not installed: leaving it out")
            args.no_simplebroker = True
        else:
            args.simplebroker_version = importlib.metadata.version("simplebroker")
    return args


def scratch_parent(requested: str | None) -> str:
    if requested is not None:
        return requested
    if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK):
        return "/var/tmp"
    return os.getcwd()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        probe, path = args.memory_probe
        print(json.dumps(memory_probe(probe, path)))
        return 0
    if args.cache_dir is None:
        args.cache_dir = os.path.join(scratch_parent(args.dir), "sansio-bench-cache")
    return run_in_scratch(args, run)


def run(args: argparse.Namespace, directory: str) -> int:
    packages = [p for p in ("simplebroker", "aiosqlite", "aiosqlitepool", "trio") if importlib.util.find_spec(p)]
    machine = machine_info(directory, packages=packages)
    if refuse_memory_filesystem(machine, directory, args.allow_tmpfs):
        return 2
    cases = build_cases(args)
    sizes: Sizes = args.sizes

    print("Machine")
    for key, value in machine.items():
        print(f"  {key:24} {value}")
    print(
        f"Settings: mode={args.mode}, repeats={args.repeats}, groups={' '.join(args.groups)}\n"
        f"  messages: concurrent {sizes.concurrent:,}, bulk {sizes.bulk_batches} x {BATCH}, "
        f"sequential {sizes.sequential:,}, scale {sizes.scale:,} (pending {args.scale_pending:,} vs 1,000); "
        f"body {args.body_size} chars\n"
        f"  callers: {args.tasks} tasks (asyncio pool {args.asyncio_pool}, trio pool {args.trio_pool}), "
        f"{args.threads} threads; warm-up {sizes.warmup} ops (sequential), {sizes.warmup_per_caller} per caller\n"
        f"  turns: the implementations of a case take turns within each run, {args.block or 'all'} ops "
        f"(single caller), {args.concurrent_block or 'all'} messages (concurrent), 1 batch (bulk) per turn\n"
        f"  every implementation: synchronous={SYNC}, WAL, busy_timeout {BUSY_TIMEOUT_MS}, "
        f"wal_autocheckpoint {WAL_AUTOCHECKPOINT}, cache_size -{CACHE_MB * 1024}; brokers with "
        "BROKER_AUTO_VACUUM=0, config passed explicitly (environment not read)",
        flush=True,
    )

    total = args.repeats * sum(len(c.impls) for c in cases) + (len(MEMORY_PROBES) if "scale" in args.groups else 0)
    done = [0]
    started = time.perf_counter()

    def progress(text: str) -> None:
        done[0] += 1
        log(f"[{done[0]:>3}/{total}] {time.perf_counter() - started:6.1f}s  {text}")

    if "scale" in args.groups:  # build (or find) the cached files before any timing
        for pending in (1000, args.scale_pending):
            pending_base(args.cache_dir, pending, args.body_size)

    measurements: list[Measurement] = []
    problems: list[str] = []
    width = max(len(impl.label) for c in cases for impl in c.impls)
    for repeat in range(args.repeats):
        for case in cases:
            for m in measure_case(case, repeat, directory, args):
                measurements.append(m)
                problems.extend(check_settings(m))
                progress(
                    f"run {repeat + 1}/{args.repeats}  {case.group:17} {case.name:19} {m.label:{width}} "
                    f"{m.rate:>10,.0f} msgs/s  {m.seconds:6.2f} s  p50 {m.p50_us:,.0f} us"
                )
    memory = run_memory_probes(args, directory, progress) if "scale" in args.groups else []
    elapsed = time.perf_counter() - started

    rows = summarize(cases, measurements)
    verdicts = evaluate(cases, rows)
    checks = baseline_checks(rows)
    print(
        f"\nResults (median of {args.repeats} runs, total time {elapsed:.0f} s). msgs/s: messages moved / wall time, "
        "summed over the implementation's turns\n(each turn: first caller's start to last caller's end); x ref: median "
        "of the per-run ratios to the case's reference (ref),\nrounded down; p50/p99: latency of one call as its "
        f"caller saw it (one message, or one batch of {BATCH} in bulk), pooled over the runs.\n"
    )
    print(render_table(rows))
    print_verdicts(verdicts, checks, memory)
    for problem in dict.fromkeys(problems):
        print(f"WARNING: {problem}")

    charts: list[str] = []
    json_path = Path(args.json)
    if not args.no_charts:
        chart_dir = Path(args.charts) if args.charts else json_path.parent
        charts = write_charts(rows, cases, memory, chart_dir, machine, args.scale_pending)
    document = {
        "machine": machine,
        "settings": {
            k: v for k, v in vars(args).items() if k not in ("sizes", "memory_probe") and not k.startswith("_")
        }
        | {"sizes": asdict(sizes), "sync": SYNC, "batch": BATCH},
        "elapsed_seconds": elapsed,
        "cases": [
            {
                "group": c.group,
                "case": c.name,
                "kind": c.kind,
                "messages": c.messages,
                "reference": c.reference.key,
                "targets": c.targets,
                "impls": [asdict(i) for i in c.impls],
            }
            for c in cases
        ],
        "rows": [asdict(r) for r in rows],
        "targets": verdicts,
        "sequential_baseline": {"ratios": BASELINE, "tolerance": BASELINE_TOLERANCE, "checks": checks},
        "memory": memory,
        "measurements": [{k: v for k, v in asdict(m).items() if k != "latencies_ns"} for m in measurements],
        "problems": list(dict.fromkeys(problems)),
        "charts": charts,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    log(f"wrote {json_path}")
    return 0


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())

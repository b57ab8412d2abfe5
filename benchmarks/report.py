"""The benchmark report: every adapter against a reference measured in the same run; one table, JSON, charts.

Groups ``concurrent-writes``, ``concurrent-reads``, ``bulk``, ``sequential`` and ``scale`` (see the README). A
case's timing loop is written once (``run_units``): asyncio and trio callers await each call, and a synchronous
caller's coroutine never suspends, so ``drive`` runs it in one step. The library comes from the import path:
``PYTHONPATH=/other/checkout python benchmarks/report.py`` measures that checkout (the Machine block names it);
``benchmarks/ab.py`` alternates two. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import platform
import re
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import sansio_broker
from sansio_broker.adapters.blocking import Broker

T = TypeVar("T")
Doc = dict[str, Any]  # a JSON object
Units = Sequence[tuple[Any, ...]]  # the arguments of a caller's calls
SCRIPT = str(Path(__file__).resolve())
DEFAULT_JSON = Path(SCRIPT).parent / "results" / "report.json"
QUEUE, BATCH, BODY_TAG_DIGITS = "bench", 1000, 9
SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
TARGETS_SYNC = "FULL"  # the targets and the sequential baseline were set at this sync mode
# Every implementation gets these explicitly, so no BROKER_* variable changes what is measured.
BUSY_TIMEOUT_MS, WAL_AUTOCHECKPOINT, CACHE_MB = 5000, 1000, 10
PRAGMAS = {"busy_timeout": BUSY_TIMEOUT_MS, "wal_autocheckpoint": WAL_AUTOCHECKPOINT, "cache_size": -CACHE_MB * 1024}
NOISY_SPREAD = 0.2  # a verdict is noisy when its per-run ratios straddle the target and spread wider than this
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})

# The storage contract's transactions, as the raw reference runs them.
BEGIN_IMMEDIATE, COMMIT, ROLLBACK = "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"
ADVANCE_LAST_TS = "UPDATE meta SET value = ? WHERE key = 'last_ts' AND value < ? RETURNING value"
INSERT_MESSAGE = "INSERT INTO messages (queue, body, ts) VALUES (?, ?, ?)"
CLAIM = (
    "UPDATE messages\nSET claimed = 1\nWHERE ts IN (\n    SELECT ts FROM messages\n"
    "    WHERE queue = ? AND claimed = 0\n    ORDER BY ts ASC\n    LIMIT ?\n)\nRETURNING body, ts"
)
PHYSICAL_MASK, COUNTER_MASK = ~0xFFF, 0xFFF  # IDs: hybrid time in the high bits, a counter in the low 12

GROUPS = ("concurrent-writes", "concurrent-reads", "bulk", "sequential", "scale", "waiting")  # waiting: waiting.py
GROUP_TITLES = {
    "concurrent-writes": "Concurrent writes: one message per call, many callers at once",
    "concurrent-reads": "Concurrent reads: one claim per call until the queue is empty",
    "bulk": "Bulk: write_many / claim_many of 1000 messages per call",
    "sequential": "Sequential single operations: one caller, one message per transaction",
    "scale": "Scale: {pending:,} pending messages against 1,000 (blocking adapter)",
}
# The sequential ratios at synchronous=FULL before this report existed; a drop of more than the tolerance is flagged.
BASELINE = {
    "blocking": {"write": 0.888, "claim": 0.866},
    "asyncio": {"write": 0.623, "claim": 0.667},
    "trio": {"write": 0.585, "claim": 0.610},
}
BASELINE_TOLERANCE, MEMORY_TARGET_MB = 0.1, 50.0
MEMORY_PROBES = ("blocking peek", "asyncio peek", "blocking claim", "asyncio claim")
DRY = "the pre-filled queue ran dry: a message was lost, or delivered twice"


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

    def warm(self, callers: int) -> int:
        return self.warmup if callers == 1 else self.warmup_per_caller


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
    family: str  # raw | blocking | asyncio | trio | simplebroker | asyncio-hop | trio-hop
    callers: int = 1
    base: int = 0  # messages already pending in the queue (scale group)


@dataclass(frozen=True)
class Case:
    group: str
    case: str
    kind: str  # write | claim | write_many | claim_many
    messages: int  # timed messages per measurement
    impls: tuple[Impl, ...]  # the first is the reference every ratio is taken against
    targets: dict[str, float] = field(default_factory=dict)  # impl key -> minimum ratio

    @property
    def reference(self) -> Impl:
        return self.impls[0]


def build_cases(args: argparse.Namespace) -> list[Case]:
    sizes, tasks, threads, sb = args.sizes, args.tasks, args.threads, args.simplebroker_version

    def case(group: str, name: str, kind: str, n: int, impls: list[Impl], **targets: float) -> Case:
        return Case(group, name, kind, n, tuple(impls), targets if args.sync == TARGETS_SYNC else {})

    raw = Impl("raw", "raw sqlite3, 1 msg/txn, sequential", "raw")
    raw_claim = Impl("raw", "raw sqlite3, 1 claim/txn, sequential", "raw")
    raw_batch = Impl("raw", f"raw sqlite3, executemany {BATCH}/txn", "raw")
    raw_claims = Impl("raw", f"raw sqlite3, UPDATE ... LIMIT {BATCH}/txn", "raw")
    crowd = [
        Impl("asyncio", f"asyncio, {tasks} tasks (pool {args.asyncio_pool})", "asyncio", tasks),
        Impl("trio", f"trio, {tasks} tasks (pool {args.trio_pool})", "trio", tasks),
        Impl("blocking", f"blocking Broker, {threads} threads", "blocking", threads),
    ]
    many = [Impl("blocking", "blocking Broker", "blocking"), Impl("asyncio", "asyncio", "asyncio")]
    many.append(Impl("trio", "trio", "trio"))
    singles = [many[0], Impl("asyncio", f"asyncio (pool {args.asyncio_pool})", "asyncio")]
    singles.append(Impl("trio", f"trio (pool {args.trio_pool})", "trio"))
    sb_many = []  # SimpleBroker 8.7.2 has no batch write with generated IDs (insert_messages takes exact IDs)
    if sb:
        crowd.append(Impl("simplebroker", f"simplebroker {sb} Queue, {threads} threads", "simplebroker", threads))
        singles.append(Impl("simplebroker", f"simplebroker {sb} Queue", "simplebroker"))
        sb_many.append(Impl("simplebroker", f"simplebroker {sb} Queue.read_many", "simplebroker"))
    if args.hops:
        singles.append(Impl("asyncio-hop", "raw sqlite3 + run_in_executor hop", "asyncio-hop"))
        singles.append(Impl("trio-hop", "raw sqlite3 + trio.to_thread hop", "trio-hop"))
    bulk, n, batches = dict.fromkeys(("blocking", "asyncio", "trio"), 0.5), sizes.concurrent, sizes.bulk_batches * BATCH
    cases = [
        case("concurrent-writes", "write", "write", n, [raw, *crowd], asyncio=10.0, trio=10.0, blocking=3.0),
        case("concurrent-reads", "claim", "claim", n, [raw_claim, *crowd], asyncio=8.0, trio=8.0),
        case("bulk", f"write_many {BATCH}", "write_many", batches, [raw_batch, *many], **bulk),
        case("bulk", f"claim_many {BATCH}", "claim_many", batches, [raw_claims, *many, *sb_many], **bulk),
        case("sequential", "write", "write", sizes.sequential, [raw, *singles]),
        case(
            "sequential", "claim", "claim", sizes.sequential, [Impl("raw", "raw sqlite3, 1 claim/txn", "raw"), *singles]
        ),
    ]
    large = args.scale_pending
    for kind, callers in itertools.product(("write", "claim"), (1, threads)):
        small_impl = Impl("pending-small", "blocking, 1,000 pending", "blocking", callers, 1000)
        large_impl = Impl("pending-large", f"blocking, {large:,} pending", "blocking", callers, large)
        name = f"{kind}, {'sequential' if callers == 1 else f'{threads} threads'}"
        cases.append(case("scale", name, kind, sizes.scale, [small_impl, large_impl], **{"pending-large": 0.8}))
    return [c for c in cases if c.group in args.groups]


# --------------------------------------------------------------------------- files
def make_body(prefix: str, index: int, size: int) -> str:
    """A unique body: ``prefix`` and ``index`` padded to ``size`` characters, so every message is accounted for."""
    tag = f"{prefix}{index:0{BODY_TAG_DIGITS}d}"
    return tag + "m" * (size - len(tag))


def next_ids(last: int, count: int) -> range:
    """``count`` consecutive IDs after ``last``."""
    now = time.time_ns() & PHYSICAL_MASK
    first = now if now > last & PHYSICAL_MASK else last + 1
    return range(first, first + count)


def read_last_ts(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()[0])


def read_only(path: str) -> contextlib.closing[sqlite3.Connection]:
    return contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True))


def insert_pending(path: str, bodies: Iterable[str], count: int, synchronous: str = "FULL") -> None:
    """Add ``count`` pending messages in one transaction (``meta.last_ts`` advanced past them), then checkpoint."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)) as conn:
        conn.execute(f"PRAGMA synchronous={synchronous}")
        if count:
            conn.execute(BEGIN_IMMEDIATE)
            ids = next_ids(read_last_ts(conn), count)
            if not conn.execute(ADVANCE_LAST_TS, (ids[-1], ids[-1])).fetchall():
                raise RuntimeError("could not advance meta.last_ts for the prefill")
            conn.executemany(INSERT_MESSAGE, ((QUEUE, body, ts) for body, ts in zip(bodies, ids, strict=True)))
            conn.execute(COMMIT)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def sansio_config(sync: str) -> Doc:
    config = {"BROKER_SYNC_MODE": sync, "BROKER_AUTO_VACUUM": 0, "BROKER_BUSY_TIMEOUT": BUSY_TIMEOUT_MS}
    return config | {"BROKER_WAL_AUTOCHECKPOINT": WAL_AUTOCHECKPOINT, "BROKER_CACHE_MB": CACHE_MB}


def simplebroker_config(sync: str) -> Any:
    import simplebroker

    # Override keys carry the BROKER_ prefix; the environment is not read.
    return simplebroker.resolve_config(override=sansio_config(sync))


def create_file(path: str, family: str, sync: str) -> None:
    """An empty schema-v6 file, made by the implementation's own program (SimpleBroker makes its own)."""
    if family == "simplebroker":
        from simplebroker.db import BrokerDB

        BrokerDB(path, config=simplebroker_config(sync)).close()
    else:
        Broker(path, config=sansio_config(sync)).close()


_CHECKED_BASES: set[str] = set()  # cached files found good (or built) by this process


def pending_base(cache_dir: str, pending: int, body_size: int) -> str:
    """A file with ``pending`` messages, built once (raw ``executemany``) and reused while it still holds them."""
    path = os.path.join(cache_dir, f"pending-{pending}-body{body_size}-v1.db")
    if path in _CHECKED_BASES and os.path.exists(path):
        return path
    _CHECKED_BASES.add(path)
    if os.path.exists(path):
        with contextlib.suppress(sqlite3.Error), read_only(path) as conn:
            query = "SELECT SUM(claimed = 0 AND queue = ?), MAX(ts) FROM messages"
            found, top = conn.execute(query, (QUEUE,)).fetchone()
            if found == pending and read_last_ts(conn) >= int(top or 0):
                return path
        log(f"  rebuilding {path}: not the expected content")
        remove_database(path)
    os.makedirs(cache_dir, exist_ok=True)
    started, building = time.perf_counter(), path + ".building"
    remove_database(building)
    create_file(building, "blocking", "FULL")
    # A throwaway build: synchronous=OFF, then one fsync of the whole file.
    insert_pending(building, (make_body("b", i, body_size) for i in range(pending)), pending, "OFF")
    fsync_file(building)
    os.replace(building, path)
    log(f"  built {path} ({pending:,} messages) in {time.perf_counter() - started:.1f} s")
    return path


def fsync_file(path: str, copy_of: str | None = None) -> None:
    """fsync ``path`` (first made a copy of ``copy_of``): on disk before a measurement starts."""
    if copy_of is not None:
        shutil.copyfile(copy_of, path)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def counts_and_bodies(path: str, after_ts: int) -> tuple[int, int, Counter[str]]:
    """(total, pending) of the benchmark queue, and the pending bodies with an ID above ``after_ts``."""
    with read_only(path) as conn:
        query = "SELECT COUNT(*), COALESCE(SUM(claimed = 0), 0) FROM messages WHERE queue = ?"
        total, pending = conn.execute(query, (QUEUE,)).fetchone()
        query = "SELECT body FROM messages WHERE ts > ? AND queue = ? AND claimed = 0"
        return int(total), int(pending), Counter(row[0] for row in conn.execute(query, (after_ts, QUEUE)))


def remove_database(path: str) -> None:
    directory, name = os.path.split(path)
    for entry in os.listdir(directory):
        if entry.startswith(name):
            os.unlink(os.path.join(directory, entry))


def connection_settings(path: str) -> list[Doc]:
    """The PRAGMAs of every sqlite3 connection open on ``path``: found by the garbage collector, not by internals."""
    target, found = os.path.realpath(path), []
    for obj in (o for o in gc.get_objects() if isinstance(o, sqlite3.Connection)):
        try:
            files = [row[2] for row in obj.execute("PRAGMA database_list").fetchall() if row[1] == "main"]
            if files and os.path.realpath(files[0]) == target:
                names = ("synchronous", "journal_mode", "busy_timeout", "cache_size", "wal_autocheckpoint")
                found.append({name: obj.execute(f"PRAGMA {name}").fetchone()[0] for name in names})
        except sqlite3.Error:  # closed, or bound to another thread
            continue
    return found


# --------------------------------------------------------------------------- implementations
class RawOps:
    """Plain sqlite3 on one connection with the adapters' PRAGMAs: the contract's write / claim and batch forms."""

    def __init__(self, path: str, sync: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        if (mode := conn.execute("PRAGMA journal_mode").fetchone()[0]) != "wal":
            conn.close()
            raise RuntimeError(f"expected a WAL database, found journal_mode={mode}")
        for name, value in (PRAGMAS | {"synchronous": sync}).items():
            conn.execute(f"PRAGMA {name}={value}")
        self.conn, self.last = conn, read_last_ts(conn)

    def _ids(self, count: int) -> range:
        last = self.last
        if count == 1 and last & COUNTER_MASK == COUNTER_MASK:  # counter exhausted: wait for the clock
            while time.time_ns() & PHYSICAL_MASK <= last & PHYSICAL_MASK:
                time.sleep(1e-6)
        return next_ids(last, count)

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
            rows = conn.execute(CLAIM, (QUEUE, limit)).fetchall()
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

    write: Callable[..., Any]
    claim: Callable[..., Any]
    write_many: Callable[..., Any] | None
    claim_many: Callable[..., Any]

    @classmethod
    def of(cls, target: Any) -> Calls:
        """A sansio-broker broker (blocking, asyncio or trio), by the public, positional API of every version."""
        names = ("write", "claim", "write_many", "claim_many")
        return cls(*(functools.partial(getattr(target, name), QUEUE) for name in names))


# --------------------------------------------------------------------------- the timing loop, written once
@dataclass
class Plan:
    """What one caller does: untimed warm-up single operations, then its timed calls."""

    warm_bodies: list[str]  # writes: written one by one before timing
    warm_claims: int  # claims: claimed one by one before timing
    units: list[tuple[Any, ...]]  # the arguments of each timed call


@dataclass
class CallerResult:
    start_ns: int
    end_ns: int
    latencies_ns: list[int]
    claimed: list[Any]


async def run_units(kind: str, call: Callable[..., Any], units: Units, awaited: bool) -> CallerResult:
    """One caller's calls, timed; the latencies chain, so they add up to its elapsed time.

    The one timing loop of every runtime: ``awaited`` callers await each call; a synchronous caller's coroutine
    never suspends, so ``drive`` runs it to its end in one step.
    """
    latencies: list[int] = []
    claimed: list[Any] = []
    clock, add = time.perf_counter_ns, latencies.append
    start = previous = clock()
    for args in units:
        got = call(*args)
        if awaited:
            got = await got
        now = clock()
        add(now - previous)
        previous = now
        if kind == "claim":
            if got is None:
                raise RuntimeError(DRY)
            claimed.append(got)
        elif kind == "claim_many":
            if len(got) != args[0]:
                raise RuntimeError(f"claim_many({args[0]}) returned {len(got)} messages: {DRY}")
            claimed.extend(got)
    return CallerResult(start, previous, latencies, claimed)


def drive(function: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine function that never suspends (a synchronous caller's) to its end."""
    coroutine = function()
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a synchronous caller suspended")


def make_plans(case: Case, impl: Impl, warm: int, body_size: int) -> list[Plan]:
    """The callers' shares: message ``i`` goes to caller ``i % callers``."""
    callers, kind, messages, plans = impl.callers, case.kind, case.messages, []
    for c in range(callers):
        if kind == "write":
            units: list[tuple[Any, ...]] = [(make_body("w", i, body_size),) for i in range(c, messages, callers)]
        elif kind == "write_many":
            batches = range(c, messages // BATCH, callers)
            units = [([make_body("w", b * BATCH + j, body_size) for j in range(BATCH)],) for b in batches]
        elif kind == "claim":
            units = [()] * len(range(c, messages, callers))
        else:
            units = [(BATCH,)] * len(range(c, messages // BATCH, callers))
        if kind.startswith("write"):
            plans.append(Plan([make_body("u", c * warm + j, body_size) for j in range(warm)], 0, units))
        else:
            plans.append(Plan([], warm, units))
    return plans


async def warm_up(calls: Calls, plan: Plan, awaited: bool) -> None:
    await run_units("write", calls.write, [(body,) for body in plan.warm_bodies], awaited)
    await run_units("claim", calls.claim, [()] * plan.warm_claims, awaited)


async def gather(functions: Sequence[Callable[[], Coroutine[Any, Any, T]]]) -> list[T]:
    """Every coroutine function at once in one task group (asyncio or trio); their results in order."""
    import anyio

    results: list[Any] = [None] * len(functions)

    async def one(index: int) -> None:
        results[index] = await functions[index]()

    async with anyio.create_task_group() as group:
        for index in range(len(functions)):
            group.start_soon(one, index)
    return results


_LOOKING = threading.Lock()


async def look(path: str) -> list[Doc]:
    with _LOOKING:  # one caller at a time: a connection shared by threads is never used by two at once
        return connection_settings(path)


# --------------------------------------------------------------------------- sessions
class Session:
    """An implementation open on its file for a whole run, warmed up (untimed), so all of a case take turns.

    Synchronous ones run one caller inline or a persistent thread per caller (which keeps its connection); asyncio
    and trio ones run in an event loop in a thread of their own (an anyio blocking portal).
    """

    def __init__(self, impl: Impl, path: str, plans: list[Plan], args: argparse.Namespace) -> None:
        self.stack, self.threads = contextlib.ExitStack(), list[ThreadPoolExecutor]()
        self.portal: Any = None
        runtime = impl.family.removesuffix("-hop")
        self.awaited = runtime in ("asyncio", "trio")
        try:
            if self.awaited:
                from anyio.from_thread import start_blocking_portal

                self.portal = self.stack.enter_context(start_blocking_portal(runtime))
            self.calls = self._open(impl, runtime, path, args)
            if impl.callers > 1 and not self.awaited:  # the threads end before their broker closes
                self.threads = [self.stack.enter_context(ThreadPoolExecutor(1)) for _ in range(impl.callers)]
            self.all([functools.partial(warm_up, self.calls, plan, self.awaited) for plan in plans])
            # Every caller looks, so connections bound to a thread are seen too.
            seen = self.all([functools.partial(look, path)] * (impl.callers if self.threads else 1))
            self.settings = [settings for found in seen for settings in found]
        except BaseException:
            self.close()
            raise

    def _open(self, impl: Impl, runtime: str, path: str, args: argparse.Namespace) -> Calls:
        config = sansio_config(args.sync)
        if impl.family == "blocking":  # shared by the threads: a connection per thread
            return Calls.of(self.stack.enter_context(Broker(path, config=config)))
        if impl.family == "simplebroker":
            import simplebroker

            # One persistent Queue shared by the threads: SimpleBroker gives each thread its own connection.
            sb = simplebroker.Queue(QUEUE, db_path=path, persistent=True, config=simplebroker_config(args.sync))
            self.stack.callback(sb.close)
            return Calls(sb.write, sb.read_one, None, sb.read_many)
        if impl.family in ("asyncio", "trio"):
            if runtime == "asyncio":
                from sansio_broker.adapters.asyncio import async_broker as opener
            else:
                from sansio_broker.adapters.trio import trio_broker as opener  # type: ignore[assignment]
            pool = args.asyncio_pool if runtime == "asyncio" else args.trio_pool
            opened = opener(path, pool_size=pool, config=config)
            return Calls.of(self.stack.enter_context(self.portal.wrap_async_context_manager(opened)))
        if impl.callers != 1:
            raise ValueError("the raw reference is sequential")
        raw = RawOps(path, args.sync)
        self.stack.callback(raw.conn.close)
        functions: tuple[Callable[..., Any], ...] = (raw.write, raw.claim, raw.write_many, raw.claim_many)
        if runtime == "raw":
            return Calls(*functions)
        if runtime == "asyncio":  # one bare thread hop per call, what any asyncio code running SQLite pays
            loop, executor = self.portal.call(asyncio.get_running_loop), ThreadPoolExecutor(max_workers=1)
            self.stack.callback(executor.shutdown)
            return Calls(*(functools.partial(loop.run_in_executor, executor, f) for f in functions))
        import trio

        return Calls(*(functools.partial(trio.to_thread.run_sync, f) for f in functions))

    def all(self, functions: Sequence[Callable[[], Coroutine[Any, Any, T]]]) -> list[T]:
        """Every caller's coroutine at once, in this session's runtime; their results in order."""
        if self.awaited:
            return self.portal.call(gather, functions)  # type: ignore[no-any-return]
        if self.threads:  # every thread on its job at once; all are done before any failure is raised
            futures = [thread.submit(drive, f) for thread, f in zip(self.threads, functions, strict=True)]
            concurrent.futures.wait(futures)
            return [future.result() for future in futures]
        return [drive(f) for f in functions]

    def run_block(self, kind: str, slices: Sequence[Units]) -> list[CallerResult]:
        call = getattr(self.calls, kind)
        return self.all([functools.partial(run_units, kind, call, s, self.awaited) for s in slices])

    def close(self) -> None:
        self.stack.close()


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
    settings: list[Doc] = field(repr=False)  # the distinct PRAGMA sets seen on its connections


def block_count(case: Case, args: argparse.Namespace) -> int:
    """How many turns each implementation gets in one run (its messages are spread evenly over them)."""
    if case.kind in ("write_many", "claim_many"):
        return case.messages // BATCH  # one batch per turn
    block = args.concurrent_block if any(impl.callers > 1 for impl in case.impls) else args.block
    return 1 if block <= 0 else max(1, math.ceil(case.messages / block))


def rotated(items: Sequence[T], by: int) -> list[T]:
    k = by % len(items)
    return [*items[k:], *items[:k]]


def measure_case(case: Case, repeat: int, directory: str, args: argparse.Namespace) -> list[Measurement]:
    """One run of ``case``: every implementation on a fresh file, taking turns in blocks; all checked, then deleted.

    The order rotates every turn and run, so noise lands on all alike. A block runs all of an implementation's
    callers at once; its wall time is the first caller's start to the last caller's end.
    """
    blocks, impls, name, sizes = block_count(case, args), case.impls, f"{case.group}-{case.kind}", args.sizes
    paths = {i.key: os.path.join(directory, f"{name}-{i.key}-{i.callers}-{repeat}.db") for i in impls}
    plans = {i.key: make_plans(case, i, sizes.warm(i.callers), args.body_size) for i in impls}
    base_ts, prefilled = {}, {}
    for impl in impls:
        path = paths[impl.key]
        if impl.base:
            fsync_file(path, copy_of=pending_base(args.cache_dir, impl.base, args.body_size))
        else:
            create_file(path, impl.family, args.sync)
        with read_only(path) as conn:
            base_ts[impl.key] = read_last_ts(conn)
        warm = sizes.warm(impl.callers) * impl.callers
        count = prefilled[impl.key] = warm + case.messages if "claim" in case.kind else 0
        insert_pending(path, (make_body("p", i, args.body_size) for i in range(count)), count)
    sessions: dict[str, Session] = {}
    results: dict[str, list[list[CallerResult]]] = {impl.key: [] for impl in impls}
    with contextlib.ExitStack() as stack:
        for impl in rotated(impls, repeat):
            session = Session(impl, paths[impl.key], plans[impl.key], args)
            sessions[impl.key] = stack.enter_context(contextlib.closing(session))
        gc.collect()
        for k in range(blocks):
            for impl in rotated(impls, repeat + k):
                slices = [
                    p.units[k * len(p.units) // blocks : (k + 1) * len(p.units) // blocks] for p in plans[impl.key]
                ]
                results[impl.key].append(sessions[impl.key].run_block(case.kind, slices))
    measurements = []
    try:
        for impl in impls:
            per_block = results[impl.key]
            seconds = sum(max(r.end_ns for r in b) - min(r.start_ns for r in b) for b in per_block) / 1e9
            latencies = [x for b in per_block for r in b for x in r.latencies_ns]
            claimed = [x if isinstance(x, str) else x.body for b in per_block for r in b for x in r.claimed]
            verify(case, impl, paths[impl.key], base_ts[impl.key], plans[impl.key], claimed, prefilled[impl.key])
            ordered, settings = sorted(latencies), sessions[impl.key].settings
            head = (case.group, case.case, impl.key, impl.label, repeat, impl.callers, case.messages, blocks, seconds)
            p50, p99 = percentile(ordered, 50) / 1000, percentile(ordered, 99) / 1000
            distinct = [dict(items) for items in dict.fromkeys(tuple(sorted(d.items())) for d in settings)]
            measurements.append(
                Measurement(*head, case.messages / seconds, p50, p99, len(settings), latencies, distinct)
            )
    finally:
        for path in paths.values():
            remove_database(path)
    return measurements


def verify(
    case: Case, impl: Impl, path: str, after: int, plans: list[Plan], claimed: list[str], prefilled: int
) -> None:
    """Fail loudly unless the file holds exactly the expected rows (nothing lost, nothing doubled)."""
    what = f"{case.group} / {case.case} / {impl.label}"
    total, pending, bodies = counts_and_bodies(path, after)
    if case.kind.startswith("write"):
        expected = Counter(b for plan in plans for b in plan.warm_bodies)
        expected.update(b for p in plans for (unit,) in p.units for b in ([unit] if case.kind == "write" else unit))
        want = (impl.base + sum(expected.values()),) * 2
        if (total, pending) != want or bodies != expected:
            missing, extra = sum((expected - bodies).values()), sum((bodies - expected).values())
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


def check_settings(m: Measurement, sync: str) -> list[str]:
    """Problems with the PRAGMAs seen on the implementation's own connections."""
    where = f"{m.group} / {m.case} / {m.label}"
    if not m.settings:
        return [f"{where}: no open connection found to check its PRAGMAs"]
    want = PRAGMAS | {"synchronous": SYNC_MODES.index(sync), "journal_mode": "wal"}
    found = [(name, seen[name], value) for seen in m.settings for name, value in want.items() if seen[name] != value]
    return [f"{where}: PRAGMA {name} = {seen!r}, expected {value!r}" for name, seen, value in found]


# --------------------------------------------------------------------------- memory (scale group)
def status_kb(field_name: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def rss_kb() -> int:  # without /proc, the peak so far is the best there is
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
    return status_kb("VmRSS") or peak


async def as_async(iterable: Iterable[T]) -> AsyncIterator[T]:
    for item in iterable:
        yield item


async def stream_all(broker: Any, kwargs: Doc, awaited: bool) -> Doc:
    """Stream every message, counting and dropping each; RSS before and at the peak (VmRSS samples, VmHWM reset)."""
    first = broker.peek(QUEUE)  # the connection and its first page are part of the baseline
    if awaited:
        await first
    gc.collect()
    baseline = peak = rss_kb()
    hwm_reset = False
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
        hwm_reset = True
    started, count = time.perf_counter(), 0
    stream = broker.stream(QUEUE, **kwargs)
    async for _ in stream if awaited else as_async(stream):
        count += 1
        if count % 10_000 == 0:
            peak = max(peak, rss_kb())
    seconds = time.perf_counter() - started
    peak = max(peak, rss_kb(), (status_kb("VmHWM") or 0) if hwm_reset else 0)
    source = "VmHWM and VmRSS samples" if hwm_reset else "VmRSS samples"
    sizes = {"baseline_mb": baseline / 1024, "peak_mb": peak / 1024, "growth_mb": (peak - baseline) / 1024}
    return {"messages": count, "seconds": seconds} | sizes | {"peak_source": source}


def memory_probe(probe: str, path: str, sync: str) -> Doc:
    """In this fresh process: ``stream(q, peek=True)`` or ``stream(q, commit_interval=1000)`` (at least once)."""
    adapter, mode = probe.split()
    kwargs: Doc = {"peek": True} if mode == "peek" else {"commit_interval": BATCH}
    if adapter == "blocking":
        with Broker(path, config=sansio_config(sync)) as broker:
            return {"probe": probe} | drive(functools.partial(stream_all, broker, kwargs, False))
    from sansio_broker.adapters.asyncio import async_broker

    async def main() -> Doc:
        async with async_broker(path, pool_size=1, config=sansio_config(sync)) as broker:
            return await stream_all(broker, kwargs, True)

    return {"probe": probe} | asyncio.run(main())


def run_memory_probes(args: argparse.Namespace, directory: str, progress: Callable[[str], None]) -> list[Doc]:
    """Each probe in its own fresh Python process (same interpreter, same import path), on a private copy."""
    base = pending_base(args.cache_dir, args.scale_pending, args.body_size)
    results = []
    for probe in MEMORY_PROBES:
        path = os.path.join(directory, f"memory-{probe.replace(' ', '-')}.db")
        fsync_file(path, copy_of=base)
        try:
            command = [sys.executable, SCRIPT, "--memory-probe", probe, path, "--sync", args.sync]
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                raise RuntimeError(f"memory probe {probe!r} failed:\n{done.stderr}")
            result = json.loads(done.stdout.strip().splitlines()[-1])
            total, pending, _ = counts_and_bodies(path, 1 << 62)
            want = (args.scale_pending, 0 if probe.endswith("claim") else args.scale_pending)
            if result["messages"] != args.scale_pending or (total, pending) != want:
                raise RuntimeError(
                    f"memory probe {probe!r} streamed {result['messages']:,} messages, expected "
                    f"{args.scale_pending:,}; (total, pending) = {(total, pending)}, expected {want}"
                )
        finally:
            remove_database(path)
        results.append(result | {"target_mb": MEMORY_TARGET_MB, "met": result["growth_mb"] < MEMORY_TARGET_MB})
        text = f"{result['messages']:,} msgs in {result['seconds']:.1f} s, RSS +{result['growth_mb']:.1f} MB"
        progress(f"scale  memory  {probe:15} {text}")
    return results


# --------------------------------------------------------------------------- summary
def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of already sorted values."""
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


def floor_to(value: float, digits: int) -> str:
    """``value`` rounded down, so a ratio just under a target never prints as meeting it."""
    return f"{math.floor(value * 10**digits) / 10**digits:.{digits}f}"


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
        mine = [m for m in measurements if (m.group, m.case) == (case.group, case.case)]
        ref_rates = {m.repeat: m.rate for m in mine if m.impl == case.reference.key}
        for impl in case.impls:
            if not (runs := sorted((m for m in mine if m.impl == impl.key), key=lambda m: m.repeat)):
                continue
            rates = [m.rate for m in runs]
            ratios = [m.rate / ref_rates[m.repeat] for m in runs if m.repeat in ref_rates]
            latencies = sorted(x for m in runs for x in m.latencies_ns)
            p50, p99 = (percentile(latencies, p) / 1000 if latencies else math.nan for p in (50, 99))
            head = (case.group, case.case, impl.key, impl.label, case.reference.label, impl is case.reference)
            counts = (len(runs), case.messages, impl.callers, statistics.median(rates), rates)
            rows.append(Row(*head, *counts, statistics.median(ratios) if ratios else None, ratios, p50, p99))
    return rows


def evaluate(cases: Sequence[Case], rows: Sequence[Row]) -> list[Doc]:
    """Target verdicts: the median per-run ratio against each case's targets."""
    targets = {(c.group, c.case): c.targets for c in cases}
    verdicts = []
    for r in rows:
        if (target := targets[r.group, r.case].get(r.impl)) is None or r.ratio is None:
            continue
        low, high = min(r.ratios), max(r.ratios)
        # Noisy: the per-run ratios straddle the target and scatter widely, so the verdict is a coin toss.
        noisy = low < target <= high and high - low > NOISY_SPREAD * max(1.0, target)
        verdict = {"group": r.group, "case": r.case, "impl": r.impl, "label": r.label, "ratio": r.ratio}
        verdicts.append(verdict | {"target": target, "met": r.ratio >= target, "noisy": noisy, "runs": r.ratios})
    return verdicts


def baseline_checks(rows: Sequence[Row], sync: str) -> list[Doc]:
    """The sequential group against the ratios measured before (a drop of more than 0.1 is flagged)."""
    checks = []
    for r in rows:
        if sync != TARGETS_SYNC or r.group != "sequential" or r.impl not in BASELINE or r.ratio is None:
            continue
        before = BASELINE[r.impl][r.case]
        check = {"case": r.case, "impl": r.impl, "label": r.label, "baseline": before, "ratio": r.ratio}
        dropped = r.ratio < before - BASELINE_TOLERANCE
        checks.append(check | {"change": r.ratio - before, "dropped": dropped, "runs": r.ratios})
    return checks


def render_table(rows: Sequence[Row]) -> str:
    lines = [("group", "case", "implementation", "msgs/s", "x ref", "per-run x ref", "p50 us", "p99 us")]
    previous = None
    for r in rows:
        first, previous = (r.group, r.case) != previous, (r.group, r.case)
        ratio = "1" if r.is_reference else ("-" if r.ratio is None else floor_to(r.ratio, 3))
        runs = "" if r.is_reference else " ".join(floor_to(x, 2) for x in r.ratios)
        label = r.label + ("  (ref)" if r.is_reference else "")
        names = (r.group, r.case) if first else ("", "")
        lines.append((*names, label, f"{r.median_rate:,.0f}", ratio, runs, f"{r.p50_us:,.1f}", f"{r.p99_us:,.1f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for k, line in enumerate(lines):
        if k > 1 and line[0]:
            out.append("")  # a blank line between cases
        cells = [
            c.ljust(w) if i in (0, 1, 2, 5) else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def print_verdicts(verdicts: list[Doc], checks: list[Doc], memory: list[Doc], sync: str) -> None:
    if sync != TARGETS_SYNC:
        print(f"\nTargets: none at synchronous={sync} (targets and the sequential baseline are for {TARGETS_SYNC})")
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
        name, verdict = f"{c['case']} / {c['label']}", "DROPPED" if c["dropped"] else "ok"
        print(f"  {name:40} {floor_to(c['ratio'], 3)} (before {c['baseline']:.3f}, {c['change']:+.3f})  {verdict}")
    if memory:
        print(f"\nMemory: streaming every message in a fresh process (target: RSS growth < {MEMORY_TARGET_MB:g} MB)")
    for m in memory:
        print(
            f"  {m['probe']:15} {m['messages']:>10,} msgs  {m['seconds']:6.1f} s  RSS {m['baseline_mb']:6.1f} -> "
            f"{m['peak_mb']:6.1f} MB  (+{m['growth_mb']:.1f} MB)  {'met' if m['met'] else 'MISSED'}"
        )


# --------------------------------------------------------------------------- charts
COLORS = {"raw": "#999999", "blocking": "C1", "asyncio": "C2", "trio": "C3", "simplebroker": "C4"}
COLORS |= {"pending-small": "#999999", "pending-large": "C1", "asyncio-hop": "C7", "trio-hop": "C8"}


def bars(ax: Any, labels: list[str], heights: list[float], texts: list[str], tops: list[float], **kw: Any) -> None:
    """Bars with a text above each (at ``tops``), and slanted labels under them."""
    drawn = ax.bar(range(len(heights)), heights, **kw)
    for bar, text, top in zip(drawn, texts, tops, strict=True):
        at = (bar.get_x() + bar.get_width() / 2, top)
        ax.annotate(text, at, ha="center", va="bottom", fontsize=8, xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(heights)), labels, rotation=30, ha="right", fontsize=8)


def rates_panel(ax: Any, case: Case, rows: Sequence[Row], baseline: bool) -> None:
    """msgs/s per implementation (median, min-max whiskers), the ratio on each bar, targets as red dashes."""
    import matplotlib.ticker

    whiskers = [[r.median_rate - min(r.rates) for r in rows], [max(r.rates) - r.median_rate for r in rows]]
    notes = ["ref" if r.is_reference else ("-" if r.ratio is None else f"x{floor_to(r.ratio, 2)}") for r in rows]
    texts = [f"{r.median_rate:,.0f}/s\n{note}" for r, note in zip(rows, notes, strict=True)]
    labels, colors = [r.label.replace(", ", ",\n", 1) for r in rows], [COLORS.get(r.impl, "C5") for r in rows]
    medians, tops = [r.median_rate for r in rows], [max(r.rates) for r in rows]
    bars(ax, labels, medians, texts, tops, yerr=whiskers, capsize=4, color=colors)
    ref = next(r for r in rows if r.is_reference)  # the reference always runs
    for index, r in enumerate(rows):
        span = (index - 0.45, index + 0.45)
        if r.impl in case.targets:  # the target, as a rate against this chart's reference
            ax.hlines(ref.median_rate * case.targets[r.impl], *span, colors="red", linestyles="dashed")
        if baseline and case.group == "sequential" and r.impl in BASELINE:  # the ratio measured before
            ax.hlines(ref.median_rate * BASELINE[r.impl][case.case], *span, colors="black", linestyles="dotted")
    ax.set_title(case.case, fontsize=10)
    ax.set_ylabel("messages/s (median of the runs; whiskers: min-max)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.margins(y=0.18)


def memory_panel(ax: Any, memory: list[Doc]) -> None:
    growth = [m["growth_mb"] for m in memory]
    bars(ax, [m["probe"] for m in memory], growth, [f"+{g:.1f} MB" for g in growth], growth, color="C4")
    ax.axhline(MEMORY_TARGET_MB, color="red", linestyle="dashed", linewidth=1)
    ax.set_title(f"RSS growth streaming {memory[0]['messages']:,} messages", fontsize=10)
    ax.set_ylabel("MB")
    ax.set_ylim(0, max(MEMORY_TARGET_MB, *growth) * 1.2)


def write_charts(
    rows: list[Row], cases: list[Case], memory: list[Doc], machine: Doc, args: argparse.Namespace
) -> list[str]:
    """One PNG bar chart per group: a panel per case (and the memory probes in the scale group)."""
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[bench]'): no charts")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory, written, baseline = Path(args.charts or Path(args.json).parent), [], args.sync == TARGETS_SYNC
    directory.mkdir(parents=True, exist_ok=True)
    for group in dict.fromkeys(c.group for c in cases):
        panels: list[tuple[Case | None, list[Row]]] = []
        for case in (c for c in cases if c.group == group):
            if case_rows := [r for r in rows if (r.group, r.case) == (group, case.case)]:
                panels.append((case, case_rows))
        if group == "scale" and memory:
            panels.append((None, []))
        if not panels:
            continue
        columns = min(len(panels), 3)
        lines = math.ceil(len(panels) / columns)
        fig, axes = plt.subplots(
            lines, columns, figsize=(max(8.0, 4.6 * columns + 1), 5.2 * lines + 0.6), squeeze=False
        )
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        for ax, (shown, case_rows) in zip(axes.flat, panels, strict=False):
            if shown is None:
                memory_panel(ax, memory)
            else:
                rates_panel(ax, shown, case_rows, baseline)
        dots = "; black dots: the ratio before" if group == "sequential" and baseline else ""
        fig.suptitle(
            f"{GROUP_TITLES[group].format(pending=args.scale_pending)}\n"
            f"synchronous={args.sync}, WAL; fdatasync {machine['fdatasync_4k_median_us']} us; "
            f"x: ratio to the grey reference; red dashes: targets{dots}\n"
            f"sansio-broker {machine['sansio_broker']}, {machine['cpus_usable']} CPUs, load {machine['load_average']}",
            fontsize=10,
        )
        fig.tight_layout()
        path = directory / f"{group}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(str(path))
        log(f"wrote {path}")
    return written


# --------------------------------------------------------------------------- the machine
def mount_of(path: str) -> dict[str, str]:
    """The /proc/mounts entry holding ``path`` (longest matching mount point)."""
    real, best = os.path.realpath(path), dict[str, str]()
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = [re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), p) for p in line.split()[:4]]
            inside = len(parts) == 4 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/"))
            if inside and len(parts[1]) >= len(best.get("mount_point", "")):
                best = dict(zip(("device", "mount_point", "fstype", "options"), parts, strict=True))
    return best


def rotational(device: str) -> str:
    """The kernel's queue/rotational flag of the block device (virtual disks often say 1)."""
    base = Path("/sys/class/block") / os.path.basename(device)
    for candidate in (base / "queue" / "rotational", base.resolve().parent / "queue" / "rotational"):
        with contextlib.suppress(OSError):
            return candidate.read_text().strip()
    return "unknown"


def fsync_cost_us(directory: str, samples: int = 30) -> float:
    """Median cost of writing 4 KiB and fdatasync-ing it, in microseconds: the floor of one durable commit."""
    fd, name = tempfile.mkstemp(dir=directory, prefix="fsync-probe-")
    try:
        costs = []
        for i in range(samples):
            os.pwrite(fd, b"\0" * 4096, (i % 8) * 4096)
            start = time.perf_counter_ns()
            getattr(os, "fdatasync", os.fsync)(fd)
            costs.append(time.perf_counter_ns() - start)
        return statistics.median(costs) / 1000
    finally:
        os.close(fd)
        os.unlink(name)


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def git_revision(root: Path) -> str:
    """The commit of the checkout holding the measured library, ``(modified)`` if its tracked files changed."""
    try:
        git = ["git", "-C", str(root)]
        head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run([*git, "status", "--porcelain", "-uno"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "") if head.returncode == 0 else "unknown"


def machine_info(directory: str, packages: Sequence[str]) -> Doc:
    """The machine, the versions (``packages``: the other distributions measured), the library and the disk."""
    mount, library = mount_of(directory), Path(sansio_broker.__file__).resolve().parent
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "sansio_broker": f"{importlib.metadata.version('sansio-broker')} @ {git_revision(library.parent)}",
        "sansio_broker_path": str(library),  # the library measured: PYTHONPATH picks it
        **{name: importlib.metadata.version(name) for name in packages},
        "directory": directory,
        "filesystem": mount.get("fstype", "unknown"),
        "device": mount.get("device", "unknown"),
        "mount_point": mount.get("mount_point", "unknown"),
        "mount_options": mount.get("options", "unknown"),
        "device_rotational_flag": rotational(mount.get("device", "")),
        "fdatasync_4k_median_us": round(fsync_cost_us(directory), 1),
        # Other work on the machine at the start: a busy machine makes the ratios noisy.
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown",
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="fewer messages, no scale group: under a minute")
    mode.add_argument("--smoke", action="store_true", help="a tiny run (1 repeat, ~200 messages) to test the report")
    add = parser.add_argument
    add("--groups", nargs="+", choices=GROUPS, default=None, help="the case groups to run")
    add("--scale", action="store_true", help="add the scale group (on by default in full mode)")
    add("--sync", default="FULL", type=str.upper, choices=SYNC_MODES, help="PRAGMA synchronous (default FULL)")
    add("--hops", action="store_true", help="sequential group: add raw sqlite3 behind a bare asyncio / trio hop")
    add("--no-simplebroker", action="store_true", help="leave SimpleBroker out")
    add("--repeats", type=int, default=None, help="runs of every measurement (default 3; smoke 1)")
    add("--dir", default=None, help="scratch directory on a real disk (default: /var/tmp)")
    add("--allow-tmpfs", action="store_true", help="run even if the directory is on tmpfs")
    add("--keep", action="store_true", help="keep the scratch directory")
    add("--cache-dir", default=None, help="where the large pre-filled file is kept between runs")
    add("--json", metavar="PATH", default=str(DEFAULT_JSON), help="results as JSON (default %(default)s)")
    add("--charts", metavar="DIR", default=None, help="PNG directory (default: the JSON's directory)")
    add("--no-charts", action="store_true", help="no PNG charts")
    add("--block", type=int, default=100, help="single-caller cases: operations per turn (default 100; 0: all)")
    add("--concurrent-block", type=int, default=2000, help="concurrent cases: messages per turn (default 2000)")
    add("--tasks", type=int, default=100, help="concurrent asyncio / trio tasks (default 100)")
    add("--threads", type=int, default=8, help="concurrent threads (default 8)")
    add("--asyncio-pool", type=int, default=10, help="async_broker pool_size (default 10)")
    add("--trio-pool", type=int, default=4, help="trio_broker pool_size (default 4)")
    add("--body-size", type=int, default=64, help="message body size in characters (default 64)")
    add("--scale-pending", type=int, default=1_000_000, help="the scale group's large queue")
    add("--n-concurrent", type=int, default=None, help="messages per concurrent measurement")
    add("--n-sequential", type=int, default=None, help="operations per sequential measurement")
    add("--n-scale", type=int, default=None, help="operations per scale measurement")
    add("--bulk-batches", type=int, default=None, help=f"calls of {BATCH} per bulk measurement")
    add("--memory-probe", nargs=2, metavar=("PROBE", "PATH"), help=argparse.SUPPRESS)
    import waiting  # the waiting group (wake latency, idle CPU, get() throughput) lives in waiting.py

    waiting.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.memory_probe:
        return args
    args.mode = "short" if args.short else "smoke" if args.smoke else "full"
    overrides = {"concurrent": args.n_concurrent, "sequential": args.n_sequential, "scale": args.n_scale}
    overrides["bulk_batches"] = args.bulk_batches
    sizes = asdict(MODES[args.mode]) | {k: v for k, v in overrides.items() if v is not None}
    args.sizes, args.repeats = Sizes(**sizes), args.repeats or (1 if args.smoke else 3)
    if args.groups is None:
        extra = {"scale": args.mode == "full" or args.scale, "waiting": args.mode == "full"}  # the long groups
        args.groups = [g for g in GROUPS if extra.get(g, True)]
    elif args.scale and "scale" not in args.groups:
        args.groups.append("scale")
    if min(args.repeats, args.tasks, args.threads, args.asyncio_pool, args.trio_pool, *sizes.values()) < 1:
        parser.error("--repeats, --tasks, --threads, the pool sizes and the message counts must be positive")
    if args.body_size <= BODY_TAG_DIGITS or max(args.tasks, args.threads) > args.sizes.concurrent:
        parser.error(f"--body-size must be > {BODY_TAG_DIGITS}, --n-concurrent at least --tasks and --threads")
    usable = importlib.util.find_spec("simplebroker") is not None and args.sync != "EXTRA"
    if not (usable or args.no_simplebroker):
        log("leaving SimpleBroker out: not installed, or synchronous=EXTRA (which it refuses)")
    args.no_simplebroker = args.no_simplebroker or not usable
    args.simplebroker_version = None if args.no_simplebroker else importlib.metadata.version("simplebroker")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_probe:
        probe, path = args.memory_probe
        print(json.dumps(memory_probe(probe, path, args.sync)))
        return 0
    parent = args.dir or ("/var/tmp" if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK) else os.getcwd())
    args.cache_dir = args.cache_dir or os.path.join(parent, "sansio-bench-cache")
    os.makedirs(parent, exist_ok=True)
    directory = tempfile.mkdtemp(prefix="sansio-bench-", dir=parent)  # a real disk: never tmpfs unless allowed
    try:
        return run(args, directory)
    finally:
        if args.keep:
            log(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def run(args: argparse.Namespace, directory: str) -> int:
    packages = [p for p in ("simplebroker", "aiosqlite", "aiosqlitepool", "trio") if importlib.util.find_spec(p)]
    machine = machine_info(directory, packages)
    if machine["filesystem"] in MEMORY_FILESYSTEMS:
        message = f"{directory} is on {machine['filesystem']}: fsync costs nothing there"
        if not args.allow_tmpfs:
            log(f"refusing to run: {message}. Use --dir on a real disk (or --allow-tmpfs).")
            return 2
        log(f"WARNING: {message}")
    cases, sizes = build_cases(args), args.sizes
    print("Machine")
    for key, value in machine.items():
        print(f"  {key:24} {value}")
    print(
        f"Settings: mode={args.mode}, repeats={args.repeats}, groups={' '.join(args.groups)}\n  messages: concurrent "
        f"{sizes.concurrent:,}, bulk {sizes.bulk_batches} x {BATCH}, sequential {sizes.sequential:,}, scale "
        f"{sizes.scale:,} (pending {args.scale_pending:,} vs 1,000); body {args.body_size} chars\n  callers: "
        f"{args.tasks} tasks (asyncio pool {args.asyncio_pool}, trio pool {args.trio_pool}), {args.threads} threads; "
        f"warm-up {sizes.warmup} ops (sequential), {sizes.warmup_per_caller} per caller\n  turns: the implementations"
        f" of a case take turns within each run, {args.block or 'all'} ops (single caller), "
        f"{args.concurrent_block or 'all'} messages (concurrent), 1 batch (bulk) per turn\n  every implementation: "
        f"synchronous={args.sync}, WAL, busy_timeout {BUSY_TIMEOUT_MS}, wal_autocheckpoint {WAL_AUTOCHECKPOINT}, "
        f"cache_size -{CACHE_MB * 1024}; brokers with BROKER_AUTO_VACUUM=0, config passed explicitly (environment not "
        "read)",
        flush=True,
    )
    total = args.repeats * sum(len(c.impls) for c in cases) + (len(MEMORY_PROBES) if "scale" in args.groups else 0)
    started, done = time.perf_counter(), itertools.count(1)

    def progress(text: str) -> None:
        log(f"[{next(done):>3}/{total}] {time.perf_counter() - started:6.1f}s  {text}")

    if "scale" in args.groups:  # build (or find) the cached files before any timing
        for pending in (1000, args.scale_pending):
            pending_base(args.cache_dir, pending, args.body_size)
    measurements: list[Measurement] = []
    problems: list[str] = []
    width = max((len(impl.label) for c in cases for impl in c.impls), default=0)
    for repeat, case in itertools.product(range(args.repeats), cases):
        for m in measure_case(case, repeat, directory, args):
            measurements.append(m)
            problems.extend(check_settings(m, args.sync))
            progress(
                f"run {repeat + 1}/{args.repeats}  {case.group:17} {case.case:19} {m.label:{width}} "
                f"{m.rate:>10,.0f} msgs/s  {m.seconds:6.2f} s  p50 {m.p50_us:,.0f} us"
            )
    memory = run_memory_probes(args, directory, progress) if "scale" in args.groups else []
    waited: Doc | None = None
    if "waiting" in args.groups:
        import waiting

        waited = waiting.measure(args, directory)
    elapsed = time.perf_counter() - started

    rows = summarize(cases, measurements)
    verdicts, checks = evaluate(cases, rows), baseline_checks(rows, args.sync)
    if rows:  # none when only the waiting group runs
        print(
            f"\nResults (median of {args.repeats} runs, synchronous={args.sync}, total time {elapsed:.0f} s). msgs/s: "
            "messages moved / wall time, summed over the implementation's turns\n(each turn: first caller's start to "
            "last caller's end); x ref: median of the per-run ratios to the case's reference (ref),\nrounded down; "
            f"p50/p99: latency of one call as its caller saw it (one message, or one batch of {BATCH} in bulk), "
            "pooled over the runs.\n"
        )
        print(render_table(rows))
    print_verdicts(verdicts, checks, memory, args.sync)
    if waited:
        print(waiting.render(waited, args.sync))
    for problem in dict.fromkeys(problems):
        print(f"WARNING: {problem}")
    charts = [] if args.no_charts else write_charts(rows, cases, memory, machine, args)
    settings = {k: v for k, v in vars(args).items() if k not in ("sizes", "memory_probe")}
    document = {
        "machine": machine,
        "settings": settings | {"sizes": asdict(sizes), "batch": BATCH},
        "elapsed_seconds": elapsed,
        "cases": [asdict(c) | {"reference": c.reference.key} for c in cases],
        "rows": [asdict(r) for r in rows],
        "targets": verdicts,
        "sequential_baseline": {"ratios": BASELINE, "tolerance": BASELINE_TOLERANCE, "checks": checks},
        "memory": memory,
        "waiting": waited,
        "measurements": [{k: v for k, v in asdict(m).items() if k != "latencies_ns"} for m in measurements],
        "problems": list(dict.fromkeys(problems)),
        "charts": charts,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())

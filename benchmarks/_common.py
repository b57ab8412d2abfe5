"""Machinery shared by the benchmarks: ``bench_blocking.py``, ``bench_asyncio.py`` and ``bench_trio.py``.

The raw ``sqlite3`` reference (the storage contract's transactions with the
adapter's PRAGMAs, and nothing around them), the blocking adapter, the file
helpers (prefill, row-count and PRAGMA checks), the interleaved schedule of
timed blocks, the machine description (with the tmpfs refusal), and the
report: medians, per-run ratios to raw, p50/p99, target verdicts and JSON.

The async benchmarks also share their whole run (``run_async_benchmark``):
awaited timing, the interleaved measurement of one case, and the "added time
per operation" table. That code only awaits the implementations'
coroutines, so it runs unchanged under ``asyncio.run`` and ``trio.run``; the
event-loop-specific parts (the thread hop, the adapter) stay in each script.
See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import json
import math
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sansio_broker.adapters.blocking import Broker, Queue

T = TypeVar("T")

QUEUE = "bench"
CASES = ("write", "read")
SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")
SYNC_PRAGMA_VALUE = {"OFF": 0, "NORMAL": 1, "FULL": 2, "EXTRA": 3}
# A target verdict is flagged as noisy when its per-run ratios straddle the
# target and spread wider than this.
NOISY_SPREAD = 0.2
MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"})

# The settings every implementation gets, explicitly, so the environment
# (BROKER_* variables) cannot change what is measured. Auto vacuum is off for
# the brokers so no vacuum pass lands inside a measurement; the raw reference
# never vacuums.
BUSY_TIMEOUT_MS = 5000
WAL_AUTOCHECKPOINT = 1000
CACHE_MB = 10

# Storage contract §4.1 / §4.3, verbatim.
BEGIN_IMMEDIATE = "BEGIN IMMEDIATE"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"
ADVANCE_LAST_TS = "UPDATE meta SET value = ? WHERE key = 'last_ts' AND value < ? RETURNING value"
INSERT_MESSAGE = "INSERT INTO messages (queue, body, ts) VALUES (?, ?, ?)"
CLAIM_ONE = (
    "UPDATE messages\nSET claimed = 1\nWHERE ts IN (\n"
    "    SELECT ts FROM messages\n    WHERE queue = ? AND claimed = 0\n"
    "    ORDER BY ts ASC\n    LIMIT ?\n)\nRETURNING body, ts"
)
PHYSICAL_MASK = ~0xFFF
COUNTER_MASK = 0xFFF


class Implementation(Protocol):
    """What the shared helpers need of an implementation."""

    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    def prepare(self, path: str, sync: str) -> None: ...


ImplT = TypeVar("ImplT", bound=Implementation)


# --------------------------------------------------------------------------- implementations
@dataclass
class Handle:
    """An open implementation: the two measured calls and how to close it."""

    write: Callable[[str], object]
    read: Callable[[], object]
    close: Callable[[], None]


def sansio_config(sync: str) -> dict[str, Any]:
    return {
        "BROKER_SYNC_MODE": sync,
        "BROKER_AUTO_VACUUM": 0,
        "BROKER_BUSY_TIMEOUT": BUSY_TIMEOUT_MS,
        "BROKER_WAL_AUTOCHECKPOINT": WAL_AUTOCHECKPOINT,
        "BROKER_CACHE_MB": CACHE_MB,
    }


def open_raw_connection(path: str, sync: str) -> sqlite3.Connection:
    """A plain sqlite3 connection (autocommit) with the adapter's PRAGMAs, on an existing WAL file."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    if mode != "wal":
        conn.close()
        raise RuntimeError(f"expected a WAL database, found journal_mode={mode}")
    for pragma in (
        f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
        f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT}",
        f"PRAGMA cache_size=-{CACHE_MB * 1024}",
        f"PRAGMA synchronous={sync}",
    ):
        conn.execute(pragma)
    return conn


class RawReference:
    """Plain sqlite3 doing the adapter's transactions, with nothing around them."""

    key = "raw"
    label = "raw sqlite3"
    sync_modes = SYNC_MODES

    def prepare(self, path: str, sync: str) -> None:
        # The schema is created by our adapter, so it is identical.
        Broker(path, config=sansio_config(sync)).close()

    def open(self, path: str, sync: str) -> Handle:
        conn = open_raw_connection(path, sync)
        last = int(conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()[0])
        state = [last]
        time_ns = time.time_ns

        def write(body: str) -> int:
            conn.execute(BEGIN_IMMEDIATE)
            try:
                # Contract §3.2: hybrid ID, counter in the low 12 bits.
                last = state[0]
                now = time_ns() & PHYSICAL_MASK
                if now > last & PHYSICAL_MASK:
                    ts = now
                elif last & COUNTER_MASK < COUNTER_MASK:
                    ts = last + 1
                else:  # counter exhausted: wait for the clock to pass last's physical part
                    while (now := time_ns() & PHYSICAL_MASK) <= last & PHYSICAL_MASK:
                        time.sleep(1e-6)
                    ts = now
                if not conn.execute(ADVANCE_LAST_TS, (ts, ts)).fetchall():
                    raise RuntimeError("meta.last_ts moved: another writer is using the benchmark's file")
                conn.execute(INSERT_MESSAGE, (QUEUE, body, ts))
                conn.execute(COMMIT)
            except BaseException:
                conn.execute(ROLLBACK)
                raise
            state[0] = ts
            return ts

        def read() -> str | None:
            conn.execute(BEGIN_IMMEDIATE)
            try:
                rows = conn.execute(CLAIM_ONE, (QUEUE, 1)).fetchall()
            except BaseException:
                conn.execute(ROLLBACK)
                raise
            conn.execute(COMMIT if rows else ROLLBACK)
            return rows[0][0] if rows else None

        return Handle(write, read, conn.close)


class SansioBlocking:
    """``sansio_broker.adapters.blocking``: ``Queue.write`` / ``Queue.read``."""

    key = "sansio"
    label = "sansio-broker"
    sync_modes = SYNC_MODES

    def prepare(self, path: str, sync: str) -> None:
        Broker(path, config=sansio_config(sync)).close()

    def open(self, path: str, sync: str) -> Handle:
        broker = Broker(path, config=sansio_config(sync))
        queue = Queue(QUEUE, broker)
        return Handle(queue.write, queue.read, broker.close)


# --------------------------------------------------------------------------- file helpers
def prefill(path: str, count: int, body: str) -> None:
    """Put ``count`` pending messages in ``path`` (one transaction, same for all), then checkpoint."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        conn.execute(BEGIN_IMMEDIATE)
        last = int(conn.execute("SELECT value FROM meta WHERE key = 'last_ts'").fetchone()[0])
        first = max(time.time_ns() & PHYSICAL_MASK, last + 1)
        ids = range(first, first + count)
        if not conn.execute(ADVANCE_LAST_TS, (ids[-1], ids[-1])).fetchall():
            raise RuntimeError("could not advance meta.last_ts for the prefill")
        conn.executemany(INSERT_MESSAGE, ((QUEUE, body, ts) for ts in ids))
        conn.execute(COMMIT)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def counts(path: str) -> tuple[int, int]:
    """(total rows, pending rows) of the benchmark queue."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        total, pending = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(claimed = 0), 0) FROM messages WHERE queue = ?", (QUEUE,)
        ).fetchone()
        return int(total), int(pending)
    finally:
        conn.close()


def connection_settings(path: str) -> list[dict[str, Any]]:
    """The per-connection PRAGMAs of every open sqlite3 connection to ``path``.

    Found through the garbage collector, so the implementations' own
    connections are checked without reaching into their internals.
    """
    target = os.path.realpath(path)
    found = []
    for obj in gc.get_objects():
        if not isinstance(obj, sqlite3.Connection):
            continue
        try:
            files = [row[2] for row in obj.execute("PRAGMA database_list").fetchall() if row[1] == "main"]
            if not files or os.path.realpath(files[0]) != target:
                continue
            found.append(
                {
                    name: obj.execute(f"PRAGMA {name}").fetchone()[0]
                    for name in ("synchronous", "journal_mode", "busy_timeout", "cache_size", "wal_autocheckpoint")
                }
            )
        except sqlite3.Error:  # closed, or busy in another thread
            continue
    return found


def remove_database(path: str) -> None:
    directory, name = os.path.split(path)
    for entry in os.listdir(directory):
        if entry.startswith(name):
            os.unlink(os.path.join(directory, entry))


# --------------------------------------------------------------------------- measuring
@dataclass
class Measurement:
    case: str
    sync: str
    impl: str
    repeat: int
    n: int
    seconds: float
    rate: float
    latencies_ns: list[int] = field(repr=False)
    settings: list[dict[str, Any]]


def time_writes(write: Callable[[str], object], body: str, n: int) -> list[int]:
    """Per-operation latencies (ns) of ``n`` back-to-back writes; their sum is the elapsed time."""
    clock = time.perf_counter_ns
    latencies = [0] * n
    previous = clock()
    for i in range(n):
        write(body)
        now = clock()
        latencies[i] = now - previous
        previous = now
    return latencies


def time_reads(read: Callable[[], object], n: int) -> list[int]:
    clock = time.perf_counter_ns
    latencies = [0] * n
    previous = clock()
    for i in range(n):
        if read() is None:
            raise RuntimeError("the pre-filled queue ran dry")
        now = clock()
        latencies[i] = now - previous
        previous = now
    return latencies


def rotated(items: Sequence[T], by: int) -> list[T]:
    k = by % len(items)
    return [*items[k:], *items[:k]]


def case_paths(impls: Sequence[Implementation], case: str, sync: str, repeat: int, directory: str) -> dict[str, str]:
    """A fresh database file per implementation for one run."""
    return {impl.key: os.path.join(directory, f"{impl.key}-{case}-{sync}-{repeat}.db") for impl in impls}


def prepare_files(
    impls: Sequence[Implementation], paths: Mapping[str, str], case: str, sync: str, count: int, body: str
) -> None:
    """Create every file; for reads, pre-fill each with ``count`` messages by the same code."""
    for impl in impls:
        impl.prepare(paths[impl.key], sync)
        if case == "read":
            prefill(paths[impl.key], count, body)


def warm_up(handle: Handle, case: str, body: str, count: int) -> None:
    """Untimed operations on the handle's connection (this also opens lazily created connections)."""
    for _ in range(count):
        if case == "write":
            handle.write(body)
        elif handle.read() is None:
            raise RuntimeError("the pre-filled queue ran dry")


def time_block(handle: Handle, case: str, body: str, count: int) -> list[int]:
    if case == "write":
        return time_writes(handle.write, body, count)
    return time_reads(handle.read, count)


def schedule(impls: Sequence[ImplT], n: int, block: int, repeat: int) -> Iterator[tuple[ImplT, int]]:
    """The interleaved order of one run: rounds of ``block`` timed operations per implementation.

    Round-robin, the order rotating every round and every repeat, so disk and
    machine noise lands on all implementations alike. ``block <= 0``: one
    round of all ``n``.
    """
    block = n if block <= 0 else block
    for round_, first in enumerate(range(0, n, block)):
        count = min(block, n - first)
        for impl in rotated(impls, repeat + round_):
            yield impl, count


def finish_case(
    impls: Sequence[Implementation],
    paths: Mapping[str, str],
    case: str,
    sync: str,
    repeat: int,
    n: int,
    warmup: int,
    latencies: Mapping[str, list[int]],
    settings: Mapping[str, list[dict[str, Any]]],
) -> list[Measurement]:
    """After the handles are closed: check the row counts, delete the files, build the measurements."""
    measurements = []
    for impl in impls:
        path = paths[impl.key]
        total, pending = counts(path)
        expected = (warmup + n, warmup + n) if case == "write" else (warmup + n, 0)
        if (total, pending) != expected:
            raise RuntimeError(
                f"{impl.label} {case} {sync}: (total, pending) = {(total, pending)}, expected {expected}"
            )
        remove_database(path)
        seconds = sum(latencies[impl.key]) / 1e9
        measurements.append(
            Measurement(case, sync, impl.key, repeat, n, seconds, n / seconds, latencies[impl.key], settings[impl.key])
        )
    return measurements


def check_settings(m: Measurement) -> list[str]:
    """Problems with the PRAGMAs seen on the implementation's connections."""
    if not m.settings:
        return [f"{m.impl} {m.case} {m.sync}: no open connection found to check its PRAGMAs"]
    problems = []
    want = {
        "synchronous": SYNC_PRAGMA_VALUE[m.sync],
        "journal_mode": "wal",
        "busy_timeout": BUSY_TIMEOUT_MS,
        "cache_size": -CACHE_MB * 1024,
        "wal_autocheckpoint": WAL_AUTOCHECKPOINT,
    }
    for seen in m.settings:
        for name, value in want.items():
            if seen[name] != value:
                problems.append(f"{m.impl} {m.case} {m.sync}: PRAGMA {name} = {seen[name]!r}, expected {value!r}")
    return problems


# --------------------------------------------------------------------------- the machine
def mount_of(path: str) -> dict[str, str]:
    """The /proc/mounts entry holding ``path`` (longest matching mount point)."""
    real = os.path.realpath(path)
    best: dict[str, str] = {}
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best
    for line in lines:
        parts = line.split()
        if len(parts) < 4:
            continue
        device, mount_point, fstype, options = (_unescape_mount(p) for p in parts[:4])
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best.get("mount_point", "")):
            best = {"device": device, "mount_point": mount_point, "fstype": fstype, "options": options}
    return best


def _unescape_mount(text: str) -> str:
    for code in ("040", "011", "012", "134"):
        text = text.replace("\\" + code, chr(int(code, 8)))
    return text


def rotational(device: str) -> str:
    """The kernel's queue/rotational flag of the block device (virtual disks often say 1)."""
    name = os.path.basename(device)
    base = Path("/sys/class/block") / name
    for candidate in (base / "queue" / "rotational", base.resolve().parent / "queue" / "rotational"):
        try:
            return candidate.read_text().strip()
        except OSError:
            continue
    return "unknown"


def fsync_cost_us(directory: str, samples: int = 30) -> float:
    """Median cost of writing 4 KiB and fdatasync-ing it, in microseconds."""
    sync = getattr(os, "fdatasync", os.fsync)
    fd, name = tempfile.mkstemp(dir=directory, prefix="fsync-probe-")
    try:
        block = b"\0" * 4096
        costs = []
        for i in range(samples):
            os.pwrite(fd, block, (i % 8) * 4096)
            start = time.perf_counter_ns()
            sync(fd)
            costs.append(time.perf_counter_ns() - start)
        return statistics.median(costs) / 1000
    finally:
        os.close(fd)
        os.unlink(name)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def git_revision() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")


def machine_info(directory: str, packages: Sequence[str]) -> dict[str, Any]:
    """The machine, the versions (``packages``: the other distributions measured) and the scratch disk."""
    mount = mount_of(directory)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": affinity,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "sansio_broker": f"{importlib.metadata.version('sansio-broker')} @ {git_revision()}",
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


# --------------------------------------------------------------------------- reporting
def percentile(sorted_values: Sequence[int], p: float) -> int:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Row:
    case: str
    sync: str
    impl: str
    label: str
    runs: int
    median_rate: float
    rates: list[float]
    ratio: float | None
    ratios: list[float]
    p50_us: float
    p99_us: float


def summarize(measurements: list[Measurement], impls: Sequence[Implementation], syncs: Sequence[str]) -> list[Row]:
    rows = []
    for case in CASES:
        for sync in syncs:
            raw_by_repeat = {m.repeat: m.rate for m in measurements if (m.case, m.sync, m.impl) == (case, sync, "raw")}
            for impl in impls:
                runs = [m for m in measurements if (m.case, m.sync, m.impl) == (case, sync, impl.key)]
                if not runs:
                    continue
                rates = [m.rate for m in runs]
                ratios = [m.rate / raw_by_repeat[m.repeat] for m in runs if m.repeat in raw_by_repeat]
                latencies = sorted(x for m in runs for x in m.latencies_ns)
                rows.append(
                    Row(
                        case=case,
                        sync=sync,
                        impl=impl.key,
                        label=impl.label,
                        runs=len(runs),
                        median_rate=statistics.median(rates),
                        rates=rates,
                        ratio=statistics.median(ratios) if ratios else None,
                        ratios=ratios,
                        p50_us=percentile(latencies, 50) / 1000,
                        p99_us=percentile(latencies, 99) / 1000,
                    )
                )
    return rows


def floor_to(value: float, digits: int) -> str:
    """``value`` rounded down, so a ratio just under a target never prints as meeting it."""
    scale = 10**digits
    return f"{math.floor(value * scale) / scale:.{digits}f}"


def render_table(rows: list[Row]) -> str:
    header = ("case", "sync", "implementation", "msgs/s", "x raw", "x raw (min-max)", "p50 us", "p99 us")
    lines = [header]
    for r in rows:
        spread = f"{floor_to(min(r.ratios), 2)}-{floor_to(max(r.ratios), 2)}" if r.ratios else "-"
        lines.append(
            (
                r.case,
                r.sync,
                r.label,
                f"{r.median_rate:,.0f}",
                "-" if r.ratio is None else floor_to(r.ratio, 3),
                spread,
                f"{r.p50_us:,.1f}",
                f"{r.p99_us:,.1f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    left = {0, 1, 2}
    out = []
    for k, line in enumerate(lines):
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def evaluate_targets(rows: list[Row], impl: str, targets: Mapping[str, float]) -> list[dict[str, Any]]:
    """Verdicts for ``impl``'s rows against ``targets`` (sync mode -> minimum ratio to raw)."""
    results = []
    for r in rows:
        if r.impl != impl or r.sync not in targets or r.ratio is None:
            continue
        target = targets[r.sync]
        low, high = min(r.ratios), max(r.ratios)
        results.append(
            {
                "case": r.case,
                "sync": r.sync,
                "ratio": r.ratio,
                "target": target,
                "met": r.ratio >= target,
                # The per-run ratios straddle the target and scatter widely: the verdict is not reliable.
                "noisy": low < target <= high and high - low > NOISY_SPREAD,
                "runs": [low, high],
            }
        )
    return results


def scratch_directory(requested: str | None) -> str:
    if requested is not None:
        parent = requested
    elif os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK):
        parent = "/var/tmp"
    else:
        parent = os.getcwd()
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix="sansio-bench-", dir=parent)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- command line and report
def add_arguments(parser: argparse.ArgumentParser, impls: Sequence[str], default_sync: Sequence[str]) -> None:
    """The options every benchmark takes (``--impl`` lists ``impls``, all by default)."""
    parser.add_argument("--n", type=int, default=None, help="timed messages per measurement (default 2000; 300 quick)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of every case (default 3)")
    parser.add_argument(
        "--sync",
        nargs="+",
        default=list(default_sync),
        type=str.upper,
        choices=SYNC_MODES,
        help=f"PRAGMA synchronous modes (default {' '.join(default_sync)})",
    )
    parser.add_argument(
        "--impl",
        nargs="+",
        default=list(impls),
        choices=list(impls),
        help="implementations to run (default all; ratios need raw)",
    )
    parser.add_argument(
        "--block",
        type=int,
        default=100,
        help="timed operations per implementation per round-robin turn (default 100; 0: all n in one turn)",
    )
    parser.add_argument("--warmup", type=int, default=None, help="untimed operations before each measurement")
    parser.add_argument("--body-size", type=int, default=64, help="message body size in characters (default 64)")
    parser.add_argument("--dir", default=None, help="directory on a real disk (default: a temp dir in /var/tmp)")
    parser.add_argument("--allow-tmpfs", action="store_true", help="run even if the directory is on tmpfs")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="n=300, repeats=3, warmup=30: a smoke run")


def finish_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Fill in the defaults that depend on ``--quick`` and check the values."""
    if args.n is None:
        args.n = 300 if args.quick else 2000
    if args.warmup is None:
        args.warmup = 30 if args.quick else 100
    if args.n < 1 or args.repeats < 1 or args.warmup < 0 or args.body_size < 1:
        parser.error("--n, --repeats and --body-size must be positive, --warmup non-negative")
    args.sync = list(dict.fromkeys(args.sync))
    args.impl = list(dict.fromkeys(args.impl))
    return args


def run_in_scratch(args: argparse.Namespace, run: Callable[[argparse.Namespace, str], int]) -> int:
    """``run(args, directory)`` in a fresh scratch directory, deleted afterwards unless ``--keep``."""
    directory = scratch_directory(args.dir)
    try:
        return run(args, directory)
    finally:
        if args.keep:
            log(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)


def refuse_memory_filesystem(machine: Mapping[str, Any], directory: str, allow_tmpfs: bool) -> bool:
    """True (after saying why) if the scratch directory is in memory and that was not allowed."""
    if machine["filesystem"] in MEMORY_FILESYSTEMS:
        message = f"{directory} is on {machine['filesystem']}: fsync costs nothing there, so FULL vs NORMAL is moot"
        if not allow_tmpfs:
            log(f"refusing to run: {message}. Use --dir on a real disk (or --allow-tmpfs).")
            return True
        log(f"WARNING: {message}")
    elif machine["filesystem"] == "unknown":
        log(f"WARNING: could not tell which filesystem holds {directory}")
    return False


def print_preamble(machine: Mapping[str, Any], args: argparse.Namespace, vacuum_note: str) -> None:
    print("Machine")
    for key, value in machine.items():
        print(f"  {key:24} {value}")
    print(
        f"Settings: n={args.n} per measurement, repeats={args.repeats}, warmup={args.warmup}, "
        f"body={args.body_size} chars, sync={' '.join(args.sync)}\n"
        f"  every implementation: WAL, busy_timeout {BUSY_TIMEOUT_MS}, wal_autocheckpoint {WAL_AUTOCHECKPOINT}, "
        f"cache_size -{CACHE_MB * 1024}; config passed explicitly (environment not read)\n"
        f"  {vacuum_note}",
        flush=True,
    )


def log_measurement(m: Measurement, repeats: int, label: str, width: int = 20) -> None:
    log(f"  run {m.repeat + 1}/{repeats} {m.case:5} {m.sync:6} {label:{width}} {m.rate:10,.0f} msgs/s")


def print_results(rows: list[Row], repeats: int, n: int, elapsed: float) -> None:
    print(f"\nResults (median of {repeats} runs; x raw = median of per-run ratios to raw sqlite3;")
    print(f"p50/p99 over all {repeats * n} timed operations of the row; total time {elapsed:.1f} s)\n")
    print(render_table(rows))


def print_targets(targets: list[dict[str, Any]], title: str) -> None:
    if not targets:
        return
    print(f"\nTargets ({title}):")
    for t in targets:
        verdict = "met" if t["met"] else "MISSED"
        if t["noisy"]:
            low, high = (floor_to(x, 2) for x in t["runs"])
            verdict += f" (noisy: runs {low}-{high} straddle the target; rerun with a larger --n / --repeats)"
        print(f"  {t['case']:5} {t['sync']:6} {floor_to(t['ratio'], 3)} >= {t['target']:.2f}  {verdict}")


def print_problems(problems: list[str]) -> None:
    for problem in dict.fromkeys(problems):
        print(f"WARNING: {problem}")


def write_json(
    path: str,
    machine: Mapping[str, Any],
    args: argparse.Namespace,
    elapsed: float,
    rows: list[Row],
    targets: list[dict[str, Any]],
    measurements: list[Measurement],
    problems: list[str],
    **extra: Any,
) -> None:
    """Machine, settings, rows, targets and every measurement (without its latencies) as JSON."""
    document = {
        "machine": dict(machine),
        "settings": {k: v for k, v in vars(args).items() if k != "json"},
        "elapsed_seconds": elapsed,
        "rows": [asdict(r) for r in rows],
        "targets": targets,
        "measurements": [
            {k: v for k, v in asdict(m).items() if k != "latencies_ns"}
            | {"p50_us": percentile(sorted(m.latencies_ns), 50) / 1000}
            | {"p99_us": percentile(sorted(m.latencies_ns), 99) / 1000}
            for m in measurements
        ],
        "problems": problems,
        **extra,
    }
    Path(path).write_text(json.dumps(document, indent=2) + "\n")
    log(f"wrote {path}")


# --------------------------------------------------------------------------- async benchmarks
# Shared by bench_asyncio.py and bench_trio.py. Nothing here names an event
# loop: it awaits the implementations' coroutines and calls the synchronous
# ones inline, so the same code runs under asyncio.run and trio.run.
@dataclass
class AsyncHandle:
    """An open async implementation: the two measured awaitables and how to close it."""

    write: Callable[[str], Awaitable[object]]
    read: Callable[[], Awaitable[object]]
    close: Callable[[], Awaitable[object]]


AnyHandle = Handle | AsyncHandle


class AsyncImplementation(Implementation, Protocol):
    """An implementation of an async benchmark: ``start`` opens it inside the running event loop."""

    async def start(self, path: str, sync: str) -> AnyHandle: ...


AsyncImplT = TypeVar("AsyncImplT", bound=AsyncImplementation)


async def atime_writes(write: Callable[[str], Awaitable[object]], body: str, n: int) -> list[int]:
    """Per-operation latencies (ns) of ``n`` back-to-back awaited writes; their sum is the elapsed time."""
    clock = time.perf_counter_ns
    latencies = [0] * n
    previous = clock()
    for i in range(n):
        await write(body)
        now = clock()
        latencies[i] = now - previous
        previous = now
    return latencies


async def atime_reads(read: Callable[[], Awaitable[object]], n: int) -> list[int]:
    clock = time.perf_counter_ns
    latencies = [0] * n
    previous = clock()
    for i in range(n):
        if await read() is None:
            raise RuntimeError("the pre-filled queue ran dry")
        now = clock()
        latencies[i] = now - previous
        previous = now
    return latencies


async def awarm_up(handle: AnyHandle, case: str, body: str, count: int) -> None:
    if isinstance(handle, Handle):
        warm_up(handle, case, body, count)
        return
    for _ in range(count):
        if case == "write":
            await handle.write(body)
        elif await handle.read() is None:
            raise RuntimeError("the pre-filled queue ran dry")


async def atime_block(handle: AnyHandle, case: str, body: str, count: int) -> list[int]:
    if isinstance(handle, Handle):
        return time_block(handle, case, body, count)  # blocks the loop, which has nothing else to do
    if case == "write":
        return await atime_writes(handle.write, body, count)
    return await atime_reads(handle.read, count)


async def aclose(handle: AnyHandle) -> None:
    if isinstance(handle, Handle):
        handle.close()
    else:
        await handle.close()


async def ameasure_case(
    impls: Sequence[AsyncImplementation],
    case: str,
    sync: str,
    repeat: int,
    directory: str,
    n: int,
    warmup: int,
    block: int,
    body: str,
) -> list[Measurement]:
    """One run of ``case`` at ``sync`` for every implementation, interleaved, as ``bench_blocking`` does."""
    paths = case_paths(impls, case, sync, repeat, directory)
    prepare_files(impls, paths, case, sync, warmup + n, body)
    handles: dict[str, AnyHandle] = {}
    latencies: dict[str, list[int]] = {impl.key: [] for impl in impls}
    try:
        for impl in impls:
            handles[impl.key] = await impl.start(paths[impl.key], sync)
            await awarm_up(handles[impl.key], case, body, warmup)
        settings = {impl.key: connection_settings(paths[impl.key]) for impl in impls}
        gc.collect()
        for impl, count in schedule(impls, n, block, repeat):
            latencies[impl.key] += await atime_block(handles[impl.key], case, body, count)
    finally:
        for handle in handles.values():
            await aclose(handle)
    return finish_case(impls, paths, case, sync, repeat, n, warmup, latencies, settings)


@dataclass
class AddedCost:
    """Mean time per operation an implementation adds over a base (median over the runs)."""

    case: str
    sync: str
    impl: str
    base: str
    added_us: float
    runs_us: list[float]


def added_costs(measurements: list[Measurement], rows: list[Row], base: str, impls: Sequence[str]) -> list[AddedCost]:
    """Per row of ``impls``: median over the repeats of ``(elapsed - base elapsed) / n``, same interleaved run."""
    bases = {(m.case, m.sync, m.repeat): m.seconds for m in measurements if m.impl == base}
    costs = []
    for r in rows:
        if r.impl == base or r.impl not in impls:
            continue
        runs = [
            (m.seconds - bases[m.case, m.sync, m.repeat]) / m.n * 1e6
            for m in measurements
            if (m.case, m.sync, m.impl) == (r.case, r.sync, r.impl) and (m.case, m.sync, m.repeat) in bases
        ]
        if runs:
            costs.append(AddedCost(r.case, r.sync, r.impl, base, statistics.median(runs), runs))
    return costs


def render_added_costs(costs: list[AddedCost], labels: dict[str, str]) -> str:
    header = ("case", "sync", "implementation", "over", "added us/op", "runs (min to max)")
    lines = [header]
    for c in costs:
        lines.append(
            (
                c.case,
                c.sync,
                labels[c.impl],
                labels[c.base],
                f"{c.added_us:+,.1f}",
                f"{min(c.runs_us):+,.1f} to {max(c.runs_us):+,.1f}",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["Added time per operation (median over the runs of (elapsed - base elapsed) / n, same interleaved run)", ""]
    for k, line in enumerate(lines):
        cells = [c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


async def run_async_benchmark(
    args: argparse.Namespace,
    directory: str,
    machine: Mapping[str, Any],
    impls: Sequence[AsyncImplementation],
    *,
    target_impl: str,
    targets: Mapping[str, float],
    targets_title: str,
    vacuum_note: str,
    hop: str = "hop",
) -> int:
    """The whole run and report of an async benchmark, inside its running event loop.

    Every repeat, sync mode and case is measured by ``ameasure_case``; then the
    table, the added time per operation over ``raw`` (every implementation) and
    over ``hop`` (``target_impl`` only: the adapter beyond a bare thread hop),
    the target verdicts for ``target_impl``, the PRAGMA warnings, and the JSON.
    """
    labels = {impl.key: impl.label for impl in impls}
    width = max(len(label) for label in labels.values())
    body = "m" * args.body_size
    print_preamble(machine, args, vacuum_note)

    measurements: list[Measurement] = []
    problems: list[str] = []
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for sync in args.sync:
            for case in CASES:
                for m in await ameasure_case(
                    impls, case, sync, repeat, directory, args.n, args.warmup, args.block, body
                ):
                    measurements.append(m)
                    problems.extend(check_settings(m))
                    log_measurement(m, args.repeats, labels[m.impl], width)
    elapsed = time.perf_counter() - started

    rows = summarize(measurements, impls, args.sync)
    verdicts = evaluate_targets(rows, target_impl, targets)
    costs = added_costs(measurements, rows, "raw", list(labels))
    costs += added_costs(measurements, rows, hop, [target_impl])  # the adapter beyond the bare hop
    print_results(rows, args.repeats, args.n, elapsed)
    if costs:
        print()
        print(render_added_costs(costs, labels))
    print_targets(verdicts, targets_title)
    if "raw" in args.impl and target_impl in args.impl and not any(s in targets for s in args.sync):
        print(f"\nTargets: none at synchronous={' '.join(args.sync)} (only {' '.join(targets)})")
    print_problems(problems)
    if args.json:
        write_json(
            args.json,
            machine,
            args,
            elapsed,
            rows,
            verdicts,
            measurements,
            problems,
            added_cost_us=[vars(c) for c in costs],
        )
    return 0

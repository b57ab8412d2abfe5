"""Issue 13's PostgreSQL targets: sansio-broker against simplebroker-pg 4.7.2 on the same server, in the same run.

    python benchmarks/postgres.py                      # all three cases, a throwaway durable cluster under /var/tmp
    python benchmarks/postgres.py --cases sequential --runs 5 -n 3000
    python benchmarks/postgres.py --pg-dsn postgresql://user@host/db   # a server of your own (its settings reported)

Each figure is a ratio to simplebroker-pg doing the same work on the same server in the same run; the median of
``--runs`` (>= 3) per-run ratios, the two implementations taking turns (the order alternating every run), each run
in fresh schemas. Cases (targets from the issue):

- ``sequential``: one caller writes N messages one by one, then claims them one by one. Ours: the blocking
  ``Broker`` (``write``, ``claim``); reference: simplebroker's ``Queue(persistent=True)`` on a ``PostgresRunner``
  (``write``, ``read_one``). Messages/s over both phases. Target: ours >= 1.5x.
- ``concurrent``: 100 writer tasks and 100 reader tasks at once on our asyncio adapter
  (``async_broker(dsn, pool_size=--pool, ...)``), each writer writing its share, readers claiming one message per
  call until all N are claimed (an empty claim sleeps 1 ms). Reference: simplebroker-pg with 8 threads sharing one
  ``Queue(persistent=True)`` whose runner's pool has 8 connections, 4 writing and 4 claiming the same way.
  Target: ours >= 10x.
- ``wake``: the latency from a write's commit returning in another process (a long-lived process writing with our
  blocking ``Broker``, stamping the wall clock right after ``write`` returned) to the waiting consumer having the
  message: ours a thread in ``Queue.get()``; reference: simplebroker's ``QueueWatcher`` (consuming, its handler
  stamps the arrival) on a ``BrokerTarget("postgres", ...)``. Each waiter has a schema of its own, idles
  ``--wake-gap`` s before each sample; the samples alternate between the two. Target: p50 ours <= 1/2 of its.

Every message is checked: each body written once and claimed once (a loss or a duplicate fails the run, exit 1);
a missed target does not.

Server: without ``--pg-dsn`` a private cluster is initialised in a fresh directory under ``--data-dir``
(default ``/var/tmp``; tmpfs is refused unless ``--allow-tmpfs``) with PostgreSQL's durable defaults:
``fsync=on``, ``synchronous_commit=on``, ``full_page_writes=on`` (unlike the test fixture's throwaway cluster),
run as ``postgres`` when we are root, over TCP on 127.0.0.1, and deleted afterwards. With ``--pg-dsn``, the
server's ``fsync``, ``synchronous_commit`` and ``data_directory`` are read and printed. Both brokers run with
auto-vacuum off. Machine block, settings, table and verdicts go to stdout; progress to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import math
import os
import pwd
import queue as stdqueue
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import report

from sansio_broker import Config
from sansio_broker.adapters.blocking import Broker, Queue

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(SCRIPT).parents[1]
QUEUE = "bench"
OURS, THEIRS = "sansio-broker", "simplebroker-pg"
TARGETS = {"sequential": 1.5, "concurrent": 10.0, "wake": 0.5}  # wake: p50 ratio at most
ARRIVAL_TIMEOUT = 30.0
DURABLE_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "max_connections": "400",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "shared_buffers": "128MB",
    "timezone": "UTC",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the server
def find_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/*/bin`` holding initdb and postgres (or ``SANSIO_BROKER_PG_BINDIR``)."""
    override = os.environ.get("SANSIO_BROKER_PG_BINDIR")
    candidates = (
        [override]
        if override
        else sorted(
            (str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")),
            key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
            reverse=True,
        )
    )
    if not override and (initdb := shutil.which("initdb")):
        candidates.append(str(Path(initdb).parent))
    for candidate in candidates:
        if all(os.access(Path(candidate) / name, os.X_OK) for name in ("initdb", "postgres")):
            return Path(candidate)
    return None


@dataclass
class Cluster:
    """A private cluster on a real disk, durable settings, deleted on :meth:`stop`."""

    bindir: Path
    parent: str
    root: Path = field(init=False)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/bench"

    def _as_postgres(self) -> dict[str, Any]:
        if os.geteuid() != 0:
            return {}
        entry = pwd.getpwnam("postgres")
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def start(self) -> None:
        run_as = self._as_postgres()
        self.root = Path(tempfile.mkdtemp(prefix="sansio-bench-pg-", dir=self.parent))
        try:
            if run_as:
                os.chown(self.root, run_as["user"], run_as["group"])
            env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
            subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(self.root / "data"), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--locale=C", "--no-instructions"],
                cwd=self.root, env=env, capture_output=True, text=True, timeout=120, check=True, **run_as,
            )  # fmt: skip
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self.port = sock.getsockname()[1]
            argv = [str(self.bindir / "postgres"), "-D", str(self.root / "data")]
            settings = {**DURABLE_SETTINGS, "port": str(self.port), "unix_socket_directories": str(self.root)}
            for name, value in settings.items():
                argv += ["-c", f"{name}={value}"]
            with open(self.root / "server.log", "ab") as server_log:
                self.process = subprocess.Popen(
                    argv, cwd=self.root, env=env, stdin=subprocess.DEVNULL, stdout=server_log,
                    stderr=subprocess.STDOUT, start_new_session=True, **run_as,
                )  # fmt: skip
            deadline = time.monotonic() + 60
            while not self._ready():
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {(self.root / 'server.log').read_text()[-2000:]}")
                time.sleep(0.02)
            import psycopg

            admin = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        with contextlib.suppress(OSError):
            lines = (self.root / "data" / "postmaster.pid").read_text().splitlines()
            return len(lines) >= 8 and lines[7].strip() == "ready"
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if hasattr(self, "root"):
            shutil.rmtree(self.root, ignore_errors=True)


def server_settings(dsn: str) -> dict[str, str]:
    import psycopg

    names = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_level", "data_directory")
    out: dict[str, str] = {}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for name in names:
            try:
                row = conn.execute(f"SHOW {name}").fetchone()
                out[name] = str(row[0]) if row else "?"
            except psycopg.Error:  # data_directory needs a superuser or pg_read_all_settings
                out[name] = "(not readable)"
    return out


@contextlib.contextmanager
def fresh_schema(dsn: str, prefix: str) -> Iterator[str]:
    """A schema nobody uses yet (the broker creates it); dropped afterwards."""
    import psycopg

    name = f"{prefix}_{secrets.token_hex(5)}"
    try:
        yield name
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def our_config(schema: str) -> Config:
    return Config(backend_schema=schema, auto_vacuum=False)


@contextlib.contextmanager
def their_queue(dsn: str, schema: str, pool: int = 3) -> Iterator[Any]:
    """simplebroker's persistent Queue on a simplebroker-pg runner (auto-vacuum off, environment not read)."""
    import simplebroker
    from simplebroker_pg import PostgresRunner

    runner = PostgresRunner(dsn, schema=schema, pool_max_size=pool)
    config = simplebroker.resolve_config(override={"BROKER_AUTO_VACUUM": 0})
    queue = simplebroker.Queue(QUEUE, runner=runner, persistent=True, config=config)
    try:
        yield queue
    finally:
        queue.close()
        runner.close()


class DeliveryError(RuntimeError):
    """A message lost, doubled or unknown: fails the run."""


def pending(dsn: str, schema: str) -> int:
    """Messages of the benchmark queue still pending in ``schema``."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{schema}".messages WHERE queue = %s AND NOT claimed', (QUEUE,))
        return int(row.fetchone()[0])  # type: ignore[index]


def check_exact(what: str, written: Sequence[str], claimed: Sequence[str], left: int = 0) -> None:
    """Every body written claimed exactly once, and nothing left pending."""
    counts = Counter(claimed)
    doubled = [b for b, n in counts.items() if n > 1]
    lost = set(written) - set(counts)
    extra = set(counts) - set(written)
    if doubled or lost or extra or left or len(claimed) != len(written):
        raise DeliveryError(
            f"{what}: {len(written)} written, {len(claimed)} claimed, {left} left pending; doubled {doubled[:5]}, "
            f"lost {sorted(lost)[:5]}, unknown {sorted(extra)[:5]}"
        )


# --------------------------------------------------------------------------- (a) sequential
def sequential_ours(dsn: str, schema: str, bodies: list[str]) -> tuple[float, float, list[str]]:
    with Broker(dsn, config=our_config(schema)) as broker:
        broker.write("warm", "x")  # connection and schema set up, untimed
        broker.claim("warm")
        began = time.perf_counter()
        for body in bodies:
            broker.write(QUEUE, body)
        wrote = time.perf_counter()
        claimed = []
        while (message := broker.claim(QUEUE)) is not None:
            claimed.append(message.body)
        done = time.perf_counter()
    return wrote - began, done - wrote, claimed


def sequential_theirs(dsn: str, schema: str, bodies: list[str]) -> tuple[float, float, list[str]]:
    with their_queue(dsn, schema) as queue:
        queue.write("warm")
        queue.read_one()
        began = time.perf_counter()
        for body in bodies:
            queue.write(body)
        wrote = time.perf_counter()
        claimed = []
        while (body := queue.read_one()) is not None:
            claimed.append(body)
        done = time.perf_counter()
    return wrote - began, done - wrote, claimed


# --------------------------------------------------------------------------- (b) concurrent
async def _concurrent_ours_async(
    dsn: str, schema: str, bodies: list[str], writers: int, readers: int, pool: int
) -> tuple[float, list[str]]:
    from sansio_broker.adapters.asyncio import async_broker

    async with async_broker(dsn, pool_size=pool, config=our_config(schema)) as broker:
        await broker.write("warm", "x")
        await broker.claim("warm")
        claimed: list[str] = []
        total = len(bodies)

        async def write(share: list[str]) -> None:
            for body in share:
                await broker.write(QUEUE, body)

        async def read() -> None:
            while len(claimed) < total:
                message = await broker.claim(QUEUE)
                if message is None:
                    await asyncio.sleep(0.001)
                else:
                    claimed.append(message.body)

        began = time.perf_counter()
        await asyncio.gather(*(write(bodies[i::writers]) for i in range(writers)), *(read() for _ in range(readers)))
        return time.perf_counter() - began, claimed


def concurrent_ours(dsn: str, schema: str, bodies: list[str], args: argparse.Namespace) -> tuple[float, list[str]]:
    return asyncio.run(_concurrent_ours_async(dsn, schema, bodies, args.writers, args.readers, args.pool))


def concurrent_theirs(dsn: str, schema: str, bodies: list[str], args: argparse.Namespace) -> tuple[float, list[str]]:
    threads = args.threads
    writers = threads // 2
    readers = threads - writers
    with their_queue(dsn, schema, pool=threads) as queue:
        queue.write("warm")
        queue.read_one()
        claimed: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(threads + 1)
        errors: list[BaseException] = []
        total = len(bodies)

        def write(share: list[str]) -> None:
            try:
                start.wait()
                for body in share:
                    queue.write(body)
            except BaseException as exc:
                errors.append(exc)

        def read() -> None:
            try:
                start.wait()
                while len(claimed) < total and not errors:
                    body = queue.read_one()
                    if body is None:
                        time.sleep(0.001)
                    else:
                        with lock:
                            claimed.append(body)
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=write, args=(bodies[i::writers],)) for i in range(writers)]
        workers += [threading.Thread(target=read) for _ in range(readers)]
        for t in workers:
            t.start()
        start.wait()
        began = time.perf_counter()
        for t in workers:
            t.join()
        elapsed = time.perf_counter() - began
        if errors:
            raise errors[0]
    return elapsed, claimed


# --------------------------------------------------------------------------- (c) wake latency
class WriterProcess:
    """A process writing with our blocking Broker: ``schema<TAB>body`` in, the wall clock (ns) after the write out."""

    def __init__(self, dsn: str) -> None:
        env = os.environ | {
            "PYTHONPATH": os.pathsep.join(p for p in (str(Path(SCRIPT).parents[1]), os.environ.get("PYTHONPATH")) if p)
        }
        self.process = subprocess.Popen(
            [sys.executable, SCRIPT, "--writer", dsn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )

    def write(self, schema: str, body: str) -> int:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{schema}\t{body}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the writer process ended (exit code {self.process.wait()})")
        return int(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def writer_main(dsn: str, lines: IO[str]) -> None:
    brokers: dict[str, Broker] = {}
    try:
        for line in lines:
            schema, body = line.rstrip("\n").split("\t", 1)
            if schema not in brokers:
                brokers[schema] = Broker(dsn, config=our_config(schema))
            brokers[schema].write(QUEUE, body)
            print(time.time_ns(), flush=True)
    finally:
        for broker in brokers.values():
            broker.close()


@dataclass
class Waiter:
    name: str
    schema: str
    arrivals: stdqueue.SimpleQueue[tuple[str, int]]


def open_our_waiter(dsn: str, schema: str, stack: contextlib.ExitStack) -> Waiter:
    from sansio_broker import BrokerClosedError

    arrivals: stdqueue.SimpleQueue[tuple[str, int]] = stdqueue.SimpleQueue()
    broker = Broker(dsn, config=our_config(schema))
    queue = Queue(QUEUE, broker)

    def loop() -> None:
        with contextlib.suppress(BrokerClosedError):
            while True:
                body = queue.get()
                arrivals.put((body, time.time_ns()))

    thread = threading.Thread(target=loop, daemon=True)
    broker.write("warm", "x")
    thread.start()
    stack.callback(thread.join, 10)
    stack.callback(broker.close)
    return Waiter(OURS, schema, arrivals)


def open_their_waiter(dsn: str, schema: str, stack: contextlib.ExitStack) -> Waiter:
    import simplebroker
    from simplebroker._targets import BrokerTarget  # the public dataclass, at its private module path
    from simplebroker.watcher import QueueWatcher

    arrivals: stdqueue.SimpleQueue[tuple[str, int]] = stdqueue.SimpleQueue()
    with their_queue(dsn, schema) as queue:
        queue.write("warm")  # the schema exists before the watcher opens it
        queue.read_one()

    def handle(body: str, _id: int) -> None:
        arrivals.put((body, time.time_ns()))

    config = simplebroker.resolve_config(override={"BROKER_AUTO_VACUUM": 0})
    watcher = QueueWatcher(QUEUE, handle, db=BrokerTarget("postgres", dsn, {"schema": schema}), config=config)
    watcher.run_in_thread()
    stack.callback(watcher.stop)
    return Waiter(THEIRS, schema, arrivals)


def wake_latencies(dsn: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Samples (ms) per implementation, alternating; every message must arrive once."""
    samples: dict[str, list[float]] = {OURS: [], THEIRS: []}
    with contextlib.ExitStack() as stack:
        ours_schema = stack.enter_context(fresh_schema(dsn, "bw_ours"))
        theirs_schema = stack.enter_context(fresh_schema(dsn, "bw_sbpg"))
        writer = WriterProcess(dsn)
        stack.callback(writer.close)
        waiters = [open_our_waiter(dsn, ours_schema, stack), open_their_waiter(dsn, theirs_schema, stack)]
        for waiter in waiters:  # each waiter and the writer's brokers warmed up, untimed
            writer.write(waiter.schema, f"warm-{waiter.name}")
            waiter.arrivals.get(timeout=ARRIVAL_TIMEOUT)
        for i in range(args.wake_samples):
            for waiter in waiters if i % 2 == 0 else waiters[::-1]:
                time.sleep(args.wake_gap)
                body = f"s{i}"
                stamp = writer.write(waiter.schema, body)
                got, arrived = waiter.arrivals.get(timeout=ARRIVAL_TIMEOUT)
                if got != body:
                    raise DeliveryError(f"{waiter.name}: expected {body!r}, got {got!r}")
                samples[waiter.name].append((arrived - stamp) / 1e6)
        time.sleep(0.2)
        for waiter in waiters:
            if not waiter.arrivals.empty():
                raise DeliveryError(f"{waiter.name}: a message arrived twice")
    return samples


# --------------------------------------------------------------------------- running and reporting
def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]  # nearest rank


def run_sequential(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.n
    rates: dict[str, list[float]] = {OURS: [], THEIRS: []}
    phases: dict[str, list[tuple[float, float]]] = {OURS: [], THEIRS: []}
    ratios = []
    for run in range(args.runs):
        order = [(OURS, sequential_ours), (THEIRS, sequential_theirs)]
        rate_of: dict[str, float] = {}
        for name, function in order if run % 2 == 0 else order[::-1]:
            bodies = [f"{name[0]}{run}-{i}" for i in range(n)]
            with fresh_schema(dsn, "bs") as schema:
                write_s, read_s, claimed = function(dsn, schema, bodies)
                left = pending(dsn, schema)
            check_exact(f"sequential {name} run {run}", bodies, claimed, left)
            rate_of[name] = 2 * n / (write_s + read_s)
            rates[name].append(rate_of[name])
            phases[name].append((n / write_s, n / read_s))
            log(
                f"  sequential run {run}: {name} {rate_of[name]:,.0f} msg/s "
                f"(write {n / write_s:,.0f}, claim {n / read_s:,.0f})"
            )
        ratios.append(rate_of[OURS] / rate_of[THEIRS])
    return {"rates": rates, "phases": phases, "ratios": ratios}


def run_concurrent(dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.n_concurrent
    rates: dict[str, list[float]] = {OURS: [], THEIRS: []}
    ratios = []
    for run in range(args.runs):
        order = [(OURS, concurrent_ours), (THEIRS, concurrent_theirs)]
        rate_of: dict[str, float] = {}
        for name, function in order if run % 2 == 0 else order[::-1]:
            bodies = [f"{name[0]}{run}-{i}" for i in range(n)]
            with fresh_schema(dsn, "bc") as schema:
                elapsed, claimed = function(dsn, schema, bodies, args)
                left = pending(dsn, schema)
            check_exact(f"concurrent {name} run {run}", bodies, claimed, left)
            rate_of[name] = 2 * n / elapsed
            rates[name].append(rate_of[name])
            log(f"  concurrent run {run}: {name} {rate_of[name]:,.0f} msg/s")
        ratios.append(rate_of[OURS] / rate_of[THEIRS])
    return {"rates": rates, "ratios": ratios}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--cases", nargs="+", choices=list(TARGETS), default=list(TARGETS))
    add("--runs", type=int, default=3, help="runs per case (>= 3); the verdict is the median of per-run ratios")
    add("-n", type=int, default=2000, help="messages per run, sequential case")
    add("--n-concurrent", type=int, default=5000, help="messages per run, concurrent case")
    add("--writers", type=int, default=100, help="our asyncio writer tasks")
    add("--readers", type=int, default=100, help="our asyncio reader tasks")
    add("--pool", type=int, default=10, help="our asyncio pool_size")
    add("--threads", type=int, default=8, help="simplebroker-pg threads (half writing, half claiming)")
    add("--wake-samples", type=int, default=30)
    add("--wake-gap", type=float, default=1.0, help="seconds a waiter idles before each sample")
    add("--pg-dsn", help="use this server instead of starting a private durable cluster")
    add("--data-dir", default="/var/tmp", help="where the private cluster's directory is made (a real disk)")
    add("--allow-tmpfs", action="store_true")
    add("--writer", metavar="DSN", help=argparse.SUPPRESS)  # the wake case's writer process
    args = parser.parse_args(argv)
    if args.runs < 3 and not args.writer:
        parser.error("--runs must be at least 3")
    return args


def verdict(ok: bool, ratios: Sequence[float], target: float, at_most: bool = False) -> str:
    spread = max(ratios) - min(ratios)
    straddles = min(ratios) < target < max(ratios)
    noisy = (
        f" (noisy: per-run {', '.join(f'{r:.2f}' for r in ratios)})"
        if straddles and spread > 0.2 * max(1, target)
        else ""
    )
    return ("MET" if ok else "MISSED") + noisy


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.writer:
        writer_main(args.writer, sys.stdin)
        return 0
    cluster: Cluster | None = None
    if args.pg_dsn:
        dsn = args.pg_dsn
    else:
        mount = report.mount_of(args.data_dir)
        if mount.get("fstype") in report.MEMORY_FILESYSTEMS and not args.allow_tmpfs:
            log(f"refusing to run: {args.data_dir} is on {mount.get('fstype')}; use --data-dir on a real disk")
            return 2
        bindir = find_bindir()
        if bindir is None:
            log("no PostgreSQL server binaries found: pass --pg-dsn or set SANSIO_BROKER_PG_BINDIR")
            return 2
        cluster = Cluster(bindir, args.data_dir)
        log(f"starting a durable cluster under {args.data_dir} ({bindir})")
        cluster.start()
        dsn = cluster.dsn
    try:
        return run(dsn, args, cluster)
    finally:
        if cluster is not None:
            cluster.stop()


def run(dsn: str, args: argparse.Namespace, cluster: Cluster | None) -> int:
    settings = server_settings(dsn)
    data_dir = str(cluster.root / "data") if cluster else settings.get("data_directory", "?")
    machine = {
        "cpu": report.cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": sys.version.split()[0],
        "sansio_broker": f"{importlib.metadata.version('sansio-broker')} @ {report.git_revision(ROOT)}",
        **{p: importlib.metadata.version(p) for p in ("simplebroker", "simplebroker-pg", "psycopg", "psycopg-pool")},
        "server": "private cluster (deleted afterwards)" if cluster else "--pg-dsn",
        **{f"pg_{k}": v for k, v in settings.items()},
    }
    if os.path.isdir(data_dir):
        mount = report.mount_of(data_dir)
        machine |= {
            "data_filesystem": mount.get("fstype", "?"),
            "data_device": mount.get("device", "?"),
            "data_mount_options": mount.get("options", "?"),
            "fdatasync_4k_median_us": round(report.fsync_cost_us(os.path.dirname(data_dir)), 1),
        }
    print("Machine")
    for key, value in machine.items():
        print(f"  {key:24} {value}")
    print(
        f"Settings: runs={args.runs}; sequential n={args.n}; concurrent n={args.n_concurrent}, ours {args.writers} "
        f"writer + {args.readers} reader tasks (pool {args.pool}), simplebroker-pg {args.threads} threads "
        f"(pool {args.threads}); wake {args.wake_samples} samples per waiter, gap {args.wake_gap} s; auto-vacuum off",
        flush=True,
    )
    rows: list[tuple[str, str, str, str, str]] = []
    failed = False
    for case in args.cases:
        log(f"case {case}")
        try:
            if case == "sequential":
                result = run_sequential(dsn, args)
            elif case == "concurrent":
                result = run_concurrent(dsn, args)
            else:
                samples = wake_latencies(dsn, args)
                p50 = {k: statistics.median(v) for k, v in samples.items()}
                p99 = {k: percentile(v, 99) for k, v in samples.items()}
                ratio = p50[OURS] / p50[THEIRS]
                rows.append((
                    "wake p50 ms (p99)",
                    f"{p50[OURS]:.2f} ({p99[OURS]:.2f})",
                    f"{p50[THEIRS]:.2f} ({p99[THEIRS]:.2f})",
                    f"{ratio:.3f} (target <= {TARGETS['wake']})",
                    "MET" if ratio <= TARGETS["wake"] else "MISSED",
                ))  # fmt: skip
                continue
        except Exception as exc:  # a case that cannot run (e.g. an adapter without PostgreSQL yet): said, not hidden
            log(f"case {case} FAILED: {type(exc).__name__}: {exc}")
            rows.append((case, "error", "", f"{type(exc).__name__}: {str(exc)[:80]}", "NOT RUN"))
            failed = failed or isinstance(exc, DeliveryError)
            continue
        ratios = result["ratios"]
        median = statistics.median(ratios)
        ours = statistics.median(result["rates"][OURS])
        theirs = statistics.median(result["rates"][THEIRS])
        target = TARGETS[case]
        rows.append((
            f"{case} msg/s",
            f"{ours:,.0f}",
            f"{theirs:,.0f}",
            f"{median:.2f}x (per run {', '.join(f'{r:.2f}' for r in ratios)}; target >= {target})",
            verdict(median >= target, ratios, target),
        ))  # fmt: skip
        if case == "sequential":
            for label, index in (("  write only", 0), ("  claim only", 1)):
                o = statistics.median(p[index] for p in result["phases"][OURS])
                t = statistics.median(p[index] for p in result["phases"][THEIRS])
                per_run = [
                    a[index] / b[index] for a, b in zip(*(result["phases"][k] for k in (OURS, THEIRS)), strict=True)
                ]
                rows.append((label + " msg/s", f"{o:,.0f}", f"{t:,.0f}", f"{statistics.median(per_run):.2f}x", ""))
    widths = [max(len(r[i]) for r in [("case", OURS, THEIRS, "ratio", "verdict"), *rows]) for i in range(5)]
    print()
    for row in [("case", OURS, THEIRS, "ratio", "verdict"), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The report's ``waiting`` group (issue 11): how fast a waiting ``get`` wakes, what waiting costs idle, and throughput.

``python benchmarks/report.py --groups waiting`` (in a full run by default), or ``python benchmarks/waiting.py
[report options]``, the same. Each figure has a reference measured in the same run:

- **wake latency**: a write's commit returned -> a waiting ``get()`` returned, the waiter idle ``--wake-gap`` s (1)
  before each sample. Writers: this process; a sansio-broker process; a SimpleBroker process (``Queue.write`` on a
  fresh ``Queue`` per write, what ``broker write`` runs). Each writer stamps the wall clock right after its write
  returned (clocks of one machine's processes agree). Reference: SimpleBroker's ``QueueWatcher`` (consuming; its
  handler stamps the arrival) woken by the same kind of write. Every waiter has a file of its own; the samples take
  turns, rotating, so a waiter idles while the others are sampled.
- **idle cost**: the CPU time (``getrusage``) of a fresh process holding one broker and ``--waiters`` waiting
  consumers over ``--idle-seconds`` (10) without traffic, in % of one core. Reference: one ``QueueWatcher``.
- **throughput**: ``--waiters`` consumers in ``get()`` fed by as many producers (messages/s, first write to last
  arrival), against the same adapter writing the same messages with those producers and then claiming them
  (``read()``) with as many callers: the current concurrent write and claim rates, combined
  (``1 / (1/write + 1/claim)``, the time of both). Turns alternate as in the report's other groups.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import functools
import itertools
import json
import math
import os
import queue as stdqueue
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

import report

import sansio_broker
from sansio_broker import BrokerClosedError
from sansio_broker.adapters.blocking import Broker, Queue

T = TypeVar("T")
Doc = dict[str, Any]
SCRIPT = str(Path(__file__).resolve())
RUNTIMES = ("blocking", "asyncio", "trio")
SB = "simplebroker"
STOP = "stop"  # a consumer of the throughput case ends on it
ARRIVAL_TIMEOUT = 30.0  # seconds a woken waiter may take before the sample counts as lost (a failure, not a figure)
WRITERS = {  # who writes a wake-latency sample: key -> label
    "local": "same process",
    "sansio": "other process, sansio-broker",
    SB: "other process, SimpleBroker (broker write)",
}
LATENCY_RATIO_TARGET = 0.2  # p50 at most 1/5 of SimpleBroker's watcher's
IDLE_TARGET_PERCENT = 1.0  # of one core
THROUGHPUT_TARGET = 1.0  # no worse than writing then claiming the same messages


@dataclass(frozen=True)
class WaitSizes:
    samples: int  # wake-latency samples per writer and waiter
    gap: float  # seconds a waiter idles before each sample
    idle_seconds: float  # the idle-CPU window
    settle: float  # seconds between the waiters starting and the idle window (their start-up burst left out)


WAIT_MODES = {
    "full": WaitSizes(samples=30, gap=1.0, idle_seconds=10.0, settle=1.0),
    "short": WaitSizes(samples=10, gap=1.0, idle_seconds=5.0, settle=1.0),
    "smoke": WaitSizes(samples=2, gap=0.05, idle_seconds=0.5, settle=0.2),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The group's options, on the report's parser."""
    add = parser.add_argument
    add("--wake-samples", type=int, default=None, help="waiting: wake samples per writer and waiter (30; short 10)")
    add("--wake-gap", type=float, default=None, help="waiting: seconds a waiter idles before each sample (1.0)")
    add("--idle-seconds", type=float, default=None, help="waiting: the idle-CPU window in seconds (10; short 5)")
    add("--waiters", type=int, default=100, help="waiting: consumers (idle, throughput), and producers (100)")


def wait_sizes(args: argparse.Namespace) -> WaitSizes:
    chosen = {"samples": args.wake_samples, "gap": args.wake_gap, "idle_seconds": args.idle_seconds}
    sizes = WaitSizes(**asdict(WAIT_MODES[args.mode]) | {k: v for k, v in chosen.items() if v is not None})
    if sizes.samples < 1 or sizes.gap < 0 or sizes.idle_seconds <= 0 or args.waiters < 1:
        raise SystemExit("--wake-samples and --waiters must be positive, --wake-gap >= 0, --idle-seconds > 0")
    if args.sizes.concurrent < args.waiters:
        raise SystemExit("--n-concurrent must be at least --waiters")
    return sizes


# --------------------------------------------------------------------------- a broker in its runtime
async def settle(value: Any, awaited: bool) -> Any:
    """A call's result: awaited under asyncio and trio; a blocking call's, as is (its coroutine never suspends)."""
    return await value if awaited else value


class Opened:
    """One broker open on a file: blocking inline, asyncio or trio in an event loop on a thread of its own.

    Callers are coroutine functions written once (``settle`` each call): the async runtimes run them in the loop,
    blocking ones run them on threads through ``report.drive``.
    """

    def __init__(self, runtime: str, path: str, sync: str, pool: int) -> None:
        self.awaited, self.stack = runtime != "blocking", contextlib.ExitStack()
        self.portal: Any = None
        self.threads: list[threading.Thread] = []
        self.tasks: list[Future[Any]] = []
        config = report.sansio_config(sync)
        try:
            if not self.awaited:
                self.broker: Any = self.stack.enter_context(Broker(path, config=config))
                self.queue: Any = Queue(report.QUEUE, self.broker)
                return
            from anyio.from_thread import start_blocking_portal

            self.portal = self.stack.enter_context(start_blocking_portal(runtime))
            if runtime == "asyncio":
                from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

                self.broker = self.stack.enter_context(
                    self.portal.wrap_async_context_manager(async_broker(path, pool_size=pool, config=config))
                )
                self.queue = AsyncQueue(report.QUEUE, self.broker)
            else:
                from sansio_broker.adapters.trio import TrioQueue, trio_broker

                self.broker = self.stack.enter_context(
                    self.portal.wrap_async_context_manager(trio_broker(path, pool_size=pool, config=config))
                )
                self.queue = TrioQueue(report.QUEUE, self.broker)
        except BaseException:
            self.stack.close()
            raise

    def call(self, function: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Run one caller to its end, here (blocking) or in the event loop."""
        return self.portal.call(function) if self.awaited else report.drive(function)

    def start(self, function: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        """Run a caller in the background until it ends, or the broker closes (a task, or a thread of its own)."""
        if self.awaited:
            self.tasks.append(self.portal.start_task_soon(function))
        else:
            thread = threading.Thread(target=report.drive, args=(function,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def close(self) -> None:
        """Close the broker, which wakes every waiter (``get`` raises ``BrokerClosedError``); background callers end."""
        try:
            for task in self.tasks:
                task.cancel()
            if not self.awaited:
                self.broker.close()
            for thread in self.threads:
                thread.join(timeout=60)
            if any(thread.is_alive() for thread in self.threads):
                raise RuntimeError("a waiting thread did not end when its broker closed")
        finally:
            self.stack.close()


async def wait_loop(queue: Any, awaited: bool, arrivals: stdqueue.SimpleQueue[tuple[str, int]]) -> None:
    """A waiting consumer: each body ``get`` returns, with the wall clock when it returned; ends when closed."""
    with contextlib.suppress(BrokerClosedError):
        while True:
            body = await settle(queue.get(), awaited)
            arrivals.put((body, time.time_ns()))


def library_env() -> dict[str, str]:
    """The environment of a helper process: the library measured here first on its import path."""
    library = str(Path(sansio_broker.__file__).resolve().parent.parent)
    return os.environ | {"PYTHONPATH": os.pathsep.join(p for p in (library, os.environ.get("PYTHONPATH")) if p)}


def file_for(impl: str, directory: str, name: str, sync: str) -> str:
    path = os.path.join(directory, f"waiting-{name}-{impl}.db")
    report.create_file(path, impl if impl == SB else "blocking", sync)
    return path


def check_all_claimed(path: str, what: str, written: int) -> None:
    """Every message written to ``path`` was claimed, once (the claims themselves are checked by the caller)."""
    total, pending, _ = report.counts_and_bodies(path, 0)
    if (total, pending) != (written, 0):
        raise RuntimeError(f"{what}: (total, pending) = {(total, pending)}, expected ({written}, 0): {report.DRY}")


# --------------------------------------------------------------------------- wake latency
@dataclass
class Waiter:
    """A waiting consumer on a file of its own; its arrivals (body, wall clock ns) come out of ``arrivals``."""

    impl: str
    label: str
    path: str
    arrivals: stdqueue.SimpleQueue[tuple[str, int]]
    write_here: Callable[[str], int]  # a write from this process: the wall clock (ns) right after it returned


def open_waiter(impl: str, path: str, args: argparse.Namespace, stack: contextlib.ExitStack) -> Waiter:
    arrivals: stdqueue.SimpleQueue[tuple[str, int]] = stdqueue.SimpleQueue()
    if impl == SB:
        import simplebroker
        from simplebroker.watcher import QueueWatcher

        config = report.simplebroker_config(args.sync)
        writer = simplebroker.Queue(report.QUEUE, db_path=path, persistent=True, config=config)
        stack.callback(writer.close)

        def handle(body: str, _id: int) -> None:
            arrivals.put((body, time.time_ns()))

        watcher = QueueWatcher(report.QUEUE, handle, db=path, config=config)
        watcher.run_in_thread()
        stack.callback(watcher.stop)

        def write_sb(body: str) -> int:
            writer.write(body)
            return time.time_ns()

        label = f"SimpleBroker {args.simplebroker_version} QueueWatcher"
        return Waiter(impl, label, path, arrivals, write_sb)
    opened = stack.enter_context(contextlib.closing(Opened(impl, path, args.sync, pool_size(impl, args))))
    opened.start(functools.partial(wait_loop, opened.queue, opened.awaited, arrivals))

    async def write_stamped(body: str) -> int:
        await settle(opened.queue.write(body), opened.awaited)
        return time.time_ns()

    def write_ours(body: str) -> int:  # the waiter's own broker: in asyncio and trio, a task of the same loop
        return opened.call(functools.partial(write_stamped, body))

    label = {"blocking": "blocking Queue.get, a thread", "asyncio": "asyncio AsyncQueue.get, a task"}.get(
        impl, "trio TrioQueue.get, a task"
    )
    return Waiter(impl, label, path, arrivals, write_ours)


def pool_size(runtime: str, args: argparse.Namespace) -> int:
    return int(args.asyncio_pool if runtime == "asyncio" else args.trio_pool)


class WriterProcess:
    """A writer in a process of its own: ``path<TAB>body`` in; the wall clock (ns) once the write returned, out."""

    def __init__(self, kind: str, sync: str) -> None:
        command = [sys.executable, SCRIPT, "--writer", kind, "--sync", sync]
        self.kind, self.process = (
            kind,
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=library_env()),
        )

    def write(self, path: str, body: str) -> int:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        stdin.write(f"{path}\t{body}\n")
        stdin.flush()
        line = stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.kind} writer process ended (exit code {self.process.wait()})")
        return int(line)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


def writer_main(kind: str, sync: str, lines: IO[str]) -> None:
    """The writer process: one write per line, the time printed once it returned."""
    brokers: dict[str, Broker] = {}
    try:
        for line in lines:
            path, body = line.rstrip("\n").split("\t", 1)
            if kind == "sansio":
                if path not in brokers:
                    brokers[path] = Broker(path, config=report.sansio_config(sync))
                brokers[path].write(report.QUEUE, body)
                committed = time.time_ns()
            else:  # as ``broker write`` does: a Queue opened, written and closed (its closing is not timed)
                import simplebroker

                with simplebroker.Queue(report.QUEUE, db_path=path, config=report.simplebroker_config(sync)) as sb:
                    sb.write(body)
                    committed = time.time_ns()
            print(committed, flush=True)
    finally:
        for broker in brokers.values():
            broker.close()


@dataclass
class LatencyCell:
    writer: str
    writer_label: str
    impl: str
    label: str
    is_reference: bool
    samples_ns: list[int] = field(repr=False)
    p50_us: float = 0.0
    p99_us: float = 0.0
    max_us: float = 0.0
    ratio_p50: float | None = None  # p50 / the reference's p50


def measure_latency(args: argparse.Namespace, directory: str, sizes: WaitSizes) -> list[LatencyCell]:
    """Every waiter is sampled by every writer in turns; a waiter idles ``sizes.gap`` before each of its samples."""
    impls = ([] if args.no_simplebroker else [SB]) + list(RUNTIMES)
    writers = [w for w in WRITERS if w != SB or not args.no_simplebroker]
    samples: dict[tuple[str, str], list[int]] = {(w, i): [] for w in writers for i in impls}
    written = Counter[str]()
    with contextlib.ExitStack() as stack:
        waiters = {impl: open_waiter(impl, file_for(impl, directory, "wake", args.sync), args, stack) for impl in impls}
        processes = {w: stack.enter_context(contextlib.closing(WriterProcess(w, args.sync))) for w in writers[1:]}

        def sample(writer: str, impl: str, body: str) -> int:
            waiter = waiters[impl]
            local = writer == "local"
            committed = waiter.write_here(body) if local else processes[writer].write(waiter.path, body)
            written[impl] += 1
            try:
                got, arrived = waiter.arrivals.get(timeout=ARRIVAL_TIMEOUT)
            except stdqueue.Empty:
                raise RuntimeError(
                    f"{waiter.label}: not woken {ARRIVAL_TIMEOUT:g} s after a write from {writer}"
                ) from None
            if got != body:
                raise RuntimeError(f"{waiter.label}: got {got!r}, expected {body!r}: {report.DRY}")
            return arrived - committed

        for writer, impl in itertools.product(writers, impls):  # warm-up: connections opened, untimed
            sample(writer, impl, f"warm-{writer}-{impl}")
        last = dict.fromkeys(impls, time.monotonic())
        started = time.perf_counter()
        for r in range(sizes.samples):
            for k, writer in enumerate(report.rotated(writers, r)):
                for impl in report.rotated(impls, r + k):
                    if (idle := last[impl] + sizes.gap - time.monotonic()) > 0:
                        time.sleep(idle)
                    samples[writer, impl].append(sample(writer, impl, f"s-{writer}-{impl}-{r}"))
                    last[impl] = time.monotonic()
            report.log(f"waiting  wake latency  round {r + 1}/{sizes.samples}  {time.perf_counter() - started:6.1f} s")
        labels = {impl: waiter.label for impl, waiter in waiters.items()}
    for impl in impls:
        check_all_claimed(os.path.join(directory, f"waiting-wake-{impl}.db"), f"wake latency / {impl}", written[impl])
    cells = []
    for writer in writers:
        ref_p50 = None
        for impl in impls:
            ordered = sorted(samples[writer, impl])
            p50, p99, top = (report.percentile(ordered, p) / 1000 for p in (50, 99, 100))
            if impl == impls[0]:
                ref_p50 = p50
            ratio = p50 / ref_p50 if ref_p50 and impl != SB and impls[0] == SB else None
            cells.append(
                LatencyCell(writer, WRITERS[writer], impl, labels[impl], impl == SB, ordered, p50, p99, top, ratio)
            )
    return cells


# --------------------------------------------------------------------------- idle cost
def idle_probe_main(impl: str, path: str, sync: str, waiters: int, seconds: float, settle_s: float, pool: int) -> Doc:
    """In this fresh process: ``waiters`` consumers waiting (or one QueueWatcher) with no traffic; the CPU used."""
    arrivals: stdqueue.SimpleQueue[tuple[str, int]] = stdqueue.SimpleQueue()
    with contextlib.ExitStack() as stack:
        if impl == SB:
            from simplebroker.watcher import QueueWatcher

            def handle(body: str, _id: int) -> None:
                arrivals.put((body, time.time_ns()))

            watcher = QueueWatcher(report.QUEUE, handle, db=path, config=report.simplebroker_config(sync))
            watcher.run_in_thread()
            stack.callback(watcher.stop)
            waiters = 1
        else:
            opened = stack.enter_context(contextlib.closing(Opened(impl, path, sync, pool)))
            for _ in range(waiters):
                opened.start(functools.partial(wait_loop, opened.queue, opened.awaited, arrivals))
        time.sleep(settle_s)
        threads = threading.active_count()
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        time.sleep(seconds)
        after, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    if not arrivals.empty():
        raise RuntimeError("a waiter returned without a message written")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    switches = after.ru_nvcsw - before.ru_nvcsw + after.ru_nivcsw - before.ru_nivcsw
    return {"impl": impl, "waiters": waiters, "threads": threads, "cpu_seconds": cpu, "wall_seconds": wall} | {
        "percent_of_core": 100 * cpu / wall,
        "context_switches_per_s": switches / wall,
    }


def measure_idle(args: argparse.Namespace, directory: str, sizes: WaitSizes) -> list[Doc]:
    """Every implementation's probe at once (each counts its own CPU only), once per repeat."""
    impls = list(RUNTIMES) + ([] if args.no_simplebroker else [SB])
    runs: list[Doc] = []
    for repeat in range(args.repeats):
        probes = []
        for impl in impls:
            path = file_for(impl, directory, f"idle-{repeat}", args.sync)
            command = [sys.executable, SCRIPT, "--idle-probe", impl, path, "--sync", args.sync]
            command += ["--waiters", str(args.waiters), "--seconds", str(sizes.idle_seconds)]
            command += ["--settle", str(sizes.settle), "--pool", str(pool_size(impl, args))]
            process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=library_env()
            )
            probes.append((impl, path, process))
        for impl, path, process in probes:
            out, err = process.communicate(timeout=sizes.settle + sizes.idle_seconds + 300)
            if process.returncode != 0:
                raise RuntimeError(f"idle probe {impl} failed:\n{err}")
            result = json.loads(out.strip().splitlines()[-1]) | {"repeat": repeat}
            runs.append(result)
            report.remove_database(path)
            report.log(
                f"waiting  idle  run {repeat + 1}/{args.repeats}  {impl:12} {result['waiters']:>4} waiting  "
                f"{result['percent_of_core']:.3f}% of a core ({result['context_switches_per_s']:.0f} switches/s)"
            )
    summary = []
    for impl in impls:
        mine = [r for r in runs if r["impl"] == impl]
        percents = [r["percent_of_core"] for r in mine]
        summary.append(
            {"impl": impl, "waiters": mine[0]["waiters"], "threads": mine[0]["threads"], "seconds": sizes.idle_seconds}
            | {"percent_of_core": statistics.median(percents), "runs": percents, "is_reference": impl == SB}
            | {"context_switches_per_s": statistics.median(r["context_switches_per_s"] for r in mine)}
        )
    return summary


# --------------------------------------------------------------------------- throughput
class Tally:
    """Counts the timed messages down; the consumer that takes the last one stamps the end."""

    def __init__(self, messages: int) -> None:
        self.lock, self.left, self.end_ns = threading.Lock(), messages, 0

    def arrived(self) -> bool:
        with self.lock:
            self.left -= 1
            if self.left:
                return False
            self.end_ns = time.perf_counter_ns()
            return True


async def consume(queue: Any, awaited: bool, tally: Tally, consumers: int) -> list[str]:
    """``get`` until a ``STOP``; whoever takes the last timed message writes one ``STOP`` per consumer (untimed)."""
    got: list[str] = []
    while (body := await settle(queue.get(), awaited)) != STOP:
        got.append(body)
        if tally.arrived():
            await settle(queue.write_many([STOP] * consumers), awaited)
    return got


async def produce(queue: Any, awaited: bool, bodies: Sequence[str]) -> tuple[int, int]:
    start = time.perf_counter_ns()
    for body in bodies:
        await settle(queue.write(body), awaited)
    return start, time.perf_counter_ns()


async def claim_count(queue: Any, awaited: bool, count: int) -> tuple[int, int, list[str]]:
    got, start = [], time.perf_counter_ns()
    for _ in range(count):
        if (body := await settle(queue.read(), awaited)) is None:
            raise RuntimeError(report.DRY)
        got.append(body)
    return start, time.perf_counter_ns(), got


class Flow:
    """One adapter on its file for a whole run, with ``callers`` producers and as many consumers (or claimers)."""

    def __init__(self, runtime: str, role: str, path: str, args: argparse.Namespace) -> None:
        self.role, self.path, self.callers = role, path, args.waiters
        self.opened = Opened(runtime, path, args.sync, pool_size(runtime, args))
        self.pool: list[ThreadPoolExecutor] = []  # blocking: a thread per caller, kept (it keeps its connection)
        self.received: list[str] = []
        self.written = 0
        try:
            if not self.opened.awaited:
                self.pool = [ThreadPoolExecutor(1) for _ in range(2 * self.callers)]
            bodies = [report.make_body("u", i, args.body_size) for i in range(self.callers)]
            self.turn(bodies)  # untimed: every caller's connection opened, every code path run once
        except BaseException:
            self.close()
            raise

    def all(self, functions: Sequence[Callable[[], Coroutine[Any, Any, Any]]]) -> list[Any]:
        """Every caller at once: tasks of one task group, or one thread each (producers first in the list)."""
        if self.opened.awaited:
            return self.opened.portal.call(report.gather, functions)  # type: ignore[no-any-return]
        futures = [thread.submit(report.drive, f) for thread, f in zip(self.pool, functions, strict=False)]
        done, _ = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_EXCEPTION)
        if any(future.exception() for future in done):
            self.opened.broker.close()  # the others may wait for messages that will not come: closing wakes them
            concurrent.futures.wait(futures)
        return [future.result() for future in futures]

    def turn(self, bodies: Sequence[str]) -> Doc:
        """Move ``bodies``; the seconds from the first write to the last arrival (reference: write, then claim)."""
        queue, awaited, n = self.opened.queue, self.opened.awaited, self.callers
        shares = [bodies[c::n] for c in range(n)]
        if self.role == "pipeline":
            tally = Tally(len(bodies))
            producers = [functools.partial(produce, queue, awaited, share) for share in shares]
            consumers = [functools.partial(consume, queue, awaited, tally, n) for _ in range(n)]
            results = self.all([*producers, *consumers])
            start = min(s for s, _ in results[:n])
            self.received += [body for got in results[n:] for body in got]
            self.written += len(bodies) + n  # with the STOPs
            return {"seconds": (tally.end_ns - start) / 1e9}
        writes = self.all([functools.partial(produce, queue, awaited, share) for share in shares])
        claims = self.all([functools.partial(claim_count, queue, awaited, len(share)) for share in shares])
        self.received += [body for _, _, got in claims for body in got]
        self.written += len(bodies)
        write_s = (max(e for _, e in writes) - min(s for s, _ in writes)) / 1e9
        claim_s = (max(e for _, e, _ in claims) - min(s for s, _, _ in claims)) / 1e9
        return {"seconds": write_s + claim_s, "write_seconds": write_s, "claim_seconds": claim_s}

    def close(self) -> None:
        for thread in self.pool:
            thread.shutdown()
        self.opened.close()


def measure_throughput(args: argparse.Namespace, directory: str) -> list[Doc]:
    """Per runtime, the pipeline against write-then-claim; turns of ``--concurrent-block`` messages, rotating."""
    n, block = args.sizes.concurrent, args.concurrent_block
    turns = 1 if block <= 0 else max(1, math.ceil(n / block))
    keys = [(runtime, role) for runtime in RUNTIMES for role in ("reference", "pipeline")]
    runs: list[Doc] = []
    for repeat in range(args.repeats):
        bodies = [report.make_body("w", i, args.body_size) for i in range(n)]
        flows: dict[tuple[str, str], Flow] = {}
        seconds: dict[tuple[str, str], list[Doc]] = {key: [] for key in keys}
        with contextlib.ExitStack() as stack:
            for runtime, role in report.rotated(keys, repeat):
                path = file_for(f"{runtime}-{role}", directory, f"flow-{repeat}", args.sync)
                flows[runtime, role] = stack.enter_context(contextlib.closing(Flow(runtime, role, path, args)))
            for k in range(turns):
                for key in report.rotated(keys, repeat + k):
                    seconds[key].append(flows[key].turn(bodies[k * n // turns : (k + 1) * n // turns]))
        for key, flow in flows.items():
            what = f"throughput / {key[0]} / {key[1]}"
            expected = Counter(bodies) + Counter(report.make_body("u", i, args.body_size) for i in range(args.waiters))
            if Counter(flow.received) != expected:
                raise RuntimeError(f"{what}: the messages received are not those written, once each: {report.DRY}")
            check_all_claimed(flow.path, what, flow.written)
            report.remove_database(flow.path)
            total = {name: sum(t.get(name, 0.0) for t in seconds[key]) for name in seconds[key][0]}
            run = {"runtime": key[0], "role": key[1], "repeat": repeat, "messages": n, "rate": n / total["seconds"]}
            if key[1] == "reference":
                run |= {"write_rate": n / total["write_seconds"], "claim_rate": n / total["claim_seconds"]}
            runs.append(run)
            report.log(
                f"waiting  throughput  run {repeat + 1}/{args.repeats}  {key[0]:8} {key[1]:9} {run['rate']:,.0f} msgs/s"
            )
    rows = []
    for runtime in RUNTIMES:
        refs = {r["repeat"]: r for r in runs if (r["runtime"], r["role"]) == (runtime, "reference")}
        pipes = [r for r in runs if (r["runtime"], r["role"]) == (runtime, "pipeline")]
        ratio_runs = [p["rate"] / refs[p["repeat"]]["rate"] for p in pipes]
        by_write = [p["rate"] / refs[p["repeat"]]["write_rate"] for p in pipes]
        by_claim = [p["rate"] / refs[p["repeat"]]["claim_rate"] for p in pipes]
        ref_rates = [r["rate"] for r in refs.values()]
        rows.append(
            {"runtime": runtime, "callers": args.waiters, "messages": n, "reference_rate": statistics.median(ref_rates)}
            | {"write_rate": statistics.median(r["write_rate"] for r in refs.values())}
            | {"claim_rate": statistics.median(r["claim_rate"] for r in refs.values())}
            | {"pipeline_rate": statistics.median(p["rate"] for p in pipes), "ratio": statistics.median(ratio_runs)}
            | {"ratios": ratio_runs, "ratio_to_write": statistics.median(by_write)}
            | {"ratio_to_claim": statistics.median(by_claim), "reference_rates": ref_rates}
        )
    return rows


# --------------------------------------------------------------------------- the group: run, verdicts, table
def measure(args: argparse.Namespace, directory: str) -> Doc:
    """The whole group, in three phases (one at a time, so none disturbs another)."""
    sizes = wait_sizes(args)
    started = time.perf_counter()
    latency = measure_latency(args, directory, sizes)
    idle = measure_idle(args, directory, sizes)
    throughput = measure_throughput(args, directory)
    doc: Doc = {"sizes": asdict(sizes), "waiters": args.waiters, "seconds": time.perf_counter() - started}
    doc |= {"latency": [asdict(c) for c in latency], "idle": idle, "throughput": throughput}
    return doc | {"targets": verdicts(doc, args.sync)}


def verdicts(doc: Doc, sync: str) -> list[Doc]:
    """The issue's targets, at the report's target sync mode (none otherwise, as for the other groups)."""
    if sync != report.TARGETS_SYNC:
        return []
    found: list[Doc] = []
    cells = doc["latency"]
    refs = {c["writer"]: c for c in cells if c["is_reference"]}
    for c in cells:
        if c["is_reference"] or (ref := refs.get(c["writer"])) is None:
            continue
        name = f"wake, {c['writer_label']} / {c['impl']}"
        found.append(
            {"name": f"{name}: p50 / SimpleBroker's p50", "value": c["ratio_p50"], "target": LATENCY_RATIO_TARGET}
            | {"op": "<=", "met": c["ratio_p50"] <= LATENCY_RATIO_TARGET}
        )
        if c["writer"] != "local":
            found.append(
                {"name": f"{name}: p99 us < SimpleBroker's p50 us", "value": c["p99_us"], "target": ref["p50_us"]}
                | {"op": "<", "met": c["p99_us"] < ref["p50_us"]}
            )
    for i in doc["idle"]:
        if not i["is_reference"]:
            name = f"idle, {i['waiters']} waiting / {i['impl']}: % of one core"
            value = i["percent_of_core"]
            found.append({"name": name, "value": value, "target": IDLE_TARGET_PERCENT, "op": "<="})
            found[-1]["met"] = value <= IDLE_TARGET_PERCENT
    for t in doc["throughput"]:
        name = f"throughput / {t['runtime']}: get() pipeline / write-then-claim"
        found.append({"name": name, "value": t["ratio"], "target": THROUGHPUT_TARGET, "op": ">="})
        found[-1] |= {"met": t["ratio"] >= THROUGHPUT_TARGET, "runs": t["ratios"]}
    return found


def table(lines: list[tuple[str, ...]], left: Sequence[int], cases: bool = True) -> str:
    """Columns as the report's table: two spaces apart, a rule under the header, a blank line between cases."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = []
    for k, line in enumerate(lines):
        if cases and k > 1 and line[0]:
            out.append("")
        cells = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def render(doc: Doc, sync: str) -> str:
    sizes, out = doc["sizes"], []
    out.append(
        f"\nWaiting (synchronous={sync}, {doc['seconds']:.0f} s). Wake latency: a write's commit returned -> the "
        f"waiting get returned (SimpleBroker: its handler called),\n{sizes['samples']} samples per cell, each after "
        f"the waiter idled >= {sizes['gap']:g} s; p99 is nearest-rank (the 2nd largest of 100, the largest of fewer);"
        " x ref: p50 / the reference's p50.\n"
    )
    lines: list[tuple[str, ...]] = [("writer", "waiter", "p50 us", "p99 us", "max us", "p50 x ref")]
    previous = None
    for c in doc["latency"]:
        first, previous = c["writer"] != previous, c["writer"]
        ratio = "1" if c["is_reference"] else "-" if c["ratio_p50"] is None else f"{c['ratio_p50']:.3f}"
        label = c["label"] + ("  (ref)" if c["is_reference"] else "")
        cells = (f"{c['p50_us']:,.0f}", f"{c['p99_us']:,.0f}", f"{c['max_us']:,.0f}", ratio)
        lines.append((c["writer_label"] if first else "", label, *cells))
    out.append(table(lines, (0, 1)))
    out.append(
        f"\nIdle: a fresh process, its waiters started {sizes['settle']:g} s before a {sizes['idle_seconds']:g} s "
        "window without traffic; CPU (user + system) in % of one core, median of the runs.\n"
    )
    lines = [("implementation", "waiting", "threads", "% of a core", "per-run %", "switches/s")]
    for i in doc["idle"]:
        label = "SimpleBroker QueueWatcher  (ref)" if i["is_reference"] else f"{i['impl']} get()"
        runs = " ".join(f"{x:.3f}" for x in i["runs"])
        cells = (str(i["waiters"]), str(i["threads"]), f"{i['percent_of_core']:.3f}", runs)
        lines.append((label, *cells, f"{i['context_switches_per_s']:,.0f}"))
    out.append(table(lines, (0, 4), cases=False))
    out.append(
        f"\nThroughput: {doc['waiters']} consumers in get() fed by {doc['waiters']} producers (first write to last "
        "arrival) against the same messages written by those producers, then claimed (read()) by as many callers\n"
        "(ref: both times added); x ref: median of the per-run ratios, rounded down; x write / x claim: against "
        "the write and the claim rate alone.\n"
    )
    lines = [("runtime", "implementation", "msgs/s", "x ref", "per-run x ref", "x write", "x claim")]
    for t in doc["throughput"]:
        n = t["callers"]
        lines.append((t["runtime"], f"write, then claim, {n} + {n} callers  (ref)", f"{t['reference_rate']:,.0f}", "1"))
        lines[-1] += ("", "", "")
        lines.append(("", f"  of which write, {n} producers", f"{t['write_rate']:,.0f}", "", "", "", ""))
        lines.append(("", f"  of which claim, {n} callers", f"{t['claim_rate']:,.0f}", "", "", "", ""))
        runs = " ".join(report.floor_to(x, 2) for x in t["ratios"])
        ratios = (report.floor_to(t["ratio"], 3), runs, f"{t['ratio_to_write']:.2f}", f"{t['ratio_to_claim']:.2f}")
        lines.append(("", f"get(): {n} consumers fed by {n} producers", f"{t['pipeline_rate']:,.0f}", *ratios))
    out.append(table(lines, (0, 1, 4)))
    if sync != report.TARGETS_SYNC:
        out.append(f"\nWaiting targets: none at synchronous={sync} (they are for {report.TARGETS_SYNC})")
    elif doc["targets"]:
        out.append("\nWaiting targets (issue 11):")
    width = max((len(v["name"]) for v in doc["targets"]), default=0)
    for v in doc["targets"]:
        value = f"{v['value']:,.0f}" if v["op"] == "<" else f"{v['value']:.3f}"
        target = f"{v['target']:,.0f}" if v["op"] == "<" else f"{v['target']:g}"
        out.append(f"  {v['name']:{width}} {value:>8} {v['op']} {target:<6} {'met' if v['met'] else 'MISSED'}")
    return "\n".join(out)


# --------------------------------------------------------------------------- entry points
def main(argv: Sequence[str] | None = None) -> int:
    """The report with the waiting group only; or, internally, a writer or idle-probe process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--writer"], ["--idle-probe"]):
        parser = argparse.ArgumentParser()
        parser.add_argument("--writer", choices=("sansio", SB))
        parser.add_argument("--idle-probe", nargs=2, metavar=("IMPL", "PATH"))
        parser.add_argument("--sync", default="FULL")
        parser.add_argument("--waiters", type=int, default=100)
        parser.add_argument("--seconds", type=float, default=10.0)
        parser.add_argument("--settle", type=float, default=1.0)
        parser.add_argument("--pool", type=int, default=4)
        args = parser.parse_args(argv)
        if args.writer:
            writer_main(args.writer, args.sync, sys.stdin)
        else:
            impl, path = args.idle_probe
            doc = idle_probe_main(impl, path, args.sync, args.waiters, args.seconds, args.settle, args.pool)
            print(json.dumps(doc))
        return 0
    return report.main(["--groups", "waiting", *argv])


if __name__ == "__main__":
    sys.exit(main())

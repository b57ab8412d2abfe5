"""Where the asyncio adapter's time goes, per operation: the loop side, the thread hop, the worker thread.

A diagnostic companion to ``bench_asyncio.py``: no targets, no verdicts. For
each sync mode and case (sequential one-message writes, sequential claims of
a pre-filled queue) it runs these variants interleaved in blocks, as the
benchmarks do, and instruments them from the outside (nothing in the product
is changed; private names of the adapter are wrapped in this process only):

* ``raw``: ``bench_blocking``'s raw sqlite3 transaction, inline on the loop thread;
* ``raw+executor``: that transaction through ``loop.run_in_executor`` (one thread);
* ``raw+aio hop``: that transaction through the adapter's own hop mechanism
  (``_in_thread``: a bare future on an aiosqlite worker's queue);
* ``asyncio``: ``AsyncQueue.write`` / ``.read`` on ``async_broker(pool_size=10)``;
* ``asyncio inline``: the same adapter with the hop replaced by running the
  operation inline on the loop thread (``_in_thread`` patched): the adapter's
  loop-side cost without any thread;
* ``blocking``: ``Queue.write`` / ``.read`` of the blocking adapter.

Per operation it reports the wall time (mean and p50), event-loop iterations
(``_run_once`` calls), CPU time of the loop thread and of the worker thread,
and for the hop variants the split of the wall time: ``pre`` (loop side,
before the job is queued), ``wake`` (queued until the worker starts it),
``run`` (in the worker) and ``back`` (worker done until the awaiting code
resumes). It also times ``AsyncBroker._acquire`` + ``_release`` alone.

    python benchmarks/diagnose_asyncio.py                  # FULL and NORMAL, n=2000
    python benchmarks/diagnose_asyncio.py --sync NORMAL --n 5000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sqlite3
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import aiosqlite
from _common import (
    CASES,
    QUEUE,
    SYNC_MODES,
    RawReference,
    SansioBlocking,
    case_paths,
    log,
    machine_info,
    percentile,
    prepare_files,
    refuse_memory_filesystem,
    run_in_scratch,
    sansio_config,
    schedule,
)

import sansio_broker.adapters.asyncio as adapter
from sansio_broker.adapters._async_api import run_in_thread
from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker

POOL_SIZE = 10
clock = time.perf_counter_ns
cpu_clock = time.thread_time_ns


# --------------------------------------------------------------------------- tracing
@dataclass
class Trace:
    """Stamps of one variant's timed operations (ns): loop side and worker side."""

    begin: list[int] = field(default_factory=list)  # before the operation is called
    done: list[int] = field(default_factory=list)  # when the awaiting code has resumed
    submit: list[int] = field(default_factory=list)  # when the job is queued for the worker
    start: list[int] = field(default_factory=list)  # when the worker starts it
    end: list[int] = field(default_factory=list)  # when the worker has finished it
    worker_cpu: list[int] = field(default_factory=list)
    loop_iterations: int = 0
    loop_cpu: int = 0


class Tracer:
    """Where the stamps of the variant being timed go; ``None`` between timed blocks."""

    current: Trace | None = None

    @classmethod
    def worker(cls, function: Callable[..., Any]) -> Callable[..., Any]:
        """``function`` stamped in the thread that runs it."""

        def traced(*args: Any) -> Any:
            trace = cls.current
            if trace is None:
                return function(*args)
            start, cpu = clock(), cpu_clock()
            try:
                return function(*args)
            finally:
                trace.worker_cpu.append(cpu_clock() - cpu)
                trace.end.append(clock())
                trace.start.append(start)

        return traced

    @classmethod
    def submitted(cls) -> None:
        if cls.current is not None:
            cls.current.submit.append(clock())


def count_loop_iterations(loop: asyncio.AbstractEventLoop) -> None:
    """Wrap this loop's ``_run_once`` (one event-loop iteration) to count iterations into the current trace."""
    run_once: Callable[[], None] = getattr(loop, "_run_once")  # noqa: B009 - private, wrapped on purpose

    def counted() -> None:
        trace = Tracer.current
        if trace is not None:
            trace.loop_iterations += 1
        run_once()

    setattr(loop, "_run_once", counted)  # noqa: B010


original_in_thread = adapter._in_thread
original_run_in_thread = run_in_thread  # the job the adapter queues (shared by the async adapters)


def traced_in_thread(aio: aiosqlite.Connection, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    Tracer.submitted()
    return original_in_thread(aio, function, *args)


def inline_in_thread(aio: aiosqlite.Connection, function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
    """The hop removed: run the job on the loop thread and hand back a finished future."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    Tracer.submitted()
    start, cpu = clock(), cpu_clock()
    try:
        future.set_result(function(*args))
    except BaseException as exc:
        future.set_exception(exc)
    trace = Tracer.current
    if trace is not None:
        trace.worker_cpu.append(cpu_clock() - cpu)
        trace.end.append(clock())
        trace.start.append(start)
    return future


def use_hop(traced: bool) -> None:
    adapter._in_thread = traced_in_thread if traced else original_in_thread
    job = Tracer.worker(original_run_in_thread) if traced else original_run_in_thread
    setattr(adapter, "run_in_thread", job)  # noqa: B010 - the adapter looks its job up by this name at every call


def use_inline() -> None:
    adapter._in_thread = inline_in_thread
    setattr(adapter, "run_in_thread", original_run_in_thread)  # noqa: B010


# --------------------------------------------------------------------------- variants
Operation = Callable[[], Awaitable[object]]


@dataclass
class Variant:
    key: str
    label: str
    write: Callable[[str], Awaitable[object]]
    read: Operation
    close: Callable[[], Awaitable[None]]
    enter: Callable[[], None] = lambda: None  # around each timed block (patches the adapter's hop)
    leave: Callable[[], None] = lambda: None


def sync_as_async(function: Callable[..., object]) -> Callable[..., Awaitable[object]]:
    async def call(*args: Any) -> object:
        return function(*args)

    return call


class Spec:
    """How to make a variant on a prepared file (``prepare`` is what ``_common.prepare_files`` calls)."""

    def __init__(self, key: str, label: str, make: Callable[[str, str], Awaitable[Variant]]) -> None:
        self.key, self.label, self.make = key, label, make

    def prepare(self, path: str, sync: str) -> None:
        SansioBlocking().prepare(path, sync)


async def make_raw(path: str, sync: str) -> Variant:
    raw = RawReference().open(path, sync)

    async def close() -> None:
        raw.close()

    return Variant("raw", "raw sqlite3", sync_as_async(raw.write), sync_as_async(raw.read), close)


async def make_executor_hop(path: str, sync: str) -> Variant:
    raw = RawReference().open(path, sync)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diag-hop")
    loop = asyncio.get_running_loop()
    write, read = Tracer.worker(raw.write), Tracer.worker(raw.read)

    def submit(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        Tracer.submitted()
        return loop.run_in_executor(executor, function, *args)

    async def close() -> None:
        executor.shutdown(wait=True)
        raw.close()

    return Variant("executor", "raw+executor", lambda body: submit(write, body), lambda: submit(read), close)


async def make_aio_hop(path: str, sync: str) -> Variant:
    """The raw transaction through the adapter's own hop: ``_in_thread`` on an aiosqlite worker."""
    raw = RawReference().open(path, sync)
    aio = aiosqlite.Connection(lambda: sqlite3.connect(":memory:"), iter_chunk_size=64)
    await aio
    write, read = Tracer.worker(raw.write), Tracer.worker(raw.read)

    def submit(function: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        Tracer.submitted()
        return original_in_thread(aio, function, *args)

    async def close() -> None:
        await aio.close()
        raw.close()

    return Variant("aiohop", "raw+aio hop", lambda body: submit(write, body), lambda: submit(read), close)


async def open_adapter(path: str, sync: str) -> tuple[AsyncQueue, AsyncBroker, Callable[[], Awaitable[None]]]:
    stack = AsyncExitStack()
    broker = await stack.enter_async_context(async_broker(path, pool_size=POOL_SIZE, config=sansio_config(sync)))

    async def close() -> None:
        await stack.aclose()

    return AsyncQueue(QUEUE, broker), broker, close


async def make_adapter(path: str, sync: str) -> Variant:
    queue, _, close = await open_adapter(path, sync)
    return Variant(
        "asyncio",
        "asyncio",
        queue.write,
        queue.read,
        close,
        enter=lambda: use_hop(traced=True),
        leave=lambda: use_hop(traced=False),
    )


async def make_inline_adapter(path: str, sync: str) -> Variant:
    queue, _, close = await open_adapter(path, sync)
    return Variant(
        "inline",
        "asyncio inline",
        queue.write,
        queue.read,
        close,
        enter=use_inline,
        leave=lambda: use_hop(traced=False),
    )


async def make_blocking(path: str, sync: str) -> Variant:
    blocking = SansioBlocking().open(path, sync)

    async def close() -> None:
        blocking.close()

    return Variant("blocking", "blocking", sync_as_async(blocking.write), sync_as_async(blocking.read), close)


SPECS = [
    Spec("raw", "raw sqlite3", make_raw),
    Spec("executor", "raw+executor", make_executor_hop),
    Spec("aiohop", "raw+aio hop", make_aio_hop),
    Spec("asyncio", "asyncio", make_adapter),
    Spec("inline", "asyncio inline", make_inline_adapter),
    Spec("blocking", "blocking", make_blocking),
]


# --------------------------------------------------------------------------- measuring
async def timed_block(variant: Variant, trace: Trace, case: str, body: str, count: int) -> None:
    variant.enter()
    Tracer.current = trace
    cpu = cpu_clock()
    try:
        for _ in range(count):
            trace.begin.append(clock())
            if case == "write":
                await variant.write(body)
            elif await variant.read() is None:
                raise RuntimeError("the pre-filled queue ran dry")
            trace.done.append(clock())
    finally:
        trace.loop_cpu += cpu_clock() - cpu
        Tracer.current = None
        variant.leave()


async def warm(variant: Variant, case: str, body: str, count: int) -> None:
    variant.enter()
    try:
        for _ in range(count):
            if case == "write":
                await variant.write(body)
            elif await variant.read() is None:
                raise RuntimeError("the pre-filled queue ran dry")
    finally:
        variant.leave()


async def measure(sync: str, case: str, directory: str, n: int, warmup: int, block: int, body: str) -> dict[str, Trace]:
    paths = case_paths(SPECS, case, sync, 0, directory)
    prepare_files(SPECS, paths, case, sync, warmup + n, body)
    variants: dict[str, Variant] = {}
    traces = {spec.key: Trace() for spec in SPECS}
    try:
        for spec in SPECS:
            variants[spec.key] = await spec.make(paths[spec.key], sync)
            await warm(variants[spec.key], case, body, warmup)
        gc.collect()
        for spec, count in schedule(SPECS, n, block, 0):
            await timed_block(variants[spec.key], traces[spec.key], case, body, count)
    finally:
        for variant in variants.values():
            await variant.close()
    return traces


async def pool_cost(directory: str, sync: str, n: int) -> tuple[float, float, float]:
    """``AsyncBroker._acquire`` + ``_release`` alone: mean us, p50 us, loop iterations per pair."""
    path = f"{directory}/pool-{sync}.db"
    SansioBlocking().prepare(path, sync)
    _, broker, close = await open_adapter(path, sync)
    trace = Trace()
    try:
        for _ in range(200):
            broker._release(await broker._acquire())
        Tracer.current = trace
        for _ in range(n):
            trace.begin.append(clock())
            broker._release(await broker._acquire())
            trace.done.append(clock())
    finally:
        Tracer.current = None
        await close()
    spans = sorted(d - b for b, d in zip(trace.begin, trace.done, strict=True))
    return sum(spans) / n / 1000, percentile(spans, 50) / 1000, trace.loop_iterations / n


# --------------------------------------------------------------------------- reporting
def med_us(values: Sequence[int]) -> str:
    return f"{statistics.median(values) / 1000:,.1f}" if values else "-"


def render(traces: dict[str, Trace], n: int) -> str:
    header = (
        "variant",
        "mean",
        "p50",
        "loop it",
        "loop CPU",
        "pre",
        "wake",
        "run",
        "back",
        "worker CPU",
    )
    lines: list[tuple[str, ...]] = [header]
    labels = {spec.key: spec.label for spec in SPECS}
    for key, t in traces.items():
        spans = sorted(d - b for b, d in zip(t.begin, t.done, strict=True))
        mean = sum(spans) / len(spans) / 1000
        split = ["-"] * 4
        worker_cpu = "-"
        if len(t.start) == len(t.begin) and t.start:
            pre = [s - b for s, b in zip(t.submit, t.begin, strict=True)]
            wake = [s - q for s, q in zip(t.start, t.submit, strict=True)]
            run = [e - s for e, s in zip(t.end, t.start, strict=True)]
            back = [d - e for d, e in zip(t.done, t.end, strict=True)]
            split = [med_us(pre), med_us(wake), med_us(run), med_us(back)]
            worker_cpu = med_us(t.worker_cpu)
        lines.append(
            (
                labels[key],
                f"{mean:,.1f}",
                f"{percentile(spans, 50) / 1000:,.1f}",
                f"{t.loop_iterations / len(spans):.2f}",
                f"{t.loop_cpu / len(spans) / 1000:,.1f}",
                *split,
                worker_cpu,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for k, line in enumerate(lines):
        cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells).rstrip())
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000, help="timed operations per variant (default 2000)")
    parser.add_argument(
        "--sync", nargs="+", default=["FULL", "NORMAL"], type=str.upper, choices=SYNC_MODES, help="default FULL NORMAL"
    )
    parser.add_argument("--block", type=int, default=100, help="operations per variant per turn (default 100)")
    parser.add_argument("--warmup", type=int, default=100, help="untimed operations per variant (default 100)")
    parser.add_argument("--body-size", type=int, default=64, help="message body size in characters (default 64)")
    parser.add_argument("--dir", default=None, help="directory on a real disk (default: a temp dir in /var/tmp)")
    parser.add_argument("--allow-tmpfs", action="store_true", help="run even if the directory is on tmpfs")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = parser.parse_args(argv)
    if args.n < 1 or args.warmup < 0 or args.body_size < 1:
        parser.error("--n and --body-size must be positive, --warmup non-negative")
    return args


async def run(args: argparse.Namespace, directory: str) -> int:
    machine = machine_info(directory, packages=["aiosqlite", "aiosqlitepool"])
    if refuse_memory_filesystem(machine, directory, args.allow_tmpfs):
        return 2
    count_loop_iterations(asyncio.get_running_loop())
    print(
        f"fdatasync 4 KiB median {machine['fdatasync_4k_median_us']} us; load average {machine['load_average']}; "
        f"{machine['cpus_usable']} CPUs; Python {machine['python']}; SQLite {machine['sqlite']}; "
        f"aiosqlite {machine['aiosqlite']}; switch interval {sys.getswitchinterval() * 1e3:.0f} ms"
    )
    print(
        "Per operation, microseconds except 'loop it' (event-loop iterations). mean and p50: wall time; "
        "loop CPU: CPU time of the\nloop thread; pre/wake/run/back (medians): loop side before queuing / "
        "queued until the worker starts / in the worker /\nworker done until the caller resumes; "
        "worker CPU: CPU time of the worker (median)."
    )
    body = "m" * args.body_size
    for sync in args.sync:
        for case in CASES:
            log(f"  {case} {sync} ...")
            traces = await measure(sync, case, directory, args.n, args.warmup, args.block, body)
            print(f"\n{case} {sync} (n={args.n} per variant, interleaved in blocks of {args.block})")
            print(render(traces, args.n))
        mean, p50, iterations = await pool_cost(directory, sync, args.n)
        print(
            f"\nAsyncBroker._acquire + _release alone ({sync}): mean {mean:.1f} us, p50 {p50:.1f} us, "
            f"{iterations:.2f} loop iterations"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_in_scratch(args, lambda a, directory: asyncio.run(run(a, directory)))


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())

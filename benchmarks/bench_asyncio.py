"""asyncio adapter vs raw sqlite3 (direct and through one thread hop): single writes and single claims.

Measures messages per second for sequential one-message-per-transaction writes
(``await queue.write(body)``) and claims (``await queue.read()``), at each
requested ``PRAGMA synchronous`` mode, for four implementations in the same
process, event loop and run:

* ``raw``: plain ``sqlite3`` running exactly the transactions of the storage
  contract (§4.1 write, §4.3 claim) with the adapter's PRAGMAs, synchronously
  on the event loop's thread; the reference every ratio is taken against;
* ``hop``: that same raw transaction, run through one thread hop per
  operation (``await loop.run_in_executor(one_thread_executor, raw_write)``):
  what the hop alone costs;
* ``asyncio``: ``AsyncQueue(...).write`` / ``.read`` on
  ``async_broker(path, pool_size=10, config=...)``;
* ``blocking``: ``sansio_broker.adapters.blocking.Queue.write`` / ``.read``,
  for reference.

The machinery (fresh files on a real disk, interleaved blocks, medians, ratios,
p50/p99, target verdicts, JSON) is shared with ``bench_blocking.py`` through
``_common.py``. See ``benchmarks/README.md``.

    python benchmarks/bench_asyncio.py                    # n=2000, 3 repeats, FULL
    python benchmarks/bench_asyncio.py --sync FULL NORMAL
    python benchmarks/bench_asyncio.py --quick            # n=300: a smoke run
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Protocol

from _common import (
    CASES,
    QUEUE,
    Handle,
    Measurement,
    RawReference,
    Row,
    SansioBlocking,
    add_arguments,
    case_paths,
    check_settings,
    connection_settings,
    evaluate_targets,
    finish_arguments,
    finish_case,
    log_measurement,
    machine_info,
    prepare_files,
    print_preamble,
    print_problems,
    print_results,
    print_targets,
    refuse_memory_filesystem,
    run_in_scratch,
    sansio_config,
    schedule,
    summarize,
    time_block,
    warm_up,
    write_json,
)

from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

# Targets for the asyncio adapter / raw sqlite3 (median of per-run ratios),
# writes and reads alike, per sync mode.
TARGETS = {"FULL": 0.6}
TARGET_IMPL = "asyncio"
POOL_SIZE = 10


# --------------------------------------------------------------------------- implementations
@dataclass
class AsyncHandle:
    """An open asyncio implementation: the two measured awaitables and how to close it."""

    write: Callable[[str], Awaitable[object]]
    read: Callable[[], Awaitable[object]]
    close: Callable[[], Awaitable[object]]


AnyHandle = Handle | AsyncHandle


class Implementation(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def label(self) -> str: ...
    def prepare(self, path: str, sync: str) -> None: ...
    async def start(self, path: str, sync: str) -> AnyHandle: ...


class RawSqlite(RawReference):
    """The reference: ``bench_blocking``'s raw sqlite3, called synchronously on the loop's thread."""

    async def start(self, path: str, sync: str) -> AnyHandle:
        return self.open(path, sync)


class RawThreadHop(RawReference):
    """The same raw transaction, one ``run_in_executor`` hop to a one-thread executor per operation."""

    key = "hop"
    label = "raw sqlite3 + thread hop"

    async def start(self, path: str, sync: str) -> AnyHandle:
        raw = self.open(path, sync)  # check_same_thread=False: used from the executor's thread
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-hop")
        loop = asyncio.get_running_loop()

        async def close() -> None:
            executor.shutdown(wait=True)
            raw.close()

        # ``await handle.write(body)`` is ``await loop.run_in_executor(executor, raw.write, body)``.
        raw_write, raw_read = raw.write, raw.read
        return AsyncHandle(
            lambda body: loop.run_in_executor(executor, raw_write, body),
            lambda: loop.run_in_executor(executor, raw_read),
            close,
        )


class AsyncioAdapter:
    """``sansio_broker.adapters.asyncio``: ``AsyncQueue.write`` / ``AsyncQueue.read``."""

    key = "asyncio"
    label = "sansio-broker asyncio"

    def prepare(self, path: str, sync: str) -> None:
        SansioBlocking().prepare(path, sync)  # the same schema creation as every other file

    async def start(self, path: str, sync: str) -> AnyHandle:
        stack = AsyncExitStack()
        broker = await stack.enter_async_context(async_broker(path, pool_size=POOL_SIZE, config=sansio_config(sync)))
        queue = AsyncQueue(QUEUE, broker)
        return AsyncHandle(queue.write, queue.read, stack.aclose)


class BlockingAdapter(SansioBlocking):
    """``sansio_broker.adapters.blocking``, called synchronously on the loop's thread, for reference."""

    key = "blocking"
    label = "sansio-broker blocking"

    async def start(self, path: str, sync: str) -> AnyHandle:
        return self.open(path, sync)


IMPLEMENTATIONS: dict[str, Callable[[], Implementation]] = {
    "raw": RawSqlite,
    "hop": RawThreadHop,
    "asyncio": AsyncioAdapter,
    "blocking": BlockingAdapter,
}


# --------------------------------------------------------------------------- measuring
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


async def measure_case(
    impls: Sequence[Implementation],
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


# --------------------------------------------------------------------------- reporting
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


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, list(IMPLEMENTATIONS), default_sync=["FULL"])
    return finish_arguments(parser, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    return run_in_scratch(parse_args(argv), lambda args, directory: asyncio.run(run(args, directory)))


async def run(args: argparse.Namespace, directory: str) -> int:
    machine = machine_info(directory, packages=["aiosqlite", "aiosqlitepool"])
    machine["event_loop"] = type(asyncio.get_running_loop()).__name__
    if refuse_memory_filesystem(machine, directory, args.allow_tmpfs):
        return 2

    impls = [IMPLEMENTATIONS[key]() for key in args.impl]
    labels = {impl.key: impl.label for impl in impls}
    width = max(len(label) for label in labels.values())
    body = "m" * args.body_size
    print_preamble(
        machine,
        args,
        f"auto vacuum OFF (BROKER_AUTO_VACUUM=0) for both adapters; raw never vacuums; asyncio pool_size={POOL_SIZE}",
    )

    measurements: list[Measurement] = []
    problems: list[str] = []
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for sync in args.sync:
            for case in CASES:
                for m in await measure_case(
                    impls, case, sync, repeat, directory, args.n, args.warmup, args.block, body
                ):
                    measurements.append(m)
                    problems.extend(check_settings(m))
                    log_measurement(m, args.repeats, labels[m.impl], width)
    elapsed = time.perf_counter() - started

    rows = summarize(measurements, impls, args.sync)
    targets = evaluate_targets(rows, TARGET_IMPL, TARGETS)
    costs = added_costs(measurements, rows, "raw", list(labels))
    costs += added_costs(measurements, rows, "hop", [TARGET_IMPL])  # the adapter beyond the run_in_executor hop
    print_results(rows, args.repeats, args.n, elapsed)
    if costs:
        print()
        print(render_added_costs(costs, labels))
    print_targets(targets, "asyncio adapter / raw sqlite3, writes and reads")
    if "raw" in args.impl and TARGET_IMPL in args.impl and not any(s in TARGETS for s in args.sync):
        print(f"\nTargets: none at synchronous={' '.join(args.sync)} (only {' '.join(TARGETS)})")
    print_problems(problems)
    if args.json:
        write_json(
            args.json,
            machine,
            args,
            elapsed,
            rows,
            targets,
            measurements,
            problems,
            added_cost_us=[vars(c) for c in costs],
        )
    return 0


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())

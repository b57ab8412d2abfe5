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
import sys
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack

from _common import (
    QUEUE,
    AnyHandle,
    AsyncHandle,
    AsyncImplementation,
    RawReference,
    SansioBlocking,
    add_arguments,
    finish_arguments,
    machine_info,
    refuse_memory_filesystem,
    run_async_benchmark,
    run_in_scratch,
    sansio_config,
)

from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

# Targets for the asyncio adapter / raw sqlite3 (median of per-run ratios),
# writes and reads alike, per sync mode.
TARGETS = {"FULL": 0.6}
TARGET_IMPL = "asyncio"
POOL_SIZE = 10


# --------------------------------------------------------------------------- implementations
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


IMPLEMENTATIONS: dict[str, Callable[[], AsyncImplementation]] = {
    "raw": RawSqlite,
    "hop": RawThreadHop,
    "asyncio": AsyncioAdapter,
    "blocking": BlockingAdapter,
}


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
    return await run_async_benchmark(
        args,
        directory,
        machine,
        [IMPLEMENTATIONS[key]() for key in args.impl],
        target_impl=TARGET_IMPL,
        targets=TARGETS,
        targets_title="asyncio adapter / raw sqlite3, writes and reads",
        vacuum_note="auto vacuum OFF (BROKER_AUTO_VACUUM=0) for both adapters; raw never vacuums; "
        f"asyncio pool_size={POOL_SIZE}",
    )


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())

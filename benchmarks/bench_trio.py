"""trio adapter vs raw sqlite3 (direct and through one thread hop): single writes and single claims.

Measures messages per second for sequential one-message-per-transaction writes
(``await queue.write(body)``) and claims (``await queue.read()``), at each
requested ``PRAGMA synchronous`` mode, for four implementations in the same
process, ``trio.run`` and run:

* ``raw``: plain ``sqlite3`` running exactly the transactions of the storage
  contract (§4.1 write, §4.3 claim) with the adapter's PRAGMAs, synchronously
  on trio's thread; the reference every ratio is taken against;
* ``hop``: that same raw transaction, run through one thread hop per
  operation (``await trio.to_thread.run_sync(raw_write, body)``): what the
  hop alone costs;
* ``trio``: ``TrioQueue(...).write`` / ``.read`` on
  ``trio_broker(path, pool_size=4, config=...)``;
* ``blocking``: ``sansio_broker.adapters.blocking.Queue.write`` / ``.read``,
  for reference.

The machinery (fresh files on a real disk, interleaved blocks, medians, ratios,
p50/p99, added time per operation, target verdicts, JSON) is shared with
``bench_blocking.py`` and ``bench_asyncio.py`` through ``_common.py``. See
``benchmarks/README.md``.

    python benchmarks/bench_trio.py                    # n=2000, 3 repeats, FULL
    python benchmarks/bench_trio.py --sync FULL NORMAL
    python benchmarks/bench_trio.py --quick            # n=300: a smoke run
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack

import trio
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

from sansio_broker.adapters.trio import TrioQueue, trio_broker

# Targets for the trio adapter / raw sqlite3 (median of per-run ratios),
# writes and reads alike, per sync mode: what a bare trio.to_thread hop
# reached on this machine.
TARGETS = {"FULL": 0.55}
TARGET_IMPL = "trio"
POOL_SIZE = 4


# --------------------------------------------------------------------------- implementations
class RawSqlite(RawReference):
    """The reference: ``bench_blocking``'s raw sqlite3, called synchronously on trio's thread."""

    async def start(self, path: str, sync: str) -> AnyHandle:
        return self.open(path, sync)


class RawThreadHop(RawReference):
    """The same raw transaction, one ``trio.to_thread.run_sync`` hop per operation."""

    key = "hop"
    label = "raw sqlite3 + to_thread hop"

    async def start(self, path: str, sync: str) -> AnyHandle:
        raw = self.open(path, sync)  # check_same_thread=False: used from trio's worker threads

        async def close() -> None:
            raw.close()

        # ``await handle.write(body)`` is ``await trio.to_thread.run_sync(raw.write, body)``: trio's
        # thread cache and its default limiter, as any trio code running blocking SQLite would use.
        raw_write, raw_read = raw.write, raw.read
        return AsyncHandle(
            lambda body: trio.to_thread.run_sync(raw_write, body),
            lambda: trio.to_thread.run_sync(raw_read),
            close,
        )


class TrioAdapter:
    """``sansio_broker.adapters.trio``: ``TrioQueue.write`` / ``TrioQueue.read``."""

    key = "trio"
    label = "sansio-broker trio"

    def prepare(self, path: str, sync: str) -> None:
        SansioBlocking().prepare(path, sync)  # the same schema creation as every other file

    async def start(self, path: str, sync: str) -> AnyHandle:
        # trio_broker opens a nursery: it stays open (in this task) until close, and it is
        # the only one, so the handles may be closed in any order.
        stack = AsyncExitStack()
        broker = await stack.enter_async_context(trio_broker(path, pool_size=POOL_SIZE, config=sansio_config(sync)))
        queue = TrioQueue(QUEUE, broker)
        return AsyncHandle(queue.write, queue.read, stack.aclose)


class BlockingAdapter(SansioBlocking):
    """``sansio_broker.adapters.blocking``, called synchronously on trio's thread, for reference."""

    key = "blocking"
    label = "sansio-broker blocking"

    async def start(self, path: str, sync: str) -> AnyHandle:
        return self.open(path, sync)


IMPLEMENTATIONS: dict[str, Callable[[], AsyncImplementation]] = {
    "raw": RawSqlite,
    "hop": RawThreadHop,
    "trio": TrioAdapter,
    "blocking": BlockingAdapter,
}


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, list(IMPLEMENTATIONS), default_sync=["FULL"])
    return finish_arguments(parser, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    return run_in_scratch(parse_args(argv), lambda args, directory: trio.run(run, args, directory))


async def run(args: argparse.Namespace, directory: str) -> int:
    machine = machine_info(directory, packages=["trio", "outcome"])
    if refuse_memory_filesystem(machine, directory, args.allow_tmpfs):
        return 2
    return await run_async_benchmark(
        args,
        directory,
        machine,
        [IMPLEMENTATIONS[key]() for key in args.impl],
        target_impl=TARGET_IMPL,
        targets=TARGETS,
        targets_title="trio adapter / raw sqlite3, writes and reads",
        vacuum_note="auto vacuum OFF (BROKER_AUTO_VACUUM=0) for both adapters; raw never vacuums; "
        f"trio pool_size={POOL_SIZE}",
    )


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())

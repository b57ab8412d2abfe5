"""Blocking adapter vs raw sqlite3 vs SimpleBroker: single writes and single claims.

Measures messages per second for sequential one-message-per-transaction writes
and claims, at each requested ``PRAGMA synchronous`` mode, for three
implementations on the same machine in the same run:

* ``raw``: plain ``sqlite3`` running exactly the transactions of the storage
  contract (§4.1 write, §4.3 claim) with the adapter's PRAGMAs; the floor;
* ``sansio``: ``sansio_broker.adapters.blocking.Queue.write`` / ``.read``;
* ``simplebroker``: ``simplebroker.Queue(persistent=True).write`` / ``.read``.

Every implementation gets a fresh database file per run, in a directory on a
real disk. Within a run the implementations take turns, ``--block`` timed
operations each, round-robin with a rotating order, so machine and disk noise
hit them alike. The table shows the median rate over the repeats and the
median of the per-run ratios to ``raw``. See ``benchmarks/README.md``.

    python benchmarks/bench_blocking.py            # full: n=2000, 3 repeats
    python benchmarks/bench_blocking.py --quick    # n=300: a few seconds
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import sys
import time
import warnings
from collections.abc import Callable, Sequence

import simplebroker
from _common import (
    CASES,
    QUEUE,
    Handle,
    Measurement,
    RawReference,
    SansioBlocking,
    add_arguments,
    case_paths,
    check_settings,
    connection_settings,
    evaluate_targets,
    finish_arguments,
    finish_case,
    log,
    log_measurement,
    machine_info,
    prefill,
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
from simplebroker.db import BrokerDB

# Re-exported for profiling scripts (README, "Profiling the adapter").
__all__ = ["IMPLEMENTATIONS", "SansioBlocking", "main", "measure_case", "prefill"]

# Targets for sansio-broker / raw (median of per-run ratios), per sync mode.
TARGETS = {"FULL": 0.85, "NORMAL": 0.6}


# --------------------------------------------------------------------------- implementations
def simplebroker_config(sync: str) -> simplebroker.Config:
    # Override keys carry the BROKER_ prefix; the resolved Config is read with
    # unprefixed keys ("SYNC_MODE"). env=None: the environment is not read.
    return simplebroker.resolve_config(override=sansio_config(sync))


class SimpleBrokerQueue:
    """``simplebroker.Queue(persistent=True)``: ``.write`` / ``.read``."""

    key = "simplebroker"
    label = f"simplebroker {importlib.metadata.version('simplebroker')}"
    sync_modes = ("OFF", "NORMAL", "FULL")  # it refuses EXTRA

    def prepare(self, path: str, sync: str) -> None:
        # SimpleBroker creates its own file (a Queue creates it lazily).
        BrokerDB(path, config=simplebroker_config(sync)).close()

    def open(self, path: str, sync: str) -> Handle:
        queue = simplebroker.Queue(QUEUE, db_path=path, persistent=True, config=simplebroker_config(sync))
        return Handle(queue.write, queue.read, queue.close)


Implementation = RawReference | SansioBlocking | SimpleBrokerQueue
IMPLEMENTATIONS: dict[str, Callable[[], Implementation]] = {
    "raw": RawReference,
    "sansio": SansioBlocking,
    "simplebroker": SimpleBrokerQueue,
}


# --------------------------------------------------------------------------- measuring
def measure_case(
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
    """One run of ``case`` at ``sync`` for every implementation, interleaved.

    Each implementation gets its own fresh file and connection; all are opened
    and warmed up first. Then the ``n`` timed operations go in rounds of
    ``block`` per implementation, round-robin, the order rotating every
    round, so disk and machine noise lands on all of them alike.
    """
    paths = case_paths(impls, case, sync, repeat, directory)
    prepare_files(impls, paths, case, sync, warmup + n, body)
    handles: dict[str, Handle] = {}
    latencies: dict[str, list[int]] = {impl.key: [] for impl in impls}
    try:
        for impl in impls:
            handles[impl.key] = impl.open(paths[impl.key], sync)
            warm_up(handles[impl.key], case, body, warmup)
        settings = {impl.key: connection_settings(paths[impl.key]) for impl in impls}
        gc.collect()
        for impl, count in schedule(impls, n, block, repeat):
            latencies[impl.key] += time_block(handles[impl.key], case, body, count)
    finally:
        for handle in handles.values():
            handle.close()
    return finish_case(impls, paths, case, sync, repeat, n, warmup, latencies, settings)


# --------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, list(IMPLEMENTATIONS), default_sync=["FULL", "NORMAL"])
    return finish_arguments(parser, parser.parse_args(argv))


def main(argv: Sequence[str] | None = None) -> int:
    return run_in_scratch(parse_args(argv), run)


def run(args: argparse.Namespace, directory: str) -> int:
    machine = machine_info(directory, packages=["simplebroker"])
    if refuse_memory_filesystem(machine, directory, args.allow_tmpfs):
        return 2

    impls = [IMPLEMENTATIONS[key]() for key in args.impl]
    labels = {impl.key: impl.label for impl in impls}
    body = "m" * args.body_size
    print_preamble(
        machine, args, "auto vacuum OFF (BROKER_AUTO_VACUUM=0) for sansio-broker and simplebroker; raw never vacuums"
    )

    measurements: list[Measurement] = []
    problems: list[str] = []
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for sync in args.sync:
            present = [impl for impl in impls if sync in impl.sync_modes]
            for impl in impls:
                if impl not in present and repeat == 0:
                    log(f"  skipping {impl.label} at synchronous={sync}: it does not support that mode")
            for case in CASES:
                for m in measure_case(present, case, sync, repeat, directory, args.n, args.warmup, args.block, body):
                    measurements.append(m)
                    problems.extend(check_settings(m))
                    log_measurement(m, args.repeats, labels[m.impl])
    elapsed = time.perf_counter() - started

    rows = summarize(measurements, impls, args.sync)
    targets = evaluate_targets(rows, "sansio", TARGETS)
    print_results(rows, args.repeats, args.n, elapsed)
    print_targets(targets, "sansio-broker / raw sqlite3")
    print_problems(problems)
    if args.json:
        write_json(args.json, machine, args, elapsed, rows, targets, measurements, problems)
    return 0


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())

"""Waiting consumers under trio: ``watch()`` in a nursery, ``get()`` under cancel scopes, ``broker.get``.

1. A nursery of workers, each running ``async for body in jobs.watch()``: it
   waits, without polling and without holding a pooled connection, until a
   job arrives, and the job is claimed before the worker sees it (exactly
   once). Shutdown is trio's: once every job is done, cancelling the
   nursery's cancel scope ends the workers where they wait, losing nothing
   (a job claimed for a cancelled worker goes to the next one or back to
   pending).
2. ``get(timeout=...)`` answers ``None`` when nothing arrives in time;
   ``trio.move_on_after`` cancels a waiting ``get()`` like any other call.
3. ``broker.get([urgent, normal])`` waits on two queues at once and claims
   from the first, in the order given, that has a message: the urgent one,
   even when an older normal one is pending.

Run it from anywhere: ``python examples/trio_waiting.py [path/to/db]``
(default ``.broker.db`` in the current directory).
"""

from __future__ import annotations

import sys
from collections import Counter
from functools import partial

import trio

from sansio_broker.adapters.trio import TrioBroker, TrioQueue, trio_broker

WORKERS = 4
JOBS = 100


async def work(name: str, jobs: TrioQueue, done: list[tuple[str, str]], all_done: trio.Event) -> None:
    async with jobs.watch() as arrivals:  # closed on leaving the block (here: when cancelled)
        async for body in arrivals:  # waits for a job, claims it, then yields it
            done.append((body, name))  # the job's work
            if len(done) == JOBS:
                all_done.set()


async def wait_for_one(broker: TrioBroker, queues: list[str], got: list[tuple[str, str]]) -> None:
    found = await broker.get(queues)  # waits on every queue in the list
    assert found is not None  # no timeout: None only when one passes
    got.append(found)


async def main(path: str = ".broker.db") -> None:
    async with trio_broker(path, pool_size=2) as broker:
        # 1. A nursery of waiting workers, cancelled once the work is done.
        jobs = TrioQueue("trio_waiting.jobs", broker)
        await jobs.delete()  # start empty, so a second run prints the same
        done: list[tuple[str, str]] = []  # (job, worker that did it)
        all_done = trio.Event()
        async with trio.open_nursery() as nursery:
            for k in range(WORKERS):
                nursery.start_soon(work, f"worker-{k}", jobs, done, all_done)
            for start in range(0, JOBS, 20):
                await jobs.write_many([f"job {n}" for n in range(start, start + 20)])  # wakes the waiters
            await all_done.wait()
            nursery.cancel_scope.cancel()  # the workers wait in watch(): cancelling them loses nothing
        per_worker = Counter(name for _, name in done)
        for name in sorted(per_worker):
            print(f"{name} did {per_worker[name]} jobs")
        times = Counter(body for body, _ in done)
        once = sum(times[f"job {n}"] == 1 for n in range(JOBS))
        print(f"{once} of {JOBS} jobs done exactly once; {len(done)} done in all; left: {await jobs.size()}")

        # 2. Timeouts and cancel scopes.
        print("get(timeout=0.05) on an empty queue:", await jobs.get(timeout=0.05))
        with trio.move_on_after(0.05) as scope:
            await jobs.get()
        print(f"move_on_after cancelled a waiting get(): {scope.cancelled_caught}; pending: {await jobs.size()}")

        # 3. One waiter, two queues, the first in the list wins.
        urgent = TrioQueue("trio_waiting.urgent", broker)
        normal = TrioQueue("trio_waiting.normal", broker)
        await urgent.delete()
        await normal.delete()
        levels = [urgent.name, normal.name]  # highest first
        got: list[tuple[str, str]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_one, broker, levels, got)  # waits: both queues are empty
            await normal.write("normal: resize photo")  # wakes it
        await normal.write("normal: send email")
        await urgent.write("urgent: page on-call")  # newer, but on the first queue of the list
        await wait_for_one(broker, levels, got)  # both have one: no wait
        await wait_for_one(broker, levels, got)
        for queue, body in got:
            print(f"broker.get got {body!r} from {queue}")
        print("broker.get(timeout=0) with both empty:", await broker.get(levels, timeout=0))


if __name__ == "__main__":
    trio.run(partial(main, *sys.argv[1:2]))

"""A producer and a pool of worker tasks waiting on one queue, each job done once.

Each worker runs ``async for body in queue.watch()``: it waits, without
polling, until a job arrives, and the job is claimed in its own transaction
before the worker sees it, so no two workers ever get the same job, even
across processes. Waiting workers are served in the order they started
waiting, and a burst of jobs is claimed for several of them in one
transaction.

A waiting worker holds no pooled connection: here four workers share a pool
of two (``pool_size``), left to the producer while they wait.

Shutdown is the asyncio way: once every job is done, ``main`` cancels the
worker tasks. A worker cancelled while it waits loses nothing: a job claimed
for it at that moment goes to the next waiting worker, or back to pending.

Run it from anywhere: ``python examples/asyncio_worker_pool.py [path/to/db]``
(default ``.broker.db`` in the current directory).
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

WORKERS = 4
JOBS = 200
BATCH = 20


async def produce(queue: AsyncQueue) -> None:
    for start in range(0, JOBS, BATCH):
        await queue.write_many([f"job {n}" for n in range(start, start + BATCH)])
        await asyncio.sleep(0.01)  # the producer's own pace, so the workers wait between batches (not polling)


async def work(name: str, queue: AsyncQueue, done: list[tuple[str, str]], all_done: asyncio.Event) -> None:
    async with queue.watch() as jobs:  # closed on leaving the block (here: when cancelled)
        async for body in jobs:  # waits for a job, claims it, then yields it
            done.append((body, name))  # the job's work
            if len(done) == JOBS:
                all_done.set()


async def main(path: str = ".broker.db") -> None:
    async with async_broker(path, pool_size=2) as broker:
        queue = AsyncQueue("asyncio_worker_pool.jobs", broker)
        await queue.delete()  # start empty, so a second run prints the same
        done: list[tuple[str, str]] = []  # (job, worker that did it)
        all_done = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            workers = [group.create_task(work(f"worker-{k}", queue, done, all_done)) for k in range(WORKERS)]
            group.create_task(produce(queue))
            await all_done.wait()
            for worker in workers:
                worker.cancel()  # each waits in watch(): cancelling it loses nothing

        per_worker = Counter(name for _, name in done)
        for name in sorted(per_worker):
            print(f"{name} did {per_worker[name]} jobs")
        times = Counter(body for body, _ in done)
        once = sum(times[f"job {n}"] == 1 for n in range(JOBS))
        print(f"{once} of {JOBS} jobs done exactly once; {len(done)} done in all")
        print("left in the queue:", await queue.size())
        print(f"{WORKERS} waiting workers shared a pool of {broker.pool_size} connections")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))

"""A producer and a pool of worker tasks sharing one queue, each job done once.

The producer writes jobs in batches while the workers already claim them.
``claim()`` commits each claim in its own transaction, so no two workers
ever get the same job, even across processes. A worker stops cleanly when
the queue is empty *and* the producer has finished: it notes whether the
producer was done *before* it looked, so an empty look at that point means
empty for good, and a job written while it looked is never left behind.

``pool_size`` bounds the SQLite connections (each with its own thread) that
all the tasks share; here one per worker plus one for the producer.

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


async def produce(queue: AsyncQueue, producer_done: asyncio.Event) -> None:
    for start in range(0, JOBS, BATCH):
        await queue.write_many([f"job {n}" for n in range(start, start + BATCH)])
        await asyncio.sleep(0.01)  # jobs trickle in while the workers run
    producer_done.set()


async def work(name: str, queue: AsyncQueue, producer_done: asyncio.Event, done_by: dict[str, list[str]]) -> None:
    while True:
        finished = producer_done.is_set()  # before looking: see the docstring
        job = await queue.claim()  # Message(body, id) or None
        if job is None:
            if finished:
                return  # empty, and nothing more will come
            await asyncio.sleep(0.005)  # empty for now: wait for the producer
            continue
        await asyncio.sleep(0.001)  # the job's work
        done_by[job.body].append(name)


async def main(path: str = ".broker.db") -> None:
    async with async_broker(path, pool_size=WORKERS + 1) as broker:
        queue = AsyncQueue("asyncio_worker_pool.jobs", broker)
        await queue.delete()  # start empty, so a second run prints the same
        producer_done = asyncio.Event()
        done_by: dict[str, list[str]] = {f"job {n}": [] for n in range(JOBS)}  # job -> workers that did it
        async with asyncio.TaskGroup() as group:
            group.create_task(produce(queue, producer_done))
            for k in range(WORKERS):
                group.create_task(work(f"worker-{k}", queue, producer_done, done_by))

        per_worker = Counter(name for names in done_by.values() for name in names)
        for name in sorted(per_worker):
            print(f"{name} did {per_worker[name]} jobs")
        once = sum(len(names) == 1 for names in done_by.values())
        print(f"{once} of {JOBS} jobs done exactly once; {sum(per_worker.values())} done in all")
        print("left in the queue:", await queue.size())
        print("connections in the pool at most:", broker.pool_size)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))

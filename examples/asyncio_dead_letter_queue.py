"""Retries and a dead-letter queue: a waiting worker, each step one atomic transaction.

A job is JSON that carries its own retry count. The worker claims a job and,
in the *same* ``broker.transaction()``, writes its result, re-queues it with
``attempts + 1`` (to the back of the queue), or, after ``MAX_ATTEMPTS``
failures, moves it to the dead-letter queue. Because claim and write commit
together, a job is never lost between them and never both retried and
dead-lettered; and if the worker crashes mid-job (any other exception, or a
cancellation), the transaction rolls back and the job is pending again,
unchanged.

The worker waits for jobs with ``jobs.watch(peek=True, after=0)``: it yields
every pending job and then each new one as it arrives, *without* claiming
it, so the claim can happen inside the transaction that settles the job.
(``get()`` would claim in a transaction of its own, before the work: a crash
between the two would lose the job.) On each arrival the worker settles
every pending job, then waits again; it stops once all jobs are settled.

A transaction holds the database's write lock until it ends, so keep the
work inside it short; several workers would simply take turns.

Run it from anywhere: ``python examples/asyncio_dead_letter_queue.py [path/to/db]``
(default ``.broker.db`` in the current directory).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from sansio_broker.adapters.asyncio import AsyncBroker, AsyncQueue, async_broker

JOBS = 10
MAX_ATTEMPTS = 3
ALWAYS_FAILING = {3, 7}  # bad input: every attempt fails
FLAKY = 5  # fails on its first attempt only
CRASHING = 8  # the worker crashes on its first try (not a job failure)
crashed: set[int] = set()


class JobFailed(Exception):
    """The job itself failed; it may succeed on a retry."""


def handle(job: dict[str, Any]) -> str:
    """The job's work."""
    n = job["n"]
    if n in ALWAYS_FAILING:
        raise JobFailed(f"bad input in job {n}")
    if n == FLAKY and job["attempts"] == 0:
        raise JobFailed("timed out")
    if n == CRASHING and n not in crashed:
        crashed.add(n)
        raise RuntimeError("worker crashed")
    return f"job {n}: {n * n}"


async def process_one(broker: AsyncBroker, jobs: AsyncQueue, results: AsyncQueue, dead: AsyncQueue) -> bool | None:
    """Claim one job and settle it atomically: True if done or dead-lettered, False if re-queued, None if none."""
    async with broker.transaction():
        message = await jobs.claim()
        if message is None:
            return None
        job = json.loads(message.body)
        try:
            result = handle(job)
        except JobFailed as error:
            job["attempts"] += 1
            job["error"] = str(error)
            if job["attempts"] >= MAX_ATTEMPTS:
                await dead.write(json.dumps(job))
                print(f"job {job['n']}: failed ({error}), attempt {job['attempts']}: dead-lettered")
                return True
            await jobs.write(json.dumps(job))
            print(f"job {job['n']}: failed ({error}), attempt {job['attempts']}: re-queued")
            return False
        await results.write(result)
        if job["attempts"]:
            print(f"job {job['n']}: done on attempt {job['attempts'] + 1}")
        return True  # leaving the block commits the claim and the write together


async def worker(broker: AsyncBroker, jobs: AsyncQueue, results: AsyncQueue, dead: AsyncQueue) -> None:
    """Wait for jobs and settle each; return once all ``JOBS`` are settled."""
    settled = 0
    async with jobs.watch(peek=True, after=0) as arrivals:  # every pending job, then each new one
        async for _ in arrivals:  # a job is pending (seen, not claimed)
            while settled < JOBS:
                try:
                    outcome = await process_one(broker, jobs, results, dead)
                except RuntimeError as error:
                    # The transaction rolled back: the job is pending again, as it was.
                    pending = [json.loads(m.body) for m in await jobs.peek_many(100)]
                    back = next(job for job in pending if job["n"] == CRASHING)
                    print(f"job {CRASHING}: {error}: rolled back, pending again with attempts={back['attempts']}")
                    continue
                if outcome is None:
                    break  # nothing pending: wait for the next arrival
                if outcome:
                    settled += 1
            if settled == JOBS:
                return


async def main(path: str = ".broker.db") -> None:
    async with async_broker(path, pool_size=2) as broker:
        jobs = AsyncQueue("asyncio_dlq.jobs", broker)
        results = AsyncQueue("asyncio_dlq.results", broker)
        dead = AsyncQueue("asyncio_dlq.dead", broker)
        for queue in (jobs, results, dead):
            await queue.delete()  # start empty, so a second run prints the same

        async with asyncio.TaskGroup() as group:
            group.create_task(worker(broker, jobs, results, dead))  # waits: nothing queued yet
            for n in range(JOBS):
                await jobs.write(json.dumps({"n": n, "attempts": 0}))  # each write wakes the worker
        print(f"queued {JOBS} jobs one by one; the worker settled them as they came")

        print("results:", len(await results.read_all()), "jobs done")
        dead_jobs = [json.loads(body) for body in await dead.read_all()]
        print("dead-lettered:", sorted(job["n"] for job in dead_jobs))
        for job in dead_jobs:
            print(f"  job {job['n']} after {job['attempts']} attempts: {job['error']}")
        print("pending jobs left:", await jobs.size())


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:2]))

"""A producer, a consumer, a dead-letter queue and an atomic hand-off, blocking.

Run it from anywhere: ``python examples/blocking_basic.py [path/to/db]``.
Without a path it uses ``.broker.db`` in the current directory, the same
default file SimpleBroker's ``broker`` CLI uses, so afterwards
``broker list --stats`` shows what this left behind.
"""

from __future__ import annotations

import sys

from sansio_broker.adapters.blocking import Broker, Queue


def main(path: str = ".broker.db") -> None:
    with Broker(path) as broker:
        tasks = Queue("tasks", broker)
        results = Queue("results", broker)
        failed = Queue("failed", broker)

        ids = tasks.write_many([f"job {n}" for n in range(5)])
        print(f"queued {len(ids)} jobs, IDs {ids[0]}..{ids[-1]}")
        print("next up (peek, not claimed):", tasks.read(peek=True))

        # Claim a job and record its result atomically: if anything in the
        # block fails, the job is pending again and no result is written.
        while tasks.size():
            with broker.transaction():
                job = tasks.claim()
                assert job is not None
                if job.body.endswith("3"):
                    failed.write(job.body)  # a dead-letter queue for bad jobs
                else:
                    results.write(f"{job.body} done (id {job.id})")

        print("results:", results.read_all())
        print("dead letters:", failed.read_all())
        print("stats:", broker.get_queue_stats())
        print("vacuumed claimed rows:", broker.vacuum())


if __name__ == "__main__":
    main(*sys.argv[1:2])

"""A consumer process of the waiting tests: threads that wait with ``get`` (our blocking adapter).

    python waiting_worker.py consumer DB QUEUE THREADS

It opens the database, prints ``ready``, waits for ``go`` on stdin, then runs
THREADS threads that each call ``get_message()`` until they receive the body
``stop`` (one per thread: the test writes as many as there are consumer
threads, after every producer has finished). A ``get`` that waits longer than
the workers' deadline ends the worker with an error instead of hanging it.
Prints one JSON line: one list per thread of ``[body, id]`` in the order that
thread received them (its ``stop`` not included).
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from sansio_broker.adapters.blocking import Broker, Queue
from tests.support.workers import DEADLINE_SECONDS, wait_for_go

STOP = "stop"


def consumer(db: str, queue_name: str, threads: int) -> list[list[list[Any]]]:
    received: list[list[list[Any]]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    with Broker(db) as broker:
        queue = Queue(queue_name, broker)
        wait_for_go()

        def take(index: int) -> None:
            try:
                while True:
                    message = queue.get_message(timeout=DEADLINE_SECONDS)
                    if message is None:
                        raise SystemExit(f"thread {index}: no message for {DEADLINE_SECONDS} s")
                    if message.body == STOP:
                        return
                    received[index].append([message.body, message.id])
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=take, args=(i,)) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    if errors:
        raise SystemExit(f"{len(errors)} consumer thread(s) failed: {errors[:3]!r}")
    return received


def main(argv: list[str]) -> None:
    role, db, queue, threads = argv
    if role != "consumer":
        raise SystemExit(f"unknown role {role!r}")
    print(json.dumps(consumer(db, queue, int(threads))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

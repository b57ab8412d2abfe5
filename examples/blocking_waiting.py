"""Waiting consumers, blocking: worker threads on ``queue.get()``, and ``for body in queue.watch()``.

1. A pool of worker threads, each calling ``jobs.get()``: it blocks until a
   job arrives and claims it (exactly once: no two threads get the same job).
   Waiting threads are served in the order they started waiting. Shutdown is
   a sentinel: one ``stop`` per thread, written after the last job (claims
   take the oldest message first, so ``stop`` comes only once the jobs are
   taken).
2. ``get(timeout=...)`` answers ``None`` when nothing arrives in time;
   ``timeout=0`` makes one try without waiting.
3. A thread running ``for body in events.watch()`` on a second ``Broker``
   object on the same file: a write through the first one wakes it at once
   (every broker object of a process on one file shares the signal).
   Shutdown is closing the broker: ``watch()`` ends, and a ``get()`` waiting
   on it would raise ``BrokerClosedError``.

In the main thread, Ctrl-C interrupts a waiting ``get()`` like any call, and
loses nothing: a message claimed for it at that moment is pending again.

Run it from anywhere: ``python examples/blocking_waiting.py [path/to/db]``
(default ``.broker.db`` in the current directory).
"""

from __future__ import annotations

import sys
import threading
from collections import Counter

from sansio_broker.adapters.blocking import Broker, Queue

WORKERS = 4
JOBS = 100
EVENTS = 5
STOP = "stop"


def work(name: str, jobs: Queue, done: list[tuple[str, str]]) -> None:
    while (body := jobs.get()) != STOP:  # blocks until a job arrives
        assert body is not None  # no timeout: get() returns None only when one passes
        done.append((body, name))  # the job's work (list.append is thread-safe)


def watch_events(events: Queue, seen: list[str], all_seen: threading.Event) -> None:
    for body in events.watch():  # claims each event, then yields it; ends when the broker closes
        seen.append(body)
        if len(seen) == EVENTS:
            all_seen.set()
    print("watch() ended: its broker was closed")


def main(path: str = ".broker.db") -> None:
    with Broker(path) as broker:
        jobs = Queue("blocking_waiting.jobs", broker)
        events = Queue("blocking_waiting.events", broker)
        jobs.delete()  # start empty, so a second run prints the same
        events.delete()

        # 1. Worker threads waiting in get(), stopped by sentinels.
        done: list[tuple[str, str]] = []  # (job, thread that did it)
        threads = [threading.Thread(target=work, args=(f"worker-{k}", jobs, done)) for k in range(WORKERS)]
        for thread in threads:
            thread.start()  # each waits: nothing queued yet
        for start in range(0, JOBS, 20):
            jobs.write_many([f"job {n}" for n in range(start, start + 20)])  # each batch wakes the waiters
        jobs.write_many([STOP] * WORKERS)  # after the last job: one per thread
        for thread in threads:
            thread.join()
        per_worker = Counter(name for _, name in done)
        for name in sorted(per_worker):
            print(f"{name} did {per_worker[name]} jobs")
        times = Counter(body for body, _ in done)
        once = sum(times[f"job {n}"] == 1 for n in range(JOBS))
        print(f"{once} of {JOBS} jobs done exactly once; {len(done)} done in all; left: {jobs.size()}")

        # 2. Timeouts.
        print("get(timeout=0.05) on an empty queue:", jobs.get(timeout=0.05))
        print("get(timeout=0) on an empty queue:", jobs.get(timeout=0))

        # 3. watch() in a thread, on a second broker object, ended by closing that broker.
        seen: list[str] = []
        all_seen = threading.Event()
        other = Broker(path)
        watcher = threading.Thread(target=watch_events, args=(Queue(events.name, other), seen, all_seen))
        watcher.start()
        for n in range(EVENTS):
            events.write(f"event {n}")  # through the first broker: wakes the other's watch() at once
        if not all_seen.wait(timeout=30):  # a hang guard, never reached when all is well
            raise SystemExit("watch() did not see every event within 30 s")
        other.close()  # wakes the waiting watch(): its loop ends
        watcher.join()
        print(f"watch() saw {seen}; pending now: {events.size()}")


if __name__ == "__main__":
    main(*sys.argv[1:2])

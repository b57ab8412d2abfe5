"""Consumers woken by another process: a ping-pong between two processes, then SimpleBroker's CLI.

This process starts a second one (this same file, with ``--ponger``); each
waits in ``get()`` for the other's write. Within one process a write wakes
waiters at once; across processes each broker's watcher notices other
processes' commits (SQLite's ``PRAGMA data_version``; on Linux also file
events on the database's ``-wal`` file) within a few milliseconds, then the
waiters claim. Neither side polls in its own code, and neither holds a
connection while it waits.

Last, if the ``simplebroker`` package is installed, its ``broker`` CLI
(``python -m simplebroker``) writes a message in a third process, and the
same waiting ``get()`` is woken by it.

Shutdown: a ``stop`` message ends the other process; every ``get`` here has a
timeout as a hang guard, in case the other process failed to start.

Run it from anywhere: ``python examples/blocking_cross_process.py [path/to/db]``
(default ``.broker.db`` in the current directory).
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import subprocess
import sys
import time

from sansio_broker.adapters.blocking import Broker, Queue

ROUNDS = 20
PINGS = "cross_process.pings"
PONGS = "cross_process.pongs"
STOP = "stop"
GUARD = 60.0  # seconds: a hang guard, never reached when all is well


def ponger(path: str) -> None:
    """The other process: answer each ping with a pong until ``stop``."""
    with Broker(path) as broker:
        pings, pongs = Queue(PINGS, broker), Queue(PONGS, broker)
        while (body := pings.get(timeout=GUARD)) is not None and body != STOP:  # waits for a ping
            pongs.write(body.replace("ping", "pong"))


def reply(pongs: Queue) -> str:
    body = pongs.get(timeout=GUARD)  # waits for the other process's write
    if body is None:
        raise SystemExit(f"no reply within {GUARD} s: did the other process fail?")
    return body


def main(path: str = ".broker.db") -> None:
    path = os.path.abspath(path)  # the other processes may resolve a relative path elsewhere
    with Broker(path) as broker:
        pings, pongs = Queue(PINGS, broker), Queue(PONGS, broker)
        pings.delete()  # start empty, so a second run prints the same
        pongs.delete()

        other = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--ponger", path])
        try:
            pings.write("ping 0")
            print("waiting while the other process starts:", reply(pongs))
            round_trips = []
            for n in range(1, ROUNDS + 1):
                start = time.perf_counter()
                pings.write(f"ping {n}")
                answer = reply(pongs)
                round_trips.append(time.perf_counter() - start)
                assert answer == f"pong {n}", answer
            pings.write(STOP)
        finally:
            other.wait(timeout=GUARD)
        print(f"{ROUNDS} more round trips, each side waiting in get() for the other's write")
        print(f"(median round trip here: {statistics.median(round_trips) * 1000:.1f} ms)")
        print("other process exited with", other.returncode)

        if importlib.util.find_spec("simplebroker") is None:
            print("simplebroker is not installed: its CLI part is skipped")
            return
        cli = [sys.executable, "-m", "simplebroker", "-f", path, "write", PONGS, "hello from SimpleBroker's CLI"]
        writer = subprocess.Popen(cli)
        try:
            print("woken by SimpleBroker's CLI:", reply(pongs))
        finally:
            writer.wait(timeout=GUARD)
        print("left on the queues:", pings.size() + pongs.size())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ponger"]:
        ponger(sys.argv[2])
    else:
        main(*sys.argv[1:2])

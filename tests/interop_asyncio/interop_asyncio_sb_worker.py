"""A SimpleBroker 8 worker process for the asyncio interop tests.

    python interop_asyncio_sb_worker.py ROLE DB QUEUE OPTIONS_JSON

It opens the database with SimpleBroker's ``Queue`` (``persistent=True``),
prints ``ready``, waits for ``go`` on stdin, does its part, and prints one
JSON object as its last line.

- ``reader``: claim until the queue is empty for good, that is until the
  marker file ``done`` exists and one more look finds nothing; ``mode`` is
  ``read`` (one message per call), ``read_many`` (10 per call) or
  ``generator`` (``read_generator`` run to its end). Prints ``{"got":
  [[body, id], ...], "before_done": n}``, ``n`` being how many were taken
  before the marker appeared (proof that reading overlapped the writing).
- ``writer``: write ``count`` messages ``<tag>-<i>`` one by one, sleeping
  ``pause`` seconds after each. Prints ``{"wrote": [[body, id], ...]}``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import simplebroker

from tests.support.workers import DEADLINE_SECONDS, wait_for_go


def take(queue: simplebroker.Queue, mode: str) -> list[list[Any]]:
    if mode == "read":
        got = queue.read(with_timestamps=True)
        return [] if got is None else [list(got)]
    if mode == "read_many":
        return [list(pair) for pair in queue.read_many(10, with_timestamps=True)]
    if mode == "generator":
        return [list(pair) for pair in queue.read_generator(with_timestamps=True)]
    raise SystemExit(f"unknown reader mode {mode!r}")


def read(queue: simplebroker.Queue, options: dict[str, Any]) -> dict[str, Any]:
    got: list[list[Any]] = []
    before_done = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:
        finished = os.path.exists(options["done"])  # before looking: an empty look after it is final
        taken = take(queue, options["mode"])
        got.extend(taken)
        if not finished:
            before_done += len(taken)
        if taken:
            time.sleep(options.get("pause", 0))
            continue
        if finished:
            return {"got": got, "before_done": before_done}
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {DEADLINE_SECONDS}s with {len(got)} messages")
        time.sleep(0.002)


def write(queue: simplebroker.Queue, options: dict[str, Any]) -> dict[str, Any]:
    wrote: list[list[Any]] = []
    for i in range(options["count"]):
        body = f"{options['tag']}-{i}"
        wrote.append([body, queue.write(body)])
        time.sleep(options.get("pause", 0))
    return {"wrote": wrote}


def main() -> None:
    role, db, name, raw = sys.argv[1:5]
    options = json.loads(raw)
    queue = simplebroker.Queue(name, db_path=db, persistent=True)
    try:
        queue.exists()  # the file is open before ``ready``
        wait_for_go()
        result = read(queue, options) if role == "reader" else write(queue, options)
    finally:
        queue.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

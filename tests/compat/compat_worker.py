"""A worker process for the concurrent interop tests.

    python compat_worker.py ROLE DB QUEUE [OPTIONS_JSON]

It opens the database, prints ``ready``, waits for ``go`` on stdin (so every
worker starts at the same moment), does its part, and prints one JSON line:
``[[body, id], ...]`` in the order it wrote or received the messages.

Roles (``ours-*`` use our blocking adapter, ``sb-*`` SimpleBroker 8's
``Queue``):

- ``*-writer``: write ``count`` messages ``<tag>-<i>``; ours with ``mode``
  ``single`` (``write``) or ``many`` (``write_many`` in chunks of 10). With
  ``done_dir``, create ``<done_dir>/<tag>`` once every write has committed.
- ``*-consumer``: claim until the queue is empty; ours with ``mode``
  ``claim``, ``claim_many`` or ``stream_batch`` (at-least-once batches of 5,
  run to the end), SimpleBroker with ``read`` or ``read_many``.
- ``*-claimer``: like a consumer, but an empty queue only ends it once
  ``writers`` markers exist in ``done_dir``.

- ``*-checkpoint``: peek with ``after_timestamp=<highest ID seen>`` until
  ``writers`` markers exist in ``done_dir`` and a last look finds nothing:
  a reader that trusts IDs to become visible in order (an ID commits with its row).

``auto_vacuum`` (default true): false turns automatic vacuum off in both
programs, so claimed rows stay in the file for inspection.

``pause`` (seconds, default 0) is slept after each write call or each
successful take, like work done between messages, so that no process
monopolizes the write lock and both programs really interleave.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.support.workers import DEADLINE_SECONDS, drain, mark_done, wait_for_go

Pairs = list[list[Any]]


def _mark_done(options: dict[str, Any]) -> None:
    if options.get("done_dir"):
        mark_done(options["done_dir"], options["tag"])


def _our_config(options: dict[str, Any]) -> dict[str, str]:
    return {} if options.get("auto_vacuum", True) else {"BROKER_AUTO_VACUUM": "0"}


def _sb_config(options: dict[str, Any]) -> Any:
    import simplebroker

    if options.get("auto_vacuum", True):
        return None
    return simplebroker.resolve_config(override={"BROKER_AUTO_VACUUM": 0})


def ours_writer(db: str, queue: str, options: dict[str, Any]) -> Pairs:
    from sansio_broker.adapters.blocking import Broker

    bodies = [f"{options['tag']}-{i}" for i in range(options["count"])]
    written: Pairs = []
    with Broker(db, config=_our_config(options)) as broker:
        wait_for_go()
        pause = options.get("pause", 0)
        if options.get("mode", "single") == "single":
            for body in bodies:
                written.append([body, broker.write(queue, body)])
                time.sleep(pause)
        else:
            for start in range(0, len(bodies), 10):
                chunk = bodies[start : start + 10]
                written.extend(map(list, zip(chunk, broker.write_many(queue, chunk), strict=True)))
                time.sleep(pause)
    _mark_done(options)
    return written


def sb_writer(db: str, queue: str, options: dict[str, Any]) -> Pairs:
    import simplebroker

    bodies = [f"{options['tag']}-{i}" for i in range(options["count"])]
    with simplebroker.Queue(queue, db_path=db, persistent=True, config=_sb_config(options)) as q:
        wait_for_go()
        written: Pairs = []
        for body in bodies:
            written.append([body, q.write(body)])
            time.sleep(options.get("pause", 0))
    _mark_done(options)
    return written


def _ours_taker(broker: Any, queue: str, mode: str) -> Callable[[], Pairs]:
    if mode == "claim":
        return lambda: [[m.body, m.id]] if (m := broker.claim(queue)) is not None else []
    if mode == "claim_many":
        return lambda: [[m.body, m.id] for m in broker.claim_many(queue, 7)]
    if mode == "stream_batch":
        return lambda: [[m.body, m.id] for m in broker.stream(queue, commit_interval=5)]
    raise SystemExit(f"unknown mode {mode!r}")


def _sb_taker(q: Any, mode: str) -> Callable[[], Pairs]:
    if mode == "read":
        return lambda: [list(found)] if (found := q.read(with_timestamps=True)) is not None else []
    if mode == "read_many":
        return lambda: [list(found) for found in q.read_many(7, with_timestamps=True)]
    raise SystemExit(f"unknown mode {mode!r}")


def _drain(take: Callable[[], Pairs], options: dict[str, Any], until_done: bool) -> Pairs:
    if not until_done:
        return drain(take, pause=options.get("pause", 0))
    return drain(take, options["done_dir"], options["writers"], pause=options.get("pause", 0))


def ours_consumer(db: str, queue: str, options: dict[str, Any], until_done: bool = False) -> Pairs:
    from sansio_broker.adapters.blocking import Broker

    with Broker(db, config=_our_config(options)) as broker:
        take = _ours_taker(broker, queue, options.get("mode", "claim"))
        wait_for_go()
        return _drain(take, options, until_done)


def sb_consumer(db: str, queue: str, options: dict[str, Any], until_done: bool = False) -> Pairs:
    import simplebroker

    with simplebroker.Queue(queue, db_path=db, persistent=True, config=_sb_config(options)) as q:
        take = _sb_taker(q, options.get("mode", "read"))
        wait_for_go()
        return _drain(take, options, until_done)


def _follow(peek_after: Callable[[int], Pairs], options: dict[str, Any]) -> Pairs:
    seen: Pairs = []
    checkpoint = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    finishing = False
    while True:
        page = peek_after(checkpoint)
        seen.extend(page)
        if page:
            checkpoint = page[-1][1]
            continue
        if finishing:
            return seen
        # Every write committed before its marker: one more full look ends it.
        finishing = len(os.listdir(options["done_dir"])) >= options["writers"]
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {DEADLINE_SECONDS}s with {len(seen)} messages")
        if not finishing:
            time.sleep(0.0005)


def ours_checkpoint(db: str, queue: str, options: dict[str, Any]) -> Pairs:
    from sansio_broker.adapters.blocking import Broker

    with Broker(db, config=_our_config(options)) as broker:
        wait_for_go()
        return _follow(
            lambda after: [[m.body, m.id] for m in broker.peek_many(queue, 100, after_timestamp=after)], options
        )


def sb_checkpoint(db: str, queue: str, options: dict[str, Any]) -> Pairs:
    import simplebroker

    with simplebroker.Queue(queue, db_path=db, persistent=True, config=_sb_config(options)) as q:
        wait_for_go()

        def peek_after(after: int) -> Pairs:
            return [list(m) for m in q.peek_many(100, after_timestamp=after, with_timestamps=True)]

        return _follow(peek_after, options)


def main(argv: list[str]) -> None:
    role, db, queue, *rest = argv
    options: dict[str, Any] = json.loads(rest[0]) if rest else {}
    if role == "ours-writer":
        result = ours_writer(db, queue, options)
    elif role == "sb-writer":
        result = sb_writer(db, queue, options)
    elif role in ("ours-consumer", "ours-claimer"):
        result = ours_consumer(db, queue, options, until_done=role == "ours-claimer")
    elif role in ("sb-consumer", "sb-claimer"):
        result = sb_consumer(db, queue, options, until_done=role == "sb-claimer")
    elif role == "ours-checkpoint":
        result = ours_checkpoint(db, queue, options)
    elif role == "sb-checkpoint":
        result = sb_checkpoint(db, queue, options)
    else:
        raise SystemExit(f"unknown role {role!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

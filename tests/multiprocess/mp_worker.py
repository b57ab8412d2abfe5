"""A worker process of the multi-process tests: our blocking adapter only.

    python mp_worker.py writer  DB QUEUE TAG COUNT MODE DONE_DIR
    python mp_worker.py claimer DB QUEUE DONE_DIR WRITERS MODE
    python mp_worker.py mover   DB SOURCE TARGET DONE_DIR UPSTREAM MARK_DIR TAG
    python mp_worker.py vacuumer DB DONE_DIR UPSTREAM
    python mp_worker.py holder  DB QUEUE BATCH HOLD_AFTER
    python mp_worker.py printer DB QUEUE TAG COUNT MODE

Each worker opens the database, prints ``ready``, waits for ``go`` on stdin,
works, and prints one JSON line: ``[[body, id], ...]`` in the order it wrote
or received the messages.

Writers write ``TAG-<i>`` for i < COUNT (MODE ``single``: one ``write`` each;
``many``: ``write_many`` in chunks) and then create ``DONE_DIR/TAG``.
Claimers take messages (MODE ``claim``, ``claim_many_tx``, ``stream`` or
``stream_batch``) until every writer is done and the queue is empty.
A mover moves batches from SOURCE to TARGET until UPSTREAM markers exist in
DONE_DIR and SOURCE is empty, then creates ``MARK_DIR/TAG``; it reports the
messages it moved. A vacuumer vacuums every few milliseconds until UPSTREAM
markers exist in DONE_DIR and reports ``[[rows removed, 0], ...]``.
The crash roles print one JSON line per message as soon as they have it and
are killed by the test: a holder takes an at-least-once stream batch of
BATCH and, after HOLD_AFTER messages, prints ``holding`` and sleeps with the
batch uncommitted; a printer writes ``TAG-<i>`` and prints each ``[body, id]``
the moment ``write`` (MODE ``single``) or ``write_many`` (``many``) returns.
``claim_many_tx`` claims inside an explicit transaction that also writes the
claimed IDs to the queue ``audit``, so both commit together.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker
from tests.support.workers import DEADLINE_SECONDS, drain, mark_done, wait_for_go

CHUNK = 25


def writer(db: str, queue: str, tag: str, count: int, mode: str, done_dir: str) -> list[list[Any]]:
    bodies = [f"{tag}-{i}" for i in range(count)]
    written: list[list[Any]] = []
    with Broker(db) as broker:
        wait_for_go()
        if mode == "single":
            written = [[body, broker.write(queue, body)] for body in bodies]
        elif mode == "many":
            for start in range(0, count, CHUNK):
                chunk = bodies[start : start + CHUNK]
                written.extend(
                    [body, ident] for body, ident in zip(chunk, broker.write_many(queue, chunk), strict=True)
                )
        else:
            raise SystemExit(f"unknown writer mode {mode!r}")
    # Every write has committed: tell the claimers.
    mark_done(done_dir, tag)
    return written


def _taker(broker: Broker, queue: str, mode: str) -> Callable[[], list[Message]]:
    if mode == "claim":
        return lambda: [m] if (m := broker.claim(queue)) is not None else []
    if mode == "claim_many_tx":

        def claim_and_audit() -> list[Message]:
            with broker.transaction():
                taken = broker.claim_many(queue, 7)
                if taken:
                    broker.write_many("audit", [str(m.id) for m in taken])
            return taken

        return claim_and_audit
    if mode == "stream":
        return lambda: list(broker.stream(queue))
    if mode == "stream_batch":
        # At least once: a batch commits when the next one is asked for, so
        # only a stream run to its end (queue empty) hands over exactly once.
        return lambda: list(broker.stream(queue, commit_interval=5))
    raise SystemExit(f"unknown claimer mode {mode!r}")


def claimer(db: str, queue: str, done_dir: str, writers: int, mode: str) -> list[list[Any]]:
    with Broker(db) as broker:
        take = _taker(broker, queue, mode)
        wait_for_go()
        return drain(_pairs(take), done_dir, writers)


def _pairs(take: Callable[[], list[Message]]) -> Callable[[], list[list[Any]]]:
    """``take`` reporting ``[body, id]`` pairs."""
    return lambda: [[m.body, m.id] for m in take()]


def mover(db: str, source: str, target: str, done_dir: str, upstream: int, mark_dir: str, tag: str) -> list[list[Any]]:
    with Broker(db) as broker:
        wait_for_go()
        moved = drain(_pairs(lambda: broker.move_many(source, target, 9)), done_dir, upstream)
    mark_done(mark_dir, tag)
    return moved


def vacuumer(db: str, done_dir: str, upstream: int) -> list[list[Any]]:
    removed: list[list[Any]] = []
    with Broker(db) as broker:
        wait_for_go()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while len(os.listdir(done_dir)) < upstream:
            removed.append([broker.vacuum(), 0])
            if time.monotonic() > deadline:
                raise SystemExit("vacuumer: upstream never finished")
            time.sleep(0.005)
    return removed


def holder(db: str, queue: str, batch: int, hold_after: int) -> None:
    with Broker(db) as broker:
        wait_for_go()
        for i, message in enumerate(broker.stream(queue, commit_interval=batch)):
            print(json.dumps([message.body, message.id]), flush=True)
            if i + 1 == hold_after:
                print("holding", flush=True)
                time.sleep(DEADLINE_SECONDS)
                raise SystemExit("holder was not killed")


def printer(db: str, queue: str, tag: str, count: int, mode: str) -> None:
    with Broker(db) as broker:
        wait_for_go()
        bodies = [f"{tag}-{i}" for i in range(count)]
        if mode == "single":
            for body in bodies:
                print(json.dumps([body, broker.write(queue, body)]), flush=True)
            return
        for start in range(0, count, CHUNK):
            chunk = bodies[start : start + CHUNK]
            for body, ident in zip(chunk, broker.write_many(queue, chunk), strict=True):
                print(json.dumps([body, ident]), flush=True)


def main(argv: list[str]) -> None:
    role, *args = argv
    if role == "writer":
        db, queue, tag, count, mode, done_dir = args
        result = writer(db, queue, tag, int(count), mode, done_dir)
    elif role == "claimer":
        db, queue, done_dir, writers, mode = args
        result = claimer(db, queue, done_dir, int(writers), mode)
    elif role == "mover":
        db, source, target, done_dir, upstream, mark_dir, tag = args
        result = mover(db, source, target, done_dir, int(upstream), mark_dir, tag)
    elif role == "vacuumer":
        db, done_dir, upstream = args
        result = vacuumer(db, done_dir, int(upstream))
    elif role == "holder":
        db, queue, batch, hold_after = args
        holder(db, queue, int(batch), int(hold_after))
        return
    elif role == "printer":
        db, queue, tag, count, mode = args
        printer(db, queue, tag, int(count), mode)
        return
    else:
        raise SystemExit(f"unknown role {role!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

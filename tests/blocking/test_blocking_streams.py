"""At-least-once streams of the blocking adapter: other threads and the write lock, closing.

What every adapter shares (redelivery, commit, refusals while a batch is
open) is in tests/contract/test_contract_streams.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from sansio_broker.adapters.blocking import Broker
from tests.blocking.blocking_support import QUIET
from tests.support.rawdb import rows


def claimed_flags(db_path: Path, queue: str = "q") -> list[int]:
    return [claimed for *_, claimed in rows(db_path, queue)]


def test_other_threads_wait_for_the_batch_then_proceed(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b"])
    stream = broker.stream("q", commit_interval=5)
    assert next(stream).body == "a"
    result: dict[str, int] = {}
    thread = threading.Thread(target=lambda: result.setdefault("id", broker.write("other", "x")))
    thread.start()
    time.sleep(0.2)
    assert "id" not in result  # blocked on the write lock held by the batch
    assert [m.body for m in stream] == ["b"]  # exhausting commits and releases the lock
    thread.join(timeout=10)
    assert "id" in result
    assert claimed_flags(db_path) == [1, 1]


def test_closing_the_broker_rolls_back_an_open_batch(db_path: Path) -> None:
    broker = Broker(db_path, config=QUIET)
    broker.write_many("q", ["a", "b"])
    stream = broker.stream("q", commit_interval=5)
    assert next(stream).body == "a"
    broker.close()
    assert claimed_flags(db_path) == [0, 0]
    stream.close()  # closing the iterator afterwards is harmless
    with Broker(db_path, config=QUIET) as again:
        assert again.read("q", all_messages=True) == ["a", "b"]

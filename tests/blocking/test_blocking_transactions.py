"""Transactions of the blocking adapter: other threads wait for them; stream refusals at the call.

What every adapter shares (atomicity, rollback, nesting, refusals inside a
transaction) is in tests/contract/test_contract_transactions.py.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from sansio_broker import TransactionError
from sansio_broker.adapters.blocking import Broker
from tests.blocking.blocking_support import QUIET
from tests.support.rawdb import rows


def test_at_least_once_stream_inside_transaction_refused(broker: Broker, db_path: Path) -> None:
    broker.write_many("q", ["a", "b"])
    with broker.transaction():
        with pytest.raises(TransactionError):
            broker.stream("q", commit_interval=5)  # refused when made, not at the first item
        broker.write("q", "c")
    assert [(b, c) for _, b, _, c in rows(db_path)] == [("a", 0), ("b", 0), ("c", 0)]


def test_transaction_blocks_other_threads_until_commit(db_path: Path) -> None:
    with Broker(db_path, config=QUIET) as broker:
        broker.write("q", "a")
        done = threading.Event()

        def other() -> None:
            broker.write("q", "from thread")
            done.set()

        with broker.transaction():
            broker.claim("q")
            thread = threading.Thread(target=other)
            thread.start()
            time.sleep(0.2)
            assert not done.is_set()
        thread.join(timeout=10)
        assert done.is_set()
        assert [(b, c) for _, b, _, c in rows(db_path)] == [("a", 1), ("from thread", 0)]

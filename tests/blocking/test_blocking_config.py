"""Configuration of the connections the blocking adapter opens in other threads.

What every adapter shares (environment, mappings, Config values, PRAGMAs,
ConfigError) is in tests/contract/test_contract_config.py.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from sansio_broker.adapters.blocking import Broker
from tests.support import internals


def pragma(connection: sqlite3.Connection, name: str) -> object:
    return connection.execute(f"PRAGMA {name}").fetchone()[0]


def own_connection(broker: Broker) -> sqlite3.Connection:
    return internals.thread_sqlite_connection(broker)


@pytest.mark.parametrize(
    ("mode", "level"),
    [("FULL", 2), ("full", 2), ("NORMAL", 1), ("Normal", 1), ("OFF", 0), (" off ", 0)],
)
def test_sync_mode_applies_to_every_connection(db_path: Path, mode: str, level: int) -> None:
    with Broker(db_path, config={"BROKER_SYNC_MODE": mode}) as broker:
        assert pragma(own_connection(broker), "synchronous") == level
        seen: list[object] = []
        thread = threading.Thread(target=lambda: seen.append(pragma(own_connection(broker), "synchronous")))
        thread.start()
        thread.join()
        assert seen == [level]

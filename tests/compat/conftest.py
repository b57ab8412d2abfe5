"""Fixtures for the SimpleBroker interop tests (one file, both programs)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import simplebroker

from sansio_broker.adapters.blocking import Broker

# Defaults, whatever BROKER_* the test runner's environment holds.
OUR_CONFIG: dict[str, str] = {}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Path of the shared database file (not created yet)."""
    return tmp_path / "broker.db"


@pytest.fixture
def open_ours(db: Path) -> Iterator[Callable[[], Broker]]:
    """Open our blocking Broker on ``db`` (as often as needed); all are closed at teardown."""
    opened: list[Broker] = []

    def factory() -> Broker:
        broker = Broker(db, config=OUR_CONFIG)
        opened.append(broker)
        return broker

    yield factory
    for broker in opened:
        broker.close()


@pytest.fixture
def open_sb(db: Path) -> Iterator[Callable[[str], simplebroker.Queue]]:
    """Open a persistent SimpleBroker ``Queue`` on ``db``; all are closed at teardown."""
    opened: list[simplebroker.Queue] = []

    def factory(name: str) -> simplebroker.Queue:
        queue = simplebroker.Queue(name, db_path=str(db), persistent=True)
        opened.append(queue)
        return queue

    yield factory
    for queue in opened:
        queue.close()

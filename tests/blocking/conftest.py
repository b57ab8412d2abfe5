from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sansio_broker.adapters.blocking import Broker
from tests.blocking.blocking_support import QUIET


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture
def broker(db_path: Path) -> Iterator[Broker]:
    with Broker(db_path, config=QUIET) as b:
        yield b

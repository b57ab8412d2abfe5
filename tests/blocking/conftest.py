from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from blocking_support import QUIET

from sansio_broker.adapters.blocking import Broker


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "broker.db"


@pytest.fixture
def broker(db_path: Path) -> Iterator[Broker]:
    with Broker(db_path, config=QUIET) as b:
        yield b

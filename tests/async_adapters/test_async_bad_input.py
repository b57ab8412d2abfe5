"""A refused stream gives its pooled connection back, on asyncio and trio.

Every adapter's refusals of bad input (the errors, the file untouched, no
connection kept) are in tests/contract/test_contract_bad_input.py; this is
the pools' own case. trio's further refusals are in test_trio_bad_input.py.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from sansio_broker import InvalidInputError, QueueNameError
from tests.async_adapters.kit import QUIET, Kit

pytestmark = pytest.mark.anyio


async def test_a_refused_stream_gives_its_connection_back(kit: Kit, db_path: Path) -> None:
    async with kit.open_broker(db_path, pool_size=1, config=QUIET) as broker:
        with pytest.raises(QueueNameError):
            async for _ in broker.stream("bad name"):
                pass
        with pytest.raises(InvalidInputError):
            async for _ in broker.stream_read("q", all_messages=True, commit_interval=-3):
                pass
        with anyio.fail_after(3):  # with pool_size=1 a leaked connection would block this forever
            assert await broker.write("q", "after") > 0

"""A refused stream gives its pooled connection back.

Every adapter's refusals of bad input (the errors, the file untouched, no
connection kept) are in tests/contract/test_contract_bad_input.py; this is
the asyncio pool's own case.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asyncio_support import run

from sansio_broker import QueueNameError
from sansio_broker.adapters.asyncio import async_broker

CONFIG = {"BROKER_AUTO_VACUUM": "0"}


def test_refused_stream_gives_its_connection_back(db_path: Path) -> None:
    async def main() -> None:
        async with async_broker(db_path, pool_size=1, config=CONFIG) as broker:
            with pytest.raises(QueueNameError):
                async for _ in broker.stream("bad name"):
                    pass
            # With pool_size=1 the next operation waits forever for the leaked connection.
            assert await asyncio.wait_for(broker.write("q", "after"), 3) > 0

    run(main())

"""A PostgreSQL URL's password never appears in what a broker says about itself."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio

from sansio_broker import BrokerClosedError, Config
from sansio_broker.adapters.asyncio import async_broker
from sansio_broker.adapters.blocking import Broker
from sansio_broker.adapters.trio import trio_broker


def with_password(dsn: str) -> str:
    """The test server trusts local connections, so any password is accepted (and ignored)."""
    parts = urlsplit(dsn)
    host = f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:s3cret-pw@{host}"))


def test_errors_of_a_closed_broker_hide_the_password(pg_dsn: str, pg_schema: str) -> None:
    dsn = with_password(pg_dsn)
    config = Config(backend_schema=pg_schema)
    b = Broker(dsn, config=config)
    b.write("q", "x")
    b.close()
    with pytest.raises(BrokerClosedError) as blocking_error:
        b.write("q", "y")

    async def asyncio_main() -> BaseException:
        async with async_broker(dsn, config=config) as a:
            pass
        with pytest.raises(BrokerClosedError) as error:
            await a.write("q", "y")
        return error.value

    async def trio_main() -> BaseException:
        async with trio_broker(dsn, config=config) as t:
            pass
        with pytest.raises(BrokerClosedError) as error:
            await t.write("q", "y")
        return error.value

    for error in (blocking_error.value, asyncio.run(asyncio_main()), trio.run(trio_main)):
        text = str(error)
        assert "s3cret-pw" not in text and ":***@" in text and f"(schema {pg_schema})" in text, text

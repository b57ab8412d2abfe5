"""The driver on one psycopg 3 connection to PostgreSQL: this async source
is asyncio's (``psycopg.AsyncConnection``, run by tasks of the event loop,
no thread), and ``tools/unasync.py`` generates ``_pgsync.py`` from it, the
blocking and trio adapters' (``psycopg.Connection``, in the caller's thread
or a connection's worker thread).

Imported only when a broker opens a ``postgresql://`` (or ``postgres://``)
target: a SQLite broker never imports psycopg. The run loop and its
bookkeeping are :class:`~._async_driver.AsyncDriver`'s; this module supplies
the connection's primitives. The connection is in autocommit mode, so the
core's own ``BEGIN``/``COMMIT``/``ROLLBACK`` open and end transactions; its
first statement (the dialect's ``connection_setup``) sets the search path
to the broker's schema, then ``public``, as simplebroker-pg's pool does.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import psycopg

from sansio_broker import Config, errors
from sansio_broker.driver import Execute, ExecuteMany, Fetch, Session

from ._async_driver import AsyncDriver, opened
from ._pg import ACTIVE, CANCEL_TIMEOUT, IDLE, cannot_connect, check_committed, describe, translate


async def connect(dsn: str, label: str) -> psycopg.AsyncConnection[Any]:
    """A connection in autocommit mode: the core issues BEGIN/COMMIT itself."""
    try:
        return await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise cannot_connect(label, exc) from exc


async def open_pg_driver(dsn: str, config: Config, session: Session, first: bool) -> AsyncPgDriver:
    """A new connection to ``dsn``, set up (and the schema admitted or
    created: ``first``), in a driver; closed again if that fails."""
    label = describe(dsn, config.backend_schema)
    return await opened(AsyncPgDriver(await connect(dsn, label)), session, label, first)


class AsyncPgDriver(AsyncDriver):
    """The driver on one psycopg connection (autocommit)."""

    ERRORS = psycopg.Error

    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        super().__init__()
        self.connection = connection
        self.cancelling: object = None  # a cancel request on its way (asyncio: its task)

    @staticmethod
    def translate(exc: Any) -> errors.DatabaseError:
        return translate(exc)

    @property
    def in_transaction(self) -> bool:
        # INTRANS or INERROR (a failed statement: only ROLLBACK helps), and
        # UNKNOWN (closed or broken): nothing landed that we could tell.
        return self.connection.info.transaction_status is not IDLE

    async def _send(self, sql: str) -> object:
        cursor = await self.connection.execute(sql)
        check_committed(sql, cursor.statusmessage)
        return None

    async def _execute(self, command: Execute) -> Any:
        # No parameters: the simple query protocol (a multi-statement DDL
        # string is allowed, and ``%`` is not a placeholder).
        cursor = await self.connection.execute(command.sql, command.params or None)
        if command.fetch is Fetch.NONE:
            return None
        return await self._answer(cursor, command)

    async def _execute_many(self, command: ExecuteMany) -> None:
        async with self.connection.cursor() as cursor:
            await cursor.executemany(command.sql, command.rows)

    def interrupt(self) -> None:
        """Cancel the statement running now, if any (a cancel request opens a
        connection of its own: never sent for an idle one). Called by whoever
        gives up on the operation, which never waits for the request."""
        connection = self.connection
        if connection.closed or connection.info.transaction_status is not ACTIVE:
            return
        self.cancelling = asyncio.ensure_future(self._cancel())

    async def _cancel(self) -> None:
        with contextlib.suppress(psycopg.Error):
            await self.connection.cancel_safe(timeout=CANCEL_TIMEOUT)

    async def close(self) -> None:
        # A session-level vacuum lock dies with the connection.
        await self.connection.close()

"""The synchronous driver on one psycopg connection: GENERATED from
``_pgasync.py`` by ``tools/unasync.py``; do not edit (a test fails if
this file drifts from its source)."""

from __future__ import annotations

import contextlib
from typing import Any

import psycopg

from sansio_broker import Config, errors
from sansio_broker.driver import Execute, ExecuteMany, Fetch, Session

from ._driver import Driver, opened
from ._pg import ACTIVE, CANCEL_TIMEOUT, IDLE, cannot_connect, check_committed, describe, translate


def connect(dsn: str, label: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode: the core issues BEGIN/COMMIT itself."""
    try:
        return psycopg.Connection.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        raise cannot_connect(label, exc) from exc


def open_pg_driver(dsn: str, config: Config, session: Session, first: bool) -> PgDriver:
    """A new connection to ``dsn``, set up (and the schema admitted or
    created: ``first``), in a driver; closed again if that fails."""
    label = describe(dsn, config.backend_schema)
    return opened(PgDriver(connect(dsn, label)), session, label, first)


class PgDriver(Driver):
    """The driver on one psycopg connection (autocommit)."""

    ERRORS = psycopg.Error

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
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

    def _send(self, sql: str) -> object:
        cursor = self.connection.execute(sql)
        check_committed(sql, cursor.statusmessage)
        return None

    def _execute(self, command: Execute) -> Any:
        # No parameters: the simple query protocol (a multi-statement DDL
        # string is allowed, and ``%`` is not a placeholder).
        cursor = self.connection.execute(command.sql, command.params or None)
        if command.fetch is Fetch.NONE:
            return None
        return self._answer(cursor, command)

    def _execute_many(self, command: ExecuteMany) -> None:
        with self.connection.cursor() as cursor:
            cursor.executemany(command.sql, command.rows)

    def interrupt(self) -> None:
        """Cancel the statement running now, if any (a cancel request opens a
        connection of its own: never sent for an idle one). Called by whoever
        gives up on the operation, which never waits for the request."""
        connection = self.connection
        if connection.closed or connection.info.transaction_status is not ACTIVE:
            return
        self._cancel()

    def _cancel(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.connection.cancel_safe(timeout=CANCEL_TIMEOUT)

    def close(self) -> None:
        # A session-level vacuum lock dies with the connection.
        self.connection.close()

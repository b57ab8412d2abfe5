"""The synchronous driver on one psycopg 3 connection to PostgreSQL.

Imported only when a broker opens a ``postgresql://`` (or ``postgres://``)
target: a SQLite broker never imports psycopg. The run loop and its
bookkeeping are :class:`~._sync.Driver`'s; this module supplies the
connection's primitives. The connection is in autocommit mode, so the core's
own ``BEGIN``/``COMMIT``/``ROLLBACK`` open and end transactions; its first
statement (the dialect's ``connection_setup``) sets the search path to the
broker's schema, then ``public``, as simplebroker-pg's pool does.
"""

from __future__ import annotations

import contextlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from sansio_broker import Config, errors
from sansio_broker.driver import Commit, Execute, ExecuteMany, Fetch, Session
from sansio_broker.postgres import PostgresDialect

from ._sync import Driver, opened

IDLE = TransactionStatus.IDLE
ACTIVE = TransactionStatus.ACTIVE


def translate(exc: psycopg.Error) -> errors.DatabaseError:
    """A psycopg error as the core's error type (classified by its SQLSTATE),
    with the original as its cause."""
    translated = PostgresDialect.classify_error(str(exc), exc.sqlstate)
    translated.__cause__ = exc
    return translated


def describe(dsn: str, schema: str) -> str:
    """How errors name a target: the URL without its password, and the schema."""
    with contextlib.suppress(ValueError):
        parts = urlsplit(dsn)
        if parts.password is not None:
            user = parts.username or ""
            host = parts.hostname or ""
            if ":" in host:
                host = f"[{host}]"
            port = f":{parts.port}" if parts.port is not None else ""
            dsn = urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))
    return f"{dsn} (schema {schema})"


def connect(dsn: str, label: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode: the core issues BEGIN/COMMIT itself."""
    try:
        return psycopg.connect(dsn, autocommit=True)
    except psycopg.Error as exc:
        error = PostgresDialect.classify_error(f"cannot connect to {label}: {exc}", exc.sqlstate)
        raise error from exc


def open_pg_driver(dsn: str, config: Config, session: Session, first: bool) -> PgSyncDriver:
    """A new connection to ``dsn``, set up (and the schema admitted or
    created: ``first``), in a driver; closed again if that fails."""
    label = describe(dsn, config.backend_schema)
    return opened(PgSyncDriver(connect(dsn, label)), session, label, first)


class PgSyncDriver(Driver):
    """The driver on one psycopg connection (autocommit)."""

    ERRORS = psycopg.Error

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        super().__init__()
        self.connection = connection

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
        if sql == Commit.sql and cursor.statusmessage == "ROLLBACK":
            # COMMIT of a transaction a failed statement aborted: the server
            # rolls back and says so only in the command tag.
            raise pg_errors.InFailedSqlTransaction(
                "COMMIT rolled back instead: an earlier statement of the transaction failed"
            )
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
        connection of its own: never sent for an idle one)."""
        connection = self.connection
        if connection.closed or connection.info.transaction_status is not ACTIVE:
            return
        with contextlib.suppress(psycopg.Error):
            connection.cancel_safe(timeout=5.0)

    def close(self) -> None:
        # A session-level vacuum lock dies with the connection.
        self.connection.close()

"""What the PostgreSQL drivers (``_pgasync.py`` and the ``_pgsync.py``
generated from it) share: error translation, how a target is named, and
the states of a connection that matter to the run loop.

Imported only when a broker opens a ``postgresql://`` target.
"""

from __future__ import annotations

import contextlib
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from sansio_broker import errors
from sansio_broker.driver import Commit
from sansio_broker.postgres import PostgresDialect

IDLE = TransactionStatus.IDLE
ACTIVE = TransactionStatus.ACTIVE

CANCEL_TIMEOUT = 5.0
"""Seconds a cancel request (a connection of its own) may take."""


def translate(exc: psycopg.Error) -> errors.DatabaseError:
    """A psycopg error as the core's error type (classified by its SQLSTATE),
    with the original as its cause."""
    translated = PostgresDialect.classify_error(str(exc), exc.sqlstate)
    translated.__cause__ = exc
    return translated


def cannot_connect(label: str, exc: psycopg.Error) -> errors.DatabaseError:
    error = PostgresDialect.classify_error(f"cannot connect to {label}: {exc}", exc.sqlstate)
    error.__cause__ = exc
    return error


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


def check_committed(sql: str, status: str | None) -> None:
    """A COMMIT of a transaction that a failed statement aborted is rolled
    back by the server, which says so only in the command tag."""
    if sql == Commit.sql and status == "ROLLBACK":
        raise pg_errors.InFailedSqlTransaction(
            "COMMIT rolled back instead: an earlier statement of the transaction failed"
        )

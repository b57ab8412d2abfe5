"""The PostgreSQL fixtures of the PostgreSQL multi-process tests (one server per test process, a schema per test)."""

from __future__ import annotations

from tests.support.pgserver import pg_dsn, pg_schema, pg_server

__all__ = ["pg_dsn", "pg_schema", "pg_server"]

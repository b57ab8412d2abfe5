"""The command line on a PostgreSQL target: what ``broker`` does with simplebroker-pg 4.7.2 installed.

Imported only when the target is PostgreSQL (``BROKER_BACKEND=postgres`` or a
project ``.broker.toml`` with ``backend = "postgres"``), so a SQLite command
never loads psycopg. What differs from a SQLite file, as in broker:

- Target checks (:func:`checked_target`, when the target is resolved): the
  schema must be named (``BROKER_BACKEND_SCHEMA`` or the project file's
  ``backend_options.schema``), must not be ``public`` and must be a plain
  identifier; the target must parse as a libpq URI or conninfo string;
  ``BROKER_BACKEND_PASSWORD`` is merged into it. Messages name the target
  without its password (:func:`redacted`, broker's ``display_target``).
- ``init`` says "SimpleBroker target already exists" for an initialised
  schema, else creates it ("Initialized SimpleBroker target: ...") unless the
  schema holds something else (``not available for SimpleBroker init``).
- ``--cleanup`` drops the schema (``DROP SCHEMA ... CASCADE``) when it is a
  SimpleBroker schema, says "not found" when there is none, and refuses any
  other schema.
- Commands other than ``init``, ``write``, ``broadcast`` and ``load`` (and the
  root actions ``--status`` / ``--vacuum``) first check that the schema is an
  initialised SimpleBroker schema (:func:`admit`): ``Schema 'x' does not
  exist; run 'broker init' first`` and the like. ``write``, ``broadcast``,
  ``load``, ``--status`` and ``--vacuum`` create it as the broker opens.

The checks are simplebroker-pg's ``inspect_schema`` / ``validate_target``
(``simplebroker_pg/validation.py``), on one autocommit connection.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._target import Target, TargetError

if TYPE_CHECKING:
    from sansio_broker.config import Config

SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SCHEMA_VERSION = 6
MAGIC = "simplebroker-v1"
REQUIRED_TABLES = frozenset({"messages", "meta", "aliases"})
OWNERSHIP_META_COLUMNS = frozenset({"singleton", "magic", "schema_version"})
TYPED_META_COLUMNS = frozenset({"singleton", "magic", "schema_version", "last_ts", "alias_version"})
INVALID_TARGET = "Invalid Postgres target: check the connection URI or conninfo syntax"
URL_SCHEMES = ("postgresql://", "postgres://")


class PgError(TargetError):
    """A refusal in broker's words; its JSON code is ``ERROR`` (simplebroker's ``DatabaseError``)."""

    code = "ERROR"


# ------------------------------------------------------------------ the target
def check_schema(schema: object) -> str:
    """simplebroker-pg's ``require_schema_name``."""
    if not isinstance(schema, str) or not schema:
        raise PgError("Postgres backend requires backend_options.schema or BROKER_BACKEND_SCHEMA")
    if schema == "public":
        raise PgError("Postgres backend refuses to use schema 'public'")
    if not SCHEMA_NAME.match(schema):
        raise PgError("Postgres schema must match ^[A-Za-z_][A-Za-z0-9_]*$")
    return schema


def checked_target(dsn: str, password: str) -> str:
    """The target as simplebroker-pg keeps it: parsed by libpq, ``password`` merged in (then conninfo form)."""
    from psycopg import ProgrammingError, conninfo

    try:
        if password:
            return conninfo.make_conninfo(dsn, password=password)
        conninfo.make_conninfo(dsn)
    except ProgrammingError:
        raise PgError(INVALID_TARGET) from None
    return dsn


def psycopg_missing() -> bool:
    import importlib.util

    return importlib.util.find_spec("psycopg") is None


_CONNINFO_PASSWORD = re.compile(
    r"(?i)(\bpassword\s*=\s*)(?:"
    r"'(?:\\(?:.|$)|[^'\\])*(?:'|$)"
    r'|"(?:\\(?:.|$)|[^"\\])*(?:"|$)'
    r"|(?:\\(?:.|$)|[^\s\\])+"
    r")"
)


def redacted(target: str) -> str:
    """broker's ``redact_backend_target``: ``user:***@`` in a URL, ``password=***`` in conninfo."""
    from urllib.parse import urlsplit, urlunsplit

    target = re.sub(r"[\x00-\x1f\x7f]", " ", target)
    try:
        parts = urlsplit(target)
        if parts.scheme and parts.netloc and parts.password:
            userinfo, _, hostport = parts.netloc.rpartition("@")
            if ":" in userinfo:
                netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
                target = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    except ValueError:
        pass
    target = _raw_userinfo_redacted(target)
    return _CONNINFO_PASSWORD.sub(r"\1***", target)


def _raw_userinfo_redacted(target: str) -> str:
    scheme_end = target.find("://")
    if scheme_end == -1:
        return target
    start = scheme_end + 3
    space = re.compile(r"\s").search(target, start)
    end = max(space.start() if space else len(target), target.rfind("@") + 1)
    authority = target[start:end]
    colon, at = authority.find(":"), authority.rfind("@")
    if colon == -1 or at == -1 or colon > at:
        return target
    return f"{target[: start + colon + 1]}***{target[start + at :]}"


def broker_location(target: Target) -> str:
    """What :class:`~sansio_broker.adapters.blocking.Broker` opens: a ``postgresql://`` URL.

    A URL target is used as it is. A conninfo target (``host=... dbname=...``,
    or any target once ``BROKER_BACKEND_PASSWORD`` was merged into it) becomes
    ``postgresql://?key=value&...`` with the password handed to libpq through
    ``PGPASSWORD`` instead, so that no error message can print it.
    """
    assert target.dsn is not None
    if target.dsn.startswith(URL_SCHEMES):
        return target.dsn
    from urllib.parse import urlencode

    from psycopg import conninfo

    params = conninfo.conninfo_to_dict(target.dsn)
    password = params.pop("password", None)
    if password:
        os.environ["PGPASSWORD"] = str(password)
    return "postgresql://?" + urlencode({k: str(v) for k, v in params.items()})


def broker_config(target: Target, config: Config) -> Config:
    """``config`` with the target's schema (a project file's schema wins over ``BROKER_BACKEND_SCHEMA``)."""
    import dataclasses

    assert target.schema is not None
    return dataclasses.replace(config, backend_schema=target.schema)


# ------------------------------------------------------------------ the schema
def _connect(target: Target) -> Any:
    import psycopg

    assert target.dsn is not None
    try:
        return psycopg.connect(target.dsn, autocommit=True)
    except psycopg.Error as exc:
        raise PgError(f"Could not connect to Postgres target: {exc}") from None


class Inspection:
    """simplebroker-pg's ``SchemaInspection``: state ABSENT, EMPTY, OWNED, FOREIGN or PARTIAL_SIMPLEBROKER."""

    def __init__(self, schema: str, state: str, version: int | None = None, shape_ready: bool = False) -> None:
        self.schema, self.state, self.version, self.shape_ready = schema, state, version, shape_ready


def inspect(target: Target) -> Inspection:
    """What the schema holds (simplebroker-pg's ``inspect_schema``)."""
    import psycopg

    schema = check_schema(target.schema)
    try:
        with _connect(target) as conn, conn.cursor() as cur:
            return _inspect(cur, schema)
    except psycopg.Error as exc:
        raise PgError(str(exc)) from None


def _inspect(cur: Any, schema: str) -> Inspection:
    cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (schema,))
    if cur.fetchone() is None:
        return Inspection(schema, "ABSENT")
    cur.execute(
        "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')",
        (schema,),
    )
    objects = {str(row[0]) for row in cur.fetchall()}
    if not objects:
        cur.execute(
            "SELECT d.classid::regclass::text FROM pg_depend AS d JOIN pg_namespace AS n ON n.oid = d.refobjid "
            "WHERE d.refclassid = 'pg_namespace'::regclass AND n.nspname = %s LIMIT 1",
            (schema,),
        )
        return Inspection(schema, "FOREIGN" if cur.fetchone() is not None else "EMPTY")
    if "meta" in objects:
        cur.execute(f'SET search_path TO "{schema}", public')
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = 'meta'",
            (schema,),
        )
        columns = {str(row[0]) for row in cur.fetchall()}
        if not columns >= OWNERSHIP_META_COLUMNS:
            return Inspection(schema, "PARTIAL_SIMPLEBROKER")
        cur.execute("SELECT magic, schema_version FROM meta WHERE singleton = TRUE")
        row = cur.fetchone()
        raw = row[1] if row is not None else None
        try:
            if isinstance(raw, bool):
                raise TypeError(raw)
            version = None if raw is None else int(raw)
        except (TypeError, ValueError):
            return Inspection(schema, "PARTIAL_SIMPLEBROKER")
        if row is not None and row[0] == MAGIC:
            ready = objects >= REQUIRED_TABLES and columns >= TYPED_META_COLUMNS
            return Inspection(schema, "OWNED", version, ready)
        if row is not None:
            return Inspection(schema, "PARTIAL_SIMPLEBROKER", version)
    if REQUIRED_TABLES & objects:
        return Inspection(schema, "PARTIAL_SIMPLEBROKER")
    return Inspection(schema, "FOREIGN")


def validate(found: Inspection, *, initialized: bool) -> None:
    """simplebroker-pg's ``validate_schema_inspection``: raises :class:`PgError` in its words."""
    if not initialized and found.state in ("ABSENT", "EMPTY"):
        return
    if found.state != "OWNED":
        if not initialized:
            raise PgError(f"Schema '{found.schema}' is not available for SimpleBroker init: {found.state}")
        if found.state == "ABSENT":
            raise PgError(f"Schema '{found.schema}' does not exist; run 'broker init' first")
        raise PgError(f"Schema '{found.schema}' is not a SimpleBroker-managed schema ({found.state})")
    version = found.version
    if version is None:
        raise PgError(f"Schema '{found.schema}' has no readable schema version")
    if version < 1:
        raise PgError(f"Schema version {version} is older than oldest supported version 1")
    if version > SCHEMA_VERSION:
        raise PgError(f"Schema version {version} is newer than supported version {SCHEMA_VERSION}")
    if initialized and version < SCHEMA_VERSION:
        raise PgError(
            f"Schema version {version} is older than current version {SCHEMA_VERSION}; run 'broker init' to migrate it"
        )
    if version == SCHEMA_VERSION and not found.shape_ready:
        raise PgError(f"Schema '{found.schema}' current schema shape is incomplete")


def admit(target: Target) -> None:
    """Before a command that reads: the schema must be an initialised SimpleBroker schema."""
    validate(inspect(target), initialized=True)


def init(target: Target, open_broker: Callable[[], None]) -> str:
    """``broker init`` on a schema: the status line to print (``open_broker()`` creates the tables)."""
    display = redacted(target.dsn or "")
    found = inspect(target)
    try:
        validate(found, initialized=True)
    except PgError:
        pass
    else:
        return f"SimpleBroker target already exists: {display}"
    validate(found, initialized=False)
    open_broker()
    return f"Initialized SimpleBroker target: {display}"


def cleanup(target: Target) -> str:
    """``broker --cleanup``: drop a SimpleBroker schema with everything in it; the status line to print."""
    import psycopg

    display = redacted(target.dsn or "")
    found = inspect(target)
    if found.state == "ABSENT":
        return f"Database not found, nothing to clean up: {display}"
    if found.state != "OWNED":
        raise PgError(f"Refusing to clean up schema '{found.schema}': {found.state}")
    try:
        with _connect(target) as conn:
            conn.execute(f'DROP SCHEMA "{found.schema}" CASCADE')
    except psycopg.Error as exc:
        raise PgError(str(exc)) from None
    return f"Database cleaned up: {display}"

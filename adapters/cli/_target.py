"""Flags + ``BROKER_*`` environment -> :class:`Target`: which database a command runs on.

SimpleBroker's precedence (``cli.py _resolve_target``): an explicit ``-f``;
then a project ``.broker.toml`` (one directory, or upward with
``BROKER_PROJECT_SCOPE``) or an upward ``.broker.db``; then
``BROKER_BACKEND``; then ``-d`` / ``BROKER_DEFAULT_DB_LOCATION`` / the
working directory with ``-f`` / ``BROKER_DEFAULT_DB_NAME``. The file system
is read through :class:`Files`, so tests can point it anywhere.

Paths are strings spelled as :mod:`pathlib` spells them (broker's messages
print ``Path`` objects): :func:`spelled`, :func:`join`, :func:`parent`.
Importing ``pathlib`` would cost start-up time (it loads ``urllib.parse``).

A ``postgres`` target is resolved and checked as simplebroker-pg checks it
(schema name, target syntax, ``BROKER_BACKEND_PASSWORD`` merged in) by
:mod:`._postgres`, imported only then (it loads psycopg).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from ._grammar import Invocation

MAX_DEPTH = 100
_NAME = re.compile(r"[A-Za-z0-9._-]+")
SQLITE_MAGIC = b"SQLite format 3\x00"
# Commands whose existing file is checked for SQLite's header first (broker's list).
HEADER_CHECKED = frozenset({"read", "peek", "exists", "move", "list", "stats"})


class TargetError(Exception):
    """A target that cannot be used; the text is broker's (``code``: its JSON error code)."""

    code = "INVALID_ARGUMENT"


class BackendError(TargetError):
    """A backend target broker refuses with a ``DatabaseError`` (JSON code ``ERROR``)."""

    code = "ERROR"


class SettingError(Exception):
    """A bad ``BROKER_*`` value; printed as broker prints it (warning + fatal line)."""

    def __init__(self, key: str, value: str, expected: str) -> None:
        super().__init__(f"invalid configuration {key}={value!r}: expected {expected}")
        self.key, self.value, self.expected = key, value, expected


class Settings(NamedTuple):
    """The ``BROKER_*`` keys only the command line reads (the broker's own come from ``Config``)."""

    default_db_location: str = ""
    default_db_name: str = ".broker.db"
    project_scope: bool = False
    project_config_path: str = ""
    project_config_name: str = ".broker.toml"
    read_commit_interval: int = 1
    backend: str = "sqlite"
    backend_target: str = ""
    backend_host: str = "localhost"
    backend_port: str = "5432"
    backend_user: str = "postgres"
    backend_password: str = ""
    backend_database: str = "simplebroker"
    backend_schema: str = "simplebroker_pg_v1"


def _db_name(value: str) -> bool:
    parts = value.replace("\\", "/").split("/")
    return (
        not os.path.isabs(value)
        and len(parts) <= 2
        and all(_NAME.fullmatch(p) is not None and p not in (".", "..") for p in parts)
    )


def _relative_dir(value: str) -> bool:
    parts = [p for p in value.replace("\\", "/").split("/") if p]
    return os.path.isabs(value) or (len(parts) <= 1 and all(p not in (".", "..") for p in parts))


_CHECKS: dict[str, tuple[str, str, Any]] = {
    # field: (key, broker's description, check)
    "default_db_location": (
        "BROKER_DEFAULT_DB_LOCATION",
        "an absolute directory path or empty string",
        lambda v: not v or os.path.isabs(v),
    ),
    "default_db_name": (
        "BROKER_DEFAULT_DB_NAME",
        "a relative database path with at most one directory; components use only ASCII letters, digits, "
        "dot, dash, and underscore",
        _db_name,
    ),
    "project_config_path": (
        "BROKER_PROJECT_CONFIG_PATH",
        "an absolute directory or one relative directory",
        lambda v: not v or _relative_dir(v),
    ),
    "project_config_name": (
        "BROKER_PROJECT_CONFIG_NAME",
        "a relative config path with at most one directory",
        lambda v: not v or (not os.path.isabs(v) and len([p for p in v.replace("\\", "/").split("/") if p]) <= 2),
    ),
    "read_commit_interval": (
        "BROKER_READ_COMMIT_INTERVAL",
        "a positive integer message count",
        lambda v: v.strip().lstrip("+").isdigit() and int(v) > 0,
    ),
    "backend_port": ("BROKER_BACKEND_PORT", "an integer port", lambda v: re.fullmatch(r"\s*[+-]?\d+\s*", v)),
}
_LOAD_SKEW = ("BROKER_LOAD_MAX_FUTURE_SKEW_SECONDS", "a non-negative integer number of seconds")


def near_misses(env: Mapping[str, str]) -> list[str]:
    """Warnings for ``BROKER_*`` keys that are a known key in the wrong case
    (``BROKER_max_message_size``): ignored, as broker ignores them, but said."""
    from sansio_broker.config import KNOWN_KEYS

    found = []
    for key, value in env.items():
        suffix = key[len("BROKER_") :]
        if not key.startswith("BROKER_") or re.fullmatch(r"[A-Z][A-Z0-9_]*", suffix):
            continue
        candidate = "BROKER_" + suffix.upper()
        if candidate in KNOWN_KEYS:
            shown = "'***'" if "PASSWORD" in candidate else repr(value)
            found.append(f"ignoring {key} from the environment: did you mean {candidate}? (value {shown})")
    return found


def settings(env: Mapping[str, str]) -> Settings:
    """Read and check the command line's keys; raises :class:`SettingError` as broker would."""
    values: dict[str, Any] = {}
    for name in Settings._fields:
        key = "BROKER_" + name.upper()
        if key not in env:
            continue
        raw = env[key]
        if name in _CHECKS and not _CHECKS[name][2](raw):
            raise SettingError(key, raw, _CHECKS[name][1])
        if name == "project_scope":
            values[name] = raw.lower().strip() in ("1", "true", "yes", "on")
        elif name == "read_commit_interval":
            values[name] = int(raw)
        else:
            values[name] = raw
    skew = env.get(_LOAD_SKEW[0])
    if skew is not None and not re.fullmatch(r"\s*\+?\d+\s*", skew):
        raise SettingError(_LOAD_SKEW[0], skew, _LOAD_SKEW[1])
    return Settings(**values)


class Target(NamedTuple):
    """Where a command runs: a SQLite file, or a PostgreSQL target (libpq URI or conninfo) and schema."""

    backend: str
    path: str | None = None  # sqlite: the file
    dsn: str | None = None
    schema: str | None = None
    display: str = ""  # as broker names it in messages


def spelled(path: str) -> str:
    """``str(Path(path))`` on POSIX: no ``.`` parts, no repeated or trailing slashes (``..`` stays)."""
    root = "//" if path.startswith("//") and not path.startswith("///") else "/" if path.startswith("/") else ""
    return root + "/".join(p for p in path.split("/") if p not in ("", ".")) or "."


def join(directory: str, name: str) -> str:
    """``str(Path(directory) / name)``."""
    return spelled(os.path.join(directory, name))


def parent(path: str) -> str:
    """``str(Path(path).parent)``."""
    return spelled(os.path.dirname(spelled(path)))


def expanded(path: str) -> str:
    """``str(Path(path).expanduser())``; an unknown home is broker's error, as ``Path`` raises it."""
    path = spelled(path)
    if path.startswith("~"):
        path = os.path.expanduser(path)
        if path.startswith("~"):
            raise TargetError("Could not determine home directory.")
    return spelled(path)


class Files:
    """The file system as target resolution sees it (tests may subclass)."""

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def is_dir(self, path: str) -> bool:
        return os.path.isdir(path)

    def is_file(self, path: str) -> bool:
        return os.path.isfile(path)

    def head(self, path: str, size: int) -> bytes:
        with open(path, "rb") as f:
            return f.read(size)

    def toml(self, path: str) -> dict[str, Any]:
        import tomllib

        with open(path, "rb") as f:
            return tomllib.load(f)

    def same_device(self, a: str, b: str) -> bool:
        try:
            return os.stat(a).st_dev == os.stat(b).st_dev
        except OSError:
            return False


def default_dir(s: Settings, cwd: str) -> str:
    return spelled(s.default_db_location) if s.default_db_location and s.backend == "sqlite" else spelled(cwd)


def check_directory(path: str, files: Files) -> None:
    if not files.exists(path):
        raise TargetError(f"Directory not found: {path}")
    if not files.is_dir(path):
        raise TargetError(
            f"Path is a file, not a directory: {path}" if files.is_file(path) else f"Not a directory: {path}"
        )


def resolve(inv: Invocation, s: Settings, cwd: str, files: Files | None = None) -> Target:
    """The target, validated as broker validates it before running a command."""
    files = files or Files()
    explicit_dir = inv.dir is not None
    work = spelled(inv.dir) if inv.dir is not None else default_dir(s, cwd)
    if explicit_dir and not inv.cleanup:
        check_directory(expanded(work), files)
    root = os.path.abspath(expanded(work))
    if inv.command != "init" and inv.file is not None:
        return _sqlite(inv, s, _explicit_file(inv, work), work, files)
    if s.project_scope:
        found = _project_target(root, s, files)
        if found is not None:
            return found
    else:
        toml = _config_path(root if explicit_dir else cwd, s)
        if files.is_file(toml):
            return _toml_target(toml, s, files)
    backend = _backend_target(s)
    if backend is not None:
        return backend
    if inv.command == "init":
        path = join(cwd, s.default_db_name)
        return Target("sqlite", path, display=path)
    if s.project_scope:
        raise TargetError(
            f"BROKER_PROJECT_SCOPE is enabled but no project database '{s.default_db_name}' was found in "
            f"'{work}' or any parent directory. Run 'broker init' in the project root directory to create one."
        )
    name = inv.file if inv.file is not None else s.default_db_name
    return _sqlite(inv, s, join(work, name.replace("\\", "/")), work, files)


def _explicit_file(inv: Invocation, work: str) -> str:
    assert inv.file is not None
    path = spelled(inv.file)
    if os.path.isabs(path):
        if inv.dir is not None and os.path.realpath(parent(path)) != os.path.realpath(work):
            raise TargetError(f"Inconsistent paths: absolute database path '{path}' conflicts with directory '{work}'")
        return path
    return join(work, inv.file.replace("\\", "/"))


def _sqlite(inv: Invocation, s: Settings, path: str, work: str, files: Files) -> Target:
    """broker's legacy SQLite checks: directory, name, parent directory, and the file's header."""
    display = path
    if inv.cleanup:
        return Target("sqlite", path, display=display)
    check_directory(work, files)
    name = inv.file if inv.file is not None else s.default_db_name
    if not os.path.isabs(name) and not _db_name(name):
        raise TargetError(
            f"Database name must use only ASCII letters, digits, dot, dash, and underscore: {name!r}; "
            "database names use only ASCII letters, digits, dot, dash, and underscore"
        )
    if not os.path.isabs(name):
        path = os.path.realpath(path)
    if not files.exists(parent(path)):
        raise TargetError(f"Parent directory not found: {parent(path)}")
    if files.exists(path) and (inv.command in HEADER_CHECKED or inv.vacuum):
        head = files.head(path, 16)
        if head and head != SQLITE_MAGIC:
            raise TargetError(f"File is not a valid SQLite database (invalid header): {path}")
    return Target("sqlite", path, display=display)


def _config_path(directory: str, s: Settings) -> str:
    prefix = expanded(s.project_config_path) if s.project_config_path else None
    if prefix is not None and os.path.isabs(prefix):
        return join(prefix, s.project_config_name)
    base = join(directory, prefix) if prefix is not None else directory
    return os.path.abspath(join(base, s.project_config_name))


def _upward(start: str, files: Files) -> list[str]:
    chain = [start]
    while len(chain) < MAX_DEPTH and parent(chain[-1]) != chain[-1]:
        up = parent(chain[-1])
        if not files.same_device(chain[-1], up):
            break
        chain.append(up)
    return chain


def _project_target(root: str, s: Settings, files: Files) -> Target | None:
    start = os.path.realpath(root)
    if s.project_config_path and os.path.isabs(expanded(s.project_config_path)):
        candidate = _config_path(start, s)
        if files.is_file(candidate):
            return _toml_target(candidate, s, files)
    else:
        for directory in _upward(start, files):
            candidate = _config_path(directory, s)
            if files.is_file(candidate):
                return _toml_target(candidate, s, files)
    for directory in _upward(start, files):
        candidate = join(directory, s.default_db_name)
        if files.is_file(candidate):
            head = files.head(candidate, 16)
            if head == SQLITE_MAGIC:
                return Target("sqlite", candidate, display=candidate)
    return _backend_target(s)


def _toml_target(path: str, s: Settings, files: Files) -> Target:
    data = files.toml(path)
    version, backend, target = data.get("version"), data.get("backend"), data.get("target")
    if version != 1:
        raise TargetError(f"Unsupported {path} version {version!r}; expected 1")
    if not isinstance(backend, str) or not backend:
        raise TargetError(f"{path} requires a non-empty string 'backend'")
    if not isinstance(target, str) or not target:
        raise TargetError(f"{path} requires a non-empty string 'target'")
    if backend == "sqlite":
        resolved = os.path.realpath(expanded(join(parent(path), target)))
        return Target("sqlite", resolved, display=resolved)
    options = data.get("backend_options", {})
    # The project file owns the schema: its backend_options.schema, else simplebroker-pg's default
    # (BROKER_BACKEND_SCHEMA is not consulted for a project target, as in broker).
    schema = options.get("schema", DEFAULT_SCHEMA) if isinstance(options, dict) else DEFAULT_SCHEMA
    return _named_backend(backend, target, schema, s)


DEFAULT_SCHEMA = "simplebroker_pg_v1"


def _backend_target(s: Settings) -> Target | None:
    if s.backend == "sqlite":
        return None
    return _named_backend(s.backend, None, s.backend_schema, s)


def _named_backend(backend: str, dsn: str | None, schema: object, s: Settings) -> Target:
    """simplebroker-pg's ``verify_env``: schema first, then the target (or its parts), password merged in."""
    if backend != "postgres":
        raise BackendError(f"Requested backend '{backend}' is not available.")
    from . import _postgres

    if _postgres.psycopg_missing():
        raise BackendError(
            "Requested backend 'postgres' is not available: install psycopg (pip install 'sansio-broker[postgres]')"
        )
    checked_schema = _postgres.check_schema(schema)
    if dsn is None and s.backend_target.strip():
        dsn = s.backend_target.strip()
    if dsn is None:
        dsn = _parts_url(s)
        password = ""  # already in the URL
    else:
        password = s.backend_password
    return Target(
        "postgres", dsn=_postgres.checked_target(dsn, password), schema=checked_schema, display=checked_schema
    )


def _parts_url(s: Settings) -> str:
    """``postgresql://user[:password]@host:port/database`` from ``BROKER_BACKEND_*`` (quoted as broker quotes)."""
    from urllib.parse import quote

    def text(name: str, value: str) -> str:
        if not value.strip():
            raise BackendError(f"{name} must be a non-empty string")
        return value.strip()

    host = text("BROKER_BACKEND_HOST", s.backend_host)
    raw_port = s.backend_port.strip()
    if not re.fullmatch(r"[+-]?\d+", raw_port) or not 1 <= int(raw_port) <= 65535:
        raise BackendError("BROKER_BACKEND_PORT must be an integer between 1 and 65535")
    user = quote(text("BROKER_BACKEND_USER", s.backend_user), safe="")
    database = quote(text("BROKER_BACKEND_DATABASE", s.backend_database), safe="")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    secret = f":{quote(s.backend_password, safe='')}" if s.backend_password else ""
    return f"postgresql://{user}{secret}@{host}:{int(raw_port)}/{database}"

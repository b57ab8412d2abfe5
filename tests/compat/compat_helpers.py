"""Shared helpers for the SimpleBroker 8.7.2 interop tests (storage contract §9).

Everything here inspects real files on disk or runs the real ``broker`` CLI in
a subprocess with a clean environment (no ``PYTHONPATH``, no ``BROKER_*``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKER = HERE / "compat_worker.py"
SUBPROCESS_TIMEOUT = 60

# PRAGMA table_info('messages') of a canonical v6 table (contract §1.10).
CANONICAL_TABLE_INFO = [
    (0, "queue", "TEXT", 1, None, 0),
    (1, "body", "TEXT", 1, None, 0),
    (2, "ts", "INTEGER", 1, None, 1),
    (3, "claimed", "INTEGER", 0, "0", 0),
]

# Contract §1.3, verbatim: the v6 objects SimpleBroker 8 creates, in order.
CONTRACT_V6_DDL = [
    (
        "table",
        "messages",
        """CREATE TABLE IF NOT EXISTS messages (
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL PRIMARY KEY,
    claimed INTEGER DEFAULT 0
)""",
    ),
    (
        "index",
        "idx_messages_queue_ts",
        """CREATE INDEX IF NOT EXISTS idx_messages_queue_ts
ON messages(queue, ts)""",
    ),
    (
        "index",
        "idx_messages_pending_queue_ts",
        """CREATE INDEX IF NOT EXISTS idx_messages_pending_queue_ts
ON messages(queue, ts)
WHERE claimed = 0""",
    ),
    (
        "table",
        "meta",
        """CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
)""",
    ),
    ("index", "sqlite_autoindex_meta_1", None),
    (
        "table",
        "queue_aliases",
        """CREATE TABLE IF NOT EXISTS queue_aliases (
    alias TEXT PRIMARY KEY,
    target TEXT NOT NULL
)""",
    ),
    ("index", "sqlite_autoindex_queue_aliases_1", None),
    (
        "index",
        "idx_queue_aliases_target",
        "CREATE INDEX IF NOT EXISTS idx_queue_aliases_target ON queue_aliases(target)",
    ),
]

# Contract §1.4: a v5 database as SimpleBroker 7 creates it.
CONTRACT_V5_DDL = [
    """CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL UNIQUE,
    claimed INTEGER DEFAULT 0
)""",
    "CREATE INDEX IF NOT EXISTS idx_messages_queue_ts_id\nON messages(queue, ts, id)",
    "CREATE INDEX IF NOT EXISTS idx_messages_unclaimed\nON messages(queue, claimed, id)\nWHERE claimed = 0",
    "CREATE INDEX IF NOT EXISTS idx_messages_pending_queue_ts\nON messages(queue, ts)\nWHERE claimed = 0",
    "CREATE UNIQUE INDEX idx_messages_ts_unique\nON messages(ts)",
    "CREATE TABLE IF NOT EXISTS meta (\n    key TEXT PRIMARY KEY,\n    value INTEGER NOT NULL\n)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('last_ts', 0)",
    "CREATE TABLE IF NOT EXISTS queue_aliases (\n    alias TEXT PRIMARY KEY,\n    target TEXT NOT NULL\n)",
    "CREATE INDEX IF NOT EXISTS idx_queue_aliases_target ON queue_aliases(target)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('alias_version', 0)",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('magic', 'simplebroker-v1')",
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 5)",
]


# --------------------------------------------------------------- subprocesses
def clean_env() -> dict[str, str]:
    """The parent's environment minus PYTHONPATH and every BROKER_* setting."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("BROKER_")}
    env.pop("PYTHONWARNINGS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _find_broker_cli() -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "broker")
    if os.access(beside, os.X_OK):
        return [beside]
    found = shutil.which("broker")
    if found:
        return [found]
    return [sys.executable, "-m", "simplebroker"]


BROKER_CLI = _find_broker_cli()


def sb(db: Path, *args: str, stdin: str | None = None, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
    """Run ``broker -f <db> <args>``; assert the exit code unless ``expect`` is None."""
    cmd = [*BROKER_CLI, "-f", str(db), *args]
    proc = subprocess.run(
        cmd,
        input=stdin,
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=db.parent,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    if expect is not None:
        assert proc.returncode == expect, (
            f"{' '.join(args)}: exit {proc.returncode} (wanted {expect})\n"
            f"stdout: {proc.stdout!r}\nstderr: {proc.stderr!r}"
        )
    return proc


def sb_json(db: Path, *args: str) -> Any:
    return json.loads(sb(db, *args).stdout)


def sb_stats(db: Path, queue: str) -> tuple[int, int, int]:
    """``(pending, claimed, total)`` as ``broker stats <q> --json`` reports them."""
    out = sb_json(db, "stats", queue, "--json")
    return out["pending"], out["claimed"], out["total"]


def parse_t(stdout: str) -> list[tuple[int, str]]:
    """``<id>\\t<body>`` lines of ``-t`` output as ``(id, body)`` pairs."""
    pairs = []
    for line in stdout.splitlines():
        ident, _, body = line.partition("\t")
        pairs.append((int(ident), body))
    return pairs


def worker_command(role: str, db: Path, queue: str, **options: Any) -> list[str]:
    """Command line of a :mod:`compat_worker` process (see its docstring for roles and options)."""
    # Every RuntimeWarning is printed (not just the first per location), so a
    # timestamp resync in SimpleBroker shows up in the worker's stderr.
    opts = json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in options.items()})
    return [sys.executable, "-W", "always::RuntimeWarning", str(WORKER), role, str(db), queue, opts]


def start_workers(commands: Sequence[list[str]], cwd: Path) -> list[subprocess.Popen[str]]:
    """Start every worker, wait until each has opened the file, then release all at once."""
    procs = [
        subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            cwd=cwd,
        )
        for cmd in commands
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if line.strip() != "ready":
                proc.wait(timeout=SUBPROCESS_TIMEOUT)
                stderr = proc.stderr.read() if proc.stderr else ""
                raise AssertionError(f"worker {proc.args} did not start: {line!r} {stderr}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
    except BaseException:
        for proc in procs:
            proc.kill()
            proc.wait()
        raise
    return procs


def finish_workers(procs: Sequence[subprocess.Popen[str]]) -> list[tuple[Any, str]]:
    """Wait for every worker; returns ``(json result, stderr)`` for each, in order."""
    results = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT)
            assert proc.returncode == 0, f"worker {proc.args} exit {proc.returncode}\n{out}\n{err}"
            results.append((json.loads(out.strip().splitlines()[-1]), err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


# ------------------------------------------------------------ file inspection
@contextmanager
def connect(db: Path) -> Iterator[sqlite3.Connection]:
    """A plain inspection connection (autocommit); closed on exit."""
    with closing(sqlite3.connect(str(db), isolation_level=None, timeout=30)) as conn:
        yield conn


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with connect(db) as conn:
        return conn.execute(sql, tuple(params)).fetchall()


def meta(db: Path) -> dict[str, Any]:
    return dict(query(db, "SELECT key, value FROM meta"))


def rows(db: Path, queue: str | None = None) -> list[tuple[str, str, int, int]]:
    """``(queue, body, ts, claimed)`` ordered by ts."""
    if queue is None:
        return query(db, "SELECT queue, body, ts, claimed FROM messages ORDER BY ts")  # type: ignore[return-value]
    return query(  # type: ignore[return-value]
        db, "SELECT queue, body, ts, claimed FROM messages WHERE queue = ? ORDER BY ts", (queue,)
    )


def claimed_flags(db: Path) -> dict[int, int]:
    return dict(query(db, "SELECT ts, claimed FROM messages"))


def table_info(db: Path) -> list[tuple[Any, ...]]:
    return query(db, "PRAGMA table_info('messages')")


def schema_cookie(db: Path) -> int:
    return int(query(db, "PRAGMA schema_version")[0][0])


def master(db: Path) -> list[tuple[str, str, str | None]]:
    """``(type, name, normalized sql)`` of every schema object, in creation order."""
    return [
        (kind, name, normalize_sql(sql))
        for kind, name, sql in query(db, "SELECT type, name, sql FROM sqlite_master ORDER BY rowid")
    ]


def normalize_sql(sql: str | None) -> str | None:
    """DDL text compared modulo ``IF NOT EXISTS`` (SQLite drops it) and whitespace."""
    if sql is None:
        return None
    text = re.sub(r"\bIF NOT EXISTS\s+", "", sql, flags=re.IGNORECASE)
    text = " ".join(text.split())
    return re.sub(r"\s*([(),])\s*", r"\1", text)


def assert_file_healthy(db: Path, *, generated_only: bool = True) -> None:
    """Checks after every case: integrity, ID high-water mark, v6 shape, WAL."""
    with connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        info = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        (newest,) = conn.execute("SELECT MAX(ts) FROM messages").fetchone()
        if generated_only and newest is not None:
            assert info["last_ts"] >= newest, f"meta.last_ts {info['last_ts']} < MAX(ts) {newest}"
        assert info["schema_version"] == 6
        assert info["magic"] == "simplebroker-v1"
        assert conn.execute("PRAGMA table_info('messages')").fetchall() == CANONICAL_TABLE_INFO
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        nulls = conn.execute("SELECT COUNT(*) FROM messages WHERE claimed IS NULL OR claimed NOT IN (0, 1)")
        assert nulls.fetchone()[0] == 0


def proof_keys(db: Path) -> dict[str, Any]:
    return {k: v for k, v in meta(db).items() if k.startswith("schema_proof")}

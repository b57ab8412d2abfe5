"""Shared helpers for the SimpleBroker 8.7.2 interop tests (one file, both programs).

Everything here inspects real files on disk or runs the real ``broker`` CLI in
a subprocess with a clean environment (``PYTHONPATH`` the checkout root alone, no ``BROKER_*``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.support import workers
from tests.support.contract import V6_DDL, V6_TABLE_INFO
from tests.support.rawdb import connect, meta, query
from tests.support.workers import clean_env

HERE = Path(__file__).resolve().parent
WORKER = HERE / "compat_worker.py"
SUBPROCESS_TIMEOUT = 60

# What sqlite_master holds after SimpleBroker 8's v6 DDL (tests/support/contract.py), in creation
# order: the INSERTs create nothing, each TEXT PRIMARY KEY adds an autoindex.
V6_MASTER = [
    ("table", "messages", V6_DDL[0]),
    ("index", "idx_messages_queue_ts", V6_DDL[1]),
    ("index", "idx_messages_pending_queue_ts", V6_DDL[2]),
    ("table", "meta", V6_DDL[3]),
    ("index", "sqlite_autoindex_meta_1", None),
    ("table", "queue_aliases", V6_DDL[5]),
    ("index", "sqlite_autoindex_queue_aliases_1", None),
    ("index", "idx_queue_aliases_target", V6_DDL[6]),
]


# --------------------------------------------------------------- subprocesses
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


def run_workers(commands: Sequence[list[str]], cwd: Path) -> list[tuple[Any, str]]:
    """Start every worker in a clean environment, release them together once all
    have opened the file, and return ``(json result, stderr)`` for each, in order."""
    return workers.run_workers(commands, cwd, clean_env(), SUBPROCESS_TIMEOUT)


# ------------------------------------------------------------ file inspection
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
        assert conn.execute("PRAGMA table_info('messages')").fetchall() == V6_TABLE_INFO
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        nulls = conn.execute("SELECT COUNT(*) FROM messages WHERE claimed IS NULL OR claimed NOT IN (0, 1)")
        assert nulls.fetchone()[0] == 0


def proof_keys(db: Path) -> dict[str, Any]:
    return {k: v for k, v in meta(db).items() if k.startswith("schema_proof")}

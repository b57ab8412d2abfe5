"""A real PostgreSQL server for the tests: an outside DSN, or a private throwaway cluster.

The PostgreSQL backend is tested against a real server, never a fake, and the
tests must still run on a laptop with nothing configured. So:

- ``SANSIO_BROKER_TEST_PG_DSN`` set: every test uses that server (it is
  checked once; a DSN that does not answer fails, since someone asked for it).
- Otherwise a private cluster is made with the PostgreSQL binaries found on
  this machine (``SANSIO_BROKER_PG_BINDIR``, else the newest
  ``/usr/lib/postgresql/*/bin``, else ``pg_config --bindir``, else ``PATH``):
  ``initdb`` into a temporary directory, ``postgres`` on 127.0.0.1 and a free
  port with a socket in that directory, durability off (the data is thrown
  away), one database ``sansio``. It starts once per test process, on first
  use, and is stopped and deleted at session end, at interpreter exit, and,
  if the test process is killed, by the server itself (parent-death signal;
  a later run deletes the directory left behind).
- Neither: the tests skip, saying how to enable them; under ``CI=true`` they
  fail instead, so CI cannot pass by skipping them.

``initdb`` refuses to run as root: a root test process runs the cluster as
the ``postgres`` user (``subprocess``'s ``user=``, as ``runuser`` would).

Tests share the server, so each one works in a schema of its own:
:func:`fresh_schema` (the ``pg_schema`` fixture). Run this module
(``python -m tests.support.pgserver``) to start a cluster by hand, e.g. for
benchmarks: it prints the DSN and the start-up time and stops on Enter or
Ctrl-C.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import importlib.util
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pytest

ENV_DSN = "SANSIO_BROKER_TEST_PG_DSN"
ENV_BINDIR = "SANSIO_BROKER_PG_BINDIR"
DATABASE = "sansio"
SUPERUSER = "postgres"
# The benchmark opens 100 writers + 100 readers, plus pools,
# listeners and simplebroker-pg's own connections: keep ample headroom.
MAX_CONNECTIONS = 400
# A hang guard, not a performance target (start-up takes well under 2 s).
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
DIR_PREFIX = "sansio-broker-pg-"
HOW_TO_ENABLE = (
    f"PostgreSQL tests need a server: set {ENV_DSN}=postgresql://user@host:port/db, "
    "or install PostgreSQL's server binaries (Debian: apt-get install postgresql; "
    f"or point {ENV_BINDIR} at the directory holding initdb and postgres) "
    "and psycopg (pip install 'psycopg[binary]')"
)
# Settings for a cluster whose data is thrown away: nothing is made durable.
SERVER_SETTINGS: dict[str, str] = {
    "listen_addresses": "127.0.0.1",
    "max_connections": str(MAX_CONNECTIONS),
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "shared_buffers": "64MB",
    "timezone": "UTC",
    "logging_collector": "off",
    "log_min_messages": "warning",
}
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


class PgUnavailable(Exception):
    """No PostgreSQL server can be had here: tests skip (or fail under ``CI=true``)."""


def in_ci() -> bool:
    """Whether ``CI`` says this is a CI run, where skipping the PostgreSQL tests is an error."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip the test saying how to enable it; fail instead under ``CI=true``."""
    message = f"{reason}. {HOW_TO_ENABLE}."
    if in_ci():
        pytest.fail(f"CI=true, so PostgreSQL tests may not skip: {message}", pytrace=False)
    pytest.skip(message)


# ---------------------------------------------------------------- binaries
def _has_server_binaries(path: Path) -> bool:
    return all((path / name).is_file() and os.access(path / name, os.X_OK) for name in ("initdb", "postgres"))


def _version_key(path: str) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> ``(15,)``: newest major version first, not ``9`` > ``15``."""
    return tuple(int(part) for part in re.findall(r"\d+", Path(path).parent.name))


def find_bindir() -> Path | None:
    """The directory with ``initdb`` and ``postgres``, or None.

    ``SANSIO_BROKER_PG_BINDIR`` wins when set (a path without the binaries
    means "none", which is how tests exercise the skip path).
    """
    override = os.environ.get(ENV_BINDIR)
    if override is not None:
        path = Path(override)
        return path if _has_server_binaries(path) else None
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if _has_server_binaries(Path(candidate)):
            return Path(candidate)
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            path = Path(out.stdout.strip())
            if _has_server_binaries(path):
                return path
    initdb = shutil.which("initdb")
    if initdb is not None and _has_server_binaries(Path(initdb).parent):
        return Path(initdb).parent
    return None


# ---------------------------------------------------------------- the cluster
def _free_port() -> int:
    """A port free right now on 127.0.0.1 (the server may still lose a race for it: start retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_dirs() -> None:
    """Delete clusters left by killed test runs: their owner is gone and so is their server."""
    for path in Path(tempfile.gettempdir()).glob(f"{DIR_PREFIX}*"):
        try:
            owner = int((path / "owner.pid").read_text())
        except (OSError, ValueError):
            continue  # not ours, or still being set up
        if _pid_alive(owner):
            continue
        try:
            server: int | None = int((path / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            server = None
        if server is None or not _pid_alive(server):
            shutil.rmtree(path, ignore_errors=True)


def _parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send the server SIGINT (fast shutdown) when this process dies.

    Only from the main thread: the signal follows the *thread* that forked,
    and a helper thread's end must not stop a server still in use.
    """
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:  # runs in the child, after the switch to the server's user
        prctl(1, int(signal.SIGINT))  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return arm


@dataclass
class PgCluster:
    """A private, throwaway PostgreSQL cluster: :meth:`start`, use :attr:`dsn`, :meth:`stop`."""

    bindir: Path
    root: Path = field(init=False)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    init_seconds: float = 0.0
    start_seconds: float = 0.0
    createdb_seconds: float = 0.0

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root

    @property
    def log_path(self) -> Path:
        return self.root / "server.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def socket_dsn(self) -> str:
        """The same database over the Unix socket (a little faster than TCP)."""
        return f"postgresql://{SUPERUSER}@/{DATABASE}?host={self.socket_dir}&port={self.port}"

    @property
    def startup_seconds(self) -> float:
        return self.init_seconds + self.start_seconds + self.createdb_seconds

    def _run_as(self) -> dict[str, Any]:
        """``Popen`` arguments running the server binaries as ``postgres`` when we are root."""
        if os.geteuid() != 0:
            return {}
        try:
            entry = pwd.getpwnam(SUPERUSER)
        except KeyError:
            raise PgUnavailable(f"running as root and there is no {SUPERUSER!r} user to run initdb as") from None
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no server log)"

    def start(self) -> None:
        """initdb, start the server, wait until it is ready, create the database; undo all on failure."""
        run_as = self._run_as()
        _remove_stale_dirs()
        self.root = Path(tempfile.mkdtemp(prefix=DIR_PREFIX))
        try:
            (self.root / "owner.pid").write_text(str(os.getpid()))
            if run_as:
                os.chown(self.root, run_as["user"], run_as["group"])
            self._initdb(run_as)
            for attempt in range(5):
                if self._start_server(run_as, _free_port()):
                    break
                if attempt == 4:
                    raise RuntimeError(f"PostgreSQL did not start:\n{self._log_tail()}")
            self._create_database()
        except BaseException:
            self.stop()
            raise

    def _initdb(self, run_as: dict[str, Any]) -> None:
        began = time.perf_counter()
        result = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            cwd=self.root,
            env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
            **run_as,
        )
        self.init_seconds = time.perf_counter() - began
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")

    def _start_server(self, run_as: dict[str, Any], port: int) -> bool:
        """Start on ``port``; True when ready, False when the server exited (e.g. lost the port)."""
        settings = {**SERVER_SETTINGS, "port": str(port), "unix_socket_directories": str(self.socket_dir)}
        argv = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        began = time.perf_counter()
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C meant for pytest must not reach the server
            # before the fixture stops it in order.
            self.process = subprocess.Popen(
                argv,
                cwd=self.root,
                env={**os.environ, "LC_ALL": "C", "TZ": "UTC"},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_parent_death_signal(),
                **run_as,
            )
        deadline = began + START_TIMEOUT
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            if self._ready():
                self.port = port
                self.start_seconds = time.perf_counter() - began
                return True
            time.sleep(0.01)
        raise RuntimeError(f"PostgreSQL not ready after {START_TIMEOUT:.0f} s:\n{self._log_tail()}")

    def _ready(self) -> bool:
        """postmaster.pid's 8th line says ``ready`` once connections are accepted (what ``pg_ctl -w`` reads)."""
        try:
            lines = (self.datadir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[7].strip() == "ready"

    def _create_database(self) -> None:
        import psycopg

        began = time.perf_counter()
        admin = f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/postgres"
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        self.createdb_seconds = time.perf_counter() - began

    def stop(self) -> None:
        """Fast shutdown (clients are disconnected), escalating if it hangs; then delete everything."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            for sig, wait in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(sig)
                try:
                    process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        root = getattr(self, "root", None)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- one server per test process
@dataclass(frozen=True)
class PgServer:
    """What tests get: the DSN, and the private cluster behind it when there is one."""

    dsn: str
    cluster: PgCluster | None = None


_lock = threading.Lock()
_server: PgServer | None = None
_failure: BaseException | None = None


def _check_dsn(dsn: str) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise RuntimeError(f"{ENV_DSN}={dsn!r} does not answer: {exc}") from exc


def get_server() -> PgServer:
    """The process's server, started on first call; raises :class:`PgUnavailable` or the start-up error.

    One per process, whatever conftests import the fixtures, and a failure is
    remembered so that each later test does not retry a slow, failing start.
    """
    global _server, _failure
    with _lock:
        if _server is not None:
            return _server
        if _failure is not None:
            raise _failure
        try:
            _server = _make_server()
        except Exception as exc:
            _failure = exc
            raise
        return _server


def _make_server() -> PgServer:
    if importlib.util.find_spec("psycopg") is None:
        raise PgUnavailable("psycopg is not installed")
    dsn = os.environ.get(ENV_DSN, "").strip()
    if dsn:
        _check_dsn(dsn)
        return PgServer(dsn)
    bindir = find_bindir()
    if bindir is None:
        raise PgUnavailable(f"{ENV_DSN} is not set and no PostgreSQL server binaries were found")
    cluster = PgCluster(bindir)
    atexit.register(cluster.stop)
    cluster.start()
    return PgServer(cluster.dsn, cluster)


def stop_server() -> None:
    """Stop and delete the private cluster, if one was started (idempotent)."""
    global _server
    with _lock:
        server, _server = _server, None
    close_admin()
    if server is not None and server.cluster is not None:
        server.cluster.stop()


def require_server() -> PgServer:
    """:func:`get_server`, or skip (fail under ``CI=true``) when there is no way to get one."""
    try:
        return get_server()
    except PgUnavailable as exc:
        reason = str(exc)
    unavailable(reason)  # outside the except block: no chained traceback in the report


_admin_lock = threading.Lock()
_admin: dict[str, Any] = {}  # dsn -> the process's autocommit connection for set-up and looks


def admin_query(dsn: str, sql: str, params: tuple[Any, ...] | list[Any] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on the process's own autocommit connection to ``dsn``
    (opened once, reopened if it broke); every row it returns (none: ``[]``).

    Schema set-up and tests' looks at what a broker stored go through it, so
    they cost a round trip, not a connection each.
    """
    import psycopg

    with _admin_lock:
        conn = _admin.get(dsn)
        if conn is None or conn.closed or conn.broken:
            conn = _admin[dsn] = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
            # A bounded wait: a connection a test leaked inside a transaction
            # must turn into an error here (e.g. dropping its schema), not a hang.
            conn.execute("SET lock_timeout = '10s'")
        cursor = conn.execute(sql, params or None)
        return cursor.fetchall() if cursor.description is not None else []


def close_admin() -> None:
    with _admin_lock:
        conns = list(_admin.values())
        _admin.clear()
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.close()


def new_schema_name(prefix: str = "t") -> str:
    """A unique, valid schema name (nothing is created)."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    if not _SCHEMA_NAME.match(name):
        raise ValueError(f"bad schema prefix {prefix!r}")
    return name


def drop_schema(dsn: str, name: str) -> None:
    """Drop the schema and everything in it, if it exists."""
    admin_query(dsn, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@contextlib.contextmanager
def fresh_schema(dsn: str, *, prefix: str = "t", create: bool = True) -> Iterator[str]:
    """A uniquely named schema for one test, dropped with everything in it afterwards.

    ``create=False`` only reserves the name (for code that must create the
    schema itself, as a broker does on first open: one round trip less); it
    is still dropped at the end if it exists. The name is lower case and a
    valid SimpleBroker schema name (never ``public``).
    """
    name = new_schema_name(prefix)
    if create:
        admin_query(dsn, f'CREATE SCHEMA "{name}"')
    try:
        yield name
    finally:
        drop_schema(dsn, name)


# ---------------------------------------------------------------- fixtures
# Import these into a conftest.py (``from tests.support.pgserver import pg_dsn, pg_schema, pg_server``).
@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (skips, or fails under ``CI=true``, when there is none)."""
    yield require_server()
    stop_server()


@pytest.fixture(scope="session")
def pg_dsn(pg_server: PgServer) -> str:
    """The DSN of the session's PostgreSQL database."""
    return pg_server.dsn


@pytest.fixture
def pg_schema(pg_dsn: str) -> Iterator[str]:
    """An empty schema of this test's own on the shared server."""
    with fresh_schema(pg_dsn) as name:
        yield name


def main() -> int:
    """Start a cluster, print its DSN and start-up time, stop it on Enter, EOF or Ctrl-C."""
    bindir = find_bindir()
    if bindir is None:
        print(f"no PostgreSQL server binaries: {HOW_TO_ENABLE}", file=sys.stderr)
        return 1
    cluster = PgCluster(bindir)
    cluster.start()
    try:
        print(cluster.dsn)
        print(
            f"# {bindir}: initdb {cluster.init_seconds:.2f} s, start {cluster.start_seconds:.2f} s, "
            f"createdb {cluster.createdb_seconds:.2f} s, total {cluster.startup_seconds:.2f} s; "
            f"socket {cluster.socket_dsn}",
            file=sys.stderr,
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            sys.stdin.readline()
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

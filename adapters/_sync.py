"""The synchronous drivers' run loop (:class:`Driver`), and the driver on one
``sqlite3`` connection (:class:`SyncDriver`) that carries out core commands.

The blocking adapter calls it in the caller's thread; the asyncio and trio
adapters call it inside the connection's worker thread, so a whole operation
costs one thread hop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from sansio_broker import Config, errors
from sansio_broker.driver import (
    BrokerCore,
    Dialect,
    Execute,
    ExecuteMany,
    Fetch,
    LockVacuumFile,
    Session,
    UnlockVacuumFile,
    check_database,
)
from sansio_broker.sqlite import SQLITE, SQLITE_CONSTRAINT

from ._driver import Driver, opened, set_up
from ._news import Deliver, News, file_news

if TYPE_CHECKING:  # imported only where an async driver is opened (asyncio on PostgreSQL)
    from ._pgasync import AsyncPgDriver

LOG = logging.getLogger("sansio_broker")
"""Where background failures go (vacuum, give-backs): never into a caller's operation."""

VACUUM_LOCK_SUFFIX = ".vacuum.lock"

PROGRESS_STEPS = 20_000
"""SQLite virtual-machine steps between two looks at a cancelled caller's flag."""


def translate(exc: sqlite3.Error) -> errors.DatabaseError:
    """A driver error as the core's error type (the SQLite dialect classifies
    it), with the original as its cause."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None and isinstance(exc, sqlite3.IntegrityError):
        code = SQLITE_CONSTRAINT
    translated = SQLITE.classify_error(str(exc), code)
    translated.__cause__ = exc
    return translated


def connect(path: str, config: Config) -> sqlite3.Connection:
    """A connection in autocommit mode: the core issues BEGIN/COMMIT itself."""
    try:
        return sqlite3.connect(
            path,
            isolation_level=None,
            timeout=config.busy_timeout_ms / 1000,
            check_same_thread=False,
        )
    except sqlite3.Error as exc:
        raise _cannot_open(path, exc) from exc


def _cannot_open(path: str, exc: sqlite3.Error) -> errors.DatabaseError:
    """SQLite's "unable to open database file", with the path and the likely reason."""
    reason = str(exc)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        reason += f" (the directory {directory} does not exist)"
    elif os.path.isdir(path):
        reason += " (it is a directory)"
    error = SQLITE.classify_error(f"cannot open {path}: {reason}", getattr(exc, "sqlite_errorcode", None))
    error.__cause__ = exc
    return error


# How the read-only admission connection opens a file: ``readonly_shm=1``
# first (reads the WAL into private memory when no other connection is open:
# writes nothing); without a ``-shm`` that cannot open, and plain read-only
# mode creates the ``-shm`` (the database and its WAL are still untouched).
READ_ONLY_MODES = ("mode=ro&readonly_shm=1", "mode=ro")
SQLITE_CANTOPEN = 14


def prepare(driver: SyncDriver, session: Session, path: str, first: bool) -> None:
    """Set up a new connection; the broker's ``first`` also admits (or
    creates) the file, refusing a bad one before any write."""
    if first:  # read-only first: a refused file stays byte-for-byte unchanged
        check_read_only(path, session.core)
    set_up(driver, session, path, first)


def open_driver(path: str, config: Config, session: Session, first: bool) -> SyncDriver:
    """A new connection, set up (and the file admitted: ``first``), in a driver;
    closed again if that fails."""
    return opened(SyncDriver(connect(path, config), path), session, path, first, prepare)


Opener = Callable[[str, Config, Session, bool], "Driver"]
"""Opens a driver on a target (see :func:`open_driver`)."""

AsyncOpener = Callable[[str, Config, Session, bool], Awaitable["AsyncPgDriver"]]
"""Opens an async driver on a target (asyncio, where the backend's library has one)."""

MakeNews = Callable[[str, Config, Deliver], News]
"""Makes an engine's :class:`~._news.News` of a target (see :func:`~._news.file_news`)."""

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Backend(NamedTuple):
    """What differs between a SQLite file and a PostgreSQL schema, for the adapters."""

    dialect: Dialect
    open: Opener
    news: MakeNews
    label: str
    """How errors name the database: the file's path, or the URL without its password and the schema."""
    open_async: AsyncOpener | None = None
    """asyncio's opener where the backend has an async driver (PostgreSQL); else
    asyncio runs ``open``'s driver in a worker thread per connection."""


def backend(target: str, config: Config) -> Backend:
    """The backend of ``target``: a PostgreSQL URL (in the schema
    ``config.backend_schema``), else a SQLite file. psycopg is imported only
    for the former."""
    if target.startswith(POSTGRES_SCHEMES):
        from sansio_broker.postgres import postgres_dialect

        from ._pg import describe
        from ._pgasync import open_pg_driver as open_async
        from ._pglisten import postgres_news
        from ._pgsync import open_pg_driver

        schema = config.backend_schema
        label = describe(target, schema)
        return Backend(postgres_dialect(schema), open_pg_driver, postgres_news, label, open_async)
    return Backend(SQLITE, open_driver, file_news, target)


def check_read_only(path: str, core: BrokerCore) -> None:
    """Refuse an incompatible file before any read-write connection reads it.

    Only a file with a ``-wal`` needs this: opening it read-write rebuilds the
    ``-shm`` and closing that connection checkpoints the WAL into the database
    (and deletes both). A read-only connection never checkpoints on close. A
    refusal (``IncompatibleDatabaseError``) is raised with all three files
    unchanged; anything else (a hot rollback journal, a lock) leaves the
    decision to the read-write connection, as before.
    """
    if not os.path.exists(path + "-wal"):
        return  # the read-write path reads the file and deletes the WAL it made
    import pathlib  # only for a file with a WAL: keeps start-up from paying for pathlib's imports

    uri = pathlib.Path(path).absolute().as_uri()
    for mode in READ_ONLY_MODES:
        try:
            connection = sqlite3.connect(
                f"{uri}?{mode}", uri=True, isolation_level=None, timeout=core.config.busy_timeout_ms / 1000
            )
        except sqlite3.Error:
            return
        driver = SyncDriver(connection, path)
        try:
            driver.run(check_database(core.dialect, path))
            return
        except errors.IncompatibleDatabaseError:
            raise
        except errors.DatabaseError as exc:
            if exc.code != SQLITE_CANTOPEN:
                return
        finally:
            connection.close()


class VacuumFileLock:
    """``<db>.vacuum.lock``, locked with flock (POSIX) or msvcrt (Windows) as
    SimpleBroker does, so one vacuum runs at a time across both programs."""

    def __init__(self, db_path: str) -> None:
        self.path = db_path + VACUUM_LOCK_SUFFIX
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return False
        try:
            # Writable by every account the umask allows: all who share the
            # queue share its vacuum lock.
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except PermissionError:
            fd = os.open(self.path, os.O_RDONLY)  # another account's file: flock needs no write access
        try:
            if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            # Unlock explicitly: a child forked meanwhile shares the lock
            # through its inherited descriptor, and closing ours alone would
            # leave it held until that child closes its copy too.
            if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
                import msvcrt

                msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def forget(self) -> None:
        """In a forked child: close the inherited descriptor without unlocking,
        which would release the lock the parent still holds."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


class SyncDriver(Driver):
    """The driver on one ``sqlite3`` connection."""

    ERRORS = sqlite3.Error

    def __init__(self, connection: sqlite3.Connection, db_path: str) -> None:
        super().__init__()
        self.connection = connection
        # BEGIN/COMMIT/ROLLBACK straight to sqlite3: no wrapper on the hot path.
        self._send = connection.execute
        self._vacuum_lock = VacuumFileLock(db_path)
        self._handlers[LockVacuumFile] = self._lock_vacuum_file
        self._handlers[UnlockVacuumFile] = self._unlock_vacuum_file

    @staticmethod
    def translate(exc: Any) -> errors.DatabaseError:
        return translate(exc)

    @property
    def in_transaction(self) -> bool:
        return self.connection.in_transaction

    def _execute(self, command: Execute) -> Any:
        cursor = None
        try:
            cursor = self.connection.execute(command.sql, command.params)
            fetch = command.fetch
            if fetch is Fetch.NONE:
                # Reset now: a statement left mid-row (a PRAGMA that answers)
                # keeps the connection from closing cleanly, and SQLite then
                # leaves the -wal and -shm files behind.
                cursor.close()
                return None
            return self._answer(cursor, command)
        except BaseException:
            if cursor is not None:  # an interrupt must not leave the statement active (COMMIT would fail)
                cursor.close()
            raise

    def _execute_many(self, command: ExecuteMany) -> None:
        self.connection.executemany(command.sql, command.rows)

    def _lock_vacuum_file(self, command: LockVacuumFile) -> bool:
        return self._vacuum_lock.acquire()

    def _unlock_vacuum_file(self, command: UnlockVacuumFile) -> None:
        self._vacuum_lock.release()

    def forget_vacuum_lock(self) -> None:
        self._vacuum_lock.forget()

    def stop_when(self, should_stop: Callable[[], bool] | None) -> None:
        # A progress handler: ``interrupt`` is lost between the rows of an
        # ``executemany``, so SQLite asks every PROGRESS_STEPS VM steps.
        if should_stop is None:
            self.connection.set_progress_handler(None, 0)
        else:
            self.connection.set_progress_handler(should_stop, PROGRESS_STEPS)

    def interrupt(self) -> None:
        """Cut a running statement short; nothing to do once closed (two
        closers may race: ``close()`` and a thread dropping its own)."""
        with contextlib.suppress(sqlite3.ProgrammingError):
            self.connection.interrupt()

    def close(self) -> None:
        self._vacuum_lock.release()
        # A statement first clears an interrupt still pending (closers
        # interrupt whatever may run): SQLite would otherwise cut short the
        # checkpoint it runs when the last connection closes, leaving the
        # -wal and -shm files behind for the next process to recover.
        with contextlib.suppress(sqlite3.Error):
            self.connection.execute("SELECT 1").close()
        self.connection.close()


def written_ids(answer: object) -> tuple[int, ...]:
    """The IDs in a write's answer (one ID, or a list of them)."""
    if isinstance(answer, int):
        return (answer,)
    if isinstance(answer, list) and all(isinstance(i, int) for i in answer):
        return tuple(answer)
    return ()

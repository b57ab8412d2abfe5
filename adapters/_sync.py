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
import time
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, TypeVar

from sansio_broker import Config, Message, errors
from sansio_broker.driver import (
    Begin,
    BrokerCore,
    Command,
    Commit,
    Dialect,
    Execute,
    ExecuteMany,
    Fetch,
    LockVacuumFile,
    Operation,
    ReadClock,
    Rollback,
    SealGroup,
    Session,
    Sleep,
    UnlockVacuumFile,
    check_database,
)
from sansio_broker.sqlite import SQLITE, SQLITE_CONSTRAINT

from ._news import Deliver, News, file_news

T = TypeVar("T")
D = TypeVar("D", bound="Driver")

LOG = logging.getLogger("sansio_broker")
"""Where background failures go (vacuum, give-backs): never into a caller's operation."""

VACUUM_LOCK_SUFFIX = ".vacuum.lock"

PROGRESS_STEPS = 20_000
"""SQLite virtual-machine steps between two looks at a cancelled caller's flag."""

Guard = Callable[[Command], BaseException | None]
"""Looks at each command before it runs; returns an exception to throw in instead."""

Seal = Callable[[], frozenset[int]]
"""Answers ``SealGroup``: the positions of the group's members that withdrew."""


def no_withdrawals() -> frozenset[int]:
    return frozenset()


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


def set_up(driver: Driver, session: Session, label: str, first: bool) -> None:
    """Per-connection settings; the broker's ``first`` connection also admits
    (or creates) the database. ``label`` names it in errors."""
    driver.run(session.setup_connection(label))
    if first:
        driver.run(session.open_database(label))


def prepare(driver: SyncDriver, session: Session, path: str, first: bool) -> None:
    """Set up a new connection; the broker's ``first`` also admits (or
    creates) the file, refusing a bad one before any write."""
    if first:  # read-only first: a refused file stays byte-for-byte unchanged
        check_read_only(path, session.core)
    set_up(driver, session, path, first)


def opened(
    driver: D, session: Session, label: str, first: bool, prepare: Callable[[D, Session, str, bool], None] = set_up
) -> D:
    """``driver`` once ``prepare`` has set its new connection up; closed again if that fails."""
    try:
        prepare(driver, session, label, first)
    except BaseException:
        driver.close()
        raise
    return driver


def open_driver(path: str, config: Config, session: Session, first: bool) -> SyncDriver:
    """A new connection, set up (and the file admitted: ``first``), in a driver;
    closed again if that fails."""
    return opened(SyncDriver(connect(path, config), path), session, path, first, prepare)


Opener = Callable[[str, Config, Session, bool], "Driver"]
"""Opens a driver on a target (see :func:`open_driver`)."""

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


def backend(target: str, config: Config) -> Backend:
    """The backend of ``target``: a PostgreSQL URL (in the schema
    ``config.backend_schema``), else a SQLite file. psycopg is imported only
    for the former."""
    if target.startswith(POSTGRES_SCHEMES):
        from sansio_broker.postgres import postgres_dialect

        from ._pglisten import postgres_news
        from ._pgsync import describe, open_pg_driver

        schema = config.backend_schema
        return Backend(postgres_dialect(schema), open_pg_driver, postgres_news, describe(target, schema))
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


class Settled(NamedTuple):
    """What :meth:`SyncDriver.settle` found."""

    landed: bool  # the operation's latest COMMIT took effect
    claimed: list[Message] | None  # what it claimed there (None: not a claim)
    queue: str = ""  # whose messages those are


NOT_LANDED = Settled(False, None)


class Driver:
    """Runs operations on one connection. Not thread-safe: one caller at a time.

    The run loop and its bookkeeping, shared by every backend's driver: a
    subclass supplies the connection's primitives (``_execute``,
    ``_execute_many``, ``_send``, ``in_transaction``, ``interrupt``,
    ``close``) and its error type (``ERRORS``, ``translate``).

    It keeps what the last operation claimed since its latest ``BEGIN``, and
    whether a COMMIT was sent since: :meth:`settle` reads them, with the
    connection's own transaction state, when an operation ends without
    handing its answer to its caller.
    """

    ERRORS: ClassVar[type[Exception]]
    """The driver module's base error: such errors reach the core as core errors (:meth:`translate`)."""
    _send: Callable[[str], object]
    """Runs a transaction-control statement (BEGIN, COMMIT, ROLLBACK)."""

    def __init__(self) -> None:
        # Rows ``(body, id)`` the last claim statement returned, kept as they
        # came (no cost on the hot path); None: no claim statement ran.
        self.claimed: list[tuple[str, int]] | None = None
        self.runs = 0  # operations started: tells a caller whether its own ran
        self.claim_queue = ""
        self.commit_sent = False
        self._handlers: dict[type, Callable[[Any], Any]] = {
            Execute: self._execute,
            ExecuteMany: self._execute_many,
            Begin: self._control,
            Commit: self._control,
            Rollback: self._control,
            ReadClock: _read_clock,
            Sleep: _sleep,
            SealGroup: self._seal_group,
        }
        self._seal: Seal = no_withdrawals  # the running operation's (one caller at a time)

    @staticmethod
    def translate(exc: Any) -> errors.DatabaseError:
        """An ``ERRORS`` as the core's error type, with the original as its cause."""
        raise NotImplementedError

    def _execute(self, command: Execute) -> Any:
        raise NotImplementedError

    def _execute_many(self, command: ExecuteMany) -> None:
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        """A transaction is open on the connection (or it cannot tell: closed)."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """Cut a running statement short; nothing to do once closed."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _answer(self, cursor: Any, command: Execute) -> Any:
        """What ``command`` (fetching something) answers from its DB-API ``cursor``;
        a claim's rows are kept for :meth:`settle`."""
        fetch = command.fetch
        if fetch is Fetch.ALL:
            rows = cursor.fetchall()
            if command.claims is not None:
                self.claim_queue = command.claims
                self.claimed = rows
            return rows
        if fetch is Fetch.ONE:
            # fetchall completes the statement, so no write statement stays
            # active into the next command (e.g. UPDATE ... RETURNING before COMMIT).
            rows = cursor.fetchall()
            return rows[0] if rows else None
        return cursor.rowcount

    def run(self, operation: Operation[T], guard: Guard | None = None, seal: Seal = no_withdrawals) -> T:
        """Drive ``operation`` to completion and return its answer.

        Driver errors are thrown into the operation as core errors, so the
        core decides on rollback and retry. Anything else raised while a
        command runs (``KeyboardInterrupt``) is thrown in too, so an open
        transaction is rolled back before the exception reaches the caller.
        ``guard`` sees each command first; an exception it returns is thrown
        in instead of running the command (async adapters cancel this way).
        ``seal`` answers a group operation's ``SealGroup``.
        """
        handlers = self._handlers
        driver_errors, translate = self.ERRORS, self.translate
        self._seal = seal
        self.claimed = None
        self.commit_sent = False
        self.runs += 1
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                if error is None:
                    command: Command = operation.send(value)
                else:
                    command = operation.throw(error)
                    error = None
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            if guard is not None:
                error = guard(command)
                if error is not None:
                    value = None
                    continue
            try:
                value = handlers[type(command)](command)
            except driver_errors as exc:
                value, error = None, translate(exc)
            except BaseException as exc:
                value, error = None, exc

    def _control(self, command: Begin | Commit | Rollback) -> None:
        kind = type(command)
        if kind is Commit:
            self.commit_sent = True
            try:
                self._send(command.sql)
            except self.ERRORS:
                # Failed: rolled back, or still open. (An interrupt raised
                # here came after COMMIT returned: in_transaction tells.)
                self.commit_sent = False
                raise
            return
        if kind is Begin or self.in_transaction:
            # A new or rolled-back transaction has claimed nothing yet. A
            # ROLLBACK with nothing to undo (after a COMMIT that landed, then
            # an interrupt) keeps the record: those claims stand.
            self.claimed = None
            self.commit_sent = False
        self._send(command.sql)

    def rollback_if_open(self) -> None:
        """Roll back a transaction nobody owns (its ROLLBACK failed or was skipped)."""
        if self.in_transaction:
            with contextlib.suppress(self.ERRORS):
                self._send(Rollback.sql)

    def committed(self) -> bool:
        """The last operation's latest COMMIT took effect (ask once it has ended)."""
        try:
            return self.commit_sent and not self.in_transaction
        except self.ERRORS:  # closed meanwhile
            return False

    def committed_claims(self) -> list[Message]:
        """What the last operation claimed, if its COMMIT landed."""
        return _messages(self.claimed) if self.committed() else []

    def settle(self) -> Settled:
        """After an operation ended without handing over its answer: roll
        back whatever it left open, and say whether its latest COMMIT landed
        and what that COMMIT claimed (for the caller to give back).

        The connection's own transaction state decides, not the operation's
        view, which an interrupt between two lines may have left behind. Safe
        to repeat.
        """
        try:
            if self.in_transaction:
                self.commit_sent = False  # first: whatever happens next, nothing landed
                self._send(Rollback.sql)
        except self.ERRORS:
            return NOT_LANDED  # closed, or rolled back already
        if not self.commit_sent:
            return NOT_LANDED
        return Settled(True, None if self.claimed is None else _messages(self.claimed), self.claim_queue)

    def _seal_group(self, command: SealGroup) -> frozenset[int]:
        return self._seal()

    def forget_vacuum_lock(self) -> None:
        """In a forked child: drop an inherited vacuum lock without releasing it (none here)."""

    def stop_when(self, should_stop: Callable[[], bool] | None) -> None:
        """While an async adapter's operation runs: ``should_stop`` says its
        caller left, so a long statement may be cut short (``None``: stop
        asking). Nothing to do where :meth:`interrupt` reaches a running
        statement at any time (PostgreSQL's cancel request)."""


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


def _messages(rows: list[tuple[str, int]] | None) -> list[Message]:
    return [Message(body, ts) for body, ts in rows or ()]


def _read_clock(command: ReadClock) -> int:
    return time.time_ns()


def _sleep(command: Sleep) -> None:
    time.sleep(command.seconds)

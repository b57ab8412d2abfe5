"""The synchronous driver: carries out core commands on one ``sqlite3`` connection.

The blocking adapter calls it directly; the trio adapter calls it inside the
connection's worker thread, so a whole operation costs one thread hop.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sansio_broker import errors
from sansio_broker.commands import (
    Begin,
    Command,
    Commit,
    Execute,
    ExecuteMany,
    Fetch,
    LockVacuumFile,
    Operation,
    ReadClock,
    Rollback,
    SealGroup,
    Sleep,
    UnlockVacuumFile,
)
from sansio_broker.config import Config

T = TypeVar("T")

VACUUM_LOCK_SUFFIX = ".vacuum.lock"

Guard = Callable[[Command], BaseException | None]
"""Looks at each command before it runs; returns an exception to throw in instead."""

Seal = Callable[[], frozenset[int]]
"""Answers ``SealGroup``: the positions of the group's members that withdrew."""


def no_withdrawals() -> frozenset[int]:
    return frozenset()


def translate(exc: sqlite3.Error) -> errors.DatabaseError:
    """A driver error as the core's error type, with the original as its cause."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None and isinstance(exc, sqlite3.IntegrityError):
        code = errors.SQLITE_CONSTRAINT
    translated = errors.from_driver(str(exc), code)
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
        raise translate(exc) from exc


class VacuumFileLock:
    """``<db>.vacuum.lock``, locked with flock (POSIX) or msvcrt (Windows) as
    SimpleBroker does, so one vacuum runs at a time across both programs."""

    def __init__(self, db_path: str) -> None:
        self.path = db_path + VACUUM_LOCK_SUFFIX
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return False
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


class SyncDriver:
    """Runs operations on one connection. Not thread-safe: one caller at a time."""

    def __init__(self, connection: sqlite3.Connection, db_path: str) -> None:
        self.connection = connection
        self._vacuum_lock = VacuumFileLock(db_path)
        self._handlers: dict[type, Callable[[Any], Any]] = {
            Execute: self._execute,
            ExecuteMany: self._execute_many,
            Begin: self._control,
            Commit: self._control,
            Rollback: self._control,
            ReadClock: _read_clock,
            Sleep: _sleep,
            LockVacuumFile: self._lock_vacuum_file,
            UnlockVacuumFile: self._unlock_vacuum_file,
            SealGroup: self._seal_group,
        }
        self._seal: Seal = no_withdrawals  # the running operation's (one caller at a time)

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
        self._seal = seal
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
            except sqlite3.Error as exc:
                value, error = None, translate(exc)
            except BaseException as exc:
                value, error = None, exc

    def _execute(self, command: Execute) -> Any:
        cursor = self.connection.execute(command.sql, command.params)
        fetch = command.fetch
        if fetch is Fetch.NONE:
            return None
        if fetch is Fetch.ALL:
            return cursor.fetchall()
        if fetch is Fetch.ONE:
            # fetchall completes the statement, so no write statement stays
            # active into the next command (e.g. UPDATE ... RETURNING before COMMIT).
            rows = cursor.fetchall()
            return rows[0] if rows else None
        return cursor.rowcount

    def _execute_many(self, command: ExecuteMany) -> None:
        self.connection.executemany(command.sql, command.rows)

    def _control(self, command: Begin | Commit | Rollback) -> None:
        self.connection.execute(command.sql)

    def _seal_group(self, command: SealGroup) -> frozenset[int]:
        return self._seal()

    def _lock_vacuum_file(self, command: LockVacuumFile) -> bool:
        return self._vacuum_lock.acquire()

    def _unlock_vacuum_file(self, command: UnlockVacuumFile) -> None:
        self._vacuum_lock.release()

    def forget_vacuum_lock(self) -> None:
        self._vacuum_lock.forget()

    def close(self) -> None:
        self._vacuum_lock.release()
        self.connection.close()


def _read_clock(command: ReadClock) -> int:
    return time.time_ns()


def _sleep(command: Sleep) -> None:
    time.sleep(command.seconds)

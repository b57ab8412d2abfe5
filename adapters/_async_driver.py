"""The drivers' run loop and bookkeeping, written once: this async source is
the loop of drivers on an async connection (psycopg's, on asyncio), and
``tools/unasync.py`` generates ``_driver.py`` from it, the loop of every
synchronous driver (SQLite's and PostgreSQL's, in the caller's thread or a
connection's worker thread).

A subclass supplies the connection's primitives; the loop, what a claim
took, whether a COMMIT was sent, and how an abandoned operation is settled
are the same for every backend and runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from sansio_broker import Message, errors
from sansio_broker.driver import (
    Begin,
    Command,
    Commit,
    Execute,
    ExecuteMany,
    Fetch,
    Operation,
    ReadClock,
    Rollback,
    SealGroup,
    Session,
    Sleep,
)

from ._ledger import NOT_LANDED, Guard, Seal, Settled, messages, no_withdrawals

T = TypeVar("T")
D = TypeVar("D", bound="AsyncDriver")


async def set_up(driver: AsyncDriver, session: Session, label: str, first: bool) -> None:
    """Per-connection settings; the broker's ``first`` connection also admits
    (or creates) the database. ``label`` names it in errors."""
    await driver.run(session.setup_connection(label))
    if first:
        await driver.run(session.open_database(label))


async def opened(
    driver: D,
    session: Session,
    label: str,
    first: bool,
    prepare: Callable[[D, Session, str, bool], Awaitable[None]] = set_up,
) -> D:
    """``driver`` once ``prepare`` has set its new connection up; closed again if that fails."""
    try:
        await prepare(driver, session, label, first)
    except BaseException:
        await driver.close()
        raise
    return driver


class AsyncDriver:
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
    _send: Callable[[str], Awaitable[object]]
    """Runs a transaction-control statement (BEGIN, COMMIT, ROLLBACK)."""

    def __init__(self) -> None:
        # Rows ``(body, id)`` the last claim statement returned, kept as they
        # came (no cost on the hot path); None: no claim statement ran.
        self.claimed: list[tuple[str, int]] | None = None
        self.runs = 0  # operations started: tells a caller whether its own ran
        self.claim_queue = ""
        self.commit_sent = False
        self._handlers: dict[type, Callable[[Any], Awaitable[Any]]] = {
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

    async def _execute(self, command: Execute) -> Any:
        raise NotImplementedError

    async def _execute_many(self, command: ExecuteMany) -> None:
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        """A transaction is open on the connection (or it cannot tell: closed)."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """Cut a running statement short; nothing to do once closed."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def _answer(self, cursor: Any, command: Execute) -> Any:
        """What ``command`` (fetching something) answers from its DB-API ``cursor``;
        a claim's rows are kept for :meth:`settle`."""
        fetch = command.fetch
        if fetch is Fetch.ALL:
            rows = await cursor.fetchall()
            if command.claims is not None:
                self.claim_queue = command.claims
                self.claimed = rows
            return rows
        if fetch is Fetch.ONE:
            # fetchall completes the statement, so no write statement stays
            # active into the next command (e.g. UPDATE ... RETURNING before COMMIT).
            rows = await cursor.fetchall()
            return rows[0] if rows else None
        return cursor.rowcount

    async def run(self, operation: Operation[T], guard: Guard | None = None, seal: Seal = no_withdrawals) -> T:
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
                value = await handlers[type(command)](command)
            except driver_errors as exc:
                value, error = None, translate(exc)
            except BaseException as exc:
                value, error = None, exc

    async def _control(self, command: Begin | Commit | Rollback) -> None:
        kind = type(command)
        if kind is Commit:
            self.commit_sent = True
            try:
                await self._send(command.sql)
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
        await self._send(command.sql)

    async def rollback_if_open(self) -> None:
        """Roll back a transaction nobody owns (its ROLLBACK failed or was skipped)."""
        if self.in_transaction:
            with contextlib.suppress(self.ERRORS):
                await self._send(Rollback.sql)

    def committed(self) -> bool:
        """The last operation's latest COMMIT took effect (ask once it has ended)."""
        try:
            return self.commit_sent and not self.in_transaction
        except self.ERRORS:  # closed meanwhile
            return False

    def committed_claims(self) -> list[Message]:
        """What the last operation claimed, if its COMMIT landed."""
        return messages(self.claimed) if self.committed() else []

    async def settle(self) -> Settled:
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
                await self._send(Rollback.sql)
        except self.ERRORS:
            return NOT_LANDED  # closed, or rolled back already
        if not self.commit_sent:
            return NOT_LANDED
        return Settled(True, None if self.claimed is None else messages(self.claimed), self.claim_queue)

    async def _seal_group(self, command: SealGroup) -> frozenset[int]:
        return self._seal()

    def forget_vacuum_lock(self) -> None:
        """In a forked child: drop an inherited vacuum lock without releasing it (none here)."""

    def stop_when(self, should_stop: Callable[[], bool] | None) -> None:
        """While an async adapter's operation runs: ``should_stop`` says its
        caller left, so a long statement may be cut short (``None``: stop
        asking). Nothing to do where :meth:`interrupt` reaches a running
        statement at any time (PostgreSQL's cancel request)."""


async def _read_clock(command: ReadClock) -> int:
    return time.time_ns()


async def _sleep(command: Sleep) -> None:
    await asyncio.sleep(command.seconds)

"""A flight: one operation in a worker thread, and whether its caller gave up on it."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sansio_broker import OperationCancelled
from sansio_broker.driver import Command, Commit, Rollback, UnlockVacuumFile

from ._ledger import no_withdrawals


class Flight:
    """One operation in a worker thread, and whether its caller gave up on it.

    The event loop may cancel it; the worker thread checks before every
    command (``guard``) and reports when it is done (``finish``), so a
    cancelled caller never waits, yet its connection is reused only after.
    """

    __slots__ = ("_lock", "_on_finish", "answer", "cancelled", "committing", "finished")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cancelled = False
        self.committing = False
        self.finished = False
        # The operation's answer once it returned (read after ``finished``),
        # for a caller that left while its COMMIT ran.
        self.answer: object = NO_ANSWER
        self._on_finish: list[Callable[[], object]] = []

    def cancel(self, interrupt: Callable[[], object] | None = None) -> bool:
        """Stop the operation at its next command; True if COMMIT already began.

        ``interrupt`` (``sqlite3.Connection.interrupt``) also cuts a long
        statement short. It is called only before COMMIT has begun and while
        the operation still runs, under the lock COMMIT needs, so it can never
        interrupt a COMMIT or another operation's statement.
        """
        with self._lock:
            self.cancelled = True
            if interrupt is not None and not self.committing and not self.finished:
                interrupt()
            return self.committing

    def guard(self, command: Command) -> BaseException | None:
        """Runs in the worker thread before each command.

        Only COMMIT needs the lock: it decides, against :meth:`cancel`,
        whether the caller is told "outcome unknown". Elsewhere a cancel
        seen one command late costs nothing but that command.
        """
        kind = type(command)
        if kind is Commit:
            with self._lock:
                if self.cancelled:
                    return _cancelled()
                self.committing = True
            return None
        if self.cancelled and kind is not Rollback and kind is not UnlockVacuumFile:
            return _cancelled()  # clean-up always runs
        return None

    def should_stop(self) -> bool:
        """SQLite's progress handler: abort the running statement if cancelled
        before COMMIT (it runs in the worker thread, between VM steps)."""
        return self.cancelled and not self.committing

    seal = staticmethod(no_withdrawals)  # a single caller's operation is no group

    def finish(self) -> None:
        """Runs in the worker thread when the operation has ended."""
        with self._lock:
            self.finished = True
            callbacks, self._on_finish = self._on_finish, []
        for callback in callbacks:
            callback()

    def when_finished(self, callback: Callable[[], object]) -> bool:
        """Call ``callback`` (from the worker thread) once finished.

        Returns False, registering nothing, if it has finished already.
        """
        with self._lock:
            if self.finished:
                return False
            self._on_finish.append(callback)
            return True


NO_ANSWER = object()
"""A flight's ``answer`` until its operation returns (it may raise instead)."""


def _cancelled() -> OperationCancelled:
    return OperationCancelled("the caller was cancelled; rolled back")

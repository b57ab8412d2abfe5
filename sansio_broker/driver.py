"""What driver authors and testers use: the core's commands and operations.

Applications use :mod:`sansio_broker` (configuration, messages, errors) and
an adapter. An adapter, or a test stepping the core by hand, uses this
module: a :class:`BrokerCore` per broker, a :class:`Session` per
connection, whose methods return an :class:`Operation` (a generator of
commands; what a driver answers to each is tabled in
:mod:`sansio_broker.commands`), streams, and the stepping helpers
(:class:`Stepper`, :func:`run_scripted`, :func:`run_with`) that drive an
operation without a database; the :class:`Dialect` seam (SQLite is its one
implementation), the session's state table, and the cross-process watcher's
polling schedule (:class:`WatchSchedule`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .commands import (
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
from .core import BrokerCore, RetryPolicy, Session, WriteOutcome
from .dialect import Dialect
from .schema import check_database
from .sqlite import SQLITE, SQLiteDialect
from .states import TRANSITIONS, Event, State, transition
from .streams import ClaimStream, PeekStream, Stream, open_stream

if TYPE_CHECKING:
    from .testing import Stepper, run_scripted, run_with
    from .watching import WATCH_TRANSITIONS, WatchEvent, WatchSchedule, WatchSettings, WatchState

# The stepping helpers and the watcher's schedule load when first asked for:
# a program that only runs a broker (a command line's start-up) skips them.
_TESTING = frozenset({"Stepper", "run_scripted", "run_with"})
_WATCHING = frozenset({"WATCH_TRANSITIONS", "WatchEvent", "WatchSchedule", "WatchSettings", "WatchState"})


def __getattr__(name: str) -> Any:
    if name in _TESTING:
        from . import testing

        return getattr(testing, name)
    if name in _WATCHING:
        from . import watching

        return getattr(watching, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "SQLITE",
    "TRANSITIONS",
    "WATCH_TRANSITIONS",
    "Begin",
    "BrokerCore",
    "ClaimStream",
    "Command",
    "Commit",
    "Dialect",
    "Event",
    "Execute",
    "ExecuteMany",
    "Fetch",
    "LockVacuumFile",
    "Operation",
    "PeekStream",
    "ReadClock",
    "RetryPolicy",
    "Rollback",
    "SQLiteDialect",
    "SealGroup",
    "Session",
    "Sleep",
    "State",
    "Stepper",
    "Stream",
    "UnlockVacuumFile",
    "WatchEvent",
    "WatchSchedule",
    "WatchSettings",
    "WatchState",
    "WriteOutcome",
    "check_database",
    "open_stream",
    "run_scripted",
    "run_with",
    "transition",
]

"""The commands an operation yields, and what each one sends back.

An operation is a generator: it yields a command, the driver carries it out
and ``send``s the result (or ``throw``s a :mod:`sansio_broker.errors` error)
back in. These classes are the whole boundary between the core and I/O.

=====================  =============================================
command                result sent back
=====================  =============================================
``Execute``            rows / one row / rowcount / ``None`` (``fetch``)
``ExecuteMany``        ``None``
``Begin``/``Commit``/  ``None``
``Rollback``
``ReadClock``          wall clock, ``int`` nanoseconds since the epoch
``Sleep``              ``None``
``LockVacuumFile``     ``True`` if the lock was taken, ``False`` if held
``UnlockVacuumFile``   ``None``
``SealGroup``          ``frozenset`` of member positions withdrawn
=====================  =============================================
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeAlias, TypeVar

T = TypeVar("T")


class Fetch(enum.Enum):
    """What an ``Execute`` sends back."""

    NONE = "none"  # None
    ONE = "one"  # first row as a tuple, or None
    ALL = "all"  # list of row tuples
    ROWCOUNT = "rowcount"  # number of rows changed


@dataclass(frozen=True, slots=True)
class Execute:
    """Run one SQL statement with bound parameters.

    ``claims`` names the queue whose messages the statement claims; its rows
    are ``(body, id)``. A driver keeps them until the next operation, so a
    claim whose COMMIT landed but whose caller was lost can be given back.
    """

    sql: str
    params: Sequence[Any] = ()
    fetch: Fetch = Fetch.NONE
    claims: str | None = None


@dataclass(frozen=True, slots=True)
class ExecuteMany:
    """Run one SQL statement once per parameter row (``executemany``)."""

    sql: str
    rows: Sequence[Sequence[Any]]


@dataclass(frozen=True, slots=True)
class Begin:
    """Open a write transaction that holds the write lock until it ends.

    ``sql`` is the dialect's (``Dialect.BEGIN_WRITE``); it takes no part in
    comparisons: every ``Begin`` asks for the same thing.
    """

    sql: str = field(default="BEGIN", compare=False)


@dataclass(frozen=True, slots=True)
class Commit:
    """Commit; an adapter that cancels during it must report "outcome unknown"."""

    sql: ClassVar[str] = "COMMIT"


@dataclass(frozen=True, slots=True)
class Rollback:
    """Roll back; adapters shield it from cancellation."""

    sql: ClassVar[str] = "ROLLBACK"


@dataclass(frozen=True, slots=True)
class ReadClock:
    """Ask for the wall clock (``time.time_ns()``)."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait before retrying; never issued while a transaction is open,
    except while waiting for the ID clock to pass a future ``last_ts``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class LockVacuumFile:
    """Try (without blocking) to take ``<db>.vacuum.lock``, as SimpleBroker does
    (the SQLite dialect's vacuum lock: ``Dialect.lock_vacuum``)."""


@dataclass(frozen=True, slots=True)
class UnlockVacuumFile:
    """Release ``<db>.vacuum.lock``."""


@dataclass(frozen=True, slots=True)
class SealGroup:
    """Close a group operation's membership (group commit, shared claims).

    Callers that withdrew (were cancelled) before this point are left out;
    from here on a withdrawing caller is too late and its adapter must
    report "outcome unknown" (writes) or give the claimed message back. A
    driver running no group answers ``frozenset()``.
    """


Command: TypeAlias = (
    Execute
    | ExecuteMany
    | Begin
    | Commit
    | Rollback
    | ReadClock
    | Sleep
    | LockVacuumFile
    | UnlockVacuumFile
    | SealGroup
)

Operation: TypeAlias = Generator[Command, Any, T]
"""A broker operation: yields commands, receives results, returns its answer."""

# Shared instances: the commands without fields are constants.
COMMIT = Commit()
ROLLBACK = Rollback()
READ_CLOCK = ReadClock()
LOCK_VACUUM_FILE = LockVacuumFile()
UNLOCK_VACUUM_FILE = UnlockVacuumFile()
SEAL_GROUP = SealGroup()

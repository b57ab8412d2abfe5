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
from typing import Any, ClassVar, TypeAlias, TypeVar

T = TypeVar("T")


class Fetch(enum.Enum):
    """What an ``Execute`` sends back."""

    NONE = "none"  # None
    ONE = "one"  # first row as a tuple, or None
    ALL = "all"  # list of row tuples
    ROWCOUNT = "rowcount"  # number of rows changed


class _Value:
    """A command is a value: equal, hashed and shown by its fields, never changed.

    Written out rather than with ``dataclasses``, whose import and per-class
    code generation were a tenth of a command-line start-up.
    """

    __slots__: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...] | None] = None  # fields in == and hash (None: all)

    def _key(self) -> tuple[Any, ...]:
        names = self.__slots__ if self._compared is None else self._compared
        return tuple(getattr(self, name) for name in names)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({fields})"

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # Rebuilt through the constructor (whose parameters are the slots, in order).
        return type(self), tuple(getattr(self, name) for name in self.__slots__)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")


_set = object.__setattr__


class Execute(_Value):
    """Run one SQL statement with bound parameters.

    ``claims`` names the queue whose messages the statement claims; its rows
    are ``(body, id)``. A driver keeps them until the next operation, so a
    claim whose COMMIT landed but whose caller was lost can be given back.
    """

    __slots__ = ("sql", "params", "fetch", "claims")  # noqa: RUF023 (the constructor's order, shown by repr)
    sql: str
    params: Sequence[Any]
    fetch: Fetch
    claims: str | None

    def __init__(
        self, sql: str, params: Sequence[Any] = (), fetch: Fetch = Fetch.NONE, claims: str | None = None
    ) -> None:
        _set(self, "sql", sql)
        _set(self, "params", params)
        _set(self, "fetch", fetch)
        _set(self, "claims", claims)


class ExecuteMany(_Value):
    """Run one SQL statement once per parameter row (``executemany``)."""

    __slots__ = ("sql", "rows")  # noqa: RUF023 (the constructor's order, shown by repr)
    sql: str
    rows: Sequence[Sequence[Any]]

    def __init__(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        _set(self, "sql", sql)
        _set(self, "rows", rows)


class Begin(_Value):
    """Open a write transaction that holds the write lock until it ends.

    ``sql`` is the dialect's (``Dialect.BEGIN_WRITE``); it takes no part in
    comparisons: every ``Begin`` asks for the same thing.
    """

    __slots__ = ("sql",)
    _compared = ()
    sql: str

    def __init__(self, sql: str = "BEGIN") -> None:
        _set(self, "sql", sql)


class Commit(_Value):
    """Commit; an adapter that cancels during it must report "outcome unknown"."""

    __slots__ = ()
    sql: ClassVar[str] = "COMMIT"


class Rollback(_Value):
    """Roll back; adapters shield it from cancellation."""

    __slots__ = ()
    sql: ClassVar[str] = "ROLLBACK"


class ReadClock(_Value):
    """Ask for the wall clock (``time.time_ns()``)."""

    __slots__ = ()


class Sleep(_Value):
    """Wait before retrying; never issued while a transaction is open,
    except while waiting for the ID clock to pass a future ``last_ts``."""

    __slots__ = ("seconds",)
    seconds: float

    def __init__(self, seconds: float) -> None:
        _set(self, "seconds", seconds)


class LockVacuumFile(_Value):
    """Try (without blocking) to take ``<db>.vacuum.lock``, as SimpleBroker does
    (the SQLite dialect's vacuum lock: ``Dialect.lock_vacuum``)."""

    __slots__ = ()


class UnlockVacuumFile(_Value):
    """Release ``<db>.vacuum.lock``."""

    __slots__ = ()


class SealGroup(_Value):
    """Close a group operation's membership (group commit, shared claims).

    Callers that withdrew (were cancelled) before this point are left out;
    from here on a withdrawing caller is too late and its adapter must
    report "outcome unknown" (writes) or give the claimed message back. A
    driver running no group answers ``frozenset()``.
    """

    __slots__ = ()


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

"""Helpers shared by the core tests: a scripted stand-in for the database.

The module name is deliberately unusual: tests/ has no ``__init__.py`` files,
so every module under it is imported by its bare name.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from sansio_broker import Config
from sansio_broker.commands import (
    Begin,
    Command,
    Commit,
    Execute,
    ExecuteMany,
    LockVacuumFile,
    ReadClock,
    Rollback,
    SealGroup,
    Sleep,
    UnlockVacuumFile,
)
from sansio_broker.driver import BrokerCore, RetryPolicy, Session
from sansio_broker.sqlite import SQLITE
from sansio_broker.testing import run_with

SQL = SQLITE

# A wall clock with the 12 counter bits clear, so IDs derived from it are easy to predict.
NOW = 1_750_000_000_000_000_000 & ~0xFFF
TICK = 0x1000  # one physical step of the ID layout (4096 ns)


# The select statements' SQL, written out here (not taken from sansio_broker.sqlite).
PENDING = "queue = ? AND claimed = 0"


def claim_sql(where: str) -> str:
    return (
        "UPDATE messages\nSET claimed = 1\nWHERE ts IN (\n"
        f"    SELECT ts FROM messages\n    WHERE {where}\n"
        "    ORDER BY ts ASC\n    LIMIT ?\n)\nRETURNING body, ts"
    )


def move_sql(where: str) -> str:
    return (
        "UPDATE messages\nSET queue = ?\nWHERE ts IN (\n"
        f"    SELECT ts FROM messages\n    WHERE {where}\n"
        "    ORDER BY ts ASC\n    LIMIT ?\n)\nRETURNING body, ts"
    )


def peek_sql(where: str) -> str:
    return f"SELECT body, ts FROM messages\nWHERE {where}\nORDER BY ts ASC\nLIMIT ?"


def make_session(retry: RetryPolicy | None = None, **config: Any) -> Session:
    """A session of a fresh core; ``config`` holds Config field names."""
    core = BrokerCore(Config(**config), retry=retry or RetryPolicy())
    return core.session()


def housekeeping(session: Session, respond: Callable[[Command], Any]) -> list[Command]:
    """What an adapter does after an operation: when the core hands out an
    auto-vacuum check (``take_auto_vacuum``), run ``session.auto_vacuum()``
    on its own, answered by ``respond``; return its commands.

    ``[]`` means no check was due (a check always sends its count first).
    A failing check raises, as ``auto_vacuum`` does.
    """
    if not session.core.take_auto_vacuum():
        return []
    _, commands = run_with(session.auto_vacuum(), respond)
    assert commands, "an auto-vacuum check starts with its count"
    return commands


def kinds(commands: Iterable[Command]) -> list[str]:
    """Command class names, for asserting the shape of a sequence."""
    return [type(c).__name__ for c in commands]


def sqls(commands: Iterable[Command]) -> list[str]:
    """The SQL of every Execute / ExecuteMany, in order."""
    return [c.sql for c in commands if isinstance(c, Execute | ExecuteMany)]


_WRITE_PREFIXES = ("CREATE", "INSERT", "UPDATE", "DELETE", "DROP", "ALTER", "VACUUM", "REPLACE")


def is_write(command: Command) -> bool:
    """True for any command that could change the database file."""
    if isinstance(command, Begin | Commit | ExecuteMany):
        return True
    if isinstance(command, Execute):
        text = command.sql.lstrip().upper()
        if text.startswith(_WRITE_PREFIXES):
            return True
        if text.startswith("PRAGMA") and "=" in text:
            return True
    return False


class FakeDb:
    """Answers core commands the way a tiny broker database would.

    - ``Begin``/``Commit``/``Rollback`` track whether a transaction is open
      (``Rollback`` undoes ``last_ts`` and inserted rows); ``Begin`` inside
      one is answered with an AssertionError (a core bug).
    - ``ReadClock`` returns :attr:`now`; ``Sleep`` advances it when
      :attr:`sleep_advances_clock` is true.
    - ``meta.last_ts`` is simulated: ``ADVANCE_LAST_TS`` is a real
      compare-and-advance and ``READ_LAST_TS`` reads it (``None``: no row).
    - ``INSERT_MESSAGE`` rows are collected in :attr:`inserted`;
      ``ExecuteMany(DELETE_BY_ID)`` removes the listed IDs from it again.
    - ``SealGroup`` is answered with :attr:`withdrawn` (a frozenset of member
      positions; script ``SealGroup`` for a one-shot answer).
    - ``ExecuteMany(UNCLAIM_BY_ID)`` IDs are collected in :attr:`unclaimed`,
      ``ExecuteMany(RETURN_CLAIMED)`` rows in :attr:`returned`.
    - Anything else must be answered by :meth:`answer`.

    :meth:`script` queues one-shot answers (results or exceptions to throw)
    for a command class or an SQL text, consumed before the default.
    """

    def __init__(self, *, now: int = NOW, last_ts: int | None = 0) -> None:
        self.now = now
        self.last_ts = last_ts
        self.sleep_advances_clock = True
        self.in_tx = False
        self.inserted: list[tuple[Any, ...]] = []
        self.unclaimed: list[int] = []
        self.returned: list[tuple[Any, ...]] = []
        self.withdrawn: frozenset[int] = frozenset()
        self.sleeps: list[float] = []
        self._answers: dict[str, Any] = {}
        self._scripts: dict[object, deque[Any]] = {}
        self.vacuum_lock_free = True
        self._snapshot: tuple[int | None, list[Any], list[Any], list[Any]] = (last_ts, [], [], [])

    def _begin(self) -> None:
        self.in_tx = True
        self._snapshot = (self.last_ts, list(self.inserted), list(self.unclaimed), list(self.returned))

    def _rollback(self) -> None:
        if self.in_tx:
            self.last_ts, inserted, unclaimed, returned = self._snapshot
            self.inserted[:], self.unclaimed[:], self.returned[:] = inserted, unclaimed, returned
        self.in_tx = False

    def answer(self, sql: str, result: Any) -> FakeDb:
        """Answer every ``Execute(sql)`` with ``result`` (a callable gets the command)."""
        self._answers[sql] = result
        return self

    def script(self, key: type | str, *answers: Any) -> FakeDb:
        self._scripts.setdefault(key, deque()).extend(answers)
        return self

    def _scripted(self, command: Command) -> tuple[bool, Any]:
        for key in (type(command), getattr(command, "sql", None)):
            queue = self._scripts.get(key) if key is not None else None
            if queue:
                return True, queue.popleft()
        return False, None

    def __call__(self, command: Command) -> Any:
        found, value = self._scripted(command)
        if found:
            if isinstance(value, BaseException) and isinstance(command, Begin):
                return value  # BEGIN failed: no transaction
            if isinstance(command, Begin):
                self._begin()
            elif isinstance(command, Rollback):
                self._rollback()
            elif isinstance(command, Commit) and not isinstance(value, BaseException):
                self.in_tx = False
            return value
        if isinstance(command, Begin):
            if self.in_tx:
                return AssertionError("Begin while a transaction is open")
            self._begin()
            return None
        if isinstance(command, Commit):
            self.in_tx = False
            return None
        if isinstance(command, Rollback):
            self._rollback()
            return None
        if isinstance(command, ReadClock):
            return self.now
        if isinstance(command, Sleep):
            self.sleeps.append(command.seconds)
            if self.sleep_advances_clock:
                self.now += int(command.seconds * 1e9)
            return None
        if isinstance(command, LockVacuumFile):
            return self.vacuum_lock_free
        if isinstance(command, UnlockVacuumFile):
            return None
        if isinstance(command, SealGroup):
            return self.withdrawn
        if isinstance(command, ExecuteMany):
            if command.sql == SQL.INSERT_MESSAGE:
                self.inserted.extend(tuple(r) for r in command.rows)
                return None
            if command.sql == SQL.DELETE_BY_ID:
                gone = {id_ for (id_,) in command.rows}
                self.inserted[:] = [r for r in self.inserted if r[2] not in gone]
                return None
            if command.sql == SQL.UNCLAIM_BY_ID:
                self.unclaimed.extend(id_ for (id_,) in command.rows)
                return None
            if command.sql == SQL.RETURN_CLAIMED:
                self.returned.extend(tuple(r) for r in command.rows)
                return None
        if isinstance(command, Execute):
            if command.sql == SQL.ADVANCE_LAST_TS:
                new, bound = command.params
                if self.last_ts is not None and self.last_ts < bound:
                    self.last_ts = new
                    return (new,)
                return None
            if command.sql == SQL.READ_LAST_TS:
                return None if self.last_ts is None else (self.last_ts,)
            if command.sql == SQL.INSERT_MESSAGE:
                self.inserted.append(tuple(command.params))
                return None
            if command.sql in self._answers:
                result = self._answers[command.sql]
                return result(command) if callable(result) else result
        return AssertionError(f"FakeDb has no answer for {command!r}")

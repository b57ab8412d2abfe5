"""What the core needs from a database engine: the one seam a second engine plugs into.

Operations never hold SQL or an engine's rules: they ask the session's
:class:`Dialect` for statement text, how a write transaction starts, the
"no limit" value, the schema checks, the vacuum steps and lock, and how a
driver error is classified. :class:`~sansio_broker.sqlite.SQLiteDialect` is
the one implementation today; ``BrokerCore(dialect=...)`` takes another.

Conventions every dialect keeps, because the operations rely on them:

* statements bind parameters in the order documented here, with the driver's
  placeholder style, and selections return ``(body, ts)`` rows;
* boolean literals (the ``claimed`` flag) appear only inside statement text,
  so no operation writes one;
* the members that return an :data:`~sansio_broker.commands.Operation` are
  steps the core runs with ``yield from``: their commands go to the driver
  like any other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from .commands import Command, Operation
from .config import Config
from .errors import DatabaseError


@runtime_checkable
class Dialect(Protocol):
    """Statement text and engine-specific steps; see the module docstring."""

    DATABASE_NOUN: str
    """How refusals name a file of this engine ("an SQLite database")."""
    BACKEND_NAME: str
    """SimpleBroker's name of the backend, as dump headers carry it ("sqlite", "postgres")."""
    TEXT_ALLOWS_NUL: bool
    """Whether a message body may contain U+0000 (PostgreSQL's text cannot: refused before any I/O)."""

    # --- transactions and limits --------------------------------------------
    BEGIN_WRITE: str
    """Starts a write transaction that holds the write lock up to COMMIT (the
    ``Begin`` command carries it) or from its first ID allocation on (the
    allocation's compare-and-advance locks ``meta.last_ts``), so IDs
    allocated inside are serialized."""
    NO_LIMIT: int | None
    """The ``LIMIT ?`` parameter meaning "every row"."""

    # --- schema: reads on open, then creation or repair (SimpleBroker v6) -----
    LIST_TABLES: str
    """Names of the database's tables, one per row."""
    ALIASES_TABLE: str
    """The alias table's name (SQLite ``queue_aliases``; PostgreSQL ``aliases``)."""
    REPAIR_V6_INDEXES: tuple[str, ...]
    ENSURE_ALIASES: tuple[str, ...]

    def read_meta(self) -> Operation[dict[str, Any]]:
        """``magic``, ``schema_version``, ``last_ts`` as stored (absent keys: not stored)."""
        ...

    def bootstrap(self) -> Operation[bool]:
        """Inside a write transaction: create the schema (tables, indexes, the
        meta values), or return False when another process just did."""
        ...

    def connection_setup(self, config: Config) -> tuple[str, ...]:
        """Per-connection settings (nothing persisted), run on every new connection."""
        ...

    def check_engine(self) -> Operation[None]:
        """Refuse an engine too old for these statements."""
        ...

    def prepare_storage(self, label: str, *, new: bool) -> Operation[None]:
        """Persistent settings, once the file is admitted and before its first
        write; ``new``: an empty database, before its first table exists."""
        ...

    def check_messages_table(self, label: str, *, canonical: bool) -> Operation[bool]:
        """Refuse a ``messages`` table SimpleBroker would not accept (reads
        only); ``canonical``: schema v6, exact columns and indexes, else the
        four columns must exist. True when v6 indexes are missing (repairable)."""
        ...

    # --- message IDs -------------------------------------------------------
    READ_LAST_TS: str
    LOCK_LAST_TS: str
    """``READ_LAST_TS`` that also locks meta.last_ts to the end of the write
    transaction, so the next ``ADVANCE_LAST_TS`` of this writer cannot lose
    to another (SQLite: the same text; ``BEGIN IMMEDIATE`` already holds the lock)."""
    ADVANCE_LAST_TS: str
    """Params ``(new_value, must_be_greater_than)``; returns a row if it advanced."""
    MAX_TS: str

    # --- writes, groups, deletes, inspection ------------------------------
    INSERT_MESSAGE: str
    """Params ``(queue, body, ts)``."""
    LIST_QUEUES: str
    DELETE_BY_ID: str
    UNCLAIM_BY_ID: str
    RETURN_CLAIMED: str
    """Params ``(queue, body, ts)``: pending again, re-inserted if vacuumed meanwhile."""
    DELETE_QUEUE: str
    DELETE_ALL: str

    def delete_ids(self, queue: str, ids: list[int]) -> Operation[int]:
        """Inside a write transaction: delete the listed messages (``ids``: at
        least one, no repeats needed) of ``queue``; returns how many existed."""
        ...

    QUEUE_STATS: str
    ALL_QUEUE_STATS: str
    QUEUE_EXISTS: str
    OVERALL_STATS: str
    """One row ``(claimed, total)`` over every queue."""

    # --- lock order -------------------------------------------------------------
    # Commands run first in the operations that change many queues or the
    # aliases, so every program sharing the database takes its locks in one
    # order (the aliases, then meta.last_ts, then the messages table) and none
    # deadlocks another. Empty where the write lock serializes every writer
    # anyway (SQLite): the core then runs nothing.
    LOCK_ALIASES: tuple[Command, ...]
    """First in ``add_alias`` and ``remove_alias``."""
    LOCK_BROADCAST: tuple[Command, ...]
    """First in ``broadcast``, before it lists the queues."""
    LOCK_RENAME: tuple[Command, ...]
    """First in ``rename_queue``."""
    LOCK_KEEP_NEWEST: tuple[Command, ...]
    """In ``write(keep_newest=)``, after the ID allocation locked ``meta.last_ts``
    and before the INSERT."""

    # --- selections: claim, move, peek -------------------------------------
    def where(self, *, by_id: bool, unclaimed_only: bool, after: bool, before: bool) -> str:
        """The row filter of a selection, bound by :meth:`where_params`."""
        ...

    def where_params(
        self, queue: str, *, message_id: int | None, after: int | None, before: int | None
    ) -> tuple[int | str, ...]: ...

    def claim(self, where: str, newest: bool = False, *, skip_locked: bool = False) -> str:
        """Params: the filter's, then the limit; returns the claimed rows
        (the oldest, or with ``newest`` the newest, ``limit`` of them).
        ``skip_locked`` (``Config.relaxed_order``): pass over rows another
        claim or move holds instead of waiting for it, where the engine
        has row locks (ignored otherwise)."""
        ...

    def move(self, where: str, newest: bool = False, *, skip_locked: bool = False) -> str:
        """Params: the destination, the filter's, then the limit; returns the moved rows."""
        ...

    def peek(self, where: str, newest: bool = False) -> str:
        """Params: the filter's, then the limit."""
        ...

    CLAIM_OLDER_PENDING: str
    """Params ``(queue, queue, n - 1)``: claim all pending messages but the ``n`` newest."""

    # --- exact-ID inserts ---------------------------------------------------
    INSERT_EXACT: str
    """Params ``(queue, body, ts)``; run after RAISE_LAST_TS (the lock order)."""
    RAISE_LAST_TS: str
    """Params ``(value, value)``: ``meta.last_ts`` raised to ``value`` if below it."""

    # --- aliases --------------------------------------------------------------
    ALIAS_TARGET: str
    LIST_ALIASES: str
    INSERT_ALIAS: str
    DELETE_ALIAS: str
    SET_ALIAS_VERSION: str
    RETARGET_ALIASES: str
    """Params ``(new, old)``; rowcount."""
    RENAME_QUEUE: str
    """Params ``(new, old)``; rowcount. Then :meth:`change_notification` of both names."""

    # --- search, overview, dump -------------------------------------------------
    def find_ids(self, *, include_claimed: bool, after: bool, before: bool) -> str:
        """Params: queue, the literal substring, [after], [before], limit."""
        ...

    HAS_PENDING: str
    HAS_PENDING_AFTER: str
    COUNT_MESSAGES: str
    DATABASE_SIZE: str
    DUMP_PAGE: str
    """Params ``(last_ts, queue, queue, ts, limit)``: pending rows after the cursor, by (queue, ts)."""

    # --- vacuum -------------------------------------------------------------
    ANY_CLAIMED: str
    DELETE_CLAIMED_BATCH: str
    """Param: the batch size; deletes up to that many claimed rows."""

    def lock_vacuum(self) -> Operation[bool]:
        """Try, without waiting, to become the one vacuum of this database."""
        ...

    def unlock_vacuum(self) -> Operation[None]: ...

    def compact(self) -> Operation[None]:
        """Rebuild the file to return its free space (``vacuum(compact=True)``)."""
        ...

    def reclaim_space(self) -> Operation[None]:
        """Cheaply return some space after rows were deleted; failures are ignored."""
        ...

    # --- errors -------------------------------------------------------------
    def classify_error(self, message: str, code: int | str | None) -> DatabaseError:
        """A driver error (text, engine code: a result code or a SQLSTATE) as the core's error class:
        ``BusyError`` is retried, ``IntegrityError`` resyncs IDs,
        ``NotADatabaseDriverError`` refuses the file."""
        ...

    # --- change notification -------------------------------------------------
    def change_notification(self, queues: Sequence[str]) -> tuple[Command, ...]:
        """Commands a write transaction to ``queues`` runs before COMMIT so
        waiters in other processes learn of it: a PostgreSQL ``NOTIFY``;
        none for SQLite, whose waiters poll. Statements that make messages
        pending (INSERT_MESSAGE, INSERT_EXACT, RETURN_CLAIMED, UNCLAIM_BY_ID,
        ``move``) notify by themselves where the engine can; the core adds
        these only after RENAME_QUEUE (both names)."""
        ...


def where_params(queue: str, *, message_id: int | None, after: int | None, before: int | None) -> tuple[int | str, ...]:
    """The parameters of a ``where(...)`` filter in the order both dialects'
    text takes them: an exact ID and its queue, else the queue, then the bounds."""
    if message_id is not None:
        return (message_id, queue)
    params: tuple[int | str, ...] = (queue,)
    if after is not None:
        params += (after,)
    if before is not None:
        params += (before,)
    return params

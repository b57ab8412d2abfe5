"""SimpleBroker's ``Queue``, on this library: change one import, keep the program.

    from sansio_broker.adapters.compat import Queue   # was: from simplebroker import Queue

    with Queue("tasks", db_path="app.db") as tasks:
        tasks.write("job 1")
        body, ts = tasks.read_one(with_timestamps=True)

:class:`Queue` has ``simplebroker.Queue``'s (8.7.2) constructor, method names,
parameters, defaults, return values (plain ``str``, ``(body, ts)`` tuples,
``MovedMessage`` dicts, lazy closeable generators, :class:`QueueStats`) and
input errors: the same messages, raised as this library's errors, which are
``ValueError``/``TypeError`` where SimpleBroker's are. It works on the same
files, so a SimpleBroker process and a migrated one can share a database.

Underneath is the blocking adapter: every ``Queue`` of one file (and config)
in a process shares one :class:`~sansio_broker.adapters.blocking.Broker`,
opened at the first operation and closed when the last such ``Queue`` is
closed (``close()``, the ``with`` block) or garbage-collected. Threads and
``fork()`` are the blocking broker's business (a connection per thread, fresh
ones in a forked child). ``persistent=`` is accepted and changes nothing:
both modes share the broker. Queues of one file given different configs get
a broker each, which wait for each other's write transactions like two
processes do.

What differs, and why:

- ``runner=`` (a custom ``SQLRunner``) is refused with ``NotImplementedError``:
  the SQL comes from this library's core, not from a runner. So are non-SQLite
  backends (``BROKER_BACKEND``, a ``.broker.toml`` naming another backend):
  this library stores queues in SQLite only.
- ``config=None`` means SimpleBroker's defaults, as for ``simplebroker.Queue``
  (the environment is not read). ``config`` may also be a
  ``simplebroker.Config``, any mapping of ``BROKER_*`` (or unprefixed) keys, or a
  :class:`sansio_broker.Config`; unknown keys are refused.
- Between operations the database file stays open (SimpleBroker's default
  "ephemeral" mode closes it after each one); ``close()`` or
  ``cleanup_connections()`` release it, and a closed ``Queue`` stays usable.
- Database filenames are not restricted to SimpleBroker's ASCII character set.
- A queue name that is not a ``str`` raises a ``TypeError`` with this library's
  wording (SimpleBroker's is an accidental ``len()`` error). A ``limit`` that is
  not an ``int`` is a ``TypeError`` here too (SimpleBroker fails later, or
  claims with it as a float).
- Duplicate IDs in ``insert_messages`` raise :class:`sansio_broker.IntegrityError`,
  which is not a ``sqlite3.IntegrityError`` as SimpleBroker's is.
- An at-least-once ``move_generator`` batch is an explicit transaction of this
  thread: writes this thread makes while the batch is open join it (and are
  rolled back with it if the generator is closed mid-batch), where in
  SimpleBroker they wait on the batch's lock. In an at-least-once
  ``read_generator`` they raise ``TransactionError`` at once.
- ``get_data_version()`` returns ``None`` (SimpleBroker's own answer for
  "not available").
- Not provided: ``sidecar()``, ``create_activity_waiter()``,
  ``set_stop_event()`` (they raise ``NotImplementedError``), ``conn``,
  ``session``, and SimpleBroker's other exports (``QueueWatcher``,
  ``open_broker``, ``BrokerSession``...). For waiting consumers use the blocking
  adapter's ``Queue.watch``/``get``; ``Queue.broker`` is the blocking broker.
"""

from __future__ import annotations

__all__ = ["CloseableIterator", "DeliveryGuarantee", "MovedMessage", "Queue", "QueueStats"]

import os
import re
import threading
import tomllib
import weakref
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, TypedDict, TypeVar, cast, overload

from sansio_broker import (
    Config,
    InvalidInputError,
    InvalidTypeError,
    Message,
    MessageError,
    MessageTypeError,
    QueueNameError,
    QueueNameTypeError,
)

from ._sync import POSTGRES_SCHEMES
from .blocking import Broker

DeliveryGuarantee = Literal["exactly_once", "at_least_once"]
_Order = Literal["oldest", "newest"]
_Item_co = TypeVar("_Item_co", covariant=True)
_MessageId = int | str

DEFAULT_DB_NAME: Final = ".broker.db"
PEEK_BATCH_SIZE: Final = 1000
BODY_SEARCH_DEFAULT_LIMIT: Final = 100
_MAX_QUEUE_NAME_LENGTH: Final = 512
_QUEUE_NAME = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*")
_EXACT_ID = re.compile(r"[0-9]{19}")
_ID_CEILING: Final = 2**63  # SimpleBroker's SQLITE_MAX_INT64: IDs and bounds stay below it
_MAX_KEEP_NEWEST: Final = 9999


class MovedMessage(TypedDict):
    """What :meth:`Queue.move` returns for each message (SimpleBroker's shape)."""

    message: str
    timestamp: int


class CloseableIterator(Protocol[_Item_co]):
    """A single-use iterator to close when stopping early (a generator)."""

    def __iter__(self) -> CloseableIterator[_Item_co]: ...
    def __next__(self) -> _Item_co: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class QueueStats:
    """Counts for one queue, as ``simplebroker.QueueStats``."""

    queue: str
    pending: int
    claimed: int
    total: int

    @property
    def exists(self) -> bool:
        """Whether the queue has any rows, claimed ones included."""
        return self.total > 0


class _OmittedType:
    """``delete()`` without ``message_id``, told apart from an explicit ``None``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<argument omitted>"


_OMITTED = _OmittedType()


# ------------------------------------------------------------ shared brokers
_Key = tuple[str, Config]
_brokers: dict[_Key, tuple[Broker, int]] = {}
_brokers_lock = threading.Lock()
# Releases not yet counted. A garbage-collected Queue releases from inside
# whatever code the collector interrupted, perhaps this module's own under
# the lock, so a release only queues its key (an atomic append) and whoever
# holds the lock next counts it, never waiting for the lock itself.
_released: list[_Key] = []


def _acquire(key: _Key) -> Broker:
    """The process's broker for ``key``, opened by its first user."""
    with _brokers_lock:
        entry = _brokers.get(key)
        broker = Broker(key[0], config=key[1]) if entry is None else entry[0]
        _brokers[key] = (broker, 1 if entry is None else entry[1] + 1)
    _settle()
    return broker


def _release(key: _Key) -> None:
    """One user fewer; the last one closes the broker (its file descriptors)."""
    _released.append(key)
    _settle()


def _settle() -> None:
    while _released:
        if not _brokers_lock.acquire(blocking=False):
            return  # its holder settles on the way out
        unused = []
        try:
            while _released:
                key = _released.pop()
                broker, users = _brokers[key]
                if users > 1:
                    _brokers[key] = (broker, users - 1)
                else:
                    del _brokers[key]
                    unused.append(broker)
        finally:
            _brokers_lock.release()
        for broker in unused:
            broker.close()


# ---------------------------------------------------- SimpleBroker's checks
def _check_queue_name(name: object) -> str:
    if not isinstance(name, str):
        raise QueueNameTypeError(f"queue name must be a str, not {type(name).__name__}")
    if not name:
        raise QueueNameError("Invalid queue name: cannot be empty")
    if len(name) > _MAX_QUEUE_NAME_LENGTH:
        raise QueueNameError(f"Invalid queue name: exceeds {_MAX_QUEUE_NAME_LENGTH} characters")
    if not _QUEUE_NAME.fullmatch(name):
        raise QueueNameError(
            "Invalid queue name: must contain only letters, numbers, periods, "
            "underscores, and hyphens. Cannot begin with a hyphen or a period"
        )
    return name


def _check_body(message: object, max_size: int) -> str:
    if not isinstance(message, str):
        raise MessageTypeError("Message body must be a string")
    if len(message) * 4 > max_size or not message.isascii():  # short ASCII bodies skip the encode
        try:
            size = len(message.encode("utf-8"))
        except UnicodeEncodeError:
            raise MessageError("Message must be UTF-8 encodable (lone surrogates are not allowed)") from None
        if size > max_size:
            raise MessageError(
                f"Message size ({size} bytes) exceeds maximum allowed size "
                f"({max_size} bytes). Adjust BROKER_MAX_MESSAGE_SIZE if needed."
            )
    return message


def _check_order(order: object) -> _Order:
    if order not in ("oldest", "newest"):
        raise InvalidInputError("order must be 'oldest' or 'newest'")
    return order


def _check_bounded_order(order: object, all_messages: bool) -> _Order:
    checked = _check_order(order)
    if all_messages and checked != "oldest":
        raise InvalidInputError("order='newest' cannot be used with all_messages=True")
    return checked


def _check_delivery(value: object) -> DeliveryGuarantee:
    if value not in ("exactly_once", "at_least_once"):
        raise InvalidInputError(
            f"Invalid delivery_guarantee {value!r}; expected one of: 'exactly_once', 'at_least_once'"
        )
    return value


def _check_keep_newest(value: object) -> int | None:
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidTypeError("keep_newest must be an integer from 1 to 9999 or None")
    if not 1 <= value <= _MAX_KEEP_NEWEST:
        raise InvalidInputError("keep_newest must be between 1 and 9999")
    return value


def _check_bound(name: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int or None")
    if value < 0:
        raise InvalidInputError(f"{name} must be non-negative")
    if value >= _ID_CEILING:
        raise InvalidInputError(f"{name} exceeds maximum timestamp value")
    return value


def _check_id(value: object, name: str = "message_id") -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidTypeError(f"{name} must be an int message ID or exact 19-digit string")
    if isinstance(value, str):
        text = value.strip()
        if not _EXACT_ID.fullmatch(text) or int(text) >= _ID_CEILING:
            raise InvalidInputError("invalid message ID: expected exactly 19 digits within range")
        return int(text)
    if value < 0:
        raise InvalidInputError(f"{name} must be non-negative")
    if value >= _ID_CEILING:
        raise InvalidInputError(f"{name} exceeds maximum message ID value")
    return value


def _check_limit(limit: object) -> int:
    if isinstance(limit, bool):
        limit = int(limit)  # SimpleBroker compares it: True is 1, False is 0
    if not isinstance(limit, int):
        raise InvalidTypeError(f"limit must be an int, not {type(limit).__name__}")
    if limit < 1:
        raise InvalidInputError("limit must be at least 1")
    return limit


def _check_search(body_contains: object, limit: object) -> tuple[str, int]:
    if isinstance(body_contains, bool) or not isinstance(body_contains, str):
        raise InvalidTypeError("body_contains must be a string")
    if len(body_contains) > 1024:
        raise InvalidInputError("body_contains must be at most 1024 characters")
    if sum(1 for char in body_contains if not char.isspace()) < 3:
        raise InvalidInputError("body_contains must contain at least 3 non-whitespace characters")
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidTypeError("limit must be an int")
    if limit < 1:
        raise InvalidInputError("limit must be at least 1")
    if limit > 1000:
        raise InvalidInputError("limit must be at most 1000")
    return body_contains, limit


def _check_target(name: str) -> str:
    if isinstance(name, str) and not name:
        raise InvalidInputError("target_queue is required for move operation")
    return _check_queue_name(name)


def _same_queue_error() -> InvalidInputError:
    return InvalidInputError("Source and destination queues cannot be the same")


def _check_only_id(message_id: object, all_messages: bool, after: object, before: object) -> None:
    if message_id is not None and (all_messages or after is not None or before is not None):
        raise InvalidInputError("message_id cannot be used with all_messages, after_timestamp, or before_timestamp")


# ------------------------------------------------------ config and the file
def _settings(config: object) -> tuple[Config, dict[str, str]]:
    """Our ``Config`` and the ``BROKER_*`` path settings SimpleBroker reads."""
    if config is None:
        return Config(), {}
    if isinstance(config, Config):
        return config, {}
    if not isinstance(config, Mapping):
        raise InvalidTypeError(
            f"config must be a Config, a mapping of BROKER_* keys or None, not {type(config).__name__}"
        )
    # A simplebroker.Config is a mapping of unprefixed names (BUSY_TIMEOUT).
    keyed = {(k if str(k).startswith("BROKER_") else f"BROKER_{k}"): v for k, v in config.items()}
    paths = {k: "" if v is None else str(v) for k, v in keyed.items()}
    return Config.from_mapping(keyed, strict=True), paths


def _default_path(paths: Mapping[str, str]) -> str:
    """SimpleBroker's implicit target: a project ``.broker.toml`` or ``.broker.db``,
    under ``BROKER_DEFAULT_DB_LOCATION`` or the current directory, resolved now."""
    backend = paths.get("BROKER_BACKEND") or "sqlite"
    location = paths.get("BROKER_DEFAULT_DB_LOCATION", "")
    root = Path(location) if location and backend == "sqlite" else Path.cwd()
    root = root.expanduser().resolve()
    project = Path(paths.get("BROKER_PROJECT_CONFIG_PATH", "")).expanduser()
    toml = (root / project / (paths.get("BROKER_PROJECT_CONFIG_NAME") or ".broker.toml")).resolve()
    if toml.is_file():
        with toml.open("rb") as file:
            data = tomllib.load(file)
        if data.get("version") != 1:
            raise InvalidInputError(f"Unsupported {toml} version {data.get('version')!r}; expected 1")
        if data.get("backend") != "sqlite":
            raise NotImplementedError(
                f"{toml} selects the {data.get('backend')!r} backend: this Queue reads only SQLite project "
                "files; for PostgreSQL pass db_path='postgresql://...' and BROKER_BACKEND_SCHEMA in config"
            )
        target = data.get("target")
        if not isinstance(target, str) or not target:
            raise InvalidInputError(f"{toml} requires a non-empty string 'target'")
        return str((toml.parent / target).expanduser().resolve())
    if backend == "postgres":  # the schema is BROKER_BACKEND_SCHEMA, read into Config
        target = paths.get("BROKER_BACKEND_TARGET", "")
        if not target.startswith(POSTGRES_SCHEMES):
            raise InvalidInputError("BROKER_BACKEND=postgres needs BROKER_BACKEND_TARGET, a postgresql:// URL")
        return target
    if backend != "sqlite":
        raise NotImplementedError(f"BROKER_BACKEND={backend!r}: sansio_broker stores queues in SQLite or PostgreSQL")
    name = Path(paths.get("BROKER_DEFAULT_DB_NAME") or DEFAULT_DB_NAME)
    return str((name if name.is_absolute() else root / name).resolve())


def _resolve_path(db_path: object) -> str:
    text = os.fspath(cast(Any, db_path)) if hasattr(db_path, "__fspath__") else db_path
    if not isinstance(text, str):
        raise InvalidTypeError(f"db_path must be a str or an os.PathLike of str, not {type(db_path).__name__}")
    if text.startswith(POSTGRES_SCHEMES):  # a server, not a file (schema: BROKER_BACKEND_SCHEMA)
        return text
    path = Path(text).expanduser()
    try:
        return str(path.resolve())
    except (OSError, ValueError):
        return str(path)


# ------------------------------------------------------------------- shapes
def _shaped(message: Message, with_timestamps: bool) -> str | tuple[str, int]:
    return (message.body, message.id) if with_timestamps else message.body


def _all_shaped(messages: list[Message], with_timestamps: bool) -> list[str] | list[tuple[str, int]]:
    if with_timestamps:
        return [(m.body, m.id) for m in messages]
    return [m.body for m in messages]


def _moved(message: tuple[str, int]) -> MovedMessage:
    return {"message": message[0], "timestamp": message[1]}


def _in_batches(broker: Broker, take: Callable[[], list[Message]], once: bool) -> Generator[Message, None, None]:
    """At-least-once: each batch is one transaction, committed once fully
    yielded and rolled back (delivered again) if the generator is closed first."""
    while True:
        with broker.transaction():
            batch = take()
            yield from batch
        if once or not batch:
            return


class Queue:
    """A handle on one queue, as ``simplebroker.Queue`` (see the module's notes)."""

    def __init__(
        self,
        name: str,
        *,
        db_path: str | os.PathLike[str] | None = None,
        persistent: bool = False,
        runner: object | None = None,
        config: Config | Mapping[str, Any] | None = None,
    ) -> None:
        self.name = _check_queue_name(name)
        if runner is not None:
            raise NotImplementedError(
                "runner= is not supported: sansio_broker runs its own SQL on SQLite (see sansio_broker.adapters.compat)"
            )
        self._persistent = persistent
        self._config, paths = _settings(config)
        self._uses_default_target = db_path is None or db_path == ""
        self._path = _default_path(paths) if db_path is None or db_path == "" else _resolve_path(db_path)
        self._key: _Key = (self._path, self._config)
        self._lock = threading.Lock()
        self._broker: Broker | None = None
        self._lease: weakref.finalize[Any, Queue] | None = None
        self._last_ts: int | None = None

    # ------------------------------------------------------------ lifecycle
    @property
    def broker(self) -> Broker:
        """The blocking broker underneath (shared by this file's queues), for
        what SimpleBroker's ``Queue`` does not offer: ``watch``, ``get``, transactions.
        It is closed with the last of those queues."""
        broker = self._broker
        if broker is None:
            with self._lock:
                if self._broker is None:
                    self._broker = _acquire(self._key)
                    self._lease = weakref.finalize(self, _release, self._key)
                broker = self._broker
        return broker

    def close(self) -> None:
        """Let go of the shared broker (the last queue of a file closes it).
        Safe to repeat; the queue opens it again if used afterwards."""
        with self._lock:
            lease, self._lease, self._broker = self._lease, None, None
        if lease is not None:
            lease()

    def cleanup_connections(self) -> None:
        """As :meth:`close`: the queue stays usable."""
        self.close()

    def __enter__(self) -> Queue:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        parts = [repr(self.name)]
        if not self._uses_default_target and self._path != DEFAULT_DB_NAME:
            parts.append(f"db_path={self._path!r}")
        if self._persistent:
            parts.append("persistent=True")
        return f"Queue({', '.join(parts)})"

    @property
    def db_target(self) -> str:
        """The database file, as an absolute path."""
        return self._path

    @property
    def backend_name(self) -> str:
        return "sqlite"

    # --------------------------------------------------------------- writes
    def write(self, message: str, *, keep_newest: int | None = None) -> int:
        """Append ``message``; returns its ID (``keep_newest=N`` claims all but the N newest pending)."""
        keep = _check_keep_newest(keep_newest)
        _check_body(message, self._config.max_message_size)
        written = self.broker.write(self.name, message, keep_newest=keep)
        self._observe(written)
        return written

    def insert_messages(self, records: Iterable[tuple[str, _MessageId]]) -> None:
        """Insert pending messages with exact IDs (ints or 19-digit strings), in one transaction."""
        rows: list[tuple[str, int]] = []
        for record in records:
            try:
                message, message_id = record
            except (TypeError, ValueError):
                raise InvalidTypeError("queue insert records must be (message, message_id) tuples") from None
            # SimpleBroker's spellings of an ID (spaces, other digits) made exact;
            # the broker refuses ID 0 and duplicates with SimpleBroker's texts.
            rows.append((_check_body(message, self._config.max_message_size), _check_id(message_id)))
        if rows:
            self.broker.insert_messages(self.name, rows)
            self._observe(max(message_id for _, message_id in rows))

    def generate_timestamp(self) -> int:
        """A fresh ID, above every one given out (reserved: no message is written)."""
        reserved = self.broker.generate_id()
        self._last_ts = reserved
        return reserved

    get_ts = generate_timestamp

    @property
    def last_ts(self) -> int | None:
        """The database's ID high-water mark, read once and then tracked."""
        if self._last_ts is None:
            self._last_ts = self.refresh_last_ts()
        return self._last_ts

    def refresh_last_ts(self) -> int:
        latest = self.broker.status().last_timestamp
        self._last_ts = latest
        return latest

    def _observe(self, message_id: int) -> None:
        if self._last_ts is not None and message_id > self._last_ts:
            self._last_ts = message_id

    # ---------------------------------------------------------------- reads
    @overload
    def read(
        self,
        *,
        all_messages: Literal[False] = False,
        with_timestamps: Literal[False] = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        order: str = "oldest",
    ) -> str | None: ...
    @overload
    def read(
        self,
        *,
        all_messages: Literal[False] = False,
        with_timestamps: Literal[True],
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        order: str = "oldest",
    ) -> tuple[str, int] | None: ...
    @overload
    def read(
        self,
        *,
        all_messages: Literal[True],
        with_timestamps: Literal[False] = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        order: str = "oldest",
    ) -> CloseableIterator[str]: ...
    @overload
    def read(
        self,
        *,
        all_messages: Literal[True],
        with_timestamps: Literal[True],
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        order: str = "oldest",
    ) -> CloseableIterator[tuple[str, int]]: ...
    @overload
    def read(
        self,
        *,
        all_messages: bool = False,
        with_timestamps: bool = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        order: str = "oldest",
    ) -> str | tuple[str, int] | CloseableIterator[str | tuple[str, int]] | None: ...
    def read(
        self,
        *,
        all_messages: bool = False,
        with_timestamps: bool = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        order: str = "oldest",
    ) -> str | tuple[str, int] | CloseableIterator[str | tuple[str, int]] | CloseableIterator[Any] | None:
        """Claim one message (or, with ``all_messages``, a lazy generator of all of them)."""
        checked = _check_bounded_order(order, all_messages)
        _check_only_id(message_id, all_messages, after_timestamp, before_timestamp)
        if message_id is not None:
            return self.read_one(exact_timestamp=message_id, with_timestamps=with_timestamps, order=checked)
        if all_messages:
            return self.read_generator(
                with_timestamps=with_timestamps, after_timestamp=after_timestamp, before_timestamp=before_timestamp
            )
        if after_timestamp is None and before_timestamp is None:
            return self.read_one(with_timestamps=with_timestamps, order=checked)
        found = self.read_many(
            1,
            with_timestamps=with_timestamps,
            after_timestamp=after_timestamp,
            before_timestamp=before_timestamp,
            order=checked,
        )
        return found[0] if found else None

    @overload
    def read_one(
        self,
        *,
        exact_timestamp: _MessageId | None = None,
        with_timestamps: Literal[False] = False,
        order: str = "oldest",
    ) -> str | None: ...
    @overload
    def read_one(
        self, *, exact_timestamp: _MessageId | None = None, with_timestamps: Literal[True], order: str = "oldest"
    ) -> tuple[str, int] | None: ...
    @overload
    def read_one(
        self, *, exact_timestamp: _MessageId | None = None, with_timestamps: bool, order: str = "oldest"
    ) -> str | tuple[str, int] | None: ...
    def read_one(
        self, *, exact_timestamp: _MessageId | None = None, with_timestamps: bool = False, order: str = "oldest"
    ) -> str | tuple[str, int] | None:
        """Claim one message (committed before it is returned), or ``None``."""
        checked = _check_order(order)
        exact = None if exact_timestamp is None else _check_id(exact_timestamp, "exact_timestamp")
        if exact is not None:
            found = self.broker.claim(self.name, message_id=exact)
        else:
            found = self.broker.claim(self.name, order=checked)
        return None if found is None else _shaped(found, with_timestamps)

    @overload
    def read_many(
        self,
        limit: int,
        *,
        with_timestamps: Literal[False] = False,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        order: str = "oldest",
    ) -> list[str]: ...
    @overload
    def read_many(
        self,
        limit: int,
        *,
        with_timestamps: Literal[True],
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        order: str = "oldest",
    ) -> list[tuple[str, int]]: ...
    @overload
    def read_many(
        self,
        limit: int,
        *,
        with_timestamps: bool,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        order: str = "oldest",
    ) -> list[str] | list[tuple[str, int]]: ...
    def read_many(
        self,
        limit: int,
        *,
        with_timestamps: bool = False,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        order: str = "oldest",
    ) -> list[str] | list[tuple[str, int]]:
        """Claim up to ``limit`` messages in one transaction (committed before returning,
        whatever ``delivery_guarantee`` says, as in SimpleBroker)."""
        checked = _check_order(order)
        _check_delivery(delivery_guarantee)
        count = _check_limit(limit)
        after = _check_bound("after_timestamp", after_timestamp)
        before = _check_bound("before_timestamp", before_timestamp)
        found = self.broker.claim_many(self.name, count, after_timestamp=after, before_timestamp=before, order=checked)
        return _all_shaped(found, with_timestamps)

    @overload
    def read_generator(
        self,
        *,
        with_timestamps: Literal[False] = False,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
    ) -> CloseableIterator[str]: ...
    @overload
    def read_generator(
        self,
        *,
        with_timestamps: Literal[True],
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
    ) -> CloseableIterator[tuple[str, int]]: ...
    @overload
    def read_generator(
        self,
        *,
        with_timestamps: bool,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
    ) -> CloseableIterator[str | tuple[str, int]]: ...
    def read_generator(
        self,
        *,
        with_timestamps: bool = False,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
    ) -> Generator[Any, None, None]:
        """Claim messages lazily (nothing runs until the first ``next``).

        ``exactly_once`` commits each claim before yielding it;
        ``at_least_once`` claims batches of ``BROKER_GENERATOR_BATCH_SIZE``,
        each committed once fully yielded and delivered again if the
        generator is closed before that.
        """
        delivery = _check_delivery(delivery_guarantee)
        after = _check_bound("after_timestamp", after_timestamp)
        before = _check_bound("before_timestamp", before_timestamp)
        exact = None if exact_timestamp is None else _check_id(exact_timestamp, "exact_timestamp")
        broker = self.broker
        if exact is not None:

            def take_exact() -> list[Message]:
                found = broker.claim(self.name, message_id=exact)
                return [] if found is None else [found]

            if delivery == "exactly_once":
                yield from (_shaped(m, with_timestamps) for m in take_exact())
            else:
                yield from (_shaped(m, with_timestamps) for m in _in_batches(broker, take_exact, once=True))
            return
        interval = 1 if delivery == "exactly_once" else self._config.generator_batch_size
        yield from self._claims(broker, interval, after, before, with_timestamps)

    def _claims(
        self, broker: Broker, interval: int, after: int | None, before: int | None, with_timestamps: bool
    ) -> Generator[Any, None, None]:
        with broker.stream(
            self.name, commit_interval=interval, after_timestamp=after, before_timestamp=before
        ) as stream:
            for message in stream:
                yield _shaped(message, with_timestamps)

    # ---------------------------------------------------------------- peeks
    @overload
    def peek(
        self,
        *,
        all_messages: Literal[False] = False,
        with_timestamps: Literal[False] = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> str | None: ...
    @overload
    def peek(
        self,
        *,
        all_messages: Literal[False] = False,
        with_timestamps: Literal[True],
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> tuple[str, int] | None: ...
    @overload
    def peek(
        self,
        *,
        all_messages: Literal[True],
        with_timestamps: Literal[False] = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> CloseableIterator[str]: ...
    @overload
    def peek(
        self,
        *,
        all_messages: Literal[True],
        with_timestamps: Literal[True],
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> CloseableIterator[tuple[str, int]]: ...
    @overload
    def peek(
        self,
        *,
        all_messages: bool = False,
        with_timestamps: bool = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> str | tuple[str, int] | CloseableIterator[str | tuple[str, int]] | None: ...
    def peek(
        self,
        *,
        all_messages: bool = False,
        with_timestamps: bool = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        message_id: _MessageId | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> str | tuple[str, int] | CloseableIterator[str | tuple[str, int]] | CloseableIterator[Any] | None:
        """Look at one message (or, with ``all_messages``, a lazy generator of all), claiming nothing."""
        checked = _check_bounded_order(order, all_messages)
        _check_only_id(message_id, all_messages, after_timestamp, before_timestamp)
        if message_id is not None:
            return self.peek_one(
                exact_timestamp=message_id,
                with_timestamps=with_timestamps,
                include_claimed=include_claimed,
                order=checked,
            )
        if all_messages:
            return self.peek_generator(
                with_timestamps=with_timestamps,
                after_timestamp=after_timestamp,
                before_timestamp=before_timestamp,
                include_claimed=include_claimed,
            )
        if after_timestamp is None and before_timestamp is None:
            return self.peek_one(with_timestamps=with_timestamps, include_claimed=include_claimed, order=checked)
        found = self.peek_many(
            1,
            with_timestamps=with_timestamps,
            after_timestamp=after_timestamp,
            before_timestamp=before_timestamp,
            include_claimed=include_claimed,
            order=checked,
        )
        return found[0] if found else None

    @overload
    def peek_one(
        self,
        *,
        exact_timestamp: _MessageId | None = None,
        with_timestamps: Literal[False] = False,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> str | None: ...
    @overload
    def peek_one(
        self,
        *,
        exact_timestamp: _MessageId | None = None,
        with_timestamps: Literal[True],
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> tuple[str, int] | None: ...
    @overload
    def peek_one(
        self,
        *,
        exact_timestamp: _MessageId | None = None,
        with_timestamps: bool,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> str | tuple[str, int] | None: ...
    def peek_one(
        self,
        *,
        exact_timestamp: _MessageId | None = None,
        with_timestamps: bool = False,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> str | tuple[str, int] | None:
        """One message, not claimed, or ``None``."""
        checked = _check_order(order)
        exact = None if exact_timestamp is None else _check_id(exact_timestamp, "exact_timestamp")
        found = self.broker.peek(self.name, message_id=exact, include_claimed=bool(include_claimed), order=checked)
        return None if found is None else _shaped(found, with_timestamps)

    @overload
    def peek_many(
        self,
        limit: int = PEEK_BATCH_SIZE,
        *,
        with_timestamps: Literal[False] = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> list[str]: ...
    @overload
    def peek_many(
        self,
        limit: int = PEEK_BATCH_SIZE,
        *,
        with_timestamps: Literal[True],
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> list[tuple[str, int]]: ...
    @overload
    def peek_many(
        self,
        limit: int = PEEK_BATCH_SIZE,
        *,
        with_timestamps: bool,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> list[str] | list[tuple[str, int]]: ...
    def peek_many(
        self,
        limit: int = PEEK_BATCH_SIZE,
        *,
        with_timestamps: bool = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
        order: str = "oldest",
    ) -> list[str] | list[tuple[str, int]]:
        """Up to ``limit`` messages, not claimed."""
        checked = _check_order(order)
        count = _check_limit(limit)
        after = _check_bound("after_timestamp", after_timestamp)
        before = _check_bound("before_timestamp", before_timestamp)
        found = self.broker.peek_many(
            self.name,
            count,
            after_timestamp=after,
            before_timestamp=before,
            include_claimed=bool(include_claimed),
            order=checked,
        )
        return _all_shaped(found, with_timestamps)

    @overload
    def peek_generator(
        self,
        *,
        with_timestamps: Literal[False] = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
        include_claimed: bool = False,
    ) -> CloseableIterator[str]: ...
    @overload
    def peek_generator(
        self,
        *,
        with_timestamps: Literal[True],
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
        include_claimed: bool = False,
    ) -> CloseableIterator[tuple[str, int]]: ...
    @overload
    def peek_generator(
        self,
        *,
        with_timestamps: bool,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
        include_claimed: bool = False,
    ) -> CloseableIterator[str | tuple[str, int]]: ...
    def peek_generator(
        self,
        *,
        with_timestamps: bool = False,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
        include_claimed: bool = False,
    ) -> Generator[Any, None, None]:
        """Every message, lazily and in pages, claiming nothing."""
        after = _check_bound("after_timestamp", after_timestamp)
        before = _check_bound("before_timestamp", before_timestamp)
        exact = None if exact_timestamp is None else _check_id(exact_timestamp, "exact_timestamp")
        broker = self.broker
        if exact is not None:
            found = broker.peek(self.name, message_id=exact, include_claimed=bool(include_claimed))
            if found is not None:
                yield _shaped(found, with_timestamps)
            return
        with broker.stream(
            self.name, peek=True, after_timestamp=after, before_timestamp=before, include_claimed=bool(include_claimed)
        ) as stream:
            for message in stream:
                yield _shaped(message, with_timestamps)

    # ---------------------------------------------------------------- moves
    def _destination(self, destination: str | Queue) -> str:
        if not isinstance(destination, Queue):
            return destination  # checked after the arguments SimpleBroker checks first
        if destination._key != self._key:
            raise InvalidInputError(
                "Cannot move messages between different broker targets: "
                f"source={self._path!r}, destination={destination._path!r}"
            )
        return destination.name

    @overload
    def move(
        self,
        destination: str | Queue,
        *,
        message_id: _MessageId | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        all_messages: Literal[False] = False,
        order: str = "oldest",
    ) -> MovedMessage | None: ...
    @overload
    def move(
        self,
        destination: str | Queue,
        *,
        message_id: _MessageId | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        all_messages: Literal[True],
        order: str = "oldest",
    ) -> CloseableIterator[MovedMessage]: ...
    @overload
    def move(
        self,
        destination: str | Queue,
        *,
        message_id: _MessageId | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        all_messages: bool,
        order: str = "oldest",
    ) -> MovedMessage | CloseableIterator[MovedMessage] | None: ...
    def move(
        self,
        destination: str | Queue,
        *,
        message_id: _MessageId | None = None,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        all_messages: bool = False,
        order: str = "oldest",
    ) -> MovedMessage | CloseableIterator[MovedMessage] | None:
        """Move one message (by ID even if claimed; it stays claimed), or with
        ``all_messages`` a lazy generator moving each; ``{"message", "timestamp"}`` dicts."""
        checked = _check_bounded_order(order, all_messages)
        dest = self._destination(destination)
        if dest == self.name:
            raise _same_queue_error()
        _check_only_id(message_id, all_messages, after_timestamp, before_timestamp)
        if message_id is not None:
            one = self.move_one(
                dest, exact_timestamp=message_id, require_unclaimed=False, with_timestamps=True, order=checked
            )
            return None if one is None else _moved(one)
        if all_messages:
            return self._moved_all(dest, after_timestamp, before_timestamp)
        if after_timestamp is None and before_timestamp is None:
            one = self.move_one(dest, with_timestamps=True, order=checked)
            return None if one is None else _moved(one)
        found = self.move_many(
            dest,
            1,
            with_timestamps=True,
            after_timestamp=after_timestamp,
            before_timestamp=before_timestamp,
            order=checked,
        )
        return _moved(found[0]) if found else None

    def _moved_all(self, dest: str, after: int | None, before: int | None) -> Generator[MovedMessage, None, None]:
        moves = self.move_generator(dest, with_timestamps=True, after_timestamp=after, before_timestamp=before)
        try:
            for message in moves:
                yield _moved(message)
        finally:
            moves.close()

    @overload
    def move_one(
        self,
        destination: str | Queue,
        *,
        exact_timestamp: _MessageId | None = None,
        require_unclaimed: bool = True,
        with_timestamps: Literal[False] = False,
        order: str = "oldest",
    ) -> str | None: ...
    @overload
    def move_one(
        self,
        destination: str | Queue,
        *,
        exact_timestamp: _MessageId | None = None,
        require_unclaimed: bool = True,
        with_timestamps: Literal[True],
        order: str = "oldest",
    ) -> tuple[str, int] | None: ...
    @overload
    def move_one(
        self,
        destination: str | Queue,
        *,
        exact_timestamp: _MessageId | None = None,
        require_unclaimed: bool = True,
        with_timestamps: bool,
        order: str = "oldest",
    ) -> str | tuple[str, int] | None: ...
    def move_one(
        self,
        destination: str | Queue,
        *,
        exact_timestamp: _MessageId | None = None,
        require_unclaimed: bool = True,
        with_timestamps: bool = False,
        order: str = "oldest",
    ) -> str | tuple[str, int] | None:
        """Move one message atomically (claimed ones too with ``require_unclaimed=False``)."""
        checked = _check_order(order)
        dest = self._destination(destination)
        if dest == self.name:
            raise _same_queue_error()
        _check_target(dest)
        exact = None if exact_timestamp is None else _check_id(exact_timestamp, "exact_timestamp")
        found = self.broker.move(
            self.name, dest, message_id=exact, require_unclaimed=bool(require_unclaimed), order=checked
        )
        return None if found is None else _shaped(found, with_timestamps)

    @overload
    def move_many(
        self,
        destination: str | Queue,
        limit: int,
        *,
        with_timestamps: Literal[False] = False,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        require_unclaimed: bool = True,
        order: str = "oldest",
    ) -> list[str]: ...
    @overload
    def move_many(
        self,
        destination: str | Queue,
        limit: int,
        *,
        with_timestamps: Literal[True],
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        require_unclaimed: bool = True,
        order: str = "oldest",
    ) -> list[tuple[str, int]]: ...
    @overload
    def move_many(
        self,
        destination: str | Queue,
        limit: int,
        *,
        with_timestamps: bool,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        require_unclaimed: bool = True,
        order: str = "oldest",
    ) -> list[str] | list[tuple[str, int]]: ...
    def move_many(
        self,
        destination: str | Queue,
        limit: int,
        *,
        with_timestamps: bool = False,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        require_unclaimed: bool = True,
        order: str = "oldest",
    ) -> list[str] | list[tuple[str, int]]:
        """Move up to ``limit`` messages in one transaction (committed before returning)."""
        checked = _check_order(order)
        _check_delivery(delivery_guarantee)
        dest = self._destination(destination)
        if dest == self.name:
            raise _same_queue_error()
        count = _check_limit(limit)
        _check_target(dest)
        after = _check_bound("after_timestamp", after_timestamp)
        before = _check_bound("before_timestamp", before_timestamp)
        broker = self.broker
        if require_unclaimed:
            found = broker.move_many(
                self.name, dest, count, after_timestamp=after, before_timestamp=before, order=checked
            )
            return _all_shaped(found, with_timestamps)
        # Claimed rows too (they stay claimed): select them, then move each by ID, in one transaction.
        with broker.transaction():
            chosen = broker.peek_many(
                self.name, count, after_timestamp=after, before_timestamp=before, include_claimed=True, order=checked
            )
            moved = [broker.move(self.name, dest, message_id=m.id, require_unclaimed=False) for m in chosen]
        return _all_shaped([m for m in moved if m is not None], with_timestamps)

    @overload
    def move_generator(
        self,
        destination: str | Queue,
        *,
        with_timestamps: Literal[False] = False,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
    ) -> CloseableIterator[str]: ...
    @overload
    def move_generator(
        self,
        destination: str | Queue,
        *,
        with_timestamps: Literal[True],
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
    ) -> CloseableIterator[tuple[str, int]]: ...
    @overload
    def move_generator(
        self,
        destination: str | Queue,
        *,
        with_timestamps: bool,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
    ) -> CloseableIterator[str | tuple[str, int]]: ...
    def move_generator(
        self,
        destination: str | Queue,
        *,
        with_timestamps: bool = False,
        delivery_guarantee: DeliveryGuarantee = "exactly_once",
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        exact_timestamp: _MessageId | None = None,
    ) -> Generator[Any, None, None]:
        """Move messages lazily: one committed move per message (``exactly_once``),
        or batches committed once fully yielded (``at_least_once``)."""
        delivery = _check_delivery(delivery_guarantee)
        dest = self._destination(destination)
        if dest == self.name:
            raise _same_queue_error()
        _check_target(dest)
        after = _check_bound("after_timestamp", after_timestamp)
        before = _check_bound("before_timestamp", before_timestamp)
        exact = None if exact_timestamp is None else _check_id(exact_timestamp, "exact_timestamp")
        broker = self.broker
        if delivery == "exactly_once":
            while True:
                if exact is not None:
                    found = broker.move(self.name, dest, message_id=exact, require_unclaimed=True)
                else:
                    found = broker.move(self.name, dest, after_timestamp=after, before_timestamp=before)
                if found is None:
                    return
                yield _shaped(found, with_timestamps)
        size = self._config.generator_batch_size

        def take() -> list[Message]:
            if exact is not None:
                found = broker.move(self.name, dest, message_id=exact, require_unclaimed=True)
                return [] if found is None else [found]
            return broker.move_many(self.name, dest, size, after_timestamp=after, before_timestamp=before)

        for message in _in_batches(broker, take, once=exact is not None):
            yield _shaped(message, with_timestamps)

    # --------------------------------------------------------------- delete
    @overload
    def delete(self) -> bool: ...
    @overload
    def delete(self, *, message_id: _MessageId) -> bool: ...
    def delete(self, *, message_id: _MessageId | _OmittedType | None = _OMITTED) -> bool:
        """Delete the queue's messages (or the one with ``message_id``, claimed or not);
        whether anything was deleted."""
        if message_id is None:
            raise InvalidTypeError(
                "message_id=None is ambiguous; pass an ID or call delete() without arguments to delete the queue"
            )
        if isinstance(message_id, _OmittedType):
            return self.broker.delete(self.name) > 0
        return self.broker.delete_messages(self.name, [_check_id(message_id)]) > 0

    def delete_many(self, message_ids: Sequence[_MessageId]) -> int:
        """Delete these IDs of this queue (claimed or not; others ignored); how many were."""
        if not message_ids:
            return 0
        ids = list(dict.fromkeys(_check_id(m) for m in message_ids))
        return self.broker.delete_messages(self.name, ids)

    # ----------------------------------------------------------- inspection
    def exists(self) -> bool:
        """Whether the queue has any message, claimed ones included."""
        return self.broker.queue_exists(self.name)

    def stats(self) -> QueueStats:
        """Pending, claimed and total counts."""
        counts = self.broker.queue_stats(self.name)
        return QueueStats(
            queue=self.name, pending=counts.pending, claimed=counts.total - counts.pending, total=counts.total
        )

    def has_pending(self, after_timestamp: int | None = None) -> bool:
        """Whether a pending message exists (newer than ``after_timestamp``)."""
        after = _check_bound("after_timestamp", after_timestamp)
        return self.broker.has_pending(self.name, after_timestamp=after)

    def latest_pending_timestamp(self) -> int | None:
        """The newest pending message's ID, or ``None``."""
        newest = self.broker.peek(self.name, order="newest")
        return None if newest is None else newest.id

    def find_message_ids(
        self,
        *,
        body_contains: str,
        limit: int = BODY_SEARCH_DEFAULT_LIMIT,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        include_claimed: bool = False,
    ) -> list[int]:
        """IDs of messages whose body contains ``body_contains`` literally, oldest first."""
        needle, count = _check_search(body_contains, limit)
        after = _check_bound("after_timestamp", after_timestamp)
        before = _check_bound("before_timestamp", before_timestamp)
        return self.broker.find_message_ids(
            self.name,
            needle,
            limit=count,
            after_timestamp=after,
            before_timestamp=before,
            include_claimed=bool(include_claimed),
        )

    def stream_messages(
        self,
        *,
        peek: bool = False,
        all_messages: bool = True,
        after_timestamp: int | None = None,
        before_timestamp: int | None = None,
        batch_processing: bool = False,
        commit_interval: int = 1,
    ) -> Generator[tuple[str, int], None, None]:
        """``(body, ts)`` tuples, lazily: peeked, or claimed one at a time (in
        at-least-once batches of ``commit_interval`` with ``batch_processing``);
        only the first unless ``all_messages``."""
        source: CloseableIterator[tuple[str, int]]
        if peek:
            source = self.peek_generator(
                with_timestamps=True, after_timestamp=after_timestamp, before_timestamp=before_timestamp
            )
        elif all_messages and batch_processing and commit_interval > 1:
            after = _check_bound("after_timestamp", after_timestamp)
            before = _check_bound("before_timestamp", before_timestamp)
            source = self._claims(self.broker, commit_interval, after, before, True)
        else:
            source = self.read_generator(
                with_timestamps=True, after_timestamp=after_timestamp, before_timestamp=before_timestamp
            )
        try:
            for item in source:
                yield item
                if not all_messages:
                    return
        finally:
            source.close()

    def get_data_version(self) -> int | None:
        """``None``: the file's change counter is not exposed (SimpleBroker's "not available")."""
        return None

    # ------------------------------------------------------ not supported
    def sidecar(self, *, transaction: bool = False) -> Iterator[Any]:
        raise NotImplementedError("sidecar() is not supported by sansio_broker.adapters.compat")

    def create_activity_waiter(self, *, stop_event: threading.Event) -> Any:
        raise NotImplementedError(
            "create_activity_waiter() is not supported: wait with the blocking adapter's Queue.watch()/get()"
        )

    def set_stop_event(self, stop_event: threading.Event | None) -> None:
        raise NotImplementedError(
            "set_stop_event() is not supported: wait with the blocking adapter's Queue.watch()/get()"
        )

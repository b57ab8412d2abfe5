"""Checks every argument gets before any statement runs: SimpleBroker's rules for queue names, bodies and IDs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, TypeVar

from .errors import (
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    MessageIdError,
    MessageTypeError,
    QueueNameError,
    QueueNameTypeError,
)

MAX_QUEUE_NAME_LENGTH = 512
MAX_MESSAGE_ID = 2**63 - 1
MESSAGE_ID_DIGITS = 19
MAX_COUNT = 2**63 - 1  # SQLite's largest integer: a LIMIT or count beyond it cannot be bound
_MESSAGE_ID = re.compile(r"[0-9]{19}")
# Paths SQLite opens as a temporary or in-memory database, never a file on disk.
NOT_A_FILE_PATHS = ("", ":memory:")
T = TypeVar("T")
_QUEUE_NAME = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*")
# Names already checked: the hot path skips the regex. Shared by every thread
# and safe for it by construction: only ``in`` and ``add``, each one atomic, and
# never cleared; a name two threads add at once is simply added twice.
_valid_names: set[str] = set()


def check_queue_name(name: object) -> str:
    """Return ``name`` if SimpleBroker would accept it as a queue name."""
    if not isinstance(name, str):
        raise QueueNameTypeError(f"queue name must be a str, not {type(name).__name__}")
    if name in _valid_names:
        return name
    if not name or len(name) > MAX_QUEUE_NAME_LENGTH or not _QUEUE_NAME.fullmatch(name):
        raise QueueNameError(
            f"Invalid queue name {name[:80]!r}: must be 1-{MAX_QUEUE_NAME_LENGTH} characters, "
            "only letters, numbers, periods, underscores, and hyphens, "
            "and cannot begin with a hyphen or a period"
        )
    if len(_valid_names) < 10_000:
        _valid_names.add(name)
    return name


def check_body(body: object, max_size: int) -> str:
    """Return ``body`` if it is a ``str`` whose UTF-8 form fits ``max_size`` bytes."""
    if not isinstance(body, str):
        raise MessageTypeError(f"message body must be a str, not {type(body).__name__}")
    # A str needs at most 4 bytes per character: short bodies skip the encode.
    if len(body) * 4 > max_size or not body.isascii():
        try:
            size = len(body.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise MessageError(f"message body is not valid UTF-8 text: {exc.reason}") from None
        if size > max_size:
            raise MessageError(f"message is {size} bytes in UTF-8; the limit is {max_size}")
    return body


def check_bodies(bodies: object) -> Iterator[Any]:
    """An iterator over ``write_many``'s bodies (each still to be checked).

    A str or bytes would be written one character at a time, and ``None``
    or a number would surface as Python's bare ``TypeError``: all are refused
    as the library's type error.
    """
    if isinstance(bodies, str | bytes):
        raise InvalidTypeError("write_many takes an iterable of str bodies, not a single str")
    try:
        return iter(bodies)  # type: ignore[call-overload, no-any-return]
    except TypeError:
        raise InvalidTypeError(f"write_many takes an iterable of str bodies, not {type(bodies).__name__}") from None


def check_id_list(message_ids: object) -> list[int]:
    """``delete_messages``'s IDs, read once and each checked: a single ID,
    a str or ``None`` is refused as the library's type error."""
    if isinstance(message_ids, str | bytes | int):
        raise InvalidTypeError("message_ids must be an iterable of IDs, not a single one")
    try:
        items = list(message_ids)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidTypeError(f"message_ids must be an iterable of IDs, not {type(message_ids).__name__}") from None
    return [check_message_id(m) for m in items]


def check_message_id(value: object, name: str = "message_id") -> int:
    """An exact ID: an int in ``0..2**63-1`` or exactly 19 ASCII digits.

    Stricter than SimpleBroker 8.7.2, which strips whitespace and folds
    non-ASCII decimal digits: an ID is an identifier, and a spelling that
    only looks like one (``" 0…1"``, fullwidth digits) is refused, never guessed.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidTypeError(f"{name} must be an int or a 19-digit str, not {type(value).__name__}")
    if isinstance(value, str):
        if not _MESSAGE_ID.fullmatch(value):
            raise MessageIdError(
                f"invalid {name} {value[:40]!r}: expected exactly 19 ASCII digits, without spaces or signs"
            )
        value = int(value)
    if not 0 <= value <= MAX_MESSAGE_ID:
        raise MessageIdError(f"invalid {name} {value}: must be in 0..2**63-1")
    return value


def check_bound(value: object, name: str) -> int | None:
    """An ``after``/``before`` bound: ``None`` or an int in ``0..2**63-1``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= value <= MAX_MESSAGE_ID:
        raise MessageIdError(f"{name}={value} is out of range 0..2**63-1")
    return value


def check_positive(value: object, name: str) -> int:
    """A count such as ``limit`` or ``commit_interval``: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 1:
        raise InvalidInputError(f"{name} must be >= 1, got {value}")
    if value > MAX_COUNT:
        # SQLite binds 64-bit integers only; beyond that sqlite3 raises OverflowError.
        raise InvalidInputError(f"{name} must be <= 2**63-1, got {value}")
    return value


def check_timeout(value: object) -> float | None:
    """A wait's ``timeout`` in seconds: ``None`` (wait forever) or a finite number >= 0.

    Checked before anything waits, so a bad value never leaves a waiter behind.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidTypeError(f"timeout must be a number of seconds or None, not {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:  # an int beyond any float
        raise InvalidInputError(f"timeout must be a finite number of seconds, got {value}") from None
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise InvalidInputError(f"timeout must be a finite number of seconds (None waits forever), got {value}")
    if seconds < 0:
        raise InvalidInputError(f"timeout must be >= 0, got {value}")
    return seconds


def check_selection(message_id: Any, after: Any, before: Any) -> tuple[int | None, int | None, int | None]:
    """Validate a selection; an exact ID excludes range bounds."""
    if message_id is not None:
        if after is not None or before is not None:
            raise InvalidInputError("message_id cannot be combined with after_timestamp/before_timestamp")
        return check_message_id(message_id), None, None
    return None, check_bound(after, "after_timestamp"), check_bound(before, "before_timestamp")


def check_path(path: object) -> str:
    """The database path as a str, refused if it cannot name a file on disk.

    ``""`` and ``":memory:"`` make SQLite open a private temporary database
    that cannot switch to WAL or be shared, so they fail here with a clear
    message instead of at the first statement. Pure (no ``os``): ``PathLike``
    is read through its ``__fspath__``.
    """
    text = path
    fspath = getattr(type(path), "__fspath__", None)
    if fspath is not None and not isinstance(path, str | bytes):
        text = fspath(path)
    if not isinstance(text, str):
        raise InvalidTypeError(f"path must be a str or an os.PathLike of str, not {type(text).__name__}")
    if text in NOT_A_FILE_PATHS:
        raise InvalidInputError(
            f"path {text!r} names no file: SQLite would open a private in-memory database, "
            "but the broker needs a database file on disk (for WAL and for sharing between connections)"
        )
    if "\0" in text:
        raise InvalidInputError(f"path {text!r} contains a NUL character")
    return text


def check_broker(broker: object, expected: type[T], owner: str) -> T:
    """``broker`` if it is an ``expected``; a path (or another adapter's broker) is refused now,
    not at the first call as an ``AttributeError``."""
    if isinstance(broker, expected):
        return broker
    name = expected.__name__
    if isinstance(broker, str | bytes) or hasattr(type(broker), "__fspath__"):
        hint = f"; open one first (for example {name}(path)) and pass it"
    else:
        hint = ""
    raise InvalidTypeError(
        f"{owner}(name, broker): broker must be a broker object ({name}), not {type(broker).__name__}{hint}"
    )


ORDERS = ("oldest", "newest")
MAX_KEEP_NEWEST = 9999


def check_order(order: object) -> bool:
    """``order`` of a bounded selection; True for newest-first."""
    if not isinstance(order, str) or order not in ORDERS:
        raise InvalidInputError("order must be 'oldest' or 'newest'")
    return order == "newest"


def check_keep_newest(value: object) -> int | None:
    """``write(..., keep_newest=N)``: ``None`` or an int in 1..9999 (SimpleBroker's bounds)."""
    if value is None:
        return None
    if type(value) is not int:
        raise InvalidTypeError(f"keep_newest must be an integer from 1 to {MAX_KEEP_NEWEST} or None")
    if not 1 <= value <= MAX_KEEP_NEWEST:
        raise InvalidInputError(f"keep_newest must be between 1 and {MAX_KEEP_NEWEST}")
    return value


BODY_SEARCH_MAX_LIMIT = 1000
BODY_SEARCH_MIN_CHARS = 3
BODY_SEARCH_MAX_LENGTH = 1024


def check_needle(value: object) -> str:
    """``find_message_ids``'s literal substring: at most 1024 characters, at
    least 3 of them not whitespace (a search for "" or "a" matches everything)."""
    if not isinstance(value, str):
        raise InvalidTypeError("body_contains must be a string")
    if len(value) > BODY_SEARCH_MAX_LENGTH:
        raise InvalidInputError(f"body_contains must be at most {BODY_SEARCH_MAX_LENGTH} characters")
    if sum(1 for c in value if not c.isspace()) < BODY_SEARCH_MIN_CHARS:
        raise InvalidInputError(
            f"body_contains must contain at least {BODY_SEARCH_MIN_CHARS} non-whitespace characters"
        )
    return value


def check_search_limit(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidTypeError("limit must be an int")
    if value < 1:
        raise InvalidInputError("limit must be at least 1")
    if value > BODY_SEARCH_MAX_LIMIT:
        raise InvalidInputError(f"limit must be at most {BODY_SEARCH_MAX_LIMIT}")
    return value

"""Checks every argument gets before any statement runs (contract §5.1, §3.4)."""

from __future__ import annotations

import re
from typing import Any

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
_QUEUE_NAME = re.compile(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*")
_valid_names: set[str] = set()  # names already checked: the hot path skips the regex


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


def check_message_id(value: object, name: str = "message_id") -> int:
    """An exact ID: an int in ``0..2**63-1`` or a 19-digit string."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidTypeError(f"{name} must be an int or a 19-digit str, not {type(value).__name__}")
    if isinstance(value, str):
        text = value.strip()
        if len(text) != MESSAGE_ID_DIGITS or not text.isdecimal():
            raise MessageIdError(f"invalid {name} {value!r}: expected exactly 19 digits")
        value = int(text)
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
    return value


def check_selection(message_id: Any, after: Any, before: Any) -> tuple[int | None, int | None, int | None]:
    """Validate a selection; an exact ID excludes range bounds."""
    if message_id is not None:
        if after is not None or before is not None:
            raise InvalidInputError("message_id cannot be combined with after_timestamp/before_timestamp")
        return check_message_id(message_id), None, None
    return None, check_bound(after, "after_timestamp"), check_bound(before, "before_timestamp")

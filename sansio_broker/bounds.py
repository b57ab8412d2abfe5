"""The command line's spellings of message IDs and time bounds, as SimpleBroker 8.7.2 reads them.

``broker`` scripts pass ``--after 2024-01-15``, ``--before 1705329000000ms``
or ``-m 1796...``; the same strings must select the same messages here, and
the same bad strings must fail with the same words (scripts grep them). The
rules and texts are those of SimpleBroker's ``TimestampGenerator.validate``
(``_timestamp.py``); they live in the core because they are pure decisions.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime
from datetime import time as datetime_time

from .errors import MessageIdError

MAX_ID = 2**63  # exclusive: SQLite's signed 64-bit integers
UNIX_NATIVE_BOUNDARY = 2**44  # below: unix seconds/ms/ns by digit count; at or above: a native ID
TIME_MASK = ~0xFFF  # unit and ISO conversions drop the 12-bit logical counter
MAX_BOUND_CODEPOINTS = 128
NS_PER_SECOND = 1_000_000_000

GUIDANCE = (
    "timestamp bounds require integral seconds. For finer granularity, use integer "
    "ms, integer ns, or a native hybrid message ID."
)
INVALID_MESSAGE_ID = "invalid message ID: expected exactly 19 digits within range"

_SCIENTIFIC = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+(?:ns|ms|s)?")
_FRACTIONAL_SECONDS = re.compile(r"[T ].*[.,]\d+", re.IGNORECASE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_message_id(text: str) -> int:
    """``-m ID``: exactly 19 decimal digits (surrounding whitespace ignored), below 2**63."""
    text = text.strip()
    if len(text) != 19 or not text.isdecimal() or int(text) >= MAX_ID:
        raise MessageIdError(INVALID_MESSAGE_ID)
    return int(text)


def parse_bound(text: str) -> int:
    """``--after``/``--before``: a native ID, unix s/ms/ns, a unit suffix, or an ISO 8601 date or time."""
    text = text.strip()
    if not text:
        raise MessageIdError("Invalid timestamp: empty string")
    if len(text) > MAX_BOUND_CODEPOINTS:
        raise MessageIdError(f"Invalid timestamp: input exceeds {MAX_BOUND_CODEPOINTS} Unicode code points; {GUIDANCE}")
    # Any script's decimal digits mean the same number (and the same grammar).
    text = "".join(str(unicodedata.decimal(c)) if c.isdecimal() else c for c in text)
    if _SCIENTIFIC.fullmatch(text):
        raise MessageIdError(f"Invalid timestamp: scientific notation not supported; {GUIDANCE}")
    for parse in (_with_unit, _iso8601, _native_or_unix):
        value = parse(text)
        if value is not None:
            return value
    raise MessageIdError(f"Invalid timestamp: {text}; {GUIDANCE}")


def _masked(ns: int) -> int:
    value = ns & TIME_MASK
    if value >= MAX_ID:
        raise MessageIdError("Invalid timestamp: too far in future")
    return value


def _with_unit(text: str) -> int | None:
    if text.endswith("ns"):
        digits, multiplier = text[:-2], 1
    elif text.endswith("ms"):
        digits, multiplier = text[:-2], 1_000_000
    elif text.endswith("s") and text[-2:-1].isdecimal():
        digits, multiplier = text[:-1], NS_PER_SECOND
    else:
        return None
    if not digits.isdecimal():
        raise MessageIdError(f"Invalid timestamp: {text}; {GUIDANCE}")
    return _masked(int(digits) * multiplier)


def _iso8601(text: str) -> int | None:
    upper = text.upper()
    if not ("-" in text or "T" in upper or "Z" in upper or (len(text) == 8 and text.isdecimal())):
        return None
    if _FRACTIONAL_SECONDS.search(text):
        raise MessageIdError(f"Invalid timestamp: {text}; {GUIDANCE}")
    normalized = text.replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(normalized)
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(normalized), datetime_time.min, tzinfo=UTC)
        except ValueError:
            return None  # ISO-looking but not a date: the numeric reading decides
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    delta = moment - _EPOCH
    ns = (delta.days * 86_400 + delta.seconds) * NS_PER_SECOND + delta.microseconds * 1_000
    return 0 if ns < 0 else _masked(ns)  # before the epoch: "everything"


def _native_or_unix(text: str) -> int | None:
    if not text.isdecimal():
        return None
    value = int(text)
    if value >= UNIX_NATIVE_BOUNDARY:
        if value >= MAX_ID:
            raise MessageIdError("Invalid timestamp: exceeds maximum value")
        return value
    # Below 2**44 a number has at most 14 digits: seconds up to 11 digits, else milliseconds.
    ns = value * (1_000_000 if len(text.lstrip("0")) > 11 else NS_PER_SECOND)
    if ns & TIME_MASK >= MAX_ID:
        raise MessageIdError(f"Invalid timestamp: {text}")
    return ns & TIME_MASK

"""SimpleBroker's dump format (``simplebroker-dump`` v1): lines out, records in.

A dump is JSON lines: one header (``last_ts``, the ID high-water mark), the
aliases, then every pending message with its exact ID, queue by queue.
Claimed messages are left out: restoring them would deliver them again.
Each line is ``json.dumps(record, ensure_ascii=False, sort_keys=True)``, so
a dump of the same contents is byte-identical to SimpleBroker's and either
program loads the other's. Pure: the adapters read rows and feed lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from .errors import DumpFormatError, InvalidTypeError, MessageIdError
from .timestamps import COUNTER_MASK, PHYSICAL_MASK
from .validation import check_message_id

FORMAT = "simplebroker-dump"
VERSION = 1
LOAD_BATCH_SIZE = 1000  # message records inserted per transaction
INVALID_ID = "invalid message ID: expected exactly 19 digits within range"
RESERVED_ID = "message_id 0 is reserved; use a positive compatible SimpleBroker message ID"
NS_PER_SECOND = 1_000_000_000


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, ensure_ascii=False, sort_keys=True)


def header_line(last_ts: int, backend: str = "sqlite") -> str:
    """The first line; ``backend`` is informational (loads ignore it)."""
    return _line(
        {"type": "header", "format": FORMAT, "version": VERSION, "backend": backend, "last_ts": f"{last_ts:019d}"}
    )


def alias_line(alias: str, target: str) -> str:
    return _line({"type": "alias", "alias": alias, "target": target})


def message_line(queue: str, body: str, message_id: int) -> str:
    return _line({"type": "message", "queue": queue, "body": body, "id": f"{message_id:019d}"})


@dataclass(frozen=True)
class Selection:
    """Which queues and aliases a dump keeps: case-sensitive globs; exclude wins."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @classmethod
    def of(cls, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> Selection:
        return cls(_globs(include, "include"), _globs(exclude, "exclude"))

    def queue(self, name: str) -> bool:
        return self._keeps((name,))

    def alias(self, alias: str, target: str) -> bool:
        """An alias rides on either name: kept if either matches an include,
        dropped if either matches an exclude."""
        return self._keeps((alias, target))

    def _keeps(self, names: tuple[str, ...]) -> bool:
        if self.include and not any(fnmatchcase(n, g) for n in names for g in self.include):
            return False
        return not any(fnmatchcase(n, g) for n in names for g in self.exclude)


def _globs(value: Iterable[str], name: str) -> tuple[str, ...]:
    if isinstance(value, str | bytes):
        raise InvalidTypeError(f"{name} must be an iterable of glob strings, not a single string")
    globs = tuple(value)
    for glob in globs:
        if not isinstance(glob, str):
            raise InvalidTypeError(f"{name} globs must be str, not {type(glob).__name__}")
    return globs


@dataclass(frozen=True)
class AliasRecord:
    alias: str
    target: str


@dataclass(frozen=True)
class MessageRecord:
    queue: str
    body: str
    id: int


Record = AliasRecord | MessageRecord


class Reader:
    """Reads a dump line by line: :meth:`feed` returns the record to apply (or
    ``None`` for the header and blank lines) and raises :class:`DumpFormatError`
    with SimpleBroker's texts and the 1-based line number.

    ``now_ns`` (the wall clock) checks the header: a ``last_ts`` ahead of it
    adds a line to :attr:`warnings`, and more than ``max_future_skew_s`` ahead
    is refused unless ``force``.
    """

    def __init__(self, *, now_ns: int, max_future_skew_s: float, force: bool = False) -> None:
        self._now_ns = now_ns
        self._max_skew_ns = int(max_future_skew_s * NS_PER_SECOND)
        self._force = force
        self._line = 0
        self.last_ts: int | None = None
        self.warnings: list[str] = []

    def feed(self, raw: str) -> Record | None:
        self._line += 1
        if not isinstance(raw, str):
            raise InvalidTypeError(f"dump lines must be str, not {type(raw).__name__}")
        text = raw.strip()
        if not text:
            return None
        record = self._parse(text)
        kind = record.get("type")
        if self.last_ts is None:
            self._header(record, kind)
            return None
        if kind == "alias":
            alias, target = record.get("alias"), record.get("target")
            if not isinstance(alias, str) or not isinstance(target, str):
                raise self._error("alias record requires string 'alias' and 'target' fields")
            return AliasRecord(alias, target)
        if kind == "message":
            return self._message(record)
        if kind == "header":
            raise self._error("duplicate header")
        raise self._error(f"unknown record type {kind!r}")

    def finish(self) -> int:
        """The header's ``last_ts``, once every line was fed."""
        if self.last_ts is None:
            raise DumpFormatError("invalid dump input: missing header (is this a simplebroker dump?)")
        return self.last_ts

    def _parse(self, text: str) -> dict[str, Any]:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._error(f"malformed JSON ({exc.msg})") from None
        except ValueError:
            raise self._error("malformed JSON (numeric value is too large)") from None
        if not isinstance(record, dict):
            raise self._error("record must be a JSON object")
        return record

    def _header(self, record: dict[str, Any], kind: object) -> None:
        if kind != "header":
            raise self._error("first record must be the dump header")
        if record.get("format") != FORMAT:
            raise self._error("unrecognized dump format")
        version = record.get("version")
        if version != VERSION:
            raise self._error(f"unsupported dump version {version!r} (supported: {VERSION})")
        if "last_ts" not in record:
            raise self._error("header requires 'last_ts'")
        last_ts = self._id(record["last_ts"], "invalid header last_ts")
        self._check_skew(last_ts)
        self.last_ts = last_ts

    def _message(self, record: dict[str, Any]) -> MessageRecord:
        queue, body = record.get("queue"), record.get("body")
        if not isinstance(queue, str) or not isinstance(body, str):
            raise self._error("message record requires string 'queue' and 'body' fields")
        message_id = self._id(record.get("id"), INVALID_ID)
        if message_id == 0:
            raise self._error(RESERVED_ID)
        if self.last_ts is not None and message_id > self.last_ts:
            raise self._error("message id exceeds header last_ts")
        return MessageRecord(queue, body, message_id)

    def _id(self, value: object, problem: str) -> int:
        try:
            return check_message_id(value)
        except (MessageIdError, InvalidTypeError):
            raise self._error(problem) from None

    def _check_skew(self, last_ts: int) -> None:
        ahead_ns = (last_ts & PHYSICAL_MASK) - self._now_ns
        if ahead_ns <= 0:
            return
        remaining = COUNTER_MASK - (last_ts & COUNTER_MASK)
        self.warnings.append(
            f"dump header last_ts {last_ts:019d} is {ahead_ns / NS_PER_SECOND:.3f} seconds ahead of local wall "
            f"time; apparent clock skew leaves at most {remaining} broker-global generated IDs before writes "
            "wait for wall time and may raise TimestampError"
        )
        if ahead_ns > self._max_skew_ns and not self._force:
            raise self._error(
                f"dump header future skew exceeds configured maximum of {self._max_skew_ns / NS_PER_SECOND:g} seconds"
            )

    def _error(self, problem: str) -> DumpFormatError:
        return DumpFormatError(f"invalid dump input at line {self._line}: {problem}", self._line)

"""``sansio_broker.adapters.compat.Queue`` against ``simplebroker.Queue``: the
differential harness the tests here share.

A script is a function ``script(Q, path, record)`` using a ``Queue`` class
``Q`` on the database ``path``; it is run once with SimpleBroker's class and
once with ours, each on a fresh file, and what it recorded (answers, raised
errors) and the files' rows must agree. Message IDs differ between runs, so
every ID (an int above ``ID_FLOOR``) is replaced by its rank among the IDs
the run saw: order relations are compared, raw values are not.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

ID_FLOOR = 10**15  # hybrid timestamps are ~1.8e18; small ints (counts, inserted IDs) stay as they are
KINDS = ("ValueError", "TypeError", "IntegrityError", "NotImplementedError")


@dataclasses.dataclass(frozen=True)
class Raised:
    """An exception, by the families a caller catches it with, and its text."""

    kinds: frozenset[str]
    message: str


class Recorder:
    """What a script saw, in order."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.seen: list[tuple[str, Any]] = []

    def __call__(self, label: str, value: Any) -> Any:
        self.seen.append((label, describe(value, self.path)))
        return value

    def call(self, label: str, action: Callable[[], Any]) -> Any:
        """Record ``action()``'s answer, or what it raised (a generator is drained)."""
        try:
            value = action()
            if hasattr(value, "__next__"):
                value = ("iterator", list(value))
        except Exception as exc:  # the error is the observation
            names = {c.__name__ for c in type(exc).__mro__}
            self.seen.append((label, Raised(frozenset(names & set(KINDS)), str(exc).replace(self.path, "<db>"))))
            return None
        self.seen.append((label, describe(value, self.path)))
        return value


def describe(value: Any, path: str) -> Any:
    """A comparable picture of ``value``: its type name along with its content."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return value.replace(path, "<db>")
    if isinstance(value, tuple):
        return ("tuple", tuple(describe(v, path) for v in value))
    if isinstance(value, list):
        return ("list", [describe(v, path) for v in value])
    if isinstance(value, dict):
        return ("dict", {k: describe(v, path) for k, v in value.items()})
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: describe(getattr(value, f.name), path) for f in dataclasses.fields(value)}
        return (type(value).__name__, fields, getattr(value, "exists", None))
    raise AssertionError(f"cannot describe {value!r}")


def rows(path: Path) -> list[tuple[int, str, str, int]]:
    """The file's messages in ID order: (ID, queue, body, claimed)."""
    if not path.exists():
        return []
    with sqlite3.connect(path) as conn:
        found = conn.execute("SELECT ts, queue, body, claimed FROM messages ORDER BY ts").fetchall()
    conn.close()
    return [tuple(row) for row in found]


def ranked(value: Any, ranks: dict[int, str]) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return ranks.get(value, value)
    if isinstance(value, tuple | list):
        return type(value)(ranked(v, ranks) for v in value)
    if isinstance(value, dict):
        return {k: ranked(v, ranks) for k, v in value.items()}
    if isinstance(value, Raised):
        return value
    return value


def collect_ids(value: Any, into: set[int]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int) and value >= ID_FLOOR:
        into.add(value)
    elif isinstance(value, tuple | list):
        for v in value:
            collect_ids(v, into)
    elif isinstance(value, dict):
        for v in value.values():
            collect_ids(v, into)


def normalised(seen: list[tuple[str, Any]], db_rows: list[Any]) -> tuple[list[Any], list[Any]]:
    ids: set[int] = set()
    collect_ids(seen, ids)
    collect_ids(db_rows, ids)
    ranks = {value: f"ID{n}" for n, value in enumerate(sorted(ids))}
    return ranked(seen, ranks), ranked(db_rows, ranks)


def run(script: Callable[..., None], queue_class: type, path: Path) -> tuple[list[Any], list[Any]]:
    record = Recorder(str(path))
    script(queue_class, str(path), record)
    return normalised(record.seen, rows(path))


def compare(
    theirs: list[tuple[str, Any]], ours: list[tuple[str, Any]], own_wording: frozenset[str] = frozenset()
) -> None:
    """Equal, except that our error may belong to more families than theirs,
    and is worded our way for the labels in ``own_wording`` (documented differences)."""
    assert [label for label, _ in ours] == [label for label, _ in theirs]
    for (label, mine), (_, expected) in zip(ours, theirs, strict=True):
        if isinstance(expected, Raised) and isinstance(mine, Raised):
            assert expected.kinds <= mine.kinds, (label, expected, mine)
            if label not in own_wording:
                assert mine.message == expected.message, (label, expected, mine)
        else:
            assert mine == expected, (label, expected, mine)

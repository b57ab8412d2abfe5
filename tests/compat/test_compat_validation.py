"""What one program stores the other reads back unchanged, and what one refuses
the other refuses too (bodies and queue names)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import simplebroker

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import assert_file_healthy
from tests.support.rawdb import query

OpenOurs = Callable[[], Broker]
OpenSB = Callable[[str], simplebroker.Queue]
MAX_SIZE = 10 * 1024 * 1024

BODIES = {
    "empty": "",
    "nul": "a\x00b\x00",
    "newlines": "line1\nline2\r\n",
    "tab": "id\tbody",
    "unicode": "é ü ß 中文 😀 \u2028 \ufeff",
    "json-like": '{"message": "x", "timestamp": "0"}',
    "max-size-ascii": "x" * MAX_SIZE,
    "max-size-multibyte": "é" * (MAX_SIZE // 2),
}


@pytest.mark.parametrize("name", list(BODIES))
def test_bodies_round_trip_both_ways(db: Path, open_ours: OpenOurs, open_sb: OpenSB, name: str) -> None:
    body = BODIES[name]
    ours = open_ours()
    theirs = open_sb("q")

    mine = ours.write("q", body)
    assert theirs.read(with_timestamps=True) == (body, mine)
    other = theirs.write(body)
    assert ours.claim("q") == Message(body, other)

    assert (
        query(db, "SELECT typeof(body), length(CAST(body AS BLOB)) FROM messages ORDER BY ts")
        == [("text", len(body.encode()))] * 2
    )
    assert_file_healthy(db)


REFUSED_BODIES = {
    "too-big-ascii": "x" * (MAX_SIZE + 1),
    "too-big-multibyte": "é" * (MAX_SIZE // 2) + "x",
    "lone-surrogate": "a\ud800b",
    "bytes": b"abc",
    "none": None,
    "int": 5,
}


@pytest.mark.parametrize("name", list(REFUSED_BODIES))
def test_bodies_refused_by_both(db: Path, open_ours: OpenOurs, open_sb: OpenSB, name: str) -> None:
    body = REFUSED_BODIES[name]
    ours = open_ours()
    theirs = open_sb("q")
    with pytest.raises(ValueError):
        theirs.write(body)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ours.write("q", body)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        ours.write_many("q", ["fine", body])  # type: ignore[list-item]
    assert query(db, "SELECT COUNT(*) FROM messages") == [(0,)]
    assert_file_healthy(db)


QUEUE_NAMES = [
    "a",
    "_x",
    "9",
    "a.b-c_d",
    "a" * 512,
    "a" * 513,
    "-x",
    ".x",
    "",
    "a b",
    "a\n",
    "a/b",
    "@alias",
    "é",
    "q*",
]


@pytest.mark.parametrize("name", QUEUE_NAMES, ids=[repr(n[:12]) + f"-{len(n)}" for n in QUEUE_NAMES])
def test_queue_names_accepted_and_refused_alike(db: Path, open_ours: OpenOurs, name: str) -> None:
    ours = open_ours()
    try:
        with simplebroker.Queue(name, db_path=str(db), persistent=True) as q:
            sb_id: int | None = q.write("from-sb")
    except ValueError:
        sb_id = None
    if sb_id is None:
        with pytest.raises(ValueError):
            ours.write(name, "from-ours")
        assert query(db, "SELECT COUNT(*) FROM messages") == [(0,)]
    else:
        ours_id = ours.write(name, "from-ours")
        assert ours.claim_all(name) == [Message("from-sb", sb_id), Message("from-ours", ours_id)]
    assert_file_healthy(db)

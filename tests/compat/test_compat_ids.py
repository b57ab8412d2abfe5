"""Message-ID allocation shared with SimpleBroker: one strict order across both programs.

Both programs allocate from ``meta.last_ts`` with the same compare-and-advance,
so they must keep one strictly increasing sequence through clock regressions,
an exhausted 12-bit counter, big batches and a ``last_ts`` that fell behind.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import simplebroker

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import assert_file_healthy, parse_t, sb
from tests.support.rawdb import connect, meta, rows

OpenOurs = Callable[[], Broker]
COUNTER_MASK = 0xFFF


def set_last_ts(db: Path, value: int) -> None:
    with connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'last_ts'", (value,))


def sb_write_lib(db: Path, body: str) -> int:
    """One write by a fresh SimpleBroker handle; any warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with simplebroker.Queue("q", db_path=str(db), persistent=True) as q:
            return q.write(body)


def test_future_last_ts_is_continued_by_both(db: Path, open_ours: OpenOurs) -> None:
    """A last_ts ahead of the clock (clock regression): both carry on at last_ts+1, +2, ..."""
    ours = open_ours()
    ours.write("q", "seed")
    future = ((time.time_ns() + 10_000_000_000) & ~COUNTER_MASK) | 5
    set_last_ts(db, future)

    got = [
        ours.write("q", "a"),
        sb_write_lib(db, "b"),
        *ours.write_many("q", ["c", "d"]),
        sb_write_lib(db, "e"),
        ours.write("q", "f"),
    ]

    assert got == [future + i for i in range(1, 7)]
    assert meta(db)["last_ts"] == future + 6
    assert [body for _, body, _, _ in rows(db)] == ["seed", "a", "b", "c", "d", "e", "f"]
    assert_file_healthy(db)


def test_exhausted_counter_waits_for_the_clock_on_both_sides(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    physical = (time.time_ns() + 30_000_000) & ~COUNTER_MASK  # 30 ms ahead
    ours.write("q", "seed")
    set_last_ts(db, physical | 0xFFD)

    got = [ours.write("q", "a"), sb_write_lib(db, "b"), ours.write("q", "c"), sb_write_lib(db, "d")]

    assert got[:2] == [physical | 0xFFE, physical | 0xFFF]
    assert got[2] > physical | COUNTER_MASK, "after the last counter value the clock must move on"
    assert got[3] > got[2]
    assert time.time_ns() >= physical, "an ID of a tick that has not come yet"
    assert_file_healthy(db)


def test_big_batch_then_sb_continues(db: Path, open_ours: OpenOurs) -> None:
    """A write_many larger than the 4096 counter values of one tick."""
    ours = open_ours()
    ids = ours.write_many("q", [f"m{i}" for i in range(5000)])
    assert all(a < b for a, b in pairwise(ids))
    assert meta(db)["last_ts"] == ids[-1]

    after = sb_write_lib(db, "sb")
    mine = ours.write("q", "ours")

    assert ids[-1] < after < mine
    listed = parse_t(sb(db, "peek", "q", "--all", "-t").stdout)
    assert [ident for ident, _ in listed] == [*ids, after, mine]
    assert_file_healthy(db)


def test_last_ts_behind_rows_is_repaired_before_sb_notices(db: Path, open_ours: OpenOurs) -> None:
    """Rows newer than last_ts (a migrated v1 file): we must not hand SimpleBroker a conflict."""
    ids = [sb_write_lib(db, f"m{i}") for i in range(3)]
    set_last_ts(db, 0)

    ours = open_ours()
    first = ours.write("q", "ours")
    assert first > ids[-1]
    assert meta(db)["last_ts"] >= first

    theirs = sb_write_lib(db, "sb")  # a resync would warn, and warnings are errors here
    assert theirs > first
    assert ours.peek_many("q", 10) == [
        *(Message(f"m{i}", ids[i]) for i in range(3)),
        Message("ours", first),
        Message("sb", theirs),
    ]
    assert_file_healthy(db)

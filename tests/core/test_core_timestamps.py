"""Hybrid message IDs: (wall_ns & ~0xFFF) | counter12, as SimpleBroker allocates them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sansio_broker import TimestampError
from sansio_broker.testing import run_with
from sansio_broker.timestamps import (
    COUNTER_MASK,
    ID_LIMIT,
    PHYSICAL_MASK,
    is_legacy_layout,
    next_block,
    next_id,
    wait_ns,
)
from tests.core.core_testkit import NOW, TICK, FakeDb, make_session

# Realistic wall clocks (2001..2262) and ID high-water marks around them.
clocks = st.integers(min_value=10**18, max_value=2**62)
offsets = st.integers(min_value=-(10**10), max_value=10**10)


def test_layout_constants() -> None:
    assert COUNTER_MASK == 0xFFF
    assert PHYSICAL_MASK == ~0xFFF
    assert ID_LIMIT == 2**63


# ----------------------------------------------------------------- next_id
def test_clock_ahead_gives_its_tick_with_counter_zero() -> None:
    assert next_id(NOW + TICK + 123, NOW + 7) == NOW + TICK
    assert next_id(NOW, 0) == NOW


def test_same_tick_increments_the_counter() -> None:
    assert next_id(NOW + 100, NOW) == NOW + 1  # same physical tick, even with a later ns
    assert next_id(NOW, NOW + 41) == NOW + 42


def test_regressed_clock_carries_the_physical_part_forward() -> None:
    last = NOW + 10 * TICK + 5
    assert next_id(NOW, last) == last + 1
    assert (next_id(NOW, last) or 0) & PHYSICAL_MASK == last & PHYSICAL_MASK


def test_exhausted_counter_returns_none() -> None:
    last = NOW | 0xFFF
    assert next_id(NOW, last) is None
    assert next_id(NOW - TICK, last) is None
    assert next_id(NOW + TICK, last) == NOW + TICK  # the clock moved on: fine again
    assert next_id(NOW, NOW | 0xFFE) == NOW | 0xFFF  # the last counter value is usable


def test_next_id_beyond_int64_is_an_error() -> None:
    with pytest.raises(TimestampError, match="2\\*\\*63"):
        next_id(2**63, 0)
    assert next_id(0, 2**63 - 2) == 2**63 - 1
    assert next_id(0, 2**63 - 1) is None  # counter 0xFFF at the very top


# -------------------------------------------------------------- next_block
def test_next_block_is_consecutive() -> None:
    assert next_block(NOW, 0, 3) == range(NOW, NOW + 3)
    assert next_block(NOW, NOW + 5, 2) == range(NOW + 6, NOW + 8)
    assert next_block(NOW, NOW | 0xFFF, 2) is None
    assert next_block(NOW, 0, 1) == range(NOW, NOW + 1)


def test_next_block_may_run_into_later_ticks() -> None:
    block = next_block(NOW, NOW | 0xFFE, 3)
    assert block == range(NOW | 0xFFF, (NOW | 0xFFF) + 3)
    assert block is not None and block[-1] == NOW + TICK + 1


def test_next_block_beyond_int64_is_an_error() -> None:
    assert next_block(0, 2**63 - 3, 2) == range(2**63 - 2, 2**63)
    with pytest.raises(TimestampError, match="2\\*\\*63"):
        next_block(0, 2**63 - 3, 3)
    with pytest.raises(TimestampError):
        next_block(2**63 - TICK, 0, TICK + 1)


# ---------------------------------------------------------- wait / legacy
def test_wait_ns_is_the_time_until_the_clock_passes_the_tick() -> None:
    assert wait_ns(NOW, NOW | 0xFFF) == TICK
    assert wait_ns(NOW + 100, NOW | 0xFFF) == TICK - 100
    assert wait_ns(NOW + TICK, NOW | 0xFFF) == 0
    assert wait_ns(NOW + 5 * TICK, NOW) == 0
    assert wait_ns(NOW, NOW + 2_000_000_000) == (NOW + 2_000_000_000) - NOW - (2_000_000_000 % TICK) + TICK


def test_is_legacy_layout() -> None:
    # SimpleBroker before 2.1: (microseconds << 12) | counter, about 7.2e18 in 2025.
    legacy = (1_750_000_000_000_000 << 12) | 5
    assert is_legacy_layout(legacy, NOW) is True
    assert is_legacy_layout(NOW, NOW) is False
    assert is_legacy_layout(NOW + 2**40, NOW) is False
    assert is_legacy_layout(0, NOW) is False
    # Merely ahead of the clock (a dump loaded with --force, a clock that
    # went back): the IDs carry on, as SimpleBroker's do.
    assert is_legacy_layout(NOW + 2**40 + 1, NOW) is False
    assert is_legacy_layout(NOW + 86_400 * 10**9, NOW) is False
    assert is_legacy_layout(4_000_000_000_000_000_000, NOW) is False  # decodes to the year 2000
    # The old layout decodes to a time between 2020 and now.
    assert is_legacy_layout((1_577_836_800_000_000 << 12) | 1, NOW) is True
    assert is_legacy_layout((1_577_836_700_000_000 << 12) | 1, NOW) is False  # 2019: no release wrote it
    assert is_legacy_layout(((NOW // 1000 + 10**12) << 12), NOW) is False  # decodes to the future


# -------------------------------------------------------------- properties
@settings(max_examples=300, deadline=None, database=None)
@given(now=clocks, offset=offsets)
def test_next_id_is_greater_and_keeps_the_layout(now: int, offset: int) -> None:
    last = max(0, now + offset)
    got = next_id(now, last)
    if got is None:
        assert last & COUNTER_MASK == COUNTER_MASK
        assert now & PHYSICAL_MASK <= last & PHYSICAL_MASK
        assert wait_ns(now, last) > 0
        return
    assert got > last
    if now & PHYSICAL_MASK > last & PHYSICAL_MASK:
        assert got == now & PHYSICAL_MASK  # the clock's tick, counter 0
        assert got & COUNTER_MASK == 0
    else:
        assert got == last + 1  # physical part carried forward
        assert got & PHYSICAL_MASK == last & PHYSICAL_MASK
    assert wait_ns(now, last) == 0 or got & PHYSICAL_MASK == last & PHYSICAL_MASK


@settings(max_examples=200, deadline=None, database=None)
@given(now=clocks, offset=offsets, count=st.integers(min_value=1, max_value=10_000))
def test_next_block_is_unique_increasing_and_starts_at_next_id(now: int, offset: int, count: int) -> None:
    last = max(0, now + offset)
    block = next_block(now, last, count)
    first = next_id(now, last)
    if first is None:
        assert block is None
        return
    assert block is not None
    assert len(block) == count
    assert block[0] == first > last
    assert block[-1] == first + count - 1 < ID_LIMIT


@settings(max_examples=60, deadline=None, database=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=-3 * TICK, max_value=3 * TICK),  # clock jump, may go backwards
            st.integers(min_value=1, max_value=5),  # bodies per write_many
            st.integers(min_value=0, max_value=4),  # competing writer's advance of last_ts
        ),
        min_size=1,
        max_size=25,
    )
)
def test_allocated_ids_are_strictly_increasing_and_unique(steps: list[tuple[int, int, int]]) -> None:
    """Session-level property: whatever the clock and other writers do, IDs
    grow, never repeat, and meta.last_ts ends at the newest one."""
    session = make_session(auto_vacuum=False)
    db = FakeDb()
    ids: list[int] = []
    for jump, count, competitor in steps:
        db.now = max(0, db.now + jump)
        if competitor and db.last_ts:
            db.last_ts += competitor  # another process allocated meanwhile
        got, _ = run_with(session.write_many("q", ["m"] * count), db)
        assert all(g > (ids[-1] if ids else 0) for g in got)
        ids.extend(got)
    assert ids == sorted(set(ids))
    assert db.last_ts == ids[-1]
    assert [row[2] for row in db.inserted] == ids

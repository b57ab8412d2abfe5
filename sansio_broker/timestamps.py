"""Hybrid message IDs, as SimpleBroker allocates them, so both programs' IDs interleave in one order.

An ID is ``(wall_ns & ~0xFFF) | counter``: nanosecond-scale wall time with a
12-bit counter in the low bits. Pure functions only; the clock is an argument.
"""

from __future__ import annotations

from .errors import TimestampError

COUNTER_BITS = 12
COUNTER_MASK = (1 << COUNTER_BITS) - 1  # 0xFFF
PHYSICAL_MASK = ~COUNTER_MASK
ID_LIMIT = 2**63  # IDs are SQLite INTEGERs: strictly below this
# SimpleBroker before 2.1 wrote IDs as ``µs << 12`` (about 7.2e18 in 2025);
# the current allocator cannot continue them. Such a last_ts is far ahead of
# the clock AND reads as a time between 2020 and now when decoded that way; a
# last_ts merely ahead (a dump loaded with --force) is not, and carries on.
LEGACY_LAYOUT_MARGIN_NS = 2**40
LEGACY_EARLIEST_US = 1_577_836_800_000_000  # 2020-01-01, before any such release


def next_id(now_ns: int, last: int) -> int | None:
    """The smallest valid ID after ``last`` at wall time ``now_ns``.

    ``None`` means the counter for ``physical(last)`` is used up and the clock
    has not passed it yet: the caller must wait and ask again. A clock that
    went backwards carries the physical part of ``last`` forward.
    """
    physical_now = now_ns & PHYSICAL_MASK
    physical_last = last & PHYSICAL_MASK
    if physical_now > physical_last:
        candidate = physical_now
    elif (last & COUNTER_MASK) < COUNTER_MASK:
        candidate = last + 1
    else:
        return None
    if candidate >= ID_LIMIT:
        raise TimestampError(f"message ID {candidate} would exceed 2**63-1")
    return candidate


def next_block(now_ns: int, last: int, count: int) -> range | None:
    """``count`` consecutive IDs after ``last`` (``None``: wait, as in :func:`next_id`).

    A batch takes consecutive integers, so past 4096 IDs it runs into the
    following physical ticks (one ID per nanosecond) instead of waiting for
    the clock: still unique, increasing and in the same layout.
    """
    first = next_id(now_ns, last)
    if first is None:
        return None
    if first + count > ID_LIMIT:
        raise TimestampError(f"{count} message IDs from {first} would exceed 2**63-1")
    return range(first, first + count)


def wait_ns(now_ns: int, last: int) -> int:
    """How long until the clock passes ``physical(last)`` (0 if it already has)."""
    return max(0, (last & PHYSICAL_MASK) + COUNTER_MASK + 1 - now_ns)


def is_legacy_layout(last: int, now_ns: int) -> bool:
    """True for a ``last_ts`` in the pre-2.1 ``µs << 12`` layout."""
    if last <= now_ns + LEGACY_LAYOUT_MARGIN_NS:
        return False
    micros = last >> COUNTER_BITS
    return LEGACY_EARLIEST_US <= micros <= (now_ns + LEGACY_LAYOUT_MARGIN_NS) // 1000

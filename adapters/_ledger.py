"""What every driver keeps of an operation, and the hooks its runner passes in.

Shared by the async driver loop (``_async_driver.py``) and the synchronous
one generated from it (``_driver.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from sansio_broker import Message
from sansio_broker.driver import Command

Guard = Callable[[Command], BaseException | None]
"""Looks at each command before it runs; returns an exception to throw in instead."""

Seal = Callable[[], frozenset[int]]
"""Answers ``SealGroup``: the positions of the group's members that withdrew."""


def no_withdrawals() -> frozenset[int]:
    return frozenset()


class Settled(NamedTuple):
    """What a driver's ``settle`` found."""

    landed: bool  # the operation's latest COMMIT took effect
    claimed: list[Message] | None  # what it claimed there (None: not a claim)
    queue: str = ""  # whose messages those are


NOT_LANDED = Settled(False, None)


def messages(rows: list[tuple[str, int]] | None) -> list[Message]:
    """A claim statement's rows ``(body, id)`` as messages."""
    return [Message(body, ts) for body, ts in rows or ()]

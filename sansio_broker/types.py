"""Values operations return to users."""

from __future__ import annotations

from typing import Literal, NamedTuple


class Message(NamedTuple):
    """A message and its ID. Unpacks like SimpleBroker's ``(body, timestamp)``."""

    body: str
    id: int

    @property
    def timestamp(self) -> int:
        """The ID under SimpleBroker's name: it is a hybrid timestamp."""
        return self.id


class QueueStats(NamedTuple):
    """Counts for one queue. Unpacks as ``(queue, pending, total)``."""

    queue: str
    pending: int
    total: int

    @property
    def claimed(self) -> int:
        """Rows read but not yet removed by vacuum."""
        return self.total - self.pending


Order = Literal["oldest", "newest"]
"""Which end a bounded selection (one message, or ``limit`` of them) starts from."""


class RenameResult(NamedTuple):
    """What :meth:`rename_queue` did, with both names after alias resolution."""

    old_queue: str
    new_queue: str
    messages_renamed: int
    aliases_retargeted: int
    renamed: bool


class LoadResult(NamedTuple):
    """How many messages and aliases a dump load inserted."""

    messages: int
    aliases: int


class BrokerStatus(NamedTuple):
    """Overall counts: every row (claimed ones until vacuumed), ``meta.last_ts``,
    and the database's size in bytes (pages in use times page size)."""

    total_messages: int
    last_timestamp: int
    db_size: int

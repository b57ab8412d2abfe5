"""Values operations return to users."""

from __future__ import annotations

from typing import NamedTuple


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

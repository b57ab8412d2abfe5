"""Waiting consumers: who waits for which queue, and who is served next.

The bookkeeping every engine shares, free of any runtime (like
:mod:`._group`, whose :class:`~._group.Member` and states it reuses).

* **Getters** (``get``/``get_message``/consuming ``watch``) wait in one
  :class:`WaitList` per queue, oldest first. When a queue may have new
  messages (a hint), one *dispatch* claims up to as many messages as there
  are getters, in one transaction, and hands them out in arrival order: a
  burst serves many getters at once, and nobody overtakes an earlier getter.
  A dispatch runs in the background (never in a getter's own call), so a
  getter that gives up only has to leave the list, or, if a message was
  already handed to it, give that message to the next getter or back to
  pending. Nothing is handed to two callers; nothing is lost.
* **Listeners** (``broker.get(queues)``, peeking ``watch``) only want to
  know that something may have changed: they look again themselves. A
  generation number, bumped by every hint, tells a listener whether a hint
  came between its last look and its wait, so none is ever missed.

Wake-ups are hints: the claim decides. The engine calls :meth:`Waits.hinted`
when its own commits (through the process-wide signal of
:mod:`._signals`) or the cross-process watcher (:mod:`._watcher`) say
queues may have changed, and runs the dispatches it returns.

Not thread-safe: the async engines use it from their event loop's thread,
the blocking engine under its group lock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from sansio_broker import BrokerClosedError, Message

from ._group import GROUP_LIMIT, Member, State, Waiter, hand_to_oldest

__all__ = ["CLOSED", "HINT", "TIMED_OUT", "Closed", "Hint", "Listener", "TimedOut", "WaitList", "Waits", "received"]


class Closed:
    """Sent to every waiter when the broker closes."""


class Hint:
    """Sent to a listener: its queues may have changed."""


class TimedOut:
    """What a runtime's ``wait`` returns when the timeout passed first."""


CLOSED = Closed()
HINT = Hint()
TIMED_OUT = TimedOut()


def received(answer: object, path: str) -> Message:
    """What a getter was woken with, as its caller gets it: the message, or
    the error it stands for (the broker closed; its dispatch failed)."""
    if answer is CLOSED:
        raise BrokerClosedError(f"the broker on {path} closed while waiting")
    if isinstance(answer, Exception):
        raise answer
    assert isinstance(answer, Message)
    return answer


class WaitList:
    """The getters of one queue, oldest first, and whether a dispatch runs for it."""

    __slots__ = ("again", "dispatching", "members")

    def __init__(self) -> None:
        self.members: deque[Member[None]] = deque()
        self.dispatching = False
        self.again = False  # a hint came while the dispatch ran: it looks once more

    @property
    def wanted(self) -> int:
        """How many messages one dispatch claims: one per getter, up to a group's size."""
        return min(len(self.members), GROUP_LIMIT)

    def hand_over(self, message: Message) -> bool:
        """Give ``message`` to the oldest getter still waiting; False if none is left."""
        return hand_to_oldest(self.members, message)

    def fail(self, error: Exception, count: int) -> None:
        """A dispatch for the oldest ``count`` getters failed: they get its error, as
        the members of a failed group claim do (the others keep waiting)."""
        members = self.members
        for _ in range(min(count, len(members))):
            member = members.popleft()
            member.answer, member.state = error, State.DONE
            if not member.waiter.wake(error):
                member.state = State.GONE
        self.again = bool(members)  # getters that came later get a claim of their own

    def leave(self, member: Member[None]) -> State:
        """``member`` stops waiting; returns how it left.

        WITHDRAWN: nothing was handed to it. DONE: a message was handed over
        but never taken, which the caller must give on (``member.answer``).
        """
        if member.state is State.WAITING:
            if member in self.members:  # else it never joined (interrupted on its way in)
                self.members.remove(member)
            member.state = State.WITHDRAWN
        return member.state


class Listener:
    """A caller waiting for any change on some queues (``None``: any).

    It stays registered while it looks and waits by turns: ``hinted`` is set
    by every hint on its queues, so one that comes while it looks is not
    missed. It resets ``hinted`` before each look; ``waiter`` is set while it sleeps.
    """

    __slots__ = ("hinted", "queues", "waiter")

    def __init__(self, queues: frozenset[str] | None) -> None:
        self.queues = queues
        self.hinted = False
        self.waiter: Waiter | None = None


class Waits:
    """One engine's waiting consumers."""

    __slots__ = ("_lists", "closed", "generation", "listeners")

    def __init__(self) -> None:
        self._lists: dict[str, WaitList] = {}
        self.listeners: list[Listener] = []
        self.generation = 0  # bumped by every hint: a listener compares it with what it saw
        self.closed = False

    @property
    def waiting(self) -> int:
        """Getters and listeners waiting now (the watcher runs while there are any)."""
        return sum(len(w.members) for w in self._lists.values()) + len(self.listeners)

    def wait_list(self, queue: str) -> WaitList:
        found = self._lists.get(queue)
        if found is None:
            found = self._lists[queue] = WaitList()
        return found

    def nobody_waits_on(self, queue: str) -> bool:
        found = self._lists.get(queue)
        return found is None or not found.members

    def join(self, queue: str, member: Member[None]) -> bool:
        """Queue a getter at the back; True if a dispatch must start for the queue now."""
        wait_list = self.wait_list(queue)
        member.state = State.WAITING
        wait_list.members.append(member)
        return self._wants_dispatch(wait_list)

    def leave(self, queue: str, member: Member[None]) -> State:
        wait_list = self._lists.get(queue)
        if wait_list is None:  # closed meanwhile
            return member.state
        state = wait_list.leave(member)
        self._drop_if_idle(queue, wait_list)
        return state

    def hand_over(self, queue: str, message: Message) -> bool:
        """Give a claimed message to the oldest getter of ``queue``, if any."""
        wait_list = self._lists.get(queue)
        return wait_list is not None and wait_list.hand_over(message)

    def fail(self, queue: str, error: Exception, count: int) -> None:
        wait_list = self._lists.get(queue)
        if wait_list is not None:
            wait_list.fail(error, count)

    def hinted(self, queues: Iterable[str] | None) -> list[str]:
        """``queues`` (``None``: any) may have new messages: wake the listeners
        on them, and return the queues whose dispatch must start now (one
        already running looks once more when it ends)."""
        if self.closed:
            return []
        self.generation += 1
        names = None if queues is None else frozenset(queues)
        for listener in self.listeners:
            if names is None or listener.queues is None or not names.isdisjoint(listener.queues):
                listener.hinted = True
                if listener.waiter is not None:  # asleep: woken once (a thread's waiter allows no more)
                    listener.waiter.wake(HINT)
                    listener.waiter = None
        lists = list(self._lists.items()) if names is None else [(q, self._lists[q]) for q in names if q in self._lists]
        return [queue for queue, wait_list in lists if self._wants_dispatch(wait_list)]

    def listen(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def stop_listening(self, listener: Listener) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def dispatch_ended(self, queue: str, claimed: int, wanted: int) -> bool:
        """A dispatch claimed ``claimed`` of ``wanted`` messages; True if it must run again
        (a hint came meanwhile, or the queue may hold more for getters still waiting)."""
        wait_list = self._lists.get(queue)
        if wait_list is None:
            return False
        again = wait_list.members and (wait_list.again or claimed >= wanted)
        wait_list.again = False
        if again:
            return True
        wait_list.dispatching = False
        self._drop_if_idle(queue, wait_list)
        return False

    def close(self) -> list[Waiter]:
        """The broker closes: every waiter, to be woken with :data:`CLOSED`."""
        self.closed = True
        woken: list[Waiter] = [listener.waiter for listener in self.listeners if listener.waiter is not None]
        self.listeners = []
        for wait_list in self._lists.values():
            while wait_list.members:
                member = wait_list.members.popleft()
                member.state = State.WITHDRAWN
                woken.append(member.waiter)
        self._lists.clear()
        return woken

    def _wants_dispatch(self, wait_list: WaitList) -> bool:
        if not wait_list.members:
            return False
        if wait_list.dispatching:
            wait_list.again = True
            return False
        wait_list.dispatching = True
        return True

    def _drop_if_idle(self, queue: str, wait_list: WaitList) -> None:
        # Endless queue names must not grow the map: an idle list goes.
        if not wait_list.members and not wait_list.dispatching:
            self._lists.pop(queue, None)

"""Group commit and shared claims: many waiting callers, one transaction.

The bookkeeping every adapter shares, free of any runtime. Callers of one
kind (all writes of a broker, or the plain claims of one queue) join a
:class:`Combiner`. The first caller leads: it takes every caller waiting at
that moment into a :class:`Group` and runs the core's group operation
(``write_group`` / ``claim_group``) as one transaction. Callers arriving
meanwhile wait; when the group ends, each member gets its own answer and the
oldest waiter is woken to lead the next group. A caller that finds nothing
running, while callers came alone lately, runs its plain operation at once
(:meth:`Combiner.run_alone`): a sequential caller pays nothing for groups.

A member that gives up (cancellation) leaves cleanly while it waits and
until its group seals, just before COMMIT: nothing is written or claimed for
it. After the seal it is too late: a write is reported "outcome unknown",
and a claimed message goes to another waiting reader or back to pending
(``give_back``), never lost.

The runtime supplies the :class:`Waiter`: how a member sleeps and how it is
woken (an asyncio future, a trio task, a lock a thread sleeps on).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from sansio_broker import Message
from sansio_broker.driver import Operation, Session, WriteOutcome

from ._flight import Flight

I = TypeVar("I")  # noqa: E741 - a member's item: (queue, body) for writes, None for claims

# Idle claim combiners kept (one per queue name) before idle ones are dropped.
COMBINERS_KEPT = 1024

# Members per group: enough to cover every caller a pool can serve, small
# enough that one group's statements stay short.
GROUP_LIMIT = 512


class Waiter(Protocol):
    def wake(self, value: object) -> bool:
        """Hand ``value`` to the sleeping member; False if it already left."""
        ...


class Lead:
    """Sent to the member chosen to lead the next group."""


LEAD = Lead()


class State(enum.Enum):
    WAITING = "waiting"  # queued, no group yet
    LEADING = "leading"  # chosen to lead, not yet in a group
    GROUPED = "grouped"  # in a running group
    DONE = "done"  # answer handed over
    WITHDRAWN = "withdrawn"  # left in time: nothing done for it
    LATE = "late"  # left after its group sealed: its answer must be taken care of
    GONE = "gone"  # left, and whatever was done for it is taken care of


class Member(Generic[I]):
    __slots__ = ("answer", "group", "item", "position", "state", "waiter")

    def __init__(self, item: I, waiter: Waiter) -> None:
        self.item = item
        self.waiter = waiter
        self.state = State.WAITING
        self.group: Group[I] | None = None
        self.position = -1
        self.answer: object = None


class Group(Flight, Generic[I]):
    """One group operation in a worker thread, and its members.

    It is the operation's flight, cancelled only once every member has
    withdrawn in time (then it stops and rolls back like any abandoned
    operation); otherwise members withdraw one by one, and the core leaves
    them out when it seals the group, just before COMMIT.
    """

    __slots__ = ("_sealed", "_withdrawn", "members", "owner")

    def __init__(self, members: list[Member[I]]) -> None:
        super().__init__()
        self.members = members
        self._sealed = False
        self._withdrawn: set[int] = set()
        self.owner: Any = None  # the adapter's connection running it
        for position, member in enumerate(members):
            member.state, member.group, member.position = State.GROUPED, self, position

    @property
    def items(self) -> list[I]:
        return [m.item for m in self.members]

    def withdraw(self, member: Member[I]) -> bool:
        """A member gives up; True if in time (before the seal)."""
        with self._lock:
            self._withdrawn.add(member.position)
            return not self._sealed

    @property
    def abandoned(self) -> bool:
        """Every member withdrew in time: the whole operation can stop."""
        with self._lock:
            return not self._sealed and len(self._withdrawn) == len(self.members)

    def seal(self) -> frozenset[int]:
        """Answer ``SealGroup`` (worker thread): every member that withdrew so far."""
        with self._lock:
            self._sealed = True
            return frozenset(self._withdrawn)


class Combiner(Generic[I]):
    """The callers of one kind waiting for a group, and whether one runs."""

    __slots__ = ("_waiting", "last_size", "limit", "running")

    def __init__(self, limit: int = GROUP_LIMIT) -> None:
        self._waiting: deque[Member[I]] = deque()
        self.running = False  # a leader is chosen or a group runs
        self.limit = limit
        self.last_size = 0  # members of the latest group

    def join(self, member: Member[I]) -> bool:
        """Queue ``member``; True if it must lead now (nothing else runs)."""
        if self.running:
            self._waiting.append(member)
            return False
        self.running = True
        member.state = State.LEADING
        return True

    def run_alone(self) -> bool:
        """True (and running) if a caller may skip the group machinery: nothing
        runs and the last group had one member. It must :meth:`hand_on` when done."""
        if self.running or self.busy:
            return False
        self.running = True
        return True

    def take(self, leader: Member[I]) -> Group[I]:
        """The leader and the oldest waiters, as one group."""
        members = [leader]
        while self._waiting and len(members) < self.limit:
            members.append(self._waiting.popleft())
        self.last_size = len(members)
        return Group(members)

    @property
    def gathered(self) -> bool:
        """As many callers wait as the last group had (with its leader)."""
        return len(self._waiting) + 1 >= self.last_size

    @property
    def busy(self) -> bool:
        """Callers arrived together last time: a new leader should let the
        others that are ready join before it takes its group (a lone caller
        never waits)."""
        return self.last_size > 1

    def hand_on(self) -> None:
        """A group ended or its leader left: wake the oldest waiter to lead."""
        while self._waiting:
            member = self._waiting.popleft()
            member.state = State.LEADING
            if member.waiter.wake(LEAD):
                return
            member.state = State.GONE  # it left meanwhile; nothing to undo
        self.running = False

    def hand_over(self, answer: object) -> bool:
        """Give ``answer`` (a message nobody took) to the oldest waiting member, if any."""
        return hand_to_oldest(self._waiting, answer)

    def leave(self, member: Member[I]) -> State:
        """``member`` gives up (cancelled); returns how it left.

        WITHDRAWN or GONE: nothing is left to do. LATE: its group sealed, so
        a write's outcome is unknown, and a claim's message is given back
        when the group ends. DONE: its answer (``member.answer``) was handed
        over but never taken (asyncio), which the caller must undo.
        """
        state = member.state
        if state is State.WAITING:
            self._waiting.remove(member)
            member.state = State.WITHDRAWN
        elif state is State.LEADING:
            member.state = State.WITHDRAWN
            self.hand_on()
        elif state is State.GROUPED:
            assert member.group is not None
            member.state = State.WITHDRAWN if member.group.withdraw(member) else State.LATE
        return member.state


def hand_to_oldest(waiting: deque[Member[Any]], answer: object) -> bool:
    """Give ``answer`` to the oldest member of ``waiting`` still there (each
    one tried leaves the queue); False if none took it."""
    while waiting:
        member = waiting.popleft()
        member.answer, member.state = answer, State.DONE
        if member.waiter.wake(answer):
            return True
        member.state = State.GONE  # it left meanwhile; the answer goes to the next
    return False


def abandon(combiner: Combiner[Any], member: Member[Any], give_back: Callable[[object], None]) -> bool:
    """``member``'s caller gives up (cancelled, interrupted); True if its
    write may have landed, so it must hear "outcome unknown"."""
    state = combiner.leave(member)
    if state is State.DONE:
        give_back(member.answer)  # handed over but never taken
        return not isinstance(member.answer, BaseException)
    return state is State.LATE


def rejoin(member: Member[Any], waiter: Waiter) -> None:
    """A member that left after its group sealed (LATE) takes its answer
    after all, to undo it itself: the group's end wakes ``waiter`` with it."""
    assert member.state is State.LATE
    member.waiter, member.state = waiter, State.GROUPED


def keep_write(answer: object) -> None:
    """A write's give-back: a committed write stays (its caller hears "outcome unknown")."""


def raise_error(answer: object) -> Any:
    """A member's answer, or the error it stands for, raised."""
    if isinstance(answer, BaseException):
        raise answer
    return answer


def write_group(session: Session, items: list[tuple[str, str]]) -> Operation[list[WriteOutcome]]:
    return session.write_group(items)


def claim_group(queue: str, session: Session, items: list[None]) -> Operation[list[Message | None]]:
    return session.claim_group(queue, len(items))


def new_combiner(combiners: dict[Any, Combiner[Any]]) -> Combiner[Any]:
    """A combiner for a new key of ``combiners``; idle ones go once there are
    many, so endless queue names cannot grow it."""
    if len(combiners) >= COMBINERS_KEPT:
        for key in [k for k, c in combiners.items() if not c.running]:
            del combiners[key]
    return Combiner()


def settle(
    group: Group[I],
    answers: list[Any] | None,
    error: BaseException | None,
    give_back: Callable[[object], None],
) -> list[Member[I]]:
    """Give each member of a finished group its answer (or the group's error);
    returns the members to wake with it (:func:`wake`), which a caller holding
    a lock does after releasing it.

    An answer a member can no longer take (it left after the seal) goes to
    ``give_back``, which gives a claimed message to another reader or back
    to pending; a write's ``give_back`` has nothing to do (its caller was
    told the outcome is unknown).
    """
    answered = []
    for position, member in enumerate(group.members):
        answer: object = error if answers is None else answers[position]
        member.group = None  # no cycle left for the garbage collector
        state = member.state
        if state is State.WITHDRAWN:
            continue
        if state is State.LATE:  # it left already: its answer is ours to undo
            member.state = State.GONE
            if error is None:
                give_back(answer)
            continue
        # If it is leaving right now (the wake fails), its own clean-up finds
        # DONE and undoes the answer, or reports the write's outcome unknown.
        member.answer, member.state = answer, State.DONE
        answered.append(member)
    return answered


def wake(members: list[Member[Any]]) -> None:
    for member in members:
        member.waiter.wake(member.answer)

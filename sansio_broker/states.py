"""A session's states and the events that move it, as data.

One connection is always in exactly one :class:`State`. Every operation
whose legality depends on that state names an :class:`Event`, and
:class:`~sansio_broker.core.Session` (and the at-least-once stream) ask
:func:`transition` for the next state: :data:`TRANSITIONS` is the whole
story, an event it does not list is refused, and that refusal is raised
here, in one place, as :class:`~sansio_broker.errors.TransactionError`
saying what was attempted and why the state forbids it.

Events are checked when an operation is called (before any command exists)
and applied once the database agreed: ``begin_transaction()`` checks
``BEGIN`` at call time and applies it after the ``BEGIN`` command succeeded.
Reads (peeks, stats, listings) are legal in every state and name no event.

``docs/states.md`` is drawn from the table by :func:`markdown`; a test keeps
the two equal.
"""

from __future__ import annotations

import enum

from .errors import TransactionError


class State(enum.Enum):
    """Who owns the connection's write transaction between operations."""

    # Members are singletons compared by identity: hash them by identity too,
    # a C-level hash instead of Enum's Python-level one (the table is consulted per write).
    __hash__ = object.__hash__

    IDLE = "idle"
    """Nothing open: each operation runs its own transaction."""
    IN_TRANSACTION = "in transaction"
    """An explicit transaction is open: operations join it until commit or rollback."""
    HOLDING_BATCH = "holding stream batch"
    """An at-least-once stream's claimed batch keeps the write transaction open
    until the consumer asks for the next batch or closes the stream."""


class Event(enum.Enum):
    """Something an operation does that depends on, or changes, the state."""

    __hash__ = object.__hash__

    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    WRITE = "write"
    GROUP = "group"
    VACUUM = "vacuum"
    OPEN_STREAM = "open stream"
    CLAIM_BATCH = "claim batch"
    RELEASE_BATCH = "release batch"
    RESET = "reset"


IDLE = State.IDLE
IN_TRANSACTION = State.IN_TRANSACTION
HOLDING_BATCH = State.HOLDING_BATCH

TRANSITIONS: dict[tuple[State, Event], State] = {
    (IDLE, Event.BEGIN): IN_TRANSACTION,
    (IDLE, Event.WRITE): IDLE,
    (IDLE, Event.GROUP): IDLE,
    (IDLE, Event.VACUUM): IDLE,
    (IDLE, Event.OPEN_STREAM): IDLE,
    (IDLE, Event.CLAIM_BATCH): HOLDING_BATCH,
    (IDLE, Event.RESET): IDLE,
    (IN_TRANSACTION, Event.WRITE): IN_TRANSACTION,
    (IN_TRANSACTION, Event.COMMIT): IDLE,
    (IN_TRANSACTION, Event.ROLLBACK): IDLE,
    (IN_TRANSACTION, Event.RESET): IDLE,
    (HOLDING_BATCH, Event.OPEN_STREAM): HOLDING_BATCH,
    (HOLDING_BATCH, Event.RELEASE_BATCH): IDLE,
    (HOLDING_BATCH, Event.RESET): IDLE,
}
"""``{(state, event): next state}``; a pair not listed is refused."""

EVENTS: dict[Event, tuple[str, str]] = {
    Event.BEGIN: ("open a transaction", "`begin_transaction()` (`broker.transaction()`)"),
    Event.COMMIT: ("commit", "`commit_transaction()`"),
    Event.ROLLBACK: ("roll back", "`rollback_transaction()`"),
    Event.WRITE: ("write", "every operation that changes messages (write, claim, move, delete, ...)"),
    Event.GROUP: ("run a group operation", "`write_group()`, `claim_group()`: one transaction for many callers"),
    Event.VACUUM: ("vacuum", "`vacuum()`: deletes claimed rows in transactions of its own"),
    Event.OPEN_STREAM: ("open an at-least-once stream", "creating a `ClaimStream` with `commit_interval > 1`"),
    Event.CLAIM_BATCH: ("claim a stream batch", "that stream claiming a batch and keeping it uncommitted"),
    Event.RELEASE_BATCH: ("release a stream batch", "that stream committing or rolling back its batch"),
    Event.RESET: ("reset the connection", "`reset()`: a pool cleans an abandoned connection"),
}
"""Per event: the action an error names ("cannot <action>: ..."), and what raises it (for the docs)."""

_HELD_BY_BATCH = (
    "an at-least-once stream batch on this connection holds the write lock; finish or close() the stream "
    "first, or read with commit_interval=1, or claim inside broker.transaction() to make claim-and-write atomic"
)
_NO_TRANSACTION = "no transaction is open on this connection"
_STREAM_IN_TRANSACTION = (
    "a transaction is open on this connection, and an at-least-once stream (commit_interval > 1) commits "
    "and rolls back on its own, so it cannot run inside broker.transaction(); use commit_interval=1 there"
)

_WHY_STATE: dict[State, str] = {
    IDLE: "no stream batch holds this connection's write lock",
    IN_TRANSACTION: "a transaction is open on this connection",
    HOLDING_BATCH: _HELD_BY_BATCH,
}
"""Why a state refuses an event, unless :data:`_WHY` says more for the pair."""

_WHY: dict[tuple[State, Event], str] = {
    (IDLE, Event.COMMIT): _NO_TRANSACTION,
    (IDLE, Event.ROLLBACK): _NO_TRANSACTION,
    (HOLDING_BATCH, Event.COMMIT): _NO_TRANSACTION,
    (HOLDING_BATCH, Event.ROLLBACK): _NO_TRANSACTION,
    (IN_TRANSACTION, Event.BEGIN): (
        "a transaction is already open on this connection; nested transactions are not supported"
    ),
    (IN_TRANSACTION, Event.GROUP): (
        "a transaction is open on this connection, and group operations cannot join an explicit transaction"
    ),
    (IN_TRANSACTION, Event.VACUUM): (
        "a transaction is open on this connection, and vacuum cannot run inside a transaction "
        "(it commits in batches of its own)"
    ),
    (IN_TRANSACTION, Event.OPEN_STREAM): _STREAM_IN_TRANSACTION,
    (IN_TRANSACTION, Event.CLAIM_BATCH): _STREAM_IN_TRANSACTION,
}


def refusal(state: State, event: Event) -> str:
    """The message of the error :func:`transition` raises for a refused pair."""
    return f"cannot {EVENTS[event][0]}: {_WHY.get((state, event), _WHY_STATE[state])}"


def transition(state: State, event: Event) -> State:
    """The state after ``event``; raises :class:`TransactionError` if ``state`` refuses it."""
    new = TRANSITIONS.get((state, event))
    if new is None:
        raise TransactionError(refusal(state, event))
    return new


def mermaid() -> str:
    """:data:`TRANSITIONS` as a Mermaid ``stateDiagram-v2`` (events sharing an edge share its label)."""
    lines = ["stateDiagram-v2"]
    lines += [f'    state "{state.value}" as {state.name}' for state in State]
    lines.append(f"    [*] --> {IDLE.name}")
    edges: dict[tuple[State, State], list[str]] = {}
    for (source, event), target in TRANSITIONS.items():
        edges.setdefault((source, target), []).append(event.value)
    lines += [f"    {source.name} --> {target.name}: {', '.join(names)}" for (source, target), names in edges.items()]
    return "\n".join(lines) + "\n"


def markdown() -> str:
    """The generated part of ``docs/states.md``: the diagram and the events' legend."""
    rows = [f"| {event.value} | {EVENTS[event][1]} |" for event in Event]
    refused = [
        f"| {state.value} | {event.value} | {refusal(state, event)} |"
        for state in State
        for event in Event
        if (state, event) not in TRANSITIONS
    ]
    return "\n".join(
        [
            "```mermaid",
            mermaid().rstrip("\n"),
            "```",
            "",
            "| event | raised by |",
            "| --- | --- |",
            *rows,
            "",
            "Every other pair is refused with `TransactionError`:",
            "",
            "| state | event | message |",
            "| --- | --- | --- |",
            *refused,
            "",
        ]
    )

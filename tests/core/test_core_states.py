"""The session's states as data: the table, its one error, its diagram, and
the Session and streams that consult it."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from sansio_broker import TransactionError
from sansio_broker.core import Session
from sansio_broker.driver import Begin, ClaimStream, Commit, Rollback
from sansio_broker.states import (
    EVENTS,
    HOLDING_BATCH,
    IDLE,
    IN_TRANSACTION,
    TRANSITIONS,
    Event,
    State,
    markdown,
    mermaid,
    refusal,
    transition,
)
from sansio_broker.testing import Stepper, run_scripted
from tests.core.core_testkit import make_session

DOCS = Path(__file__).resolve().parents[2] / "docs" / "states.md"
GENERATED = "<!-- generated below: paste sansio_broker.states.markdown() -->\n"

ALL_PAIRS = list(itertools.product(State, Event))
LEGAL = [pair for pair in ALL_PAIRS if pair in TRANSITIONS]
REFUSED = [pair for pair in ALL_PAIRS if pair not in TRANSITIONS]


def _id(pair: tuple[State, Event]) -> str:
    return f"{pair[0].name}-{pair[1].name}"


# ------------------------------------------------------------------ the table
@pytest.mark.parametrize("pair", LEGAL, ids=_id)
def test_every_listed_pair_moves_to_its_state(pair: tuple[State, Event]) -> None:
    state, event = pair
    assert transition(state, event) is TRANSITIONS[pair]


@pytest.mark.parametrize("pair", REFUSED, ids=_id)
def test_every_pair_not_listed_raises_the_one_error(pair: tuple[State, Event]) -> None:
    state, event = pair
    with pytest.raises(TransactionError) as info:
        transition(state, event)
    message = str(info.value)
    assert message == refusal(state, event)
    assert message.startswith(f"cannot {EVENTS[event][0]}: ")


def test_the_table_is_what_the_session_can_do() -> None:
    assert set(TRANSITIONS.values()) <= set(State)
    # Every state can be left again, and reset always leads back to idle.
    assert {source for (source, _), target in TRANSITIONS.items() if target is not source} == set(State)
    assert all(TRANSITIONS[(state, Event.RESET)] is IDLE for state in State)
    assert set(EVENTS) == set(Event)
    assert LEGAL and REFUSED


@pytest.mark.parametrize(
    ("state", "event", "fragment"),
    [
        (IN_TRANSACTION, Event.BEGIN, "nested transactions are not supported"),
        (IDLE, Event.COMMIT, "no transaction is open"),
        (HOLDING_BATCH, Event.ROLLBACK, "no transaction is open"),
        (IN_TRANSACTION, Event.GROUP, "cannot join an explicit transaction"),
        (IN_TRANSACTION, Event.VACUUM, "vacuum cannot run inside a transaction"),
        (IN_TRANSACTION, Event.OPEN_STREAM, "use commit_interval=1 there"),
        (IN_TRANSACTION, Event.CLAIM_BATCH, "use commit_interval=1 there"),
        (HOLDING_BATCH, Event.WRITE, "cannot write: an at-least-once stream batch"),
        (HOLDING_BATCH, Event.BEGIN, "finish or close() the stream first"),
        (HOLDING_BATCH, Event.CLAIM_BATCH, "holds the write lock"),
        (IDLE, Event.RELEASE_BATCH, "no stream batch holds"),
        (IN_TRANSACTION, Event.RELEASE_BATCH, "a transaction is open"),
    ],
)
def test_refusals_say_why(state: State, event: Event, fragment: str) -> None:
    assert fragment in refusal(state, event)


# ------------------------------------------------------------------ the docs
def test_the_diagram_draws_every_transition() -> None:
    diagram = mermaid()
    lines = diagram.splitlines()
    assert lines[0] == "stateDiagram-v2"
    assert f"    [*] --> {IDLE.name}" in lines
    for state in State:
        assert f'    state "{state.value}" as {state.name}' in lines
    edges = {}
    for line in lines:
        if " --> " in line and not line.lstrip().startswith("[*]"):
            arrow, label = line.strip().split(": ")
            source, target = arrow.split(" --> ")
            for name in label.split(", "):
                edges[(State[source], Event(name))] = State[target]
    assert edges == TRANSITIONS


def test_docs_states_md_is_generated_from_the_table() -> None:
    text = DOCS.read_text(encoding="utf-8")
    assert GENERATED in text
    generated = text.split(GENERATED, 1)[1].lstrip("\n")
    assert generated == markdown(), "docs/states.md is stale: paste sansio_broker.states.markdown() below its marker"


def test_the_generated_docs_list_every_event_and_refusal() -> None:
    page = markdown()
    assert page.startswith("```mermaid\n" + mermaid() + "```\n")
    for event in Event:
        assert f"| {event.value} | {EVENTS[event][1]} |" in page
    for state, event in REFUSED:
        assert f"| {state.value} | {event.value} | {refusal(state, event)} |" in page


# ------------------------------------------------------- the Session using it
def _enter(session: Session, state: State) -> None:
    """Bring a fresh session to ``state`` through its own operations."""
    if state is IN_TRANSACTION:
        run_scripted(session.begin_transaction(), [None])
    elif state is HOLDING_BATCH:
        stream = ClaimStream(session, "held", commit_interval=2)
        run_scripted(stream.next_batch(), [None, [("a", 1)]])
    assert session.state is state


def _attempts(session: Session) -> dict[Event, Callable[[], object]]:
    """Per event, the call that asks the table for it (made while still idle)."""
    waiting = ClaimStream(session, "waiting", commit_interval=2)
    return {
        Event.BEGIN: session.begin_transaction,
        Event.COMMIT: session.commit_transaction,
        Event.ROLLBACK: session.rollback_transaction,
        Event.WRITE: lambda: Stepper(session.write("q", "x")).start(),
        Event.GROUP: lambda: session.write_group([("q", "x")]),
        Event.VACUUM: session.vacuum,
        Event.OPEN_STREAM: lambda: ClaimStream(session, "q", commit_interval=2),
        Event.CLAIM_BATCH: lambda: Stepper(waiting.next_batch()).start(),
        Event.RESET: session.reset,
    }


OPERATION_PAIRS = [pair for pair in ALL_PAIRS if pair[1] is not Event.RELEASE_BATCH]


@pytest.mark.parametrize("pair", OPERATION_PAIRS, ids=_id)
def test_session_operations_consult_the_table(pair: tuple[State, Event]) -> None:
    state, event = pair
    session = make_session()
    attempt = _attempts(session)[event]
    _enter(session, state)
    if pair in TRANSITIONS:
        attempt()  # allowed: no TransactionError
        return
    with pytest.raises(TransactionError) as info:
        attempt()
    assert str(info.value) == refusal(state, event)
    assert session.state is state  # a refused event changes nothing


def test_every_operation_event_has_an_attempt() -> None:
    assert set(_attempts(make_session())) == set(Event) - {Event.RELEASE_BATCH}


@pytest.mark.parametrize("state", list(State), ids=lambda s: s.name)
def test_adapter_facing_attributes_follow_the_state(state: State) -> None:
    session = make_session()
    _enter(session, state)
    assert session.in_transaction is (state is IN_TRANSACTION)
    assert (session.stream_holding_lock is not None) is (state is HOLDING_BATCH)
    run_scripted(session.reset(), [None])
    assert session.state is IDLE
    assert session.in_transaction is False and session.stream_holding_lock is None


def test_a_transaction_walks_the_table() -> None:
    session = make_session()
    step = Stepper(session.begin_transaction())
    assert step.start() == Begin()
    assert session.state is IDLE  # moves only once BEGIN succeeded
    step.send(None)
    assert session.state is IN_TRANSACTION
    run_scripted(session.claim("q"), [[("m", 1)]])  # a write joins the transaction
    assert session.state is IN_TRANSACTION
    assert run_scripted(session.commit_transaction(), [None])[1] == [Commit()]
    assert session.state is IDLE
    run_scripted(session.begin_transaction(), [None])
    assert run_scripted(session.rollback_transaction(), [None])[1] == [Rollback()]
    assert session.state is IDLE


def test_a_stream_batch_walks_the_table() -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=2)
    run_scripted(stream.next_batch(), [None, [("a", 1), ("b", 2)]])
    assert session.state is HOLDING_BATCH and session.stream_holding_lock is stream
    # The next batch commits (releases), then claims and holds again.
    run_scripted(stream.next_batch(), [None, None, [("c", 3)]])
    assert session.state is HOLDING_BATCH
    run_scripted(stream.close(), [None])
    assert session.state is IDLE and session.stream_holding_lock is None


def test_a_stream_released_by_reset_leaves_the_next_holder_alone() -> None:
    session = make_session()
    old = ClaimStream(session, "q", commit_interval=2)
    run_scripted(old.next_batch(), [None, [("a", 1)]])
    run_scripted(session.reset(), [None])
    new = ClaimStream(session, "q", commit_interval=2)
    run_scripted(new.next_batch(), [None, [("a", 1)]])
    session.release_batch(old)  # the reset already ended its batch
    assert session.stream_holding_lock is new


def test_stream_holding_lock_can_be_set_through_the_table() -> None:
    session = make_session()
    holder = object()
    session.stream_holding_lock = holder
    assert session.state is HOLDING_BATCH and session.stream_holding_lock is holder
    session.stream_holding_lock = None
    assert session.state is IDLE and session.stream_holding_lock is None
    session.stream_holding_lock = None  # nothing holds it: nothing to release
    assert session.state is IDLE
    run_scripted(session.begin_transaction(), [None])
    with pytest.raises(TransactionError, match="claim a stream batch"):
        session.stream_holding_lock = holder
    assert session.state is IN_TRANSACTION

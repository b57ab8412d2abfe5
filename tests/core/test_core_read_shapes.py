"""``Session.read_bodies`` and ``open_stream``: the async example's read shapes."""

from __future__ import annotations

import pytest

from sansio_broker import InvalidInputError, Message
from sansio_broker.commands import Begin, Commit, Execute
from sansio_broker.driver import ClaimStream, PeekStream
from sansio_broker.streams import OnceStream, open_stream
from sansio_broker.testing import Stepper, run_scripted
from tests.core.core_testkit import kinds, make_session

ROWS = [("b", 2), ("a", 1)]


def test_claim_one_body() -> None:
    bodies, commands = run_scripted(make_session().read_bodies("q"), [None, [("a", 1)], None])
    assert bodies == ["a"]
    assert kinds(commands) == ["Begin", "Execute", "Commit"]
    assert commands[1].params == ("q", 1)


def test_claim_all_is_one_transaction_without_a_limit_in_id_order() -> None:
    bodies, commands = run_scripted(make_session().read_bodies("q", all_messages=True), [None, list(ROWS), None])
    assert bodies == ["a", "b"]
    assert kinds(commands) == ["Begin", "Execute", "Commit"]
    assert commands[1].params == ("q", -1)


@pytest.mark.parametrize(("all_messages", "limit"), [(False, 1), (True, -1)])
def test_peek_claims_nothing(all_messages: bool, limit: int) -> None:
    op = make_session().read_bodies("q", peek=True, all_messages=all_messages)
    bodies, commands = run_scripted(op, [[("a", 1)]])
    assert bodies == ["a"]
    assert kinds(commands) == ["Execute"]
    assert commands[0].sql.startswith("SELECT body, ts FROM messages")
    assert "claimed = 0" in commands[0].sql
    assert commands[0].params == ("q", limit)


def test_by_id_and_bounds_reach_the_statement() -> None:
    op = make_session().read_bodies("q", message_id="0000000000000000042")
    _, commands = run_scripted(op, [None, [], None])
    assert commands[1].params == (42, "q", 1)
    op = make_session().read_bodies("q", peek=True, after=5, before=9)
    _, commands = run_scripted(op, [[]])
    assert commands[0].params == ("q", 5, 9, 1)


def test_empty_queue_gives_no_bodies() -> None:
    assert run_scripted(make_session().read_bodies("q"), [None, [], None])[0] == []


def test_message_id_with_all_messages_is_refused_before_any_command() -> None:
    with pytest.raises(InvalidInputError, match="message_id"):
        make_session().read_bodies("q", all_messages=True, message_id=1)


def test_open_stream_picks_the_stream_for_the_arguments() -> None:
    session = make_session()
    assert isinstance(open_stream(session, "q"), ClaimStream)
    assert isinstance(open_stream(session, "q", peek=True), PeekStream)
    assert isinstance(open_stream(session, "q", all_messages=False), OnceStream)
    assert isinstance(open_stream(session, "q", message_id=1), OnceStream)
    at_least_once = open_stream(session, "q", commit_interval=5)
    assert isinstance(at_least_once, ClaimStream) and at_least_once.at_least_once


@pytest.mark.parametrize("peek", [False, True])
def test_single_message_stream_yields_one_batch_then_ends(peek: bool) -> None:
    stream = open_stream(make_session(), "q", peek=peek, all_messages=False)
    answers = [[("a", 1)]] if peek else [None, [("a", 1)], None]
    batch, commands = run_scripted(stream.next_batch(), answers)
    assert batch == [Message("a", 1)]
    assert ("Begin" in kinds(commands)) is not peek
    # Already answered: the next batch is empty without any command.
    assert run_scripted(stream.next_batch(), []) == ([], [])
    assert run_scripted(stream.close(), []) == (None, [])


def test_single_message_stream_by_id_claims_that_id() -> None:
    stream = open_stream(make_session(), "q", message_id=7)
    step = Stepper(stream.next_batch())
    assert step.start() == Begin()
    statement = step.send(None)
    assert isinstance(statement, Execute) and statement.params == (7, "q", 1)
    assert step.send([]) == Commit()
    step.send(None)
    assert step.result == []


def test_closing_an_unstarted_single_message_stream_claims_nothing() -> None:
    stream = open_stream(make_session(), "q", all_messages=False)
    assert run_scripted(stream.close(), []) == (None, [])
    assert run_scripted(stream.next_batch(), []) == ([], [])

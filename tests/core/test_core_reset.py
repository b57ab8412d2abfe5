"""``Session.reset``: what a pool runs before reusing an abandoned connection."""

from __future__ import annotations

from sansio_broker import DatabaseError
from sansio_broker.driver import ClaimStream, Rollback
from sansio_broker.testing import Stepper, run_scripted
from tests.core.core_testkit import make_session


def test_reset_rolls_back_an_abandoned_transaction_and_clears_the_session() -> None:
    session = make_session()
    run_scripted(session.begin_transaction(), [None])
    assert session.in_transaction
    _, commands = run_scripted(session.reset(), [None])
    assert commands == [Rollback()]
    assert not session.in_transaction
    # The session is usable for a new transaction at once.
    run_scripted(session.begin_transaction(), [None])
    assert session.in_transaction


def test_reset_releases_an_abandoned_stream_batch() -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=2)
    run_scripted(stream.next_batch(), [None, [("a", 1), ("b", 2)]])
    assert session.stream_holding_lock is stream
    run_scripted(session.reset(), [None])
    assert session.stream_holding_lock is None
    # Writes are no longer refused on this connection.
    assert Stepper(session.write("q", "x")).start() is not None


def test_reset_tolerates_nothing_to_roll_back() -> None:
    step = Stepper(make_session().reset())
    assert step.start() == Rollback()
    assert step.throw(DatabaseError("cannot rollback - no transaction is active")) is None
    assert step.done

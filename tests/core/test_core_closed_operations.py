"""A driver that abandons an operation closes it (``GeneratorExit``): the
operation yields nothing more and records no failure, wherever it stood."""

from __future__ import annotations

import pytest

from sansio_broker import InvalidTypeError
from sansio_broker.commands import Operation
from sansio_broker.driver import ClaimStream, Commit, Execute
from sansio_broker.validation import check_id_list
from tests.core.core_testkit import make_session


def test_an_explicit_commit_closed_at_its_commit_yields_nothing() -> None:
    session = make_session()
    begin = session.begin_transaction()
    next(begin)
    with pytest.raises(StopIteration):
        begin.send(None)
    commit = session.commit_transaction()
    assert next(commit) == Commit()
    commit.close()  # a RuntimeError here would mean it yielded on GeneratorExit
    assert not session.in_transaction  # the driver's clean-up decides from SQLite


def test_an_auto_vacuum_closed_mid_way_records_no_failure() -> None:
    session = make_session(auto_vacuum_interval=1)
    core = session.core
    core.record_mutations(1)
    assert core.take_auto_vacuum()
    check = session.auto_vacuum()
    assert isinstance(next(check), Execute)
    check.close()
    assert core.last_vacuum_error is None
    assert core.mutations == 1  # not reset: nothing failed
    assert core.take_auto_vacuum()  # the check was ended, so it can be taken again


def _batch(stream: ClaimStream, answers: list[object]) -> Operation[object]:
    """A stream's next batch, stepped through ``answers``; returns the operation."""
    batch = stream.next_batch()
    next(batch)
    for answer in answers:
        batch.send(answer)
    return batch


def test_a_stream_batch_closed_at_its_claim_yields_nothing() -> None:
    stream = ClaimStream(make_session(), "q", commit_interval=2)
    batch = _batch(stream, [None])  # BEGIN answered: it waits for the claim's rows
    batch.close()


def test_a_stream_batch_closed_at_its_commit_yields_nothing() -> None:
    session = make_session()
    stream = ClaimStream(session, "q", commit_interval=2)
    first = stream.next_batch()
    next(first)
    first.send(None)
    with pytest.raises(StopIteration):
        first.send([("a", 1), ("b", 2)])
    second = stream.next_batch()
    assert next(second) == Commit()
    second.close()
    assert session.stream_holding_lock is None


@pytest.mark.parametrize("ids", [None, 3.5, object()])
def test_delete_ids_must_be_iterable(ids: object) -> None:
    with pytest.raises(InvalidTypeError, match="message_ids must be an iterable of IDs"):
        check_id_list(ids)

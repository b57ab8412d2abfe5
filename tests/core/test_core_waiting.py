"""What the core decides for waiting consumers: timeouts, change hints, watcher settings."""

from __future__ import annotations

from typing import Any

import pytest

from sansio_broker import Config, InvalidInputError, InvalidTypeError, Message
from sansio_broker.commands import Command, Execute
from sansio_broker.driver import BrokerCore, open_stream
from sansio_broker.states import Event
from sansio_broker.testing import run_with
from sansio_broker.validation import check_timeout
from sansio_broker.watching import WatchSettings


@pytest.mark.parametrize(("value", "expected"), [(None, None), (0, 0.0), (0.25, 0.25), (3, 3.0), (10**6, 1e6)])
def test_a_timeout_is_none_or_a_finite_number_of_seconds(value: Any, expected: float | None) -> None:
    assert check_timeout(value) == expected


@pytest.mark.parametrize("value", [True, False, "1", b"1", [1], object()])
def test_a_timeout_of_another_type_is_a_type_error(value: Any) -> None:
    with pytest.raises(InvalidTypeError, match="timeout must be a number"):
        check_timeout(value)


@pytest.mark.parametrize("value", [-1, -0.001, float("nan"), float("inf"), float("-inf"), 10**400])
def test_a_negative_or_endless_timeout_is_refused(value: Any) -> None:
    with pytest.raises(InvalidInputError, match="timeout must be"):
        check_timeout(value)


def changes(make: Any) -> frozenset[str] | None:
    session = BrokerCore().session()
    assert not session.has_changes
    operation = make(session)
    operation.close()  # made, never run: a spurious hint at worst
    assert session.has_changes
    taken = session.take_changes()
    assert not session.has_changes and session.take_changes() == frozenset()  # taken once
    return taken


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda s: s.write("q", "x"), frozenset({"q"})),
        (lambda s: s.write_many("q", ["x", "y"]), frozenset({"q"})),
        (lambda s: s.write_group([("a", "x"), ("b", "y"), ("a", "z")]), frozenset({"a", "b"})),
        (lambda s: s.move("src", "dst"), frozenset({"dst"})),
        (lambda s: s.move_many("src", "dst", 5), frozenset({"dst"})),
        (lambda s: s.move_all("src", "dst"), frozenset({"dst"})),
        (lambda s: s.return_claims("q", [Message("x", 1)]), frozenset({"q"})),
        (lambda s: s.broadcast("x"), None),
    ],
)
def test_operations_that_can_make_messages_pending_name_their_queues(make: Any, expected: Any) -> None:
    assert changes(make) == expected


def test_claims_peeks_and_reads_change_nothing_waiters_could_want() -> None:
    session = BrokerCore().session()
    for operation in (session.claim("q"), session.claim_many("q", 3), session.peek("q"), session.list_queues()):
        operation.close()
    assert not session.has_changes and session.take_changes() == frozenset()


def test_a_rolled_back_transaction_or_reset_may_have_made_any_queue_pending_again() -> None:
    session = BrokerCore().session()
    session.apply(Event.BEGIN)  # as if BEGIN had run
    session.rollback_transaction().close()
    assert session.take_changes() is None
    session.reset().close()
    assert session.take_changes() is None


def test_any_queue_outweighs_named_ones() -> None:
    session = BrokerCore().session()
    session.write("q", "x").close()
    session.broadcast("x").close()
    assert session.take_changes() is None


def test_watch_settings_come_from_simplebrokers_watcher_keys() -> None:
    config = Config.from_mapping(
        {"BROKER_MAX_INTERVAL": "0.05", "BROKER_BURST_SLEEP": "0.002", "BROKER_JITTER_FACTOR": "0"}
    )
    settings = WatchSettings.from_config(config)
    assert (settings.idle_ceiling, settings.burst_interval, settings.jitter) == (0.05, 0.002, 0.0)
    defaults = WatchSettings.from_config(Config())
    assert (defaults.idle_ceiling, defaults.burst_interval, defaults.jitter) == (0.006, 0.001, 0.15)


def test_a_burst_never_checks_less_often_than_the_idle_ceiling() -> None:
    config = Config.from_mapping({"BROKER_MAX_INTERVAL": "0.01", "BROKER_BURST_SLEEP": "0.5"})
    assert WatchSettings.from_config(config).burst_interval == 0.01


def test_an_at_least_once_batch_closed_early_is_pending_again_for_waiters() -> None:
    session = BrokerCore().session()
    stream = open_stream(session, "q", commit_interval=3)

    def respond(command: Command) -> Any:
        return [("a", 1), ("b", 2)] if isinstance(command, Execute) else None

    batch, _ = run_with(stream.next_batch(), respond)
    assert [m.body for m in batch] == ["a", "b"]
    assert not session.has_changes  # a claim makes nothing pending
    run_with(stream.close(), respond)
    assert session.take_changes() is None  # rolled back: pending again, for any waiter


@pytest.mark.parametrize(("row", "expected"), [((1234567890123456789,), 1234567890123456789), (None, 0)])
def test_a_peeking_watch_starts_after_the_highest_id_given_out(row: Any, expected: int) -> None:
    session = BrokerCore().session()
    last, commands = run_with(session.last_id(), lambda command: row)
    assert last == expected
    assert len(commands) == 1 and isinstance(commands[0], Execute) and "last_ts" in commands[0].sql

"""sansio_broker.testing: Stepper, run_scripted, run_with."""

from __future__ import annotations

from typing import Any

import pytest

from sansio_broker.commands import Command, Operation
from sansio_broker.driver import BrokerCore, Execute, Fetch, ReadClock, Sleep
from sansio_broker.testing import Stepper, run_scripted, run_with


def two_steps() -> Operation[str]:
    clock = yield ReadClock()
    try:
        row = yield Execute("SELECT 1", (clock,), Fetch.ONE)
    except ValueError as exc:
        return f"caught {exc}"
    return f"{clock}:{row}"


def no_commands() -> Operation[int]:
    return 7
    yield  # pragma: no cover - makes this a generator


def test_stepper_start_send_result() -> None:
    step = Stepper(two_steps())
    assert step.done is False
    assert step.start() == ReadClock()
    assert step.send(5) == Execute("SELECT 1", (5,), Fetch.ONE)
    assert step.send((1,)) is None
    assert step.done is True
    assert step.result == "5:(1,)"
    assert step.commands == [ReadClock(), Execute("SELECT 1", (5,), Fetch.ONE)]


def test_stepper_throw_reaches_the_operation() -> None:
    step = Stepper(two_steps())
    step.start()
    step.send(1)
    assert step.throw(ValueError("bad")) is None
    assert step.result == "caught bad"


def test_stepper_throw_that_is_not_handled_propagates() -> None:
    step = Stepper(two_steps())
    step.start()
    with pytest.raises(KeyError):
        step.throw(KeyError("x"))


def test_stepper_errors() -> None:
    step = Stepper(two_steps())
    with pytest.raises(RuntimeError, match="not finished"):
        _ = step.result
    step.start()
    with pytest.raises(RuntimeError, match="already started"):
        step.start()
    with pytest.raises(RuntimeError, match="not finished"):
        _ = step.result
    step.send(1)
    step.send(None)
    with pytest.raises(RuntimeError, match="has finished"):
        step.send(None)
    with pytest.raises(RuntimeError, match="has finished"):
        step.throw(ValueError())


def test_stepper_operation_without_commands() -> None:
    step = Stepper(no_commands())
    assert step.start() is None
    assert step.done is True
    assert step.result == 7
    assert step.commands == []


def test_run_scripted_sends_values_and_throws_exceptions() -> None:
    assert run_scripted(two_steps(), [3, ("r",)]) == ("3:('r',)", [ReadClock(), Execute("SELECT 1", (3,), Fetch.ONE)])
    result, commands = run_scripted(two_steps(), [3, ValueError("no")])
    assert result == "caught no"
    assert len(commands) == 2


def test_run_scripted_running_out_of_script_is_an_assertion_error() -> None:
    with pytest.raises(AssertionError, match=r"script ran out.*Execute"):
        run_scripted(two_steps(), [3])
    with pytest.raises(AssertionError, match="ReadClock"):
        run_scripted(two_steps(), [])


def test_run_scripted_ignores_extra_answers() -> None:
    result, _ = run_scripted(two_steps(), [1, 2, 3, 4])
    assert result == "1:2"


def test_run_with_asks_a_function() -> None:
    seen: list[Command] = []

    def respond(command: Command) -> Any:
        seen.append(command)
        return 9 if isinstance(command, ReadClock) else ValueError("boom")

    result, commands = run_with(two_steps(), respond)
    assert result == "caught boom"
    assert commands == seen


def test_run_with_drives_a_real_operation() -> None:
    session = BrokerCore().session()
    result, commands = run_with(session.list_queues(), lambda _: [("a",)])
    assert result == ["a"]
    assert len(commands) == 1


def test_commands_are_frozen_values() -> None:
    sleep = Sleep(0.5)
    with pytest.raises(AttributeError):
        sleep.seconds = 1  # type: ignore[misc]
    assert Sleep(0.5) == sleep and hash(Sleep(0.5)) == hash(sleep)
    assert Execute("X") == Execute("X", (), Fetch.NONE)

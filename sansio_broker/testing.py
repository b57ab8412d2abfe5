"""Step an operation by hand: see the commands it emits, feed it results.

No database needed, so library and adapter authors can test logic alone::

    from sansio_broker.driver import BrokerCore, Stepper

    step = Stepper(BrokerCore().session().write("tasks", "hi"))
    step.start()                    # -> Begin()
    step.send(None)                 # -> ReadClock()
    step.send(1_700_000_000_000_000_000)
    ...

or with a whole script at once::

    result, commands = run_scripted(op, [None, 1_700_000_000_000_000_000, (...,), None, None])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from .commands import Command, Operation

T = TypeVar("T")


class Stepper(Generic[T]):
    """Drives one operation one command at a time and records everything."""

    def __init__(self, operation: Operation[T]) -> None:
        self._operation = operation
        self.commands: list[Command] = []
        self.done = False
        self._result: T | None = None
        self._started = False

    @property
    def result(self) -> T:
        """The operation's return value, once :attr:`done`."""
        if not self.done:
            raise RuntimeError("the operation has not finished")
        return self._result  # type: ignore[return-value]

    def start(self) -> Command | None:
        """Run to the first command (``None`` if it finished without one)."""
        if self._started:
            raise RuntimeError("already started")
        self._started = True
        return self._advance(lambda: next(self._operation))

    def send(self, value: Any) -> Command | None:
        """Answer the last command; returns the next one, or ``None`` when done."""
        return self._advance(lambda: self._operation.send(value))

    def throw(self, error: BaseException) -> Command | None:
        """Answer the last command with an error, as a driver does on failure."""
        return self._advance(lambda: self._operation.throw(error))

    def _advance(self, step: Callable[[], Command]) -> Command | None:
        if self.done:
            raise RuntimeError("the operation has finished")
        try:
            command = step()
        except StopIteration as stop:
            self.done = True
            self._result = stop.value
            return None
        self.commands.append(command)
        return command


def run_scripted(operation: Operation[T], results: Iterable[Any]) -> tuple[T, list[Command]]:
    """Answer each command with the next scripted result (raise it if it is an
    exception); return the operation's result and the commands it emitted.

    Raises ``AssertionError`` if the script runs out before the operation ends.
    """
    stepper = Stepper(operation)
    answers = iter(results)
    command = stepper.start()
    while command is not None:
        try:
            answer = next(answers)
        except StopIteration:
            raise AssertionError(f"script ran out; operation is waiting on {command!r}") from None
        command = stepper.throw(answer) if isinstance(answer, BaseException) else stepper.send(answer)
    return stepper.result, stepper.commands


def run_with(operation: Operation[T], respond: Callable[[Command], Any]) -> tuple[T, list[Command]]:
    """Like :func:`run_scripted`, but a function answers each command."""
    stepper = Stepper(operation)
    command = stepper.start()
    while command is not None:
        answer = respond(command)
        command = stepper.throw(answer) if isinstance(answer, BaseException) else stepper.send(answer)
    return stepper.result, stepper.commands

"""Bad input raises the documented exception before anything touches the file, for every adapter."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sansio_broker import (
    AliasError,
    BrokerError,
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    MessageIdError,
    QueueNameError,
)
from tests.contract.contract_support import Facade, MakeBroker, Target, snapshot

MAX_SIZE = 12


@pytest.fixture
def loaded(make_broker: MakeBroker) -> tuple[Facade, list[int]]:
    """A broker with pending and claimed messages, its WAL holding recent commits."""
    broker = make_broker(config={"BROKER_AUTO_VACUUM": "0", "BROKER_MAX_MESSAGE_SIZE": str(MAX_SIZE)})
    ids = broker.write_many("q", ["a", "b", "c"])
    broker.claim("q")
    broker.write("other", "x")
    return broker, ids


def refused(target: Target, broker: Facade, error: type[BaseException], call: Callable[[], Any]) -> BaseException:
    """``call`` raises ``error`` (a BrokerError), the storage is untouched, and nothing is held.

    A call that returns a stream is refused by the time its first item is asked
    for; the blocking adapter's ``stream`` refuses when the stream is made.
    """
    before = snapshot(target)
    if target.backend == "sqlite":  # the file's WAL holds recent commits
        assert before["wal"] is not None
    stage = "call"
    with pytest.raises(error) as info:
        result = call()
        if isinstance(result, Iterator):
            stage = "first item"
            next(result)
    if broker.adapter == "blocking":
        assert stage == "call", "the blocking adapter refuses a stream's arguments when the stream is made"
    assert isinstance(info.value, BrokerError)
    assert snapshot(target) == before
    # Nothing was left half-done or held: the broker still works.
    broker.assert_idle()
    assert broker.peek("other") is not None
    return info.value


BAD_NAMES: list[Any] = [
    ("", QueueNameError),
    ("-leading", QueueNameError),
    (".leading", QueueNameError),
    ("x" * 513, QueueNameError),
    ("has space", QueueNameError),
    ("tab\t", QueueNameError),
    ("newline\n", QueueNameError),
    ("slash/", QueueNameError),
    ("émoji", QueueNameError),
    ("@", AliasError),  # "@name" names an alias (tests/contract/test_contract_simplebroker_api.py); "@" alone none
    (None, InvalidTypeError),
    (42, InvalidTypeError),
    (b"bytes", InvalidTypeError),
    pytest.param(["q"], InvalidTypeError, id="list"),
]


def name_calls(broker: Facade, name: Any) -> list[Callable[[], Any]]:
    # delete(None) is "delete every queue", so it is not a bad name there.
    delete = [] if name is None else [lambda: broker.delete(name)]
    return [
        *delete,
        lambda: broker.write(name, "m"),
        lambda: broker.write_many(name, ["m"]),
        lambda: broker.claim(name),
        lambda: broker.claim(name, message_id=1),
        lambda: broker.claim_many(name, 1),
        lambda: broker.claim_all(name),
        lambda: broker.peek(name),
        lambda: broker.peek_many(name, 1),
        lambda: broker.stream(name),
        lambda: broker.stream(name, peek=True),
        lambda: broker.stream(name, commit_interval=5),
        lambda: broker.move(name, "q"),
        lambda: broker.move("q", name),
        lambda: broker.move_many(name, "q", 1),
        lambda: broker.move_all("q", name),
        lambda: broker.delete_messages(name, []),
        lambda: broker.queue_stats(name),
        lambda: broker.queue_exists(name),
        lambda: broker.read(name),
        lambda: broker.read(name, peek=True, all_messages=True),
        lambda: broker.stream_read(name),
        lambda: broker.queue(name),
    ]


@pytest.mark.parametrize(("name", "error"), BAD_NAMES)
def test_invalid_queue_names(loaded: tuple[Facade, list[int]], target: Target, name: object, error: type) -> None:
    broker, _ = loaded
    for call in name_calls(broker, name):
        refused(target, broker, error, call)
    if isinstance(name, str):
        assert isinstance(refused(target, broker, error, lambda: broker.write(name, "m")), ValueError)
    else:
        assert isinstance(refused(target, broker, error, lambda: broker.write(name, "m")), TypeError)


def test_longest_valid_queue_name_accepted(loaded: tuple[Facade, list[int]]) -> None:
    broker, _ = loaded
    name = "x" * 512
    broker.write(name, "m")
    assert broker.read(name) == ["m"]
    for valid in ["_u", "0digit", "a.b-c_d", "Z"]:
        broker.write(valid, "m")
    assert broker.broadcast("all") == 7


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"bytes", InvalidTypeError),
        (None, InvalidTypeError),
        (123, InvalidTypeError),
        ("\ud800", MessageError),
        ("ok\udfffok", MessageError),
        ("x" * (MAX_SIZE + 1), MessageError),
        ("é" * (MAX_SIZE // 2 + 1), MessageError),  # 7 chars, 14 bytes
        ("\U0001f600" * 4, MessageError),  # 4 chars, 16 bytes
        ("€" * 5, MessageError),  # 5 chars, 15 bytes
    ],
)
def test_invalid_bodies(loaded: tuple[Facade, list[int]], target: Target, body: Any, error: type) -> None:
    broker, _ = loaded
    for call in (
        lambda: broker.write("q", body),
        lambda: broker.write_many("q", ["fine", body]),
        lambda: broker.broadcast(body),
        lambda: broker.queue("q").write(body),
        lambda: broker.queue("q").write_many(["fine", body]),
    ):
        refused(target, broker, error, call)


def test_body_size_limit_counts_utf8_bytes(loaded: tuple[Facade, list[int]]) -> None:
    broker, _ = loaded
    exactly = "é" * (MAX_SIZE // 2)  # 12 bytes
    assert len(exactly.encode()) == MAX_SIZE
    broker.write("sizes", exactly)
    broker.write("sizes", "x" * MAX_SIZE)
    broker.write("sizes", "\U0001f600" * 3)  # 12 bytes
    assert broker.read("sizes", all_messages=True) == [exactly, "x" * MAX_SIZE, "\U0001f600" * 3]


def test_write_many_with_a_str_is_refused(loaded: tuple[Facade, list[int]], target: Target) -> None:
    broker, _ = loaded
    refused(target, broker, InvalidTypeError, lambda: broker.write_many("q", "abc"))
    refused(target, broker, InvalidTypeError, lambda: broker.write_many("q", b"abc"))
    refused(target, broker, InvalidTypeError, lambda: broker.queue("q").write_many("abc"))


BAD_IDS: list[tuple[object, type[BaseException]]] = [
    ("1" * 18, MessageIdError),
    ("1" * 20, MessageIdError),
    ("9" * 19, MessageIdError),  # 19 digits but >= 2**63
    ("12345678901234567x9", MessageIdError),
    ("-123456789012345678", MessageIdError),
    ("", MessageIdError),
    (-1, MessageIdError),
    (2**63, MessageIdError),
    (True, InvalidTypeError),
    (False, InvalidTypeError),
    (1.0, InvalidTypeError),
    (1.7e18, InvalidTypeError),
    (b"1234567890123456789", InvalidTypeError),
]


@pytest.mark.parametrize(("message_id", "error"), BAD_IDS)
def test_invalid_message_ids(loaded: tuple[Facade, list[int]], target: Target, message_id: Any, error: type) -> None:
    broker, _ = loaded
    queue = broker.queue("q")
    for call in (
        lambda: broker.claim("q", message_id=message_id),
        lambda: broker.peek("q", message_id=message_id),
        lambda: broker.peek("q", message_id=message_id, include_claimed=True),
        lambda: broker.move("q", "dst", message_id=message_id),
        lambda: broker.delete_messages("q", [message_id]),
        lambda: broker.read("q", exact_timestamp=message_id),
        lambda: broker.read("q", peek=True, exact_timestamp=message_id),
        lambda: queue.read(message_id=message_id),
        lambda: queue.claim(message_id=message_id),
        lambda: queue.peek(message_id=message_id),
        lambda: queue.move_to("dst", message_id=message_id),
        lambda: queue.delete(message_id=message_id),
    ):
        refused(target, broker, error, call)


def test_valid_id_edge_values_accepted(loaded: tuple[Facade, list[int]], target: Target) -> None:
    broker, ids = loaded
    assert broker.claim("q", message_id=0) is None
    assert broker.claim("q", message_id=2**63 - 1) is None
    assert broker.claim("q", message_id="0000000000000000000") is None
    assert broker.peek("q", message_id=str(ids[1])) is not None  # padded forms: test_contract_bad_input_more


def test_message_id_with_bounds_refused(loaded: tuple[Facade, list[int]], target: Target) -> None:
    broker, ids = loaded
    for call in (
        lambda: broker.claim("q", message_id=ids[1], after_timestamp=ids[0]),
        lambda: broker.peek("q", message_id=ids[1], before_timestamp=ids[2]),
        lambda: broker.move("q", "dst", message_id=ids[1], after_timestamp=0),
    ):
        refused(target, broker, InvalidInputError, call)


def test_delete_messages_needs_an_iterable(loaded: tuple[Facade, list[int]], target: Target) -> None:
    broker, ids = loaded
    refused(target, broker, InvalidTypeError, lambda: broker.delete_messages("q", ids[1]))  # type: ignore[arg-type]
    refused(target, broker, InvalidTypeError, lambda: broker.delete_messages("q", str(ids[1])))
    refused(target, broker, InvalidTypeError, lambda: broker.delete_messages("q", str(ids[1]).encode()))
    # One bad ID among good ones: nothing is deleted.
    refused(target, broker, MessageIdError, lambda: broker.delete_messages("q", [ids[1], -5]))


BAD_BOUNDS: list[tuple[object, type[BaseException]]] = [
    (-1, MessageIdError),
    (2**63, MessageIdError),
    (True, InvalidTypeError),
    (1.5, InvalidTypeError),
    ("1234567890123456789", InvalidTypeError),
    ("5", InvalidTypeError),
]


@pytest.mark.parametrize(("bound", "error"), BAD_BOUNDS)
@pytest.mark.parametrize("side", ["after_timestamp", "before_timestamp"])
def test_invalid_bounds(loaded: tuple[Facade, list[int]], target: Target, bound: Any, error: type, side: str) -> None:
    broker, _ = loaded
    kw = {side: bound}
    for call in (
        lambda: broker.claim("q", **kw),
        lambda: broker.claim_many("q", 2, **kw),
        lambda: broker.claim_all("q", **kw),
        lambda: broker.peek("q", **kw),
        lambda: broker.peek_many("q", 2, **kw),
        lambda: broker.stream("q", **kw),
        lambda: broker.stream("q", peek=True, **kw),
        lambda: broker.stream("q", commit_interval=3, **kw),
        lambda: broker.move("q", "dst", **kw),
        lambda: broker.move_many("q", "dst", 2, **kw),
        lambda: broker.move_all("q", "dst", **kw),
        lambda: broker.read("q", **kw),
        lambda: broker.queue("q").read(**kw),
    ):
        refused(target, broker, error, call)


@pytest.mark.parametrize(
    ("limit", "error"),
    [
        (0, InvalidInputError),
        (-1, InvalidInputError),
        (True, InvalidTypeError),
        (1.0, InvalidTypeError),
        ("1", InvalidTypeError),
    ],
)
def test_invalid_limits(loaded: tuple[Facade, list[int]], target: Target, limit: Any, error: type) -> None:
    broker, _ = loaded
    for call in (
        lambda: broker.claim_many("q", limit),
        lambda: broker.peek_many("q", limit),
        lambda: broker.move_many("q", "dst", limit),
        lambda: broker.queue("q").claim_many(limit),
        lambda: broker.queue("q").peek_many(limit),
        lambda: broker.queue("q").move_many("dst", limit),
    ):
        refused(target, broker, error, call)


@pytest.mark.parametrize(
    ("interval", "error"),
    [(0, InvalidInputError), (-1, InvalidInputError), (False, InvalidTypeError), (2.0, InvalidTypeError)],
)
def test_invalid_commit_interval(loaded: tuple[Facade, list[int]], target: Target, interval: Any, error: type) -> None:
    broker, _ = loaded
    refused(target, broker, error, lambda: broker.stream("q", commit_interval=interval))
    refused(target, broker, error, lambda: broker.stream_read("q", all_messages=True, commit_interval=interval))
    refused(target, broker, error, lambda: broker.queue("q").stream(commit_interval=interval))
    refused(target, broker, error, lambda: broker.queue("q").messages(commit_interval=interval))


def test_invalid_broadcast_pattern(loaded: tuple[Facade, list[int]], target: Target) -> None:
    broker, _ = loaded
    refused(target, broker, InvalidTypeError, lambda: broker.broadcast("m", pattern=b"q*"))  # type: ignore[arg-type]


def test_invalid_combinations(loaded: tuple[Facade, list[int]], target: Target) -> None:
    broker, ids = loaded
    for call in (
        lambda: broker.move("q", "q"),
        lambda: broker.move_many("q", "q", 1),
        lambda: broker.move_all("q", "q"),
        lambda: broker.queue("q").move_to("q"),
        lambda: broker.read("q", all_messages=True, exact_timestamp=ids[1]),
        lambda: broker.read("q", peek=True, all_messages=True, exact_timestamp=1),
        lambda: broker.queue("q").read(all_messages=True, message_id=ids[1]),
    ):
        refused(target, broker, InvalidInputError, call)

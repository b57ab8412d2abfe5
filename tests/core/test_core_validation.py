"""Argument checks (SimpleBroker's rules for names, bodies and IDs), and that operations apply them when called."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sansio_broker import (
    BrokerError,
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    MessageIdError,
    QueueNameError,
    validation,
)
from sansio_broker.validation import (
    MAX_MESSAGE_ID,
    MAX_QUEUE_NAME_LENGTH,
    check_bodies,
    check_body,
    check_bound,
    check_broker,
    check_message_id,
    check_path,
    check_positive,
    check_queue_name,
    check_selection,
)
from tests.core.core_testkit import make_session

ID = 1_750_000_000_000_004_096
# "1234567890123456789" in FULLWIDTH DIGITs (U+FF10..U+FF19): str.isdecimal() is true for them,
# and SimpleBroker 8.7.2 accepts them; we do not.
FULLWIDTH_ID = "".join(chr(0xFF10 + int(d)) for d in "1234567890123456789")


# ------------------------------------------------------------- queue names
@pytest.mark.parametrize(
    "name",
    ["q", "Q", "0", "_", "_hidden", "a.b-c_d", "tasks.high-priority", "a" * MAX_QUEUE_NAME_LENGTH, "9-.", "x--"],
)
def test_valid_queue_names(name: str) -> None:
    assert check_queue_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-q",
        ".q",
        "a b",
        "a/b",
        "a:b",
        "q\n",
        "\nq",
        "é",
        "q*",
        "@alias",
        "a" * (MAX_QUEUE_NAME_LENGTH + 1),
        "\uff51",  # FULLWIDTH LATIN SMALL LETTER Q
    ],
)
def test_invalid_queue_names(name: str) -> None:
    with pytest.raises(QueueNameError) as caught:
        check_queue_name(name)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, BrokerError)
    assert "hyphen or a period" in str(caught.value)


def test_long_name_is_truncated_in_the_message() -> None:
    with pytest.raises(QueueNameError) as caught:
        check_queue_name("-" + "x" * 1000)
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize("name", [None, 5, b"q", 1.0, ("q",)])
def test_non_str_queue_name_is_an_invalid_type_error(name: object) -> None:
    with pytest.raises(InvalidTypeError) as caught:
        check_queue_name(name)
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, InvalidInputError)


@pytest.mark.parametrize("name", [["q"], {"q": 1}, {"q"}])
def test_unhashable_queue_name_is_an_invalid_type_error(name: object) -> None:
    with pytest.raises(InvalidTypeError):
        check_queue_name(name)


def test_cached_valid_name_is_accepted_again() -> None:
    assert check_queue_name("cached-name") == "cached-name"
    assert check_queue_name("cached-name") == "cached-name"


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        st.text(max_size=20),
        st.text(alphabet="ab_.-9\n é", max_size=12),
        st.from_regex(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,20}", fullmatch=True),
    )
)
def test_queue_names_agree_with_simplebroker(name: str) -> None:
    sb_db = pytest.importorskip("simplebroker.db")
    sb_accepts = sb_db._validate_queue_name_cached(name) is None
    try:
        check_queue_name(name)
        accepted = True
    except QueueNameError:
        accepted = False
    assert accepted is sb_accepts


# -------------------------------------------------------------------- body
def test_body_sizes_count_utf8_bytes() -> None:
    assert check_body("", 1) == ""
    assert check_body("a\x00b", 3) == "a\x00b"
    assert check_body("abc", 3) == "abc"
    with pytest.raises(MessageError, match="4 bytes"):
        check_body("abcd", 3)
    # 3 characters, 6 bytes: too big for 5 even though len() is 3
    assert check_body("ééé", 6) == "ééé"
    with pytest.raises(MessageError, match="6 bytes"):
        check_body("ééé", 5)
    with pytest.raises(MessageError):
        check_body("€", 2)  # 3 bytes
    with pytest.raises(MessageError):
        check_body("😀", 3)  # 4 bytes
    assert check_body("😀", 4) == "😀"
    # ASCII beyond the fast path
    assert check_body("x" * 100, 100) == "x" * 100
    with pytest.raises(MessageError):
        check_body("x" * 101, 100)


def test_default_limit_is_ten_mebibytes() -> None:
    session = make_session()
    session.write("q", "x" * (10 * 1024 * 1024))
    with pytest.raises(MessageError):
        session.write("q", "x" * (10 * 1024 * 1024 + 1))
    with pytest.raises(MessageError):
        session.write("q", "é" * (5 * 1024 * 1024 + 1))


def test_lone_surrogate_is_a_message_error() -> None:
    with pytest.raises(MessageError, match="UTF-8"):
        check_body("a\ud800b", 100)
    with pytest.raises(MessageError):
        make_session().write("q", "\udfff")


@pytest.mark.parametrize("body", [None, b"bytes", 5, ["x"]])
def test_non_str_body_is_refused_as_a_type_error(body: object) -> None:
    with pytest.raises(InvalidTypeError) as caught:
        check_body(body, 100)
    assert isinstance(caught.value, TypeError)


def test_non_str_body_is_a_message_error() -> None:
    with pytest.raises(MessageError):
        check_body(b"bytes", 100)


# ------------------------------------------------------------- message IDs
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (ID, ID),
        (MAX_MESSAGE_ID, 2**63 - 1),
        ("0000000000000000001", 1),
        (str(ID), ID),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_valid_message_ids(value: int | str, expected: int) -> None:
    assert check_message_id(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "1",
        "123456789012345678",  # 18 digits
        "12345678901234567890",  # 20 digits
        "9223372036854775808",  # 2**63
        "-000000000000000001",
        "+000000000000000001",
        "00000000000000000 1",
        "1e18",
        "",
        -1,
        2**63,
        # Accepted by SimpleBroker 8.7.2, refused here: only 19 ASCII digits spell an ID.
        " 0000000000000000001",
        "0000000000000000001 ",
        " 0000000000000000001\n",
        "\u00a00000000000000000001",
        FULLWIDTH_ID,
        "\u0661" * 19,  # ARABIC-INDIC DIGIT ONE
        "000000000000000000\u0661",
        "0000_00000000000001",
        "000000000000000001" + "\u00b9",  # SUPERSCRIPT ONE: isdigit() but not isdecimal()
    ],
)
def test_invalid_message_ids(value: int | str) -> None:
    with pytest.raises(MessageIdError) as caught:
        check_message_id(value)
    assert isinstance(caught.value, ValueError)
    if isinstance(value, str) and value != "9223372036854775808":
        assert "expected exactly 19 ASCII digits" in str(caught.value)


@pytest.mark.parametrize("value", [True, False, 1.0, None, b"0000000000000000001"])
def test_message_id_of_the_wrong_type(value: object) -> None:
    with pytest.raises(InvalidTypeError, match="message_id"):
        check_message_id(value)
    with pytest.raises(InvalidTypeError, match="other_name"):
        check_message_id(value, "other_name")


@settings(max_examples=300, deadline=None, database=None)
@given(
    st.one_of(
        st.integers(min_value=-(2**64), max_value=2**64),
        st.text(alphabet="0123456789 -\u0661\uff11", min_size=17, max_size=21),
        st.integers(min_value=0, max_value=2**64).map(lambda n: f"{n:019d}"),
    )
)
def test_message_ids_refuse_all_simplebroker_refuses(value: int | str) -> None:
    """Every ID SimpleBroker refuses is refused; of what it accepts, only the plain
    spellings (an int, or exactly 19 ASCII digits) are, with the same value."""
    sb = pytest.importorskip("simplebroker._message_id")
    try:
        expected: int | None = sb.normalize_message_id(value)
    except (ValueError, TypeError):
        expected = None
    try:
        got: int | None = check_message_id(value)
    except MessageIdError:
        got = None
    plain = isinstance(value, int) or (len(value) == 19 and value.isascii() and value.isdigit())
    assert got == (expected if plain else None)


# ------------------------------------------------------ bounds and limits
def test_bounds() -> None:
    assert check_bound(None, "after_timestamp") is None
    assert check_bound(0, "after_timestamp") == 0
    assert check_bound(2**63 - 1, "after_timestamp") == 2**63 - 1
    with pytest.raises(MessageIdError, match="after_timestamp"):
        check_bound(-1, "after_timestamp")
    with pytest.raises(MessageIdError, match="before_timestamp"):
        check_bound(2**63, "before_timestamp")
    for wrong in (True, "5", 5.0):
        with pytest.raises(InvalidTypeError):
            check_bound(wrong, "after_timestamp")


def test_positive_limits() -> None:
    assert check_positive(1, "limit") == 1
    assert check_positive(2**63 - 1, "limit") == 2**63 - 1
    for huge in (2**63, 2**64, 10**100):
        with pytest.raises(InvalidInputError, match=r"limit must be <= 2\*\*63-1") as caught:
            check_positive(huge, "limit")
        assert not isinstance(caught.value, InvalidTypeError)
    with pytest.raises(InvalidInputError, match="limit must be >= 1"):
        check_positive(0, "limit")
    with pytest.raises(InvalidInputError):
        check_positive(-5, "limit")
    with pytest.raises(InvalidTypeError):
        check_positive(True, "limit")
    with pytest.raises(InvalidTypeError):
        check_positive("3", "limit")


def test_check_selection() -> None:
    assert check_selection(None, None, None) == (None, None, None)
    assert check_selection(str(ID), None, None) == (ID, None, None)
    assert check_selection(None, 1, 2) == (None, 1, 2)
    with pytest.raises(InvalidInputError, match="cannot be combined"):
        check_selection(ID, 1, None)
    with pytest.raises(InvalidInputError, match="cannot be combined"):
        check_selection(ID, None, 0)
    with pytest.raises(MessageIdError):
        check_selection("x", None, None)
    with pytest.raises(InvalidTypeError):
        check_selection(None, True, None)


# ------------------------------------ operations validate when they are called
BAD_CALLS: list[tuple[str, Any, type[BaseException]]] = [
    ("write bad queue", lambda s: s.write("a b", "x"), QueueNameError),
    ("write non-str queue", lambda s: s.write(None, "x"), InvalidTypeError),
    ("write surrogate", lambda s: s.write("q", "\ud800"), MessageError),
    ("write_many bad body", lambda s: s.write_many("q", ["ok", None]), InvalidTypeError),
    ("broadcast surrogate", lambda s: s.broadcast("\ud800"), MessageError),
    ("claim bad id", lambda s: s.claim("q", message_id="abc"), MessageIdError),
    ("claim id and bound", lambda s: s.claim("q", message_id=ID, before=5), InvalidInputError),
    ("claim bool bound", lambda s: s.claim("q", after=False), InvalidTypeError),
    ("claim_many zero", lambda s: s.claim_many("q", 0), InvalidInputError),
    ("claim_many 2**63", lambda s: s.claim_many("q", 2**63), InvalidInputError),
    ("peek_many 2**63", lambda s: s.peek_many("q", 2**63), InvalidInputError),
    ("move_many 2**63", lambda s: s.move_many("a", "b", 2**63), InvalidInputError),
    ("write_many None", lambda s: s.write_many("q", None), InvalidTypeError),
    ("write_many int", lambda s: s.write_many("q", 3), InvalidTypeError),
    ("claim padded id", lambda s: s.claim("q", message_id=f" {ID}"), MessageIdError),
    ("claim_all bad queue", lambda s: s.claim_all(".q"), QueueNameError),
    ("peek bad queue", lambda s: s.peek("q q"), QueueNameError),
    ("peek_many bool", lambda s: s.peek_many("q", True), InvalidTypeError),
    ("move same", lambda s: s.move("q", "q"), InvalidInputError),
    ("move bad id", lambda s: s.move("a", "b", message_id=-1), MessageIdError),
    ("move_many zero", lambda s: s.move_many("a", "b", 0), InvalidInputError),
    ("move_all bad bound", lambda s: s.move_all("a", "b", after=2**63), MessageIdError),
    ("delete_queue", lambda s: s.delete_queue(""), QueueNameError),
    ("delete_messages", lambda s: s.delete_messages("q", [True]), InvalidTypeError),
    ("queue_stats", lambda s: s.queue_stats("-q"), QueueNameError),
    ("queue_exists", lambda s: s.queue_exists(3), InvalidTypeError),
]


@pytest.mark.parametrize(("label", "call", "error"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
def test_operations_raise_when_called_before_any_command(label: str, call: Any, error: type[BaseException]) -> None:
    session = make_session()
    with pytest.raises(error):
        call(session)  # the error comes from the call itself, not from stepping a generator


def test_the_valid_name_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    full = {f"n{i}" for i in range(10_000)}
    monkeypatch.setattr(validation, "_valid_names", full)
    assert check_queue_name("fresh-name") == "fresh-name"
    assert "fresh-name" not in full
    assert len(full) == 10_000
    with pytest.raises(QueueNameError):
        check_queue_name("-still-checked")


# ------------------------------------------------------------ write_many bodies
def test_check_bodies_iterates_once_and_refuses_non_iterables() -> None:
    assert list(check_bodies(["a", "b"])) == ["a", "b"]
    assert list(check_bodies(b for b in "xy")) == ["x", "y"]
    assert list(check_bodies(())) == []
    for single in ("abc", b"abc"):
        with pytest.raises(InvalidTypeError, match="not a single str"):
            check_bodies(single)
    for value in (None, 3, 1.5, object()):
        with pytest.raises(InvalidTypeError, match=f"iterable of str bodies, not {type(value).__name__}") as caught:
            check_bodies(value)
        assert isinstance(caught.value, TypeError)


def test_a_type_error_inside_the_iterable_is_not_disguised() -> None:
    def bodies() -> Any:
        yield "a"
        raise TypeError("from the caller's generator")

    with pytest.raises(TypeError, match="from the caller's generator") as caught:
        list(check_bodies(bodies()))
    assert not isinstance(caught.value, InvalidTypeError)


# -------------------------------------------------------------------- paths
class _PathLike:
    def __init__(self, value: object) -> None:
        self.value = value

    def __fspath__(self) -> object:
        return self.value


@pytest.mark.parametrize("path", ["broker.db", "/tmp/x/broker.db", " ", "file::memory:", ":memory:x"])
def test_check_path_accepts_file_names(path: str) -> None:
    assert check_path(path) == path
    assert check_path(_PathLike(path)) == path


@pytest.mark.parametrize("path", ["", ":memory:"])
def test_check_path_refuses_paths_that_name_no_file(path: str) -> None:
    for spelled in (path, _PathLike(path)):
        with pytest.raises(InvalidInputError, match="needs a database file on disk") as caught:
            check_path(spelled)
        assert not isinstance(caught.value, InvalidTypeError)
        assert repr(path) in str(caught.value)


def test_check_path_refuses_nul_and_wrong_types() -> None:
    with pytest.raises(InvalidInputError, match="NUL"):
        check_path("a\0b.db")
    for wrong in (None, 3, b"broker.db", _PathLike(b"broker.db"), ["broker.db"]):
        with pytest.raises(InvalidTypeError, match=r"path must be a str or an os\.PathLike of str"):
            check_path(wrong)


# ------------------------------------------------------------------ brokers
class _Broker:
    pass


def test_check_broker() -> None:
    broker = _Broker()
    assert check_broker(broker, _Broker, "Queue") is broker
    with pytest.raises(
        InvalidTypeError,
        match=r"Queue\(name, broker\): broker must be a broker object \(_Broker\), not str; open one first",
    ) as caught:
        check_broker("x.db", _Broker, "Queue")
    assert isinstance(caught.value, TypeError)
    with pytest.raises(InvalidTypeError, match="not _PathLike; open one first"):
        check_broker(_PathLike("x.db"), _Broker, "Queue")
    with pytest.raises(InvalidTypeError, match=r"not NoneType$"):
        check_broker(None, _Broker, "Queue")

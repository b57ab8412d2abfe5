"""SimpleBroker's dump format (``sansio_broker.dump``) and the session
operations a dump and a load run: ``dump_page``, ``insert_messages``,
``raise_last_id``.

Lines, filters and the reader are compared with SimpleBroker 8.7.2's own
``simplebroker._dump`` (its pure functions, and ``load_lines`` against a
stand-in broker that only records what it is asked to apply): same bytes
out, same records in, same refusals with the same texts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any, cast

import pytest
from simplebroker import _dump as sb_dump
from simplebroker._message_insert import normalize_insert_records

from sansio_broker import (
    ClockSkewWarning,
    DumpFormatError,
    IntegrityError,
    InvalidInputError,
    InvalidTypeError,
    MessageError,
    MessageIdError,
    QueueNameError,
)
from sansio_broker import dump as fmt
from sansio_broker.driver import Begin, Commit, Execute, ExecuteMany, Fetch, Rollback, Stepper
from sansio_broker.testing import run_scripted
from tests.core.core_testkit import SQL, make_session

INSERT_EXACT = "INSERT INTO messages (queue, body, ts, claimed) VALUES (?, ?, ?, 0)"
RAISE_LAST_TS = "UPDATE meta SET value = ? WHERE key = 'last_ts' AND value < ?"
DUMP_PAGE = (
    "SELECT queue, body, ts FROM messages\n"
    "WHERE claimed = 0 AND ts <= ? AND (queue > ? OR (queue = ? AND ts > ?))\n"
    "ORDER BY queue, ts\nLIMIT ?"
)

# A header well in the past of any clock these tests run on: no skew involved.
LAST = 1_000_000_000_000_004_096
ID1, ID2 = 1_000_000_000_000_000_001, 1_000_000_000_000_000_002
SECOND = 1_000_000_000
NOW_NS = 1_750_000_000_000_000_000  # a wall clock with the counter bits clear


def header(**fields: Any) -> str:
    record: dict[str, Any] = {
        "type": "header",
        "format": "simplebroker-dump",
        "version": 1,
        "backend": "sqlite",
        "last_ts": f"{LAST:019d}",
    }
    record.update(fields)
    return json.dumps({k: v for k, v in record.items() if v is not ...})


def message(queue: Any = "jobs", body: Any = "j1", message_id: Any = f"{ID1:019d}", **extra: Any) -> str:
    return json.dumps({"type": "message", "queue": queue, "body": body, "id": message_id, **extra})


def alias(name: Any = "w", target: Any = "jobs") -> str:
    return json.dumps({"type": "alias", "alias": name, "target": target})


def reader(*, now_ns: int = NOW_NS, max_skew: float = 300, force: bool = False) -> fmt.Reader:
    return fmt.Reader(now_ns=now_ns, max_future_skew_s=max_skew, force=force)


def read_all(lines: Iterable[str], **options: Any) -> tuple[list[fmt.Record], int]:
    """Our reader over a whole dump: the records to apply and the header's last_ts."""
    r = reader(**options)
    records = [record for record in (r.feed(line) for line in lines) if record is not None]
    return records, r.finish()


class AppliedBySimpleBroker:
    """What SimpleBroker's ``load_lines`` asks a broker to apply, recorded."""

    def __init__(self) -> None:
        self.aliases: list[tuple[str, str]] = []
        self.messages: list[tuple[str, str, int]] = []
        self.floor: int | None = None

    def add_alias(self, alias: str, target: str) -> None:
        self.aliases.append((alias, target))

    def insert_messages(self, records: list[tuple[str, str, int]]) -> None:
        self.messages.extend(records)

    def advance_last_timestamp(self, timestamp: int) -> int:
        self.floor = timestamp
        return timestamp


def accept(value: str) -> None:
    """A SimpleBroker validator that lets everything through."""


def simplebroker_load(lines: Iterable[str]) -> AppliedBySimpleBroker:
    applied = AppliedBySimpleBroker()
    sb_dump.load_lines(cast(Any, applied), list(lines))
    return applied


# ------------------------------------------------------------ lines out
def test_lines_are_simplebrokers_bytes() -> None:
    assert fmt.header_line(LAST) == (
        '{"backend": "sqlite", "format": "simplebroker-dump", "last_ts": "1000000000000004096", '
        '"type": "header", "version": 1}'
    )
    assert fmt.alias_line("w", "jobs") == '{"alias": "w", "target": "jobs", "type": "alias"}'
    assert fmt.message_line("jobs", 'ünï "q"\ttab', ID1) == (
        '{"body": "ünï \\"q\\"\\ttab", "id": "1000000000000000001", "queue": "jobs", "type": "message"}'
    )
    # Byte for byte what SimpleBroker writes for the same records.
    assert fmt.header_line(LAST) == sb_dump._line(
        {"type": "header", "format": "simplebroker-dump", "version": 1, "backend": "sqlite", "last_ts": f"{LAST:019d}"}
    )
    assert fmt.message_line("q", "\u2603 \U0001f600 \\", 5) == sb_dump._line(
        {"type": "message", "queue": "q", "body": "\u2603 \U0001f600 \\", "id": "0000000000000000005"}
    )
    assert fmt.alias_line("a", "b") == sb_dump._line({"type": "alias", "alias": "a", "target": "b"})
    assert (fmt.FORMAT, fmt.VERSION, fmt.LOAD_BATCH_SIZE) == (sb_dump.DUMP_FORMAT, sb_dump.DUMP_VERSION, 1000)


def test_the_header_pads_ids_to_19_digits_and_names_the_backend() -> None:
    line = json.loads(fmt.header_line(0, backend="fake"))
    assert line["last_ts"] == "0000000000000000000"  # a fresh broker's dump
    assert line["backend"] == "fake"  # informational: loads ignore it
    assert json.loads(fmt.message_line("q", "", 2**63 - 1))["id"] == "9223372036854775807"


# -------------------------------------------------------------- filters
QUEUES = ["jobs", "logs.a", "logs.b", "tmp", "Jobs"]
GLOBS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    ((), ()),
    (("logs*",), ()),
    (("w",), ()),
    ((), ("jobs",)),
    (("logs*", "tmp"), ("logs.a",)),
    (("J*",), ()),  # case-sensitive
    (("*",), ("*",)),  # exclude wins
    (("[lt]*",), ("*.b",)),
]


@pytest.mark.parametrize(("include", "exclude"), GLOBS)
def test_the_selection_is_simplebrokers(include: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    selection = fmt.Selection.of(include, exclude)
    for queue in QUEUES:
        assert selection.queue(queue) is sb_dump._selected(queue, list(include), list(exclude)), queue
    for name, target in (("w", "jobs"), ("logalias", "logs.a"), ("t", "tmp"), ("x", "elsewhere")):
        expected = sb_dump._alias_selected(name, target, list(include), list(exclude))
        assert selection.alias(name, target) is expected, (name, target)


def test_an_alias_rides_on_either_name() -> None:
    # Survey 4b: --include w keeps the alias by its name; --exclude jobs drops it by its target.
    assert fmt.Selection.of(["w"]).alias("w", "jobs") is True
    assert fmt.Selection.of(["w"]).queue("jobs") is False
    assert fmt.Selection.of(exclude=["jobs"]).alias("w", "jobs") is False
    assert fmt.Selection.of(["jobs"]).alias("w", "jobs") is True
    assert fmt.Selection().queue("anything") is True


def test_the_selection_takes_any_iterable_of_globs() -> None:
    selection = fmt.Selection.of(iter(["a*"]), (g for g in ["ab"]))
    assert selection == fmt.Selection(("a*",), ("ab",))
    assert (selection.queue("ac"), selection.queue("ab"), selection.queue("b")) == (True, False, False)


@pytest.mark.parametrize(
    ("include", "exclude", "text"),
    [
        ("logs*", (), "include must be an iterable of glob strings, not a single string"),
        ((), b"x", "exclude must be an iterable of glob strings, not a single string"),
        ([1], (), "include globs must be str, not int"),
        ((), ["ok", None], "exclude globs must be str, not NoneType"),
    ],
)
def test_the_selection_refuses_what_is_no_list_of_globs(include: Any, exclude: Any, text: str) -> None:
    with pytest.raises(InvalidTypeError, match=f"^{text}$"):
        fmt.Selection.of(include, exclude)


# ---------------------------------------------------------- lines in
def test_the_reader_hands_out_what_to_apply() -> None:
    r = reader()
    assert r.last_ts is None
    assert r.feed(header()) is None
    assert r.last_ts == LAST
    assert r.feed("") is None and r.feed("   \n") is None  # blank lines are skipped
    assert r.feed(alias()) == fmt.AliasRecord("w", "jobs")
    assert r.feed(message() + "\n") == fmt.MessageRecord("jobs", "j1", ID1)
    # An ID may be a JSON integer too; extra keys (a "claimed" flag) are ignored: loads are pending.
    assert r.feed(message("q", "x", ID2, claimed=1)) == fmt.MessageRecord("q", "x", ID2)
    assert r.feed(message("q", "at the bound", f"{LAST:019d}")) == fmt.MessageRecord("q", "at the bound", LAST)
    assert r.finish() == LAST
    assert r.warnings == []


def test_the_reader_reads_what_simplebroker_applies() -> None:
    dump = [
        fmt.header_line(LAST),
        fmt.alias_line("w", "jobs"),
        "",
        fmt.message_line("jobs", "j1", ID1),
        fmt.message_line("jobs", 'ünï "q"\ttab', ID2),
        message("tmp", "x", LAST),
        alias("also", "tmp"),  # aliases may follow messages
    ]
    records, last_ts = read_all(dump)
    applied = simplebroker_load(dump)
    assert [(r.alias, r.target) for r in records if isinstance(r, fmt.AliasRecord)] == applied.aliases
    assert [(r.queue, r.body, r.id) for r in records if isinstance(r, fmt.MessageRecord)] == applied.messages
    assert last_ts == applied.floor == LAST


def test_a_header_with_last_ts_zero_is_a_header() -> None:
    records, last_ts = read_all([header(last_ts=0)])  # an empty broker's dump, the ID as an integer
    assert (records, last_ts) == ([], 0)
    r = reader()
    r.feed(header(last_ts="0000000000000000000"))
    with pytest.raises(DumpFormatError, match=r"^invalid dump input at line 2: message id exceeds header last_ts$"):
        r.feed(message(message_id=1))


FULLWIDTH_DIGITS = "".join(chr(0xFF10 + d) for d in range(10))  # str.isdecimal() is true for them
TOO_LARGE = "1" * 5000  # beyond Python's integer-string limit: ValueError, not JSONDecodeError
BAD_ID = "invalid message ID: expected exactly 19 digits within range"
RESERVED = "message_id 0 is reserved; use a positive compatible SimpleBroker message ID"
BAD_DUMPS: list[tuple[list[str], str]] = [
    ([], "invalid dump input: missing header (is this a simplebroker dump?)"),
    (["", "  "], "invalid dump input: missing header (is this a simplebroker dump?)"),
    (["not json"], "invalid dump input at line 1: malformed JSON (Expecting value)"),
    (['{"type": "header"'], "invalid dump input at line 1: malformed JSON (Expecting ',' delimiter)"),
    ([TOO_LARGE], "invalid dump input at line 1: malformed JSON (numeric value is too large)"),
    (["[1, 2]"], "invalid dump input at line 1: record must be a JSON object"),
    (['"header"'], "invalid dump input at line 1: record must be a JSON object"),
    ([message()], "invalid dump input at line 1: first record must be the dump header"),
    (["", "{}"], "invalid dump input at line 2: first record must be the dump header"),
    ([header(format="other")], "invalid dump input at line 1: unrecognized dump format"),
    ([header(format=...)], "invalid dump input at line 1: unrecognized dump format"),
    ([header(version=2)], "invalid dump input at line 1: unsupported dump version 2 (supported: 1)"),
    ([header(version="1")], "invalid dump input at line 1: unsupported dump version '1' (supported: 1)"),
    ([header(version=...)], "invalid dump input at line 1: unsupported dump version None (supported: 1)"),
    ([header(last_ts=...)], "invalid dump input at line 1: header requires 'last_ts'"),
    ([header(last_ts="12")], "invalid dump input at line 1: invalid header last_ts"),
    ([header(last_ts=-1)], "invalid dump input at line 1: invalid header last_ts"),
    ([header(last_ts=2**63)], "invalid dump input at line 1: invalid header last_ts"),
    ([header(last_ts=True)], "invalid dump input at line 1: invalid header last_ts"),
    ([header(last_ts=1.5)], "invalid dump input at line 1: invalid header last_ts"),
    ([header(last_ts=None)], "invalid dump input at line 1: invalid header last_ts"),
    ([header(), "", header()], "invalid dump input at line 3: duplicate header"),
    ([header(), '{"type": "weird"}'], "invalid dump input at line 2: unknown record type 'weird'"),
    ([header(), '{"kind": "message"}'], "invalid dump input at line 2: unknown record type None"),
    ([header(), '{"type": 5}'], "invalid dump input at line 2: unknown record type 5"),
    (
        [header(), alias(target=None)],
        "invalid dump input at line 2: alias record requires string 'alias' and 'target' fields",
    ),
    (
        [header(), alias(name=["w"])],
        "invalid dump input at line 2: alias record requires string 'alias' and 'target' fields",
    ),
    (
        [header(), message(body=7)],
        "invalid dump input at line 2: message record requires string 'queue' and 'body' fields",
    ),
    (
        [header(), message(queue=None)],
        "invalid dump input at line 2: message record requires string 'queue' and 'body' fields",
    ),
    ([header(), message(message_id="123")], f"invalid dump input at line 2: {BAD_ID}"),
    ([header(), message(message_id=None)], f"invalid dump input at line 2: {BAD_ID}"),
    ([header(), message(message_id=-5)], f"invalid dump input at line 2: {BAD_ID}"),
    ([header(), message(message_id=False)], f"invalid dump input at line 2: {BAD_ID}"),
    ([header(), message(message_id="0000000000000000000")], f"invalid dump input at line 2: {RESERVED}"),
    ([header(), message(message_id=0)], f"invalid dump input at line 2: {RESERVED}"),
    ([header(), message(message_id=LAST + 1)], "invalid dump input at line 2: message id exceeds header last_ts"),
]


@pytest.mark.parametrize(("lines", "text"), BAD_DUMPS)
def test_a_bad_dump_is_refused_as_simplebroker_refuses_it(lines: list[str], text: str) -> None:
    with pytest.raises(DumpFormatError) as ours:
        read_all(lines)
    assert str(ours.value) == text
    with pytest.raises(ValueError) as theirs:
        simplebroker_load(lines)
    assert str(theirs.value) == text


@pytest.mark.parametrize(("lines", "text"), BAD_DUMPS)
def test_a_refusal_carries_its_line_number(lines: list[str], text: str) -> None:
    with pytest.raises(DumpFormatError) as caught:
        read_all(lines)
    expected = int(text.split("line ")[1].split(":")[0]) if "at line" in text else 0
    assert caught.value.line == expected
    assert isinstance(caught.value, InvalidInputError) and isinstance(caught.value, ValueError)


def test_dump_format_error_defaults_to_no_line() -> None:
    assert DumpFormatError("x").line == 0
    assert DumpFormatError("x", 7).line == 7


def test_an_id_is_exactly_19_ascii_digits_stricter_than_simplebroker() -> None:
    # SimpleBroker strips spaces and folds non-ASCII digits; an ID only
    # looking like one is refused here (check_message_id's documented choice).
    padded = message(message_id=f" {ID1:019d} ")
    fullwidth = message(message_id=f"{ID1:019d}".translate(str.maketrans("0123456789", FULLWIDTH_DIGITS)))
    for line in (padded, fullwidth):
        r = reader()
        r.feed(header())
        with pytest.raises(DumpFormatError, match=BAD_ID):
            r.feed(line)


def test_lines_must_be_str() -> None:
    r = reader()
    with pytest.raises(InvalidTypeError, match=r"^dump lines must be str, not bytes$"):
        r.feed(header().encode())  # type: ignore[arg-type]


# ----------------------------------------------------------- clock skew
def simplebroker_skew(last_ts: int, *, max_skew_s: int = 300, force: bool = False) -> tuple[list[str], str | None]:
    """SimpleBroker's warnings and refusal for a header, at NOW_NS."""
    said: list[str] = []
    with sb_dump._load_clock_skew_warning_sink(said.append):
        try:
            sb_dump._check_future_skew(
                last_ts, now_ns=NOW_NS, max_future_skew_ns=max_skew_s * SECOND, force=force, line_number=1
            )
        except ValueError as exc:
            return said, str(exc)
    return said, None


def our_skew(last_ts: int, *, max_skew_s: int = 300, force: bool = False) -> tuple[list[str], str | None]:
    r = reader(max_skew=max_skew_s, force=force)
    try:
        r.feed(header(last_ts=last_ts))
    except DumpFormatError as exc:
        return r.warnings, str(exc)
    assert r.last_ts == last_ts
    return r.warnings, None


@pytest.mark.parametrize(
    ("last_ts", "force", "warns", "refused"),
    [
        (NOW_NS - SECOND, False, False, False),  # behind the clock
        (NOW_NS, False, False, False),
        (NOW_NS + 0xFFF, False, False, False),  # counter bits are no skew
        (NOW_NS + 10 * SECOND + 17, False, True, False),
        (NOW_NS + 300 * SECOND, False, True, False),  # at the maximum: allowed
        (NOW_NS + 300 * SECOND + 0x1000, False, True, True),
        (NOW_NS + 300 * SECOND + 0x1000, True, True, False),  # force only lifts the refusal
        (NOW_NS + 86_400 * SECOND + 0xFFE, False, True, True),
    ],
)
def test_clock_skew_is_judged_as_simplebroker_judges_it(last_ts: int, force: bool, warns: bool, refused: bool) -> None:
    ours = our_skew(last_ts, force=force)
    assert ours == simplebroker_skew(last_ts, force=force)
    said, refusal = ours
    assert bool(said) is warns and (refusal is not None) is refused


def test_clock_skew_texts() -> None:
    last_ts = ((NOW_NS + 301 * SECOND) & ~0xFFF) + 5  # 5 of the 4095 counter values used
    said, refusal = our_skew(last_ts)
    assert said == [
        f"dump header last_ts {last_ts:019d} is 301.000 seconds ahead of local wall time; "
        "apparent clock skew leaves at most 4090 broker-global generated IDs before writes wait for wall time "
        "and may raise TimestampError"
    ]
    assert refusal == "invalid dump input at line 1: dump header future skew exceeds configured maximum of 300 seconds"
    assert issubclass(ClockSkewWarning, UserWarning)


@pytest.mark.parametrize(("ahead", "refused"), [(8 * SECOND, False), (8 * SECOND + 0x1000, True)])
def test_clock_skew_exactly_at_the_maximum_is_allowed(ahead: int, refused: bool) -> None:
    # 8 s is a whole number of 4096 ns steps: the header can sit exactly on the limit.
    assert ahead % 0x1000 == 0
    ours = our_skew(NOW_NS + ahead, max_skew_s=8)
    assert ours == simplebroker_skew(NOW_NS + ahead, max_skew_s=8)
    assert len(ours[0]) == 1 and (ours[1] is not None) is refused


def test_clock_skew_maximum_is_configurable() -> None:
    assert our_skew(NOW_NS + 0x1000, max_skew_s=0) == simplebroker_skew(NOW_NS + 0x1000, max_skew_s=0)
    assert our_skew(NOW_NS + 0x1000, max_skew_s=0)[1] is not None
    r = reader(max_skew=0.5)
    with pytest.raises(DumpFormatError, match=r"exceeds configured maximum of 0\.5 seconds$"):
        r.feed(header(last_ts=NOW_NS + SECOND))
    assert len(r.warnings) == 1
    assert r.last_ts is None  # refused: not taken as the header


# ------------------------------------------------------------ dump_page
def test_dump_page_reads_pending_rows_after_the_cursor() -> None:
    assert SQL.DUMP_PAGE == DUMP_PAGE
    rows = [("jobs", "j1", ID1), ("tmp", "x", ID2)]
    result, commands = run_scripted(make_session().dump_page(LAST, ("", 0), 1000), [rows])
    assert result == rows
    assert commands == [Execute(DUMP_PAGE, (LAST, "", "", 0, 1000), Fetch.ALL)]
    result, commands = run_scripted(make_session().dump_page(LAST, ("jobs", ID1), 2), [[]])
    assert result == []
    assert commands == [Execute(DUMP_PAGE, (LAST, "jobs", "jobs", ID1, 2), Fetch.ALL)]


def test_dump_page_hands_out_plain_types() -> None:
    class Text(str):
        pass

    result, _ = run_scripted(make_session().dump_page(LAST, ("", 0), 5), [[(Text("q"), Text("b"), True)]])
    assert result == [("q", "b", 1)]
    assert [type(v) for v in result[0]] == [str, str, int]


def test_dump_page_limit_is_checked() -> None:
    with pytest.raises(InvalidInputError):
        make_session().dump_page(LAST, ("", 0), 0)
    with pytest.raises(InvalidTypeError):
        make_session().dump_page(LAST, ("", 0), True)


# ------------------------------------------------------ insert_messages
def test_insert_messages_inserts_exact_ids_pending_and_raises_last_ts() -> None:
    assert (SQL.INSERT_EXACT, SQL.RAISE_LAST_TS) == (INSERT_EXACT, RAISE_LAST_TS)
    session = make_session()
    records: list[tuple[str, str, int | str]] = [("jobs", "j1", ID2), ("tmp", "x", f"{ID1:019d}")]
    result, commands = run_scripted(session.insert_messages(records), [None, None, None, None])
    assert result == 2
    assert commands == [
        Begin(),
        # later IDs stay above the largest; meta first, as every writer locks it before messages
        Execute(RAISE_LAST_TS, (ID2 + 1, ID2 + 1)),
        ExecuteMany(INSERT_EXACT, [("jobs", "j1", ID2), ("tmp", "x", ID1)]),
        Commit(),
    ]
    assert session.core.mutations == 2
    assert session.take_changes() == frozenset({"jobs", "tmp"})


def test_insert_messages_needs_the_same_last_ts_as_simplebroker() -> None:
    records: list[tuple[str, str, int | str]] = [("a", "x", 5), ("b", "y", "0000000000000000009"), ("a", "z", 7)]
    _, required = normalize_insert_records(records, validate_queue_name=accept, validate_message_size=accept)
    _, commands = run_scripted(make_session().insert_messages(records), [None] * 4)
    assert commands[1] == Execute(RAISE_LAST_TS, (required, required)) == Execute(RAISE_LAST_TS, (10, 10))


def test_insert_messages_of_nothing_runs_an_empty_transaction() -> None:
    result, commands = run_scripted(make_session().insert_messages(iter([])), [None, None])
    assert (result, commands) == (0, [Begin(), Commit()])


def test_insert_messages_sends_growing_chunks() -> None:
    records: list[tuple[str, str, int | str]] = [("q", "m", i) for i in range(1, 1001)]
    result, commands = run_scripted(make_session().insert_messages(records), [None] * 20)
    assert result == 1000
    chunks = [len(c.rows) for c in commands if isinstance(c, ExecuteMany)]
    assert chunks == [25, 50, 100, 200, 400, 225]
    assert commands[1] == Execute(RAISE_LAST_TS, (1001, 1001))


def test_insert_messages_takes_ids_up_to_the_largest_minus_one() -> None:
    top = 2**63 - 2
    _, commands = run_scripted(make_session().insert_messages([("q", "m", top)]), [None] * 4)
    assert commands[1] == Execute(RAISE_LAST_TS, (top + 1, top + 1))
    with pytest.raises(InvalidInputError, match=r"^insert high-water timestamp exceeds the largest message ID$"):
        make_session().insert_messages([("q", "m", 2**63 - 1)])


@pytest.mark.parametrize(
    ("records", "error", "text"),
    [
        ("q", InvalidTypeError, "records must be an iterable of (queue, body, id) tuples"),
        ([("q", "m")], InvalidTypeError, "insert records must be (queue, message, message_id) tuples"),
        (["qmx"], InvalidTypeError, "insert records must be (queue, message, message_id) tuples"),
        ([("q", "m", 1, 2)], InvalidTypeError, "insert records must be (queue, message, message_id) tuples"),
        ([("q", "m", "123")], MessageIdError, "invalid message_id '123'"),
        ([("q", "m", True)], InvalidTypeError, "message_id must be an int or a 19-digit str"),
        ([("q", "m", -1)], MessageIdError, "invalid message_id -1"),
        ([("q", "m", 0)], InvalidInputError, RESERVED),
        ([("q", "a", 5), ("r", "b", "0000000000000000005")], IntegrityError, "duplicate message ID in insert batch"),
        ([("bad name", "m", 1)], QueueNameError, "Invalid queue name 'bad name'"),
        ([("q", b"m", 1)], MessageError, "message body must be a str"),
        ([("q", "x" * 11, 1)], MessageError, "message is 11 bytes in UTF-8; the limit is 10"),
    ],
)
def test_insert_messages_checks_every_record_before_any_statement(
    records: Any, error: type[Exception], text: str
) -> None:
    with pytest.raises(error) as caught:
        make_session(max_message_size=10).insert_messages(records)
    assert str(caught.value).startswith(text)


@pytest.mark.parametrize("records", [[("bad name", "m", 0)], [("q", "a", 5), ("bad name", "b", 5)]])
def test_insert_messages_checks_a_record_in_simplebrokers_order(records: list[tuple[str, str, int | str]]) -> None:
    def validate_queue_name(queue: str) -> None:
        if " " in queue:
            raise ValueError("Invalid queue name")

    with pytest.raises(ValueError, match="Invalid queue name"):
        normalize_insert_records(records, validate_queue_name=validate_queue_name, validate_message_size=accept)
    with pytest.raises(QueueNameError):
        make_session().insert_messages(records)


def test_an_id_already_stored_rolls_the_whole_batch_back() -> None:
    step = Stepper(make_session().insert_messages([("q", "m", ID1)]))
    step.start()
    assert step.send(None) == Execute(RAISE_LAST_TS, (ID1 + 1, ID1 + 1))
    assert step.send(None) == ExecuteMany(INSERT_EXACT, [("q", "m", ID1)])
    # Not the write path's resync-and-retry: an exact ID is the caller's to choose.
    assert step.throw(IntegrityError("UNIQUE constraint failed: messages.ts")) == Rollback()
    with pytest.raises(IntegrityError, match=r"^UNIQUE constraint failed: messages\.ts$"):
        step.send(None)


# -------------------------------------------------------- raise_last_id
@pytest.mark.parametrize("value", [LAST, f"{LAST:019d}"])
def test_raise_last_id_only_ever_raises_meta_last_ts(value: int | str) -> None:
    result, commands = run_scripted(make_session().raise_last_id(value), [None, None, None])
    assert result is None
    assert commands == [Begin(), Execute(RAISE_LAST_TS, (LAST, LAST)), Commit()]


def test_raise_last_id_checks_its_value() -> None:
    with pytest.raises(MessageIdError, match=r"^invalid last_ts '12'"):
        make_session().raise_last_id("12")
    with pytest.raises(InvalidTypeError, match=r"^last_ts must be an int or a 19-digit str, not bool$"):
        make_session().raise_last_id(True)


def test_a_whole_load_in_operations() -> None:
    """What an adapter's load runs for a small dump, in order."""
    lines: Iterator[str] = iter(
        [fmt.header_line(LAST), fmt.message_line("q", "a", ID1), fmt.message_line("q", "b", ID2)]
    )
    records, last_ts = read_all(lines)
    rows: list[tuple[str, str, int | str]] = [
        (r.queue, r.body, r.id) for r in records if isinstance(r, fmt.MessageRecord)
    ]
    _, inserted = run_scripted(make_session().insert_messages(rows), [None] * 4)
    _, raised = run_scripted(make_session().raise_last_id(last_ts), [None] * 3)
    assert inserted[1:3] == [Execute(RAISE_LAST_TS, (ID2 + 1, ID2 + 1)), ExecuteMany(INSERT_EXACT, rows)]
    assert raised[1] == Execute(RAISE_LAST_TS, (LAST, LAST))


def test_dump_header_names_the_engine_and_carries_last_ts() -> None:
    from sansio_broker.driver import BrokerCore
    from sansio_broker.postgres import postgres_dialect

    header, last = run_scripted(make_session().dump_header(), [(LAST,)])[0]
    assert last == LAST
    assert header == fmt.header_line(LAST) and '"backend": "sqlite"' in header
    pg_session = BrokerCore(dialect=postgres_dialect("s")).session()
    header, last = run_scripted(pg_session.dump_header(), [None])[0]  # no meta row yet
    assert (last, header) == (0, fmt.header_line(0, "postgres"))

"""``dump`` and ``load`` on every adapter: SimpleBroker 8.7.2's ``simplebroker-dump``
v1 lines exactly (simplebroker/_dump.py), every load error text with its line
number, clock-skew refusal and ``force``.

The data is inserted with fixed IDs, so every expected line is written out here
literally (key order, separators, escapes and non-ASCII as SimpleBroker's
``json.dumps(..., ensure_ascii=False, sort_keys=True)`` prints them).
"""

from __future__ import annotations

import functools
import re
import time
import warnings
from collections.abc import Callable

import pytest

from sansio_broker import IntegrityError, InvalidInputError, QueueNameError
from sansio_broker.errors import AliasError, ClockSkewWarning, DumpFormatError
from tests.contract.contract_support import QUIET, Facade, MakeBroker, Target, meta, raised_by, rows

BASE = 1_700_000_000_000_000_000 & ~0xFFF  # 2023: IDs in the past


def fixed(k: int) -> int:
    return BASE + k * 4096


TRICKY = 'ünï "q"\ttab\\ \x01 😀\n'


def populate(broker: Facade) -> None:
    """Queues jobs, logs.a, logs.b (claimed only), tmp; aliases w -> jobs, a -> tmp."""
    broker.insert_messages("tmp", [("x", fixed(1))])
    broker.insert_messages("jobs", [(TRICKY, fixed(5)), ("j1", fixed(2))])
    broker.insert_messages("logs.b", [("gone", fixed(3))])
    broker.insert_messages("logs.a", [("l1", fixed(4)), ("l-claimed", fixed(6))])
    assert broker.claim("logs.b") is not None
    assert broker.claim("logs.a", message_id=fixed(6)) is not None
    broker.add_alias("w", "jobs")
    broker.add_alias("a", "tmp")


LAST_TS = fixed(6) + 1
HEADER = (
    f'{{"backend": "sqlite", "format": "simplebroker-dump", "last_ts": "{LAST_TS}", "type": "header", "version": 1}}'
)
ALIAS_A = '{"alias": "a", "target": "tmp", "type": "alias"}'
ALIAS_W = '{"alias": "w", "target": "jobs", "type": "alias"}'
JOBS_1 = f'{{"body": "j1", "id": "{fixed(2)}", "queue": "jobs", "type": "message"}}'
JOBS_2 = rf'{{"body": "ünï \"q\"\ttab\\ \u0001 😀\n", "id": "{fixed(5)}", "queue": "jobs", "type": "message"}}'
LOGS_A = f'{{"body": "l1", "id": "{fixed(4)}", "queue": "logs.a", "type": "message"}}'
TMP = f'{{"body": "x", "id": "{fixed(1)}", "queue": "tmp", "type": "message"}}'
FULL_DUMP = [HEADER, ALIAS_A, ALIAS_W, JOBS_1, JOBS_2, LOGS_A, TMP]


def on(target: Target, lines: list[str]) -> list[str]:
    """The expected lines of a dump of ``target``: its header names its backend (SimpleBroker's
    ``sqlite``, simplebroker-pg's ``postgres``); every other line is the same."""
    return [
        line.replace('"backend": "sqlite"', f'"backend": "{target.backend}"') if '"type": "header"' in line else line
        for line in lines
    ]


# ======================================================================= dump
def test_dump_lines_are_simplebrokers(broker: Facade, target: Target) -> None:
    populate(broker)
    assert int(meta(target)["last_ts"]) == fixed(6) + 1
    assert list(broker.dump()) == on(target, FULL_DUMP)


def test_dump_of_an_empty_broker_is_its_header(broker: Facade, target: Target) -> None:
    last_ts = int(meta(target)["last_ts"])
    (expected,) = on(
        target,
        ['{"backend": "sqlite", "format": "simplebroker-dump", "last_ts": "%019d", "type": "header", "version": 1}'],
    )
    assert list(broker.dump()) == [expected % last_ts]
    written = broker.write("q", "m")
    assert broker.claim("q") is not None
    assert list(broker.dump()) == [expected % written]  # the claimed row is not dumped


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (["logs*"], [], [HEADER, LOGS_A]),
        (["w"], [], [HEADER, ALIAS_W]),  # an alias rides on its own name...
        (["jobs"], [], [HEADER, ALIAS_W, JOBS_1, JOBS_2]),  # ...or on its target
        ([], ["jobs"], [HEADER, ALIAS_A, LOGS_A, TMP]),  # excluded by either name
        ([], ["a"], [HEADER, ALIAS_W, JOBS_1, JOBS_2, LOGS_A, TMP]),
        (["logs*", "tmp"], ["logs.a"], [HEADER, ALIAS_A, TMP]),  # exclude wins
        (["JOBS", "Logs*"], [], [HEADER]),  # case-sensitive
        (["logs.?"], ["logs.b"], [HEADER, LOGS_A]),
        (["*"], ["*"], [HEADER]),
    ],
)
def test_dump_include_and_exclude(
    broker: Facade, target: Target, include: list[str], exclude: list[str], expected: list[str]
) -> None:
    populate(broker)
    assert list(broker.dump(include=include, exclude=exclude)) == on(target, expected)


def test_dump_can_be_abandoned_midway(broker: Facade, target: Target) -> None:
    populate(broker)
    lines = broker.dump()
    assert next(lines) == on(target, [HEADER])[0]
    getattr(lines, "close", lambda: None)()
    del lines
    assert list(broker.dump(include=["tmp"])) == on(target, [HEADER, ALIAS_A, TMP])


def test_writes_during_a_dump_land_and_stay_out_of_it(broker: Facade, target: Target) -> None:
    populate(broker)
    lines = broker.dump()
    got = [next(lines), next(lines)]
    late = broker.write("tmp", "late")  # after the header: beyond its last_ts
    got.extend(lines)
    assert got == on(target, FULL_DUMP)
    assert rows(target, "tmp") == [("tmp", "x", fixed(1), 0), ("tmp", "late", late, 0)]


def test_dump_stops_at_the_headers_last_ts(broker: Facade, target: Target) -> None:
    populate(broker)
    target.insert_row("tmp", "beyond", LAST_TS + 1)  # another program's row beyond meta.last_ts
    assert list(broker.dump()) == on(target, FULL_DUMP)


# ======================================================================= load
def test_load_round_trip(
    broker: Facade, make_broker: MakeBroker, target: Target, make_target: Callable[[], Target]
) -> None:
    populate(broker)
    other_path = make_target()
    other = make_broker(other_path)
    result = other.load(broker.dump())
    assert result == (4, 2)
    assert (result.messages, result.aliases) == (4, 2)
    assert rows(other_path) == [
        ("tmp", "x", fixed(1), 0),
        ("jobs", "j1", fixed(2), 0),
        ("logs.a", "l1", fixed(4), 0),
        ("jobs", TRICKY, fixed(5), 0),
    ]
    assert other.list_aliases() == [("a", "tmp"), ("w", "jobs")]
    assert int(meta(other_path)["last_ts"]) == fixed(6) + 1
    assert list(other.dump()) == on(target, FULL_DUMP)
    assert other.claim("@w") is not None
    assert other.write("new", "n") > fixed(6) + 1


def test_load_accepts_ints_blank_lines_and_extra_keys(broker: Facade, target: Target) -> None:
    lines = [
        "",
        f'  {{"type": "header", "format": "simplebroker-dump", "version": 1, "last_ts": {fixed(9)}, "x": 1}}  ',
        "   ",
        f'{{"type": "message", "queue": "q", "body": "a", "id": {fixed(2)}, "claimed": 1}}',
        f'{{"type": "message", "queue": "q", "body": "b", "id": "{fixed(9)}"}}\n',
        '{"type": "alias", "alias": "w", "target": "q"}',
    ]
    assert broker.load(iter(lines)) == (2, 1)
    assert rows(target) == [("q", "a", fixed(2), 0), ("q", "b", fixed(9), 0)]  # loaded pending
    assert int(meta(target)["last_ts"]) == fixed(9) + 1
    assert broker.resolve_queue("@w") == "q"


def test_load_header_floor_advances_last_ts(broker: Facade, target: Target) -> None:
    header = '{"type": "header", "format": "simplebroker-dump", "version": 1, "last_ts": "%d"}'
    assert broker.load([header % fixed(50)]) == (0, 0)
    assert int(meta(target)["last_ts"]) == fixed(50)
    assert broker.write("q", "m") > fixed(50)
    before = int(meta(target)["last_ts"])
    assert broker.load([header % fixed(10)]) == (0, 0)  # never moves back
    assert int(meta(target)["last_ts"]) == before


H = f'{{"type": "header", "format": "simplebroker-dump", "version": 1, "last_ts": "{fixed(10)}"}}'


def msg(queue: str = "q", body: str = "b", ident: object = None) -> str:
    value = f'"{fixed(3)}"' if ident is None else ident
    return f'{{"type": "message", "queue": "{queue}", "body": "{body}", "id": {value}}}'


LOAD_ERRORS: list[tuple[list[str], str]] = [
    ([], "invalid dump input: missing header (is this a simplebroker dump?)"),
    (["", "  "], "invalid dump input: missing header (is this a simplebroker dump?)"),
    ([msg()], "invalid dump input at line 1: first record must be the dump header"),
    (["not json"], "invalid dump input at line 1: malformed JSON (Expecting value)"),
    (['{"type": "header"'], "invalid dump input at line 1: malformed JSON (Expecting ',' delimiter)"),
    (['{"type": ' + "9" * 5000 + "}"], "invalid dump input at line 1: malformed JSON (numeric value is too large)"),
    (["[1, 2]"], "invalid dump input at line 1: record must be a JSON object"),
    (['"header"'], "invalid dump input at line 1: record must be a JSON object"),
    (
        [f'{{"type": "header", "format": "other", "version": 1, "last_ts": "{fixed(1)}"}}'],
        "invalid dump input at line 1: unrecognized dump format",
    ),
    (
        [f'{{"type": "header", "format": "simplebroker-dump", "version": 2, "last_ts": "{fixed(1)}"}}'],
        "invalid dump input at line 1: unsupported dump version 2 (supported: 1)",
    ),
    (
        [f'{{"type": "header", "format": "simplebroker-dump", "version": "1", "last_ts": "{fixed(1)}"}}'],
        "invalid dump input at line 1: unsupported dump version '1' (supported: 1)",
    ),
    (
        ['{"type": "header", "format": "simplebroker-dump", "version": 1}'],
        "invalid dump input at line 1: header requires 'last_ts'",
    ),
    (
        ['{"type": "header", "format": "simplebroker-dump", "version": 1, "last_ts": "12"}'],
        "invalid dump input at line 1: invalid header last_ts",
    ),
    ([H, H], "invalid dump input at line 2: duplicate header"),
    ([H, "", '{"type": "weird"}'], "invalid dump input at line 3: unknown record type 'weird'"),
    ([H, '{"queue": "q"}'], "invalid dump input at line 2: unknown record type None"),
    ([H, msg(ident=f'"{fixed(11)}"')], "invalid dump input at line 2: message id exceeds header last_ts"),
    (
        [H, msg(ident="0")],
        "invalid dump input at line 2: message_id 0 is reserved; use a positive compatible SimpleBroker message ID",
    ),
    (
        [H, msg(ident='"123"')],
        "invalid dump input at line 2: invalid message ID: expected exactly 19 digits within range",
    ),
    (
        [H, msg(ident="-5")],
        "invalid dump input at line 2: invalid message ID: expected exactly 19 digits within range",
    ),
    (
        [H, f'{{"type": "message", "queue": "q", "id": "{fixed(1)}"}}'],
        "invalid dump input at line 2: message record requires string 'queue' and 'body' fields",
    ),
    (
        [H, f'{{"type": "message", "queue": 5, "body": "b", "id": "{fixed(1)}"}}'],
        "invalid dump input at line 2: message record requires string 'queue' and 'body' fields",
    ),
    (
        [H, '{"type": "alias", "alias": "w"}'],
        "invalid dump input at line 2: alias record requires string 'alias' and 'target' fields",
    ),
]


def test_load_errors_name_the_line(broker: Facade, target: Target) -> None:
    wrong = []
    for lines, text in LOAD_ERRORS:
        exc = raised_by(functools.partial(broker.load, lines))
        if not isinstance(exc, DumpFormatError) or not isinstance(exc, InvalidInputError) or str(exc) != text:
            wrong.append((lines[:3] if len(str(lines)) < 300 else "<long>", text, repr(exc)[:300]))
    assert wrong == []
    assert rows(target) == []
    assert broker.list_aliases() == []
    assert int(meta(target)["last_ts"]) == 0


def test_load_alias_and_name_errors(broker: Facade, target: Target) -> None:
    broker.add_alias("w", "jobs")
    exc = raised_by(lambda: broker.load([H, '{"type": "alias", "alias": "w", "target": "jobs"}']))
    assert isinstance(exc, AliasError), repr(exc)
    assert str(exc) == "Alias 'w' already exists"
    exc = raised_by(lambda: broker.load([H, '{"type": "alias", "alias": "x", "target": "w"}']))
    assert isinstance(exc, AliasError), repr(exc)
    assert str(exc) == "Cannot target another alias"
    exc = raised_by(lambda: broker.load([H, msg(queue="bad name")]))
    assert isinstance(exc, QueueNameError), repr(exc)
    assert broker.list_aliases() == [("w", "jobs")]
    assert rows(target) == []


def test_load_refuses_ids_already_present(broker: Facade, target: Target) -> None:
    broker.insert_messages("q", [("there", fixed(3))])
    exc = raised_by(lambda: broker.load([H, msg(body="dup")]))
    assert isinstance(exc, IntegrityError), repr(exc)
    assert rows(target) == [("q", "there", fixed(3), 0)]
    exc = raised_by(lambda: broker.load([H, msg(ident=f'"{fixed(4)}"'), msg(ident=f'"{fixed(4)}"')]))
    assert isinstance(exc, IntegrityError), repr(exc)
    assert rows(target) == [("q", "there", fixed(3), 0)]


SKEW_TEXT = re.compile(
    r"dump header last_ts (\d{19}) is (\d+\.\d{3}) seconds ahead of local wall time; apparent clock skew "
    r"leaves at most 4095 broker-global generated IDs before writes wait for wall time and may raise TimestampError"
)


def skewed_header(seconds: float) -> tuple[int, str]:
    last_ts = (time.time_ns() + int(seconds * 1e9)) & ~0xFFF
    return last_ts, f'{{"type": "header", "format": "simplebroker-dump", "version": 1, "last_ts": "{last_ts}"}}'


def skew_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ClockSkewWarning)]


def test_load_refuses_a_header_far_ahead_unless_forced(broker: Facade, target: Target) -> None:
    last_ts, header = skewed_header(400)
    line = f'{{"type": "message", "queue": "q", "body": "future", "id": "{last_ts}"}}'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exc = raised_by(lambda: broker.load([header, line]))
    assert isinstance(exc, DumpFormatError), repr(exc)
    assert str(exc) == "invalid dump input at line 1: dump header future skew exceeds configured maximum of 300 seconds"
    (text,) = skew_warnings(caught)
    found = SKEW_TEXT.fullmatch(text)
    assert found is not None, text
    assert int(found[1]) == last_ts
    assert 390 < float(found[2]) <= 400
    assert rows(target) == []

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert broker.load([header, line], force=True) == (1, 0)
    assert len(skew_warnings(caught)) == 1  # force bypasses the refusal, not the warning
    assert rows(target) == [("q", "future", last_ts, 0)]
    assert broker.write("q", "after") > last_ts


def test_load_small_skew_warns_and_loads(broker: Facade, target: Target) -> None:
    _, header = skewed_header(30)
    with pytest.warns(ClockSkewWarning):
        assert broker.load([header]) == (0, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert broker.load([H]) == (0, 0)  # a header in the past: no warning
    assert skew_warnings(caught) == []


def test_load_skew_limit_comes_from_the_config(
    make_broker: MakeBroker, target: Target, make_target: Callable[[], Target]
) -> None:
    broker = make_broker(config={**QUIET, "BROKER_LOAD_MAX_FUTURE_SKEW_SECONDS": "1000"})
    last_ts, header = skewed_header(400)
    with pytest.warns(ClockSkewWarning):
        assert broker.load([header]) == (0, 0)
    assert int(meta(target)["last_ts"]) == last_ts
    strict_target = make_target()
    strict = make_broker(strict_target, config={**QUIET, "BROKER_LOAD_MAX_FUTURE_SKEW_SECONDS": "0"})
    _, header = skewed_header(5)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        exc = raised_by(lambda: strict.load([header]))
    assert str(exc) == "invalid dump input at line 1: dump header future skew exceeds configured maximum of 0 seconds"
    assert rows(strict_target) == []

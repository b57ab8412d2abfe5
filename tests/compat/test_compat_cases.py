"""Interop with SimpleBroker 8.7.2 on one file: writes, reads, peeks, moves, IDs and files, both ways.

Each case runs in both directions where it allows: our blocking adapter
writes and SimpleBroker (library or ``broker`` CLI) reads, and the reverse.
Every test ends with :func:`assert_file_healthy` (integrity_check, last_ts >=
MAX(ts), canonical v6 shape, WAL).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest
import simplebroker

from sansio_broker import Message, MessageIdError
from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import (
    BROKER_CLI,
    SUBPROCESS_TIMEOUT,
    V6_MASTER,
    assert_file_healthy,
    claimed_flags,
    master,
    normalize_sql,
    parse_t,
    proof_keys,
    sb,
    sb_json,
    sb_stats,
    schema_cookie,
    table_info,
)
from tests.support.contract import V6_TABLE_INFO
from tests.support.rawdb import meta, query, rows
from tests.support.workers import clean_env

OpenOurs = Callable[[], Broker]
OpenSB = Callable[[str], simplebroker.Queue]


def sb_write(db: Path, queue: str, body: str) -> int:
    """``broker write <q> <body> -t``: the new message's ID."""
    return int(sb(db, "write", queue, body, "-t").stdout.strip())


# --------------------------------------------------------------------- case 1
def test_case1_ours_writes_sb_cli_peeks(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = [ours.write("q", f"m{i}") for i in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    shape_before = table_info(db)
    assert meta(db)["schema_version"] == 6
    assert proof_keys(db) == {}, "we must never write schema_proof_* ourselves"

    listed = parse_t(sb(db, "peek", "q", "--all", "-t").stdout)

    assert listed == list(zip(ids, ["m0", "m1", "m2"], strict=True))
    assert meta(db)["schema_version"] == 6
    assert proof_keys(db)["schema_proof_version"] == 1
    assert proof_keys(db)["schema_proof_cookie"] == schema_cookie(db)
    assert table_info(db) == shape_before == V6_TABLE_INFO
    assert_file_healthy(db)


def test_case1_sb_cli_writes_ours_peeks(db: Path, open_ours: OpenOurs) -> None:
    ids = [sb_write(db, "q", f"m{i}") for i in range(3)]
    assert ids == sorted(ids) and len(set(ids)) == 3

    ours = open_ours()
    assert ours.peek_many("q", 10) == [Message(f"m{i}", ids[i]) for i in range(3)]
    assert list(ours.stream("q", peek=True)) == [Message(f"m{i}", ids[i]) for i in range(3)]
    assert_file_healthy(db)


# --------------------------------------------------------------------- case 2
def test_case2_fresh_file_matches_contract_ddl(db: Path, open_ours: OpenOurs) -> None:
    open_ours()
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    assert query(db, "PRAGMA auto_vacuum") == [(2,)]
    assert query(db, "PRAGMA page_size") == [(4096,)]
    expected = [(kind, name, normalize_sql(sql)) for kind, name, sql in V6_MASTER]
    assert master(db) == expected
    info = meta(db)
    assert info == {"last_ts": 0, "alias_version": 0, "magic": "simplebroker-v1", "schema_version": 6}
    assert_file_healthy(db)


def test_case2_fresh_file_matches_a_simplebroker_file(tmp_path: Path, db: Path, open_ours: OpenOurs) -> None:
    open_ours()
    theirs = tmp_path / "theirs.db"
    with simplebroker.open_broker(str(theirs)):
        pass
    assert master(db) == master(theirs)
    for pragma in ("journal_mode", "auto_vacuum", "page_size", "encoding"):
        assert query(db, f"PRAGMA {pragma}") == query(theirs, f"PRAGMA {pragma}"), pragma
    ours_meta = meta(db)
    theirs_meta = {k: v for k, v in meta(theirs).items() if not k.startswith("schema_proof")}
    assert ours_meta == theirs_meta
    assert_file_healthy(db)
    assert_file_healthy(theirs)


def test_sb_opening_our_file_changes_no_schema(db: Path, open_ours: OpenOurs) -> None:
    """SimpleBroker only adds its proof rows: no DDL, same table_info, still v6."""
    ours = open_ours()
    ours.write("q", "x")
    before = master(db)
    cookie = schema_cookie(db)

    sb(db, "list")
    with simplebroker.Queue("q", db_path=str(db), persistent=True) as q:
        assert q.peek() == "x"

    assert master(db) == before
    assert schema_cookie(db) == cookie
    assert table_info(db) == V6_TABLE_INFO
    assert meta(db)["schema_version"] == 6
    assert proof_keys(db) == {"schema_proof_version": 1, "schema_proof_cookie": cookie}
    assert_file_healthy(db)


def test_we_never_write_schema_proof(db: Path, open_ours: OpenOurs) -> None:
    """Every kind of mutation of ours leaves schema_proof_* alone (absent, then untouched)."""

    def exercise(broker: Broker) -> None:
        broker.write("q", "a")
        broker.write_many("q", ["b", "c", "d"])
        broker.broadcast("all")
        broker.claim("q")
        broker.claim_many("q", 2)
        broker.move("q", "other")
        with broker.transaction():
            broker.claim("q")
            broker.write("done", "x")
        broker.vacuum()
        broker.delete_messages("other", [1])
        broker.delete("done")

    ours = open_ours()
    exercise(ours)
    assert proof_keys(db) == {}

    sb(db, "list")
    proof = proof_keys(db)
    assert proof["schema_proof_version"] == 1
    assert proof["schema_proof_cookie"] == schema_cookie(db)

    exercise(ours)
    again = open_ours()
    exercise(again)
    assert proof_keys(db) == proof
    assert proof["schema_proof_cookie"] == schema_cookie(db), "our operations changed the schema cookie"
    assert_file_healthy(db)


def test_ours_opening_sb_file_changes_nothing(db: Path, open_ours: OpenOurs) -> None:
    sb_write(db, "q", "x")
    before, cookie, proof = master(db), schema_cookie(db), proof_keys(db)
    ours = open_ours()
    assert ours.peek("q") is not None
    assert (master(db), schema_cookie(db), proof_keys(db)) == (before, cookie, proof)
    assert_file_healthy(db)


# --------------------------------------------------------------------- case 3
def test_case3_sb_writes_ours_claims(db: Path, open_ours: OpenOurs) -> None:
    ident = sb_write(db, "q", "x")
    ours = open_ours()

    assert ours.claim("q") == Message("x", ident)

    assert rows(db) == [("q", "x", ident, 1)]
    assert sb_stats(db, "q") == (0, 1, 1)
    assert ours.claim("q") is None
    sb(db, "read", "q", expect=2)
    assert_file_healthy(db)


def test_case3_ours_writes_sb_claims(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ident = ours.write("q", "x")

    assert parse_t(sb(db, "read", "q", "-t").stdout) == [(ident, "x")]

    assert rows(db) == [("q", "x", ident, 1)]
    stats = ours.queue_stats("q")
    assert (stats.pending, stats.claimed, stats.total) == (0, 1, 1)
    assert ours.claim("q") is None
    assert_file_healthy(db)


# --------------------------------------------------------------------- case 4
@pytest.mark.parametrize("reader", ["sb-cli", "ours"])
def test_case4_alternating_writers(db: Path, open_ours: OpenOurs, open_sb: OpenSB, reader: str) -> None:
    ours = open_ours()
    theirs = open_sb("q")
    written: list[tuple[int, str]] = []
    for i in range(10):
        written.append((ours.write("q", f"ours-{i}"), f"ours-{i}"))
        written.append((theirs.write(f"sb-{i}"), f"sb-{i}"))
    ids = [ident for ident, _ in written]
    assert all(a < b for a, b in pairwise(ids)), "IDs must increase in write order"

    if reader == "sb-cli":
        got = parse_t(sb(db, "read", "q", "--all", "-t").stdout)
    else:
        got = [(m.id, m.body) for m in ours.claim_all("q")]

    assert got == written
    assert meta(db)["last_ts"] == max(ids) == query(db, "SELECT MAX(ts) FROM messages")[0][0]
    assert sb_stats(db, "q") == (0, 20, 20)
    assert_file_healthy(db)


def test_case4_alternating_batches(db: Path, open_ours: OpenOurs, open_sb: OpenSB) -> None:
    """Our write_many allocates a block of IDs; SimpleBroker must continue after it."""
    ours = open_ours()
    theirs = open_sb("q")
    written: list[tuple[int, str]] = []
    for i in range(5):
        bodies = [f"ours-{i}-{j}" for j in range(3)]
        written.extend(zip(ours.write_many("q", bodies), bodies, strict=True))
        written.append((theirs.write(f"sb-{i}"), f"sb-{i}"))
    ids = [ident for ident, _ in written]
    assert all(a < b for a, b in pairwise(ids))
    assert [(m.id, m.body) for m in ours.peek_many("q", 100)] == written
    assert [(ts, body) for body, ts in theirs.peek_many(100, with_timestamps=True)] == written
    assert meta(db)["last_ts"] == max(ids)
    assert_file_healthy(db)


# --------------------------------------------------------------------- case 8
def test_case8_ours_peeks_never_claim(db: Path, open_ours: OpenOurs, open_sb: OpenSB) -> None:
    theirs = open_sb("q")
    ids = [theirs.write(f"m{i}") for i in range(3)]
    assert theirs.read() == "m0"
    stats_before, flags_before = sb_stats(db, "q"), claimed_flags(db)
    assert stats_before == (2, 1, 3)

    ours = open_ours()
    assert ours.peek("q") == Message("m1", ids[1])
    assert ours.peek_many("q", 10) == [Message("m1", ids[1]), Message("m2", ids[2])]
    everything = [Message(f"m{i}", ids[i]) for i in range(3)]
    assert ours.peek_many("q", 10, include_claimed=True) == everything
    assert list(ours.stream("q", peek=True, include_claimed=True)) == everything
    assert list(ours.stream("q", peek=True)) == everything[1:]
    assert ours.peek("q", message_id=ids[0]) is None
    assert ours.peek("q", message_id=ids[0], include_claimed=True) == everything[0]

    assert sb_stats(db, "q") == stats_before
    assert claimed_flags(db) == flags_before
    assert_file_healthy(db)


def test_case8_sb_peeks_never_claim(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("q", ["m0", "m1", "m2"])
    assert ours.claim("q") == Message("m0", ids[0])
    flags_before = claimed_flags(db)

    assert parse_t(sb(db, "peek", "q", "-t").stdout) == [(ids[1], "m1")]
    assert parse_t(sb(db, "peek", "q", "--all", "--include-claimed", "-t").stdout) == [
        (ids[i], f"m{i}") for i in range(3)
    ]
    with simplebroker.Queue("q", db_path=str(db), persistent=True) as q:
        assert q.peek_many(10, include_claimed=True) == ["m0", "m1", "m2"]

    assert claimed_flags(db) == flags_before
    stats = ours.queue_stats("q")
    assert (stats.pending, stats.claimed, stats.total) == (2, 1, 3)
    assert_file_healthy(db)


# --------------------------------------------------------------------- case 9
def test_case9_ours_claims_by_id(db: Path, open_ours: OpenOurs) -> None:
    sb_write(db, "q", "first")
    ident = sb_write(db, "q", "x")
    ours = open_ours()

    assert ours.claim("q", message_id=ident) == Message("x", ident)

    assert sb(db, "read", "q", "-m", str(ident), expect=2).stdout == ""
    assert sb(db, "peek", "q", "-m", str(ident), "--include-claimed").stdout.strip() == "x"
    assert sb(db, "peek", "q", "-t").stdout.strip().endswith("\tfirst")
    assert sb_stats(db, "q") == (1, 1, 2)
    assert_file_healthy(db)


def test_case9_sb_claims_by_id(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ours.write("q", "first")
    ident = ours.write("q", "x")

    assert sb(db, "read", "q", "-m", f"{ident:019d}").stdout.strip() == "x"

    assert ours.claim("q", message_id=ident) is None
    assert ours.claim("q", message_id=f"{ident:019d}") is None
    assert ours.peek("q", message_id=ident) is None
    assert ours.peek("q", message_id=ident, include_claimed=True) == Message("x", ident)
    stats = ours.queue_stats("q")
    assert (stats.pending, stats.total) == (1, 2)
    assert_file_healthy(db)


# -------------------------------------------------------------------- case 10
def test_case10_ours_moves_sb_sees(db: Path, open_ours: OpenOurs) -> None:
    ids = [sb_write(db, "q", body) for body in ("a", "b")]
    ours = open_ours()

    assert ours.move("q", "d") == Message("a", ids[0])

    assert parse_t(sb(db, "peek", "d", "-t").stdout) == [(ids[0], "a")]
    assert parse_t(sb(db, "peek", "q", "--all", "-t").stdout) == [(ids[1], "b")]
    assert rows(db, "d") == [("d", "a", ids[0], 0)]
    assert sb_stats(db, "d") == (1, 0, 1)
    assert_file_healthy(db)


def test_case10_sb_moves_ours_sees(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    ids = ours.write_many("q", ["a", "b"])

    assert parse_t(sb(db, "move", "q", "d", "-t").stdout) == [(ids[0], "a")]

    assert ours.peek("d") == Message("a", ids[0])
    assert ours.peek_many("q", 10) == [Message("b", ids[1])]
    assert rows(db, "d") == [("d", "a", ids[0], 0)]
    assert ours.claim("d") == Message("a", ids[0])
    assert_file_healthy(db)


# -------------------------------------------------------------------- case 11
def test_case11_ours_moves_claimed_by_id_keeps_claimed(db: Path, open_ours: OpenOurs) -> None:
    """We document SimpleBroker 8 semantics: a claimed row moved by ID stays claimed."""
    id_a = sb_write(db, "q", "a")
    id_b = sb_write(db, "q", "b")
    assert sb(db, "read", "q").stdout.strip() == "a"
    ours = open_ours()

    assert ours.move("q", "dest", message_id=id_a, require_unclaimed=True) is None
    assert ours.move("q", "dest", message_id=id_a, require_unclaimed=False) == Message("a", id_a)

    assert rows(db, "dest") == [("dest", "a", id_a, 1)]
    assert sb_stats(db, "dest") == (0, 1, 1)
    assert sb_stats(db, "q") == (1, 0, 1)
    assert ours.claim("dest") is None
    assert ours.peek("q") == Message("b", id_b)
    assert_file_healthy(db)


def test_case11_default_move_by_id_includes_claimed(db: Path, open_ours: OpenOurs) -> None:
    """Like ``Queue.move(message_id=...)`` and ``broker move -m``, by ID moves claimed rows too."""
    id_a = sb_write(db, "q", "a")
    sb(db, "read", "q")
    ours = open_ours()
    assert ours.move("q", "dest", message_id=id_a) == Message("a", id_a)
    assert rows(db, "dest") == [("dest", "a", id_a, 1)]
    assert_file_healthy(db)


def test_case11_sb_moves_our_claimed_by_id(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    id_a, id_b = ours.write_many("q", ["a", "b"])
    assert ours.claim("q") == Message("a", id_a)

    moved = sb_json(db, "move", "q", "dest", "-m", f"{id_a:019d}", "--json")

    assert moved == {"message": "a", "timestamp": f"{id_a:019d}"}
    assert rows(db, "dest") == [("dest", "a", id_a, 1)]
    stats = ours.queue_stats("dest")
    assert (stats.pending, stats.claimed, stats.total) == (0, 1, 1)
    assert ours.claim("dest") is None
    assert ours.peek("q") == Message("b", id_b)
    assert_file_healthy(db)


# -------------------------------------------------------------------- case 12
def test_case12_strict_bounds_ours_writes(db: Path, open_ours: OpenOurs) -> None:
    ours = open_ours()
    i0, i1, i2 = ours.write_many("q", ["a", "b", "c"])

    assert parse_t(sb(db, "peek", "q", "--all", "--after", str(i0), "-t").stdout) == [(i1, "b"), (i2, "c")]
    assert parse_t(sb(db, "peek", "q", "--all", "--before", str(i2), "-t").stdout) == [(i0, "a"), (i1, "b")]
    assert parse_t(sb(db, "peek", "q", "--all", "--after", str(i0), "--before", str(i2), "-t").stdout) == [(i1, "b")]
    sb(db, "peek", "q", "--after", str(i2), expect=2)

    assert ours.peek_many("q", 10, after_timestamp=i0, before_timestamp=i2) == [Message("b", i1)]
    assert ours.peek("q", after_timestamp=i0) == Message("b", i1)
    assert ours.peek("q", before_timestamp=i0) is None
    assert ours.peek("q", after_timestamp=i2) is None
    assert list(ours.stream("q", peek=True, after_timestamp=i0)) == [Message("b", i1), Message("c", i2)]
    assert ours.claim_many("q", 10, after_timestamp=i0, before_timestamp=i2) == [Message("b", i1)]
    assert_file_healthy(db)


def test_case12_strict_bounds_sb_writes(db: Path, open_ours: OpenOurs, open_sb: OpenSB) -> None:
    theirs = open_sb("q")
    i0, i1, i2 = (theirs.write(body) for body in ("a", "b", "c"))
    ours = open_ours()

    assert ours.peek_many("q", 10, after_timestamp=i0, before_timestamp=i2) == [Message("b", i1)]
    assert ours.peek_many("q", 10, after_timestamp=i0) == [Message("b", i1), Message("c", i2)]
    assert theirs.peek_many(10, after_timestamp=i0, before_timestamp=i2, with_timestamps=True) == [("b", i1)]
    assert ours.claim("q", after_timestamp=i0, before_timestamp=i2) == Message("b", i1)
    assert ours.move_many("q", "d", 10, after_timestamp=i0) == [Message("c", i2)]
    assert theirs.peek_many(10, with_timestamps=True) == [("a", i0)]
    assert_file_healthy(db)


@pytest.mark.parametrize(
    "bound",
    [True, False, -1, 2**63, 2**63 + 5, "1837025672140161024", 1.5],
    ids=["true", "false", "negative", "2**63", "above-2**63", "str", "float"],
)
def test_case12_bound_validation_matches_sb(db: Path, open_ours: OpenOurs, open_sb: OpenSB, bound: object) -> None:
    """Python-API bounds are int-only in both; the same inputs are refused as the same kind of error."""
    theirs = open_sb("q")
    theirs.write("x")
    ours = open_ours()
    with pytest.raises((TypeError, ValueError)) as sb_error:
        theirs.peek_many(10, after_timestamp=bound)  # type: ignore[arg-type]
    expected = TypeError if isinstance(sb_error.value, TypeError) else ValueError
    with pytest.raises(expected):
        ours.peek_many("q", 10, after_timestamp=bound)  # type: ignore[arg-type]
    with pytest.raises(expected):
        ours.claim("q", before_timestamp=bound)  # type: ignore[arg-type]
    assert sb_stats(db, "q") == (1, 0, 1)
    assert_file_healthy(db)


@pytest.mark.parametrize(
    "form",
    ["int", "19-digit", "padded", "unicode-digits"],
)
def test_case12_exact_id_forms_match_sb(db: Path, open_ours: OpenOurs, open_sb: OpenSB, form: str) -> None:
    """Exact IDs: the same spellings select the same message in both."""
    theirs = open_sb("q")
    ident = theirs.write("x")
    text = f"{ident:019d}"
    spelled: int | str = {
        "int": ident,
        "19-digit": text,
        "padded": f"  {text}\n",
        "unicode-digits": text.translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")),
    }[form]
    ours = open_ours()
    assert theirs.peek(message_id=spelled, with_timestamps=True) == ("x", ident)
    if form in ("padded", "unicode-digits"):
        # Deliberately stricter (issue 9, item 10): only 19 ASCII digits spell an ID here.
        with pytest.raises(MessageIdError):
            ours.peek("q", message_id=spelled)
    else:
        assert ours.peek("q", message_id=spelled) == Message("x", ident)
    assert_file_healthy(db)


@pytest.mark.parametrize(
    "spelled",
    [True, -1, 2**63, "123", "0" * 20, "\uff11" * 19, "9" * 19, "+" + "1" * 18, 1.0],
    ids=["bool", "negative", "2**63", "short", "20-digits", "fullwidth-19", "19-nines", "signed", "float"],
)
def test_case12_bad_exact_ids_refused_like_sb(db: Path, open_ours: OpenOurs, open_sb: OpenSB, spelled: object) -> None:
    theirs = open_sb("q")
    theirs.write("x")
    ours = open_ours()
    try:
        sb_result: object = theirs.peek(message_id=spelled)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        expected: type[Exception] = TypeError if isinstance(exc, TypeError) else ValueError
        with pytest.raises(expected):
            ours.peek("q", message_id=spelled)  # type: ignore[arg-type]
        with pytest.raises(expected):
            ours.claim("q", message_id=spelled)  # type: ignore[arg-type]
    else:
        assert sb_result is None
        if isinstance(spelled, str) and not spelled.isascii():
            # SimpleBroker folds the digits; we refuse them (issue 9, item 10).
            with pytest.raises(MessageIdError):
                ours.peek("q", message_id=spelled)
        else:
            assert ours.peek("q", message_id=spelled) is None  # type: ignore[arg-type]
    assert sb_stats(db, "q") == (1, 0, 1)
    assert_file_healthy(db)


def test_empty_file_is_created_as_v6_by_us_and_accepted_by_sb(db: Path, open_ours: OpenOurs) -> None:
    """A zero-byte file counts as no database: we create v6 there, as SimpleBroker does."""
    db.touch()
    ours = open_ours()
    ident = ours.write("q", "x")
    assert query(db, "PRAGMA auto_vacuum") == [(2,)]
    assert master(db) == [(kind, name, normalize_sql(sql)) for kind, name, sql in V6_MASTER]
    assert parse_t(sb(db, "read", "q", "-t").stdout) == [(ident, "x")]
    assert_file_healthy(db)


def test_sb_creates_from_empty_file_and_we_use_it(db: Path, open_ours: OpenOurs) -> None:
    db.touch()
    ident = sb_write(db, "q", "x")
    ours = open_ours()
    assert ours.claim("q") == Message("x", ident)
    assert_file_healthy(db)


# Verified against SimpleBroker 8: CLI bound strings and the integers they mean.
# (Its native-ID example 1837025672140161024 lies in 2028: a file holding it has a last_ts far
# enough ahead that we refuse the file as the pre-2.1 ID layout: more than 2**40 ns ahead of the clock.)
BOUND_VECTORS = {
    "2024-01-15": 1705276800000000000,
    "2024-01-15T14:30:00+02:00": 1705321800000000000,
    "20240115": 1705276800000000000,
    "1705329000": 1705329000000000000,
    "1705329000s": 1705329000000000000,
    "1705329000000": 1705329000000000000,
    "1705329000000ms": 1705329000000000000,
    "1705329000000004097": 1705329000000004097,  # a native ID (>= 2**44): taken as is, not masked
    "1950-01-01": 0,
}


def test_case12_cli_bound_vectors_mean_the_same_integers_to_us(db: Path, open_ours: OpenOurs) -> None:
    """We take bounds as integers only; SimpleBroker's CLI strings must select what those integers select."""
    around = sorted({v + d for v in BOUND_VECTORS.values() for d in (-1, 0, 1) if v + d > 0})
    with simplebroker.open_broker(str(db)) as broker:
        broker.insert_messages([("q", f"at-{ident}", ident) for ident in around])
    ours = open_ours()
    for text, value in BOUND_VECTORS.items():
        for option, key in (("--after", "after_timestamp"), ("--before", "before_timestamp")):
            theirs = parse_t(sb(db, "peek", "q", "--all", option, text, "-t", expect=None).stdout)
            mine = list(ours.stream("q", peek=True, **{key: value}))
            assert theirs == [(m.id, m.body) for m in mine], f"{option} {text!r} vs {key}={value}"
    assert_file_healthy(db)


def test_default_file_name_is_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no path given, both programs use ``.broker.db`` in the working directory."""
    monkeypatch.chdir(tmp_path)
    with Broker(config={}) as ours:
        ident = ours.write("q", "x")
    proc = subprocess.run(
        [*BROKER_CLI, "peek", "q", "-t"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert (proc.returncode, parse_t(proc.stdout)) == (0, [(ident, "x")]), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".broker.db"))[0] == ".broker.db"
    assert_file_healthy(tmp_path / ".broker.db")

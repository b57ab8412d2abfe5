"""The issue-12 API against the real ``simplebroker`` 8.7.2 on one file: aliases
(and SimpleBroker's alias cache following our ``alias_version`` bumps), rename,
keep_newest, dump/load byte for byte, body search, has_pending, exact-ID inserts,
status."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import simplebroker
from simplebroker.ext import IntegrityError as SBIntegrityError

from sansio_broker import IntegrityError, Message
from sansio_broker.adapters.blocking import Broker
from tests.compat.compat_helpers import BROKER_CLI, SUBPROCESS_TIMEOUT, assert_file_healthy
from tests.compat.conftest import OUR_CONFIG
from tests.support.rawdb import meta, query, rows
from tests.support.workers import clean_env

OpenOurs = Callable[[], Broker]
OpenSBBroker = Callable[..., Any]

BASE = 1_700_000_000_000_000_000 & ~0xFFF  # 2023: IDs in the past


def fixed(k: int) -> int:
    return BASE + k * 4096


@pytest.fixture
def open_sb_broker(db: Path) -> Iterator[OpenSBBroker]:
    """``open_sb_broker(path=db)``: a SimpleBroker ``BrokerConnection`` (its own alias cache), kept open."""
    with ExitStack() as stack:

        def factory(path: Path = db) -> Any:
            return stack.enter_context(simplebroker.open_broker(str(path)))

        yield factory


def sb_dump_bytes(path: Path, *args: str) -> bytes:
    """``broker -f <path> dump <args>`` stdout as bytes (no locale decoding)."""
    proc = subprocess.run(
        [*BROKER_CLI, "-f", str(path), "dump", *args],
        capture_output=True,
        env=clean_env(),
        cwd=path.parent,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def content(path: Path) -> list[tuple[str, str, int]]:
    """``(queue, body, claimed)`` per row in ID order: what two runs of one script share."""
    return [(q, body, claimed) for q, body, _, claimed in rows(path)]


# ==================================================================== aliases
def test_aliases_resolve_across_both(db: Path, open_ours: OpenOurs, open_sb_broker: OpenSBBroker) -> None:
    ours = open_ours()
    theirs = open_sb_broker()
    theirs.add_alias("w", "tasks")
    assert ours.list_aliases() == [("w", "tasks")]
    assert ours.resolve_queue("@w") == "tasks"
    ident = ours.write("@w", "via-ours")
    assert simplebroker.Queue("tasks", db_path=str(db)).peek_one(with_timestamps=True) == ("via-ours", ident)

    ours.add_alias("v", "jobs")
    assert theirs.canonicalize_queue("@v") == "jobs"
    assert theirs.list_aliases() == ours.list_aliases() == [("v", "jobs"), ("w", "tasks")]
    sb_id = theirs.write(theirs.canonicalize_queue("@v"), "via-sb")
    assert ours.claim("@v") == Message("via-sb", sb_id)
    # SimpleBroker enforces its rules on aliases we made, and we on its.
    with pytest.raises(ValueError, match="Cannot target another alias"):
        theirs.add_alias("x", "v")
    with pytest.raises(ValueError, match="Cannot turn an existing alias target into an alias"):
        ours.add_alias("tasks", "other")
    assert_file_healthy(db)


def test_sb_alias_cache_follows_our_bumps(db: Path, open_ours: OpenOurs, open_sb_broker: OpenSBBroker) -> None:
    ours = open_ours()
    theirs = open_sb_broker()
    theirs.add_alias("w", "tasks")
    assert theirs.canonicalize_queue("@w") == "tasks"  # now cached by its alias_version

    ours.remove_alias("w")
    ours.add_alias("w", "other")
    assert theirs.canonicalize_queue("@w") == "other"
    ours.remove_alias("w")
    with pytest.raises(ValueError, match="Alias 'w' is not defined"):
        theirs.canonicalize_queue("@w")

    ours.add_alias("w", "jobs")
    ours.write("jobs", "j")
    assert theirs.canonicalize_queue("@w") == "jobs"
    assert ours.rename_queue("jobs", "work") == ("jobs", "work", 1, 1, True)
    assert theirs.canonicalize_queue("@w") == "work"
    assert theirs.get_alias_version() == meta(db)["alias_version"]


def test_our_alias_view_follows_sb_changes(db: Path, open_ours: OpenOurs, open_sb_broker: OpenSBBroker) -> None:
    ours = open_ours()
    theirs = open_sb_broker()
    theirs.add_alias("w", "a")
    assert ours.resolve_queue("@w") == "a"
    theirs.remove_alias("w")
    theirs.add_alias("w", "b")
    assert ours.resolve_queue("@w") == "b"
    ours.write("@w", "m")
    assert rows(db)[0][:2] == ("b", "m")
    theirs.remove_alias("w")
    with pytest.raises(ValueError, match="Alias 'w' is not defined"):
        ours.write("@w", "m2")


# ===================================================================== rename
def test_rename_seen_by_the_other(db: Path, open_ours: OpenOurs, open_sb_broker: OpenSBBroker) -> None:
    ours = open_ours()
    theirs = open_sb_broker()
    ids = ours.write_many("tasks", ["a", "b", "c"])
    ours.claim("tasks")
    theirs.add_alias("w", "tasks")
    assert theirs.canonicalize_queue("@w") == "tasks"

    assert ours.rename_queue("tasks", "jobs") == ("tasks", "jobs", 3, 1, True)
    assert theirs.canonicalize_queue("@w") == "jobs"
    sbq = simplebroker.Queue("jobs", db_path=str(db))
    assert sbq.peek_many(10, with_timestamps=True) == [("b", ids[1]), ("c", ids[2])]
    assert sbq.stats().claimed == 1

    result = theirs.rename_queue("jobs", "done")
    assert (result.messages_renamed, result.aliases_retargeted, result.renamed) == (3, 1, True)
    assert ours.resolve_queue("@w") == "done"
    assert ours.claim("@w") == Message("b", ids[1])
    assert ours.rename_queue("jobs", "zz") == ("jobs", "zz", 0, 0, False)
    assert_file_healthy(db)


# ================================================================ keep_newest
KEEP_SCRIPT: list[tuple[str, str, int | None]] = [
    ("write", "q", None),
    ("write", "q", None),
    ("write", "q", None),
    ("write", "r", None),
    ("write", "q", 2),
    ("claim_newest", "q", None),
    ("write", "q", None),
    ("write", "q", 2),
    ("write", "q", None),
    ("write", "q", None),
    ("write", "q", 9999),
    ("write", "r", 1),
    ("write", "q", 3),
    ("write", "q", 1),
    ("write", "q", None),
]


def run_keep_script(writers: list[Callable[[str, str, int | None], object]], claim: Callable[[str], object]) -> None:
    for n, (op, queue, keep) in enumerate(KEEP_SCRIPT):
        if op == "claim_newest":
            claim(queue)
        else:
            writers[n % len(writers)](queue, f"m{n}", keep)


def test_keep_newest_leaves_the_rows_simplebroker_leaves(tmp_path: Path) -> None:
    sb_only, ours_only, mixed = tmp_path / "sb.db", tmp_path / "ours.db", tmp_path / "mixed.db"
    with ExitStack() as stack:
        sbq = {
            path: {q: stack.enter_context(simplebroker.Queue(q, db_path=str(path), persistent=True)) for q in "qr"}
            for path in (sb_only, mixed)
        }
        ours = {path: stack.enter_context(Broker(path, config=OUR_CONFIG)) for path in (ours_only, mixed)}

        def sb_writer(path: Path) -> Callable[[str, str, int | None], object]:
            return lambda q, body, keep: sbq[path][q].write(body, keep_newest=keep)

        def our_writer(path: Path) -> Callable[[str, str, int | None], object]:
            return lambda q, body, keep: ours[path].write(q, body, keep_newest=keep)

        run_keep_script([sb_writer(sb_only)], lambda q: sbq[sb_only][q].read_one(order="newest"))
        run_keep_script([our_writer(ours_only)], lambda q: ours[ours_only].claim(q, order="newest"))
        run_keep_script([our_writer(mixed), sb_writer(mixed)], lambda q: sbq[mixed][q].read_one(order="newest"))
    expected = content(sb_only)
    assert [c for _, _, c in expected].count(1) > 5  # the script does claim
    assert content(ours_only) == expected
    assert content(mixed) == expected


# ================================================================== dump/load
def build_shared_state(db: Path, ours: Broker, theirs: Any) -> None:
    """Rows and aliases from both programs, claims, tricky bodies."""
    sbq = simplebroker.Queue("jobs", db_path=str(db))
    sbq.write("sb-1")
    ours.write("jobs", 'ünï "q"\ttab\\ \x01 😀 \u2028 end\n')
    ours.write_many("logs.a", ["l1", "l2"])
    sbq.write("sb-2")
    ours.write("logs.b", "only claimed")
    ours.claim("logs.b")
    simplebroker.Queue("logs.a", db_path=str(db)).read_one()
    ours.insert_messages("old", [("ancient", fixed(1))])
    theirs.add_alias("w", "jobs")
    ours.add_alias("a", "tmp")
    ours.write("tmp", "")


FILTERS: list[tuple[list[str], list[str]]] = [
    ([], []),
    (["logs*"], []),
    (["w"], []),
    ([], ["jobs"]),
    (["logs*", "tmp"], ["logs.a"]),
    (["nothing"], []),
]


def test_our_dump_is_simplebrokers_byte_for_byte(db: Path, open_ours: OpenOurs, open_sb_broker: OpenSBBroker) -> None:
    ours = open_ours()
    theirs = open_sb_broker()
    build_shared_state(db, ours, theirs)
    for include, exclude in FILTERS:
        mine = list(ours.dump(include=include, exclude=exclude))
        assert mine == list(simplebroker.dump_lines(theirs, include=include, exclude=exclude)), (include, exclude)
    cli = sb_dump_bytes(db)
    assert "".join(f"{line}\n" for line in ours.dump()).encode("utf-8") == cli
    assert len(cli.splitlines()) == 9  # header, 2 aliases, 6 pending messages


def test_each_loads_the_others_dump(
    tmp_path: Path, db: Path, open_ours: OpenOurs, open_sb_broker: OpenSBBroker
) -> None:
    ours = open_ours()
    theirs = open_sb_broker()
    build_shared_state(db, ours, theirs)
    original = list(ours.dump())

    into_sb = tmp_path / "into_sb.db"
    sb_loaded = open_sb_broker(into_sb)
    result = simplebroker.load_lines(sb_loaded, ours.dump())
    assert (result.messages, result.aliases) == (6, 2)

    into_ours = tmp_path / "into_ours.db"
    with Broker(into_ours, config=OUR_CONFIG) as loaded:
        assert loaded.load(simplebroker.dump_lines(theirs)) == (6, 2)
        assert list(loaded.dump()) == list(simplebroker.dump_lines(sb_loaded))
        assert loaded.list_aliases() == sb_loaded.list_aliases() == ours.list_aliases()
    assert rows(into_ours) == rows(into_sb)
    assert all(claimed == 0 for *_, claimed in rows(into_ours))
    assert meta(into_ours)["last_ts"] == meta(into_sb)["last_ts"]
    # The dump of a loaded file differs from the original at most in the header's last_ts.
    assert list(simplebroker.dump_lines(sb_loaded))[1:] == original[1:]
    assert_file_healthy(into_ours)


# ========================================================= search and pending
def test_find_message_ids_and_has_pending_match_sb(db: Path, open_ours: OpenOurs, open_sb_broker: OpenSBBroker) -> None:
    ours = open_ours()
    theirs = open_sb_broker()
    sbq = simplebroker.Queue("q", db_path=str(db))
    ids: list[int] = []
    for n in range(40):
        body = f"{'alpha' if n % 3 else 'beta'}-{n} 100%_done"
        ids.append(sbq.write(body) if n % 2 else ours.write("q", body))
    for ident in ids[::4]:
        ours.claim("q", message_id=ident)

    cases: list[tuple[str, dict[str, Any]]] = [
        ("alpha", {}),
        ("alpha", {"limit": 3}),
        ("beta", {"include_claimed": True}),
        ("alpha", {"after_timestamp": ids[10], "before_timestamp": ids[30]}),
        ("alpha", {"after_timestamp": ids[10], "before_timestamp": ids[30], "include_claimed": True, "limit": 4}),
        ("%_d", {}),
        ("_do", {"include_claimed": True}),
        ("ALPHA", {}),
        ("_done", {"limit": 1000}),
        (" a-1", {}),
    ]
    for needle, options in cases:
        mine = ours.find_message_ids("q", needle, **options)
        assert mine == theirs.find_message_ids("q", body_contains=needle, **options), (needle, options)
    for needle, limit in [("ab", 5), ("   ab  ", 5), ("alpha", 0), ("alpha", 1001), ("x" * 1025, 5)]:
        with pytest.raises(ValueError):
            theirs.find_message_ids("q", body_contains=needle, limit=limit)
        with pytest.raises(ValueError):
            ours.find_message_ids("q", needle, limit=limit)

    for after in [None, ids[0], ids[-2], ids[-1], ids[-1] - 1]:
        assert ours.has_pending("q", after_timestamp=after) == theirs.has_pending_messages("q", after), after
    sbq.read_many(100)
    assert ours.has_pending("q") is theirs.has_pending_messages("q") is False
    # db_size: SimpleBroker reports the main file's size, we page_count * page_size (the spec's choice).
    assert ours.status()[:2] == (theirs.status()["total_messages"], theirs.status()["last_timestamp"])


# ==================================================================== inserts
def test_exact_id_inserts_interoperate(db: Path, open_ours: OpenOurs, open_sb_broker: OpenSBBroker) -> None:
    ours = open_ours()
    theirs = open_sb_broker()
    sbq = simplebroker.Queue("q", db_path=str(db))
    far = ours.write("q", "now") + 5_000_000_000  # 5 s ahead
    assert ours.insert_messages("q", [("old", fixed(1)), ("far", far)]) == 2
    assert sbq.peek_many(10, with_timestamps=True) == [("old", fixed(1)), ("now", far - 5_000_000_000), ("far", far)]
    assert sbq.write("sb-after") > far

    theirs.insert_messages([("q", "sb-old", fixed(2))])
    assert ours.peek_many("q", 2) == [Message("old", fixed(1)), Message("sb-old", fixed(2))]
    with pytest.raises(IntegrityError):
        ours.insert_messages("q", [("again", fixed(2))])
    with pytest.raises(SBIntegrityError):
        theirs.insert_messages([("q", "again", fixed(1))])
    assert query(db, "SELECT COUNT(*) FROM messages") == [(5,)]
    assert_file_healthy(db)

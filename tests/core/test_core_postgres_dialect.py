"""The PostgreSQL dialect holds simplebroker-pg 4.7.2's statements, checked against its own code.

Each statement is compared with the text simplebroker-pg builds, imported
from its installed package (``simplebroker_pg._sql``, ``schema``) or, where
the text lives inside a function, recorded by calling that function with a
runner that only writes down what it is asked to run. simplebroker-pg writes
``?`` and rewrites it to ``%s`` (``runner._adapt_sql``); the comparison is on
that rewritten text with whitespace runs folded, which is what the server
parses. No server is used here (``tests/postgres_smoke`` runs them on one).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import simplebroker_pg.runner as pg_runner
from simplebroker._constants import SIMPLEBROKER_MAGIC
from simplebroker._exceptions import DatabaseError as SbDatabaseError
from simplebroker._exceptions import IntegrityError as SbIntegrityError
from simplebroker._sql._query_spec import RetrieveQuerySpec
from simplebroker_pg import _sql as pg_sql
from simplebroker_pg import plugin as pg_plugin
from simplebroker_pg import schema as pg_schema
from simplebroker_pg._constants import POSTGRES_SCHEMA_VERSION
from simplebroker_pg._identifiers import activity_channel_name, stable_lock_key
from simplebroker_pg.validation import quote_ident as pg_quote_ident
from simplebroker_pg.validation import require_schema_name

from sansio_broker import (
    BusyError,
    Config,
    DatabaseError,
    IncompatibleDatabaseError,
    IntegrityError,
    InvalidInputError,
    Message,
    SchemaVersionError,
)
from sansio_broker import postgres as pg
from sansio_broker.commands import Begin, Commit, Execute, ExecuteMany, Fetch, ReadClock
from sansio_broker.dialect import Dialect
from sansio_broker.driver import BrokerCore
from sansio_broker.errors import InvalidTypeError, StatementInterruptedError
from sansio_broker.postgres import PostgresDialect, advisory_lock_key, notification_channel, postgres_dialect
from sansio_broker.testing import run_scripted, run_with
from tests.core.core_testkit import NOW

SCHEMA = "sb_app"
D = postgres_dialect(SCHEMA)


def norm(sql: str) -> str:
    return " ".join(sql.split())


def sb(sql: str) -> str:
    """simplebroker-pg's text as it reaches psycopg, whitespace folded."""
    return norm(pg_runner._adapt_sql(sql))


def same(ours: str, theirs: str) -> None:
    assert norm(ours) == sb(theirs)


class Recorder:
    """A simplebroker-pg runner that records ``(sql, params)`` and answers from ``answer``."""

    def __init__(self, schema: str = SCHEMA, answer: Callable[[str], list[tuple[Any, ...]]] | None = None) -> None:
        self.schema = schema
        self.calls: list[tuple[str, tuple[Any, ...]] | str] = []
        self._answer = answer or (lambda sql: [])

    def run(self, sql: str, params: tuple[Any, ...] = (), *, fetch: bool = False) -> Iterable[tuple[Any, ...]]:
        self.calls.append((sb(sql), tuple(params)))
        return self._answer(sql)

    def begin_immediate(self) -> None:
        self.calls.append("BEGIN")

    def commit(self) -> None:
        self.calls.append("COMMIT")

    def rollback(self) -> None:
        self.calls.append("ROLLBACK")


def statements(commands: Iterable[Any]) -> list[tuple[str, tuple[Any, ...]] | str]:
    """Our commands in the recorder's terms."""
    out: list[tuple[str, tuple[Any, ...]] | str] = []
    for command in commands:
        if isinstance(command, Execute):
            out.append((norm(command.sql), tuple(command.params)))
        elif isinstance(command, Begin):
            out.append(command.sql)
        elif isinstance(command, Commit):
            out.append("COMMIT")
    return out


# ------------------------------------------------------------------ the protocol
def protocol_members() -> set[str]:
    names = set(Dialect.__annotations__)
    names |= {n for n, v in vars(Dialect).items() if callable(v) and not n.startswith("_")}
    return names


def test_every_protocol_member_is_there() -> None:
    assert isinstance(D, Dialect)
    members = protocol_members()
    assert len(members) > 50
    missing = sorted(n for n in members if not hasattr(D, n))
    assert missing == []


def test_every_statement_uses_psycopg_placeholders() -> None:
    for name in protocol_members():
        value = getattr(D, name)
        texts = value if isinstance(value, tuple) else (value,)
        for text in texts:
            if isinstance(text, str):
                assert "?" not in text, name
                assert "claimed = 0" not in text and "claimed = 1" not in text, name


def test_constants() -> None:
    assert D.DATABASE_NOUN == "a PostgreSQL schema"
    assert D.BEGIN_WRITE == "BEGIN"  # simplebroker-pg's begin_immediate()
    assert D.NO_LIMIT is None
    assert pg.POSTGRES_SCHEMA_VERSION == POSTGRES_SCHEMA_VERSION == 6
    assert pg.SIMPLEBROKER_MAGIC == SIMPLEBROKER_MAGIC
    assert repr(D) == "postgres_dialect('sb_app')"


# ------------------------------------------------------------------ one-to-one statements
SAME_TEXT = [
    ("READ_META", pg_sql.SELECT_META_ALL),
    ("ENSURE_META_ROW", pg_schema.ENSURE_META_ROW),
    ("V6_SHAPE", pg_schema.POSTGRES_V6_SHAPE_SQL),
    ("READ_LAST_TS", pg_sql.GET_LAST_TS),
    ("LOCK_LAST_TS", pg_sql.LOCK_LAST_TS_ROW),
    ("MAX_TS", pg_sql.GET_MAX_MESSAGE_TS),
    ("INSERT_MESSAGE", pg_sql.INSERT_MESSAGE),
    ("INSERT_EXACT", pg_sql.INSERT_MESSAGE),
    ("LIST_QUEUES", pg_sql.GET_DISTINCT_QUEUES),
    ("DELETE_QUEUE_COUNT", pg_sql.DELETE_QUEUE_MESSAGES_COUNT),
    ("DELETE_ALL_COUNT", pg_sql.DELETE_ALL_MESSAGES_COUNT),
    ("DELETE_IDS_COUNT", pg_sql.DELETE_MESSAGE_IDS_COUNT),
    ("RENAME_QUEUE_COUNT", pg_sql.RENAME_QUEUE_MESSAGES_COUNT),
    ("RETARGET_ALIASES_COUNT", pg_sql.RETARGET_ALIASES_COUNT),
    ("DELETE_CLAIMED_BATCH_COUNT", pg_sql.DELETE_CLAIMED_BATCH_COUNT),
    ("QUEUE_STATS", pg_sql.GET_QUEUE_STAT),
    ("ALL_QUEUE_STATS", pg_sql.GET_QUEUE_STATS),
    ("QUEUE_EXISTS", pg_sql.CHECK_QUEUE_EXISTS),
    ("OVERALL_STATS", pg_sql.GET_OVERALL_STATS),
    ("OVERALL_STATS", pg_sql.GET_VACUUM_STATS),
    ("CLAIM_OLDER_PENDING", pg_sql.CLAIM_OLDER_PENDING),
    ("LIST_ALIASES", pg_sql.SELECT_ALIASES),
    ("INSERT_ALIAS", pg_sql.INSERT_ALIAS),
    ("DELETE_ALIAS", pg_sql.DELETE_ALIAS),
    ("SET_ALIAS_VERSION", pg_sql.UPDATE_ALIAS_VERSION),
    ("HAS_PENDING", pg_sql.CHECK_PENDING_MESSAGES),
    ("HAS_PENDING_AFTER", pg_sql.CHECK_PENDING_MESSAGES_AFTER),
    ("COUNT_MESSAGES", pg_sql.GET_TOTAL_MESSAGE_COUNT),
    ("LOCK_META_ROW", pg_sql.LOCK_LAST_TS_ROW),
    ("LOCK_MESSAGES", pg_sql.LOCK_BROADCAST_SCOPE),
    ("LOCK_MESSAGES", pg_sql.LOCK_WRITE_KEEP_SCOPE),
    ("LOCK_MESSAGES", pg_sql.LOCK_RENAME_SCOPE),
]


@pytest.mark.parametrize(("name", "theirs"), SAME_TEXT, ids=[f"{n}-{i}" for i, (n, _) in enumerate(SAME_TEXT)])
def test_statement_is_simplebroker_pgs(name: str, theirs: str) -> None:
    same(getattr(D, name), theirs)


def test_schema_ddl_is_simplebroker_pgs_exactly() -> None:
    # Byte for byte: the one multi-statement string of its bootstrap.
    assert (pg_schema._bootstrap_schema_sql(SCHEMA),) == D.CREATE_SCHEMA_V6
    assert pg.bootstrap_sql("other") == pg_schema._bootstrap_schema_sql("other")
    assert D.REPAIR_V6_INDEXES == (pg_schema.CREATE_QUEUE_TS_INDEX, pg_schema.CREATE_PENDING_QUEUE_TS_INDEX)
    assert D.ENSURE_ALIASES == (pg_schema.CREATE_ALIASES_TABLE, pg_schema.CREATE_ALIAS_TARGET_INDEX)


def test_index_repair_is_what_simplebroker_pg_runs() -> None:
    shapes = iter([[(False,)], [(True,)]])
    runner = Recorder(answer=lambda sql: next(shapes) if "postgres_v6_shape" in sql else [])
    pg_schema._validate_or_repair_current_v6(runner)  # type: ignore[arg-type]
    assert runner.calls[1:3] == [(norm(s), ()) for s in D.REPAIR_V6_INDEXES]
    assert runner.calls[0] == (norm(D.V6_SHAPE), ())


def test_count_free_dml_is_the_statement_inside_simplebroker_pgs_count() -> None:
    # The core reads the rowcount; simplebroker-pg's runner counts in SQL.
    assert norm(D.DELETE_QUEUE) in sb(pg_sql.DELETE_QUEUE_MESSAGES_COUNT)
    assert norm(D.DELETE_ALL) in sb(pg_sql.DELETE_ALL_MESSAGES_COUNT)
    assert norm(D.RETARGET_ALIASES) in sb(pg_sql.RETARGET_ALIASES_COUNT)
    assert norm(D.RENAME_QUEUE) in sb(pg_sql.RENAME_QUEUE_MESSAGES_COUNT)
    # Ours re-checks claimed on the deleted row; the selection is theirs.
    batch = norm(D.DELETE_CLAIMED_BATCH).replace("WHERE claimed = TRUE AND ts IN", "WHERE ts IN")
    batch = batch.replace(" FOR UPDATE SKIP LOCKED", "")
    assert batch in sb(pg_sql.DELETE_CLAIMED_BATCH_COUNT)


def test_database_size_binds_the_schema_as_simplebroker_pg_does() -> None:
    runner = Recorder(answer=lambda sql: [(8192,)])
    assert pg_plugin.PostgresBackendPlugin().database_size_bytes(runner) == 8192  # type: ignore[arg-type]
    (call,) = runner.calls
    assert isinstance(call, tuple)
    sql, params = call
    assert params == (SCHEMA,)
    assert norm(D.DATABASE_SIZE) == sql.replace("%s", f"'{SCHEMA}'")


def test_meta_row_is_what_simplebroker_pg_reads_on_open() -> None:
    runner = Recorder(answer=lambda sql: [("simplebroker-v1", 6, 5, 0)])
    state = pg_schema._read_existing_meta_state(runner)  # type: ignore[arg-type]
    assert state is not None and state.last_ts == 5
    assert runner.calls == [(norm(D.META_ROW), ())]
    row = ("simplebroker-v1", 6, 5, 7)
    result, commands = run_scripted(D.read_meta(), [row])
    assert result == {"magic": "simplebroker-v1", "schema_version": 6, "last_ts": 5, "alias_version": 7}
    assert commands == [Execute(D.META_ROW, (), Fetch.ONE)]
    assert run_scripted(D.read_meta(), [None])[0] == {}


def test_id_advance_is_simplebroker_pgs() -> None:
    runner = Recorder(answer=lambda sql: [(9,)])
    assert pg_plugin.PostgresBackendPlugin().advance_last_ts(runner, new_ts=9)  # type: ignore[arg-type]
    assert runner.calls == [(norm(D.ADVANCE_LAST_TS), (9, 9))]
    assert D.RAISE_LAST_TS == D.ADVANCE_LAST_TS  # insert_messages advances the same way
    runner = Recorder()
    pg_plugin.PostgresBackendPlugin().write_alias_version(runner, 42)  # type: ignore[arg-type]
    assert runner.calls == [(norm(D.SET_ALIAS_VERSION), (42,))]


# ------------------------------------------------------------------ selections
FLAGS = list(itertools.product([False, True], repeat=4))


def spec_for(by_id: bool, unclaimed: bool, after: bool, before: bool, newest: bool, **extra: Any) -> RetrieveQuerySpec:
    return RetrieveQuerySpec(
        queue="q",
        limit=5,
        exact_timestamp=77 if by_id else None,
        after_timestamp=11 if after else None,
        before_timestamp=99 if before else None,
        require_unclaimed=unclaimed,
        order="newest" if newest else "oldest",
        **extra,
    )


def our_params(by_id: bool, after: bool, before: bool) -> tuple[int | str, ...]:
    return D.where_params(
        "q", message_id=77 if by_id else None, after=11 if after else None, before=99 if before else None
    )


@pytest.mark.parametrize(("by_id", "unclaimed", "after", "before"), FLAGS)
@pytest.mark.parametrize("newest", [False, True])
def test_claim_move_peek_are_simplebroker_pgs(
    by_id: bool, unclaimed: bool, after: bool, before: bool, newest: bool
) -> None:
    where = D.where(by_id=by_id, unclaimed_only=unclaimed, after=after, before=before)
    params = our_params(by_id, after, before)

    sql, theirs = pg_sql.build_retrieve_query("claim", spec_for(by_id, unclaimed, after, before, newest))
    assert norm(D.claim(where, newest)) == sb(sql)
    assert (*params, 5) == theirs

    sql, theirs = pg_sql.build_retrieve_query(
        "move", spec_for(by_id, unclaimed, after, before, newest, target_queue="t")
    )
    assert norm(D.move(where, newest)) == sb(sql)
    assert ("t", *params, 5) == theirs

    # Theirs pages with OFFSET; the core never skips rows.
    sql, theirs = pg_sql.build_retrieve_query("peek", spec_for(by_id, unclaimed, after, before, newest))
    assert norm(D.peek(where, newest)) == sb(sql).replace(" OFFSET %s", "")
    assert (*params, 5, 0) == theirs


def test_where_params_order() -> None:
    assert D.where_params("q", message_id=3, after=1, before=9) == (3, "q")
    assert D.where_params("q", message_id=None, after=1, before=9) == ("q", 1, 9)
    assert D.where_params("q", message_id=None, after=None, before=None) == ("q",)


def test_skip_locked_is_an_opt_in_variant() -> None:
    where = D.where(by_id=False, unclaimed_only=True, after=False, before=False)
    for build in (D.claim, D.move):
        plain, relaxed = build(where), build(where, skip_locked=True)
        assert "SKIP LOCKED" not in plain
        assert relaxed == plain.replace("FOR UPDATE", "FOR UPDATE SKIP LOCKED")


@pytest.mark.parametrize(("include_claimed", "after", "before"), list(itertools.product([False, True], repeat=3)))
def test_find_ids_is_simplebroker_pgs(include_claimed: bool, after: bool, before: bool) -> None:
    theirs = pg_sql.build_find_message_ids_query(
        after_timestamp=1 if after else None, before_timestamp=2 if before else None, include_claimed=include_claimed
    )
    assert norm(D.find_ids(include_claimed=include_claimed, after=after, before=before)) == sb(theirs)


# ------------------------------------------------------------------ steps: bootstrap, locks, vacuum
def test_bootstrap_runs_simplebroker_pgs_sequence() -> None:
    def answer(sql: str) -> list[tuple[Any, ...]]:
        if "to_regclass" in sql:
            return [(None,)]
        if "INSERT INTO meta" in sql:
            return [("simplebroker-v1", 6, 0, 0)]
        return []

    runner = Recorder(answer=answer)
    pg_schema.initialize_database(runner, schema=SCHEMA, run_with_retry=lambda f: f())  # type: ignore[arg-type]
    assert runner.calls[0] == "BEGIN" and runner.calls[-1] == "COMMIT"
    created, commands = run_scripted(D.bootstrap(), [None, (None,), None, ("simplebroker-v1", 6, 0, 0)])
    assert created is True
    assert statements(commands) == runner.calls[1:-1]
    assert commands[0] == Execute("SELECT pg_advisory_xact_lock(%s)", (stable_lock_key("schema-setup", SCHEMA),))


def test_bootstrap_stops_when_another_process_created_the_schema() -> None:
    runner = Recorder(answer=lambda sql: [("x",)] if "to_regclass" in sql else [("simplebroker-v1", 6, 0, 0)])
    pg_schema.initialize_database(runner, schema=SCHEMA, run_with_retry=lambda f: f())  # type: ignore[arg-type]
    created, commands = run_scripted(D.bootstrap(), [None, ('"sb_app".meta',)])
    assert created is False
    assert statements(commands) == runner.calls[1:3]


def test_bootstrap_refuses_a_missing_meta_row() -> None:
    with pytest.raises(DatabaseError, match="did not publish metadata"):
        run_scripted(D.bootstrap(), [None, (None,), None, None])


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (D.LOCK_BROADCAST, lambda p, r: p.prepare_broadcast(r)),
        (D.LOCK_RENAME, lambda p, r: p.prepare_queue_operation(r, operation="rename", queue="q")),
        (D.LOCK_KEEP_NEWEST, lambda p, r: p.prepare_queue_operation(r, operation="write_keep", queue="q")),
        (D.LOCK_ALIASES, lambda p, r: p.prepare_alias_mutation(r)),
    ],
    ids=["broadcast", "rename", "keep_newest", "aliases"],
)
def test_locks_are_taken_in_simplebroker_pgs_order(ours: tuple[Any, ...], theirs: Callable[[Any, Any], None]) -> None:
    runner = Recorder(answer=lambda sql: [(0,)])
    theirs(pg_plugin.PostgresBackendPlugin(), runner)
    assert statements(ours) == runner.calls


def test_the_core_takes_the_locks_first() -> None:
    """Broadcast, rename and alias changes lock before they read; keep_newest
    between the ID allocation (the meta row) and the INSERT."""
    core = BrokerCore(dialect=D)

    def run(operation: Any, answers: dict[str, Any]) -> list[Any]:
        def respond(command: Any) -> Any:
            if isinstance(command, ReadClock):
                return NOW
            return answers.get(getattr(command, "sql", None))

        return statements(run_with(operation, respond)[1])

    lock_alias, (lock_meta, lock_table) = statements(D.LOCK_ALIASES)[0], statements(D.LOCK_BROADCAST)
    advance = norm(D.ADVANCE_LAST_TS)
    seen = run(core.session().broadcast("b"), {D.LIST_QUEUES: [("q",)], D.ADVANCE_LAST_TS: (NOW,)})
    assert seen[1:4] == [lock_meta, lock_table, (norm(D.LIST_QUEUES), ())]
    kept = run(core.session().write("q", "x", keep_newest=2), {D.ADVANCE_LAST_TS: (NOW,)})
    assert [s[0] for s in kept[1:5]] == [advance, lock_table[0], norm(D.INSERT_MESSAGE), norm(D.CLAIM_OLDER_PENDING)]
    renamed = run(
        core.session().rename_queue("a", "b"),
        {D.QUEUE_EXISTS: (False,), D.RENAME_QUEUE: 3, D.RETARGET_ALIASES: 0},
    )
    assert renamed[1:4] == [lock_alias, lock_meta, lock_table]
    for operation in (core.session().add_alias("al", "q"), core.session().remove_alias("al")):
        answers = {D.LIST_ALIASES: [], D.QUEUE_EXISTS: (False,), D.DELETE_ALIAS: 0}
        assert run(operation, answers)[1] == lock_alias


def test_exact_inserts_raise_last_ts_before_inserting() -> None:
    session = BrokerCore(dialect=D).session()
    top = NOW + 8
    _, commands = run_scripted(session.insert_messages([("q", "x", NOW + 7)]), itertools.repeat(None))
    assert commands[1:3] == [Execute(D.RAISE_LAST_TS, (top, top)), ExecuteMany(D.INSERT_EXACT, [("q", "x", NOW + 7)])]


def test_claims_and_moves_take_no_extra_lock_in_simplebroker_pg() -> None:
    runner = Recorder()
    for operation in ("claim", "move"):
        pg_plugin.PostgresBackendPlugin().prepare_queue_operation(runner, operation=operation, queue="q")  # type: ignore[arg-type]
    assert runner.calls == []


def vacuum_of_simplebroker_pg(*, compact: bool, batches: list[int]) -> list[Any]:
    left = iter(batches)

    def answer(sql: str) -> list[tuple[Any, ...]]:
        if "pg_try_advisory_lock" in sql or "pg_advisory_unlock" in sql:
            return [(True,)]
        if "DELETE FROM messages" in sql:
            return [(next(left),)]
        return []

    runner = Recorder(answer=answer)
    failure = pg_plugin._run_vacuum_before_release(
        runner,  # type: ignore[arg-type]
        lock_key=stable_lock_key("vacuum", SCHEMA),
        compact=compact,
        config={"VACUUM_BATCH_SIZE": 1000},  # type: ignore[arg-type]
    )
    assert failure is None
    return runner.calls


def test_vacuum_steps_are_simplebroker_pgs() -> None:
    theirs = vacuum_of_simplebroker_pg(compact=True, batches=[0])
    assert theirs[0] == (norm(pg.TRY_ADVISORY_LOCK), (stable_lock_key("vacuum", SCHEMA),))
    assert theirs[-1] == (norm(pg.ADVISORY_UNLOCK), (stable_lock_key("vacuum", SCHEMA),))
    acquired, commands = run_scripted(D.lock_vacuum(), [(True,)])
    assert acquired is True and statements(commands) == theirs[:1]
    assert run_scripted(D.lock_vacuum(), [(False,)])[0] is False
    assert statements(run_scripted(D.unlock_vacuum(), [(True,)])[1]) == theirs[-1:]
    # compact: three VACUUM (ANALYZE) in autocommit, after the (empty) batch
    assert statements(run_scripted(D.compact(), itertools.repeat(None))[1]) == theirs[-4:-1]
    # after rows were deleted: ANALYZE x3
    theirs = vacuum_of_simplebroker_pg(compact=False, batches=[3, 0])
    assert statements(run_scripted(D.reclaim_space(), itertools.repeat(None))[1]) == theirs[-4:-1]
    assert (norm(D.DELETE_CLAIMED_BATCH_COUNT), (1000,)) in theirs


def test_connection_setup_is_simplebroker_pgs_pool_configure(monkeypatch: pytest.MonkeyPatch) -> None:
    captured: dict[str, Any] = {}

    class FakePool:
        def __init__(self, conninfo: str, **kwargs: Any) -> None:
            captured.update(kwargs)

        def open(self, **kwargs: Any) -> None:
            pass

    class FakeCursor:
        def __enter__(self) -> FakeCursor:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def execute(self, sql: str) -> None:
            captured.setdefault("executed", []).append(sql)

    class FakeConnection:
        autocommit = False

        def cursor(self) -> FakeCursor:
            return FakeCursor()

    monkeypatch.setattr(pg_runner, "ConnectionPool", FakePool)
    pg_runner.PostgresRunner("postgresql://nowhere/db", schema=SCHEMA)
    connection = FakeConnection()
    captured["configure"](connection)
    assert connection.autocommit is True  # the core's BEGIN/COMMIT are explicit
    ours = D.connection_setup(Config(busy_timeout_ms=250))
    assert ours[: len(captured["executed"])] == tuple(captured["executed"])
    assert ours[len(captured["executed"]) :] == ("SET lock_timeout = 250",)  # BROKER_BUSY_TIMEOUT, in ms


def test_listen_and_notify_use_simplebroker_pgs_channel() -> None:
    assert D.channel == activity_channel_name(SCHEMA)
    assert f"LISTEN {pg_quote_ident(activity_channel_name(SCHEMA))}" == D.LISTEN
    # The server-side channel expression is the one every simplebroker-pg notify uses.
    channel = "'simplebroker_' || substr(md5(current_schema()), 1, 24)"
    for theirs in (pg_sql.INSERT_MESSAGE, pg_sql.RENAME_QUEUE_MESSAGES_COUNT):
        assert f"pg_notify( {channel}," in sb(theirs)
    assert norm(D.NOTIFY) == f"SELECT pg_notify({channel}, %s)"
    expression = f"pg_notify( {channel}, queue )"
    assert norm(D.RETURN_CLAIMED).count(expression) == 1
    assert norm(D.UNCLAIM_BY_ID).count(expression) == 1
    # every queue once, in order, in one statement
    assert D.change_notification(["a", "b", "a"]) == (Execute(D.NOTIFY_EACH, (["a", "b"],)),)
    assert f"pg_notify({channel}, queue) FROM unnest(%s::text[])" in D.NOTIFY_EACH
    assert D.change_notification([]) == ()


# ------------------------------------------------------------------ lock keys, channel, names
KEY_PARTS = [
    ("schema-setup", "sb_cli"),
    ("aliases", "sb_cli"),
    ("vacuum", "sb_cli"),
    ("schema-setup", "simplebroker_pg_v1"),
    ("aliases", "simplebroker_pg_v1"),
    ("vacuum", "simplebroker_pg_v1"),
    ("queue", "jobs"),
    ("queue", "été/ü"),
    ("",),
    ("a", "b", "c"),
    ("a\x1fb",),
    (),
]


@pytest.mark.parametrize("parts", KEY_PARTS)
def test_lock_key_is_simplebroker_pgs(parts: tuple[str, ...]) -> None:
    key = advisory_lock_key(*parts)
    assert key == stable_lock_key(*parts)
    assert -(2**63) <= key < 2**63


def test_lock_keys_of_the_survey() -> None:
    # Values read off a real simplebroker-pg session (issue13_pg_survey.md, section 5).
    assert advisory_lock_key("schema-setup", "sb_cli") == -8479887466252570029
    assert advisory_lock_key("aliases", "sb_cli") == 4508504758372119577
    assert advisory_lock_key("vacuum", "sb_cli") == -3597376555323487548
    assert advisory_lock_key("schema-setup", "simplebroker_pg_v1") == 2663821667415788059
    assert advisory_lock_key("aliases", "simplebroker_pg_v1") == -2634002135256106636
    assert advisory_lock_key("vacuum", "simplebroker_pg_v1") == 7937574255506599245
    d = postgres_dialect("sb_cli")
    assert (d.SETUP_LOCK_KEY, d.ALIASES_LOCK_KEY, d.VACUUM_LOCK_KEY) == (
        -8479887466252570029,
        4508504758372119577,
        -3597376555323487548,
    )


@pytest.mark.parametrize("schema", ["sb_cli", "simplebroker_pg_v1", "x", "Été"])
def test_channel_is_simplebroker_pgs(schema: str) -> None:
    assert notification_channel(schema) == activity_channel_name(schema)
    assert notification_channel("sb_cli") == "simplebroker_343484135c5e25579f4ff717"


NAMES = [
    "sb_app",
    "_x",
    "A1",
    "simplebroker_pg_v1",
    "public",
    "",
    "1abc",
    "a-b",
    "a b",
    'a"b',
    "été",
    "Public",
    "x" * 80,
]


@pytest.mark.parametrize("name", NAMES)
def test_schema_names_as_simplebroker_pg_judges_them(name: str) -> None:
    try:
        require_schema_name({"schema": name})
    except SbDatabaseError as theirs:
        with pytest.raises(InvalidInputError) as ours:
            postgres_dialect(name)
        assert str(ours.value) == str(theirs)
    else:
        assert postgres_dialect(name).schema == name


def test_schema_refusals() -> None:
    with pytest.raises(InvalidInputError, match=re.escape("Postgres backend refuses to use schema 'public'")):
        postgres_dialect("public")
    with pytest.raises(InvalidInputError, match=re.escape("must match ^[A-Za-z_][A-Za-z0-9_]*$")):
        PostgresDialect("no-dash")
    with pytest.raises(InvalidInputError, match=re.escape("requires backend_options.schema or BROKER_BACKEND_SCHEMA")):
        postgres_dialect("")
    with pytest.raises(InvalidTypeError):
        postgres_dialect(5)  # type: ignore[arg-type]
    # simplebroker-pg's pattern ends in ``$``, which passes a trailing newline; ours does not.
    require_schema_name({"schema": "abc\n"})
    with pytest.raises(InvalidInputError):
        postgres_dialect("abc\n")
    assert pg.quote_ident("sb_app") == pg_quote_ident("sb_app")


# ------------------------------------------------------------------ errors
class FakePsycopgError(Exception):
    def __init__(self, sqlstate: str | None) -> None:
        super().__init__(f"error {sqlstate}")
        self.sqlstate = sqlstate


@pytest.mark.parametrize("sqlstate", ["40001", "40P01", "55P03", "23505", "23502", "22P02", "42P01", "57014", None])
def test_errors_are_classified_as_simplebroker_pg_does(sqlstate: str | None) -> None:
    theirs = pg_runner._translate_error(FakePsycopgError(sqlstate))  # type: ignore[arg-type]
    ours = D.classify_error(str(theirs), sqlstate)
    assert isinstance(ours, BusyError) == bool(getattr(theirs, "retryable", False))
    assert isinstance(ours, IntegrityError) == isinstance(theirs, SbIntegrityError)
    assert isinstance(ours, StatementInterruptedError) == (sqlstate == "57014")
    assert str(ours) == str(theirs)
    assert ours.code == sqlstate  # kept for the caller, as SQLite's result code is


def test_an_int_code_is_no_sqlstate() -> None:
    assert type(D.classify_error("boom", 5)) is DatabaseError


# ------------------------------------------------------------------ engine and table checks
def test_check_engine() -> None:
    assert run_scripted(D.check_engine(), [("150004",)])[0] is None
    with pytest.raises(DatabaseError, match="too old"):
        run_scripted(D.check_engine(), [("110000",)])


def test_prepare_storage_runs_nothing() -> None:
    assert run_scripted(D.prepare_storage("x", new=True), []) == (None, [])


def test_check_messages_table() -> None:
    assert run_scripted(D.check_messages_table("L", canonical=True), [(True,)]) == (
        False,
        [Execute(D.V6_SHAPE, (), Fetch.ONE)],
    )
    # an absent canonical index is repairable
    for details in [(True, True, None, True), (True, True, True, None), (True, True, None, None)]:
        assert run_scripted(D.check_messages_table("L", canonical=True), [(False,), details])[0] is True
    for details in [(False, True, True, True), (True, False, True, True), (True, True, False, True)]:
        with pytest.raises(IncompatibleDatabaseError, match="L: Postgres schema version 6 requires ts"):
            run_scripted(D.check_messages_table("L", canonical=True), [(False,), details])
    with pytest.raises(SchemaVersionError, match="simplebroker-pg's migration"):
        run_scripted(D.check_messages_table("L", canonical=False), [])


def test_shape_details_extend_simplebroker_pgs_shape_query() -> None:
    head = D.V6_SHAPE.split("SELECT\n    NOT EXISTS")[0].replace("postgres_v6_shape", "postgres_v6_shape_details")
    assert D.V6_SHAPE_DETAILS.startswith(head)
    assert pg.V6_SHAPE_ERROR in str(pg_schema._validate_or_repair_current_v6.__code__.co_consts)


def test_meta_inserts_keep_an_existing_row() -> None:
    assert "ON CONFLICT (singleton) DO NOTHING" in D.INSERT_MAGIC
    assert D.INSERT_MAGIC.count("%s") == 1 and D.INSERT_SCHEMA_VERSION.count("%s") == 1
    assert "schema_version = 0" in D.INSERT_SCHEMA_VERSION


# ------------------------------------------------------------------ the core runs it unchanged
def test_the_core_writes_and_claims_with_the_postgres_text() -> None:
    session = BrokerCore(dialect=D).session()
    result, commands = run_scripted(session.write("q", "x"), [None, NOW, (NOW,), None, None])
    assert result == NOW
    assert commands == [
        Begin("BEGIN"),
        ReadClock(),
        Execute(D.ADVANCE_LAST_TS, (NOW, NOW), Fetch.ONE),
        Execute(D.INSERT_MESSAGE, ("q", "x", NOW)),
        Commit(),
    ]
    assert commands[0].sql == "BEGIN"  # type: ignore[union-attr]
    message, commands = run_scripted(session.claim("q"), [None, [("x", NOW)], None])
    assert message == Message("x", NOW)
    where = D.where(by_id=False, unclaimed_only=True, after=False, before=False)
    assert commands == [Begin("BEGIN"), Execute(D.claim(where), ("q", 1), Fetch.ALL, "q"), Commit()]


def test_delete_by_ids_is_simplebroker_pgs_one_statement() -> None:
    session = BrokerCore(dialect=D).session()
    count, commands = run_scripted(session.delete_messages("q", [5, 7, 5]), [None, (2,), None])
    assert count == 2
    assert commands == [Begin("BEGIN"), Execute(D.DELETE_IDS_COUNT, ([5, 7, 5], "q"), Fetch.ONE), Commit()]
    # an empty list runs no statement
    assert run_scripted(session.delete_messages("q", []), [None, None])[1] == [Begin("BEGIN"), Commit()]

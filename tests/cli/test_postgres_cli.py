"""``sansio-broker`` on PostgreSQL, against ``broker`` with simplebroker-pg 4.7.2 on the same server.

Differential: each program runs a scenario on a schema of its own (``postgres_differential.py``); stdout, exit
codes and stderr must match. Crossover: both programs on ONE schema, one writing, the other reading. Migration:
``dump`` from a SQLite file, ``load`` into the server, and back. Plus the SQLite start-up staying free of psycopg.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.differential import Scenario, Step, base_env, broker_command, sansio_command, scenario, step
from tests.cli.postgres_differential import check_pg_crossover, check_pg_differential, pg_env
from tests.support import pgserver
from tests.support.pgserver import fresh_schema, pg_dsn, pg_server

try:
    import psycopg
except ImportError:  # as the server fixture does: skip, but fail under CI=true
    if pgserver.in_ci():
        raise
    pytest.skip(f"psycopg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)

__all__ = ["pg_dsn", "pg_server"]  # the fixtures, imported for this module

pytestmark = pytest.mark.slow


def a(*argv: str, **kw: object) -> Step:
    return step(*argv, program="A", **kw)  # type: ignore[arg-type]


def b(*argv: str, **kw: object) -> Step:
    return step(*argv, program="B", **kw)  # type: ignore[arg-type]


def _sql(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for text in statements:
            conn.execute(text)


# ------------------------------------------------------------------ every command
COMMANDS: list[Scenario] = [
    scenario(
        "init-write-read-peek",
        step("init"),
        step("init"),
        step("write", "q", "one"),
        step("write", "q", "--json", "two"),
        step("write", "-t", "q", "three"),
        step("write", "q", "-", stdin="multi\nline\n"),
        step("peek", "q"),
        step("peek", "q", "--all", "--json"),
        step("peek", "q", "--newest", "-t"),
        step("peek", "q", "-m", "{id2}"),
        step("peek", "q", "--after", "{id1}", "--all"),
        step("peek", "q", "--before", "{id3}", "--all", "-t"),
        step("read", "q"),
        step("read", "q", "-m", "{id3}", "--json"),
        step("read", "q", "--newest"),
        step("peek", "q", "--all", "--include-claimed", "-t"),
        step("read", "q", "--all"),
        step("read", "q"),
        step("peek", "missing"),
        step("write", "q2", "--keep-newest", "2", "k1"),
        step("write", "q2", "--keep-newest", "2", "k2"),
        step("write", "q2", "--keep-newest", "2", "k3"),
        step("read", "q2", "--all", "--json"),
    ),
    scenario(
        "move-broadcast-list-stats-exists-delete",
        step("write", "-t", "src", "a"),
        step("write", "-t", "src", "b"),
        step("write", "-t", "src", "c"),
        step("write", "other", "x"),
        step("move", "src", "dst"),
        step("move", "src", "dst", "-m", "{id3}", "--json"),
        step("move", "src", "src"),
        step("move", "src", "dst", "--all", "-t"),
        step("move", "src", "dst"),
        step("broadcast", "hello"),
        step("broadcast", "--pattern", "d*", "only-d"),
        step("list"),
        step("list", "--stats"),
        step("list", "--json", "--stats"),
        step("list", "--prefix", "ot"),
        step("list", "--pattern", "s*"),
        step("read", "dst"),
        step("list", "--stats"),
        step("exists", "dst"),
        step("exists", "nope", "--json"),
        step("stats", "dst"),
        step("stats", "dst", "--json"),
        step("delete", "dst", "-m", "{id2}"),
        step("delete", "dst", "-m", "{id2}"),
        step("delete", "other"),
        step("delete", "other"),
        step("list", "--stats"),
        step("delete", "--all"),
        step("list"),
    ),
    scenario(
        "aliases-and-rename",
        step("write", "real", "r1"),
        step("alias", "add", "al", "real"),
        step("alias", "add", "al", "real"),
        step("alias", "list"),
        step("alias", "list", "--target", "real"),
        step("alias", "list", "--target", "none"),
        step("read", "@al"),
        step("write", "@al", "r2"),
        step("peek", "real"),
        step("stats", "@al"),
        step("rename", "real", "renamed"),
        step("alias", "list"),
        step("rename", "renamed", "again", "--json", "--no-retarget-aliases"),
        step("rename", "gone", "x"),
        step("rename", "again", "again"),
        step("alias", "remove", "al"),
        step("alias", "remove", "al"),
        step("alias"),
        step("list", "--stats"),
    ),
    scenario(
        "status-vacuum-cleanup",
        step("--status"),
        step("--cleanup"),
        step("--vacuum"),
        step("--cleanup"),
        step("--cleanup"),
        step("--cleanup", "--json"),
        step("write", "q", "a"),
        step("write", "q", "b"),
        step("read", "q"),
        step("--status"),
        step("--status", "--json"),
        step("--vacuum"),
        step("--vacuum"),
        step("--vacuum", "--compact"),
        step("--vacuum", "-q"),
        step("list", "--stats"),
        step("--cleanup", "-q"),
        step("peek", "q"),
        step("-q", "init"),
        step("peek", "q"),
        step("--status", "q"),
        step("--vacuum", "write"),
        step("--compact"),
    ),
    scenario(
        "dump-and-load",
        step("write", "q", "a b"),
        step("write", "q", "tab\there"),
        step("write", "r", '{"json": 1}'),
        step("read", "q"),
        step("alias", "add", "al", "r"),
        step("dump"),
        step("dump", "--include", "q"),
        step("dump", "--exclude", "q"),
        step("--cleanup"),
        step("load", stdin_from=5),
        step("dump"),
        step("load", stdin_from=5),
        step("load", stdin='{"not": "a dump"}\n'),
        step("peek", "q", "--all"),
        step("alias", "list"),
    ),
]


@pytest.mark.parametrize("sc", COMMANDS, ids=lambda s: s.name)
def test_commands_match_broker(pg_dsn: str, sc: Scenario) -> None:
    check_pg_differential(sc, pg_dsn)


# ------------------------------------------------------------------ errors and targets
ERRORS: list[Scenario] = [
    scenario(
        "before-init",
        *(
            step(*argv)
            for argv in (
                ("peek", "q"),
                ("read", "q", "--all"),
                ("list",),
                ("list", "--stats"),
                ("exists", "q"),
                ("stats", "q"),
                ("delete", "q"),
                ("delete", "--all"),
                ("move", "a", "b"),
                ("rename", "a", "b"),
                ("alias", "list"),
                ("alias", "add", "x", "y"),
                ("dump",),
                ("watch", "q"),
            )
        ),
        step("peek", "q", "--json"),
        step("list", "--json"),
        step("--cleanup"),
        step("broadcast", "nobody"),
        step("peek", "q"),
        step("--cleanup"),
    ),
    scenario(
        "bad-schemas",
        *(
            step(*argv, env={"BROKER_BACKEND_SCHEMA": schema})
            for schema in ("public", "bad-name", "9x", "")
            for argv in (("peek", "q"), ("write", "q", "a"), ("init",), ("--cleanup",), ("--status",), ("--vacuum",))
        ),
        step("peek", "q", "--json", env={"BROKER_BACKEND_SCHEMA": "public"}),
        step("--status", "--json", env={"BROKER_BACKEND_SCHEMA": "public"}),
    ),
    scenario(
        "bad-targets",
        *(
            step(*argv, env=env)
            for env in (
                {"BROKER_BACKEND_TARGET": "not a dsn ==="},
                {"BROKER_BACKEND_TARGET": "mysql://u@h/db"},
                {"BROKER_BACKEND": "mysql"},
                {"BROKER_BACKEND_TARGET": "postgresql://postgres:sekret@127.0.0.1:1/sansio"},
                {"BROKER_BACKEND_TARGET": "", "BROKER_BACKEND_HOST": ""},
                {"BROKER_BACKEND_TARGET": "", "BROKER_BACKEND_PORT": "70000"},
                {"BROKER_BACKEND_TARGET": "", "BROKER_BACKEND_PORT": "x1"},
                {"BROKER_BACKEND_TARGET": "", "BROKER_BACKEND_DATABASE": " "},
            )
            # unreachable: only what broker answers at once (its write/--status wait 30 s for its pool)
            for argv in (("peek", "q"), ("init",), ("--cleanup",), ("list", "--json"))
        ),
    ),
    scenario(
        "password-and-conninfo-targets",
        step("init", env={"BROKER_BACKEND_PASSWORD": "pw"}),
        step("write", "q", "a", env={"BROKER_BACKEND_PASSWORD": "pw"}),
        step("read", "q", env={"BROKER_BACKEND_PASSWORD": "pw"}),
        step("--cleanup", env={"BROKER_BACKEND_PASSWORD": "p@ss:w"}),
        step("init", env={"BROKER_BACKEND_TARGET": "{conninfo}"}),
        step("write", "q", "b", env={"BROKER_BACKEND_TARGET": "{conninfo}"}),
        step("peek", "q", env={"BROKER_BACKEND_TARGET": "{conninfo} password=secret"}),
        step("--cleanup", env={"BROKER_BACKEND_TARGET": "{conninfo} password=secret"}),
        step(
            "init",
            env={
                "BROKER_BACKEND_TARGET": "",
                **{f"BROKER_BACKEND_{k}": "{" + k.lower() + "}" for k in ("HOST", "PORT", "USER", "DATABASE")},
            },
        ),
        step(
            "--cleanup",
            env={
                "BROKER_BACKEND_TARGET": "",
                "BROKER_BACKEND_PASSWORD": "p@ss",
                **{f"BROKER_BACKEND_{k}": "{" + k.lower() + "}" for k in ("HOST", "PORT", "USER", "DATABASE")},
            },
        ),
    ),
    scenario(
        "files-and-dirs-with-a-postgres-backend",
        step("write", "q", "pg"),
        step("-f", "local.db", "write", "q", "file"),
        step("-f", "local.db", "peek", "q"),
        step("peek", "q"),
        step("-d", "sub", "peek", "q"),
        step("-d", "missing", "peek", "q"),
        step("--status", "-f", "local.db"),
        step("-d", "sub", "init"),
        dirs=["sub"],
    ),
    scenario(
        "project-file-with-a-postgres-backend",
        step("init", cwd="proj"),
        step("write", "q", "via-toml", cwd="proj"),
        step("peek", "q", cwd="proj", env={"BROKER_BACKEND_SCHEMA": "public"}),
        step("peek", "q", env={"BROKER_BACKEND_SCHEMA": "{schema}_x"}),
        step("--cleanup", cwd="proj"),
        step("peek", "q", cwd="proj"),
        files={
            "proj/.broker.toml": b'version = 1\nbackend = "postgres"\ntarget = "{dsn}"\n'
            b'[backend_options]\nschema = "{schema}"\n'
        },
    ),
]


def _setup_conninfo(sc: Scenario, dsn: str) -> Scenario:
    """Fill ``{conninfo}`` and the ``{host}``-style parts from the server's URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    values = {
        "{conninfo}": f"host={parts.hostname} port={parts.port} dbname={parts.path.lstrip('/')} user={parts.username}",
        "{host}": str(parts.hostname),
        "{port}": str(parts.port),
        "{user}": str(parts.username),
        "{database}": parts.path.lstrip("/"),
    }

    def fill(text: str) -> str:
        for key, value in values.items():
            text = text.replace(key, value)
        return text

    import dataclasses

    steps = tuple(dataclasses.replace(s, env={k: fill(v) for k, v in s.env.items()}) for s in sc.steps)
    return dataclasses.replace(sc, steps=steps)


@pytest.mark.parametrize("sc", ERRORS, ids=lambda s: s.name)
def test_errors_and_targets_match_broker(pg_dsn: str, sc: Scenario) -> None:
    check_pg_differential(_setup_conninfo(sc, pg_dsn), pg_dsn)


def _empty(dsn: str, schema: str) -> None:
    _sql(dsn, f'CREATE SCHEMA "{schema}"')


def _foreign(dsn: str, schema: str) -> None:
    _sql(dsn, f'CREATE SCHEMA "{schema}"', f'CREATE TABLE "{schema}".other (x int)')


def _partial(dsn: str, schema: str) -> None:
    _sql(dsn, f'CREATE SCHEMA "{schema}"', f'CREATE TABLE "{schema}".messages (x int)')


def _old_version(dsn: str, schema: str) -> None:
    from sansio_broker import Config
    from sansio_broker.adapters.blocking import Broker

    Broker(dsn, config=Config(backend_schema=schema)).open().close()
    _sql(dsn, f'UPDATE "{schema}".meta SET schema_version = 99')


SCHEMA_STATES = {
    "empty": _empty,
    "foreign": _foreign,
    "partial": _partial,
    "newer-version": _old_version,
}


@pytest.mark.parametrize("state", SCHEMA_STATES)
def test_schemas_in_other_states_match_broker(pg_dsn: str, state: str) -> None:
    sc = scenario(
        f"schema-{state}",
        step("peek", "q"),
        step("list", "--json"),
        step("init"),
        step("--cleanup"),
        step("peek", "q"),
    )
    check_pg_differential(sc, pg_dsn, setup=SCHEMA_STATES[state])


# ------------------------------------------------------------------ one schema, both programs
CROSSOVER: list[Scenario] = [
    scenario(
        "write-then-read",
        a("init"),
        b("init"),
        a("write", "q", "plain"),
        a("write", "-t", "q", "wörld ☃"),
        a("write", "q", "-", stdin="multi\nline\n"),
        b("peek", "q", "--all", "--json"),
        b("read", "q", "-t"),
        a("read", "q", "-m", "{id2}"),
        b("read", "q", "--all", "--json"),
        a("list", "--stats"),
        b("write", "q", "back"),
        a("move", "q", "r", "--json"),
        b("stats", "r", "--json"),
        b("broadcast", "all"),
        a("list", "--stats"),
        b("alias", "add", "al", "r"),
        a("read", "@al", "--all"),
        a("rename", "r", "r2"),
        b("alias", "list"),
        a("--vacuum"),
        b("--status"),
        a("dump"),
        b("dump"),
        b("--cleanup"),
        a("peek", "q"),
        a("load", stdin_from=21),
        b("peek", "q", "--all"),
        a("--cleanup"),
    ),
]


@pytest.mark.parametrize("sc", CROSSOVER, ids=lambda s: s.name)
def test_crossover_on_one_schema(pg_dsn: str, sc: Scenario) -> None:
    check_pg_crossover(sc, pg_dsn)


# ------------------------------------------------------------------ the move from a file to the server
def _run(
    argv: list[str], cwd: Path, env: dict[str, str], stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, cwd=cwd, env=env, input=stdin, capture_output=True, timeout=60, check=False)


def _messages(dump: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in dump.splitlines() if json.loads(line)["type"] != "header"]


def test_the_documented_move_from_sqlite_to_postgresql_and_back(tmp_path: Path, pg_dsn: str) -> None:
    """docs/postgres.md's recipe: ``sansio-broker dump > all.dump`` by the file, ``load < all.dump`` into the server."""
    sansio = sansio_command()
    plain = base_env()
    for queue, body in [("jobs", "first"), ("jobs", "second"), ("jobs", "line\nbreak"), ("mail", "m1")]:
        assert _run([*sansio, "write", queue, "-"], tmp_path, plain, body.encode()).returncode == 0
    assert _run([*sansio, "read", "jobs"], tmp_path, plain).stdout == b"first\n"
    assert _run([*sansio, "alias", "add", "inbox", "mail"], tmp_path, plain).returncode == 0
    shell = _run(["sh", "-c", f"{' '.join(sansio)} dump > all.dump"], tmp_path, plain)
    assert shell.returncode == 0, shell.stderr
    from_file = (tmp_path / "all.dump").read_bytes()

    with fresh_schema(pg_dsn, prefix="move", create=False) as schema:
        server = base_env(pg_env(pg_dsn, schema))
        shell = _run(["sh", "-c", f"{' '.join(sansio)} load < all.dump"], tmp_path, server)
        assert shell.returncode == 0, shell.stderr
        on_server = _run([*sansio, "dump"], tmp_path, server).stdout
        assert _messages(on_server) == _messages(from_file)
        # simplebroker's own broker sees the same queues, pending messages and alias
        ref = base_env(pg_env(pg_dsn, schema))
        assert _run([*broker_command(), "peek", "jobs", "--all"], tmp_path, ref).stdout == b"second\nline\nbreak\n"
        assert _run([*broker_command(), "read", "@inbox"], tmp_path, ref).stdout == b"m1\n"
        listed = _run([*sansio, "list", "--stats"], tmp_path, server).stdout
        assert listed == _run([*broker_command(), "list", "--stats"], tmp_path, ref).stdout
        assert listed.startswith(b"jobs: 2\nmail: 0 (1 total, 1 claimed)\n")
        # and back: the server's dump into a new file
        back = tmp_path / "back"
        back.mkdir()
        (back / "all.dump").write_bytes(on_server)
        shell = _run(["sh", "-c", f"{' '.join(sansio)} load < all.dump"], back, plain)
        assert shell.returncode == 0, shell.stderr
        assert _messages(_run([*sansio, "dump"], back, plain).stdout) == _messages(on_server)
        assert _run([*sansio, "read", "jobs", "--all"], back, plain).stdout == b"second\nline\nbreak\n"


def test_broker_dump_of_a_file_loads_into_the_server(tmp_path: Path, pg_dsn: str) -> None:
    """Mixed: broker's SQLite dump, loaded by sansio-broker into PostgreSQL, read by broker there."""
    plain = base_env()
    for body in ("x", "y"):
        assert _run([*broker_command(), "write", "q", body], tmp_path, plain).returncode == 0
    dump = _run([*broker_command(), "dump"], tmp_path, plain).stdout
    with fresh_schema(pg_dsn, prefix="move", create=False) as schema:
        server = base_env(pg_env(pg_dsn, schema))
        loaded = _run([*sansio_command(), "load"], tmp_path, server, dump)
        assert loaded.returncode == 0, loaded.stderr
        assert _run([*broker_command(), "read", "q", "--all"], tmp_path, server).stdout == b"x\ny\n"


# ------------------------------------------------------------------ start-up
def test_a_sqlite_command_never_imports_psycopg(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom sansio_broker.adapters.cli import main\n"
        "rc = main(['write', 'q', 'a'])\n"
        "assert rc == 0, rc\n"
        "loaded = [m for m in sys.modules if m.startswith('psycopg') or m.endswith('cli._postgres')]\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=base_env(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()


def test_redaction_is_brokers() -> None:
    from simplebroker._targets import redact_backend_target

    from sansio_broker.adapters.cli._postgres import redacted

    for target in (
        "postgresql://u:secret@h:5432/db",
        "postgresql://u@h/db",
        "postgres://u:p%40ss@[::1]:5432/db?sslmode=require",
        "host=h port=5 dbname=d user=u password=secret",
        "host=h password='a b' user=u",
        "postgresql://u:pa ss@h/db",
        "postgresql:///db?host=/tmp&password=x",
    ):
        assert redacted(target) == redact_backend_target(target), target


def test_dump_header_names_postgres(tmp_path: Path, pg_dsn: str) -> None:
    with fresh_schema(pg_dsn, prefix="hdr", create=False) as schema:
        env = base_env(pg_env(pg_dsn, schema))
        _run([*sansio_command(), "write", "q", "x"], tmp_path, env)  # creates the schema
        header = json.loads(_run([*sansio_command(), "dump"], tmp_path, env).stdout.splitlines()[0])
        assert header["backend"] == "postgres"


# ------------------------------------------------------------------ watch across programs (LISTEN/NOTIFY or polling)
WATCH_PAIRS = {
    "broker-watches-sansio-writes": (broker_command, sansio_command),
    "sansio-watches-broker-writes": (sansio_command, broker_command),
    "sansio-watches-sansio-writes": (sansio_command, sansio_command),
}


@pytest.mark.parametrize("pair", list(WATCH_PAIRS))
@pytest.mark.parametrize("mode", [[], ["--peek"], ["--move", "w2"]], ids=["consume", "peek", "move"])
def test_watch_on_one_schema_sees_the_other_programs_writes(
    tmp_path: Path, pg_dsn: str, pair: str, mode: list[str]
) -> None:
    import queue
    import signal
    import threading

    watcher, writer = (f() for f in WATCH_PAIRS[pair])
    with fresh_schema(pg_dsn, prefix="watch", create=False) as schema:
        env = base_env(pg_env(pg_dsn, schema))
        assert _run([*writer, "write", "w", "before"], tmp_path, env).returncode == 0
        watch = subprocess.Popen(
            [*watcher, "watch", "w", *mode], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        lines: queue.Queue[bytes] = queue.Queue()

        def pump() -> None:
            assert watch.stdout is not None
            for line in iter(watch.stdout.readline, b""):
                lines.put(line)
            lines.put(b"")

        threading.Thread(target=pump, daemon=True).start()
        try:
            got = [lines.get(timeout=30)]
            assert _run([*writer, "write", "w", "after"], tmp_path, env).returncode == 0
            got.append(lines.get(timeout=30))
        finally:
            watch.send_signal(signal.SIGTERM)
            rc = watch.wait(timeout=30)
        assert rc == 0
        assert got == [b"before\n", b"after\n"]
        stats = _run([*broker_command(), "list", "--stats"], tmp_path, env).stdout
        expected = {
            "": b"w: 0 (2 total, 2 claimed)\n\nTotal claimed messages: 2/2\n",
            "--peek": b"w: 2\n",
            "--move": b"w2: 2\n",
        }[mode[0] if mode else ""]
        assert stats == expected

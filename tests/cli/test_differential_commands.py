"""Every command and flag of issue 12, the same argument lists through ``broker`` and ``sansio-broker``.

Each scenario runs in a fresh directory per program (``differential.check_differential``); exit codes and stdout
must match exactly after ID normalisation. Global flags come before the subcommand (``broker`` refuses them after).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.differential import Scenario, check_differential, sansio_command, scenario, step

TAB = "\t"

SCENARIOS = [
    scenario(
        "write-forms",
        step("write", "q1", "hello"),
        step("write", "-t", "q1", "third"),
        step("write", "q1", "fourth", "--json"),
        step("write", "q1", "wörld ☃ 日本"),
        step("write", "q1", "-t", stdin="piped\n"),  # no message, stdin not a terminal: stdin, unchanged
        step("write", "q1", "-", stdin="line1\nline2\n"),
        step("write", "q1", "argwins", stdin="ignored"),
        step("write", "q1", stdin=b""),  # empty stdin: an empty message
        step("write", "q1", "--json", "--"),
        step("write", "q1", "--", "-t"),
        step("write", "q1", "--weird"),
        step("write", "q1", f"tab{TAB}here"),
        step("write", "q1", "crlf\r\n"),
        step("write", "q1", 'ctl\x01 "quoted" back\\slash {braces}'),
        step("write", "q1", "-t", "--", "--all"),
        step("peek", "q1", "--all", "--json"),
        step("peek", "q1", "--all", "-t"),  # newline warning on stderr
        step("-q", "peek", "q1", "--all"),  # -q: no warning
        step("read", "q1", "--all"),
        step("list", "--stats"),
    ),
    scenario(
        "write-keep-newest",
        *(step("write", "q", f"m{i}") for i in range(1, 5)),
        step("write", "q", "m5", "--keep-newest", "2"),
        step("list", "--stats"),
        step("peek", "q", "--all"),
        step("write", "q", "m6", "--keep-newest=1", "-t"),
        step("peek", "q", "--all", "-t"),
        step("write", "--keep-newest", "0003", "q", "m7"),
        step("write", "q", "m8", "--keep-newest", "3", "--json"),
        step("peek", "q", "--all"),
        step("stats", "q"),
        step("peek", "q", "--all", "--include-claimed"),
    ),
    scenario(
        "read-peek-selection",
        step("write", "-t", "q", "a"),
        step("write", "-t", "q", "b"),
        step("write", "-t", "q", "c"),
        step("peek", "q"),
        step("peek", "q", "-t"),
        step("peek", "q", "--json"),
        step("peek", "q", "--json", "-t"),  # --json wins over -t
        step("peek", "q", "--newest", "-t"),
        step("peek", "q", "--all", "--after", "{id1}"),
        step("peek", "q", "--all", "--before", "{id3}"),
        step("peek", "q", "--after", "{id1}", "--before", "{id3}"),
        step("peek", "q", "--after", "{id1}", "--newest"),
        step("peek", "q", "--before", "{id3}", "--newest", "--json"),
        step("peek", "q", "--all", "--after", "2099-01-15"),
        step("peek", "q", "--after", "1"),
        step("peek", "q", "--after", "20240115"),
        step("peek", "q", "--after", "2024-01-15 10:00:00+02:00"),
        step("peek", "q", "--after", "2024-01-15T10:00:00Z"),
        step("peek", "q", "--after", "1705329000s", "-t"),
        step("peek", "q", "--after", "1705329000000ms"),
        step("peek", "q", "--after", "1705329000000000000ns"),
        step("peek", "q", "--all", "--before", "1705329000"),
        step("peek", "q", "-m", "{id2}"),
        step("peek", "q", "-m", " {id2} ", "--json"),
        step("peek", "q", "--message", "1234567890123456789"),
        step("read", "q", "-m", "{id2}", "-t"),
        step("read", "q", "-m", "{id2}"),
        step("peek", "q", "-m", "{id2}"),
        step("peek", "q", "-m", "{id2}", "--include-claimed"),
        step("peek", "q", "--all", "--include-claimed", "-t"),
        step("peek", "q", "--include-claimed", "--newest"),
        step("read", "q", "--newest", "--json"),
        step("read", "q"),
        step("read", "q"),
        step("read", "nosuch"),
        step("peek", "nosuch", "--all"),
        step("peek", "q", "--include-claimed", "--all", "--after", "{id1}", "--before", "{id3}"),
    ),
    scenario(
        "read-all-forms",
        *(step("write", "-t", "q", f"m{i}") for i in range(6)),
        step("write", "q", "multi\nline"),
        step("read", "q", "--all", "--after", "{id1}", "--before", "{id5}"),
        step("read", "q", "--all", "-t", "--before", "{id3}"),
        step("read", "q", "--after", "{id5}", "--json"),
        step("read", "q", "--all", "--json"),
        step("read", "q", "--all"),
        step("peek", "q", "--all", "--include-claimed", "--json"),
        step("list", "--stats"),
    ),
    scenario(
        "list",
        step("list"),
        step("list", "--stats"),
        step("write", "a.1", "x"),
        step("write", "a.2", "y"),
        step("write", "a.2", "y2"),
        step("write", "b", "z"),
        step("write", "A_upper", "u"),
        step("read", "a.2"),
        step("write", "gone", "g"),
        step("read", "gone"),
        step("list"),
        step("list", "--stats"),
        step("list", "--json"),
        step("list", "--stats", "--json"),
        step("list", "--prefix", "a."),
        step("list", "--prefix", "a", "--stats"),
        step("list", "-p", "a.*"),
        step("list", "--pattern", "*b", "--json"),
        step("list", "-p", "a*"),  # case-sensitive
        step("list", "--prefix", "zz"),
        step("list", "--stat"),  # subcommand options may be abbreviated
    ),
    scenario(
        "exists-stats",
        step("write", "q", "one"),
        step("write", "q", "two"),
        step("exists", "q"),
        step("exists", "zz"),
        step("exists", "q", "--json"),
        step("exists", "zz", "--json"),
        step("stats", "q"),
        step("stats", "q", "--json"),
        step("read", "q"),
        step("stats", "q"),
        step("stats", "q", "--json"),
        step("stats", "zz"),
        step("stats", "zz", "--json"),
        step("read", "q"),
        step("exists", "q", "--json"),  # only claimed rows: still exists
        step("stats", "q"),
    ),
    scenario(
        "delete",
        step("write", "-t", "q", "a"),
        step("write", "-t", "q", "b"),
        step("write", "b", "x"),
        step("write", "c", "y"),
        step("read", "q"),
        step("delete", "q", "-m", "{id1}"),  # a claimed row: physically deleted
        step("delete", "q", "--message", "{id1}"),
        step("peek", "q", "--all", "--include-claimed"),
        step("delete", "b"),
        step("delete", "b"),
        step("delete", "nothere"),
        step("list"),
        step("delete", "--all"),
        step("delete", "--all"),
        step("list", "--stats"),
    ),
    scenario(
        "move",
        step("write", "a.1", "x"),
        step("write", "a.1", "y"),
        step("write", "a.1", "z"),
        step("write", "a.1", "w"),
        step("write", "-t", "b", "piped\n"),
        step("write", "-t", "b", "b2"),
        step("move", "a.1", "c"),  # prints the moved body
        step("move", "a.1", "c", "--json"),
        step("move", "a.1", "c", "-t"),
        step("move", "a.1", "c", "--all", "-t"),
        step("move", "a.1", "c", "--all"),
        step("move", "a.1", "c"),
        step("move", "b", "c", "--json", "--newest"),
        step("move", "b", "d", "--after", "1", "--json"),
        step("move", "nothere", "c"),
        step("peek", "c", "--all", "-t"),
        step("write", "-t", "src", "s1"),
        step("write", "-t", "src", "s2"),
        step("write", "-t", "src", "s3"),
        step("write", "-t", "src", "s4"),
        step("move", "src", "dst", "--after", "{id7}", "--before", "{id10}", "-t"),
        step("move", "src", "dst", "--all", "--after", "{id7}", "--json"),
        step("move", "src", "dst", "--before", "{id8}", "--newest"),
        step("read", "dst"),  # claims s1...
        step("move", "dst", "e", "-m", "{id7}"),  # ...which -m still moves, and it stays claimed
        step("peek", "e", "--all"),
        step("peek", "e", "--all", "--include-claimed", "-t"),
        step("move", "dst", "e", "--message", "{id7}"),
        step("list", "--stats"),
    ),
    scenario(
        "rename",
        step("write", "tasks", "t1"),
        step("write", "tasks", "t2"),
        step("alias", "add", "w", "tasks"),
        step("alias", "add", "w2", "tasks"),
        step("write", "zz", "occupied"),
        step("rename", "tasks", "jobs", "--json"),
        step("alias", "list"),
        step("rename", "jobs", "tasks", "--no-retarget-aliases", "--json"),
        step("alias", "list"),
        step("rename", "nothere", "zz2", "--json"),
        step("rename", "nothere", "zz2"),
        step("rename", "tasks", "zz"),
        step("rename", "tasks", "@w"),  # into the alias target (jobs, empty)
        step("rename", "@w", "x", "--json"),
        step("rename", "x", "y"),
        step("alias", "list"),
        step("peek", "y", "--all"),
        step("list"),
    ),
    scenario(
        "broadcast",
        step("broadcast", "hi"),  # no queue: rc 2
        step("write", "a.1", "x"),
        step("write", "a.2", "x"),
        step("write", "b", "x"),
        step("write", "claimedonly", "x"),
        step("read", "claimedonly"),
        step("broadcast", "all"),
        step("broadcast", "-p", "a.*", "pat"),
        step("broadcast", "pat2", "--pattern", "a.1"),
        step("broadcast", "--queue", "b", "--queue", "nothere", "tob"),
        step("broadcast", "--queue", "nothere", "x"),
        step("broadcast", "-p", "zz*", "x"),
        step("broadcast", "--", "-dash"),
        step("broadcast", "-", stdin="from stdin\n"),
        step("broadcast", stdin="implicit stdin"),
        step("peek", "a.1", "--all", "-t"),
        step("peek", "a.2", "--all", "--json"),
        step("peek", "b", "--all", "--json"),
        step("peek", "claimedonly", "--all", "--json"),
        step("list", "--stats"),
    ),
    scenario(
        "dump",
        step("dump"),  # empty broker: the header alone
        step("write", "jobs", "j1"),
        step("write", "jobs", 'ünï "q"\ttab'),
        step("write", "logs.a", "l1"),
        step("write", "logs.b", "lb"),
        step("read", "logs.b"),  # a fully claimed queue: absent from the dump
        step("write", "tmp", "x\ny"),
        step("write", "jobs", "j3"),
        step("read", "jobs", "--newest"),  # a claimed row inside a queue: skipped
        step("alias", "add", "w", "jobs"),
        step("alias", "add", "lg", "logs.a"),
        step("dump"),
        step("dump", "--include", "logs*"),
        step("dump", "--include", "w"),
        step("dump", "--exclude", "jobs"),
        step("dump", "--include", "logs*", "--include", "tmp", "--exclude", "logs.a"),
        step("dump", "--include", "nothing"),
        step("dump", "--exclude", "*"),
    ),
    scenario(
        "load",
        step("write", "jobs", "j1"),
        step("write", "jobs", "wörld ☃"),
        step("write", "other", "o\n1"),
        step("alias", "add", "w", "jobs"),
        step("dump"),
        step("-f", "copy.db", "load", stdin_from=4),
        step("-f", "copy.db", "dump"),  # last_ts: header + 1 after a reload
        step("-f", "copy.db", "peek", "@w", "--all", "-t"),
        step("-f", "copy.db", "write", "-t", "jobs", "new"),  # after the loaded IDs
        step("-f", "copy.db", "list", "--stats"),
        step("-f", "copy.db", "load", stdin_from=4),  # duplicates: refused
        step("-f", "copy.db", "alias", "list"),
        step("-f", "copy2.db", "load", "--force", stdin_from=4),
        step("-f", "copy2.db", "dump", "--exclude", "other"),
        step(
            "-f",
            "copy3.db",
            "load",
            stdin=b"\n" + b'{"backend": "sqlite", "format": "simplebroker-dump", '
            b'"last_ts": "1796424061698228224", "type": "header", "version": 1}\n\n'
            b'{"body": "b", "id": 1796424061698228224, "queue": "q", "type": "message", "claimed": 1}\n',
        ),
        step("-f", "copy3.db", "peek", "q", "--all", "-t"),
        step("-f", "copy3.db", "--status"),
    ),
    scenario(
        "alias",
        step("write", "tasks", "t1"),
        step("write", "tasks2", "shadowed"),
        step("alias", "add", "w", "tasks"),
        step("alias", "add", "tasks2", "tasks"),  # shadows a queue with messages: a warning, rc 0
        step("alias", "add", "tasks3", "tasks", "-q"),
        step("alias", "list"),
        step("alias", "list", "--target", "tasks"),
        step("alias", "list", "--target", "nothing"),
        step("alias", "list", "--target", "w"),  # literal, not resolved
        step("peek", "@w"),
        step("peek", "w"),  # a plain name is the literal queue
        step("peek", "tasks2"),
        step("write", "@w", "via-alias"),
        step("write", "-t", "@tasks2", "via2"),
        step("peek", "tasks", "--all"),
        step("exists", "@w", "--json"),
        step("stats", "@w", "--json"),
        step("read", "@w", "-t"),
        step("move", "@w", "@tasks3"),  # same queue after resolution
        step("move", "@w", "out", "--json"),
        step("write", "x", "1"),
        step("move", "x", "@w"),
        step("peek", "tasks", "--all"),
        step("delete", "@w", "-m", "{id1}"),
        step("delete", "@w"),
        step("exists", "@w"),
        step("alias", "remove", "w"),
        step("alias", "list"),
        step("peek", "@w"),
        step("alias", "remove", "tasks2"),
        step("alias", "remove", "tasks3"),
        step("alias", "list"),
        step("dump"),
    ),
    scenario(
        "init",
        step("init"),
        step("init"),
        step("list"),
        step("write", "q", "x"),
        step("init"),
        step("peek", "q"),
        step("init", cwd="sub"),
        step("-d", "sub", "peek", "q"),
        dirs=["sub"],
    ),
    scenario(
        "init-junk",
        step("init"),
        step("list"),
        step("peek", "q", "--json"),  # (write and --status retry for seconds on junk in broker: left out)
        files={".broker.db": b"this is not a database at all" * 10},
    ),
    scenario(
        "global-dir-file",
        step("-d", "sub", "write", "q", "in-sub"),
        step("--dir=sub", "peek", "q"),
        step("--dir", "{tmp}/sub", "peek", "q", "-t"),
        step("peek", "q"),  # cwd's own .broker.db: empty
        step("-f", "x.db", "write", "q", "in-x"),
        step("-fx.db", "peek", "q"),
        step("--file", "x.db", "peek", "q"),
        step("--file={tmp}/x.db", "peek", "q"),
        step("-d", "sub", "-f", "y.db", "write", "q", "sub-y"),
        step("-d", "sub", "-f", "{tmp}/sub/y.db", "peek", "q"),
        step("-f", "sub/y.db", "peek", "q"),
        step("list"),
        step("-q", "write", "q", "multi\nline"),
        step("-q", "read", "q"),
        step("--quiet", "-d", "sub", "peek", "q", "--all"),
        dirs=["sub"],
    ),
    scenario(
        "global-status-vacuum-cleanup",
        step("-f", "new.db", "--status", "--json"),
        step("-f", "new.db", "--status"),
        step("--status"),
        step("write", "q", "a"),
        step("write", "q", "b"),
        step("write", "q", "c"),
        step("read", "q"),
        step("--status"),
        step("--status", "--json"),
        step("--json", "--status"),
        step("--vacuum"),
        step("list", "--stats"),
        step("--vacuum"),
        step("read", "q"),
        step("--vacuum", "--compact"),
        step("--vacuum", "--json"),
        step("-q", "--vacuum", "--compact"),
        step("--vacuum", "--compact", "--json"),
        step("-f", "other.db", "--vacuum"),
        step("--status", "--json"),
        step("list", "--stats"),
        step("-f", "new.db", "--cleanup"),
        step("-f", "new.db", "--cleanup", "--json"),
        step("--cleanup", "--json", "-f", "/nonexistent-dir-cli-test/x.db"),
        step("--cleanup"),
        step("list"),
    ),
    scenario(
        "global-version-help",
        step("--version", loose=True),
        step("--version", "list", loose=True),  # the version, the command not run
        step("-f", "v.db", "--version", "write", "q", "x", loose=True),
        step("-f", "v.db", "peek", "q"),
        step(loose=True),  # no arguments: help
        step("-q", loose=True),  # global flags only: help
        step("-h", loose=True),
        step("--help", loose=True),
        step("write", "--help", loose=True),
        step("broadcast", "--help", loose=True),
        step("alias", "add", "-h", loose=True),
    ),
    scenario(
        "env-db-name",
        step("write", "q", "x", env={"BROKER_DEFAULT_DB_NAME": "my.db"}),
        step("peek", "q", env={"BROKER_DEFAULT_DB_NAME": "my.db"}),
        step("peek", "q"),
        step("-f", "my.db", "peek", "q", "-t"),
        step("write", "q", "y", env={"BROKER_DEFAULT_DB_NAME": "sub/n.db"}),
        step("peek", "q", "--all", env={"BROKER_DEFAULT_DB_NAME": "sub/n.db"}),
        step("-d", "sub", "-f", "n.db", "peek", "q"),
        step("write", "q", "z", env={"BROKER_DEFAULT_DB_NAME": "nosuchdir/n.db"}),
        dirs=["sub"],
    ),
    scenario(
        "env-db-location",
        step("write", "q", "x", env={"BROKER_DEFAULT_DB_LOCATION": "{tmp}/loc"}),
        step("peek", "q", env={"BROKER_DEFAULT_DB_LOCATION": "{tmp}/loc"}),
        step("-d", "loc", "peek", "q", "-t"),
        step("peek", "q"),
        step("-d", "proj", "list", env={"BROKER_DEFAULT_DB_LOCATION": "{tmp}/loc"}),  # explicit -d wins
        step("-f", "z.db", "write", "q", "zz", env={"BROKER_DEFAULT_DB_LOCATION": "{tmp}/loc"}),
        step("-d", "loc", "-f", "z.db", "peek", "q"),
        step("list", env={"BROKER_DEFAULT_DB_LOCATION": "{tmp}/loc", "BROKER_DEFAULT_DB_NAME": "z.db"}),
        dirs=["loc", "proj"],
    ),
    scenario(
        "env-max-message-size",
        step("write", "q", "12345", env={"BROKER_MAX_MESSAGE_SIZE": "5"}),
        step("write", "q", "123456", env={"BROKER_MAX_MESSAGE_SIZE": "5"}),
        step("write", "q", "-", stdin="abcde", env={"BROKER_MAX_MESSAGE_SIZE": "5"}),
        step("write", "q", "-", stdin="abcdef", env={"BROKER_MAX_MESSAGE_SIZE": "5"}),
        step("write", "q", "ééé", env={"BROKER_MAX_MESSAGE_SIZE": "5"}),  # bytes, not characters
        step("write", "q", "--json", "123456", env={"BROKER_MAX_MESSAGE_SIZE": "5"}, json_stderr=True),
        step("broadcast", "123456", env={"BROKER_MAX_MESSAGE_SIZE": "5"}),
        step("peek", "q", "--all", "--json"),
    ),
    scenario(
        "env-project-scope",
        step("init", cwd="proj"),
        step("write", "q", "fromb", cwd="proj/a/b", env={"BROKER_PROJECT_SCOPE": "1"}),
        step("peek", "q", cwd="proj/a/b"),  # without the scope: the local file
        step("peek", "q", cwd="proj/a/b", env={"BROKER_PROJECT_SCOPE": "yes"}),
        step("peek", "q", cwd="proj"),
        step("-d", "proj/a", "write", "q", "local-a", env={"BROKER_PROJECT_SCOPE": "true"}),
        step("peek", "q", "--all", cwd="proj"),
        step("-f", "own.db", "write", "q", "own", cwd="proj/a/b", env={"BROKER_PROJECT_SCOPE": "1"}),
        step("peek", "q", "--all", cwd="proj/a/b", env={"BROKER_PROJECT_SCOPE": "1"}),
        step("-f", "own.db", "peek", "q", cwd="proj/a/b"),
        dirs=["proj/a/b"],
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_same_as_broker(sc: Scenario) -> None:
    ref = check_differential(sc)
    assert any(r.stdout for r in ref) or sc.name.startswith(("init", "env-max")), "broker printed nothing at all"
    if sc.name == "read-peek-selection":  # a sample of what broker printed: the harness ran and normalised it
        assert [r.norm_stdout for r in ref[3:6]] == [
            "a\n",
            f"<ID 1>{TAB}a\n",
            '{"message": "a", "timestamp": "<ID 1>"}\n',
        ]
        assert [r.rc for r in ref[-4:-1]] == [2, 2, 2]


def test_global_flags_after_the_subcommand_are_ours(tmp_path: Path) -> None:
    """An intended superset of ``broker``: ``sansio-broker peek q -f x.db`` reads ``x.db`` (broker refuses it)."""
    import subprocess

    from tests.cli.differential import base_env, subject_is_broker

    if subject_is_broker():
        pytest.skip("broker refuses global flags after the subcommand")
    run = [*sansio_command()]
    env = base_env()
    subprocess.run([*run, "write", "q", "hello"], cwd=tmp_path, env=env, check=True)
    subprocess.run([*run, "-f", "x.db", "write", "q", "in-x"], cwd=tmp_path, env=env, check=True)
    got = subprocess.run([*run, "peek", "q", "-f", "x.db"], cwd=tmp_path, env=env, capture_output=True, check=False)
    assert (got.returncode, got.stdout) == (0, b"in-x\n")
    got = subprocess.run([*run, "peek", "q", "--all", "-q"], cwd=tmp_path, env=env, capture_output=True, check=False)
    assert (got.returncode, got.stdout) == (0, b"hello\n")

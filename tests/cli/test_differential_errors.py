"""Error cases, differentially: exit codes (1 for every error, 2 for "nothing matched"), stdout, and stderr.

stderr compares loosely (present on both; ``error`` on both where ``broker`` says it), except the JSON error
objects of ``--json`` commands, compared exactly after normalisation (``{"error": CODE, "message": ...,
"retryable": false}``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.cli.differential import Scenario, Step, check_differential, last_json, scenario, step

HEADER = '{"backend": "sqlite", "format": "simplebroker-dump", "last_ts": "%s", "type": "header", "version": 1}\n'
GOOD_TS = "1796424061698228224"
FUTURE_TS = f"{(time.time_ns() + 86_400 * 10**9) & ~0xFFF:019d}"  # a day ahead: past the 300 s skew allowance
FAR_FUTURE_TS = "4000000000000000000"  # year ~2096
MSG = '{"body": "b", "id": "%s", "queue": "%s", "type": "message"}\n'


def j(*argv: str, stdin: bytes | None = None) -> Step:
    """A step whose stderr is a JSON error object."""
    return step(*argv, stdin=stdin, json_stderr=True)


SCENARIOS: list[Scenario] = [
    scenario(
        "usage",
        step("nosuchcmd"),
        step("read"),
        step("write"),
        step("move", "q"),
        step("read", "q", "extra"),
        step("--stat"),
        step("-d"),
        step("-f"),
        step("alias"),
        step("alias", "frob"),
        step("delete"),
        step("delete", "q", "--all"),
        step("list", "--prefix", "-x"),
        step("list", "--prefix", "a", "-p", "a*"),
        step("broadcast", "x", "-p", "a.*", "--queue", "b"),
        step("watch", "q", "--peek", "--move", "x"),
        step("watch", "q", "--before", "1"),
        step("watch", "q", "--move", "q2", "--after", "1"),
        step("peek", "q", "--include-claimed-typo"),
        step("read", "q", "--include-claimed"),  # peek only
        step("read", "q", "--json", "--bogus"),  # argparse errors are text even with --json
        step("list"),  # nothing above created a queue
    ),
    scenario(
        "global-flag-rules",
        step("--json", "list"),
        step("--json"),
        step("--compact"),
        step("--compact", "--json"),
        step("--status", "write", "q", "x"),
        j("--status", "--json", "write", "q", "x"),
        j("--vacuum", "--compact", "--json", "list"),
        step("--vacuum", "list"),
        step("--cleanup", "write", "q", "x"),
        j("--cleanup", "--json", "peek", "q"),
        step("-d", ".", "init"),
        step("-f", "x.db", "init"),
        # (root flags after the subcommand, e.g. ``peek q -f x.db``: broker refuses them, ours accepts: intended)
        step("list"),
    ),
    scenario(
        "message-data-protection",
        step("write", "q", "--all"),
        step("write", "q", "-m5"),
        step("write", "q", "x", "--keep"),
        step("broadcast", "--all"),
        step("write", "--", "-dash", "x"),
        step("peek", "q", "--all"),
    ),
    scenario(
        "keep-newest",
        step("write", "q", "x", "--keep-newest", "0"),
        step("write", "q", "x", "--keep-newest", "10000"),
        step("write", "q", "x", "--keep-newest", "-1"),
        step("write", "q", "x", "--keep-newest", "abc"),
        step("write", "q", "x", "--keep-newest", "\uff11"),  # a full-width digit
        step("write", "q", "x", "--keep-newest", ""),
        step("write", "q", "x", "--keep-newest", "1", "--keep-newest", "2"),
        j("write", "q", "x", "--keep-newest", "0", "--json"),
        step("write", "q", "x", "--keep-newest"),
        step("list"),
    ),
    scenario(
        "queue-names",
        step("read", "bad name"),
        j("read", "bad name", "--json"),
        step("write", "a" * 513, "x"),
        step("write", "a" * 512, "x"),
        step("write", ".dot", "x"),
        step("write", "é", "x"),
        step("write", "", "x"),
        j("write", "bad/name", "x", "--json"),
        step("peek", "@"),
        step("peek", "@nope"),
        j("peek", "@nope", "--json"),
        j("exists", "bad name", "--json"),
        j("stats", "bad name", "--json"),
        j("list", "--prefix", ".x", "--json"),
        step("list", "--prefix", "bad name"),
        step("broadcast", "--queue", "@al", "x"),
        step("broadcast", "--queue", "bad name", "x"),
        j("rename", "bad name", "x", "--json"),
        step("move", "q", "bad name"),
        step("delete", "bad name"),
        step("watch", "bad name"),
        step("dump", "--include", "[["),
        step("list"),
    ),
    scenario(
        "timestamps",
        step("write", "q", "a"),
        step("peek", "q", "--after", "1.5"),
        step("peek", "q", "--after", "2024-01-15T10:00:00.5"),
        j("peek", "q", "--after", "abc", "--json"),
        step("peek", "q", "--after", "-5"),
        step("peek", "q", "--after", "1e9"),
        step("peek", "q", "--after", ""),
        step("peek", "q", "--after", "   "),
        step("peek", "q", "--after", "99999999999999999999"),
        step("peek", "q", "--after", "9223372036854775808"),
        step("peek", "q", "--after", "1x"),
        step("peek", "q", "--before", "12ms3"),
        j("read", "q", "--before", "abc", "--json"),
        j("move", "q", "r", "--after", "abc", "--json"),
        step("watch", "q", "--after", "abc"),
        step("peek", "q", "--after", "1" * 129),
        step("peek", "q", "--all", "--json"),  # nothing consumed by the failures
    ),
    scenario(
        "message-ids",
        step("write", "-t", "q", "a"),
        step("peek", "q", "-m", "123"),
        j("peek", "q", "-m", "123", "--json"),
        j("read", "q", "-m", "abc", "--json"),
        j("move", "q", "r", "-m", "12", "--json"),
        step("delete", "q", "-m", "12"),
        step("peek", "q", "-m", "9999999999999999999"),  # >= 2**63
        step("peek", "q", "-m", ""),
        step("peek", "q", "-m", "1234567890123456789"),  # well-formed, absent: rc 2
        step("peek", "q", "-m", "{id1}", "--all"),
        step("read", "q", "-m", "{id1}", "--after", "1"),
        step("peek", "q", "-m", "{id1}", "--before", "1"),
        j("peek", "q", "-m", "{id1}", "--all", "--json"),
        step("move", "q", "q2", "-m", "{id1}", "--all"),
        step("move", "q", "q2", "-m", "{id1}", "--after", "1"),
        j("move", "q", "q2", "-m", "{id1}", "--before", "1", "--json"),
        step("delete", "--all", "-m", "{id1}"),
        step("peek", "q", "--all", "-t"),
    ),
    scenario(
        "conflicts",
        step("write", "q", "a"),
        step("write", "zz", "b"),
        step("peek", "q", "--all", "--newest"),
        j("read", "q", "--all", "--newest", "--json"),
        step("move", "q", "q2", "--all", "--newest"),
        step("move", "q", "q"),
        j("move", "q", "q", "--json"),
        step("rename", "q", "q"),
        j("rename", "q", "q", "--json"),
        step("rename", "q", "zz"),
        j("rename", "q", "zz", "--json"),
        step("alias", "add", "w", "q"),
        step("move", "@w", "q"),
        step("rename", "@w", "q"),
        step("list", "--stats"),
    ),
    scenario(
        "alias-errors",
        step("write", "tasks", "t"),
        step("alias", "add", "same", "same"),
        step("alias", "add", "w2", "@tasks"),
        step("alias", "add", "@w2", "tasks"),
        step("alias", "add", "w2", ""),
        step("alias", "add", "w", "tasks"),
        step("alias", "add", "w", "tasks"),
        step("alias", "add", "w", "other"),
        step("alias", "add", "x", "w"),
        step("alias", "add", "tasks", "other"),
        step("alias", "add", "bad name", "tasks"),
        step("alias", "add", "w3"),
        step("alias", "remove", "nope"),
        step("alias", "remove", "@w"),
        step("alias", "list", "--target", "nothing"),
        step("alias", "list"),
    ),
    scenario(
        "stdin",
        step("write", "q", "-", stdin=b"\xff\xfe bad"),
        j("write", "q", "-", "--json", stdin=b"\xff"),
        step("write", "q", stdin=b"ok\xc3"),
        step("write", "q", tty=True),
        step("write", "q", "--json", tty=True, json_stderr=True),  # (``write q -`` would wait for the typist)
        step("broadcast", tty=True),
        step("load", tty=True),
        step("write", "q", "tty ignored", tty=True),
        step("peek", "q", "--all"),
    ),
    scenario(
        "load-errors",
        step("load", stdin=b'{"type": "message"}\n'),
        step("load", stdin=b"not json\n"),
        step("load", stdin=b""),
        step("load", stdin=b"\n\n"),
        step("load", stdin=(HEADER % GOOD_TS).replace(": 1}", ": 2}")),
        step("load", stdin=(HEADER % GOOD_TS).replace("simplebroker-dump", "other")),
        step("load", stdin=HEADER.replace('"last_ts": "%s", ', "")),
        step("load", stdin=HEADER % "12"),
        step("load", stdin=HEADER % FUTURE_TS),
        step("load", stdin=HEADER % GOOD_TS + "[1, 2]\n"),
        step("load", stdin=HEADER % GOOD_TS + MSG % ("1796424061698228225", "q")),
        step("load", stdin=HEADER % GOOD_TS + HEADER % GOOD_TS),
        step("load", stdin=HEADER % GOOD_TS + '{"type": "weird"}\n'),
        step("load", stdin=HEADER % GOOD_TS + MSG % ("1796424061698228224", "bad name")),
        step("load", stdin=HEADER % GOOD_TS + MSG % ("0000000000000000000", "q")),
        step("load", stdin=HEADER % GOOD_TS + '{"type": "message", "queue": "q", "id": "1796424061698228224"}\n'),
        step("load", stdin=HEADER % GOOD_TS + '{"type": "alias", "alias": "w"}\n'),
        step("load", stdin=HEADER % GOOD_TS + '{"alias": "w", "target": "w", "type": "alias"}\n'),
        step("list"),  # nothing loaded so far
        step("load", stdin=HEADER % GOOD_TS + '{"alias": "w", "target": "jobs", "type": "alias"}\n'),
        step("load", stdin=HEADER % GOOD_TS + '{"alias": "w", "target": "jobs", "type": "alias"}\n'),
        step("load", stdin=HEADER % GOOD_TS + MSG % ("1796424061698228224", "q")),
        step("load", stdin=HEADER % GOOD_TS + MSG % ("1796424061698228224", "q2")),
        step("load", "--force", stdin=HEADER % FUTURE_TS + MSG % (FUTURE_TS, "f")),
        step("load", "--bogus", stdin=HEADER % GOOD_TS),
        step("dump"),
    ),
    scenario(
        "load-force-far-future",  # broker goes on working on a file whose last_ts is decades ahead
        step("load", "--force", stdin=HEADER % FAR_FUTURE_TS + MSG % ("3999999999999999999", "f")),
        step("dump"),
        step("peek", "f", "-t"),
    ),
    scenario(
        "environment-errors",
        step("write", "q", "x", env={"BROKER_DEFAULT_DB_NAME": "../x.db"}),
        step("write", "q", "x", env={"BROKER_DEFAULT_DB_NAME": "a/b/c.db"}),
        step("write", "q", "x", env={"BROKER_DEFAULT_DB_LOCATION": "rel"}),
        step("write", "q", "x", env={"BROKER_MAX_MESSAGE_SIZE": "abc"}),
        step("write", "q", "x", env={"BROKER_BACKEND": "nope"}),
        step("list", env={"BROKER_BACKEND": "postgres"}),
        step("write", "q", "x", env={"BROKER_max_message_size": "5"}),  # a near miss: a warning only
        step("peek", "q"),
        step("list", env={"BROKER_DEFAULT_DB_LOCATION": "{tmp}/missing"}),
    ),
    scenario(
        "paths",
        step("-d", "/nonexistent-cli-diff", "list"),
        step("--status", "-f", "/nonexistent-cli-diff/dir/x.db"),
        j("--status", "--json", "-f", "/nonexistent-cli-diff/dir/x.db"),
        step("-f", "nosub/x.db", "write", "q", "x"),
        step("-d", "sub", "-f", "/elsewhere/x.db", "write", "q", "x"),
        step("-f", "bad name.db", "write", "q", "x"),
        step("-f", "../escape.db", "write", "q", "x"),
        step("-d", "file.txt", "list"),
        step("-f", "file.txt", "peek", "q"),
        step("list"),
        dirs=["sub"],
        files={"file.txt": b"plain text, not sqlite, long enough to have a header........"},
    ),
    scenario(
        "exit-2",
        step("read", "q"),
        step("peek", "q", "--all"),
        step("move", "q", "r"),
        step("move", "q", "r", "--all"),
        step("exists", "q"),
        step("delete", "q"),
        step("delete", "--all"),
        step("rename", "q", "r"),
        step("broadcast", "x"),
        step("alias", "list", "--target", "q"),
        step("read", "q", "--json"),
        step("peek", "q", "--after", "1"),
        step("write", "q", "x"),
        step("read", "q", "--all", "--after", "2099-01-01"),
        step("delete", "q", "-m", "1234567890123456789"),
        step("dump", "--include", "nothing"),  # dump never says "nothing": rc 0
        step("list", "--prefix", "zz"),
        step("stats", "zz"),
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_errors_as_broker(sc: Scenario) -> None:
    ref = check_differential(sc)
    assert any(r.rc == 1 and r.stderr for r in ref) or sc.name in ("exit-2", "load-force-far-future"), "no error"
    for s, r in zip(sc.steps, ref, strict=True):
        if s.json_stderr:  # the reference really printed a JSON error object there
            assert isinstance(last_json(r.norm_stderr), dict), (s.argv, r.norm_stderr)


def test_project_scope_without_a_database() -> None:
    """``BROKER_PROJECT_SCOPE`` with no ``.broker.db`` up the tree: an error on both (if none exists above us)."""
    import tempfile

    above = Path(tempfile.gettempdir()).resolve()
    if any((d / ".broker.db").exists() for d in (above, *above.parents)):
        pytest.skip("a .broker.db above the temporary directory would be found")
    sc = scenario(
        "project-scope-none",
        step("list", env={"BROKER_PROJECT_SCOPE": "1"}),
        step("write", "q", "x", env={"BROKER_PROJECT_SCOPE": "on"}),
        step("list"),
    )
    ref = check_differential(sc)
    assert [r.rc for r in ref] == [1, 1, 0]
    assert os.sep in ref[0].stderr.decode()  # the message names the directory searched

"""``main([...])`` end to end on real SQLite files: stdout, stderr, exit codes and what is left in the file.

In-process runs use capsys; the closed-pipe, Ctrl-C and watch signal rules
run real processes (marked slow), batched into one shell script where they can.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import sansio_broker
from sansio_broker.adapters.blocking import Broker
from sansio_broker.adapters.cli import main

ID = re.compile(r"\d{19}")


class FakeStdin:
    def __init__(self, data: bytes | None) -> None:
        self.buffer = io.BytesIO(data or b"")
        self.tty = data is None

    def isatty(self) -> bool:
        return self.tty


@pytest.fixture(autouse=True)
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    for key in list(os.environ):
        if key.startswith("BROKER_"):
            monkeypatch.delenv(key)
    monkeypatch.setattr(sys, "stdin", FakeStdin(None))
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
    if stdin is not None:
        sys.stdin = FakeStdin(stdin)  # type: ignore[assignment,unused-ignore]
    try:
        rc = main(list(argv))
    finally:
        sys.stdin = FakeStdin(None)  # type: ignore[assignment,unused-ignore]
    out, err = capsys.readouterr()
    return rc, out, err


def bodies(path: Path, queue: str = "q") -> list[str]:
    with Broker(path) as broker:
        return [m.body for m in broker.peek_many(queue, 1000)]


def test_write_read_peek_and_formats(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert cli(capsys, "write", "q", "hello") == (0, "", "")
    rc, out, _ = cli(capsys, "write", "-t", "q", "wörld ☃")
    assert rc == 0 and ID.fullmatch(out.strip())
    rc, out, _ = cli(capsys, "write", "q", "third", "--json")
    assert json.loads(out).keys() == {"timestamp"}
    assert cli(capsys, "peek", "q")[:2] == (0, "hello\n")
    rc, out, _ = cli(capsys, "peek", "q", "--all", "--json")
    assert [json.loads(line)["message"] for line in out.splitlines()] == ["hello", "wörld ☃", "third"]
    assert "wörld ☃" in out  # non-ASCII kept
    rc, out, _ = cli(capsys, "peek", "q", "--newest", "-t")
    assert re.fullmatch(r"\d{19}\tthird\n", out)
    assert cli(capsys, "read", "q", "--newest")[:2] == (0, "third\n")
    assert cli(capsys, "read", "q", "--all")[:2] == (0, "hello\nwörld ☃\n")
    assert cli(capsys, "read", "q") == (2, "", "")
    assert cli(capsys, "peek", "nosuch", "--all") == (2, "", "")
    assert (workdir / ".broker.db").exists()


def test_message_sources(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert cli(capsys, "write", "q", "-", stdin=b"line1\nline2\n")[0] == 0
    assert cli(capsys, "write", "q", stdin=b"tab\there")[0] == 0  # not a terminal: stdin without '-'
    assert cli(capsys, "write", "q", "argmsg", stdin=b"ignored")[0] == 0
    assert cli(capsys, "write", "q", stdin=b"")[0] == 0  # empty stdin: an empty message
    assert bodies(workdir / ".broker.db") == ["line1\nline2\n", "tab\there", "argmsg", ""]
    rc, _, err = cli(capsys, "write", "q")  # a terminal and no message
    assert (rc, err) == (
        1,
        "simplebroker: error: message is required when stdin is a terminal; pass a message or pipe input\n",
    )
    rc, _, err = cli(capsys, "write", "q", "-", "--json", stdin=b"\xff")
    assert rc == 1 and json.loads(err)["error"] == "INVALID_ARGUMENT"
    assert "Input is not valid UTF-8: 'utf-8' codec can't decode byte 0xff in position 0" in err


def test_the_size_cap_applies_to_arguments_and_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BROKER_MAX_MESSAGE_SIZE", "5")
    assert cli(capsys, "write", "q", "123456")[2] == "simplebroker: error: Message exceeds maximum size of 5 bytes\n"
    assert cli(capsys, "write", "q", "-", stdin=b"123456")[2] == (
        "simplebroker: error: Input exceeds maximum size of 5 bytes\n"
    )
    assert cli(capsys, "write", "q", "-", stdin=b"12345")[0] == 0


def test_newline_warning_once_and_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "write", "q", "a\nb")
    cli(capsys, "write", "q", "c\nd")
    rc, out, err = cli(capsys, "peek", "q", "--all")
    assert (rc, out) == (0, "a\nb\nc\nd\n")
    assert err.count("Message contains newline characters") == 1
    assert cli(capsys, "-q", "peek", "q", "--all")[2] == ""
    assert cli(capsys, "peek", "q", "--all", "--json")[2] == ""


def test_list_stats_status_exists(capsys: pytest.CaptureFixture[str]) -> None:
    for q, m in (("q1", "a"), ("q1", "b"), ("q2", "c")):
        cli(capsys, "write", q, m)
    cli(capsys, "read", "q1", "--all")
    assert cli(capsys, "list")[:2] == (0, "q1\nq2\n")
    assert cli(capsys, "list", "--stats")[1] == "q1: 0 (2 total, 2 claimed)\nq2: 1\n\nTotal claimed messages: 2/3\n"
    out = cli(capsys, "list", "--stats", "--json")[1]
    assert json.loads(out.splitlines()[0]) == {"queue": "q1", "pending": 0, "claimed": 2, "total": 2, "exists": True}
    assert cli(capsys, "list", "-p", "*2", "--json")[1] == '{"queue": "q2"}\n'
    assert cli(capsys, "list", "--prefix", "q1")[1] == "q1\n"
    assert cli(capsys, "exists", "q1") == (0, "", "")
    assert cli(capsys, "exists", "zz", "--json")[:2] == (2, '{"queue": "zz", "exists": false}\n')
    assert cli(capsys, "stats", "zz")[:2] == (0, "zz: 0\n")
    rc, out, _ = cli(capsys, "--status")
    assert rc == 0 and out.startswith("total_messages: 3\nlast_timestamp: ")
    status = json.loads(cli(capsys, "--status", "--json")[1])
    assert status["total_messages"] == 3 and ID.fullmatch(status["last_timestamp"])
    assert cli(capsys, "--vacuum")[2] == "Vacuumed 2 claimed messages in 0.0s\n"
    assert cli(capsys, "--vacuum")[2] == "No claimed messages to vacuum\n"
    assert cli(capsys, "-q", "--vacuum", "--compact") == (0, "", "")


def test_global_flag_errors(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert cli(capsys, "--compact")[2] == "simplebroker: error: --compact can only be used with --vacuum\n"
    assert cli(capsys, "--json", "list")[2] == "simplebroker: error: --json requires --status, --cleanup, or --vacuum\n"
    rc, _, err = cli(capsys, "--status", "--json", "write", "q", "x")
    assert (rc, json.loads(err)) == (
        1,
        {"error": "INVALID_ARGUMENT", "message": "--status cannot be used with commands", "retryable": False},
    )
    assert (
        cli(capsys, "--cleanup", "write", "q", "x")[2]
        == "simplebroker: error: --cleanup cannot be used with commands\n"
    )
    assert cli(capsys, "-d", ".", "init")[2] == (
        "simplebroker: error: init does not accept --dir; run it from the directory to initialize\n"
    )
    assert cli(capsys, "-d", "/nonexist", "list")[2] == "simplebroker: error: Directory not found: /nonexist\n"
    assert cli(capsys, "--version", "list")[:2] == (0, f"sansio-broker {sansio_broker.__version__}\n")
    assert cli(capsys, "nosuchcmd")[0] == 1
    rc, out, _ = cli(capsys)
    assert rc == 0 and out.startswith("usage: simplebroker")
    assert cli(capsys, "-q")[1].startswith("usage: simplebroker")
    assert not (workdir / ".broker.db").exists()  # help and errors touch no file


def test_flags_after_the_subcommand(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    assert cli(capsys, "write", "q", "x", "-f", "other.db") == (0, "", "")
    assert cli(capsys, "peek", "q", "-f", "other.db")[:2] == (0, "x\n")
    assert not (workdir / ".broker.db").exists()


def test_selectors(capsys: pytest.CaptureFixture[str]) -> None:
    ids = [int(cli(capsys, "write", "-t", "q", m)[1]) for m in "abc"]
    assert cli(capsys, "peek", "q", "--all", "--after", str(ids[0]))[1] == "b\nc\n"
    assert cli(capsys, "peek", "q", "--after", str(ids[0]), "--before", str(ids[2]))[1] == "b\n"
    assert cli(capsys, "peek", "q", "--after", str(ids[0]), "--newest")[1] == "c\n"
    assert cli(capsys, "peek", "q", "--all", "--after", "2099-01-15")[0] == 2
    assert cli(capsys, "peek", "q", "-m", f" {ids[1]} ")[1] == "b\n"
    assert cli(capsys, "read", "q", "-m", str(ids[1]), "-t")[1] == f"{ids[1]}\tb\n"
    assert cli(capsys, "read", "q", "-m", str(ids[1]))[0] == 2
    rc, _, err = cli(capsys, "peek", "q", "--after", "abc", "--json")
    assert rc == 1 and json.loads(err)["error"] == "INVALID_TIMESTAMP"
    rc, _, err = cli(capsys, "peek", "q", "-m", "123", "--json")
    assert json.loads(err) == {
        "error": "INVALID_MESSAGE_ID",
        "message": "invalid message ID: expected exactly 19 digits within range",
        "retryable": False,
    }
    assert "--newest cannot be used with --all" in cli(capsys, "peek", "q", "--all", "--newest")[2]
    assert (
        "--message cannot be used with --all, --after, or --before"
        in cli(capsys, "peek", "q", "-m", str(ids[0]), "--all")[2]
    )
    assert "--message requires a queue name" in cli(capsys, "delete", "--all", "-m", str(ids[0]))[2]


def test_write_keep_newest(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    for m in ("m1", "m2", "m3", "m4"):
        cli(capsys, "write", "q", m)
    assert cli(capsys, "write", "q", "m5", "--keep-newest", "2") == (0, "", "")
    assert bodies(workdir / ".broker.db") == ["m4", "m5"]
    assert cli(capsys, "write", "q", "x", "--keep-newest", "0")[2] == (
        "simplebroker: error: --keep-newest must be an ASCII decimal integer from 1 to 9999\n"
    )
    assert "only once" in cli(capsys, "write", "q", "x", "--keep-newest", "1", "--keep-newest", "2")[2]


def test_move_delete_rename_broadcast(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    for m in ("a", "b", "c"):
        cli(capsys, "write", "q", m)
    assert cli(capsys, "move", "q", "q2")[:2] == (0, "a\n")
    assert cli(capsys, "move", "q", "q")[2] == "simplebroker: error: Source and destination queues cannot be the same\n"
    assert cli(capsys, "move", "q", "q2", "--all")[:2] == (0, "b\nc\n")
    assert cli(capsys, "move", "q", "q2", "--all")[0] == 2
    assert cli(capsys, "broadcast", "hi")[0] == 0
    assert cli(capsys, "broadcast", "--queue", "nothere", "x")[0] == 2
    assert bodies(workdir / ".broker.db", "q2") == ["a", "b", "c", "hi"]
    rc, out, _ = cli(capsys, "rename", "q2", "jobs", "--json")
    assert (rc, json.loads(out)["messages_renamed"]) == (0, 5 - 1)
    assert cli(capsys, "rename", "nothere", "zz")[0] == 2
    assert cli(capsys, "delete", "jobs") == (0, "", "")
    assert cli(capsys, "delete", "jobs")[0] == 2
    assert cli(capsys, "delete", "--all")[0] == 2  # nothing left: "hi" went to q2 only (q had no rows)


def test_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "write", "tasks", "t1")
    cli(capsys, "write", "w2", "shadowed")
    assert cli(capsys, "alias", "add", "w", "tasks") == (0, "", "")
    assert cli(capsys, "alias", "add", "w", "tasks")[2] == "simplebroker: error: Alias 'w' already exists\n"
    assert "already exists with messages" in cli(capsys, "alias", "add", "w2", "tasks")[2]
    assert cli(capsys, "alias", "list")[1] == "w -> tasks\nw2 -> tasks\n"
    assert cli(capsys, "alias", "list", "--target", "nothing")[0] == 2
    assert cli(capsys, "peek", "@w")[1] == "t1\n"
    assert cli(capsys, "peek", "w")[0] == 2
    assert cli(capsys, "peek", "@nope")[2] == "simplebroker: error: Alias 'nope' is not defined\n"
    assert cli(capsys, "alias")[2] == "simplebroker: error: alias subcommand is required\n"
    assert cli(capsys, "alias", "remove", "@w")[2] == "simplebroker: error: alias '@w' does not exist\n"
    assert cli(capsys, "alias", "remove", "w") == (0, "", "")
    assert cli(capsys, "write", "bad name", "x")[2] == (
        "simplebroker: error: Invalid queue name: must contain only letters, numbers, periods, underscores, "
        "and hyphens. Cannot begin with a hyphen or a period\n"
    )
    assert (
        cli(capsys, "write", "a" * 513, "x")[2] == "simplebroker: error: Invalid queue name: exceeds 512 characters\n"
    )


def test_dump_load_init_cleanup(capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    cli(capsys, "write", "jobs", "j1")
    cli(capsys, "alias", "add", "w", "jobs")
    rc, dumped, _ = cli(capsys, "dump")
    assert rc == 0 and [json.loads(line)["type"] for line in dumped.splitlines()] == ["header", "alias", "message"]
    (workdir / "copy").mkdir()
    assert cli(capsys, "-d", "copy", "load", stdin=dumped.encode()) == (0, "", "")
    assert cli(capsys, "-d", "copy", "peek", "@w")[1] == "j1\n"
    assert cli(capsys, "load", stdin=b"{}\n")[2] == (
        "broker load: invalid dump input at line 1: first record must be the dump header\n"
    )
    assert cli(capsys, "load")[2].startswith("broker load: reads a dump from stdin")
    assert cli(capsys, "init")[2] == f"SimpleBroker database already exists: {workdir / '.broker.db'}\n"
    assert cli(capsys, "--cleanup")[2] == f"Database cleaned up: {workdir / '.broker.db'}\n"
    assert not (workdir / ".broker.db").exists()
    assert cli(capsys, "--cleanup")[2] == f"Database not found, nothing to clean up: {workdir / '.broker.db'}\n"
    assert cli(capsys, "init")[2] == f"Initialized SimpleBroker database: {workdir / '.broker.db'}\n"
    assert cli(capsys, "-f", "none.db", "--vacuum")[2] == f"Database not found: {workdir / 'none.db'}\n"


def test_environment(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workdir: Path) -> None:
    monkeypatch.setenv("BROKER_DEFAULT_DB_NAME", "../x.db")
    rc, _, err = cli(capsys, "list")
    assert rc == 1 and err.splitlines()[1].startswith(
        "simplebroker: invalid configuration BROKER_DEFAULT_DB_NAME='../x.db'"
    )
    monkeypatch.setenv("BROKER_DEFAULT_DB_NAME", "my.db")
    cli(capsys, "write", "q", "x")
    assert (workdir / "my.db").exists()
    monkeypatch.setenv("BROKER_BACKEND", "postgres")
    # A refused port fails at once (a host name would wait on a DNS lookup).
    monkeypatch.setenv("BROKER_BACKEND_TARGET", "postgresql://u:secret@127.0.0.1:1/db")
    rc, _, err = cli(capsys, "list")
    assert rc == 1 and "Could not connect to Postgres target" in err and "secret" not in err


# ----------------------------------------------------------- real processes

CLI = [sys.executable, "-m", "sansio_broker"]


def sh(script: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_")}
    env["SB"] = " ".join(CLI)
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_help_is_brokers_at_any_terminal_width(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workdir: Path
) -> None:
    # Parsers are built with a fixed-width formatter (no terminal query per option); help is laid out for
    # the terminal, as broker's is.
    cases = ["", "write --help", "read -h", "alias add -h", "-q list -h"]
    script = "; ".join(f"COLUMNS={c} broker {a}; echo @@" for c in (50, 150) for a in cases)
    done = sh(script, workdir)
    expected = done.stdout.split("@@\n")[:-1]
    assert len(set(expected)) == 2 * len(cases), done.stderr  # each its own text, each width its own layout
    ours = []
    for columns in (50, 150):
        monkeypatch.setenv("COLUMNS", str(columns))
        ours += [cli(capsys, *a.split()) for a in cases]
    assert ours == [(0, text, "") for text in expected]


@pytest.mark.slow
def test_read_all_into_head_claims_only_what_it_printed(workdir: Path) -> None:
    with Broker(workdir / ".broker.db") as broker:
        broker.write_many("q", [f"m{i}" for i in range(10_000)])
    done = sh(
        "$SB read q --all | head -1; echo rc=${PIPESTATUS[0]}; $SB read q --all -t | head -3 | cut -f2;"
        " $SB peek q --all | head -2; echo rc=${PIPESTATUS[0]}; $SB list | head -0; echo rc=${PIPESTATUS[0]}",
        workdir,
    )
    assert done.stdout == "m0\nrc=0\nm1\nm2\nm3\nm4\nm5\nrc=0\nrc=1\n", done.stderr
    assert "stdout closed before result delivery" in done.stderr
    with Broker(workdir / ".broker.db") as broker:
        stats = broker.queue_stats("q")
    assert (stats.pending, stats.total) == (10_000 - 4, 10_000)  # 4 printed, 4 claimed (broker claims 6)


@pytest.mark.slow
def test_ctrl_c_is_130_and_watch_ends_with_0(workdir: Path) -> None:
    load = subprocess.Popen([*CLI, "load"], cwd=workdir, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # let it start reading stdin (a generous guard, not a measurement)
    load.send_signal(signal.SIGINT)
    assert load.wait(timeout=30) == 130
    assert load.stderr is not None and load.stderr.read().endswith("\nsimplebroker: interrupted\n")
    assert load.stdin is not None
    load.stdin.close()
    modes = (
        (signal.SIGINT, ["-t"], r"\d{19}\tbefore\n"),
        (signal.SIGTERM, ["--peek", "--json"], r'\{"message": "before", "timestamp": "\d{19}"\}\n'),
        (signal.SIGTERM, ["--move", "w2"], r"before\n"),
    )
    for sig, args, first_line in modes:
        subprocess.run([*CLI, "write", "w", "before"], cwd=workdir, check=True)
        watch = subprocess.Popen([*CLI, "watch", "w", *args], cwd=workdir, stdout=subprocess.PIPE, text=True)
        assert watch.stdout is not None
        first = watch.stdout.readline()
        subprocess.run([*CLI, "write", "w", "after"], cwd=workdir, check=True)
        second = watch.stdout.readline()
        watch.send_signal(sig)
        assert watch.wait(timeout=30) == 0
        assert re.fullmatch(first_line, first) and "after" in second
    with Broker(workdir / ".broker.db") as broker:
        assert [m.body for m in broker.peek_many("w2", 10)] == ["before", "after", "before", "after"]

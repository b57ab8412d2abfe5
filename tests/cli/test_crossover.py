"""Crossing over: one program writes, the other reads, on the same file.

Each scenario's steps are split between ``A`` and ``B``; it runs three times in fresh directories (both ``broker``;
A ``broker`` and B ``sansio-broker``; the reverse) and the mixed runs must print what ``broker`` alone printed
(``differential.check_crossover``). ``watch`` runs as a real long-lived process while the other program writes.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from tests.cli.differential import (
    Scenario,
    Step,
    base_env,
    broker_command,
    check_crossover,
    sansio_command,
    scenario,
    step,
)


def a(*argv: str, stdin: str | None = None, stdin_from: int | None = None) -> Step:
    return step(*argv, stdin=stdin, stdin_from=stdin_from, program="A")


def b(*argv: str, stdin: str | None = None, stdin_from: int | None = None) -> Step:
    return step(*argv, stdin=stdin, stdin_from=stdin_from, program="B")


SCENARIOS: list[Scenario] = [
    scenario(
        "write-then-read",
        a("write", "q", "plain"),
        a("write", "-t", "q", "wörld ☃"),
        a("write", "q", "-", stdin="multi\nline\n"),
        a("write", "q", "--json", "tab\there"),
        b("peek", "q", "--all", "--json"),
        b("peek", "q", "--newest", "-t"),
        b("read", "q", "-t"),
        a("read", "q", "-m", "{id1}"),
        b("read", "q", "--all", "--json"),
        a("list", "--stats"),
        b("write", "-t", "q", "back"),
        a("peek", "q", "--all", "--include-claimed", "-t"),
        a("move", "q", "r", "--json"),
        b("stats", "r", "--json"),
        b("delete", "q"),
        a("exists", "q"),
        b("broadcast", "all"),
        a("list", "--stats"),
    ),
    scenario(
        "aliases-and-rename",
        a("write", "tasks", "t1"),
        a("alias", "add", "w", "tasks"),
        b("write", "@w", "via-b"),
        b("alias", "list"),
        a("peek", "tasks", "--all"),
        b("alias", "add", "w2", "tasks"),
        a("alias", "list", "--target", "tasks"),
        a("read", "@w2"),
        b("rename", "tasks", "jobs", "--json"),
        a("alias", "list"),
        a("peek", "@w", "--all"),
        a("rename", "jobs", "tasks", "--no-retarget-aliases", "--json"),
        b("alias", "list"),
        b("peek", "@w"),
        b("alias", "remove", "w"),
        a("alias", "list"),
        a("peek", "@w"),
        b("rename", "@w2", "tasks", "--json"),
        a("dump"),
    ),
    scenario(
        "keep-newest",
        a("write", "q", "m1"),
        a("write", "q", "m2"),
        a("write", "q", "m3"),
        b("write", "q", "m4", "--keep-newest", "2"),
        a("peek", "q", "--all", "--include-claimed"),
        a("list", "--stats"),
        a("write", "-t", "q", "m5", "--keep-newest", "1"),
        b("list", "--stats"),
        b("peek", "q", "--all", "-t"),
        b("--vacuum"),
        a("list", "--stats"),
        a("--status"),
    ),
    scenario(
        "dump-load",
        a("write", "jobs", "j1"),
        a("write", "jobs", 'ünï "q"\ttab'),
        a("write", "logs.a", "l1\nl2"),
        a("write", "done", "d"),
        a("read", "done"),
        a("alias", "add", "w", "jobs"),
        a("dump"),
        b("-f", "copy.db", "load", stdin_from=6),
        b("-f", "copy.db", "dump"),
        a("-f", "copy.db", "dump"),
        a("-f", "copy.db", "peek", "@w", "--all", "-t"),
        b("-f", "copy.db", "write", "-t", "jobs", "after-load"),
        a("-f", "copy.db", "write", "-t", "jobs", "after-load-2"),
        b("-f", "copy.db", "dump", "--include", "jobs"),
        a("-f", "copy2.db", "load", stdin_from=13),
        b("-f", "copy2.db", "dump"),
        b("-f", "copy2.db", "read", "jobs", "--all", "-t"),
    ),
]


@pytest.mark.parametrize("sc", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_crossover(sc: Scenario) -> None:
    check_crossover(sc)


# --------------------------------------------------------------------------- watch
def _lines(proc: subprocess.Popen[bytes]) -> queue.Queue[bytes]:
    """The process's stdout lines, as they arrive (a reader thread; b"" at EOF)."""
    lines: queue.Queue[bytes] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in iter(proc.stdout.readline, b""):
            lines.put(line)
        lines.put(b"")

    threading.Thread(target=pump, daemon=True).start()
    return lines


PAIRS = {"broker-watches-sansio-writes": (broker_command, sansio_command)}
PAIRS["sansio-watches-broker-writes"] = (sansio_command, broker_command)


@pytest.mark.parametrize("pair", list(PAIRS), ids=list(PAIRS))
@pytest.mark.parametrize("mode", [[], ["--json"], ["--peek", "-t"]], ids=["consume", "json", "peek-t"])
def test_watch_sees_the_other_programs_writes(tmp_path: Path, pair: str, mode: list[str]) -> None:
    watcher_cmd, writer_cmd = (f() for f in PAIRS[pair])
    env = base_env()
    subprocess.run([*writer_cmd, "write", "w", "before"], cwd=tmp_path, env=env, check=True)
    watch = subprocess.Popen(
        [*watcher_cmd, "watch", "w", *mode], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        lines = _lines(watch)
        first = lines.get(timeout=30)
        subprocess.run([*writer_cmd, "write", "w", "after"], cwd=tmp_path, env=env, check=True)
        second = lines.get(timeout=30)
    finally:
        watch.send_signal(signal.SIGINT)
        rc = watch.wait(timeout=30)
    assert rc == 0
    got = [first.decode(), second.decode()]
    if mode == ["--json"]:
        assert [line.split('"timestamp"')[0] for line in got] == ['{"message": "before", ', '{"message": "after", ']
    elif mode == ["--peek", "-t"]:
        assert [line.split("\t", 1)[1] for line in got] == ["before\n", "after\n"]
    else:
        assert got == ["before\n", "after\n"]
    pending = subprocess.run([*writer_cmd, "list", "--stats"], cwd=tmp_path, env=env, capture_output=True, check=False)
    expected = b"w: 2\n" if "--peek" in mode else b"w: 0 (2 total, 2 claimed)\n\nTotal claimed messages: 2/2\n"
    assert pending.stdout == expected


WATCH_MODES = {
    # name: (global flags, arguments after "watch w", the lines' starts: a is pending at the start, b and c come later)
    "peek-after": ([], ["--peek", "--after", "{a}", "-t"], ["{b}\tb\n", "{c}\tc\n"]),
    "move": ([], ["--move", "w2", "--json"], ['{{"message": "a", ', '{{"message": "b", ', '{{"message": "c", ']),
    "quiet-consume": (["-q"], [], ["a\n", "b\n", "c\n"]),
}


@pytest.mark.parametrize("mode", list(WATCH_MODES))
@pytest.mark.parametrize("program", ["broker", "sansio"])
def test_watch_modes_print_what_broker_prints(tmp_path: Path, program: str, mode: str) -> None:
    """The same watch on each program: same lines (IDs filled in), same banner rule, rc 0 on SIGTERM."""
    command = broker_command() if program == "broker" else sansio_command()
    env = base_env()
    written = subprocess.run(
        [*command, "write", "-t", "w", "a"], cwd=tmp_path, env=env, capture_output=True, check=True
    )
    ids = {"a": written.stdout.decode().strip()}
    flags, args, expected = WATCH_MODES[mode]
    watch = subprocess.Popen(
        [*command, *flags, "watch", "w", *(arg.format(**ids) for arg in args)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        lines = _lines(watch)
        got = [] if mode == "peek-after" else [lines.get(timeout=30)]
        for body in ("b", "c"):
            done = subprocess.run([*command, "write", "-t", "w", body], cwd=tmp_path, env=env, capture_output=True)
            ids[body] = done.stdout.decode().strip()
            got.append(lines.get(timeout=30))
    finally:
        watch.send_signal(signal.SIGTERM)
        rc = watch.wait(timeout=30)
    assert rc == 0
    wanted = [line.format(**ids) for line in expected]
    assert [line.decode()[: len(w)] for line, w in zip(got, wanted, strict=True)] == wanted
    assert watch.stderr is not None
    banner = watch.stderr.read().decode()
    assert (banner == "") == (mode == "quiet-consume"), banner

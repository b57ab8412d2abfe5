"""The differential harness: the same steps through SimpleBroker's ``broker`` and through ``sansio-broker``.

A scenario is a list of steps (argv, optional stdin, optional environment additions). It runs once per program,
each in a fresh temporary directory of its own (its own ``.broker.db``), the two runs side by side on two threads;
each step is a process of its own. The results are normalised (19-digit message IDs become ``<ID n>``,
numbered by first appearance so their order still compares; ``db_size``, vacuum timings and the temporary directory
are masked) and compared step by step: exit code and stdout exactly, stderr loosely (present on both or on
neither; ``error`` on both when the reference says it; a JSON error object exactly where the step asks), because
warning formats and program names differ by design.

Placeholders in argv, environment values and stdin: ``{tmp}`` is the run's directory, ``{idN}`` the raw ID that
normalised to ``<ID N>`` so far in this run (so both runs refer to "their" N-th ID).

Speed: starting Python and importing a CLI costs ~0.1 s a process, most of a step. By default each program gets a
small fork server (this file run as a script; one per program and thread, kept for the session): it imports the
program's console-script entry point once, then forks a fresh child per step, which sets the step's cwd,
environment and stdin/stdout/stderr (files; stdin a pty when asked) and calls the entry point as the console
script would (``sys.exit(main())``, atexit handlers run). ``CLI_DIFF_EXEC=1`` runs every step as a full
``exec`` of the console script instead (slower, exact; use it to confirm a difference).

``CLI_DIFF_SUBJECT=broker`` replaces ``sansio-broker`` with ``broker`` (a self-check of the harness: every
scenario must then pass); ``CLI_DIFF_SUBJECT=broker-exec`` does too, the subject side exec'ed, which checks the fork
server against real processes; ``CLI_DIFF_SUBJECT=module`` runs ``python -m sansio_broker``.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import importlib
import io
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STEP_TIMEOUT = 60.0  # a hang guard per process, never a timing assertion
VENV_BIN = Path(sys.executable).parent
ID_RE = re.compile(r"(?<!\d)\d{19}(?!\d)")
PLACEHOLDER_RE = re.compile(r"\{id(\d+)\}")
ERROR_WORD = re.compile(r"\berror\b", re.IGNORECASE)  # "simplebroker: error: ...", not "TimestampError"
ZERO_ID = "0" * 19  # an empty broker's last_ts: not an ID, kept as is


CHECKOUT_ROOT = str(Path(__file__).resolve().parents[2])
BROKER, SANSIO = "broker", "sansio"  # the two programs, by name


def broker_command() -> list[str]:
    """SimpleBroker 8.7.2's console script, from the same virtualenv as this interpreter."""
    script = VENV_BIN / "broker"
    return [str(script)] if script.exists() else [shutil.which("broker") or "broker"]


def sansio_command() -> list[str]:
    """The program under test: ``sansio-broker`` (or what ``CLI_DIFF_SUBJECT`` names instead)."""
    if subject_is_broker():
        return broker_command()
    subject = os.environ.get("CLI_DIFF_SUBJECT", "")
    script = VENV_BIN / "sansio-broker"
    if subject == "module" or not script.exists():
        return [sys.executable, "-m", "sansio_broker"]
    return [str(script)]


def subject_is_broker() -> bool:
    return os.environ.get("CLI_DIFF_SUBJECT", "") in ("broker", "broker-exec")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment without ``BROKER_*`` or ``PYTHONWARNINGS``, a fixed terminal width, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_") and k != "PYTHONWARNINGS"}
    env.update({"COLUMNS": "100", "PYTHONDONTWRITEBYTECODE": "1"})
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class Step:
    """One process: ``argv`` after the program name.

    ``stdin``: bytes to feed (default: empty, not a terminal); ``stdin_from``: the raw stdout of an earlier step
    (its index) instead; ``tty``: stdin is a pseudo-terminal. ``loose``: compare the exit code and whether stdout is
    empty only (help, version). ``json_stderr``: the last stderr line is a JSON error object, compared exactly.
    ``program``: who runs it in a crossover (``"A"`` or ``"B"``); differential runs ignore it.
    """

    argv: tuple[str, ...]
    stdin: bytes | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "."
    stdin_from: int | None = None
    tty: bool = False
    loose: bool = False
    json_stderr: bool = False
    program: str = "A"


def step(
    *argv: str,
    stdin: bytes | str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str = ".",
    stdin_from: int | None = None,
    tty: bool = False,
    loose: bool = False,
    json_stderr: bool = False,
    program: str = "A",
) -> Step:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    return Step(tuple(argv), data, dict(env or {}), cwd, stdin_from, tty, loose, json_stderr, program)


@dataclass(frozen=True)
class Scenario:
    """Steps run in order in one fresh directory; ``dirs`` and ``files`` (relative paths) are made first."""

    name: str
    steps: tuple[Step, ...]
    dirs: tuple[str, ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)


def scenario(name: str, *steps: Step, dirs: Sequence[str] = (), files: Mapping[str, bytes] | None = None) -> Scenario:
    return Scenario(name, tuple(steps), tuple(dirs), dict(files or {}))


@dataclass
class Result:
    """One step as it ran (raw) and as it compares (normalised)."""

    argv: list[str]
    rc: int
    stdout: bytes
    stderr: bytes
    norm_stdout: str = ""
    norm_stderr: str = ""


class Normaliser:
    """Masks what differs between two correct runs; numbers IDs by first appearance within one run."""

    def __init__(self, root: Path) -> None:
        self.ids: dict[str, int] = {}
        self.roots = sorted({str(root), os.path.realpath(root)}, key=len, reverse=True)

    def _id(self, match: re.Match[str]) -> str:
        raw = match.group(0)
        if raw == ZERO_ID:
            return raw
        return f"<ID {self.ids.setdefault(raw, len(self.ids) + 1)}>"

    def __call__(self, text: str) -> str:
        for root in self.roots:
            text = text.replace(root, "<TMP>")
        text = ID_RE.sub(self._id, text)
        text = re.sub(r'(db_size"?:\s*)\d+', r"\g<1><N>", text)
        return re.sub(r"\bin \d+(?:\.\d+)?s\b", "in <T>s", text)

    def raw_id(self, number: int) -> str:
        for raw, n in self.ids.items():
            if n == number:
                return raw
        raise KeyError(f"no <ID {number}> seen yet in this run")

    def substitute(self, text: str, root: Path) -> str:
        text = text.replace("{tmp}", str(root))
        return PLACEHOLDER_RE.sub(lambda m: self.raw_id(int(m.group(1))), text)


@contextlib.contextmanager
def _stdin_for(tty: bool, data: bytes | None) -> Iterator[tuple[Any, bytes | None]]:
    """The ``stdin`` and ``input`` arguments of ``subprocess.run`` for a step."""
    if tty:
        primary, secondary = os.openpty()
        try:
            yield secondary, None
        finally:
            os.close(secondary)
            os.close(primary)
    elif data is None:
        yield subprocess.DEVNULL, None
    else:
        yield None, data


Outcome = tuple[int, bytes, bytes]  # rc, stdout, stderr


def exec_step(
    program: str, argv: Sequence[str], cwd: Path, env: Mapping[str, str], data: bytes | None, tty: bool
) -> Outcome:
    """One step as a full process of the console script."""
    command = broker_command() if program == BROKER else sansio_command()
    with _stdin_for(tty, data) as (stdin, given):
        done = subprocess.run(
            [*command, *argv],
            stdin=stdin,
            input=given,
            capture_output=True,
            cwd=cwd,
            env=dict(env),
            timeout=STEP_TIMEOUT,
            check=False,
        )
    return done.returncode, done.stdout, done.stderr


# --------------------------------------------------------------------------- the fork server
def _server_target(program: str) -> str:
    """What a fork server runs: ``entry:NAME`` (a console script's entry point) or ``module:NAME`` (``-m``)."""
    if program == BROKER or subject_is_broker():
        return "entry:broker"
    if os.environ.get("CLI_DIFF_SUBJECT", "") == "module" or not (VENV_BIN / "sansio-broker").exists():
        return "module:sansio_broker"
    return "entry:sansio-broker"


class ForkServer:
    """A long-lived ``differential.py serve TARGET`` process; one request at a time."""

    def __init__(self, target: str) -> None:
        env = base_env({"PYTHONPATH": CHECKOUT_ROOT})
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", target], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )

    def run(self, argv: Sequence[str], cwd: Path, env: Mapping[str, str], data: bytes | None, tty: bool) -> Outcome:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        request = {"argv": list(argv), "cwd": str(cwd), "env": dict(env), "tty": tty}
        request["stdin"] = None if data is None else base64.b64encode(data).decode()
        self.proc.stdin.write(json.dumps(request).encode() + b"\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"fork server died (rc {self.proc.wait()})")
        reply = json.loads(line)
        return reply["rc"], base64.b64decode(reply["stdout"]), base64.b64decode(reply["stderr"])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_idle: dict[str, queue.SimpleQueue[ForkServer]] = {}
_all_servers: list[ForkServer] = []
_servers_lock = threading.Lock()


@contextlib.contextmanager
def fork_server(program: str) -> Iterator[ForkServer]:
    """An idle server for ``program`` (started if none is), returned to the pool afterwards."""
    target = _server_target(program)
    with _servers_lock:
        idle = _idle.setdefault(target, queue.SimpleQueue())
    try:
        server = idle.get_nowait()
    except queue.Empty:
        server = ForkServer(target)
        with _servers_lock:
            _all_servers.append(server)
    try:
        yield server
    except BaseException:
        server.close()  # perhaps mid-request: never reuse it
        raise
    idle.put(server)


@atexit.register
def _close_servers() -> None:
    for server in _all_servers:
        server.close()


def run_step(
    program: str, argv: Sequence[str], cwd: Path, env: Mapping[str, str], data: bytes | None, tty: bool
) -> Outcome:
    exec_all = os.environ.get("CLI_DIFF_EXEC", "") not in ("", "0")
    if exec_all or (program == SANSIO and os.environ.get("CLI_DIFF_SUBJECT", "") == "broker-exec"):
        return exec_step(program, argv, cwd, env, data, tty)
    with fork_server(program) as server:
        return server.run(argv, cwd, env, data, tty)


def _text_stream(fd: int, mode: str) -> io.TextIOWrapper:
    """A standard stream over ``fd`` as a fresh interpreter makes it (UTF-8 locale; stderr line-buffered)."""
    raw = io.FileIO(fd, mode, closefd=False)
    buffered: io.BufferedReader | io.BufferedWriter = io.BufferedReader(raw) if mode == "r" else io.BufferedWriter(raw)
    errors = "backslashreplace" if fd == 2 else "strict"
    return io.TextIOWrapper(buffered, encoding="utf-8", errors=errors, line_buffering=fd == 2 or os.isatty(fd))


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _child(main: Callable[[], object], request: dict[str, Any], scratch: str, modules_to: str = "") -> None:
    """In the forked child: become the step's process, run the program, exit with its code (never returns).

    ``modules_to``: a file to list the imported modules in afterwards (the server's warm-up).
    """
    code = 1
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        if request["tty"]:
            _primary, stdin_fd = os.openpty()
        elif request["stdin"] is None:
            stdin_fd = os.open(os.devnull, os.O_RDONLY)
        else:
            stdin_fd = os.open(os.path.join(scratch, "stdin"), os.O_RDONLY)
        os.dup2(stdin_fd, 0)
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(os.path.join(scratch, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
        for name, opened in (("stdin", _text_stream(0, "r")), ("stdout", _text_stream(1, "w"))):
            setattr(sys, name, opened)
            setattr(sys, f"__{name}__", opened)
        sys.stderr = _text_stream(2, "w")
        setattr(sys, "__stderr__", sys.stderr)  # noqa: B010 - typeshed makes it final
        sys.argv = [request["prog"], *request["argv"]]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = _exit_code(exc)
        except BaseException:
            traceback.print_exc()
        with contextlib.suppress(BaseException):
            getattr(threading, "_shutdown")()  # noqa: B009 - the interpreter's own shutdown steps
            getattr(atexit, "_run_exitfuncs")()  # noqa: B009
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(BaseException):
                stream.flush()
        if modules_to:
            Path(modules_to).write_text("\n".join(sys.modules))
    finally:
        os._exit(code)


def _preload(main: Callable[[], object], prog: str, scratch: str) -> None:
    """Import in the server what one command imports (a ``peek`` in a scratch directory, run in a child).

    A lazily importing CLI would otherwise import its broker anew in every child. Importing only, nothing runs:
    both programs read ``BROKER_*`` when a command runs, not at import.
    """
    warm = Path(scratch, "warm")
    warm.mkdir()
    request = {"argv": ["peek", "warmup"], "cwd": str(warm), "env": dict(os.environ), "tty": False, "stdin": None}
    listing = str(Path(scratch, "modules"))
    pid = os.fork()
    if pid == 0:
        _child(main, request | {"prog": prog}, scratch, listing)
    _wait(pid)
    for name in Path(listing).read_text().splitlines() if os.path.exists(listing) else ():
        if name != "__main__" and not name.endswith(".__main__") and name not in sys.modules:
            with contextlib.suppress(Exception):
                importlib.import_module(name)


def _load_main(target: str) -> tuple[str, Callable[[], object]]:
    """The program name and a callable that runs it like its console script (or ``python -m``)."""
    kind, _, name = target.partition(":")
    if kind == "module":
        import runpy

        __import__(name)  # the package only; ``__main__`` itself runs fresh in every child
        return name, lambda: runpy.run_module(name, run_name="__main__", alter_sys=True)
    import importlib.metadata

    entries = [e.value for e in importlib.metadata.entry_points(group="console_scripts") if e.name == name]
    if not entries:  # a script installed after the metadata was read: its own import line says what it runs
        found = re.search(r"^from (\S+) import (\w+)$", (VENV_BIN / name).read_text(), re.MULTILINE)
        entries = [f"{found.group(1)}:{found.group(2)}"] if found else []
    module, _, attr = entries[0].partition(":")
    function = getattr(__import__(module, fromlist=[attr]), attr)
    return str(VENV_BIN / name), lambda: sys.exit(function())


def serve(target: str) -> None:
    """The fork server's loop: a JSON request per line on stdin, a JSON reply per line on stdout."""
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path[0] = str(VENV_BIN)  # as a console script's own process has it
    prog, main = _load_main(target)
    replies = os.fdopen(os.dup(1), "wb")
    scratch = tempfile.mkdtemp(prefix="clidiff-server-")
    try:
        _preload(main, prog, scratch)
        for line in sys.stdin.buffer:
            request = json.loads(line) | {"prog": prog}
            if request["stdin"] is not None:
                Path(scratch, "stdin").write_bytes(base64.b64decode(request["stdin"]))
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _child(main, request, scratch)
            rc = _wait(pid)
            out, err = (Path(scratch, name).read_bytes() for name in ("stdout", "stderr"))
            reply = {"rc": rc, "stdout": base64.b64encode(out).decode(), "stderr": base64.b64encode(err).decode()}
            replies.write(json.dumps(reply).encode() + b"\n")
            replies.flush()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _wait(pid: int) -> int:
    """The child's exit code (``-signal`` if killed); killed after ``STEP_TIMEOUT`` (a hang guard)."""
    deadline = time.monotonic() + STEP_TIMEOUT
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.001)


# --------------------------------------------------------------------------- scenarios
def run_steps(programs: Mapping[str, str], sc: Scenario, root: Path) -> list[Result]:
    """Run every step of ``sc`` in ``root`` (fresh), with ``programs[step.program]``; normalise as it goes."""
    for d in sc.dirs:
        (root / d).mkdir(parents=True, exist_ok=True)
    for name, content in sc.files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    norm, results = Normaliser(root), list[Result]()
    for i, s in enumerate(sc.steps):
        try:
            argv = [norm.substitute(a, root) for a in s.argv]
        except KeyError as exc:  # a step names an ID no earlier step printed: say what ran
            ran = "\n".join(f"  {r.argv} rc={r.rc} out={r.stdout!r} err={r.stderr!r}" for r in results)
            raise AssertionError(f"{sc.name} {dict(programs)} step {i} {s.argv}: {exc}; so far:\n{ran}") from None
        env = base_env({k: norm.substitute(v, root) for k, v in s.env.items()})
        data = results[s.stdin_from].stdout if s.stdin_from is not None else s.stdin
        if data is not None and s.stdin_from is None:
            data = norm.substitute(data.decode("utf-8", "surrogateescape"), root).encode("utf-8", "surrogateescape")
        rc, out, err = run_step(programs[s.program], argv, root / s.cwd, env, data, s.tty)
        r = Result(argv, rc, out, err)
        r.norm_stdout = norm(out.decode("utf-8", "replace"))
        r.norm_stderr = norm(err.decode("utf-8", "replace"))
        results.append(r)
    return results


def run_in_fresh_dir(programs: Mapping[str, str], sc: Scenario) -> list[Result]:
    with tempfile.TemporaryDirectory(prefix="clidiff-") as tmp:
        return run_steps(programs, sc, Path(tmp))


def last_json(text: str) -> Any:
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "<no stderr>"
    try:
        return json.loads(lines[-1])
    except ValueError:
        return f"<not JSON: {lines[-1]!r}>"


def compare(sc: Scenario, ref: Sequence[Result], sub: Sequence[Result], labels: tuple[str, str]) -> list[str]:
    """Every difference between two runs of ``sc``, one readable paragraph each (empty: they agree)."""
    problems = []
    for i, (s, a, b) in enumerate(zip(sc.steps, ref, sub, strict=True)):
        where = f"step {i} [{s.program}] {' '.join(s.argv)!r}"
        if a.rc != b.rc:
            problems.append(f"{where}: rc {labels[0]}={a.rc} {labels[1]}={b.rc}")
        if s.loose:
            if bool(a.stdout.strip()) != bool(b.stdout.strip()):
                problems.append(f"{where}: stdout empty? {labels[0]}={not a.stdout.strip()} {labels[1]}={not b.stdout}")
        elif a.norm_stdout != b.norm_stdout:
            problems.append(f"{where}: stdout\n  {labels[0]}: {a.norm_stdout!r}\n  {labels[1]}: {b.norm_stdout!r}")
        if bool(a.stderr.strip()) != bool(b.stderr.strip()):
            problems.append(f"{where}: stderr\n  {labels[0]}: {a.norm_stderr!r}\n  {labels[1]}: {b.norm_stderr!r}")
        elif ERROR_WORD.search(a.norm_stderr) and not ERROR_WORD.search(b.norm_stderr):
            problems.append(
                f"{where}: stderr lacks 'error'\n  {labels[0]}: {a.norm_stderr!r}\n  {labels[1]}: {b.norm_stderr!r}"
            )
        if s.json_stderr and last_json(a.norm_stderr) != last_json(b.norm_stderr):
            got = (last_json(a.norm_stderr), last_json(b.norm_stderr))
            problems.append(f"{where}: JSON error\n  {labels[0]}: {got[0]!r}\n  {labels[1]}: {got[1]!r}")
    return problems


def check_differential(sc: Scenario) -> list[Result]:
    """Run ``sc`` through ``broker`` and the subject, each in its own directory; fail on any difference.

    Returns the reference (``broker``) results, for assertions of the scenario's own.
    """
    with ThreadPoolExecutor(2) as pool:
        ref_f = pool.submit(run_in_fresh_dir, {"A": BROKER, "B": BROKER}, sc)
        sub_f = pool.submit(run_in_fresh_dir, {"A": SANSIO, "B": SANSIO}, sc)
        ref, sub = ref_f.result(), sub_f.result()
    problems = compare(sc, ref, sub, ("broker", "sansio"))
    assert not problems, f"{sc.name}: {len(problems)} difference(s)\n" + "\n".join(problems)
    return ref


def check_crossover(sc: Scenario) -> None:
    """Run ``sc`` with steps ``A``/``B`` split between the programs both ways; each must match broker alone."""
    configs = {
        "broker-only": {"A": BROKER, "B": BROKER},
        "A=broker,B=sansio": {"A": BROKER, "B": SANSIO},
        "A=sansio,B=broker": {"A": SANSIO, "B": BROKER},
    }
    with ThreadPoolExecutor(len(configs)) as pool:
        futures = {name: pool.submit(run_in_fresh_dir, programs, sc) for name, programs in configs.items()}
        runs = {name: f.result() for name, f in futures.items()}
    problems = []
    for name in list(configs)[1:]:
        problems += [f"({name}) {p}" for p in compare(sc, runs["broker-only"], runs[name], ("broker-only", name))]
    assert not problems, f"{sc.name}: {len(problems)} difference(s)\n" + "\n".join(problems)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.exit("usage: differential.py serve entry:NAME|module:NAME")
    serve(sys.argv[2])

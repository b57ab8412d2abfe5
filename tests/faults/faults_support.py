"""The fault-injection kit: inject faults into any operation, then check what a user sees.

Injections (each trial fires at most one, at its ``k``):

- :class:`Injector` wraps the command handlers (and ``SyncDriver.run``) of
  every driver a broker creates (``SyncDriver.__init__`` is patched, so the
  table is wrapped right after the original init). While a :class:`Plan` is
  armed it counts the commands (only in the plan's threads, when it names
  some) and at the k-th one raises a driver error (``"error"``: disk I/O,
  ``"busy"``: database is locked) or requests cancellation of the caller (``"cancel"``) before the
  command runs or right after its result is ready; ``"result"`` cancels as
  the k-th operation's answer is being handed back. The cancel actions are
  made by the async rigs (``faults_rigs``): they block the worker thread
  until the cancellation has landed, so it lands while that command runs.
- :class:`LineInterrupter` (blocking adapter) uses ``sys.settrace`` to deliver
  SIGINT's handler (``KeyboardInterrupt`` by default) at the k-th ``line``
  event executed in a frame of the library (``sansio_broker/`` or
  ``adapters/``, compared as resolved paths), deterministically.

Checks, as a user sees it (:func:`check_trial`, :func:`exception_problems`):
every seeded message handed over exactly once (to the caller, or to the
drain that follows each trial), pending, or named by an
``OutcomeUnknownError.message_ids``; no write both reported failed and
stored; no move reported failed and done; transactions atomic.

Retry back-offs (``Sleep`` of 10 ms or more) return at once under the kit.

Counts of every trial land in :data:`COUNTS`; ``conftest.py`` prints them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import signal
import sqlite3
import sys
import threading
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, TypeVar

import pytest

import sansio_broker
import sansio_broker.adapters
from sansio_broker import Message, OutcomeUnknownError
from sansio_broker.adapters._sync import SyncDriver
from sansio_broker.commands import Execute, ExecuteMany, Sleep
from tests.support import internals

T = TypeVar("T")

# Claimed rows stay in the file, so the checks can see them: no automatic vacuum.
QUIET: dict[str, str] = {"BROKER_AUTO_VACUUM": "0"}
# The default configuration with auto-vacuum due after every commit.
VACUUM_EVERY_COMMIT: dict[str, str] = {"BROKER_AUTO_VACUUM_INTERVAL": "1", "BROKER_VACUUM_THRESHOLD": "0"}
CONFIGS: dict[str, dict[str, str]] = {"quiet": QUIET, "vacuum": VACUUM_EVERY_COMMIT}

# How long one trial (operation and checks) may take before it counts as hung.
TRIAL_SECONDS = 10.0
# How long a worker thread waits for the cancellation it requested to land.
LANDING_SECONDS = 2.0
# Upper bound on k: an operation that never completes without the injection firing.
MAX_K = 5000
# Sleep commands this long or longer (retry back-offs, 50-250 ms) return at once under the
# kit: it changes how long a retry waits, never what the core decides. Shorter ones (the
# ID clock catching up, the pause between vacuum batches) really sleep.
INSTANT_SLEEP = 0.01

# The thread names of everything an adapter starts (as tests/contract/contract_support.py).


class TrialHung(BaseException):
    """Raised in the main thread by the watchdog alarm: the trial did not finish."""


class Abort(Exception):
    """The broker cannot be trusted for more trials (hung, or left locked): stop this test."""


class PlainCancel(Exception):
    """Stands for a ``trio.Cancelled`` that the caller's own cancel scope absorbed."""

    def __repr__(self) -> str:
        return "trio.Cancelled"


# ===================================================================== counts
@dataclass
class Tally:
    operations: set[str] = field(default_factory=set)
    trials: int = 0  # every run, including the last one, where the injection no longer fired
    fired: int = 0  # injection points: runs where the injection fired


COUNTS: dict[tuple[str, str], Tally] = defaultdict(Tally)


def record_counts(adapter: str, kind: str, operation: str, trials: int, fired: int) -> None:
    tally = COUNTS[(adapter, kind)]
    tally.operations.add(operation)
    tally.trials += trials
    tally.fired += fired


# ========================================================== library frames
def _directory_of(module_file: str | None) -> str:
    assert module_file is not None
    return str(Path(module_file).resolve().parent)


# sansio_broker/adapters is a symlink to ../adapters: both count, as resolved paths.
LIBRARY_ROOTS: tuple[str, ...] = tuple(
    sorted({_directory_of(sansio_broker.__file__), _directory_of(sansio_broker.adapters.__file__)})
)
_IN_LIBRARY: dict[CodeType, bool] = {}


def in_library(code: CodeType) -> bool:
    """Whether ``code`` belongs to the library (cached per code object)."""
    found = _IN_LIBRARY.get(code)
    if found is None:
        resolved = str(Path(code.co_filename).resolve()) if code.co_filename.startswith("/") else ""
        found = any(resolved.startswith(root + os.sep) for root in LIBRARY_ROOTS)
        _IN_LIBRARY[code] = found
    return found


def where(frame: FrameType) -> str:
    code = frame.f_code
    return f"{Path(code.co_filename).name}:{frame.f_lineno} in {code.co_name}"


def deliver_sigint(frame: FrameType) -> None:
    """What SIGINT does at this point: its handler runs (by default raising KeyboardInterrupt).

    A library that installs its own handler (to defer the interrupt out of a
    critical section) gets it called here, as a real signal would.
    """
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


class LineInterrupter:
    """Delivers SIGINT at the k-th ``line`` event of a library frame in this thread."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.count = 0
        self.fired: str | None = None

    def _global(self, frame: FrameType, event: str, arg: object) -> Any:
        return self._local if in_library(frame.f_code) else None

    def _local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line" and self.fired is None:
            self.count += 1
            if self.count == self.k:
                self.fired = f"line {self.k}: {where(frame)}"
                deliver_sigint(frame)
        return self._local

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        sys.settrace(self._global)
        try:
            yield
        finally:
            sys.settrace(None)


# =================================================================== injector
@dataclass
class Plan:
    """One trial's injection: ``kind`` at the k-th command (or k-th operation result)."""

    kind: str  # "error" | "busy" | "cancel"
    phase: str  # "before" | "after" (the k-th command) | "result" (the k-th operation's answer)
    k: int
    threads: frozenset[int] | None = None  # count only commands run in these threads
    act: Callable[[], None] | None = None  # cancel: returns once the cancellation has landed
    act_result: Callable[[], None] | None = None
    victim: int = 0  # the caller the cancellation targets (groups: (k - 1) % callers)
    active: bool = True
    fired: str | None = None


@dataclass
class PersistentFault:
    """A fault raised by every command ``matches`` accepts (vacuum tests)."""

    matches: Callable[[object], bool]
    make: Callable[[], BaseException]
    hits: int = 0


def describe(command: object) -> str:
    name = type(command).__name__
    if isinstance(command, Execute | ExecuteMany):
        return f"{name}({' '.join(command.sql.split())[:48]})"
    return name


class Injector:
    """Wraps the handler table of every driver created while installed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plan: Plan | None = None
        self._commands = 0
        self._runs = 0
        self.faults: list[PersistentFault] = []
        self.drivers = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = SyncDriver.__init__
        injector = self

        def init(driver: SyncDriver, *args: Any, **kwargs: Any) -> None:
            original(driver, *args, **kwargs)
            injector.wrap(driver)

        monkeypatch.setattr(SyncDriver, "__init__", init)

    def wrap(self, driver: SyncDriver) -> None:
        table = internals.driver_handlers(driver)
        for command_type, handler in list(table.items()):
            table[command_type] = self._wrap_handler(command_type, handler)
        with contextlib.suppress(AttributeError):  # a driver with __slots__: no "result" phase
            object.__setattr__(driver, "run", self._wrap_run(driver.run))
        self.drivers += 1

    # --- trials -------------------------------------------------------------
    def arm(self, plan: Plan) -> None:
        with self._lock:
            self._commands = self._runs = 0
            self._plan = plan

    def disarm(self) -> str | None:
        """Stop injecting; returns where the injection fired (None: it never did)."""
        with self._lock:
            plan, self._plan = self._plan, None
        if plan is None:
            return None
        plan.active = False
        return plan.fired

    def _counts(self, plan: Plan) -> bool:
        return plan.threads is None or threading.get_ident() in plan.threads

    def _wrap_handler(self, command_type: type, handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
        def handle(command: Any) -> Any:
            for fault in self.faults:
                if fault.matches(command):
                    fault.hits += 1
                    raise fault.make()
            if command_type is Sleep and command.seconds >= INSTANT_SLEEP:
                return None  # a retry's back-off: the suite tests decisions, not waiting
            plan = self._plan
            if plan is None or not self._counts(plan):
                return handler(command)
            hit = False
            if plan.phase in ("before", "after"):
                with self._lock:
                    if self._plan is plan and plan.fired is None:
                        self._commands += 1
                        if self._commands == plan.k:
                            plan.fired = f"command {plan.k} {plan.phase}: {describe(command)}"
                            hit = True
            if hit and plan.phase == "before":
                self._strike(plan)
            result = handler(command)
            if hit and plan.phase == "after":
                self._strike(plan)
            return result

        return handle

    def _wrap_run(self, run: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(operation: Any, *args: Any, **kwargs: Any) -> Any:
            result = run(operation, *args, **kwargs)
            plan = self._plan
            if plan is not None and plan.phase == "result" and self._counts(plan):
                hit = False
                with self._lock:
                    if self._plan is plan and plan.fired is None:
                        self._runs += 1
                        if self._runs == plan.k:
                            name = getattr(operation, "__name__", type(operation).__name__)
                            plan.fired = f"result of operation {plan.k} ({name})"
                            hit = True
                if hit and plan.act_result is not None:
                    plan.act_result()
            return result

        return wrapped

    @staticmethod
    def _strike(plan: Plan) -> None:
        if plan.kind == "error":
            raise sqlite3.OperationalError("disk I/O error")
        if plan.kind == "busy":
            raise sqlite3.OperationalError("database is locked")
        if plan.act is not None:
            plan.act()


# ============================================================ file and process
class RawDb:
    """A plain sqlite3 connection of the test's own, to look at the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=1.0, check_same_thread=False)

    def rows(self, queue_name: str) -> list[tuple[str, int, int]]:
        """``(body, id, claimed)`` of one queue, in ID order."""
        found = self.conn.execute(
            "SELECT body, ts, claimed FROM messages WHERE queue = ? ORDER BY ts", (queue_name,)
        ).fetchall()
        return [(str(b), int(t), int(c)) for b, t, c in found]

    def pending_elsewhere(self, queues: tuple[str, ...]) -> list[tuple[str, str]]:
        """``(queue, body)`` of every pending message outside ``queues``."""
        found = self.conn.execute("SELECT queue, body FROM messages WHERE claimed = 0 ORDER BY ts").fetchall()
        return [(str(q), str(b)) for q, b in found if q not in queues]

    def claimed(self, queue_name: str) -> set[int]:
        return {ts for _, ts, claimed in self.rows(queue_name) if claimed}

    def lock_free(self) -> str | None:
        """None if another connection can take the write lock now (within the busy timeout)."""
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            return str(exc)
        self.conn.execute("ROLLBACK")
        return None

    def close(self) -> None:
        self.conn.close()


def open_fds(path: Path) -> list[str]:
    """Descriptors of this process open on the database, its WAL, shm or vacuum lock file."""
    base = str(path.resolve())
    targets = {base + suffix for suffix in ("", "-wal", "-shm", ".vacuum.lock")}
    found = []
    for entry in os.scandir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(entry.path)
            if target in targets:
                found.append(f"fd {entry.name} -> {Path(target).name}")
    return found


def library_stack(frame: FrameType | None, depth: int = 4) -> str:
    """The innermost library frames of a stack, innermost first."""
    found: list[str] = []
    while frame is not None and len(found) < depth:
        if in_library(frame.f_code):
            found.append(where(frame))
        frame = frame.f_back
    return " <- ".join(found) or "outside the library"


@contextlib.contextmanager
def alarm(seconds: float, what: Callable[[], str]) -> Iterator[None]:
    """In the main thread: raise :class:`TrialHung` if the block runs longer than ``seconds``.

    SIGALRM interrupts a thread blocked on a lock. It fires again every
    second until the block is left, in case the library's own clean-up,
    run for the first :class:`TrialHung`, hangs too.
    """
    first: list[str] = []

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        if not first:
            first.append(f"hung for {seconds} s at {library_stack(frame)}: {what()}")
            raise TrialHung(first[0])
        raise TrialHung(f"{first[0]}; its clean-up hung again at {library_stack(frame)}")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, 1.0)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_with_watchdog(function: Callable[[], T], seconds: float, what: Callable[[], str]) -> T:
    """``function()`` in a daemon thread (an event loop's); fail the test if it hangs."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = function()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, name="faults-loop", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise TrialHung(f"hung for {seconds} s (its event loop thread is left behind): {what()}")
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


class Helper:
    """A daemon thread running submitted calls in order (a blocking test's other callers)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()
        assert self.thread.ident is not None
        self.ident: int = self.thread.ident

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def submit(self, function: Callable[[], T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def job() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(function())
                except BaseException as exc:
                    future.set_exception(exc)

        self._jobs.put(job)
        return future

    def stop(self) -> None:
        self._jobs.put(None)


# ==================================================================== trials
@dataclass
class Outcome:
    """What one caller saw."""

    caller: int
    victim: bool = False  # the injection targeted this caller
    delivered: list[Message] = field(default_factory=list)  # handed to it (claims, moves, in a block)
    attempted: list[str] = field(default_factory=list)  # bodies it wrote
    written: list[int] | None = None  # the IDs its write returned
    returned: bool = False
    error: BaseException | None = None
    claimed_at_error: set[int] | None = None  # claimed rows of the trial's queue as the error reached it

    @property
    def unknown(self) -> OutcomeUnknownError | None:
        return self.error if isinstance(self.error, OutcomeUnknownError) else None

    @property
    def unknown_ids(self) -> set[int]:
        ids = getattr(self.unknown, "message_ids", ())
        return {i for i in ids if isinstance(i, int)} if isinstance(ids, tuple) else set()

    @property
    def failed(self) -> bool:
        """A plain failure: the caller was told it did not happen."""
        return self.error is not None and self.unknown is None

    def __str__(self) -> str:
        if self.returned:
            seen = [m.body for m in self.delivered] if self.delivered else self.written
            return f"caller {self.caller} returned {seen!r}"
        if self.error is None:
            return f"caller {self.caller} did not finish"
        extra = f" message_ids={getattr(self.error, 'message_ids', '<none>')}" if self.unknown else ""
        got = f" after {[m.body for m in self.delivered]!r}" if self.delivered else ""
        return f"caller {self.caller} raised {self.error!r}{extra}{got}"


@dataclass
class Trial:
    label: str
    a: str  # the queue the operation works on
    b: str  # a move's destination, a transaction's result queue
    seeded: list[Message]
    outcomes: list[Outcome]
    fired: str | None = None

    def by_body(self, body: str) -> Message:
        for message in self.seeded:
            if message.body == body:
                return message
        return Message(body, -1)  # not seeded: the check reports it


SyncOp = Callable[[Any, Trial, Outcome, int], None]
AsyncOp = Callable[[Any, Any, Trial, Outcome, int], Awaitable[None]]


@dataclass(frozen=True)
class Shape:
    """One operation shape, written for the blocking adapter and for the async ones."""

    name: str
    family: str  # "claim" | "write" | "move" | "txn"
    seed: int
    sync: SyncOp
    aio: AsyncOp
    callers: int = 1
    expect: Callable[[list[Message]], list[int]] | None = None  # the IDs a full success hands over
    at_least_once: bool = False
    busy_may_fail: bool = False  # a "database is locked" inside it is not retried (a batch, a block)

    def __str__(self) -> str:
        return self.name


# --- the blocking versions ----------------------------------------------------
def _sync_queue(broker: Any, name: str) -> Any:
    from sansio_broker.adapters.blocking import Queue

    return Queue(name, broker)


def s_write(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    body = f"{t.a}-w{caller}"
    out.attempted.append(body)
    out.written = [_sync_queue(broker, t.a).write(body)]


def s_write_many(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    bodies = [f"{t.a}-w{i}" for i in range(3)]
    out.attempted.extend(bodies)
    out.written = _sync_queue(broker, t.a).write_many(bodies)


def s_read(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    body = _sync_queue(broker, t.a).read()
    if body is not None:
        out.delivered.append(t.by_body(body))


def s_get(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    message = _sync_queue(broker, t.a).get_message(timeout=GET_TIMEOUT)
    if message is not None:
        out.delivered.append(message)


def s_broker_get(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    found = broker.get([t.b, t.a], timeout=GET_TIMEOUT)  # the first queue is empty
    if found is not None:
        out.delivered.append(t.by_body(found[1]))


def s_claim_id(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    message = broker.claim(t.a, message_id=t.seeded[1].id)
    if message is not None:
        out.delivered.append(message)


def s_write_keep(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    body = f"{t.a}-w{caller}"
    out.attempted.append(body)
    out.written = [_sync_queue(broker, t.a).write(body, keep_newest=1)]


def s_claim_many(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    out.delivered.extend(_sync_queue(broker, t.a).claim_many(2))


def s_claim_all(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    out.delivered.extend(t.by_body(body) for body in _sync_queue(broker, t.a).read(all_messages=True))


def s_stream1(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    for message in _sync_queue(broker, t.a).messages():
        out.delivered.append(message)


def s_stream3(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    for body in _sync_queue(broker, t.a).stream(commit_interval=3):
        out.delivered.append(t.by_body(body))


def s_move(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    message = _sync_queue(broker, t.a).move_to(t.b)
    if message is not None:
        out.delivered.append(message)


def s_move_many(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    out.delivered.extend(_sync_queue(broker, t.a).move_many(t.b, 2))


def s_txn(broker: Any, t: Trial, out: Outcome, caller: int) -> None:
    with broker.transaction():
        message = _sync_queue(broker, t.a).claim()
        assert message is not None, "the seeded message is not there to claim"
        out.delivered.append(message)
        _sync_queue(broker, t.b).write(f"done:{message.body}")


# --- the async versions (asyncio and trio share the API) -----------------------
async def a_write(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    body = f"{t.a}-w{caller}"
    out.attempted.append(body)
    out.written = [await q(t.a, broker).write(body)]


async def a_write_many(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    bodies = [f"{t.a}-w{i}" for i in range(3)]
    out.attempted.extend(bodies)
    out.written = await q(t.a, broker).write_many(bodies)


async def a_read(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    body = await q(t.a, broker).read()
    if body is not None:
        out.delivered.append(t.by_body(body))


async def a_get(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    message = await q(t.a, broker).get_message(timeout=GET_TIMEOUT)
    if message is not None:
        out.delivered.append(message)


async def a_broker_get(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    found = await broker.get([t.b, t.a], timeout=GET_TIMEOUT)  # the first queue is empty
    if found is not None:
        out.delivered.append(t.by_body(found[1]))


async def a_claim_id(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    message = await broker.claim(t.a, message_id=t.seeded[1].id)
    if message is not None:
        out.delivered.append(message)


async def a_write_keep(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    body = f"{t.a}-w{caller}"
    out.attempted.append(body)
    out.written = [await q(t.a, broker).write(body, keep_newest=1)]


async def a_claim_many(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    out.delivered.extend(await q(t.a, broker).claim_many(2))


async def a_claim_all(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    out.delivered.extend(t.by_body(body) for body in await q(t.a, broker).read(all_messages=True))


async def a_stream1(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    async for message in q(t.a, broker).messages():
        out.delivered.append(message)


async def a_stream3(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    async for body in q(t.a, broker).stream(commit_interval=3):
        out.delivered.append(t.by_body(body))


async def a_move(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    message = await q(t.a, broker).move_to(t.b)
    if message is not None:
        out.delivered.append(message)


async def a_move_many(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    out.delivered.extend(await q(t.a, broker).move_many(t.b, 2))


async def a_txn(broker: Any, q: Any, t: Trial, out: Outcome, caller: int) -> None:
    async with broker.transaction():
        message = await q(t.a, broker).claim()
        assert message is not None, "the seeded message is not there to claim"
        out.delivered.append(message)
        await q(t.b, broker).write(f"done:{message.body}")


def _ids(messages: list[Message]) -> list[int]:
    return [m.id for m in messages]


SHAPES: tuple[Shape, ...] = (
    Shape("write", "write", 0, s_write, a_write),
    Shape("write_many", "write", 0, s_write_many, a_write_many),
    Shape("write_keep", "write", 0, s_write_keep, a_write_keep),
    Shape("read", "claim", 2, s_read, a_read, expect=lambda s: _ids(s[:1])),
    Shape("claim_id", "claim", 3, s_claim_id, a_claim_id, expect=lambda s: _ids(s[1:2])),
    Shape("claim_many", "claim", 3, s_claim_many, a_claim_many, expect=lambda s: _ids(s[:2])),
    Shape("claim_all", "claim", 3, s_claim_all, a_claim_all, expect=_ids),
    Shape("stream1", "claim", 3, s_stream1, a_stream1, expect=_ids),
    Shape("stream3", "claim", 4, s_stream3, a_stream3, expect=_ids, at_least_once=True, busy_may_fail=True),
    Shape("move", "move", 2, s_move, a_move, expect=lambda s: _ids(s[:1])),
    Shape("move_many", "move", 3, s_move_many, a_move_many, expect=lambda s: _ids(s[:2])),
    Shape("txn", "txn", 1, s_txn, a_txn, busy_may_fail=True),
    Shape("group_write", "write", 0, s_write, a_write, callers=4),
    Shape("group_read", "claim", 5, s_read, a_read, callers=4, expect=lambda s: _ids(s[:4])),
    # Getters that find their messages (the waiting path under cancellation
    # is tested in tests/waiting, where the time a getter waits is its own).
    Shape("get", "claim", 2, s_get, a_get, expect=lambda s: _ids(s[:1])),
    Shape("group_get", "claim", 4, s_get, a_get, callers=4, expect=_ids),
    Shape("broker_get", "claim", 2, s_broker_get, a_broker_get, expect=lambda s: _ids(s[:1])),
)

# A hang guard only: every getter of these shapes has a message to find.
GET_TIMEOUT = 10.0
SHAPES_BY_NAME = {shape.name: shape for shape in SHAPES}
# Shapes also run with auto-vacuum due after every commit (the first loss).
VACUUM_SHAPES: tuple[Shape, ...] = tuple(
    SHAPES_BY_NAME[n] for n in ("write", "read", "claim_many", "stream1", "get", "broker_get")
)
CLAIM_SHAPES: tuple[Shape, ...] = tuple(s for s in SHAPES if s.family == "claim" and s.callers == 1)

# The phases of each kind: "before"/"after" the k-th command, "result": the k-th
# operation's answer, "line": the k-th library line (blocking).
PHASES: dict[str, tuple[str, ...]] = {
    "error": ("before",),
    "busy": ("before",),
    "cancel": ("before", "after", "result"),
    "interrupt": ("line",),
}


# ==================================================================== checks
def _bodies(messages: list[Message]) -> list[str]:
    return [m.body for m in messages]


def _outcomes(trial: Trial) -> str:
    return "; ".join(str(o) for o in trial.outcomes)


def check_trial(
    shape: Shape,
    trial: Trial,
    rows_a: list[tuple[str, int, int]],
    rows_b: list[tuple[str, int, int]],
    *,
    vacuum: bool = False,
) -> list[str]:
    """The invariant, on the file as it is now: the problems found (empty: it holds)."""
    check = {"claim": _check_claims, "write": _check_writes, "move": _check_moves, "txn": _check_txn}[shape.family]
    return check(shape, trial, rows_a, rows_b, vacuum)


def _check_claims(
    shape: Shape, trial: Trial, rows_a: list[tuple[str, int, int]], rows_b: list[tuple[str, int, int]], vacuum: bool
) -> list[str]:
    problems = []
    seeded = {m.id: m.body for m in trial.seeded}
    state = {ts: (body, claimed) for body, ts, claimed in rows_a}
    pending = {ts for ts, (_, claimed) in state.items() if not claimed}
    if set(state) - set(seeded):
        problems.append(f"rows nobody wrote in {trial.a}: {sorted(set(state) - set(seeded))}")
    if not vacuum and set(seeded) - set(state):
        problems.append(f"seeded rows vanished: {[seeded[i] for i in sorted(set(seeded) - set(state))]}")
    delivered = [m for o in trial.outcomes for m in o.delivered]
    for message in delivered:
        if seeded.get(message.id) != message.body:
            problems.append(f"handed over {message} which was not seeded")
    ids = [m.id for m in delivered]
    unknown = set().union(*(o.unknown_ids for o in trial.outcomes))
    if not shape.at_least_once:
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        if twice:
            problems.append(f"handed over twice: {[seeded.get(i) for i in twice]}")
        again = sorted(set(ids) & pending)
        if again:
            problems.append(
                f"handed over, yet pending again (delivered twice): {[seeded.get(i) for i in again]} "
                f"({_outcomes(trial)})"
            )
    lost = set(seeded) - set(ids) - pending - unknown
    if lost:
        problems.append(
            f"LOST: {[seeded[i] for i in sorted(lost)]} claimed, never handed over, not pending, "
            f"not named by an OutcomeUnknownError ({_outcomes(trial)})"
        )
    for o in trial.outcomes:
        if o.claimed_at_error is None:
            continue
        late = (o.claimed_at_error & set(seeded)) - set(ids) - unknown - lost
        if late:
            problems.append(
                f"still claimed when {o.error!r} reached the caller (given back only later): "
                f"{[seeded[i] for i in sorted(late)]}"
            )
    if rows_b:
        problems.append(f"rows in {trial.b}: {rows_b}")
    if shape.expect is not None and all(o.returned for o in trial.outcomes):
        expected = sorted(shape.expect(trial.seeded))
        if sorted(set(ids)) != expected:
            problems.append(
                f"completed, handing over {sorted(_bodies(delivered))}, expected {[seeded[i] for i in expected]}"
            )
    if shape.callers > 1:
        for o in trial.outcomes:
            if o.returned and len(o.delivered) != 1:
                problems.append(f"reader {o.caller} completed with {_bodies(o.delivered)} while messages were pending")
    return problems


def _check_writes(
    shape: Shape, trial: Trial, rows_a: list[tuple[str, int, int]], rows_b: list[tuple[str, int, int]], vacuum: bool
) -> list[str]:
    problems = []
    stored: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for body, ts, claimed in rows_a:
        stored[body].append((ts, claimed))
    attempted = {body for o in trial.outcomes for body in o.attempted}
    if set(stored) - attempted:
        problems.append(f"rows nobody wrote: {sorted(set(stored) - attempted)}")
    for body, entries in sorted(stored.items()):
        if len(entries) > 1:
            problems.append(f"{body!r} stored {len(entries)} times")
        if any(claimed for _, claimed in entries):
            problems.append(f"{body!r} stored as claimed")
    for o in trial.outcomes:
        present = [body for body in o.attempted if body in stored]
        if o.returned:
            if o.written is None or len(o.written) != len(o.attempted):
                problems.append(f"caller {o.caller} returned {o.written!r} for {len(o.attempted)} bodies")
                continue
            for body, message_id in zip(o.attempted, o.written, strict=True):
                if [ts for ts, _ in stored.get(body, [])] != [message_id]:
                    problems.append(
                        f"caller {o.caller} was told {body!r} is stored as {message_id}; "
                        f"the file holds {stored.get(body, [])}"
                    )
            if o.written != sorted(o.written):
                problems.append(f"caller {o.caller}: IDs out of order {o.written}")
        elif o.unknown is not None:
            if present and len(present) != len(o.attempted):
                problems.append(f"caller {o.caller}: outcome unknown, but only {present} of {o.attempted} stored")
            named = o.unknown_ids
            stored_ids = {ts for body in present for ts, _ in stored[body]}
            if named and stored_ids - named:
                problems.append(
                    f"caller {o.caller}: {o.error!r} names {sorted(named)}, the file holds {sorted(stored_ids)}"
                )
        elif o.error is not None:
            if present:
                problems.append(f"REPORTED FAILED AND STORED: caller {o.caller} got {o.error!r}; {present} stored")
        else:
            problems.append(f"caller {o.caller} did not finish")
    if rows_b:
        problems.append(f"rows in {trial.b}: {rows_b}")
    return problems


def _check_moves(
    shape: Shape, trial: Trial, rows_a: list[tuple[str, int, int]], rows_b: list[tuple[str, int, int]], vacuum: bool
) -> list[str]:
    problems = []
    seeded = {m.id: m.body for m in trial.seeded}
    in_a = {ts: body for body, ts, _ in rows_a}
    in_b = {ts: body for body, ts, _ in rows_b}
    claimed = [body for body, _, c in rows_a + rows_b if c]
    if claimed:
        problems.append(f"rows left claimed by a move: {claimed}")
    if set(in_a) & set(in_b):
        problems.append(f"in both queues: {sorted(set(in_a) & set(in_b))}")
    if {**in_a, **in_b} != seeded:
        problems.append(f"messages changed: {trial.a}={sorted(in_a.values())} {trial.b}={sorted(in_b.values())}")
    moved = set(in_b)
    o = trial.outcomes[0]
    if o.returned:
        if {m.id for m in o.delivered} != moved:
            problems.append(f"returned {_bodies(o.delivered)}, moved {sorted(in_b.values())}")
        if shape.expect is not None and sorted(moved) != sorted(shape.expect(trial.seeded)):
            problems.append(f"completed, moving {sorted(in_b.values())}")
    elif o.unknown is not None:
        if moved and o.unknown_ids and not moved <= o.unknown_ids:
            problems.append(f"{o.error!r} does not name the moved {sorted(moved)}")
    elif o.error is not None:
        if moved:
            problems.append(f"REPORTED FAILED AND MOVED: {o.error!r}; moved {sorted(in_b.values())}")
    else:
        problems.append("the caller did not finish")
    return problems


def _check_txn(
    shape: Shape, trial: Trial, rows_a: list[tuple[str, int, int]], rows_b: list[tuple[str, int, int]], vacuum: bool
) -> list[str]:
    problems = []
    (message,) = trial.seeded
    state = {ts: claimed for _, ts, claimed in rows_a}
    claimed = message.id not in state or state[message.id] == 1
    if not vacuum and message.id not in state:
        problems.append("the seeded row vanished")
    results = [body for body, _, _ in rows_b]
    if results not in ([], [f"done:{message.body}"]):
        problems.append(f"results written: {results}")
    if any(c for _, _, c in rows_b):
        problems.append("the result was stored claimed")
    committed = bool(results)
    if claimed != committed:
        problems.append(f"NOT ATOMIC: claim committed={claimed}, result written={committed}")
    o = trial.outcomes[0]
    if o.returned and not (claimed and committed):
        problems.append("the block completed, but did not commit")
    if o.failed and (claimed or committed):
        problems.append(f"REPORTED FAILED AND COMMITTED: the block raised {o.error!r}")
    return problems


def outcome_unknown_class(adapter: str) -> type[BaseException] | None:
    if adapter == "blocking":
        from sansio_broker.adapters import blocking

        found: type[BaseException] | None = getattr(blocking, "CommitOutcomeUnknown", None)
    elif adapter == "asyncio":
        from sansio_broker.adapters import asyncio as asyncio_adapter

        found = asyncio_adapter.CommitOutcomeUnknown
    else:
        from sansio_broker.adapters import trio as trio_adapter

        found = trio_adapter.CommitOutcomeUnknown
    return found


def allowed_errors(adapter: str, kind: str, shape: Shape, victim: bool) -> tuple[type[BaseException], ...]:
    """The exceptions a caller may see under this injection."""
    from sansio_broker import DatabaseError, OperationCancelled

    if kind == "error":
        return (DatabaseError,)
    if kind == "busy":
        return (DatabaseError,) if shape.busy_may_fail else ()
    if kind == "interrupt":
        # Only the interrupted thread sees the interrupt; the others of its group may be told
        # their share was rolled back.
        return (KeyboardInterrupt,) if victim else (OperationCancelled,)
    if not victim:
        return ()
    if adapter == "asyncio":
        import asyncio

        return (asyncio.CancelledError,)
    unknown = outcome_unknown_class(adapter)
    return (PlainCancel,) if unknown is None else (PlainCancel, unknown)


def exception_problems(adapter: str, kind: str, shape: Shape, trial: Trial) -> list[str]:
    problems = []
    for o in trial.outcomes:
        exc = o.error
        if exc is None:
            if kind == "interrupt" and o.victim and trial.fired is not None and o.returned:
                problems.append("KeyboardInterrupt swallowed: the operation returned normally")
            continue
        if isinstance(exc, OutcomeUnknownError):
            ids = getattr(exc, "message_ids", None)
            if not isinstance(ids, tuple) or not all(isinstance(i, int) for i in ids):
                problems.append(f"{exc!r} has no message_ids tuple (got {ids!r})")
        if isinstance(exc, OutcomeUnknownError) and kind in ("cancel", "interrupt"):
            expected = outcome_unknown_class(adapter)
            if expected is None:
                problems.append(f"{exc!r}: sansio_broker.adapters.{adapter} has no CommitOutcomeUnknown")
            elif not isinstance(exc, expected):
                problems.append(f"{exc!r} is not sansio_broker.adapters.{adapter}.CommitOutcomeUnknown")
        allowed = allowed_errors(adapter, kind, shape, o.victim)
        if not isinstance(exc, allowed):
            names = ", ".join(a.__name__ for a in allowed) or "none"
            problems.append(f"caller {o.caller} raised {type(exc).__module__}.{exc!r} (allowed: {names})")
    return problems


def forget_tracebacks(trial: Trial) -> None:
    """Drop the tracebacks of the callers' exceptions (and their chains), as code that
    does not keep the exception does; the frames they held (cursors among them) go."""
    for o in trial.outcomes:
        seen: set[int] = set()
        stack: list[BaseException | None] = [o.error]
        while stack:
            exc = stack.pop()
            if exc is None or id(exc) in seen:
                continue
            seen.add(id(exc))
            exc.__traceback__ = None
            stack += [exc.__cause__, exc.__context__]


def summarize(problems: list[str], limit: int = 25) -> str:
    shown = "\n".join(f"  - {p}" for p in problems[:limit])
    more = f"\n  ... and {len(problems) - limit} more" if len(problems) > limit else ""
    return f"{len(problems)} problem(s):\n{shown}{more}"

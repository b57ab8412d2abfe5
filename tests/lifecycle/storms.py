"""The storms of issue 9, repeated: how many messages each one loses (target: 0).

    python -m tests.lifecycle.storms [--scale 1.0] [--only NAME ...] [--seed N] [--dir DIR]

Every storm seeds messages whose bodies identify them ("m000000", ...),
interrupts the consumers at random, and then counts, by body:

- received: every body a consumer was handed (the drain at the end included);
- pending: what a fresh broker still finds in the queue afterwards;
- lost: seeded bodies neither received nor pending (target 0);
- duplicates: deliveries beyond the first of one body, a body both received
  and still pending included (target 0).

The storms (``--scale`` multiplies their sizes; 1.0 is the issue's):

1. ``asyncio-cancel``: 600 messages, ``async_broker(path, pool_size=3)`` with
   the default configuration (auto-vacuum on), 300 rounds of "a reader task
   reads until empty and is cancelled after a random 0-2 ms", then a drain.
2. ``trio-cancel``: the same with 400 messages and ``trio.move_on_after``.
3. ``asyncio-close`` and ``trio-close``: 100 rounds of opening a broker
   around one ``read()`` under a random 0.2-2 ms timeout; exceptions that
   escape into the event loop (or unraisable ones) are counted as well.
4. ``blocking-ctrlc``: a subprocess reads a queue with the blocking adapter
   while a timer thread sends its main thread SIGINT every 1-5 ms, the
   handler raising KeyboardInterrupt whenever the main thread is inside the
   library; the loop catches it (and ``OutcomeUnknownError``) and goes on.
5. ``asyncio-sigint``: a real SIGINT to a subprocess running a single-reader
   ``asyncio.run(main())`` consumer, 12 runs.
6. ``asyncio-stream``: for 5 s, tasks iterating the exactly-once
   ``queue.stream()`` are cancelled at random.

The script exits 0 only if no storm lost or duplicated a message or met an
unexpected error, hang or crash. ``BROKER_*`` variables are removed from the
environment first: the storms run with the default configuration.

``tests/lifecycle/test_storms.py`` runs each storm at a small scale.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

from sansio_broker import OutcomeUnknownError
from sansio_broker.adapters.blocking import Broker, Queue
from tests.async_adapters.kit import KITS
from tests.support.workers import CHECKOUT_ROOT

QUEUE = "q"


# ------------------------------------------------------------------ results
@dataclass
class StormResult:
    """What one storm did, and what became of its messages."""

    name: str
    seeded: list[str]
    received: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    # Outcome-unknown errors, interrupts that landed, and so on: reported, not judged.
    details: dict[str, object] = field(default_factory=dict)
    # Anything that must not happen besides loss: unexpected errors, escaped
    # exceptions, hangs, crashes.
    problems: list[str] = field(default_factory=list)
    # Message IDs of the seeded bodies, and the IDs OutcomeUnknownErrors named.
    ids: dict[str, int] = field(default_factory=dict)
    named: set[int] = field(default_factory=set)

    @property
    def lost(self) -> list[str]:
        accounted = set(self.received) | set(self.pending)
        return [body for body in self.seeded if body not in accounted]

    @property
    def lost_but_named(self) -> list[str]:
        """Lost bodies whose IDs an ``OutcomeUnknownError`` named (still lost: a
        claim's hand-over is always knowable, so the target stays 0)."""
        return [body for body in self.lost if self.ids.get(body) in self.named]

    def note_unknown(self, exc: BaseException) -> None:
        """Remember the IDs an OutcomeUnknownError (or a group of them) named."""
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                self.note_unknown(inner)
            return
        for error in (exc, exc.__cause__, exc.__context__):
            if isinstance(error, OutcomeUnknownError):
                self.named.update(int(i) for i in getattr(error, "message_ids", ()) or ())

    @property
    def duplicates(self) -> dict[str, int]:
        """Bodies handed out (or still pending) more than once, with their count."""
        counts = Counter(self.received) + Counter(self.pending)
        return {body: n for body, n in counts.items() if n > 1}

    @property
    def foreign(self) -> list[str]:
        """Bodies received or pending that were never seeded."""
        seeded = set(self.seeded)
        return sorted({b for b in [*self.received, *self.pending] if b not in seeded})

    @property
    def clean(self) -> bool:
        return not self.lost and not self.duplicates and not self.foreign and not self.problems

    def summary(self) -> str:
        lost = self.lost
        duplicates = self.duplicates
        line = (
            f"{self.name:<15} lost {len(lost):>4} of {len(self.seeded):<6}"
            f" duplicates {sum(n - 1 for n in duplicates.values()):<4}"
            f" received {len(self.received):<6} pending {len(self.pending):<5}"
        )
        extra = ["  ".join(f"{key}={value}" for key, value in self.details.items())]
        if lost:
            extra.append(f"lost bodies={lost[:8]}{' ...' if len(lost) > 8 else ''}")
            if self.named:
                extra.append(f"lost but named by an OutcomeUnknownError={len(self.lost_but_named)}")
        if duplicates:
            extra.append(f"duplicated={sorted(duplicates)[:8]}")
        if self.foreign:
            extra.append(f"foreign={self.foreign[:8]}")
        for problem in self.problems[:6]:
            extra.append(f"PROBLEM: {problem}")
        if len(self.problems) > 6:
            extra.append(f"PROBLEM: ... {len(self.problems) - 6} more")
        return line + ("\n    " + "\n    ".join(extra) if extra else "")


def bodies(count: int, start: int = 0) -> list[str]:
    return [f"m{n:06d}" for n in range(start, start + count)]


def seed(path: Path, messages: Sequence[str], result: StormResult) -> None:
    """Write ``messages`` to the queue with a blocking broker of its own."""
    with Broker(path) as broker:
        result.ids.update(zip(messages, broker.write_many(QUEUE, messages), strict=True))


def pending_bodies(path: Path) -> list[str]:
    """The queue's pending bodies, as a fresh broker sees them (nothing claimed)."""
    with Broker(path) as broker:
        return [m.body for m in broker.peek_many(QUEUE, 10**7)]


def scaled(base: int, scale: float, minimum: int = 1) -> int:
    return max(minimum, round(base * scale))


# ----------------------------------------------------- unhandled exceptions
class Escapes:
    """Collects exceptions nobody handled: event-loop handler calls ("Task
    exception was never retrieved"), unraisable exceptions, exceptions that
    ended a thread; and counts what the library logged."""

    def __init__(self) -> None:
        self.unhandled: list[str] = []
        self.logged: list[str] = []

    def loop_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        self.unhandled.append(f"event loop: {context.get('message')}: {exc!r}")

    @contextmanager
    def watching(self) -> Iterator[Escapes]:
        escapes = self

        class Remember(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                text = record.getMessage()
                if record.name.startswith("asyncio") and "never retrieved" in text:
                    escapes.unhandled.append(f"asyncio log: {text}")
                elif record.name.startswith("sansio_broker"):
                    escapes.logged.append(f"{record.levelname}: {text}")

        handler = Remember(level=logging.WARNING)
        root = logging.getLogger()
        root.addHandler(handler)
        previous_unraisable = sys.unraisablehook
        previous_thread_hook = threading.excepthook

        def unraisable(info: Any) -> None:
            self.unhandled.append(f"unraisable: {info.exc_value!r} ({info.err_msg or 'exception ignored'})")

        def thread_hook(info: threading.ExceptHookArgs) -> None:
            name = info.thread.name if info.thread is not None else "?"
            self.unhandled.append(f"thread {name} died: {info.exc_value!r}")

        sys.unraisablehook = unraisable
        threading.excepthook = thread_hook
        try:
            yield self
        finally:
            gc.collect()
            sys.unraisablehook = previous_unraisable
            threading.excepthook = previous_thread_hook
            root.removeHandler(handler)

    def report(self, result: StormResult) -> None:
        result.details["escaped_exceptions"] = len(self.unhandled)
        result.problems.extend(self.unhandled)
        if self.logged:
            result.details["logged"] = len(self.logged)


def outcome_unknown(exc: BaseException) -> bool:
    """An OutcomeUnknownError, or a TimeoutError/ExceptionGroup carrying only such errors."""
    if isinstance(exc, OutcomeUnknownError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(outcome_unknown(e) for e in exc.exceptions)
    cause = exc.__cause__ or exc.__context__
    return isinstance(exc, TimeoutError) and cause is not None and isinstance(cause, OutcomeUnknownError)


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


# ------------------------------------------------ the asyncio and trio storms
class Runtime:
    """What the cancel storm and the close loop need of asyncio or trio, each in its users' idiom
    (the broker and queue come from the async suite's kit)."""

    name: str

    def open_broker(self, path: Path, **kwargs: Any) -> AbstractAsyncContextManager[Any]:
        return KITS[self.name].open_broker(path, **kwargs)

    def queue(self, broker: Any) -> Any:
        return KITS[self.name].Queue(QUEUE, broker)

    def run(self, main: Callable[[], Awaitable[None]], escapes: Escapes, result: StormResult) -> None:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        raise NotImplementedError

    async def cancelled_after(self, seconds: float, work: Callable[[], Awaitable[None]]) -> Ended:
        """``work()``, cancelled after ``seconds`` from outside (asyncio: its task is cancelled)."""
        raise NotImplementedError

    async def timed_out(self, seconds: float, work: Callable[[], Awaitable[None]]) -> Ended:
        """``work()`` under a timeout of ``seconds`` (asyncio: ``asyncio.timeout``)."""
        raise NotImplementedError


# How a cancelled piece of work ended: "finished", "cancelled", "unknown"
# (an OutcomeUnknownError) or "error", with the exception.
Ended = tuple[str, BaseException | None]


def ended_by(exc: Exception) -> Ended:
    return ("unknown" if outcome_unknown(exc) else "error", exc)


class AsyncioRuntime(Runtime):
    name = "asyncio"

    def run(self, main: Callable[[], Awaitable[None]], escapes: Escapes, result: StormResult) -> None:
        async def watched() -> None:
            asyncio.get_running_loop().set_exception_handler(escapes.loop_handler)
            await main()
            gc.collect()
            await asyncio.sleep(0.01)  # a give-back scheduled late would fail (or not) now

        asyncio.run(watched())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def cancelled_after(self, seconds: float, work: Callable[[], Awaitable[None]]) -> Ended:
        task = asyncio.ensure_future(work())
        await asyncio.sleep(seconds)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError as exc:  # CommitOutcomeUnknown is one too
            return ("unknown" if isinstance(exc, OutcomeUnknownError) else "cancelled", exc)
        except Exception as exc:
            return ended_by(exc)
        return ("finished", None)

    async def timed_out(self, seconds: float, work: Callable[[], Awaitable[None]]) -> Ended:
        try:
            async with asyncio.timeout(seconds):
                await work()
        except asyncio.CancelledError as exc:  # CommitOutcomeUnknown passes through the timeout
            if isinstance(exc, OutcomeUnknownError):
                return ("unknown", exc)
            return ("error", exc)  # a stray CancelledError
        except TimeoutError as exc:
            return ("unknown", exc) if outcome_unknown(exc) else ("cancelled", exc)
        except Exception as exc:
            return ended_by(exc)
        return ("finished", None)


class TrioRuntime(Runtime):
    name = "trio"

    def run(self, main: Callable[[], Awaitable[None]], escapes: Escapes, result: StormResult) -> None:
        import trio

        try:
            trio.run(main)
        except Exception as exc:
            result.problems.append(f"trio.run raised {describe(exc)}")

    async def sleep(self, seconds: float) -> None:
        import trio

        await trio.sleep(seconds)

    async def cancelled_after(self, seconds: float, work: Callable[[], Awaitable[None]]) -> Ended:
        import trio

        try:
            with trio.move_on_after(seconds) as scope:
                await work()
        except Exception as exc:  # CommitOutcomeUnknown is a plain exception
            return ended_by(exc)
        return ("cancelled", None) if scope.cancelled_caught else ("finished", None)

    timed_out = cancelled_after  # move_on_after is both


RUNTIMES: dict[str, Runtime] = {"asyncio": AsyncioRuntime(), "trio": TrioRuntime()}


def tally(result: StormResult, counts: Counter[str], ended: Ended, what: str) -> None:
    kind, exc = ended
    counts[kind] += 1
    if exc is not None and kind == "unknown":
        result.note_unknown(exc)
    elif exc is not None and kind == "error":
        result.problems.append(f"{what} raised {describe(exc)}")


def run_watched(rt: Runtime, main: Callable[[], Awaitable[None]], result: StormResult, path: Path) -> None:
    """Run the storm, counting what escaped; then see what is still pending."""
    escapes = Escapes()
    with escapes.watching():
        rt.run(main, escapes, result)
    escapes.report(result)
    result.pending = pending_bodies(path)


def background_error(broker: Any, result: StormResult) -> None:
    """trio: a clean-up that failed in the background is a problem."""
    error = getattr(broker, "last_background_error", None)
    if error is not None:
        result.problems.append(f"last_background_error: {error!r}")


# ------------------------------------------------ 1. and 2. the cancel storms
def cancel_storm(
    runtime: str, messages: int, workdir: Path, scale: float = 1.0, seed_value: int | None = None
) -> StormResult:
    """``messages`` messages, pool_size=3, default config; 300 readers cancelled after 0-2 ms."""
    rt = RUNTIMES[runtime]
    rng = random.Random(seed_value)
    path = workdir / f"{runtime}-cancel.db"
    result = StormResult(f"{runtime}-cancel", bodies(scaled(messages, scale, 10)))
    rounds = scaled(300, scale)
    received = result.received
    counts: Counter[str] = Counter()

    async def main() -> None:
        async with rt.open_broker(path, pool_size=3) as broker:
            queue = rt.queue(broker)
            result.ids.update(zip(result.seeded, await queue.write_many(result.seeded), strict=True))

            async def reader() -> None:
                while (body := await queue.read()) is not None:
                    received.append(body)

            for _ in range(rounds):
                tally(result, counts, await rt.cancelled_after(rng.uniform(0, 0.002), reader), "reader")
            while (body := await queue.read()) is not None:
                received.append(body)
        background_error(broker, result)

    run_watched(rt, main, result, path)
    result.details.update(rounds=rounds, outcome_unknown=counts["unknown"], readers_finished=counts["finished"])
    return result


# ------------------------------------------------------- 3. the close loops
def close_loop(runtime: str, workdir: Path, scale: float = 1.0, seed_value: int | None = None) -> StormResult:
    """100 rounds of opening a broker around one read under a 0.2-2 ms timeout."""
    rt = RUNTIMES[runtime]
    rng = random.Random(seed_value)
    path = workdir / f"{runtime}-close.db"
    rounds = scaled(100, scale)
    result = StormResult(f"{runtime}-close", bodies(rounds))
    seed(path, result.seeded, result)
    received = result.received
    counts: Counter[str] = Counter()

    async def main() -> None:
        for _ in range(rounds):
            broker: Any = None
            try:
                async with rt.open_broker(path) as broker:
                    queue = rt.queue(broker)

                    async def read_one(queue: Any = queue) -> None:
                        body = await queue.read()
                        if body is not None:
                            received.append(body)

                    ended = await rt.timed_out(rng.uniform(0.0002, 0.002), read_one)
            except Exception as exc:  # opening or closing the broker
                ended = ended_by(exc)
            tally(result, counts, ended, "round")
            background_error(broker, result)
            await rt.sleep(0)

    run_watched(rt, main, result, path)
    result.details.update(rounds=rounds, cancelled=counts["cancelled"], outcome_unknown=counts["unknown"])
    return result


# ------------------------------------------------ 4. the blocking Ctrl-C loop
def blocking_ctrlc_loop(workdir: Path, scale: float = 1.0, seed_value: int | None = None) -> StormResult:
    """A subprocess reads N messages while SIGINT hits its main thread every 1-5 ms."""
    path = workdir / "blocking-ctrlc.db"
    result = StormResult("blocking-ctrlc", bodies(scaled(600, scale, 20)))
    seed(path, result.seeded, result)
    seed_value = random.randrange(2**32) if seed_value is None else seed_value
    timeout = 30 + 0.05 * len(result.seeded)
    lines, stderr, returncode, hung = _run_child(["ctrlc", str(path), str(seed_value)], timeout)
    summary = _read_child_lines(lines, result)
    result.pending = pending_bodies(path)
    result.details["claimed"] = len(result.seeded) - len(result.pending)
    result.details["hung"] = hung
    result.details.update(summary)
    _judge_child(result, returncode, stderr, hung, expect_rc=(0,))
    if summary.get("errors"):
        result.problems.append(f"errors other than KeyboardInterrupt/OutcomeUnknownError: {summary['errors']}")
    if summary.get("usable_after") is False:
        result.problems.append(f"the broker was unusable after the loop: {summary.get('usable_error')}")
    if summary.get("wedged"):
        result.problems.append("gave up after consecutive errors (the broker was wedged)")
    return result


def _child_ctrlc(path: str, seed_value: int) -> int:
    """The child of storm 4: single-threaded ``queue.read()`` loop under SIGINT."""
    broker = Broker(path)
    queue = Queue(QUEUE, broker)
    armed = [False]
    counts: Counter[str] = Counter()
    consume_code: CodeType = _consume.__code__

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        # Raise only while the library is running: a frame other than the
        # loop's own. An interrupt that finds the loop itself running (read()
        # has returned; the body is being recorded) would lose the body in
        # this script, not in the library: it is counted and dropped.
        if armed[0] and frame is not None and frame.f_code is not consume_code:
            counts["raised"] += 1
            raise KeyboardInterrupt
        counts["outside_library"] += 1

    signal.signal(signal.SIGINT, on_sigint)
    stop = threading.Event()
    main_thread = threading.main_thread().ident
    assert main_thread is not None
    timer_rng = random.Random(seed_value)

    def timer() -> None:
        while not stop.wait(timer_rng.uniform(0.001, 0.005)):
            signal.pthread_kill(main_thread, signal.SIGINT)
            counts["sent"] += 1

    thread = threading.Thread(target=timer, daemon=True)
    thread.start()
    try:
        outcome = _consume(queue, armed)
    finally:
        stop.set()
        thread.join()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # none still in flight may land now
    usable: dict[str, object] = {"usable_after": True}
    try:
        broker.write("after", "probe")
        if Queue("after", broker).read() != "probe":
            usable = {"usable_after": False, "usable_error": "the probe came back wrong"}
    except Exception as exc:
        usable = {"usable_after": False, "usable_error": describe(exc)}
    broker.close()
    summary = {**outcome, **usable, "interrupts_sent": counts["sent"], "raised_in_library": counts["raised"]}
    summary["interrupts_outside_library"] = counts["outside_library"]
    print("S " + json.dumps(summary), flush=True)
    return 0


def _consume(queue: Queue, armed: list[bool]) -> dict[str, object]:
    # Only builtins are called here besides queue.read(): every Python frame
    # below this one belongs to the library.
    landed = unknown = consecutive = 0
    errors: list[str] = []
    wedged = False
    armed[0] = True
    while True:
        try:
            body = queue.read()
            consecutive = 0
            if body is None:
                break
            print("R", body, flush=True)
        except OutcomeUnknownError as exc:  # blocking's CommitOutcomeUnknown is a KeyboardInterrupt too
            unknown += 1
            landed += isinstance(exc, KeyboardInterrupt)
            print("U", json.dumps(list(getattr(exc, "message_ids", ()) or ())), flush=True)
        except KeyboardInterrupt:
            landed += 1
        except Exception as exc:
            consecutive += 1
            if len(errors) < 5:
                errors.append(repr(exc))
            if consecutive > 50:
                wedged = True
                break
    armed[0] = False
    return {"interrupts_landed": landed, "outcome_unknown": unknown, "errors": errors, "wedged": wedged}


# ------------------------------------------- 5. SIGINT to an asyncio consumer
def asyncio_sigint_consumer(workdir: Path, scale: float = 1.0, seed_value: int | None = None) -> StormResult:
    """12 runs: a real SIGINT to ``asyncio.run(main())`` looping ``await queue.read()``."""
    rng = random.Random(seed_value)
    runs = scaled(12, scale)
    per_run = 400
    result = StormResult("asyncio-sigint", [])
    runs_losing = hung_runs = 0
    unknown = 0
    for run in range(runs):
        path = workdir / f"asyncio-sigint-{run}.db"
        messages = bodies(per_run, start=run * per_run)
        result.seeded.extend(messages)
        seed(path, messages, result)
        proc = _start_unbuffered(_child_command(["asyncio-consumer", str(path)]), cwd=workdir)
        first = _first_line(proc)
        if first.strip() == "ready":
            time.sleep(rng.uniform(0.02, 0.15))
            proc.send_signal(signal.SIGINT)
            out, err, hung = _rest_of_output(proc, timeout=20)
        else:
            out, err, hung = _rest_of_output(proc, timeout=60)
            result.problems.append(f"run {run}: the consumer did not start: {first!r} {err[-500:]}")
        before = len(result.received)
        _read_child_lines([first, *out], result)
        unknown += sum(line.startswith("U ") for line in out)
        pending = pending_bodies(path)
        result.pending.extend(pending)
        got = set(result.received[before:]) | set(pending)
        runs_losing += any(m not in got for m in messages)
        hung_runs += hung
        _judge_child(result, proc.returncode, err, hung, expect_rc=(-signal.SIGINT, 130), run=run)
    result.details.update(runs=runs, runs_losing=runs_losing, hung_runs=hung_runs, outcome_unknown=unknown)
    return result


def _child_asyncio_consumer(path: str) -> int:
    from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

    async def main() -> None:
        async with async_broker(path) as broker:
            queue = AsyncQueue(QUEUE, broker)
            await queue.peek()
            print("ready", flush=True)
            while True:
                try:
                    body = await queue.read()
                except OutcomeUnknownError as exc:  # not a CancelledError: carry on
                    print("U", json.dumps(list(getattr(exc, "message_ids", ()) or ())), flush=True)
                    continue
                if body is None:
                    await asyncio.sleep(0.001)
                else:
                    print("R", body, flush=True)

    asyncio.run(main())  # SIGINT cancels main(); KeyboardInterrupt ends the process
    return 0


# ---------------------------------------------- 6. exactly-once stream storm
def asyncio_stream_storm(workdir: Path, scale: float = 1.0, seed_value: int | None = None) -> StormResult:
    """For 5 s, three tasks at a time iterate ``queue.stream()`` and are cancelled at random."""
    from sansio_broker.adapters.asyncio import AsyncQueue, async_broker

    rng = random.Random(seed_value)
    path = workdir / "asyncio-stream.db"
    duration = 5.0 * scale
    result = StormResult("asyncio-stream", [])
    received = result.received
    unknown = rounds = 0

    async def main() -> None:
        nonlocal unknown, rounds
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(escapes.loop_handler)
        async with async_broker(path) as broker:
            queue = AsyncQueue(QUEUE, broker)

            async def streamer() -> None:
                async for body in queue.stream():
                    received.append(body)

            deadline = loop.time() + duration
            while loop.time() < deadline:
                if await queue.size() < 100:
                    more = bodies(300, start=len(result.seeded))
                    result.ids.update(zip(more, await queue.write_many(more), strict=True))
                    result.seeded.extend(more)
                rounds += 1
                tasks = [asyncio.create_task(streamer()) for _ in range(3)]
                for task in tasks:
                    loop.call_later(rng.uniform(0, 0.004), task.cancel)
                for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                    if outcome is None or type(outcome) is asyncio.CancelledError:
                        continue
                    if outcome_unknown(outcome):
                        unknown += 1
                        result.note_unknown(outcome)
                    else:
                        result.problems.append(f"a stream raised {describe(outcome)}")
            await asyncio.sleep(0.005)  # let the last timers fire on finished tasks
            async for body in queue.stream():
                received.append(body)
        gc.collect()

    escapes = Escapes()
    with escapes.watching():
        asyncio.run(main())
    escapes.report(result)
    result.pending = pending_bodies(path)
    result.details.update(seconds=duration, rounds=rounds, outcome_unknown=unknown)
    return result


# ------------------------------------------------------------ child plumbing
def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_") and k != "PYTHONWARNINGS"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONFAULTHANDLER"] = "1"
    env["PYTHONPATH"] = CHECKOUT_ROOT  # the child imports tests.support
    return env


def _child_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "tests.lifecycle.storms", "--child", *args]


def _run_child(args: Sequence[str], timeout: float) -> tuple[list[str], str, int | None, bool]:
    """Run a child to its end (or kill it at ``timeout``): its stdout lines, stderr, exit code, hung."""
    proc = subprocess.Popen(
        _child_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env()
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return out.splitlines(), err, proc.returncode, False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return out.splitlines(), err, proc.returncode, True


def _start_unbuffered(command: Sequence[str], cwd: Path) -> subprocess.Popen[bytes]:
    """A child whose stdout the parent reads unbuffered, for :func:`_first_line`."""
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, env=_child_env(), cwd=cwd
    )


def _first_line(proc: subprocess.Popen[bytes]) -> str:
    """The child's first line, and not a byte more.

    An unbuffered pipe's ``readline`` reads a byte at a time. A buffered (or
    text) one takes whatever the pipe holds, the lines printed right after
    this one too, and ``communicate()`` reads the pipe itself, never that
    buffer: bodies the child received would be counted as lost.
    """
    assert proc.stdout is not None
    return proc.stdout.readline().decode(errors="replace")


def _rest_of_output(proc: subprocess.Popen[bytes], timeout: float) -> tuple[list[str], str, bool]:
    """Wait for the child (killed past ``timeout``): the stdout lines after
    :func:`_first_line`, its stderr, and whether it hung."""
    hung = False
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        proc.kill()
        out, err = proc.communicate()
    return out.decode(errors="replace").splitlines(), err.decode(errors="replace"), hung


def _read_child_lines(lines: Sequence[str], result: StormResult) -> dict[str, Any]:
    """Bodies a child printed as ``R <body>`` go to ``received``; returns its ``S {json}`` summary."""
    summary: dict[str, Any] = {}
    for line in lines:
        if line.startswith("R "):
            result.received.append(line[2:].strip())
        elif line.startswith("U "):
            result.named.update(json.loads(line[2:]))
        elif line.startswith("S "):
            summary = json.loads(line[2:])
    return summary


def _judge_child(
    result: StormResult, returncode: int | None, stderr: str, hung: bool, expect_rc: Sequence[int], run: int = 0
) -> None:
    where = f"run {run}: " if result.name == "asyncio-sigint" else ""
    tail = stderr.strip().splitlines()[-12:]
    if hung:
        result.problems.append(f"{where}hung: killed by the watchdog; stderr tail: {tail}")
        return
    if returncode is not None and returncode < 0 and -returncode != signal.SIGINT:
        result.problems.append(f"{where}crashed: {signal.Signals(-returncode).name}; stderr tail: {tail}")
        return
    if returncode not in expect_rc and not (tail and tail[-1].startswith("KeyboardInterrupt")):
        result.problems.append(f"{where}exit code {returncode}; stderr tail: {tail}")
    escaped = [line for line in stderr.splitlines() if "never retrieved" in line or "Exception ignored" in line]
    if escaped:
        result.problems.append(f"{where}{len(escaped)} escaped exception(s) on stderr: {escaped[:3]}")


# --------------------------------------------------------------------- main
Storm = Callable[[Path, float, int | None], StormResult]

STORMS: dict[str, Storm] = {
    "asyncio-cancel": functools.partial(cancel_storm, "asyncio", 600),
    "trio-cancel": functools.partial(cancel_storm, "trio", 400),
    "asyncio-close": functools.partial(close_loop, "asyncio"),
    "trio-close": functools.partial(close_loop, "trio"),
    "blocking-ctrlc": blocking_ctrlc_loop,
    "asyncio-sigint": asyncio_sigint_consumer,
    "asyncio-stream": asyncio_stream_storm,
}


def run_storm(name: str, workdir: Path, scale: float = 1.0, seed_value: int | None = None) -> StormResult:
    """Run one storm in its own directory under ``workdir``."""
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    return STORMS[name](directory, scale, seed_value)


def _child_main(args: Sequence[str]) -> int:
    role, *rest = args
    if role == "ctrlc":
        return _child_ctrlc(rest[0], int(rest[1]))
    if role == "asyncio-consumer":
        return _child_asyncio_consumer(rest[0])
    raise SystemExit(f"unknown child role {role!r}")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return _child_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every storm's size (1.0: the issue's)")
    parser.add_argument("--only", nargs="+", choices=list(STORMS), help="run only these storms")
    parser.add_argument("--seed", type=int, default=None, help="seed of every storm's random choices")
    parser.add_argument("--dir", type=Path, default=None, help="where the database files go (default: a temp dir)")
    options = parser.parse_args(argv)
    removed = sorted(k for k in os.environ if k.startswith("BROKER_"))
    for key in removed:
        del os.environ[key]
    if removed:
        print(f"(removed {', '.join(removed)} from the environment: the storms use the default configuration)")
    logging.basicConfig(level=logging.WARNING, format="    log %(name)s %(levelname)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="storms-", dir=options.dir) as tmp:
        workdir = Path(tmp)
        print(f"storms at scale {options.scale} in {workdir}", flush=True)
        all_clean = True
        table: list[str] = []
        for name in options.only or list(STORMS):
            started = time.monotonic()
            try:
                result = run_storm(name, workdir, options.scale, options.seed)
            except Exception:
                all_clean = False
                print(f"{name:<15} FAILED TO RUN:\n{traceback.format_exc()}", flush=True)
                table.append(f"  {name:<15} failed to run")
                continue
            all_clean &= result.clean
            print(f"{result.summary()}\n    ({time.monotonic() - started:.1f} s)", flush=True)
            table.append(
                f"  {name:<15} {len(result.lost):>5} {sum(n - 1 for n in result.duplicates.values()):>10}"
                f" {len(result.problems):>8}   of {len(result.seeded)} seeded"
            )
    print(f"\n  {'storm':<15} {'lost':>5} {'duplicates':>10} {'problems':>8}")
    print("\n".join(table))
    print("all storms clean" if all_clean else "NOT CLEAN: messages lost or duplicated, or problems above")
    return 0 if all_clean else 1


if __name__ == "__main__":
    sys.exit(main())

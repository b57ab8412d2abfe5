"""Trial runners: one broker per (operation shape, kind), fresh queue names per trial.

A trial seeds its queue, arms one injection, runs the operation (or, for a
group, four callers at once), disarms, then checks, as a user would:

1. the exceptions the callers saw (``exception_problems``);
2. nothing left running and no write lock held (a second connection takes
   it within its busy timeout);
3. the invariant on the file (``check_trial``);
4. the same broker, in the same thread/task, drains the trial's queues with
   plain reads and gets exactly the pending messages;
5. a write and a read succeed promptly in the same thread/task and in another.

k runs 1, 2, ... until a run completes without the injection firing. After
the last trial the broker is closed; then no adapter thread and no
descriptor on the file may be left, and a fresh broker must find nothing
pending in any trial's queues (it would be a message given back after it was
handed over, or a give-back that came after ``close()``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import itertools
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread
import pytest
import trio

from sansio_broker import Message
from sansio_broker.adapters.blocking import Broker, Queue
from tests.async_adapters.kit import KITS
from tests.faults.faults_support import (
    CONFIGS,
    LANDING_SECONDS,
    MAX_K,
    PHASES,
    QUIET,
    TRIAL_SECONDS,
    Abort,
    Helper,
    Injector,
    LineInterrupter,
    Outcome,
    PlainCancel,
    Plan,
    RawDb,
    Shape,
    Trial,
    TrialHung,
    alarm,
    check_trial,
    exception_problems,
    forget_tracebacks,
    open_fds,
    record_counts,
    run_with_watchdog,
    summarize,
)
from tests.support import internals
from tests.support.threads import adapter_threads, threads_left

T = TypeVar("T")

# Whole-test bound for the async adapters (their loop runs in a watchdog thread).
TEST_SECONDS = 60.0
# Group callers of the blocking adapter interrupted at every STRIDE-th line.
GROUP_LINE_STRIDE = 3


class Rig:
    """What every adapter's runner shares: names, bookkeeping, final checks."""

    adapter = ""
    raw: RawDb

    def __init__(self, path: Path, injector: Injector, config: str) -> None:
        self.path = path
        self.injector = injector
        self.config_name = config
        self.config = CONFIGS[config]
        self.vacuum = config == "vacuum"
        self.threads_before = adapter_threads()
        self.trials: list[Trial] = []
        self.problems: list[str] = []
        self.serial = 0
        self.current = "opening the broker"
        self.broken = False  # hung or left locked: the final checks would only hang too
        # Callers keep the exceptions they got, tracebacks and all (as the REPL keeps
        # sys.last_traceback), until that breaks the broker once; then they are dropped.
        self.keep_tracebacks = True
        self.strays: set[tuple[str, str]] = set()  # pending rows of earlier trials, reported once
        self.counted = [0, 0]  # trials, and trials where the injection fired

    def new_trial(self, shape: Shape, kind: str, phase: str, k: int) -> Trial:
        self.serial += 1
        prefix = f"{shape.name}.{self.serial}"
        label = f"{self.adapter} {shape.name} {kind}/{phase} k={k}"
        if self.vacuum:
            label += " (vacuum after every commit)"
        outcomes = [Outcome(i) for i in range(shape.callers)]
        trial = Trial(label, f"{prefix}.a", f"{prefix}.b", [], outcomes)
        self.trials.append(trial)
        self.current = label
        return trial

    def where(self) -> str:
        """The trial under way, and where its injection fired."""
        trial = self.trials[-1] if self.trials else None
        if trial is None or trial.label != self.current:
            return self.current
        return f"{trial.label} [{trial.fired}]" if trial.fired else trial.label

    def never_fired(self, trial: Trial, k: int) -> None:
        """The first point of every operation is reachable: if k=1 never fires, the kit is not
        reaching the operation at all (every check would pass vacuously)."""
        if k == 1:
            self.add(trial, ["the injection never fired: the kit does not reach this operation"])

    @staticmethod
    def ks(shape: Shape, kind: str) -> Iterator[int]:
        step = GROUP_LINE_STRIDE if kind == "interrupt" and shape.callers > 1 else 1
        return itertools.count(1, step)

    def add(self, trial: Trial, problems: list[str]) -> None:
        fired = f" [{trial.fired}]" if trial.fired else ""
        self.problems.extend(f"{trial.label}{fired}: {p}" for p in problems)

    def judge(self, shape: Shape, kind: str, trial: Trial, rows_a: Any, rows_b: Any) -> list[str]:
        problems = exception_problems(self.adapter, kind, shape, trial)
        problems += check_trial(shape, trial, rows_a, rows_b, vacuum=self.vacuum)
        # Earlier trials left nothing pending: anything pending there now was handed over
        # (or drained) before and given back during this trial.
        stray = [row for row in self.raw.pending_elsewhere((trial.a, trial.b)) if row not in self.strays]
        self.strays.update(stray)
        if stray:
            problems.append(f"messages of earlier trials, already handed over, are pending again: {stray}")
        return problems

    def judge_file(self, shape: Shape, kind: str, trial: Trial, problems: list[str], lock: Any) -> list[str]:
        """Judge what the file holds after a trial (``lock``: who holds the write lock, if
        anyone); returns the trial's pending bodies."""
        if lock is not None:
            problems.append(f"a transaction was left open: another connection cannot write ({lock})")
        rows_a, rows_b = self.raw.rows(trial.a), self.raw.rows(trial.b)
        problems += self.judge(shape, kind, trial, rows_a, rows_b)
        self.add(trial, problems)
        if lock is not None:
            raise Abort("the write lock stays held: no further trial can be trusted")
        return sorted(body for body, _, claimed in rows_a + rows_b if not claimed)

    def final_checks(self) -> None:
        """After close: no thread, no descriptor, nothing pending again."""
        left = threads_left(self.threads_before, timeout=5)
        if left:
            self.problems.append(f"after close: adapter thread(s) left: {sorted(t.name for t in left)}")
        fds = open_fds(self.path)
        if fds:
            self.problems.append(f"after close: descriptors left open on the database: {fds}")
        fresh = Broker(self.path, config=QUIET)
        try:
            for trial in self.trials:
                for name in (trial.a, trial.b):
                    again = [m for m in fresh.claim_all(name) if (name, m.body) not in self.strays]
                    if again:
                        self.problems.append(
                            f"{trial.label}: {[m.body for m in again]} pending again after the trial drained "
                            f"{name} and the broker closed (a late give-back, or handed over twice)"
                        )
        finally:
            fresh.close()

    @contextlib.contextmanager
    def unraisable(self) -> Iterator[None]:
        """Exceptions Python could only print ("Exception ignored in ...") are problems too."""

        def hook(info: Any) -> None:
            self.problems.append(
                f"exception ignored in {info.object!r}: {info.exc_value!r} "
                f"(garbage-collected during or after {self.where()})"
            )

        # What earlier tests left (pytest keeps the last failure in sys.last_*) is
        # collected now, under pytest's own hook, not reported here.
        for name in ("last_type", "last_value", "last_traceback", "last_exc"):
            if hasattr(sys, name):
                setattr(sys, name, None)
        gc.collect()
        previous = sys.unraisablehook
        sys.unraisablehook = hook
        try:
            yield
        finally:
            for trial in self.trials:  # the frames they hold (abandoned operations) go now
                forget_tracebacks(trial)
            gc.collect()
            sys.unraisablehook = previous

    def tally(self, shape: Shape, kind: str, trials: int, fired: int) -> None:
        operation = shape.name + (" (vacuum)" if self.vacuum else "")
        record_counts(self.adapter, kind, operation, trials, fired)

    def verdict(self) -> None:
        if self.problems:
            pytest.fail(summarize(self.problems), pytrace=False)


# ================================================================== blocking
class BlockingRig(Rig):
    """The blocking adapter: the operation runs in the main thread (where SIGINT lands)."""

    adapter = "blocking"

    def __init__(self, path: Path, injector: Injector, config: str = "quiet") -> None:
        super().__init__(path, injector, config)
        self.broker = Broker(path, config=self.config)
        self.raw = RawDb(path)
        self.helpers = [Helper(f"faults-helper-{i}") for i in range(3)]
        # Each thread's connection is opened now, so no trial counts its set-up.
        for helper in self.helpers:
            helper.submit(functools.partial(self.broker.queue_exists, "warm")).result(TRIAL_SECONDS)

    def run(self, shape: Shape, kind: str) -> None:
        try:
            with self.unraisable():
                self._run(shape, kind)
        except (Abort, TrialHung) as exc:
            self.problems.append(f"{self.where()}: {type(exc).__name__}: {exc}")
            self.broken = True
        finally:
            self.tally(shape, kind, *self.counted)
        self.close()
        self.verdict()

    def _run(self, shape: Shape, kind: str) -> None:
        for phase in PHASES[kind]:
            for k in self.ks(shape, kind):
                if k > MAX_K:
                    self.problems.append(f"{shape.name} {kind}/{phase}: never completed without the injection")
                    break
                trial = self.trial(shape, kind, phase, k)
                self.counted[0] += 1
                if trial.fired is None:
                    self.never_fired(trial, k)
                    break
                self.counted[1] += 1

    def close(self) -> None:
        try:
            with alarm(TRIAL_SECONDS, lambda: "close()"):
                self.broker.close()
        except TrialHung as exc:
            self.problems.append(f"close(): {exc}")
            self.broken = True
        for helper in self.helpers:
            helper.stop()
        self.raw.close()
        if not self.broken:
            self.final_checks()

    # --- one trial ------------------------------------------------------------
    def trial(self, shape: Shape, kind: str, phase: str, k: int) -> Trial:
        trial = self.new_trial(shape, kind, phase, k)
        with alarm(TRIAL_SECONDS, lambda: trial.label):
            if shape.seed:
                bodies = [f"{trial.a}-s{i}" for i in range(shape.seed)]
                ids = self.broker.write_many(trial.a, bodies)
                trial.seeded = [Message(b, i) for b, i in zip(bodies, ids, strict=True)]
            if shape.callers == 1:
                self._alone(shape, kind, phase, k, trial)
            else:
                self._group(shape, kind, phase, k, trial)
            self._check(shape, kind, trial)
        return trial

    def _alone(self, shape: Shape, kind: str, phase: str, k: int, trial: Trial) -> None:
        out = trial.outcomes[0]
        out.victim = True
        interrupter = LineInterrupter(k) if kind == "interrupt" else None
        if interrupter is None:
            self.injector.arm(Plan(kind, phase, k, threads=frozenset({threading.get_ident()})))
        try:
            with interrupter.active() if interrupter is not None else contextlib.nullcontext():
                shape.sync(self.broker, trial, out, 0)
            out.returned = True
        except TrialHung:
            raise
        except BaseException as exc:
            out.error = exc
            if shape.family == "claim":
                out.claimed_at_error = self.raw.claimed(trial.a)
        finally:
            trial.fired = interrupter.fired if interrupter is not None else self.injector.disarm()

    def _group(self, shape: Shape, kind: str, phase: str, k: int, trial: Trial) -> None:
        """The main thread and three helpers call at once; the injection is in their run."""
        outs = trial.outcomes
        outs[0].victim = True  # only the main thread is interrupted (where signals land)
        barrier = threading.Barrier(shape.callers)

        def caller(i: int) -> None:
            try:
                barrier.wait(TRIAL_SECONDS / 2)
                shape.sync(self.broker, trial, outs[i], i)
                outs[i].returned = True
            except BaseException as exc:
                outs[i].error = exc

        interrupter = LineInterrupter(k) if kind == "interrupt" else None
        if interrupter is None:
            threads = frozenset({threading.get_ident(), *(h.ident for h in self.helpers)})
            self.injector.arm(Plan(kind, phase, k, threads=threads))
        futures = [h.submit(functools.partial(caller, i + 1)) for i, h in enumerate(self.helpers)]
        try:
            barrier.wait(TRIAL_SECONDS / 2)
            with interrupter.active() if interrupter is not None else contextlib.nullcontext():
                shape.sync(self.broker, trial, outs[0], 0)
            outs[0].returned = True
        except TrialHung:
            raise
        except BaseException as exc:
            outs[0].error = exc
        finally:
            fired = interrupter.fired if interrupter is not None else None
            for i, future in enumerate(futures):
                try:
                    future.result(TRIAL_SECONDS / 2)
                except TimeoutError:
                    trial.fired = fired or self.injector.disarm()
                    raise Abort(f"caller thread {i + 1} hung ({outs[i + 1]})") from None
            trial.fired = fired if interrupter is not None else self.injector.disarm()

    def _check(self, shape: Shape, kind: str, trial: Trial) -> None:
        pending = self.judge_file(shape, kind, trial, [], self.raw.lock_free())
        if not self.keep_tracebacks:
            forget_tracebacks(trial)
        try:
            drained = self._drain(trial.a) + self._drain(trial.b)
        except Exception as exc:
            if not self.keep_tracebacks:
                raise Abort(f"draining in the same thread failed: {exc!r}") from exc
            self.add(
                trial,
                [
                    f"while the caller keeps the exception it got (a REPL keeps sys.last_traceback), "
                    f"the same thread cannot use the broker: {exc!r}; from here on the test drops "
                    "the callers' tracebacks"
                ],
            )
            self.keep_tracebacks = False
            forget_tracebacks(trial)
            try:
                drained = self._drain(trial.a) + self._drain(trial.b)
            except Exception as again:
                raise Abort(f"draining in the same thread failed: {again!r}") from again
        if sorted(drained) != pending:
            self.add(trial, [f"the same broker drained {sorted(drained)}, the file had pending {pending}"])
        self._probe_here(trial.a, "same thread")
        future = self.helpers[0].submit(functools.partial(self._probe, trial.a))
        try:
            future.result(TRIAL_SECONDS / 2)
        except TimeoutError:
            raise Abort("a write and read in another thread hung") from None
        except Exception as exc:
            raise Abort(f"a write and read in another thread failed: {exc!r}") from exc

    def _drain(self, name: str) -> list[str]:
        queue = Queue(name, self.broker)
        drained = []
        while (body := queue.read()) is not None:
            drained.append(body)
        return drained

    def _probe(self, name: str) -> None:
        body = f"{name}-probe-{threading.get_ident()}"
        queue = Queue(name, self.broker)
        queue.write(body)
        got = queue.read()
        assert got == body, f"probe wrote {body!r} and read {got!r}"
        left = [row for row in self.raw.rows(name) if row[0] == body and not row[2]]
        assert not left, f"probe read {body!r}, which is still pending (it would be delivered twice)"

    def _probe_here(self, name: str, where: str) -> None:
        try:
            self._probe(name)
        except Exception as exc:
            raise Abort(f"a write and read in the {where} failed: {exc!r}") from exc


# ==================================================================== async
class AsyncRig(Rig):
    """What the asyncio and trio runners share; each supplies how its users cancel and its loop."""

    adapter: str  # "asyncio" or "trio"
    pool_size = 3

    def __init__(self, path: Path, injector: Injector, config: str = "quiet") -> None:
        super().__init__(path, injector, config)
        self.raw = RawDb(path)
        self.loop_errors: list[str] = []

    # --- the runtime (written once with anyio where the idiom does not matter) --------
    def open(self, pool_size: int) -> contextlib.AbstractAsyncContextManager[Any]:
        return KITS[self.adapter].open_broker(self.path, pool_size=pool_size, config=self.config)

    @property
    def queue_class(self) -> Any:
        return KITS[self.adapter].Queue

    def run_loop(self, main: Callable[[], Awaitable[None]]) -> None:
        raise NotImplementedError

    async def alone(self, op: Callable[[], Awaitable[None]], out: Outcome, plan: Plan, trial: Trial) -> None:
        raise NotImplementedError

    async def together(self, ops: Sequence[Callable[[], Awaitable[None]]], trial: Trial, plan: Plan) -> None:
        raise NotImplementedError

    async def idle(self, broker: Any) -> bool:
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        return not internals.cleaning_up(broker) and internals.idle_connections(broker) == len(
            internals.open_connections(broker)
        )

    async def off_loop(self, function: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(function)

    async def within(self, seconds: float, what: str, function: Callable[[], Awaitable[T]]) -> T:
        with anyio.move_on_after(seconds):
            try:
                return await function()
            except Exception as exc:
                raise Abort(f"{what} failed: {exc!r}") from exc
        raise Abort(f"{what} did not finish within {seconds} s")

    async def elsewhere(self, function: Callable[[], Awaitable[T]]) -> T:
        """``function()`` in another task."""
        box: list[T] = []

        async def run() -> None:
            box.append(await function())

        async with anyio.create_task_group() as group:
            group.start_soon(run)
        return box[0]

    async def pause(self) -> None:
        await anyio.sleep(0.002)

    # --- shared ----------------------------------------------------------------------
    async def quiesce(self, broker: Any) -> bool:
        """Wait (up to 2 s) until no background work runs and every connection is back."""
        deadline = time.monotonic() + 2
        while True:
            try:
                if await self.idle(broker):
                    return True
            except AttributeError:  # the adapter's internals changed: just let it run a little
                for _ in range(5):
                    await self.pause()
                return True
            if time.monotonic() > deadline:
                return False
            await self.pause()

    async def warm(self, broker: Any) -> None:
        """Open every pooled connection now, so none opens during a trial."""
        with contextlib.suppress(AttributeError):
            held = [await internals.acquire(broker) for _ in range(self.pool_size)]
            for connection in held:
                internals.release(broker, connection)

    def run(self, shape: Shape, kind: str) -> None:
        async def main() -> None:
            await self.main(shape, kind)

        self.watch(main)
        self.tally(shape, kind, *self.counted)
        if not self.broken:
            self.final_checks()
        self.verdict()

    def watch(self, main: Callable[[], Awaitable[None]]) -> None:
        """Run ``main`` in the adapter's event loop, in a thread a hang cannot take down."""
        try:
            with self.unraisable():
                run_with_watchdog(lambda: self.run_loop(main), TEST_SECONDS, lambda: self.current)
        except TrialHung as exc:
            self.problems.append(str(exc))
            self.broken = True
        finally:
            self.raw.close()
        gc.collect()  # "Task exception was never retrieved" is reported when the task is collected
        self.problems.extend(f"event loop: {e}" for e in self.loop_errors)

    async def main(self, shape: Shape, kind: str) -> None:
        try:
            async with self.open(self.pool_size) as broker:
                await self.warm(broker)
                try:
                    for phase in PHASES[kind]:
                        for k in self.ks(shape, kind):
                            if k > MAX_K:
                                self.problems.append(f"{shape.name} {kind}/{phase}: never completed")
                                break
                            trial = await self.trial(broker, shape, kind, phase, k)
                            self.counted[0] += 1
                            if trial.fired is None:
                                self.never_fired(trial, k)
                                break
                            self.counted[1] += 1
                except Abort as exc:
                    self.problems.append(f"{self.where()}: Abort: {exc}")
                    self.broken = True
                self.current = "close()"
        except Exception as exc:
            self.problems.append(f"{self.current}: {exc!r}")
            self.broken = True

    async def seed(self, broker: Any, shape: Shape, trial: Trial) -> None:
        if shape.seed:
            bodies = [f"{trial.a}-s{i}" for i in range(shape.seed)]
            ids = await broker.write_many(trial.a, bodies)
            trial.seeded = [Message(b, i) for b, i in zip(bodies, ids, strict=True)]

    async def trial(self, broker: Any, shape: Shape, kind: str, phase: str, k: int) -> Trial:
        trial = self.new_trial(shape, kind, phase, k)
        await self.seed(broker, shape, trial)
        if not await self.quiesce(broker):
            self.add(trial, ["the broker was not idle before the trial"])
        plan = Plan(kind, phase, k, victim=(k - 1) % shape.callers)
        q = self.queue_class
        ops = [functools.partial(shape.aio, broker, q, trial, out, out.caller) for out in trial.outcomes]
        for out in trial.outcomes:
            out.victim = out.caller == plan.victim or kind != "cancel"
        if shape.callers == 1:
            await self.alone(ops[0], trial.outcomes[0], plan, trial)
        else:
            await self.together(ops, trial, plan)
        trial.fired = plan.fired
        await self.check(broker, shape, kind, trial)
        return trial

    def snapshot(self, shape: Shape, trial: Trial, out: Outcome) -> None:
        """The claimed rows when the error reached the caller (a lone claim)."""
        if shape.family == "claim" and shape.callers == 1:
            out.claimed_at_error = self.raw.claimed(trial.a)

    async def check(self, broker: Any, shape: Shape, kind: str, trial: Trial) -> None:
        problems: list[str] = []
        if not await self.quiesce(broker):
            problems.append("2 s after the trial, background work still runs or a connection is not back")
        pending = self.judge_file(shape, kind, trial, problems, await self.off_loop(self.raw.lock_free))
        q = self.queue_class
        drained = await self.within(5, "draining in the same task", lambda: _drain(q(trial.a, broker)))
        drained += await self.within(5, "draining in the same task", lambda: _drain(q(trial.b, broker)))
        if sorted(drained) != pending:
            self.add(trial, [f"the same broker drained {sorted(drained)}, the file had pending {pending}"])
        queue = q(trial.a, broker)
        await self.within(5, "a write and read in the same task", lambda: _probe(queue, "same", self.raw))
        await self.within(
            5, "a write and read in another task", lambda: self.elsewhere(lambda: _probe(queue, "other", self.raw))
        )

    # --- closing right after a cancelled claim --------------------------------------
    def run_close(self, shape: Shape) -> None:
        """Per trial: a fresh broker, one claim cancelled at the k-th point, then close() at once."""

        async def main() -> None:
            try:
                for phase in PHASES["cancel"]:
                    for k in itertools.count(1):
                        trial = await self.close_trial(shape, phase, k)
                        self.counted[0] += 1
                        if trial.fired is None or k > MAX_K:
                            self.never_fired(trial, k)
                            break
                        self.counted[1] += 1
            except Exception as exc:
                self.problems.append(f"{self.current}: {exc!r}")

        self.watch(main)
        record_counts(self.adapter, "cancel+close", shape.name, *self.counted)
        left = threads_left(self.threads_before, timeout=5)
        if left:
            self.problems.append(f"after close: adapter thread(s) left: {sorted(t.name for t in left)}")
        self.verdict()

    async def close_trial(self, shape: Shape, phase: str, k: int) -> Trial:
        trial = self.new_trial(shape, "cancel+close", phase, k)
        plan = Plan("cancel", phase, k)
        out = trial.outcomes[0]
        out.victim = True
        async with self.open(1) as broker:
            await self.seed(broker, shape, trial)
            await self.quiesce(broker)
            op = functools.partial(shape.aio, broker, self.queue_class, trial, out, 0)
            await self.alone(op, out, plan, trial)
            trial.fired = plan.fired
            self.current = f"{trial.label}: close()"
        out.claimed_at_error = None  # close() is the point that matters here
        problems = exception_problems(self.adapter, "cancel", shape, trial)
        problems += check_trial(shape, trial, self.raw.rows(trial.a), self.raw.rows(trial.b), vacuum=self.vacuum)
        self.add(trial, [f"after close(): {p}" for p in problems])
        return trial


async def _drain(queue: Any) -> list[str]:
    drained = []
    while (body := await queue.read()) is not None:
        drained.append(body)
    return drained


async def _probe(queue: Any, where: str, raw: RawDb) -> None:
    body = f"{queue.name}-probe-{where}"
    await queue.write(body)
    got = await queue.read()
    assert got == body, f"probe wrote {body!r} and read {got!r}"
    left = [row for row in raw.rows(queue.name) if row[0] == body and not row[2]]
    assert not left, f"probe read {body!r}, which is still pending (it would be delivered twice)"


# =================================================================== asyncio
class AsyncioRig(AsyncRig):
    adapter = "asyncio"

    def run_loop(self, main: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(self._loop_error)
            await main()

        asyncio.run(guarded())

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        self.loop_errors.append(f"{context.get('message')}: {context.get('exception')!r} (during {self.current})")

    def acts(self, plan: Plan, target: Callable[[], asyncio.Task[Any] | None]) -> None:
        """Cancellation from the worker thread: request it, and wait until the task has taken it."""
        loop = asyncio.get_running_loop()
        loop_thread = threading.get_ident()

        def cancel_now() -> None:
            task = target()
            if plan.active and task is not None and not task.done():
                task.cancel()

        def act() -> None:
            if threading.get_ident() == loop_thread:
                cancel_now()
                return
            landed = threading.Event()

            def cancel() -> None:
                cancel_now()
                # Two more loop iterations: the task has run its reaction by then.
                loop.call_soon(loop.call_soon, landed.set)

            try:
                loop.call_soon_threadsafe(cancel)
            except RuntimeError:  # the loop is closed
                return
            landed.wait(LANDING_SECONDS)

        def act_result() -> None:
            # Cancel as soon as the task's awaited future is done, before the task resumes:
            # the answer is ready, but the task gets CancelledError instead.
            def poll(rounds: int) -> None:
                task = target()
                if not plan.active or task is None or task.done():
                    return
                waiting = getattr(task, "_fut_waiter", None)
                if waiting is not None and waiting.done():
                    task.cancel()
                elif rounds < 50_000:
                    loop.call_soon(poll, rounds + 1)

            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(poll, 0)

        plan.act, plan.act_result = act, act_result

    @staticmethod
    def _uncancel(task: asyncio.Task[Any]) -> None:
        while task.cancelling():
            task.uncancel()

    async def _absorb(self, task: asyncio.Task[Any]) -> None:
        """A cancellation requested too late for the operation is taken here, not in the checks."""
        if task.cancelling():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0)
            self._uncancel(task)

    async def alone(self, op: Callable[[], Awaitable[None]], out: Outcome, plan: Plan, trial: Trial) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.acts(plan, lambda: task)
        claims = bool(trial.seeded)
        self.injector.arm(plan)
        try:
            await op()
            out.returned = True
        except asyncio.CancelledError as exc:
            out.error = exc
            self._uncancel(task)
            if claims:
                out.claimed_at_error = self.raw.claimed(trial.a)
        except Exception as exc:
            out.error = exc
            if claims:
                out.claimed_at_error = self.raw.claimed(trial.a)
        finally:
            self.injector.disarm()
        await self._absorb(task)

    async def together(self, ops: Sequence[Callable[[], Awaitable[None]]], trial: Trial, plan: Plan) -> None:
        tasks: list[asyncio.Task[None]] = []
        self.acts(plan, lambda: tasks[plan.victim] if tasks else None)

        async def caller(i: int) -> None:
            me = asyncio.current_task()
            assert me is not None
            out = trial.outcomes[i]
            try:
                await ops[i]()
                out.returned = True
            except asyncio.CancelledError as exc:
                out.error = exc
                self._uncancel(me)
            except Exception as exc:
                out.error = exc

        self.injector.arm(plan)
        try:
            tasks.extend(asyncio.create_task(caller(i)) for i in range(len(ops)))
            _, pending = await asyncio.wait(tasks, timeout=TRIAL_SECONDS)
        finally:
            self.injector.disarm()
        if pending:
            raise Abort(f"group callers hung: {'; '.join(str(o) for o in trial.outcomes)}")


# ====================================================================== trio
class TrioRig(AsyncRig):
    adapter = "trio"

    def run_loop(self, main: Callable[[], Awaitable[None]]) -> None:
        trio.run(main)

    def acts(self, plan: Plan, target: Callable[[], trio.CancelScope | None]) -> None:
        token = trio.lowlevel.current_trio_token()
        trio_thread = threading.get_ident()

        def cancel_now() -> None:
            scope = target()
            if plan.active and scope is not None:
                scope.cancel()

        def act() -> None:
            # The scope's cancel() delivers to the blocked task at once (its abort runs).
            if threading.get_ident() == trio_thread:
                cancel_now()
            else:
                with contextlib.suppress(trio.RunFinishedError):
                    trio.from_thread.run_sync(cancel_now, trio_token=token)

        def act_result() -> None:
            # Queued now, from the worker: it runs just before the answer is delivered.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(cancel_now)

        plan.act, plan.act_result = act, act_result

    async def alone(self, op: Callable[[], Awaitable[None]], out: Outcome, plan: Plan, trial: Trial) -> None:
        scope = trio.CancelScope()
        self.acts(plan, lambda: scope)
        claims = bool(trial.seeded)
        self.injector.arm(plan)
        try:
            with scope:
                await op()
                out.returned = True
        except Exception as exc:
            out.error = exc
            if claims:
                out.claimed_at_error = self.raw.claimed(trial.a)
        finally:
            self.injector.disarm()
        if scope.cancelled_caught and out.error is None:
            out.error = PlainCancel()
            if claims:
                out.claimed_at_error = self.raw.claimed(trial.a)

    async def together(self, ops: Sequence[Callable[[], Awaitable[None]]], trial: Trial, plan: Plan) -> None:
        scopes = [trio.CancelScope() for _ in ops]
        self.acts(plan, lambda: scopes[plan.victim])

        async def caller(i: int) -> None:
            out = trial.outcomes[i]
            try:
                with scopes[i]:
                    await ops[i]()
                    out.returned = True
            except Exception as exc:
                out.error = exc
            if scopes[i].cancelled_caught and out.error is None:
                out.error = PlainCancel()

        self.injector.arm(plan)
        try:
            with trio.move_on_after(TRIAL_SECONDS) as guard:
                async with trio.open_nursery() as nursery:
                    for i in range(len(ops)):
                        nursery.start_soon(caller, i)
        finally:
            self.injector.disarm()
        if guard.cancelled_caught:
            raise Abort(f"group callers hung: {'; '.join(str(o) for o in trial.outcomes)}")


RIGS: dict[str, type[AsyncRig]] = {"asyncio": AsyncioRig, "trio": TrioRig}

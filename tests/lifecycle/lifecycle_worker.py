"""Subprocess roles of the lifecycle tests: ``python lifecycle_worker.py ROLE ARGS...``.

Each role runs what could crash, hang or fork in a process of its own, so a
segfault or a deadlock fails a test instead of taking pytest down with it.
Roles report JSON lines on stdout (one per trial, or one at the end):

- ``close-load DIR TRIALS SEED``: ``Broker.close()`` while 8 threads run a
  mixed workload, once per trial, each on a fresh file.
- ``sigint-with DB``: threads work inside ``with Broker(DB) as b:`` while the
  main thread waits for a real SIGINT (no report: the exit says it all).
- ``fork-load DIR FORKS SEED``: ``os.fork()`` from the main thread while
  three threads write and read; every child uses the inherited broker.
- ``short-threads DB TOTAL CONCURRENCY``: TOTAL short-lived threads, each
  one write and one read on a shared broker; open descriptors measured.
- ``rlimit-writes DB TOTAL CONCURRENCY``: under ``RLIMIT_NOFILE`` 256, TOTAL
  thread-per-request writes.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sansio_broker import BrokerClosedError
from sansio_broker.adapters.blocking import Broker, Queue

QUEUE = "q"


def report(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def accounting(expected: Sequence[str], received: Sequence[str], pending: Sequence[str]) -> dict[str, Any]:
    """Lost, duplicated and unexpected bodies: ``expected`` should each be
    received once or pending once, and nothing else should be there."""
    counts = Counter(received) + Counter(pending)
    wanted = set(expected)
    lost = sorted(b for b in wanted if b not in counts)
    duplicates = sorted(b for b, n in counts.items() if n > 1)
    unexpected = sorted(b for b in counts if b not in wanted)
    return {"lost": lost, "duplicates": duplicates, "unexpected": unexpected}


# ------------------------------------------------------ close under load
CLOSE_THREADS = 8
CLOSE_SEEDED = 300
KINDS = ("write", "read", "claim_many", "peek", "stream", "write_many")


def close_load(directory: str, trials: int, seed_value: int) -> int:
    rng = random.Random(seed_value)
    for trial in range(trials):
        path = Path(directory) / f"close-{seed_value}-{trial}.db"
        report(trial=trial, **_close_trial(path, rng))
    return 0


def _close_trial(path: Path, rng: random.Random) -> dict[str, Any]:
    path.unlink(missing_ok=True)
    broker = Broker(path)
    seeded = [f"s{n:04d}" for n in range(CLOSE_SEEDED)]
    broker.write_many(QUEUE, seeded)
    written: list[str] = []  # bodies whose write returned
    failed_writes: list[str] = []  # bodies whose write raised
    received: list[str] = []  # bodies a read, claim or stream handed over
    endings: list[str | None] = [None] * CLOSE_THREADS
    operations = [0] * CLOSE_THREADS
    start = threading.Barrier(CLOSE_THREADS + 1)
    seeds = [rng.random() for _ in range(CLOSE_THREADS)]

    def work(n: int) -> None:
        local = random.Random(seeds[n])
        queue = Queue(QUEUE, broker)
        start.wait()
        i = 0
        while True:
            i += 1
            kind = KINDS[local.randrange(len(KINDS))]
            if kind == "write":
                body = f"w{n}-{i}"
                try:
                    broker.write(QUEUE, body)
                except BaseException:
                    failed_writes.append(body)
                    raise
                written.append(body)
            elif kind == "write_many":
                batch = [f"w{n}-{i}-{k}" for k in range(3)]
                try:
                    queue.write_many(batch)
                except BaseException:
                    failed_writes.extend(batch)
                    raise
                written.extend(batch)
            elif kind == "read":
                body = queue.read()
                if body is not None:
                    received.append(body)
            elif kind == "claim_many":
                received.extend(m.body for m in broker.claim_many(QUEUE, 3))
            elif kind == "peek":
                broker.peek(QUEUE)
            else:
                for k, message in enumerate(broker.stream(QUEUE)):
                    received.append(message.body)
                    if k == 4:
                        break
            operations[n] += 1

    def thread_main(n: int) -> None:
        try:
            work(n)
        except BrokerClosedError:
            endings[n] = "BrokerClosedError"
        except BaseException as exc:
            endings[n] = "".join(traceback.format_exception(exc))[-1500:]

    threads = [threading.Thread(target=thread_main, args=(n,), daemon=True) for n in range(CLOSE_THREADS)]
    for thread in threads:
        thread.start()
    start.wait()
    time.sleep(rng.uniform(0.005, 0.04))
    close_error = None
    try:
        broker.close()
    except BaseException as exc:
        close_error = repr(exc)
    deadline = time.monotonic() + 10
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [n for n, thread in enumerate(threads) if thread.is_alive()]
    with Broker(path) as fresh:
        pending = [m.body for m in fresh.peek_many(QUEUE, 10**6)]
    result = accounting([*seeded, *written], received, pending)
    stored_failed = sorted(set(failed_writes) & (set(received) | set(pending)))
    return {
        "endings": endings,
        "hung": hung,
        "close_error": close_error,
        "operations": sum(operations),
        "failed_writes_stored": stored_failed,
        **result,
    }


# ---------------------------------------------------- Ctrl-C on `with Broker`
def sigint_with(path: str) -> int:
    with Broker(path) as broker:
        broker.write_many(QUEUE, [f"s{n}" for n in range(200)])
        threads = [threading.Thread(target=_keep_busy, args=(broker, n)) for n in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.01)
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # waiting for SIGINT
            time.sleep(0.0005)
    print("no SIGINT arrived", file=sys.stderr, flush=True)
    return 3


def _keep_busy(broker: Broker, n: int) -> None:
    """Mixed operations until the broker is closed; anything else is reported."""
    queue = Queue(QUEUE, broker)
    i = 0
    try:
        while True:
            i += 1
            broker.write(QUEUE, f"w{n}-{i}")
            queue.read()
            if i % 4 == 0:
                broker.claim_many(QUEUE, 2)
                broker.peek(QUEUE)
            if i % 7 == 0:
                for k, _ in enumerate(broker.stream(QUEUE)):
                    if k == 2:
                        break
    except BrokerClosedError:
        return
    except BaseException as exc:
        print(f"UNEXPECTED in thread {n}: {''.join(traceback.format_exception(exc))}", file=sys.stderr, flush=True)


# --------------------------------------------------------- fork under load
FORK_THREADS = 3
CHILD_TIMEOUT = 10.0


def fork_load(directory: str, forks: int, seed_value: int) -> int:
    rng = random.Random(seed_value)
    workdir = Path(directory)
    path = workdir / "fork.db"
    broker = Broker(path)
    seeded = [f"s{n:04d}" for n in range(300)]
    broker.write_many(QUEUE, seeded)
    stop = threading.Event()
    written: list[str] = []
    received: list[str] = []
    parent_errors: list[str] = []
    operations = [0] * FORK_THREADS

    def work(n: int) -> None:
        queue = Queue(QUEUE, broker)
        i = 0
        while not stop.is_set():
            i += 1
            try:
                body = f"p{n}-{i}"
                broker.write(QUEUE, body)
                written.append(body)
                got = queue.read()
                if got is not None:
                    received.append(got)
                if i % 10 == 0:
                    batch = [f"p{n}-{i}-{k}" for k in range(3)]
                    queue.write_many(batch)
                    written.extend(batch)
                    received.extend(m.body for m in broker.claim_many(QUEUE, 2))
            except Exception as exc:
                parent_errors.append(f"thread {n}: {exc!r}")
                time.sleep(0.01)
            operations[n] += 1

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(FORK_THREADS)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    children: dict[int, tuple[int, float]] = {}
    outcomes: dict[int, str] = {}
    seconds: dict[int, float] = {}

    def reap(final: bool) -> None:
        while children:
            for pid, (index, started) in list(children.items()):
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    del children[pid]
                    outcomes[index] = _status(status)
                    seconds[index] = round(time.monotonic() - started, 3)
                elif time.monotonic() - started > CHILD_TIMEOUT:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    del children[pid]
                    outcomes[index] = f"hung: killed after {CHILD_TIMEOUT:.0f} s"
            if not final:
                return
            time.sleep(0.005)

    for index in range(forks):
        time.sleep(rng.uniform(0.002, 0.03))
        pid = os.fork()
        if pid == 0:
            _fork_child(broker, index, workdir)  # never returns
        children[pid] = (index, time.monotonic())
        reap(final=False)
    after_forks = list(operations)
    reap(final=True)
    time.sleep(0.1)
    progress = [b - a for a, b in zip(after_forks, operations, strict=True)]
    stop.set()
    for thread in threads:
        thread.join(10)
    broker.close()

    child_written: list[str] = []
    child_received: list[str] = []
    child_errors: dict[int, str] = {}
    for index in range(forks):
        out = workdir / f"child{index}.json"
        err = workdir / f"child{index}.err"
        if out.exists():
            data = json.loads(out.read_text())
            child_written += data["written"]
            child_received += data["received"]
        if err.exists():
            child_errors[index] = err.read_text()[-1500:]
    with Broker(path) as fresh:
        pending = [m.body for m in fresh.peek_many(QUEUE, 10**6)]
    report(
        outcomes={str(i): outcomes.get(i, "never reaped") for i in range(forks)},
        child_seconds={str(i): t for i, t in seconds.items()},
        child_errors={str(i): e for i, e in child_errors.items()},
        parent_errors=parent_errors[:10],
        parent_progress_after_forks=progress,
        threads_alive=[n for n, t in enumerate(threads) if t.is_alive()],
        **accounting([*seeded, *written, *child_written], [*received, *child_received], pending),
    )
    return 0


def _status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    code = os.waitstatus_to_exitcode(status)
    return "ok" if code == 0 else f"exit {code}"


def _fork_child(broker: Broker, index: int, workdir: Path) -> None:
    """In a forked child: write and read with the inherited broker; never returns."""
    code = 1
    try:
        own = f"c{index}"
        mine = [f"c{index}-{k}" for k in range(4)]
        for body in mine[:2]:
            broker.write(own, body)
        broker.write_many(own, mine[2:])
        got = [m.body for m in broker.claim_all(own)]
        if got != mine:
            raise AssertionError(f"read back {got}, wrote {mine}")
        queue = Queue(QUEUE, broker)
        body = f"c{index}-shared"
        queue.write(body)
        received = [b for b in (queue.read() for _ in range(3)) if b is not None]
        broker.close()  # closes only what this child opened
        (workdir / f"child{index}.json").write_text(json.dumps({"written": [body], "received": received}))
        code = 0
    except BaseException:
        (workdir / f"child{index}.err").write_text(traceback.format_exc())
    finally:
        os._exit(code)


# ----------------------------------------------------- short-lived threads
def short_threads(path: str, total: int, concurrency: int) -> int:
    broker = Broker(path)
    broker.write("warm-up", "x")
    baseline = fd_count()
    peak = baseline
    errors: list[str] = []
    received: list[str] = []

    def request(n: int) -> None:
        try:
            broker.write(QUEUE, f"t{n}")
            received.extend(broker.read(QUEUE))  # a list of bodies: one, or none
        except Exception as exc:
            errors.append(repr(exc))

    for first in range(0, total, concurrency):
        threads = [threading.Thread(target=request, args=(n,)) for n in range(first, min(total, first + concurrency))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        peak = max(peak, fd_count())
    final = fd_count()
    pending = [m.body for m in broker.peek_many(QUEUE, 10**6)]
    broker.close()
    report(
        baseline=baseline,
        peak=peak,
        final=final,
        errors=errors[:10],
        error_count=len(errors),
        **accounting([f"t{n}" for n in range(total)], received, pending),
    )
    return 0


def rlimit_writes(path: str, total: int, concurrency: int) -> int:
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    broker = Broker(path)
    errors: list[str] = []
    slots = threading.BoundedSemaphore(concurrency)

    def request(n: int) -> None:
        try:
            broker.write(QUEUE, f"r{n}")
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            slots.release()

    threads = []
    for n in range(total):
        slots.acquire()
        thread = threading.Thread(target=request, args=(n,))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    stored = sorted(m.body for m in broker.peek_many(QUEUE, 10**6))
    broker.close()
    missing = sorted({f"r{n}" for n in range(total)} - set(stored))
    report(error_count=len(errors), errors=sorted(set(errors))[:5], stored=len(stored), missing=missing[:10])
    return 0


ROLES: dict[str, Callable[..., int]] = {
    "close-load": lambda d, t, s: close_load(d, int(t), int(s)),
    "sigint-with": sigint_with,
    "fork-load": lambda d, f, s: fork_load(d, int(f), int(s)),
    "short-threads": lambda p, t, c: short_threads(p, int(t), int(c)),
    "rlimit-writes": lambda p, t, c: rlimit_writes(p, int(t), int(c)),
}

if __name__ == "__main__":
    sys.exit(ROLES[sys.argv[1]](*sys.argv[2:]))

"""Processes of ours and of simplebroker-pg 4.7.2 on one PostgreSQL schema at once.

The PostgreSQL twin of ``test_mp_exactly_once.py``: writers and claimers
(and, in the pipeline, movers) of both programs, ours on each of our three
adapters, share one schema on the real test server. Every message must be delivered exactly once: none lost, none
twice, with the ID its writer got; each consumer sees each producer's
messages in the order they were written (and IDs in increasing order);
nothing is left pending.
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from sansio_broker import Config
from sansio_broker.adapters.blocking import Broker
from tests.multiprocess.mp_helpers import TIMEOUT
from tests.support import pgserver, workers

WORKER = Path(__file__).resolve().parent / "pg_worker.py"
PER_WRITER = 300

if importlib.util.find_spec("simplebroker_pg") is None:  # as the server fixture: skip, but fail under CI=true
    if pgserver.in_ci():
        raise ImportError(f"CI=true and simplebroker_pg is not installed. {pgserver.HOW_TO_ENABLE}")
    pytest.skip(f"simplebroker-pg is not installed. {pgserver.HOW_TO_ENABLE}.", allow_module_level=True)


def command(program: str, role: str, dsn: str, schema: str, *args: object) -> list[str]:
    return [sys.executable, "-W", "always", str(WORKER), program, role, dsn, schema, *map(str, args)]


def run(commands: Sequence[list[str]], cwd: Path, auto_vacuum: str) -> list[list[tuple[str, int]]]:
    """Start every worker, release them together, and return each one's ``(body, id)`` pairs in order.

    ``auto_vacuum`` is our processes'; simplebroker-pg's is off: 4.7.2's own
    vacuum deadlocks against its own claims (40P01, which its claims do not
    retry), so one of its claimers would die of it now and then, whatever we do.
    """
    env = workers.clean_env({"OURS_AUTO_VACUUM": auto_vacuum, "SBPG_AUTO_VACUUM": "0"})
    results = workers.run_workers(commands, cwd, env, TIMEOUT)
    for (_, stderr), cmd in zip(results, commands, strict=True):
        assert stderr == "", f"{cmd[3:6]} {cmd[8:]}: {stderr}"
    return [[(body, ident) for body, ident in result] for result, _ in results]


def rows(dsn: str, schema: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        return conn.execute(sql).fetchall()


def check_written(written_by: dict[str, list[tuple[str, int]]]) -> dict[str, int]:
    """Each writer wrote its bodies in order with increasing IDs; IDs are unique across writers."""
    written: dict[str, int] = {}
    for tag, pairs in written_by.items():
        assert [body for body, _ in pairs] == [f"{tag}-{i}" for i in range(PER_WRITER)], tag
        assert all(a < b for a, b in pairwise(ident for _, ident in pairs)), f"{tag}: IDs not increasing"
        written.update(pairs)
    assert len(written) == len(written_by) * PER_WRITER
    assert len(set(written.values())) == len(written), "two writers got the same ID"
    return written


def check_delivered(delivered_by: dict[str, list[tuple[str, int]]], written: dict[str, int], what: str) -> None:
    """Together exactly the written messages, each once, with its ID; per consumer in FIFO order."""
    received = [pair for pairs in delivered_by.values() for pair in pairs]
    counts = Counter(body for body, _ in received)
    duplicated = sorted(body for body, n in counts.items() if n > 1)
    assert not duplicated, f"{what} more than once: {duplicated[:10]}"
    lost = sorted(set(written) - set(counts))
    assert not lost, f"never {what}: {lost[:10]}"
    assert sorted(received) == sorted(written.items()), f"a message was {what} with another ID"
    for name, pairs in delivered_by.items():
        per_producer: dict[str, list[int]] = defaultdict(list)
        for body, _ in pairs:
            tag, index = body.rsplit("-", 1)
            per_producer[tag].append(int(index))
        for tag, indexes in per_producer.items():
            assert indexes == sorted(indexes), f"{name}: {tag}'s messages {what} out of order"
        assert all(a < b for a, b in pairwise(ident for _, ident in pairs)), f"{name}: IDs {what} out of order"


def create_tables(dsn: str, schema: str) -> None:
    """Our broker creates simplebroker-pg's tables before the race starts."""
    with Broker(dsn, config=Config(backend_schema=schema)):
        pass


# (program, mode) of each writer and claimer: both programs on both sides, and
# all three of our adapters (blocking "ours", asyncio, trio), each a process.
WRITERS = [("ours", "single"), ("sbpg", "single"), ("ours", "many"), ("sbpg", "single"), ("asyncio", "many")]
CLAIMER_SETS = {
    "mixed": [("ours", "claim"), ("sbpg", "one"), ("ours", "claim_many_tx"), ("sbpg", "many"), ("ours", "stream")],
    "batches": [("ours", "stream_batch"), ("sbpg", "many"), ("ours", "claim_many_tx"), ("sbpg", "one")],
    "adapters": [("asyncio", "claim"), ("trio", "claim_many"), ("sbpg", "one"), ("ours", "claim"), ("trio", "claim")],
}


@pytest.mark.slow
@pytest.mark.parametrize("auto_vacuum", ["1", "0"], ids=["auto-vacuum", "no-vacuum"])
@pytest.mark.parametrize("claimer_set", list(CLAIMER_SETS))
def test_writers_and_claimers_of_both_programs_exactly_once(
    tmp_path: Path, pg_dsn: str, pg_schema: str, claimer_set: str, auto_vacuum: str
) -> None:
    create_tables(pg_dsn, pg_schema)
    done = tmp_path / "done"
    done.mkdir()
    tags = [f"{program}{k}" for k, (program, _) in enumerate(WRITERS)]
    writers = [
        command(program, "writer", pg_dsn, pg_schema, "q", tag, PER_WRITER, mode, done)
        for tag, (program, mode) in zip(tags, WRITERS, strict=True)
    ]
    claimer_modes = CLAIMER_SETS[claimer_set]
    claimers = [
        command(program, "claimer", pg_dsn, pg_schema, "q", done, len(tags), mode) for program, mode in claimer_modes
    ]
    commands = [*claimers, *writers]

    results = run(commands, tmp_path, auto_vacuum)

    claimed_by = {
        f"{i}:{program}:{mode}": pairs
        for i, ((program, mode), pairs) in enumerate(zip(claimer_modes, results[: len(claimers)], strict=True))
    }
    written = check_written(dict(zip(tags, results[len(claimers) :], strict=True)))
    check_delivered(claimed_by, written, "claimed")
    assert all(claimed_by.values()), f"a claimer got nothing: { {k: len(v) for k, v in claimed_by.items()} }"

    # The transactional claimers' audit rows committed with their claims, and only those.
    audit = sorted(int(body) for (body,) in rows(pg_dsn, pg_schema, "SELECT body FROM messages WHERE queue = 'audit'"))
    assert audit == sorted(i for name, pairs in claimed_by.items() if name.endswith("_tx") for _, i in pairs)
    # Nothing pending; last_ts at or past the newest ID (either program's vacuum may have removed claimed rows).
    assert rows(pg_dsn, pg_schema, "SELECT count(*) FROM messages WHERE queue = 'q' AND NOT claimed") == [(0,)]
    ((last_ts,),) = rows(pg_dsn, pg_schema, "SELECT last_ts FROM meta")
    assert last_ts >= max(written.values())


@pytest.mark.slow
@pytest.mark.parametrize("auto_vacuum", ["1", "0"], ids=["auto-vacuum", "no-vacuum"])
def test_pipeline_with_movers_of_both_programs(tmp_path: Path, pg_dsn: str, pg_schema: str, auto_vacuum: str) -> None:
    """writers (both) -> q -> movers (both) -> stage -> claimers (both), exactly once at every step."""
    create_tables(pg_dsn, pg_schema)
    dirs = {name: tmp_path / name for name in ("writers", "movers")}
    for path in dirs.values():
        path.mkdir()
    writer_specs = [("ours", "single"), ("sbpg", "single"), ("trio", "many")]
    tags = [f"{program}{k}" for k, (program, _) in enumerate(writer_specs)]
    writers = [
        command(program, "writer", pg_dsn, pg_schema, "q", tag, PER_WRITER, mode, dirs["writers"])
        for tag, (program, mode) in zip(tags, writer_specs, strict=True)
    ]
    mover_specs = [("ours", "many"), ("sbpg", "many"), ("ours", "one"), ("sbpg", "one")]
    movers = [
        command(
            program, "mover", pg_dsn, pg_schema, "q", "stage", dirs["writers"], len(tags), dirs["movers"], f"m{k}", mode
        )
        for k, (program, mode) in enumerate(mover_specs)
    ]
    claimer_specs = [
        ("ours", "claim"),
        ("sbpg", "many"),
        ("ours", "stream_batch"),
        ("sbpg", "one"),
        ("asyncio", "claim"),
    ]
    claimers = [
        command(program, "claimer", pg_dsn, pg_schema, "stage", dirs["movers"], len(movers), mode)
        for program, mode in claimer_specs
    ]
    commands = [*claimers, *movers, *writers]

    results = run(commands, tmp_path, auto_vacuum)

    n_c, n_m = len(claimers), len(movers)
    claimed_by = {f"{i}:{p}:{m}": r for i, ((p, m), r) in enumerate(zip(claimer_specs, results[:n_c], strict=True))}
    moved_by = {
        f"{i}:{p}:{m}": r for i, ((p, m), r) in enumerate(zip(mover_specs, results[n_c : n_c + n_m], strict=True))
    }
    written = check_written(dict(zip(tags, results[n_c + n_m :], strict=True)))
    check_delivered(moved_by, written, "moved")  # a move keeps the ID
    check_delivered(claimed_by, written, "claimed")
    pending = "SELECT count(*) FROM messages WHERE queue IN ('q', 'stage') AND NOT claimed"
    assert rows(pg_dsn, pg_schema, pending) == [(0,)]
    assert rows(pg_dsn, pg_schema, "SELECT count(*) FROM messages WHERE queue = 'q'") == [(0,)]

"""The differential harness (``differential.py``) on a PostgreSQL server: each run gets a schema of its own.

A scenario's steps run with ``BROKER_BACKEND=postgres``, ``BROKER_BACKEND_TARGET`` (the test server) and
``BROKER_BACKEND_SCHEMA`` (a fresh, not yet created schema per run, dropped afterwards). Placeholders, besides
``differential.py``'s: ``{schema}`` (the run's schema) and ``{dsn}`` (the server) in argv, step environments and
scenario files; a step's own environment wins (``BROKER_BACKEND_SCHEMA=public``). Schema names are masked as
``<SCHEMA>`` before comparing. Unlike the SQLite harness, stderr compares exactly (normalised): both programs word
PostgreSQL's errors and status lines alike; ``loose`` steps compare as there.

``setup(dsn, schema)`` runs before a run's steps (e.g. to create a foreign table in the schema).
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from tests.cli.differential import BROKER, SANSIO, Result, Scenario, compare, run_steps
from tests.support.pgserver import fresh_schema

Setup = Callable[[str, str], None]


def pg_env(dsn: str, schema: str) -> dict[str, str]:
    return {"BROKER_BACKEND": "postgres", "BROKER_BACKEND_TARGET": dsn, "BROKER_BACKEND_SCHEMA": schema}


def _fill(text: str, dsn: str, schema: str) -> str:
    return text.replace("{schema}", schema).replace("{dsn}", dsn)


def on_schema(sc: Scenario, dsn: str, schema: str) -> Scenario:
    """``sc`` with the PostgreSQL environment on every step and the placeholders filled in."""
    steps = tuple(
        dataclasses.replace(
            s,
            argv=tuple(_fill(a, dsn, schema) for a in s.argv),
            env={**pg_env(dsn, schema), **{k: _fill(v, dsn, schema) for k, v in s.env.items()}},
        )
        for s in sc.steps
    )
    files = {name: _fill(content.decode(), dsn, schema).encode() for name, content in sc.files.items()}
    return dataclasses.replace(sc, steps=steps, files=files)


def run_on_schema(
    programs: Mapping[str, str], sc: Scenario, dsn: str, schema: str, setup: Setup | None
) -> list[Result]:
    if setup is not None:
        setup(dsn, schema)
    with tempfile.TemporaryDirectory(prefix="clidiff-pg-") as tmp:
        results = run_steps(programs, on_schema(sc, dsn, schema), Path(tmp))
    for r in results:
        r.norm_stdout = _mask(r.norm_stdout, schema)
        r.norm_stderr = _mask(r.norm_stderr, schema)
    return results


# Python's warning format (broker's) and sansio-broker's one line say the same thing.
PY_WARNING = re.compile(r"^\S+:\d+: \w*Warning: (.*)\n(?:  .*\n)?", re.MULTILINE)


def _mask(text: str, schema: str) -> str:
    return PY_WARNING.sub(r"simplebroker: warning: \1\n", text.replace(schema, "<SCHEMA>"))


def exact_stderr(sc: Scenario, ref: Sequence[Result], sub: Sequence[Result], labels: tuple[str, str]) -> list[str]:
    problems = []
    for i, (s, a, b) in enumerate(zip(sc.steps, ref, sub, strict=True)):
        if not s.loose and a.norm_stderr != b.norm_stderr:
            where = f"step {i} [{s.program}] {' '.join(s.argv)!r}"
            problems.append(f"{where}: stderr\n  {labels[0]}: {a.norm_stderr!r}\n  {labels[1]}: {b.norm_stderr!r}")
    return problems


def _differences(sc: Scenario, ref: Sequence[Result], sub: Sequence[Result], labels: tuple[str, str]) -> list[str]:
    found = compare(sc, ref, sub, labels)
    return found + [p for p in exact_stderr(sc, ref, sub, labels) if p not in found]


def run_configs(
    configs: Mapping[str, Mapping[str, str]], sc: Scenario, dsn: str, setup: Setup | None
) -> dict[str, list[Result]]:
    """Run ``sc`` once per configuration, side by side, each on a fresh schema."""
    with ExitStack() as stack, ThreadPoolExecutor(len(configs)) as pool:
        schemas = {name: stack.enter_context(fresh_schema(dsn, prefix="cli", create=False)) for name in configs}
        futures = {
            name: pool.submit(run_on_schema, programs, sc, dsn, schemas[name], setup)
            for name, programs in configs.items()
        }
        return {name: f.result() for name, f in futures.items()}


def check_pg_differential(sc: Scenario, dsn: str, setup: Setup | None = None) -> list[Result]:
    """``broker`` and ``sansio-broker`` each run ``sc`` on a schema of their own; fail on any difference.

    Returns broker's results (for the scenario's own assertions).
    """
    runs = run_configs({"broker": {"A": BROKER, "B": BROKER}, "sansio": {"A": SANSIO, "B": SANSIO}}, sc, dsn, setup)
    problems = _differences(sc, runs["broker"], runs["sansio"], ("broker", "sansio"))
    assert not problems, f"{sc.name}: {len(problems)} difference(s)\n" + "\n".join(problems)
    return runs["broker"]


def check_pg_crossover(sc: Scenario, dsn: str, setup: Setup | None = None) -> None:
    """Steps ``A``/``B`` split between the programs both ways, all steps of a run on ONE schema; each mixed run
    must print what ``broker`` alone printed."""
    configs = {
        "broker-only": {"A": BROKER, "B": BROKER},
        "A=broker,B=sansio": {"A": BROKER, "B": SANSIO},
        "A=sansio,B=broker": {"A": SANSIO, "B": BROKER},
    }
    runs = run_configs(configs, sc, dsn, setup)
    problems = []
    for name in list(configs)[1:]:
        labels = ("broker-only", name)
        problems += [f"({name}) {p}" for p in _differences(sc, runs["broker-only"], runs[name], labels)]
    assert not problems, f"{sc.name}: {len(problems)} difference(s)\n" + "\n".join(problems)

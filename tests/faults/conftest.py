"""Fixtures of the fault-injection suite, and the injection counts it reports.

``injector`` wraps the handler table of every ``SyncDriver`` created during
the test. At the end of the run the counts (operations x injection points x
kinds, per adapter) are printed and written to ``fault_counts.json`` in the
pytest base temporary directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.faults_support import COUNTS, Injector

_REPORT: list[Path] = []


@pytest.fixture
def injector(monkeypatch: pytest.MonkeyPatch) -> Injector:
    kit = Injector()
    kit.install(monkeypatch)
    return kit


def counts_table() -> dict[str, dict[str, dict[str, object]]]:
    table: dict[str, dict[str, dict[str, object]]] = {}
    for (adapter, kind), tally in sorted(COUNTS.items()):
        table.setdefault(adapter, {})[kind] = {
            "operations": sorted(tally.operations),
            "injection_points": tally.fired,
            "trials": tally.trials,
        }
    return table


@pytest.fixture(scope="session", autouse=True)
def _fault_counts_file(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    if COUNTS:
        path = tmp_path_factory.getbasetemp() / "fault_counts.json"
        path.write_text(json.dumps(counts_table(), indent=2) + "\n")
        _REPORT.append(path)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault injection counts")
    write(f"{'adapter':<10}{'kind':<14}{'operations':>11}{'injection points':>18}{'trials':>8}")
    total_points = total_trials = 0
    for (adapter, kind), tally in sorted(COUNTS.items()):
        write(f"{adapter:<10}{kind:<14}{len(tally.operations):>11}{tally.fired:>18}{tally.trials:>8}")
        total_points += tally.fired
        total_trials += tally.trials
    write(f"{'total':<24}{'':>11}{total_points:>18}{total_trials:>8}")
    write("(injection points: runs where the injection fired; trials also count the last run of each")
    write(" operation and phase, which completed without it)")
    for path in _REPORT:
        write(f"counts written to {path}")

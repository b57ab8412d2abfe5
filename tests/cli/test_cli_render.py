"""Every printed line, as broker 8.7.2 prints it (survey section 2)."""

from __future__ import annotations

import json

from sansio_broker.adapters.cli import _render as r

ID = 1796423962825478144


def test_message_lines() -> None:
    assert r.message_line("hello", ID, json_output=False, timestamps=False) == "hello"
    assert r.message_line("hello", ID, json_output=False, timestamps=True) == f"{ID}\thello"
    line = r.message_line("wörld ☃", ID, json_output=True, timestamps=True)  # --json wins over -t
    assert line == '{"message": "wörld ☃", "timestamp": "1796423962825478144"}'
    assert r.message_line("x", 5, json_output=True, timestamps=False).endswith('"timestamp": "0000000000000000005"}')


def test_write_and_stats_lines() -> None:
    assert r.write_result(ID, json_output=False) == str(ID)
    assert r.write_result(ID, json_output=True) == '{"timestamp": "1796423962825478144"}'
    assert r.stats_line("q1", 0, 4, json_output=False) == "q1: 0 (4 total, 4 claimed)"
    assert r.stats_line("q2", 1, 1, json_output=False) == "q2: 1"
    assert r.stats_line("zz", 0, 0, json_output=True) == (
        '{"queue": "zz", "pending": 0, "claimed": 0, "total": 0, "exists": false}'
    )
    assert r.total_claimed_line(4, 5) == "\nTotal claimed messages: 4/5"
    assert r.queue_line("q1", json_output=True) == '{"queue": "q1"}'
    assert r.queue_line("q1", json_output=False) == "q1"
    assert r.exists_line("q1", True) == '{"queue": "q1", "exists": true}'


def test_status_rename_alias_and_banner_lines() -> None:
    assert r.status_lines(5, ID, 40960, json_output=False) == [
        "total_messages: 5",
        f"last_timestamp: {ID}",
        "db_size: 40960",
    ]
    assert r.status_lines(0, 0, 4096, json_output=True) == [
        '{"total_messages": 0, "last_timestamp": "0000000000000000000", "db_size": 4096}'
    ]
    assert r.rename_line("tasks", "jobs", 2, 3, True) == (
        '{"old_queue": "tasks", "new_queue": "jobs", "messages_renamed": 2, "aliases_retargeted": 3, "renamed": true}'
    )
    assert r.alias_line("w", "tasks") == "w -> tasks"
    assert r.watch_banner("w", peek=False, move_to=None) == "Watching queue 'w' (consume mode)..."
    assert r.watch_banner("w", peek=True, move_to=None) == "Watching queue 'w' (peek mode)..."
    assert r.watch_banner("w", peek=False, move_to="w2") == "Watching queue 'w' (move to w2 mode)..."


def test_errors_and_vacuum_lines() -> None:
    assert r.error_line("boom") == "simplebroker: error: boom"
    assert json.loads(r.error_line("bad", "INVALID_ARGUMENT")) == {
        "error": "INVALID_ARGUMENT",
        "message": "bad",
        "retryable": False,
    }
    assert r.error_line("ü", "ERROR") == '{"error": "ERROR", "message": "\\u00fc", "retryable": false}'  # ASCII
    assert r.completed_but_closed("write") == (
        "write completed, but stdout closed before result delivery; inspect broker state before retrying"
    )
    assert r.vacuum_lines(0, 0.01, compact=False) == ["No claimed messages to vacuum"]
    assert r.vacuum_lines(3, 0.04, compact=False) == ["Vacuumed 3 claimed messages in 0.0s"]
    assert r.vacuum_lines(0, 1.25, compact=True) == ["Database compacted in 1.2s"]
    assert r.vacuum_lines(2, 0.0, compact=True) == ["Vacuumed 2 claimed messages in 0.0s", "Database compacted in 0.0s"]
    assert r.config_error_lines("BROKER_X", "v", "a thing") == [
        "simplebroker: warning: ignoring invalid BROKER_X='v' from the environment (expected a thing)",
        "simplebroker: invalid configuration BROKER_X='v': expected a thing",
    ]

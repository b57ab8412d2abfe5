"""Every line the command prints, as ``broker`` 8.7.2 prints it (pure string formatting).

``json`` is imported inside the functions that need it: ``--version``, help
and usage errors never load it.
"""

from __future__ import annotations

from typing import Any

from ._grammar import PROG

NEWLINE_WARNING = (
    "Message contains newline characters which may break shell pipelines. "
    "Consider using --json for safe handling of special characters."
)
STDOUT_CLOSED = "stdout closed before result delivery; rerun with an open stdout consumer"


def error_line(text: str, code: str | None = None, *, retryable: bool = False) -> str:
    """``simplebroker: error: <text>``, or the JSON error object when ``code`` is given."""
    if code is None:
        return f"{PROG}: error: {text}"
    import json

    return json.dumps({"error": code, "message": text, "retryable": retryable})


def completed_but_closed(what: str) -> str:
    return f"{what} completed, but stdout closed before result delivery; inspect broker state before retrying"


def message_line(body: str, message_id: int, *, json_output: bool, timestamps: bool) -> str:
    """One message of read/peek/move/watch: body, ``ID<TAB>body`` or a JSON object (``--json`` wins)."""
    if json_output:
        import json

        return json.dumps({"message": body, "timestamp": f"{message_id:019d}"}, ensure_ascii=False)
    if timestamps:
        return f"{message_id}\t{body}"
    return body


def write_result(message_id: int, *, json_output: bool) -> str:
    if json_output:
        import json

        return json.dumps({"timestamp": f"{message_id:019d}"})
    return str(message_id)


def stats_line(queue: str, pending: int, total: int, *, json_output: bool) -> str:
    """``Q: P`` / ``Q: P (T total, C claimed)``, or the stats JSON object."""
    claimed = total - pending
    if json_output:
        import json

        payload = {"queue": queue, "pending": pending, "claimed": claimed, "total": total, "exists": total > 0}
        return json.dumps(payload)
    if pending != total:
        return f"{queue}: {pending} ({total} total, {claimed} claimed)"
    return f"{queue}: {pending}"


def total_claimed_line(claimed: int, total: int) -> str:
    """The ``list --stats`` trailer (a blank line, then the totals), printed only when something is claimed."""
    return f"\nTotal claimed messages: {claimed}/{total}"


def queue_line(queue: str, *, json_output: bool) -> str:
    if json_output:
        import json

        return json.dumps({"queue": queue})
    return queue


def exists_line(queue: str, exists: bool) -> str:
    import json

    return json.dumps({"queue": queue, "exists": exists})


def status_lines(total: int, last_timestamp: int, db_size: int, *, json_output: bool) -> list[str]:
    if json_output:
        import json

        payload: dict[str, Any] = {
            "total_messages": total,
            "last_timestamp": f"{last_timestamp:019d}",
            "db_size": db_size,
        }
        return [json.dumps(payload, ensure_ascii=False)]
    return [f"total_messages: {total}", f"last_timestamp: {last_timestamp}", f"db_size: {db_size}"]


def rename_line(old: str, new: str, renamed_count: int, retargeted: int, renamed: bool) -> str:
    import json

    return json.dumps(
        {
            "old_queue": old,
            "new_queue": new,
            "messages_renamed": renamed_count,
            "aliases_retargeted": retargeted,
            "renamed": renamed,
        }
    )


def alias_line(alias: str, target: str) -> str:
    return f"{alias} -> {target}"


def watch_banner(queue: str, *, peek: bool, move_to: str | None) -> str:
    mode = f"move to {move_to}" if move_to is not None else ("peek" if peek else "consume")
    return f"Watching queue '{queue}' ({mode} mode)..."


def vacuum_lines(claimed: int, elapsed: float, *, compact: bool) -> list[str]:
    if claimed == 0 and not compact:
        return ["No claimed messages to vacuum"]
    lines = [f"Vacuumed {claimed} claimed messages in {elapsed:.1f}s"] if claimed > 0 else []
    if compact:
        lines.append(f"Database compacted in {elapsed:.1f}s")
    return lines


def config_error_lines(key: str, value: object, expected: str) -> list[str]:
    """broker's two lines for a bad ``BROKER_*`` value (a warning, then the fatal line without "error:")."""
    return [
        f"{PROG}: warning: ignoring invalid {key}={value!r} from the environment (expected {expected})",
        f"{PROG}: invalid configuration {key}={value!r}: expected {expected}",
    ]


def alias_shadow_warning(text: str) -> str:
    return f"{PROG}: warning: {text}"


def newline_warning() -> str:
    return f"{PROG}: warning: {NEWLINE_WARNING}"

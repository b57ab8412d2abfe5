"""The commands, on the blocking broker: each returns its exit code (0, 1 or 2) or raises.

Imported only once a command runs: help, ``--version`` and usage errors never
load the broker.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from sansio_broker import Config, Message
from sansio_broker.adapters.blocking import Broker
from sansio_broker.errors import (
    AliasError,
    BrokerError,
    IntegrityError,
    MessageError,
    NotADatabaseError,
    QueueNameError,
    TimestampError,
)

from . import _io, _render
from ._grammar import Invocation
from ._run import Failure
from ._target import SQLITE_MAGIC, Settings, Target

MOVE_ALL_LIMIT = 1_000_000
QUEUE_NAME_CHARS = "must contain only letters, numbers, periods, underscores, and hyphens"


def dispatch(
    inv: Invocation,
    target: Target,
    config: Config,
    settings: Settings,
    keep: int | None,
    after: int | None,
    before: int | None,
    message_id: int | None,
) -> int:
    """Open the broker on ``target`` and run the command; broker errors become reported failures."""
    if target.backend == "postgres":
        from . import _postgres

        location = _postgres.broker_location(target)
        config = _postgres.broker_config(target, config)
        if inv.command == "init":
            return _report(inv, _postgres.init(target, lambda: _open_and_close(location, config)))
        if inv.command not in (None, "write", "broadcast", "load"):
            _postgres.admit(target)  # broker's _validate_command_target: the schema must be initialised
    else:
        assert target.path is not None
        location = target.path
        if inv.command == "init":
            return init(inv, target.path, config)
        if inv.vacuum and not os.path.exists(target.path):
            if not inv.quiet:
                _io.err(f"Database not found: {target.path}")
            return 0
    if inv.command == "load" and sys.stdin.isatty():
        _io.err("broker load: reads a dump from stdin into a fresh broker (e.g. `broker load < backup.ndjson`)")
        return 1
    try:
        with Broker(location, config=config) as broker:
            if inv.vacuum:
                return vacuum(inv, broker)
            if inv.status:
                return status(inv, broker)
            command = COMMANDS[inv.command or ""]
            return command(Context(inv, broker, config, settings, keep, after, before, message_id))
    except NotADatabaseError:
        raise Failure("Failed to get database connection: File is not a valid SQLite database", "ERROR") from None
    except QueueNameError as exc:
        raise Failure(queue_name_text(str(exc), inv)) from None
    except (MessageError, AliasError, _io.InputError) as exc:
        raise Failure(str(exc)) from None
    except (BrokerError, ValueError) as exc:  # broker's JSON code for other refusals (rename's, ...) is ERROR
        raise Failure(str(exc), "ERROR") from None


def queue_name_text(core_text: str, inv: Invocation) -> str:
    """broker's words for a refused queue name (the core names the queue; broker says what is wrong)."""
    import ast
    import re

    match = re.match(r"Invalid queue name ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"):", core_text)
    name = ast.literal_eval(match.group(1)) if match else None
    operands = [inv.queue, inv.dest, inv.alias, inv.target, *(inv.queues or ())]
    if name == "":
        return "Invalid queue name: cannot be empty"
    if name is not None and any(o and len(o) > 512 and o.startswith(name) for o in operands):
        return "Invalid queue name: exceeds 512 characters"
    return f"Invalid queue name: {QUEUE_NAME_CHARS}. Cannot begin with a hyphen or a period"


class Context:
    """What a command needs: the invocation, the open broker, and the parsed selectors."""

    def __init__(
        self,
        inv: Invocation,
        broker: Broker,
        config: Config,
        settings: Settings,
        keep: int | None,
        after: int | None,
        before: int | None,
        message_id: int | None,
    ) -> None:
        self.inv, self.broker, self.config, self.settings = inv, broker, config, settings
        self.keep, self.after, self.before, self.message_id = keep, after, before, message_id
        self.warning = _io.NewlineWarning(inv.quiet or inv.json)

    @property
    def queue(self) -> str:
        assert self.inv.queue is not None
        return self.inv.queue

    def emit(self, message: Message) -> None:
        """One message line, flushed (``StdoutClosed`` when the reader left)."""
        if not self.inv.json:
            self.warning.check(message.body)
        line = _render.message_line(message.body, message.id, json_output=self.inv.json, timestamps=self.inv.timestamps)
        _io.line(line)

    def order(self) -> str:
        return "newest" if self.inv.newest else "oldest"

    def bounds(self) -> dict[str, Any]:
        """Only the selectors given: calls without them stay valid on older broker versions."""
        out: dict[str, Any] = {}
        if self.after is not None:
            out["after_timestamp"] = self.after
        if self.before is not None:
            out["before_timestamp"] = self.before
        if self.inv.newest:
            out["order"] = "newest"
        return out


# ------------------------------------------------------------------ writing


def write(c: Context) -> int:
    body = _io.message_content(c.inv.message, c.config.max_message_size)
    message_id = c.broker.write(c.queue, body, keep_newest=c.keep)
    if c.inv.json or c.inv.timestamps:
        try:
            _io.line(_render.write_result(message_id, json_output=c.inv.json))
        except _io.StdoutClosed:
            raise Failure(_render.completed_but_closed("write"), "ERROR") from None
    return 0


def broadcast(c: Context) -> int:
    body = _io.message_content(c.inv.message, c.config.max_message_size)
    kwargs: dict[str, Any] = {}
    if c.inv.pattern is not None:
        kwargs["pattern"] = c.inv.pattern
    if c.inv.queues is not None:
        kwargs["queues"] = list(c.inv.queues)
    count: int = c.broker.broadcast(body, **kwargs)
    return 0 if count > 0 else 2


# ----------------------------------------------------- reading and peeking


def _conflicting_message_id(c: Context) -> None:
    if c.inv.message_id is not None and (c.inv.all or c.inv.after or c.inv.before):
        raise Failure("--message cannot be used with --all, --after, or --before")


def read(c: Context) -> int:
    _conflicting_message_id(c)
    if c.inv.all:
        return _read_all(c)
    message = c.broker.claim(c.queue, message_id=c.message_id, **c.bounds())
    return _emit_one(c, message)


def peek(c: Context) -> int:
    _conflicting_message_id(c)
    extra: dict[str, Any] = {"include_claimed": True} if c.inv.include_claimed else {}
    if c.inv.all:
        bounds = {k: v for k, v in c.bounds().items() if k != "order"}
        with c.broker.stream(c.queue, peek=True, **bounds, **extra) as stream:
            return _emit_all(c, stream, give_back=False)
    message = c.broker.peek(c.queue, message_id=c.message_id, **c.bounds(), **extra)
    return _emit_one(c, message)


def _emit_one(c: Context, message: Message | None) -> int:
    """A single result: printed; a closed stdout ends quietly (broker's rc 0)."""
    if message is None:
        return 2
    try:
        c.emit(message)
    except _io.StdoutClosed:
        return 0
    return 0


def _read_all(c: Context) -> int:
    """Exactly once, one claim per message; a message whose printing fails goes back (broker loses it)."""
    bounds = {k: v for k, v in c.bounds().items() if k != "order"}
    interval = c.settings.read_commit_interval
    with c.broker.stream(c.queue, commit_interval=interval, **bounds) as stream:
        # At-least-once batches (interval > 1) roll back on close: nothing to give back by hand.
        return _emit_all(c, stream, give_back=interval == 1)


def _emit_all(c: Context, stream: Iterator[Message], *, give_back: bool) -> int:
    count = 0
    current: Message | None = None
    try:
        for current in stream:
            c.emit(current)
            current = None
            count += 1
    except _io.StdoutClosed:
        if give_back and current is not None:
            c.broker.return_messages(c.queue, [current])
        return 0
    except KeyboardInterrupt:
        if give_back and current is not None:
            c.broker.return_messages(c.queue, [current])
        raise
    return 0 if count else 2


# ------------------------------------------------------------------- moving


def move(c: Context) -> int:
    assert c.inv.dest is not None
    if c.inv.message_id is not None and (c.inv.after or c.inv.before):
        raise Failure("--message cannot be used with --after or --before")
    source, dest = _canonical(c, c.queue), _canonical(c, c.inv.dest)
    if source == dest:
        raise Failure("Source and destination queues cannot be the same")
    if not c.inv.all:
        message = c.broker.move(source, dest, message_id=c.message_id, **c.bounds())
        return _emit_one(c, message)
    bounds = {k: v for k, v in c.bounds().items() if k != "order"}
    moved: list[Message] = c.broker.move_many(source, dest, MOVE_ALL_LIMIT, **bounds)
    try:
        for message in moved:
            c.emit(message)
    except _io.StdoutClosed:
        return 0
    if len(moved) == MOVE_ALL_LIMIT:
        _io.err(f"broker move --all: capped at {MOVE_ALL_LIMIT} messages; messages may remain in the source queue")
    return 0 if moved else 2


def _canonical(c: Context, name: str) -> str:
    if not name.startswith("@"):
        return name
    resolved: str = c.broker.resolve_queue(name)
    return resolved


# -------------------------------------------------------------- inspection


def _finite(c: Context, lines: list[str]) -> int:
    """A finite result: on a closed stdout, broker's "stdout closed" error (rc 1)."""
    try:
        _io.lines(lines)
    except _io.StdoutClosed:
        raise Failure(_render.STDOUT_CLOSED, "ERROR") from None
    return 0


def list_queues(c: Context) -> int:
    import fnmatch

    inv = c.inv
    if inv.prefix is not None and inv.prefix and not _valid_name(inv.prefix):
        raise Failure(f"Invalid queue prefix: {QUEUE_NAME_CHARS}. Cannot begin with a hyphen or a period")

    def keep(queue: str) -> bool:
        if inv.prefix is not None:
            return queue.startswith(inv.prefix)
        return inv.pattern is None or fnmatch.fnmatchcase(queue, inv.pattern)

    if not inv.stats:
        return _finite(c, [_render.queue_line(q, json_output=inv.json) for q in c.broker.list_queues() if keep(q)])
    stats = sorted(c.broker.get_queue_stats(), key=lambda s: s.queue)
    lines = [_render.stats_line(s.queue, s.pending, s.total, json_output=inv.json) for s in stats if keep(s.queue)]
    claimed = sum(s.total - s.pending for s in stats)
    if not inv.json and claimed:
        lines.append(_render.total_claimed_line(claimed, sum(s.total for s in stats)))
    return _finite(c, lines)


def _valid_name(name: str) -> bool:
    import re

    return re.fullmatch(r"[a-zA-Z0-9_][a-zA-Z0-9_.-]*", name) is not None


def exists(c: Context) -> int:
    queue = _canonical(c, c.queue)
    found = c.broker.queue_exists(queue)
    if c.inv.json:
        _finite(c, [_render.exists_line(queue, found)])
    return 0 if found else 2


def stats(c: Context) -> int:
    queue = _canonical(c, c.queue)
    s = c.broker.queue_stats(queue)
    return _finite(c, [_render.stats_line(queue, s.pending, s.total, json_output=c.inv.json)])


def delete(c: Context) -> int:
    if c.inv.message_id is not None and c.inv.queue is None:
        raise Failure("--message requires a queue name")
    if c.message_id is not None:
        return 0 if c.broker.delete_messages(c.queue, [c.message_id]) else 2
    return 0 if c.broker.delete(None if c.inv.all else c.queue) else 2


def rename(c: Context) -> int:
    assert c.inv.dest is not None
    result = c.broker.rename_queue(c.queue, c.inv.dest, retarget_aliases=not c.inv.no_retarget_aliases)
    if c.inv.json:
        try:
            _io.lines([_render.rename_line(*result)])
        except _io.StdoutClosed:
            raise Failure(_render.completed_but_closed("rename command"), "ERROR") from None
    return 0 if result.renamed else 2


def status(inv: Invocation, broker: Broker) -> int:
    s = broker.status()
    lines = _render.status_lines(s.total_messages, s.last_timestamp, s.db_size, json_output=inv.action_json)
    try:
        _io.lines(lines)
    except _io.StdoutClosed:
        raise Failure(_render.STDOUT_CLOSED, "ERROR") from None
    return 0


def vacuum(inv: Invocation, broker: Broker) -> int:
    import time

    start = time.monotonic()
    claimed = sum(s.total - s.pending for s in broker.get_queue_stats())
    if claimed or inv.compact:
        broker.vacuum(compact=inv.compact)
    if not inv.quiet:
        for text in _render.vacuum_lines(claimed, time.monotonic() - start, compact=inv.compact):
            _io.err(text)
    return 0


# ------------------------------------------------------------ dump and load


def dump(c: Context) -> int:
    lines = c.broker.dump(include=c.inv.include, exclude=c.inv.exclude)
    try:
        for text in lines:
            _io.line(text)
    except _io.StdoutClosed:
        return 0
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
    return 0


def _stdin_lines() -> Iterator[str]:
    for raw in sys.stdin.buffer:
        yield raw.decode("utf-8")


def load(c: Context) -> int:
    import warnings

    from sansio_broker.errors import ClockSkewWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                c.broker.load(_stdin_lines(), force=c.inv.force)
            finally:
                for w in caught:
                    if issubclass(w.category, ClockSkewWarning) and not c.inv.quiet:
                        _io.err(f"broker load: warning: {w.message}")
    except IntegrityError as exc:
        _io.err(f"broker load: {exc} (load targets a fresh database; duplicate message IDs are never overwritten)")
        return 1
    except TimestampError as exc:
        _io.err(f"broker load: {exc} (correct the failure and retry into a clean destination)")
        return 1
    except ValueError as exc:
        _io.err(f"broker load: {exc}")
        return 1
    return 0


# ----------------------------------------------------------------- aliases


def alias(c: Context) -> int:
    import warnings

    inv = c.inv
    if inv.alias_command is None:
        raise Failure("alias subcommand is required")
    if inv.alias_command == "add":
        assert inv.alias is not None and inv.target is not None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            c.broker.add_alias(inv.alias, inv.target)
        for w in caught:
            if not inv.quiet and "already exists with messages" in str(w.message):
                _io.err(_render.alias_shadow_warning(str(w.message)))
        return 0
    if inv.alias_command == "remove":
        assert inv.alias is not None
        if not c.broker.remove_alias(inv.alias):
            raise Failure(f"alias '{inv.alias}' does not exist")
        return 0
    pairs: list[tuple[str, str]] = c.broker.list_aliases()
    if inv.target:
        pairs = [(a, t) for a, t in pairs if t == inv.target]
        if not pairs:
            return 2
    return _finite(c, [_render.alias_line(a, t) for a, t in pairs])


# ------------------------------------------------------- init and cleanup


def init(inv: Invocation, path: str, config: Config) -> int:
    from pathlib import Path  # init and cleanup are rare: pathlib's import is not worth avoiding there

    file = Path(path)
    if file.exists():
        with file.open("rb") as f:
            head = f.read(16)
        if head and head != SQLITE_MAGIC:
            raise Failure(
                f"file exists but is not a SimpleBroker database: {path}. "
                "Please remove the file manually and run 'broker init' again.",
                "ERROR",
            )
        if not inv.quiet:
            _io.err(f"SimpleBroker database already exists: {path}")
        return 0
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        Broker(path, config=config).open().close()
    except BrokerError as exc:
        raise Failure(str(exc), "ERROR") from None
    if not inv.quiet:
        _io.err(f"Initialized SimpleBroker database: {path}")
    return 0


def _open_and_close(location: str, config: Config) -> None:
    try:
        Broker(location, config=config).open().close()
    except BrokerError as exc:
        raise Failure(str(exc), "ERROR") from None


def _report(inv: Invocation, text: str) -> int:
    """A root action's one status line on stderr (none with ``-q``); rc 0."""
    if not inv.quiet:
        _io.err(text)
    return 0


def cleanup_schema(inv: Invocation, target: Target) -> int:
    """``--cleanup`` on PostgreSQL: drop the SimpleBroker schema (broker's simplebroker-pg ``cleanup_target``)."""
    from . import _postgres

    return _report(inv, _postgres.cleanup(target))


def cleanup(inv: Invocation, target: Target, display: str) -> int:
    """Delete the database file and its companions (broker's list); "found" means the main file existed."""
    from pathlib import Path

    assert target.path is not None
    path = Path(target.path)
    if path.exists():
        with path.open("rb") as f:
            head = f.read(16)
        if head and head != SQLITE_MAGIC:
            raise Failure(f"File is not a valid SQLite database (invalid header): {path}", "ERROR")
    found = path.exists()
    companions = sorted(path.parent.glob(path.name + ".status*")) if path.parent.exists() else []
    for suffix in (".vacuum.lock", ".lock", "-journal", "-wal", "-shm", ""):
        companions.append(path.with_name(path.name + suffix))
    for file in companions:
        try:
            file.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise Failure(str(exc), "ERROR") from None
    if not inv.quiet:
        _io.err(f"Database cleaned up: {display}" if found else f"Database not found, nothing to clean up: {display}")
    return 0


def watch(c: Context) -> int:
    from ._watch import run_watch

    return run_watch(c)


COMMANDS: dict[str, Callable[[Context], int]] = {
    "write": write,
    "read": read,
    "peek": peek,
    "list": list_queues,
    "exists": exists,
    "stats": stats,
    "delete": delete,
    "move": move,
    "rename": rename,
    "broadcast": broadcast,
    "dump": dump,
    "load": load,
    "alias": alias,
    "watch": watch,
}

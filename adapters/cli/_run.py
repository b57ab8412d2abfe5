"""Run an :class:`Invocation` in ``broker``'s order: validate, resolve the target, dispatch, report.

Order (``cli.py _main``): global-flag checks, ``--version``, ``--keep-newest``,
selectors (``--newest``/``--all``, ``--after``/``--before``, ``-m``), the
target, ``init``/``--cleanup``/help, path checks, ``--vacuum``/``--status``,
then the command. Every failure is one line on stderr (a JSON object when the
command has ``--json``) and rc 1; "nothing matched" is rc 2.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from . import _io
from ._grammar import Invocation, build_parser
from ._render import error_line
from ._target import Files, Settings, TargetError, check_directory, default_dir, expanded, join, resolve

if TYPE_CHECKING:
    from sansio_broker import Config

SELECTOR_COMMANDS = frozenset({"read", "peek", "move", "watch", "delete"})
NEWEST_WITH_ALL = (
    "--newest cannot be used with --all; remove --newest for ascending all-message traversal "
    "or remove --all for newest-first bounded selection"
)


class Failure(Exception):
    """A reported error: text and JSON code (the output mode is the invocation's)."""

    def __init__(self, text: str, code: str = "INVALID_ARGUMENT") -> None:
        super().__init__(text)
        self.code = code


def json_mode(inv: Invocation) -> bool:
    return inv.json or inv.action_json


def fail(inv: Invocation, text: str, code: str = "INVALID_ARGUMENT") -> int:
    _io.err(error_line(text, code if json_mode(inv) else None))
    return 1


def global_error(inv: Invocation) -> str | None:
    """broker's ``_validate_global_flags``, in its order."""
    if inv.stray_json:
        return "--json requires --status, --cleanup, or --vacuum"
    if inv.command == "init" and inv.dir is not None:
        return "init does not accept --dir; run it from the directory to initialize"
    if inv.command == "init" and inv.file is not None:
        return "init does not accept --file; run it from the directory to initialize"
    if inv.status and inv.command:
        return "--status cannot be used with commands"
    if inv.compact and not inv.vacuum:
        return "--compact can only be used with --vacuum"
    for flag, on in (("vacuum", inv.vacuum), ("cleanup", inv.cleanup)):
        if on and inv.command:
            return f"--{flag} cannot be used with commands"
    return None


def keep_newest(inv: Invocation) -> int | None:
    """``--keep-newest``: once, ASCII decimal, 1..9999 (leading zeros allowed)."""
    if inv.command != "write" or inv.keep_newest is None:
        return None
    if len(inv.keep_newest) != 1:
        raise Failure("--keep-newest may be provided only once")
    raw = inv.keep_newest[0]
    significant = raw.lstrip("0")
    if not (raw.isascii() and raw.isdecimal() and significant and len(significant) <= 4):
        raise Failure("--keep-newest must be an ASCII decimal integer from 1 to 9999")
    return int(significant)


def selectors(inv: Invocation) -> tuple[int | None, int | None, int | None]:
    """``(after, before, message_id)`` parsed, or a :class:`Failure` with broker's code."""
    if inv.command not in SELECTOR_COMMANDS:
        return None, None, None
    if inv.command in ("read", "peek", "move") and inv.newest and inv.all:
        raise Failure(NEWEST_WITH_ALL)
    if inv.after is None and inv.before is None and inv.message_id is None:
        return None, None, None  # the common case: no parser (nor ``datetime``) to load
    from sansio_broker.bounds import parse_bound, parse_message_id
    from sansio_broker.errors import MessageIdError

    bounds: list[int | None] = []
    for text in (inv.after, inv.before):
        try:
            bounds.append(None if text is None else parse_bound(text))
        except MessageIdError as exc:
            raise Failure(str(exc), "INVALID_TIMESTAMP") from None
    try:
        message_id = None if inv.message_id is None else parse_message_id(inv.message_id)
    except MessageIdError as exc:
        raise Failure(str(exc), "INVALID_MESSAGE_ID") from None
    return bounds[0], bounds[1], message_id


def run(inv: Invocation, config: Config, settings: Settings, cwd: str) -> int:
    """Everything after parsing; returns the exit code."""
    problem = global_error(inv)
    if problem is not None:
        _io.err(error_line(problem, "INVALID_ARGUMENT" if inv.action_json and not inv.stray_json else None))
        return 1
    if inv.version:
        from sansio_broker import __version__  # the package is loaded already: it holds this module

        try:
            _io.line(f"sansio-broker {__version__}")
        except _io.StdoutClosed:
            return _io.closed_error(json_mode(inv))
        return 0
    try:
        keep = keep_newest(inv)
        after, before, message_id = selectors(inv)
        if inv.command is None and not (inv.status or inv.vacuum or inv.cleanup):
            if inv.dir is not None:
                check_directory(expanded(inv.dir), Files())
            return _print_help(settings)
        target = resolve(inv, settings, cwd)
        from . import _commands

        if inv.cleanup:
            if target.backend == "postgres":
                return _commands.cleanup_schema(inv, target)
            return _commands.cleanup(inv, target, _display(inv, settings, cwd))
        return _commands.dispatch(inv, target, config, settings, keep, after, before, message_id)
    except Failure as exc:
        return fail(inv, str(exc), exc.code)
    except TargetError as exc:
        code = "ERROR" if str(exc).startswith("File is not a valid SQLite") else exc.code
        return fail(inv, str(exc), code)


def _print_help(settings: Settings) -> int:
    try:
        _io.write(build_parser(settings.default_db_name).format_help())
    except _io.StdoutClosed:
        return _io.closed_error(False)
    return 0


def _display(inv: Invocation, settings: Settings, cwd: str) -> str:
    """How broker names the file in ``--cleanup`` messages: ``dir / file``, unresolved."""
    directory = inv.dir if inv.dir is not None else default_dir(settings, cwd)
    return join(directory, inv.file if inv.file is not None else settings.default_db_name)


def cwd() -> str:
    return os.getcwd()

"""stdout, stderr and stdin as ``broker`` uses them: flushed lines, a closed pipe as a signal, capped stdin."""

from __future__ import annotations

import errno
import os
import sys

from ._grammar import PROG
from ._render import NEWLINE_WARNING, STDOUT_CLOSED, error_line


class StdoutClosed(Exception):
    """The reader of stdout went away (EPIPE); stdout now points at /dev/null."""


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so interpreter shutdown's flush does not complain."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # pragma: no cover - no /dev/null
        return
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test's capture)
    finally:
        os.close(devnull)


def write(text: str, *, flush: bool = True) -> None:
    """Write to stdout; a closed pipe becomes :class:`StdoutClosed`."""
    try:
        sys.stdout.write(text)
        if flush:
            sys.stdout.flush()
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError) and exc.errno not in (errno.EPIPE, errno.EINVAL):
            raise
        _silence_stdout()
        raise StdoutClosed from None


def line(text: str, *, flush: bool = True) -> None:
    write(text + "\n", flush=flush)


def lines(texts: list[str]) -> None:
    """A finite result, flushed once at the end (as broker's list/stats/status)."""
    for text in texts:
        line(text, flush=False)
    if texts:
        write("", flush=True)


def err(text: str) -> None:
    print(text, file=sys.stderr)
    sys.stderr.flush()


def closed_error(json_output: bool) -> int:
    err(error_line(STDOUT_CLOSED, "ERROR" if json_output else None))
    return 1


class NewlineWarning:
    """Once per command, on stderr, when a plain-mode body holds a newline (``-q`` silences it)."""

    def __init__(self, quiet: bool) -> None:
        self.done = quiet

    def check(self, body: str) -> None:
        if not self.done and "\n" in body:
            self.done = True
            err(f"{PROG}: warning: {NEWLINE_WARNING}")


class InputError(ValueError):
    """Message input refused (code INVALID_ARGUMENT), with broker's text."""


def message_content(message: str | None, max_size: int) -> str:
    """The body: the argument, or stdin with ``-`` or when stdin is not a terminal (bytes, capped, strict UTF-8)."""
    if message is None and sys.stdin.isatty():
        raise InputError("message is required when stdin is a terminal; pass a message or pipe input")
    if message is None or message == "-":
        chunks: list[bytes] = []
        total = 0
        while chunk := sys.stdin.buffer.read(4096):
            total += len(chunk)
            if total > max_size:
                raise InputError(f"Input exceeds maximum size of {max_size} bytes")
            chunks.append(chunk)
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"Input is not valid UTF-8: {exc}") from None
    try:
        size = len(message.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InputError(f"Message is not valid UTF-8: {exc}") from None
    if size > max_size:
        raise InputError(f"Message exceeds maximum size of {max_size} bytes")
    return message

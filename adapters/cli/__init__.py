"""``sansio-broker``: SimpleBroker 8.7.2's ``broker`` command line, on this library's broker.

Same arguments, same stdout, same exit codes (0 ok, 1 error, 2 nothing
matched, 130 Ctrl-C; ``watch`` ends with 0 on SIGINT and SIGTERM), errors on
stderr in broker's words. Error and help texts keep broker's program name,
``simplebroker`` (``simplebroker: error: ...``), so scripts that match
broker's stderr keep working; ``--version`` says what this is
(``sansio-broker 0.1.0``).

Deliberate differences from ``broker`` (the issue asks for them):

1. Global flags (``-d/--dir``, ``-f/--file``, ``-q/--quiet``, ``--version``,
   ``--cleanup``, ``--vacuum``, ``--compact``, ``--status``, and ``--dir=X``
   / ``--file=X``) are accepted anywhere on the line, also after the
   subcommand (``sansio-broker peek q -f x.db``); broker rejects them there.
   Not hoisted: anything after ``--``, a command's own ``--json`` and
   ``alias add -q``, and attached short forms after the subcommand
   (``-fx.db``: in ``write`` that stays an unescaped-option error). A message
   that looks like a root flag needs ``--`` (``write q -- -q``), as any
   registered option spelling does in broker.
2. ``read --all`` claims one message at a time and gives back the one whose
   printing failed (stdout closed mid-stream, e.g. into ``head``, or Ctrl-C
   while printing): it ends with rc 0 having claimed exactly what it
   printed. broker loses that message. ``watch`` does the same for a
   consumed message it could not print.
3. On PostgreSQL (``BROKER_BACKEND=postgres``, see ``_postgres.py``), a
   target that does not answer fails at once ("cannot connect to ...");
   broker's ``write``, ``broadcast``, ``load``, ``--status`` and
   ``--vacuum`` retry its pool for 30 s first, logging each attempt.
4. Warnings (a newline in a plain-mode body, an alias shadowing a queue) are
   one ``simplebroker: warning: ...`` line, not Python's warning format.

Start-up: this module and the grammar import only what parsing needs; the
broker, ``json`` and the rest load when a command runs.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Run one command line; returns the exit code (the console script exits with it)."""
    import os

    from ._grammar import PROG, Help, UsageError, parse
    from ._target import SettingError, near_misses, settings

    args = sys.argv[1:] if argv is None else argv
    try:
        from sansio_broker.config import Config
        from sansio_broker.errors import ConfigError

        for warning in near_misses(os.environ):
            print(f"{PROG}: warning: {warning}", file=sys.stderr)
        try:
            cli_settings = settings(os.environ)
            config = Config.from_mapping(os.environ)
        except (SettingError, ConfigError) as exc:
            from ._render import config_error_lines

            for text in config_error_lines(exc.key, exc.value, exc.expected):
                print(text, file=sys.stderr)
            return 1
        try:
            parsed = parse(args, cli_settings.default_db_name)
        except UsageError as exc:
            print(f"{PROG}: error: {exc}", file=sys.stderr)
            return 1
        from . import _io

        if isinstance(parsed, Help):
            try:
                _io.write(parsed.text)
            except _io.StdoutClosed:
                return _io.closed_error(False)
            return 0
        from ._run import cwd, run

        return run(parsed, config, cli_settings, cwd())
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130


__all__ = ["main"]

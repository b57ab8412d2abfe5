"""argv -> :class:`Invocation`: SimpleBroker 8.7.2's ``broker`` grammar, plus global flags anywhere.

The parser is ``broker``'s, option for option and help string for help
string, so help and usage errors read the same. A pre-pass does what
``broker``'s does (root options hoisted, ``--json`` taken by an action flag,
free-form ``write``/``broadcast`` operands protected), and in addition
hoists root flags found *after* the subcommand (up to a ``--``). Pure: no
I/O; help text is returned, never printed.
"""

from __future__ import annotations

import argparse
from typing import Any, NamedTuple, NoReturn

PROG = "simplebroker"
TIMESTAMP_LIMIT = "fractional seconds unsupported; use integer ms, integer ns, or a native hybrid ID"
HELP_TOKENS = frozenset({"-h", "--help"})
# Root spellings a subcommand also defines: after the subcommand they stay the subcommand's.
NOT_HOISTED = frozenset({"-h", "--help", "--json"})


class UsageError(Exception):
    """An argparse-level error: ``simplebroker: error: <text>``, rc 1, always plain text."""


class Help(NamedTuple):
    """A help request (or no arguments): the text for stdout, rc 0."""

    text: str


class Invocation(NamedTuple):
    """One parsed command line. Strings stay unparsed: validating them is the runner's, in broker's order."""

    command: str | None = None
    dir: str | None = None  # explicit -d
    file: str | None = None  # explicit -f
    quiet: bool = False
    version: bool = False
    cleanup: bool = False
    vacuum: bool = False
    compact: bool = False
    status: bool = False
    action_json: bool = False  # --json taken by --status/--cleanup/--vacuum
    stray_json: bool = False  # root --json with no action flag
    # Command operands and options (None/False where the command has none).
    queue: str | None = None  # write/read/peek/exists/stats/delete/watch queue, move source, rename old
    dest: str | None = None  # move destination, rename new, watch --move
    message: str | None = None
    timestamps: bool = False
    json: bool = False
    keep_newest: tuple[str, ...] | None = None
    all: bool = False
    newest: bool = False
    message_id: str | None = None
    after: str | None = None
    before: str | None = None
    include_claimed: bool = False
    stats: bool = False
    prefix: str | None = None
    pattern: str | None = None
    queues: tuple[str, ...] | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    force: bool = False
    no_retarget_aliases: bool = False
    alias_command: str | None = None
    alias: str | None = None
    target: str | None = None
    peek: bool = False


class _ShownHelp(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class _CheckingFormatter(argparse.HelpFormatter):
    """A fixed width, for the formatter argparse makes on every ``add_argument`` only to check the metavar.

    The default formatter asks the terminal for its width each time (and imports ``shutil``): start-up time
    spent on a layout nobody prints. Help itself is laid out by the default formatter (``format_help``).
    """

    def __init__(self, prog: str) -> None:
        super().__init__(prog, width=80)


class _Parser(argparse.ArgumentParser):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(formatter_class=_CheckingFormatter, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def format_help(self) -> str:
        """Laid out for the terminal, as broker's help is."""
        self.formatter_class = argparse.HelpFormatter
        return super().format_help()

    def print_help(self, file: Any = None) -> None:
        raise _ShownHelp(self.format_help())


def _help(container: Any) -> None:
    container.add_argument(
        "-h", "--help", action="help", default=argparse.SUPPRESS, help="show this help message and exit"
    )


def _read_peek(p: argparse.ArgumentParser) -> None:
    p.add_argument("queue", help="queue name")
    p.add_argument("--all", action="store_true", help="read/peek all messages")
    p.add_argument(
        "--newest", action="store_true", help="select the highest eligible public message ID first (not with --all)"
    )
    p.add_argument("--json", action="store_true", help="output in line-delimited JSON (ndjson) format")
    p.add_argument("-t", "--timestamps", action="store_true", help="include timestamps in output")
    p.add_argument(
        "-m", "--message", metavar="ID", dest="message_id", help="operate on specific message by timestamp/ID"
    )
    p.add_argument(
        "--after",
        metavar="TIMESTAMP",
        help="return messages after timestamp (supports: ISO date '2024-01-15', "
        "Unix time '1705329000' or '1705329000s', milliseconds '1705329000000ms', "
        f"or native hybrid timestamp; {TIMESTAMP_LIMIT})",
    )
    p.add_argument(
        "--before",
        metavar="TIMESTAMP",
        help="return messages before timestamp (same formats and integral-only limit as --after)",
    )


class _Sink:
    """Stands in for a subcommand's parser that this run does not build (start-up time: argparse is slow to build)."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: self


def build_parser(default_file: str = ".broker.db", only: str | None = None) -> argparse.ArgumentParser:
    """``broker``'s parser (``cli.py _build_cli_parser``), help strings included.

    ``only``: build that subcommand alone, for a command line whose first
    operand it is (so argparse can only dispatch to it; root help and "invalid
    choice", which list every subcommand, need the full parser).
    """
    parser = _Parser(
        prog=PROG, description="Simple message broker with pluggable backends", allow_abbrev=False, add_help=False
    )
    _help(parser)
    parser.add_argument("-d", "--dir", help="working directory")
    parser.add_argument("-f", "--file", help=f"database filename or absolute path (default: {default_file})")
    parser.add_argument("-q", "--quiet", action="store_true", help="suppress non-error commentary")
    parser.add_argument("--version", action="store_true", help="show version")
    parser.add_argument(
        "--cleanup", action="store_true", help="destructively delete configured backend target state and exit"
    )
    parser.add_argument("--vacuum", action="store_true", help="remove claimed messages and exit")
    parser.add_argument(
        "--compact", action="store_true", help="with --vacuum, also run SQLite VACUUM to reclaim disk space"
    )
    parser.add_argument("--status", action="store_true", help="show database status and exit")
    parser.add_argument(
        "--json",
        action="store_true",
        dest="stray_json",
        help="structured output/errors for --status, --cleanup, and --vacuum",
    )
    sub = parser.add_subparsers(title="commands", dest="command", help=None)

    def command(name: str, help: str, **kwargs: Any) -> Any:
        if only is not None and name != only:
            return _Sink()
        p = sub.add_parser(name, add_help=False, help=help, **kwargs)
        _help(p)
        return p

    p = command("write", "write message to queue")
    p.add_argument("queue", help="queue name")
    p.add_argument("message", nargs="?", help="message content (omit or use '-' for stdin)")
    p.add_argument("-t", "--timestamps", action="store_true", help="print the new message's timestamp ID")
    p.add_argument("--json", action="store_true", help='print {"timestamp": "<19-digit-id>"} for the new message')
    p.add_argument(
        "--keep-newest",
        action="append",
        metavar="N",
        help="atomically claim older pending messages, leaving the highest N message IDs including this "
        "write (1..9999; for dedicated single-producer queues)",
    )
    _read_peek(command("read", "read and remove message"))
    p = command("peek", "read without removing")
    _read_peek(p)
    p.add_argument(
        "--include-claimed",
        action="store_true",
        help="also show claimed (consumed but not yet vacuumed) messages; "
        "claimed rows may disappear to vacuum at any time",
    )
    p = command("list", "list all queues")
    p.add_argument("--stats", action="store_true", help="show counts including claimed messages")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--prefix", help="only show queues starting with this literal prefix")
    group.add_argument("-p", "--pattern", help="only show queues matching this fnmatch-style glob")
    p.add_argument("--json", action="store_true", help="output in line-delimited JSON (ndjson) format")
    for name, text in (("exists", "check whether a queue exists"), ("stats", "show counts for one queue")):
        p = command(name, text)
        p.add_argument("queue", help="queue name")
        p.add_argument("--json", action="store_true", help="output JSON")
    p = command("delete", "remove messages")
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("queue", nargs="?", help="queue name to delete")
    group.add_argument("--all", action="store_true", help="delete all queues")
    p.add_argument("-m", "--message", metavar="ID", dest="message_id", help="delete specific message by timestamp/ID")
    p = command("move", "atomically transfer messages between queues")
    p.add_argument("queue", metavar="source_queue", help="source queue name")
    p.add_argument("dest", metavar="dest_queue", help="destination queue name")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-m", "--message", metavar="ID", dest="message_id", help="move specific message by timestamp/ID")
    group.add_argument("--all", action="store_true", help="move all messages from source to destination")
    p.add_argument(
        "--newest", action="store_true", help="select the highest eligible public message ID first (not with --all)"
    )
    p.add_argument("--after", metavar="TIMESTAMP", help=f"only move messages newer than timestamp ({TIMESTAMP_LIMIT})")
    p.add_argument("--before", metavar="TIMESTAMP", help=f"only move messages older than timestamp ({TIMESTAMP_LIMIT})")
    p.add_argument("--json", action="store_true", help="output in line-delimited JSON (ndjson) format")
    p.add_argument("-t", "--timestamps", action="store_true", help="include timestamps in output")
    p = command("rename", "rename a queue")
    p.add_argument("queue", metavar="old_queue", help="queue name to rename")
    p.add_argument("dest", metavar="new_queue", help="new queue name")
    p.add_argument("--json", action="store_true", help="output JSON")
    p.add_argument("--no-retarget-aliases", action="store_true", help="leave aliases pointing at the old queue name")
    p = command("broadcast", "send message to selected existing queues", allow_abbrev=False)
    p.add_argument("message", help="message content ('-' for stdin)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("-p", "--pattern", help="only broadcast to queues matching this fnmatch-style glob")
    group.add_argument(
        "--queue", dest="queues", action="append", metavar="QUEUE", help="broadcast to this existing queue (repeatable)"
    )
    p = command("dump", "write all queues to stdout as ndjson")
    p.add_argument(
        "--include",
        action="append",
        metavar="GLOB",
        help="only dump queues matching this fnmatch-style glob (repeatable)",
    )
    p.add_argument(
        "--exclude", action="append", metavar="GLOB", help="omit queues matching this fnmatch-style glob (repeatable)"
    )
    p = command("load", "restore a dump from stdin into this broker")
    p.add_argument("--force", action="store_true", help="load even when the dump watermark exceeds allowed future skew")
    alias_parser = command("alias", "manage queue aliases")
    alias_sub = alias_parser.add_subparsers(dest="alias_command")
    p = alias_sub.add_parser("add", help="create a new alias for a target queue", add_help=False)
    _help(p)
    p.add_argument("alias", help="alias name (must be prefixed with @ when used)")
    p.add_argument("target", help="canonical queue name for the alias")
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help="suppress warnings when alias shadows an existing queue",
    )
    p = alias_sub.add_parser("remove", help="remove an existing alias", add_help=False)
    _help(p)
    p.add_argument("alias", help="alias name to remove")
    p = alias_sub.add_parser("list", help="list configured aliases", add_help=False)
    _help(p)
    p.add_argument("--target", metavar="QUEUE", help="show only aliases that point to the specified queue")
    p = command("watch", "watch queue and consume, peek, or move messages")
    p.add_argument("queue", help="queue name")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--peek", action="store_true", help="monitor without consuming messages")
    group.add_argument(
        "--move", dest="dest", metavar="QUEUE", help="drain ALL messages to another queue (incompatible with --after)"
    )
    p.add_argument("--json", action="store_true", help="output in line-delimited JSON (ndjson) format")
    p.add_argument("-t", "--timestamps", action="store_true", help="include timestamps in output")
    p.add_argument("--after", metavar="TIMESTAMP", help=f"watch for messages after timestamp ({TIMESTAMP_LIMIT})")
    command("init", "initialize a SimpleBroker database in current directory")
    return parser


class Spellings(NamedTuple):
    """The option spellings the pre-pass needs, read off the parser."""

    root: frozenset[str]
    root_values: frozenset[str]
    registered: frozenset[str]
    registered_values: frozenset[str]
    commands: frozenset[str]
    write: frozenset[str]
    write_values: frozenset[str]
    broadcast: frozenset[str]
    broadcast_attached: frozenset[str]


def _options(p: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in p._actions if a.option_strings]


def spellings(parser: argparse.ArgumentParser) -> Spellings:
    subparsers: dict[str, argparse.ArgumentParser] = {}

    def walk(p: argparse.ArgumentParser) -> list[argparse.Action]:
        found = _options(p)
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    subparsers.setdefault(name, child)
                    found += walk(child)
        return found

    every = walk(parser)
    root = _options(parser)
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    write, broadcast = _options(top.choices["write"]), _options(top.choices["broadcast"])
    selectors = [a for a in broadcast if a.option_strings != ["-h", "--help"]]

    def names(actions: list[argparse.Action], values: bool = False) -> frozenset[str]:
        return frozenset(s for a in actions if not values or a.nargs != 0 for s in a.option_strings)

    return Spellings(
        root=names(root) - {"-h", "--help", "--json"},
        root_values=names(root, values=True),
        registered=names(every),
        registered_values=names(every, values=True),
        commands=frozenset(top.choices),
        write=names([a for a in write if a.option_strings != ["-h", "--help"]]),
        write_values=names(write, values=True),
        broadcast=names(selectors),
        broadcast_attached=frozenset(s for s in names(selectors, values=True) if not s.startswith("--")),
    )


# spellings(build_parser()), written out so a run need not build every subcommand (a test keeps them equal).
SPELLINGS = Spellings(
    root=frozenset(
        {"-d", "--dir", "-f", "--file", "-q", "--quiet", "--version", "--cleanup", "--vacuum", "--compact", "--status"}
    ),
    root_values=frozenset({"-d", "--dir", "-f", "--file"}),
    registered=frozenset(
        {
            "-h",
            "--help",
            "-d",
            "--dir",
            "-f",
            "--file",
            "-q",
            "--quiet",
            "--version",
            "--cleanup",
            "--vacuum",
            "--compact",
            "--status",
            "--json",
            "-t",
            "--timestamps",
            "--keep-newest",
            "--all",
            "--newest",
            "-m",
            "--message",
            "--after",
            "--before",
            "--include-claimed",
            "--stats",
            "--prefix",
            "-p",
            "--pattern",
            "--no-retarget-aliases",
            "--queue",
            "--include",
            "--exclude",
            "--force",
            "--target",
            "--peek",
            "--move",
        }
    ),
    registered_values=frozenset(
        {
            "-d",
            "--dir",
            "-f",
            "--file",
            "--keep-newest",
            "-m",
            "--message",
            "--after",
            "--before",
            "--prefix",
            "-p",
            "--pattern",
            "--queue",
            "--include",
            "--exclude",
            "--target",
            "--move",
        }
    ),
    commands=frozenset(
        {
            "write",
            "read",
            "peek",
            "list",
            "exists",
            "stats",
            "delete",
            "move",
            "rename",
            "broadcast",
            "dump",
            "load",
            "alias",
            "watch",
            "init",
        }
    ),
    write=frozenset({"-t", "--timestamps", "--json", "--keep-newest"}),
    write_values=frozenset({"--keep-newest"}),
    broadcast=frozenset({"-p", "--pattern", "--queue"}),
    broadcast_attached=frozenset({"-p"}),
)


def parse(argv: list[str], default_file: str = ".broker.db") -> Invocation | Help:
    """Parse; raises :class:`UsageError` with argparse's (or broker's) message."""
    if not argv:
        return Help(build_parser(default_file).format_help())
    normalized, command, action_json, start = _prepare(argv, SPELLINGS)
    # The command as the first operand (after the hoisted root flags): argparse dispatches to it, so only it
    # is built. Anything else before it (a stray operand, -h) needs every subcommand.
    first = command is not None and normalized[start : start + 1] == [command]
    parser = build_parser(default_file, command if first else None)
    try:
        ns = parser.parse_args(normalized)
    except _ShownHelp as shown:
        return Help(shown.text)
    values = {k: v for k, v in vars(ns).items() if v is not None}
    for key in ("keep_newest", "queues", "include", "exclude"):
        if key in values:
            values[key] = tuple(values[key])
    values["action_json"] = action_json
    return Invocation(**values)


# ----------------------------------------------------------------- pre-pass


def _prepare(argv: list[str], g: Spellings) -> tuple[list[str], str | None, bool, int]:
    """``broker``'s ArgumentProcessor, with root flags also taken after the subcommand.

    Returns the new argv (hoisted root flags first), the subcommand, whether an action flag took
    ``--json``, and where the root flags end.
    """
    root: list[str] = []
    rest: list[str] = []
    seen_root: set[str] = set()
    command: str | None = None
    alias_add = False
    ended = False
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if command is not None and (ended or arg == "--"):
            ended = True
            rest.append(arg)
            continue
        if command is not None and arg in g.registered_values and arg not in g.root:
            rest.append(arg)  # a command's value option: its value is not hoisted
            if i < len(argv) and argv[i] != "--":
                rest.append(argv[i])
                i += 1
            continue
        if command == "alias" and arg == "add" and not alias_add and not any(not a.startswith("-") for a in rest[1:]):
            alias_add = True
        name = arg.split("=", 1)[0]
        hoist = name in g.root and not (alias_add and name in ("-q", "--quiet"))
        if "=" in arg and hoist:
            if name in g.root_values and arg.endswith("="):
                raise UsageError(f"option {name} requires an argument")
            root.append(arg)
            seen_root.add(name)
        elif arg in g.root and hoist:
            root.append(arg)
            seen_root.add(arg)
            if arg in g.root_values:
                if i >= len(argv) or argv[i].startswith("-"):
                    raise UsageError(f"option {arg} requires an argument")
                root.append(argv[i])
                i += 1
        elif command is None and arg in g.commands:
            command = arg
            rest.append(arg)
        else:
            rest.append(arg)
    rest, action_json = _action_json(rest, seen_root)
    return root + _protect(rest, g), command, action_json, len(root)


def _action_json(rest: list[str], seen_root: set[str]) -> tuple[list[str], bool]:
    if not {"--status", "--cleanup", "--vacuum"} & seen_root:
        return rest, False
    if rest and rest[0] == "--":
        if rest[1:]:
            raise UsageError(f"unrecognized arguments: {' '.join(rest[1:])}")
        return [], False
    out: list[str] = []
    ended = requested = False
    for arg in rest:
        ended = ended or arg == "--"
        if not ended and arg == "--json":
            requested = True
            continue
        out.append(arg)
    return out, requested


def _protect(args: list[str], g: Spellings) -> list[str]:
    """Free-form message operands starting with '-' (broker's ``_protect_free_form_operands``)."""
    if not args or args[0] not in ("write", "broadcast"):
        return args
    region = args[1:]
    if "--" in region:
        region = region[: region.index("--")]
    if any(a in HELP_TOKENS for a in region):
        return args
    return _protect_write(args, g) if args[0] == "write" else _protect_broadcast(args, g)


def _registered(token: str, g: Spellings) -> str | None:
    if token in g.registered:
        return token
    if token.startswith("--") and "=" in token and token.partition("=")[0] in g.registered:
        return token.partition("=")[0]
    if token.startswith("-") and not token.startswith("--"):
        for name in sorted(g.registered_values, key=len, reverse=True):
            if not name.startswith("--") and token.startswith(name) and len(token) > len(name):
                return name
    return None


def _refuse_operand(token: str, name: str) -> NoReturn:
    if name == token:
        raise UsageError(
            f"registered option {token!r} cannot be used as unescaped message data; "
            f"use -- before {token!r} to send it literally"
        )
    raise UsageError(
        f"{token!r} is read as registered option {name!r} and cannot be used as unescaped message data; "
        f"use -- before {token!r} to send it literally"
    )


def _partition_write(arguments: list[str], g: Spellings) -> tuple[list[str], list[str]] | None:
    options: list[str] = []
    operands: list[str] = []
    i = 0
    while i < len(arguments):
        arg = arguments[i]
        if arg in g.write:
            options.append(arg)
            if arg in g.write_values:
                if i + 1 < len(arguments) and _registered(arguments[i + 1], g) is None:
                    value = arguments[i + 1]
                    if value.startswith("-"):
                        options[-1] = f"{arg}={value}"
                    else:
                        options.append(value)
                    i += 2
                    continue
                options[-1] = f"{arg}="
            i += 1
            continue
        name = _registered(arg, g)
        if name is not None:
            if name in g.write:
                if name in g.write_values and arg.startswith(f"{name}=") and not arg.endswith("="):
                    options.append(arg)
                    i += 1
                    continue
                return None
            _refuse_operand(arg, name)
        operands.append(arg)
        i += 1
    return options, operands


def _protect_write(args: list[str], g: Spellings) -> list[str]:
    if len(args) < 2:
        return args
    if "--" in args[1:]:
        marker = args.index("--", 1)
        split = _partition_write(args[1:marker], g)
        if split is None or not split[0]:
            return args
        return [args[0], *split[0], *split[1], "--", *args[marker + 1 :]]
    split = _partition_write(args[1:], g)
    if split is None:
        return args
    options, rest = split
    protected = [args[0], *options]
    if not rest:
        return protected
    if any(
        (o.endswith("=") and o[:-1] in g.write_values) or any(o.startswith(f"{v}=-") for v in g.write_values)
        for o in options
    ):
        return [*protected, *rest]
    if rest[0].startswith("-"):
        return [*protected, "--", *rest]
    if len(rest) >= 2 and rest[1].startswith("-") and rest[1] != "-":
        return [*protected, rest[0], "--", *rest[1:]]
    if any(o.split("=", 1)[0] in g.write_values for o in options):
        return [*protected, *rest]
    return args


def _protect_broadcast(args: list[str], g: Spellings) -> list[str]:
    marker = args.index("--", 1) if "--" in args[1:] else None
    end = marker if marker is not None else len(args)
    longs = {o for o in g.broadcast if o.startswith("--")}
    selectors: list[str] = []
    operands: list[str] = []
    i = 1
    while i < end:
        arg = args[i]
        if arg in g.broadcast:
            selectors.append(arg)
            if i + 1 < end:
                selectors.append(args[i + 1])
            i += 2
            continue
        if any(arg.startswith(f"{o}=") for o in longs) or any(
            arg.startswith(o) and len(arg) > len(o) for o in g.broadcast_attached
        ):
            selectors.append(arg)
            i += 1
            continue
        name = arg.partition("=")[0]
        if len(name) > 2 and name.startswith("--") and name not in longs and any(o.startswith(name) for o in longs):
            raise UsageError(f"unrecognized arguments: {arg}")
        registered = _registered(arg, g)
        if registered is not None:
            _refuse_operand(arg, registered)
        operands.append(arg)
        i += 1
    protected = [args[0], *selectors, *operands]
    if marker is not None:
        return [*protected, *args[marker:]]
    if operands and operands[0].startswith("-"):
        return [args[0], *selectors, "--", *operands]
    return protected

"""argv -> Invocation: broker's grammar, its errors, and global flags accepted anywhere."""

from __future__ import annotations

import pytest

from sansio_broker.adapters.cli._grammar import (
    SPELLINGS,
    Help,
    Invocation,
    UsageError,
    build_parser,
    parse,
    spellings,
)


def inv(*argv: str) -> Invocation:
    parsed = parse(list(argv))
    assert isinstance(parsed, Invocation)
    return parsed


def usage(*argv: str) -> str:
    with pytest.raises(UsageError) as caught:
        parse(list(argv))
    return str(caught.value)


def test_the_written_out_spellings_are_the_parsers() -> None:
    assert spellings(build_parser()) == SPELLINGS


def test_no_arguments_and_help_flags_give_help_text() -> None:
    for argv in ([], ["-h"], ["--help"], ["-q", "-h", "write"]):
        parsed = parse(argv)
        assert isinstance(parsed, Help)
        assert parsed.text.startswith("usage: simplebroker [-h] [-d DIR]")
        assert "watch queue and consume, peek, or move messages" in parsed.text
    write_help = parse(["write", "-h"])
    assert isinstance(write_help, Help)
    assert write_help.text.startswith("usage: simplebroker write [-h] [-t] [--json] [--keep-newest N] queue")
    alias_help = parse(["alias", "add", "--help"])
    assert isinstance(alias_help, Help)
    assert "suppress warnings when alias shadows an existing queue" in alias_help.text


def test_the_default_file_shows_in_help() -> None:
    parsed = parse(["-h"], default_file="my.db")
    assert isinstance(parsed, Help)
    assert "(default: my.db)" in parsed.text


def test_commands_and_their_options() -> None:
    assert inv("write", "q", "hello", "-t").queue == "q"
    w = inv("write", "--keep-newest", "3", "q", "m", "--json")
    assert (w.queue, w.message, w.keep_newest, w.json) == ("q", "m", ("3",), True)
    r = inv("read", "q", "--all", "--json", "-t", "--after", "1", "--before", "2")
    assert (r.command, r.all, r.json, r.timestamps, r.after, r.before) == ("read", True, True, True, "1", "2")
    p = inv("peek", "q", "-m", "1796424173245018112", "--include-claimed", "--newest")
    assert (p.message_id, p.include_claimed, p.newest) == ("1796424173245018112", True, True)
    m = inv("move", "a", "b", "--all", "-t")
    assert (m.queue, m.dest, m.all) == ("a", "b", True)
    assert inv("rename", "a", "b", "--no-retarget-aliases").no_retarget_aliases
    b = inv("broadcast", "hi", "--queue", "a", "--queue", "b")
    assert (b.message, b.queues) == ("hi", ("a", "b"))
    d = inv("dump", "--include", "a*", "--exclude", "b")
    assert (d.include, d.exclude) == (("a*",), ("b",))
    a = inv("alias", "add", "w", "tasks", "-q")
    assert (a.alias_command, a.alias, a.target, a.quiet) == ("add", "w", "tasks", True)
    assert inv("alias", "list", "--target", "t").target == "t"
    watch = inv("watch", "w", "--move", "w2")
    assert (watch.queue, watch.dest) == ("w", "w2")
    assert inv("list", "--stat").stats  # subcommands keep argparse abbreviations, as broker
    assert inv("load", "--force").force
    assert inv("init").command == "init"


def test_broker_usage_errors_are_kept() -> None:
    assert usage("nosuchcmd").startswith("argument command: invalid choice: 'nosuchcmd' (choose from 'write',")
    assert usage("read") == "the following arguments are required: queue"
    assert usage("read", "q", "extra") == "unrecognized arguments: extra"
    assert usage("--stat") == "unrecognized arguments: --stat"
    assert usage("-d") == "option -d requires an argument"
    assert usage("delete") == "one of the arguments queue --all is required"
    assert usage("delete", "q", "--all") == "argument --all: not allowed with argument queue"
    assert usage("list", "--prefix", "a", "-p", "a*") == "argument -p/--pattern: not allowed with argument --prefix"
    assert usage("watch", "w", "--peek", "--move", "x") == "argument --move: not allowed with argument --peek"
    assert usage("watch", "w", "--before", "1") == "unrecognized arguments: --before 1"
    assert usage("broadcast", "x", "-p", "a.*", "--queue", "b") == (
        "argument --queue: not allowed with argument -p/--pattern"
    )


def test_what_comes_before_the_command_is_parsed_as_broker_does() -> None:
    # Only the command's own parser is built when it is the first operand: anything else before it still
    # gets every subcommand (the full "invalid choice" list, root help).
    every = usage("nosuchcmd")[len("argument command: invalid choice: 'nosuchcmd'") :]
    assert every.endswith("'alias', 'watch', 'init')")
    assert usage("stray", "write", "q", "x") == "argument command: invalid choice: 'stray'" + every
    assert usage("-q", "stray", "read", "q") == "argument command: invalid choice: 'stray'" + every
    root_help = parse(["-h"])
    assert isinstance(root_help, Help) and parse(["-h", "write", "q"]) == root_help
    assert "{write,read,peek," in root_help.text
    # A root flag's value that names a command is the value, not the command.
    w = inv("-d", "read", "write", "q", "x")
    assert (w.command, w.dir, w.queue, w.message) == ("write", "read", "q", "x")
    assert inv("--dir=peek", "read", "q").command == "read"


def test_registered_option_spellings_are_not_message_data() -> None:
    assert usage("write", "q", "--all") == (
        "registered option '--all' cannot be used as unescaped message data; use -- before '--all' to send it literally"
    )
    assert usage("write", "q", "-m5").startswith("'-m5' is read as registered option '-m'")
    assert usage("broadcast", "--all").startswith("registered option '--all'")
    assert inv("write", "q", "--", "--all").message == "--all"
    assert inv("write", "q", "-t", "--", "--all").message == "--all"
    assert inv("write", "q", "--weird").message == "--weird"  # unregistered: protected, written literally
    assert inv("broadcast", "--", "-dash").message == "-dash"


def test_global_flags_are_accepted_after_the_subcommand() -> None:
    # A deliberate difference: broker says "unrecognized arguments: -f x.db".
    p = inv("peek", "q", "-f", "x.db")
    assert (p.command, p.queue, p.file) == ("peek", "q", "x.db")
    r = inv("read", "q", "--json", "-q", "--dir=sub", "--status")
    # With an action flag anywhere, a bare --json is the action's (broker's rule), so the error will be JSON.
    assert (r.json, r.action_json, r.quiet, r.dir, r.status) == (False, True, True, "sub", True)
    w = inv("write", "q", "hello", "-f", "x.db")
    assert (w.message, w.file) == ("hello", "x.db")
    assert inv("write", "q", "--", "-f").message == "-f"  # after -- it is data
    assert inv("list", "--version").version
    assert usage("peek", "q", "-f") == "option -f requires an argument"


def test_action_json_and_stray_json() -> None:
    s = inv("--status", "--json")
    assert (s.status, s.action_json, s.stray_json) == (True, True, False)
    assert inv("--json", "--status").action_json
    assert inv("--vacuum", "--compact", "--json", "list").action_json
    assert inv("--json", "list").stray_json
    assert inv("read", "q", "--json").json and not inv("read", "q", "--json").action_json
    assert usage("--status", "--", "x") == "unrecognized arguments: x"


def test_keep_newest_values_reach_the_runner_unparsed() -> None:
    assert inv("write", "q", "x", "--keep-newest", "-1").keep_newest == ("-1",)
    assert inv("write", "q", "x", "--keep-newest").keep_newest == ("",)
    assert inv("write", "q", "x", "--keep-newest=1", "--keep-newest", "2").keep_newest == ("1", "2")

"""Flags + BROKER_* -> the database a command runs on, in broker's precedence, on real directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from sansio_broker.adapters.cli._grammar import Invocation
from sansio_broker.adapters.cli._target import (
    SettingError,
    Settings,
    Target,
    TargetError,
    expanded,
    join,
    parent,
    resolve,
    settings,
    spelled,
)


def target(tmp_path: Path, env: dict[str, str] | None = None, **flags: object) -> Target:
    return resolve(Invocation(**{"command": "list", **flags}), settings(env or {}), str(tmp_path))  # type: ignore[arg-type]


def test_the_default_is_dot_broker_db_in_the_working_directory(tmp_path: Path) -> None:
    assert target(tmp_path) == Target("sqlite", str(tmp_path / ".broker.db"), display=str(tmp_path / ".broker.db"))


def test_dir_file_and_environment_defaults(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "loc").mkdir()
    assert target(tmp_path, dir=str(tmp_path / "sub")).path == str(tmp_path / "sub" / ".broker.db")
    assert target(tmp_path, file="x.db").path == str(tmp_path / "x.db")
    assert target(tmp_path, file=str(tmp_path / "abs.db")).path == str(tmp_path / "abs.db")
    loc = {"BROKER_DEFAULT_DB_LOCATION": str(tmp_path / "loc")}
    assert target(tmp_path, loc, file="z.db").path == str(tmp_path / "loc" / "z.db")
    assert target(tmp_path, {**loc}, dir=str(tmp_path / "sub")).path == str(tmp_path / "sub" / ".broker.db")
    assert target(tmp_path, {"BROKER_DEFAULT_DB_NAME": "my.db"}).path == str(tmp_path / "my.db")
    init = resolve(Invocation(command="init"), Settings(), str(tmp_path))
    assert init.path == str(tmp_path / ".broker.db")


def test_refusals_in_brokers_words(tmp_path: Path) -> None:
    with pytest.raises(TargetError, match=r"^Directory not found: /nonexist$"):
        target(tmp_path, dir="/nonexist")
    with pytest.raises(TargetError, match=r"^Parent directory not found: /nonexist/dir$"):
        target(tmp_path, file="/nonexist/dir/x.db")
    with pytest.raises(TargetError, match=r"^Parent directory not found: "):
        target(tmp_path, {"BROKER_DEFAULT_DB_NAME": "sub/my.db"})
    with pytest.raises(TargetError, match=r"^Inconsistent paths: absolute database path"):
        target(tmp_path, dir=str(tmp_path), file="/elsewhere/x.db")
    (tmp_path / ".broker.db").write_text("junk")
    with pytest.raises(TargetError, match=r"^File is not a valid SQLite database \(invalid header\): "):
        target(tmp_path)
    # write does not check the header first (the broker's open fails instead, as broker's does)
    assert resolve(Invocation(command="write"), Settings(), str(tmp_path)).path == str(tmp_path / ".broker.db")


def test_bad_settings_are_refused_by_name() -> None:
    with pytest.raises(SettingError) as caught:
        settings({"BROKER_DEFAULT_DB_NAME": "../x.db"})
    assert caught.value.key == "BROKER_DEFAULT_DB_NAME"
    assert "at most one directory" in caught.value.expected
    with pytest.raises(SettingError, match="expected an absolute directory path or empty string"):
        settings({"BROKER_DEFAULT_DB_LOCATION": "rel"})
    with pytest.raises(SettingError, match="a positive integer message count"):
        settings({"BROKER_READ_COMMIT_INTERVAL": "0"})
    assert settings({"BROKER_PROJECT_SCOPE": "Yes", "BROKER_READ_COMMIT_INTERVAL": "5"}) == Settings(
        project_scope=True, read_commit_interval=5
    )


def test_project_scope_finds_the_database_upward(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    (tmp_path / ".broker.db").write_bytes(b"SQLite format 3\x00" + bytes(84))
    scoped = {"BROKER_PROJECT_SCOPE": "1"}
    assert target(deep, scoped).path == str(tmp_path / ".broker.db")
    assert target(deep).path == str(deep / ".broker.db")  # without scope: the local file
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / ".broker.db").unlink()
    with pytest.raises(TargetError, match=r"^BROKER_PROJECT_SCOPE is enabled but no project database '\.broker\.db'"):
        target(empty, scoped)


def test_a_project_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / ".broker.toml").write_text('version = 1\nbackend = "sqlite"\ntarget = "data/q.db"\n')
    assert target(tmp_path).path == str(tmp_path / "data" / "q.db")
    (tmp_path / ".broker.toml").write_text('version = 2\nbackend = "sqlite"\ntarget = "q.db"\n')
    with pytest.raises(TargetError, match="version 2; expected 1"):
        target(tmp_path)


def test_postgres_resolves_to_a_dsn_and_schema(tmp_path: Path) -> None:
    env = {"BROKER_BACKEND": "postgres", "BROKER_BACKEND_TARGET": "postgresql://u:pw@h/db"}
    assert target(tmp_path, env) == Target(
        "postgres", dsn="postgresql://u:pw@h/db", schema="simplebroker_pg_v1", display="simplebroker_pg_v1"
    )
    built = target(tmp_path, {"BROKER_BACKEND": "postgres", "BROKER_BACKEND_SCHEMA": "s"})
    assert (built.dsn, built.schema) == ("postgresql://postgres@localhost:5432/simplebroker", "s")
    with pytest.raises(TargetError, match=r"^Requested backend 'nope' is not available\.$"):
        target(tmp_path, {"BROKER_BACKEND": "nope"})


def test_a_known_key_in_the_wrong_case_is_named_not_used() -> None:
    from sansio_broker.adapters.cli._target import near_misses

    env = {
        "BROKER_max_message_size": "5",
        "BROKER_Backend_Password": "secret",
        "BROKER_MAX_MESSAGE_SIZE": "7",  # right: no warning
        "BROKER_nonsense": "1",  # not a key in any case: silent, as broker is
        "OTHER": "x",
    }
    assert near_misses(env) == [
        "ignoring BROKER_max_message_size from the environment: did you mean BROKER_MAX_MESSAGE_SIZE? (value '5')",
        "ignoring BROKER_Backend_Password from the environment: did you mean BROKER_BACKEND_PASSWORD? (value '***')",
    ]


PATHS = ["", ".", "..", "/", "//", "///", "a", "a/", "./a", "a//b/", "/a/./b", "//a/b", "///a", "a/../b", "~", "~/x/"]


def test_paths_are_spelled_as_pathlib_spells_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # broker's messages print Path objects; the CLI uses strings (pathlib is slow to import) spelled the same.
    monkeypatch.setenv("HOME", "/home/someone/")
    for text in PATHS:
        assert spelled(text) == str(Path(text)), text
        assert parent(text) == str(Path(text).parent), text
        assert expanded(text) == str(Path(text).expanduser()), text
        for name in PATHS:
            assert join(text, name) == str(Path(text) / name), (text, name)
    with pytest.raises(RuntimeError):
        Path("~no-such-user-here/x").expanduser()
    with pytest.raises(TargetError, match=r"^Could not determine home directory\.$"):  # broker's words
        expanded("~no-such-user-here/x")
    with pytest.raises(TargetError, match=r"^Could not determine home directory\.$"):
        target(Path("/"), dir="~no-such-user-here")

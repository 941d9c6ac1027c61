"""Global options (`--config`, `--log-level`, `--log-format`) and ctl's options (`--socket`,
`--json`, `--timeout`) mean the same before and after the subcommand, for every command;
and no word of the argument list is special before argparse sees it."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from powrd.cli.main import build_parser
from tests.support.daemon import write_config
from tests.support.daemon_process import run_powrd

GLOBAL = ["--config", "x.toml", "--log-level", "debug", "--log-format", "json"]
CTL = ["--socket", "s.sock", "--json", "--timeout", "3"]

# Every command with the arguments it needs (everything but the options under test).
COMMANDS: list[list[str]] = [
    ["run"],
    ["import", "events.ndjson"],
    ["export", "--all"],
    ["reindex"],
    ["keygen", "--out", "k"],
    ["init", "--npub", "npub1x", "--relay", "ws://127.0.0.1:1", "--out", "p.toml"],
    ["demo"],
]
CTL_COMMANDS: list[list[str]] = [
    ["status"], ["status", "--watch"], ["relays"], ["template", "33402:aa:x"],
    ["exercises", "--search", "squat"], ["records", "--limit", "3"], ["fetch"], ["outbox"],
    ["query", "{}"], ["sync"], ["publish", "--kind", "1"],
    ["exercise", "add", "--title", "T", "--equipment", "barbell", "--format", "weight:kg"],
    ["call", "status"], ["events.query", "{}"],
]


def parse(argv: list[str]) -> dict[str, object]:
    namespace = vars(build_parser().parse_args(argv))
    # Parser objects differ per build; they say nothing about what was parsed.
    return {k: v for k, v in namespace.items() if not isinstance(v, argparse.ArgumentParser)}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_global_options_before_or_after_the_command(command: list[str]) -> None:
    before = parse([*GLOBAL, *command])
    after = parse([*command, *GLOBAL])
    assert before == after
    assert (before["config"], before["log_level"], before["log_format"]) == ("x.toml", "debug", "json")


@pytest.mark.parametrize("command", CTL_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_ctl_options_anywhere(command: list[str]) -> None:
    placements = [
        [*GLOBAL, "ctl", *CTL, *command],
        ["ctl", *GLOBAL, *command, *CTL],
        ["ctl", *command, *CTL, *GLOBAL],
        ["ctl", *CTL[:2], *command, *GLOBAL, *CTL[2:]],
    ]
    parsed = [parse(argv) for argv in placements]
    assert all(p == parsed[0] for p in parsed), parsed
    first = parsed[0]
    assert (first["config"], first["socket"], first["json"], first["timeout"]) == ("x.toml", "s.sock", True, 3.0)


def test_unknown_ctl_subcommand_is_a_method_call() -> None:
    parsed = parse(["ctl", "library.template", '{"coordinate": "x"}', "--json"])
    assert (parsed["ctl_command"], parsed["method"], parsed["params"]) == ("call", "library.template", '{"coordinate": "x"}')


def test_the_word_ctl_is_not_special() -> None:
    # `--config ctl` names a config file called "ctl"; the command is `run`.
    parsed = parse(["--config", "ctl", "run"])
    assert (parsed["command"], parsed["config"]) == ("run", "ctl")
    parsed = parse(["import", "ctl"])
    assert (parsed["command"], parsed["file"]) == ("import", "ctl")


def test_config_named_ctl_is_read_as_a_config(tmp_path: Path) -> None:
    result = run_powrd("--config", "no-such-dir/ctl", "run")
    assert result.returncode == 2
    assert result.stderr.startswith("powrd: no-such-dir/ctl: cannot read"), result.stderr


def test_options_after_the_command_reach_the_command(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    broken = tmp_path / "broken.toml"
    broken.write_text("[store]\npth = 1\n")
    result = run_powrd("reindex", "--config", str(broken))
    assert result.returncode == 2
    assert "unknown key store.pth" in result.stderr
    result = run_powrd("export", "--config", str(config), "--log-format", "json")
    assert result.returncode == 2  # no database yet: the config was read, its path used
    assert str(tmp_path) in result.stderr
    result = run_powrd("ctl", "status", "--config", str(config), "--timeout", "1")
    assert result.returncode == 1
    assert str(tmp_path / "powrd.sock") in result.stderr
    result = run_powrd("ctl", "status", "--socket", str(tmp_path / "other.sock"), "--config", str(config))
    assert str(tmp_path / "other.sock") in result.stderr


def test_ctl_without_subcommand_prints_usage() -> None:
    result = run_powrd("ctl", "--json")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: powrd ctl")

"""`--log-format` and the automatic choice, seen from the daemon's own terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.daemon import write_config
from tests.support.daemon_process import REPO_ROOT, child_environment, powrd_command
from tests.support.terminal import run_on_terminal


def first_lines(tmp_path: Path, *options: str) -> list[str]:
    config = write_config(tmp_path)
    run = run_on_terminal(
        powrd_command("run", "--config", str(config), "--log-level", "info", *options),
        env=child_environment(), cwd=REPO_ROOT, timeout=60,
        # Ctrl-C once the daemon has said something: it then shuts down cleanly.
        stop_when=lambda shown: "\n" in shown,
    )
    assert run.returncode == 0, run.terminal
    return [line for line in run.terminal.replace("\r\n", "\n").split("\n") if line.strip()]


def test_console_on_a_terminal_by_default(tmp_path: Path) -> None:
    lines = first_lines(tmp_path)
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_json_forced_on_a_terminal(tmp_path: Path) -> None:
    lines = first_lines(tmp_path, "--log-format", "json")
    assert all(json.loads(line)["level"] for line in lines)

"""`powrd ctl status --watch` and `powrd ctl relays --watch`: redrawn frames on a
terminal until Ctrl-C (exit 0); plain frames with no escape sequence when piped."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powrd.cli.watch import watch
from tests.support.daemon import write_config
from tests.support.daemon_process import (
    REPO_ROOT,
    DaemonProcess,
    child_environment,
    daemon_process,
    powrd_command,
)
from tests.support.terminal import run_on_terminal

CLEAR = "\x1b[H\x1b[2J"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    config = write_config(tmp_path_factory.mktemp("watch"))
    with daemon_process(config) as process:
        yield process
        assert process.stop() == 0


@pytest.mark.parametrize("view", ["status", "relays"])
def test_watch_redraws_on_a_terminal_until_ctrl_c(daemon: DaemonProcess, view: str) -> None:
    run = run_on_terminal(
        powrd_command("ctl", view, "--watch", "0.2", "--config", str(daemon.config)),
        env=child_environment(), cwd=REPO_ROOT,
        stop_when=lambda shown: shown.count(CLEAR) >= 3,
    )
    assert run.returncode == 0, run.terminal
    frames = [f for f in run.terminal.split(CLEAR) if f.strip()]
    assert len(frames) >= 3
    for frame in frames[:3]:
        assert frame.startswith(f"Every 0.2s: powrd ctl {view}  ")
    if view == "status":
        assert all(re.search(r"^powrd \S+  running  up ", frame, re.M) for frame in frames[:3]), frames
    else:
        assert all("no relays" in frame for frame in frames[:3])
    assert "Traceback" not in run.terminal


def test_watch_piped_prints_frames_without_escapes(daemon: DaemonProcess) -> None:
    process = subprocess.Popen(
        powrd_command("ctl", "status", "--watch", "0.1", "--config", str(daemon.config)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_environment(), cwd=REPO_ROOT,
    )
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + 30
    while seen.count(b"Every 0.1s") < 2:
        assert time.monotonic() < deadline, seen
        seen += os.read(process.stdout.fileno(), 65536)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    seen += out
    assert b"\x1b" not in seen and b"\r" not in seen
    assert len(re.findall(rb"^powrd \S+  running  up ", seen, re.M)) >= 2, seen


def test_watch_shows_a_stopped_daemon_and_keeps_asking(tmp_path: Path) -> None:
    class Gone(Exception):
        pass

    answers = iter(["frame 1", Gone("powrd is not running"), "frame 3"])
    stream = io.StringIO()
    ticks: list[float] = []

    def view() -> str:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def sleep(seconds: float) -> None:
        ticks.append(seconds)
        if len(ticks) == 3:
            raise KeyboardInterrupt

    assert watch(view, title="powrd ctl status", interval=2.0, failure=Gone, stream=stream, sleep=sleep) == 0
    shown = stream.getvalue()
    assert ticks == [2.0, 2.0, 2.0]
    assert [line for line in shown.splitlines() if line and not line.startswith("Every")] == [
        "frame 1", "powrd ctl: powrd is not running", "frame 3"]
    assert "\x1b" not in shown


def test_watch_interval_is_checked() -> None:
    result = subprocess.run(powrd_command("ctl", "status", "--watch", "0"), capture_output=True, text=True,
                            env=child_environment(), cwd=REPO_ROOT, check=False)
    assert result.returncode == 2
    assert "expected seconds from 0.1 to 86400" in result.stderr

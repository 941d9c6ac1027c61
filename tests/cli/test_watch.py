"""`powrd ctl status --watch` and `powrd ctl relays --watch`: redrawn frames on a
terminal until Ctrl-C (exit 0); plain frames with no escape sequence when piped."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import subprocess
import threading
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
from tests.support.events import exercises_and_records, keys_for, pubkey_of
from tests.support.faultrelay import Behaviour, FaultRelay
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


# -- a backfill in progress, seen from `powrd ctl status --watch` -----------------------

@pytest.fixture
def slow_relay() -> Iterator[FaultRelay]:
    """A relay (its own event loop in a thread) that trickles 1,500 events out slowly."""
    events = exercises_and_records(keys_for("watch", 0), 1500, 1_700_000_000)
    relay = FaultRelay(events, Behaviour(trickle_interval=0.002, trickle_chunk=2048))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(relay.__aenter__(), loop).result(timeout=10)
    yield relay
    asyncio.run_coroutine_threadsafe(relay.__aexit__(None, None, None), loop).result(timeout=10)
    asyncio.run_coroutine_threadsafe(_cancel_the_rest(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


async def _cancel_the_rest() -> None:
    """Let every task of the relay's loop end, so closing the loop destroys none."""
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


BACKFILL_LINE = re.compile(r"^backfill   (\S+)  0/1 scopes, (\d+) pages, ([\d,]+) events, back to ", re.M)


def test_status_watch_shows_a_running_backfill(slow_relay: FaultRelay, tmp_path: Path) -> None:
    config = write_config(tmp_path, relays=[slow_relay.url], authors=[pubkey_of(keys_for("watch", 0))])
    config.write_text(config.read_text().replace("[sync]\n", "[sync]\npage_limit = 100\n", 1))

    def two_progress_frames(shown: str) -> bool:
        return len({m.group(3) for m in BACKFILL_LINE.finditer(shown)}) >= 2

    with daemon_process(config):
        run = run_on_terminal(
            powrd_command("ctl", "status", "--watch", "0.2", "--config", str(config)),
            env=child_environment(), cwd=REPO_ROOT, timeout=60, stop_when=two_progress_frames,
        )
    assert run.returncode == 0, run.terminal
    lines = BACKFILL_LINE.findall(run.terminal)
    assert {url for url, _, _ in lines} == {slow_relay.url}
    counts = [int(events.replace(",", "")) for _, _, events in lines]
    assert counts == sorted(counts) and counts[-1] > counts[0] > 0

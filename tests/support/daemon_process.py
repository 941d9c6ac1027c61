"""`python -m powrd … run` as a real subprocess, and a test NOTIFY_SOCKET to watch it.

For daemon-level tests (signals, exit codes, sd_notify, the control socket as a client
outside the daemon's process sees it). Tests of the engine itself run the daemon in
their own event loop with :mod:`tests.support.daemon` instead.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from powrd.control.client import ControlError, call_sync

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 20.0
# Variables the parent test process may carry that would change the child's behaviour.
_SCRUBBED_PREFIXES = ("POWRD_", "NOTIFY_SOCKET", "WATCHDOG_", "STATE_DIRECTORY", "RUNTIME_DIRECTORY")


def child_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment without powrd/systemd variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra or {})
    return env


def powrd_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "powrd", *args]


def run_powrd(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run one ``powrd`` command to completion (text output captured)."""
    return subprocess.run(
        powrd_command(*args), capture_output=True, text=True, cwd=REPO_ROOT,
        env=child_environment(env), timeout=timeout, check=False,
    )


def poll(condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.02) -> Any:
    """Call ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class DaemonProcess:
    """A running ``powrd --config CONFIG run``; stderr goes to ``log_path``.

    Attributes:
        socket: The control socket named by the config (the tests' configs put it next
            to the config file as ``powrd.sock``).
    """

    def __init__(self, config: Path, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.socket = config.parent / "powrd.sock"
        self.log_path = config.parent / "daemon.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            powrd_command("--config", str(config), "run"), cwd=REPO_ROOT,
            env=child_environment(env), stdout=self._log, stderr=subprocess.STDOUT,
        )

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """One control call over the real socket."""
        return call_sync(self.socket, method, params, timeout=10.0)

    def wait_answering(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the control socket answers ``status`` (the daemon is up)."""

        def answering() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"powrd exited with {self.process.returncode}: {self.log()}")
            try:
                return bool(self.call("status"))
            except (ControlError, OSError):
                return False

        poll(answering, timeout=timeout, what="the control socket to answer")

    def signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def stop(self, timeout: float = 5.0) -> int:
        """SIGTERM and wait; returns the exit code (kills and fails after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"powrd did not exit within {timeout} s of SIGTERM") from None
        finally:
            self._log.close()

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]


@contextmanager
def daemon_process(config: Path, env: Mapping[str, str] | None = None) -> Iterator[DaemonProcess]:
    """A daemon subprocess that answers on its socket; stopped (and reaped) on exit."""
    daemon = DaemonProcess(config, env)
    try:
        daemon.wait_answering()
        yield daemon
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        daemon._log.close()


class NotifyListener:
    """A bound ``AF_UNIX`` datagram socket standing in for systemd's ``NOTIFY_SOCKET``.

    Every datagram is kept as ``(monotonic arrival time, {KEY: value})``.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        self.received: list[tuple[float, dict[str, str]]] = []

    def close(self) -> None:
        self.sock.close()

    def _read(self, timeout: float) -> bool:
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.received.append((time.monotonic(), fields))
        return True

    def wait_for(self, key: str, value: str = "1", timeout: float = START_TIMEOUT) -> float:
        """Read until a datagram sets ``key=value``; returns its arrival time."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for arrived, fields in self.received[seen:]:
                if fields.get(key) == value:
                    return arrived
            seen = len(self.received)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key}={value} within {timeout} s: {self.received}")
            self._read(left)

    def collect(self, seconds: float) -> list[tuple[float, dict[str, str]]]:
        """Everything that arrives during the next ``seconds``."""
        start = len(self.received)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._read(left)
        return self.received[start:]

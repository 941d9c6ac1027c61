"""Running ``python -m powrd …`` as a subprocess and judging what it printed.

Shared by the reliability tests and the soak scripts: the child gets the repository on
``PYTHONPATH`` and none of the parent's powrd or systemd variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_SCRUBBED = ("POWRD_", "NOTIFY_SOCKET", "WATCHDOG_", "STATE_DIRECTORY", "RUNTIME_DIRECTORY")


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED)}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra or {})
    return env


def run_powrd(*args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one powrd command to completion, output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "powrd", *args], cwd=REPO_ROOT, env=child_environment(env),
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def spawn_daemon(config: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start ``powrd --config CONFIG run`` in the background; stderr appended to ``log_path``."""
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "powrd", "--config", str(config), "run"],
            cwd=REPO_ROOT, env=child_environment(), stdout=subprocess.DEVNULL, stderr=log,
        )


def is_log_record(line: str) -> bool:
    """A structlog JSON line (powrd logs to stderr as JSON when not on a terminal)."""
    try:
        record = json.loads(line)
    except ValueError:
        return False
    return isinstance(record, dict) and "event" in record and "level" in record


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The single ``powrd: …`` line a refused start printed; asserts there is nothing else.

    Log records may surround it; a traceback, a second message or a silent failure fail
    the assertion.
    """
    assert result.returncode != 0, f"expected a failure, got exit 0: {result.stderr}"
    assert "Traceback" not in result.stderr, result.stderr
    messages = [line for line in result.stderr.splitlines() if line.strip() and not is_log_record(line)]
    assert len(messages) == 1, f"expected one error line, got: {result.stderr!r}"
    assert messages[0].startswith("powrd: "), messages[0]
    return messages[0]

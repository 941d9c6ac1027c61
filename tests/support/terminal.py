"""Run a command with its standard error (and optionally output) on a pseudo-terminal.

What a person at a terminal sees is what the child writes to the pty; tests split it at
carriage returns and erase sequences to get the frames of a self-updating line.
"""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO

# Carriage return, ANSI CSI sequences (erase line, cursor home, clear screen).
_FRAME_BREAK = re.compile(r"\r|\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class TerminalRun:
    returncode: int
    terminal: str  # everything written to the pty, escapes included

    def frames(self) -> list[str]:
        """The distinct non-empty pieces between carriage returns and escape sequences."""
        pieces = [p.strip() for p in _FRAME_BREAK.split(self.terminal)]
        return list(dict.fromkeys(p for p in pieces if p))


def run_on_terminal(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | os.PathLike[str] | None = None,
    stdout_to: IO[bytes] | None = None,
    timeout: float = 120.0,
    stop_when: Callable[[str], bool] | None = None,
    replies: Sequence[tuple[str, str]] = (),
) -> TerminalRun:
    """Run ``command`` with stderr (and stdout unless ``stdout_to``) on a new pty.

    Args:
        stop_when: Called with the output so far; when it returns True the child gets
            SIGINT (what Ctrl-C sends), and the run ends when the child exits.
        replies: ``(prompt, answer)`` pairs, in order: standard input is the terminal
            too, and once the output holds ``prompt`` (after the previous prompt) the
            answer is typed followed by Enter. Without replies standard input is empty.
    """
    controller, child_side = pty.openpty()
    process = subprocess.Popen(
        list(command), stdin=child_side if replies else subprocess.DEVNULL,
        stdout=stdout_to or child_side, stderr=child_side, env=dict(env), cwd=cwd,
    )
    pending = list(replies)
    answered_up_to = 0
    os.close(child_side)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    interrupted = False
    try:
        while True:
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError(f"{command} did not finish within {timeout} s")
            ready, _, _ = select.select([controller], [], [], 0.05)
            if ready:
                try:
                    data = os.read(controller, 65536)
                except OSError:  # EIO: every writer of the pty has closed it
                    break
                if not data:
                    break
                chunks.append(data)
                shown = b"".join(chunks).decode(errors="replace")
                if pending and pending[0][0] in shown[answered_up_to:]:
                    prompt, answer = pending.pop(0)
                    answered_up_to = shown.index(prompt, answered_up_to) + len(prompt)
                    os.write(controller, answer.encode() + b"\n")
            elif process.poll() is not None:
                break
            if stop_when is not None and not interrupted and stop_when(b"".join(chunks).decode(errors="replace")):
                process.send_signal(signal.SIGINT)
                interrupted = True
    finally:
        os.close(controller)
    returncode = process.wait(timeout=30)
    return TerminalRun(returncode, b"".join(chunks).decode(errors="replace"))

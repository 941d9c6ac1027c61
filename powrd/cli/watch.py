"""``powrd ctl status --watch``: redraw a view every few seconds until Ctrl-C, like watch(1).

On a terminal each frame clears the screen first (cursor home, erase display), so the
view stays in place. Anywhere else (a pipe, a file) frames are printed one after the
other, separated by a blank line, with no escape sequence. A daemon that stops answering
is shown in the frame and asked again at the next tick; Ctrl-C ends the watch with exit
status 0.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from powrd.cli.progress import on_terminal
from powrd.cli.safe_text import safe

# Cursor to the top-left corner, then erase the whole display.
_CLEAR = "\x1b[H\x1b[2J"


def watch(
    view: Callable[[], str],
    *,
    title: str,
    interval: float,
    failure: type[Exception],
    stream: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Show ``view()`` every ``interval`` seconds until interrupted; returns the exit code.

    Args:
        view: Renders one frame; may raise ``failure`` (shown instead of the frame).
        title: What is watched, for the header line (e.g. ``powrd ctl status``).
        interval: Seconds between frames.
        failure: The exception ``view`` raises when the daemon cannot answer.
        stream: Where frames go; standard output when omitted.
        sleep: Waits between frames; injectable for tests.
    """
    out = sys.stdout if stream is None else stream
    on_tty = on_terminal(out)
    try:
        while True:
            try:
                body = view()
            except failure as error:
                body = f"powrd ctl: {safe(str(error))}"
            now = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
            header = f"Every {interval:g}s: {title}    {now}    (Ctrl-C to stop)"
            out.write(f"{_CLEAR if on_tty else ''}{header}\n\n{body}\n")
            if not on_tty:
                out.write("\n")
            out.flush()
            sleep(interval)
    except KeyboardInterrupt:
        return 0

"""One self-updating progress line on a terminal, for import, export and reindex.

``import: 12,000 events  41%  1,780 events/s  ETA 0:17`` is redrawn in place with a
carriage return at most every :data:`REDRAW_SECONDS`. When the stream is not a terminal
(a pipe, a file, journald) or the user asked for quiet, nothing at all is written: no
progress, no carriage return, no escape sequence.

A few dozen lines of our own rather than ``rich`` or ``tqdm``: the line is one format
string, the commands must start fast (powrd's import time is benchmarked) and neither
library is a dependency yet; both would bring far more than this needs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TextIO

REDRAW_SECONDS = 0.1
# Return to the start of the line; erase from the cursor to the end of the line.
_RETURN = "\r"
_ERASE_LINE = "\x1b[K"


def on_terminal(stream: TextIO) -> bool:
    """True when ``stream`` is a terminal a progress line may be drawn on."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A progress line for ``label``, counting ``unit`` against an optional ``total``.

    The percentage follows ``done`` against ``total`` (bytes read for a file, rows for a
    query); the rate and the count follow ``count`` (events). Safe to update from the
    writer thread while the main thread waits.

    Args:
        stream: Where to draw (standard error).
        label: The command, e.g. ``import``.
        total: What ``done`` reaches at the end, or None when unknown (standard input).
        enabled: False draws nothing (``--quiet``, or not a terminal).
        clock: Monotonic seconds; injectable for tests.
    """

    def __init__(
        self,
        stream: TextIO,
        label: str,
        *,
        total: int | None,
        enabled: bool,
        unit: str = "events",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._label = label
        self._unit = unit
        self._total = total if total else None
        self._enabled = enabled
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._drawn = False
        self._lock = threading.Lock()
        # A log line written while the progress line stands would be glued to its end:
        # every handler erases the line first (the next update draws it again).
        self._handlers: list[logging.Handler] = []
        self._eraser = _EraseBeforeLogging(self)
        if enabled:
            self._handlers = list(logging.getLogger().handlers)
            for handler in self._handlers:
                handler.addFilter(self._eraser)

    def update(self, count: int, done: int | None = None) -> None:
        """``count`` events handled so far, ``done`` of ``total`` (default: ``count``)."""
        if not self._enabled:
            return
        now = self._clock()
        if now - self._last_draw < REDRAW_SECONDS:
            return
        with self._lock:
            self._last_draw = now
            line = self.line(count, count if done is None else done, now - self._started)
            self._stream.write(f"{_RETURN}{line}{_ERASE_LINE}")
            self._stream.flush()
            self._drawn = True

    def line(self, count: int, done: int, elapsed: float) -> str:
        """The text of one frame (no control characters)."""
        parts = [f"{self._label}: {count:,} {self._unit}"]
        rate = count / elapsed if elapsed > 0 else 0.0
        if self._total:
            fraction = min(1.0, max(0.0, done / self._total))
            parts.append(f"{fraction:4.0%}")
        parts.append(f"{rate:,.0f} {self._unit}/s")
        # The first second's rate says little about the rest: no ETA before it.
        if self._total and 0 < done < self._total and elapsed >= 1.0:
            remaining = (self._total - done) / (done / elapsed)
            parts.append(f"ETA {_clock_time(remaining)}")
        return "  ".join(parts)

    def close(self) -> None:
        """Erase the line, so the summary that follows starts on a clean line."""
        for handler in self._handlers:
            handler.removeFilter(self._eraser)
        self._handlers = []
        self.erase()

    def erase(self) -> None:
        """Take the line off the screen until the next update."""
        with self._lock:
            if self._drawn:
                self._stream.write(f"{_RETURN}{_ERASE_LINE}")
                self._stream.flush()
                self._drawn = False
                self._last_draw = float("-inf")

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _EraseBeforeLogging(logging.Filter):
    """A handler filter that lets every record through after erasing the progress line."""

    def __init__(self, progress: Progress) -> None:
        super().__init__()
        self._progress = progress

    def filter(self, record: logging.LogRecord) -> bool:
        self._progress.erase()
        return True


def _clock_time(seconds: float) -> str:
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"

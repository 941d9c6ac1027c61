"""Newline-delimited framing with a hard bound on line length, free of I/O.

The control socket speaks one JSON document per line. A peer that sends an endless
line must not make the daemon buffer it, and a peer that sends one oversized request
must still be able to send the next one. :class:`LineSplitter` therefore never holds
more than ``max_line_bytes`` of an unfinished line: once a line grows past the bound it
reports :data:`TOO_LONG` once and then drops bytes until the next newline.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class Oversize(Enum):
    """Marker type for a line that exceeded the bound (see :data:`TOO_LONG`)."""

    TOO_LONG = "too long"


TOO_LONG: Final = Oversize.TOO_LONG
"""Yielded in place of a line longer than the bound; its bytes are discarded."""

NEWLINE: Final = b"\n"


class LineSplitter:
    """Splits a byte stream into lines of at most ``max_line_bytes`` bytes.

    Lengths exclude the terminating newline. A trailing ``\\r`` is kept: JSON treats
    it as whitespace, so callers need not care.

    Args:
        max_line_bytes: Largest accepted line; must be positive.
    """

    def __init__(self, max_line_bytes: int) -> None:
        if max_line_bytes <= 0:
            raise ValueError("max_line_bytes must be positive")
        self._max = max_line_bytes
        self._buffer = bytearray()
        self._discarding = False

    @property
    def discarding(self) -> bool:
        """True while the rest of an oversized line is being dropped."""
        return self._discarding

    @property
    def buffered(self) -> int:
        """Bytes of the current unfinished line held in memory."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes | Oversize]:
        """Consume ``data`` and return the lines (or :data:`TOO_LONG`) it completed.

        :data:`TOO_LONG` is returned as soon as a line is known to be too long, before
        its newline has arrived, so the peer hears about it without waiting.
        """
        out: list[bytes | Oversize] = []
        start = 0
        end = len(data)
        while start < end:
            newline = data.find(NEWLINE, start)
            stop = end if newline < 0 else newline
            if self._discarding:
                if newline < 0:
                    return out
                self._discarding = False
            elif len(self._buffer) + (stop - start) > self._max:
                self._buffer.clear()
                out.append(TOO_LONG)
                if newline < 0:
                    self._discarding = True
                    return out
            elif newline < 0:
                self._buffer += data[start:stop]
                return out
            else:
                self._buffer += data[start:stop]
                out.append(bytes(self._buffer))
                self._buffer.clear()
            start = stop + 1
        return out

    def pending(self) -> bytes:
        """The unfinished line at end of stream (empty if none or if being discarded)."""
        return b"" if self._discarding else bytes(self._buffer)

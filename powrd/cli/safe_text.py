"""Text from relays made safe to print on a terminal.

Titles, notes, hashtags, relay error messages: anything that came from an event or a
relay may hold escape sequences (``ESC [2J`` clears the screen, ``ESC ] 0;…BEL`` retitles
the window, OSC 52 writes the clipboard) or bidirectional overrides that reorder what the
reader sees. :func:`safe` replaces every such character by a visible escape, so the
sequence is shown, not obeyed.
"""

from __future__ import annotations

import re

# C0 controls except tab, DEL, C1 controls; the Unicode bidi embeddings, overrides and
# isolates; line and paragraph separators (a terminal may break the line at them).
_UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")

# The earliest and latest instants printed as dates: year 1 is not useful, year 10000
# does not fit the format.
LATEST_PRINTABLE_SECONDS = 253_402_300_799  # 9999-12-31 23:59:59 UTC
EARLIEST_PRINTABLE_SECONDS = 0


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


# What json.dumps(ensure_ascii=False) leaves raw but a terminal may act on: DEL, C1,
# bidi controls, line separators. (It already escapes C0 controls.)
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def safe_json(text: str) -> str:
    """JSON text with those characters written as ``\\u`` escapes: the same JSON value.

    They can only occur inside JSON strings, where ``\\u009b`` means the same as the
    raw character, so a parser reads exactly what the daemon sent.
    """
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def safe(text: str) -> str:
    """``text`` with control and reordering characters shown as ``\\x1b``, ``\\u202e``…"""
    return _UNSAFE.sub(_escape, text)

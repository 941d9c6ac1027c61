"""Time slices for long loops on the event loop.

A relay that floods, or a backfill page of 500 new events to verify, is a loop of many
small steps. Run back to back they would hold the event loop for tens of milliseconds,
and the control socket (``status`` must answer within 100 ms) and the other relays would
wait behind them. A loop that calls :meth:`TimeSlice.pause` after each step yields once
its slice is used up.
"""

from __future__ import annotations

import asyncio
import time

SLICE_SECONDS = 0.002


class TimeSlice:
    """Tracks how long the current task has run since it last yielded."""

    __slots__ = ("_since", "seconds")

    def __init__(self, seconds: float = SLICE_SECONDS) -> None:
        self.seconds = seconds
        self._since = time.perf_counter()

    async def pause(self) -> None:
        """Yield to the event loop if this slice is used up; otherwise return at once."""
        if time.perf_counter() - self._since >= self.seconds:
            await asyncio.sleep(0)
            self._since = time.perf_counter()

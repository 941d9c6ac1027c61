"""A byte budget for received events, shared by every relay connection.

The writer is slower than the relays: during a backfill every connection reads as fast
as its relay sends, and the events wait, decoded, until they are committed. A bound per
connection (``queue_max_events``) grows with the number of relays: seventeen relays
held 170,000 decoded events (several hundred MB) at a million-event backfill. The
budget bounds them all together, by the size of the frames they came in:

* a connection's reader takes an event's size from the budget before queueing it, and
  waits while the budget is spent (TCP then slows the relay down);
* the bytes come back once the event's batch is committed (or rejected, or given up),
  or when the connection ends with events not yet committed.

Waiting readers are served in arrival order, so a fast relay cannot starve the others.
An event larger than what is left is let in once nothing else is waiting and the
budget is not spent, so no single event can block a connection for good.
"""

from __future__ import annotations

import asyncio
from collections import deque

# About 2,500 events of the NIP-101e corpus, a second of the writer's work or more, so
# it never waits for the relays; decoded, with what is built from them, tens of MB.
# (A 100,000-event backfill from 17 relays peaked at 166 MB with 4 MiB, 193 with 8.)
INFLOW_MAX_BYTES = 4 * 1024 * 1024


class Inflow:
    """Bytes of received events not yet committed, across all relay connections.

    Args:
        limit: the bytes at which readers wait.
    """

    def __init__(self, limit: int = INFLOW_MAX_BYTES) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self, size: int) -> None:
        """Take ``size`` bytes; waits while the budget is spent or others wait first."""
        if self._waiters or self.used >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                elif not waiter.cancelled():
                    self._wake()  # woken and then cancelled: the turn passes on
                raise
        self.used += size
        if self._waiters:
            self._wake()  # room for the next one too

    def give_back(self, size: int) -> None:
        """Return bytes taken earlier; wakes the readers now within budget."""
        self.used = max(0, self.used - size)
        self._wake()

    def _wake(self) -> None:
        # One at a time: the woken reader takes its bytes before the next is considered.
        while self._waiters and self.used < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

"""The store counts ``status`` reports, without making ``status`` wait on a big store.

Counting scans the store's indexes: about 50 ms at 300,000 events with warm pages,
half a second cold, and it grows with the store. ``status`` must answer within 100 ms
at any size, so past :data:`BACKGROUND_FROM_EVENTS` events it answers with the latest
finished count (``counts.as_of_s`` says how old) while a new one runs on a thread of its
own. Below that size counting takes a few milliseconds and is done on the spot, exact.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import structlog

from powrd.store import queries
from powrd.store.store import Store

log = structlog.get_logger("powrd.service.counts")

# Stores this big are counted off the event loop (about 30 ms a count from here on).
BACKGROUND_FROM_EVENTS = 200_000
# A background count older than this is redone even if no ingest commit marked it stale
# (outbox and fetch-queue changes do not pass through the ingest pipeline).
MAX_AGE_SECONDS = 5.0


class StatusCounts:
    """Latest counts of a store; see the module docstring."""

    def __init__(self, store: Store, *, background_from_events: int = BACKGROUND_FROM_EVENTS):
        self.store = store
        self.background_from_events = background_from_events
        self._latest: dict[str, Any] | None = None
        self._counted_at = 0.0
        self._stale = True
        self._running: Future[None] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="powrd-counts")

    def changed(self) -> None:
        """Something was committed: the next ``get`` must not keep the old figures."""
        self._stale = True

    def get(self) -> dict[str, Any]:
        """The counts, and ``as_of_s``: their age in seconds (0 when counted just now)."""
        latest, counted_at = self._latest, self._counted_at
        if latest is None or latest["events"] < self.background_from_events:
            self._count()  # a few milliseconds: always exact
            latest, counted_at = self._latest, self._counted_at
        elif self._running is None and (
            self._stale or time.monotonic() - self._counted_at >= MAX_AGE_SECONDS
        ):
            # The answer is the count finished before this call, whenever the new one ends.
            self._stale = False
            self._running = self._executor.submit(self._count)
            self._running.add_done_callback(self._finished)
        assert latest is not None
        return {**latest, "as_of_s": round(time.monotonic() - counted_at, 3)}

    def close(self) -> None:
        """Wait for a count in progress and stop the thread (before the store closes)."""
        self._executor.shutdown(wait=True)

    def _count(self) -> None:
        # On the worker thread this uses that thread's own read connection.
        figures = queries.counts(self.store.reader())
        self._latest, self._counted_at = figures, time.monotonic()

    def _finished(self, future: Future[None]) -> None:
        self._running = None
        error = future.exception()
        if error is not None:
            self._stale = True  # try again at the next status
            log.warning("counting the store failed", error=str(error))

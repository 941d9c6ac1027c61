"""How far a relay's backfill has come: the ``backfill`` entry of ``relays.list``.

:mod:`powrd.sync.backfill` calls the hooks (a scope's run started, an event of a page
seen, a page ended, a scope's run completed, every scope complete); this module only
counts. A backfill *round* starts when a run starts while none is running (the first
connection, a reconnect, ``sync.now``) and is ``done`` when every scope has completed.
A run abandoned for a retry leaves the round ``running``: it is not finished.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Ids remembered of the oldest second seen, to count an event a page repeats once. A
# relay that puts more events than this into one second is counted a little high.
MAX_BOUNDARY_IDS = 10_000


class BackfillState(enum.StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"


@dataclass(slots=True)
class BackfillProgress:
    """Counters of the current (or last) backfill round of one relay.

    Attributes:
        scopes_total: Scopes (subscription filters) the relay is backfilled for.
        pages: Pages (REQs up to EOSE) completed in this round.
        events: Events received in backfill pages in this round, each once (live ones
            not counted; a page repeats the previous page's oldest second).
        oldest_created_at: The oldest ``created_at`` among them: how far back it has come.
        started_at: Unix time the round started.
        finished_at: Unix time every scope completed, or None while running.
    """

    state: BackfillState = BackfillState.IDLE
    scopes_total: int = 0
    pages: int = 0
    events: int = 0
    oldest_created_at: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    clock: Callable[[], float] = time.time
    _scopes_done: set[str] = field(default_factory=set)
    _boundary_ids: set[str] = field(default_factory=set)

    def scope_started(self, scope: str, scopes_total: int) -> None:
        """A scope's run began; a new round starts unless one is running."""
        if self.state is not BackfillState.RUNNING:
            self.state = BackfillState.RUNNING
            self.pages = self.events = 0
            self.oldest_created_at = None
            self.started_at, self.finished_at = self.clock(), None
            self._scopes_done.clear()
            self._boundary_ids.clear()
        self.scopes_total = scopes_total
        self._scopes_done.discard(scope)

    def event(self, created_at: int, event_id: str) -> None:
        """An event of a backfill page passed the session's checks."""
        oldest = self.oldest_created_at
        if created_at == oldest:
            if event_id in self._boundary_ids:
                return  # the next page asks again from the oldest second, inclusive
            if len(self._boundary_ids) < MAX_BOUNDARY_IDS:
                self._boundary_ids.add(event_id)
        elif oldest is None or created_at < oldest:
            self.oldest_created_at = created_at
            self._boundary_ids = {event_id}
        self.events += 1

    def page_done(self) -> None:
        self.pages += 1

    def scope_done(self, scope: str) -> None:
        self._scopes_done.add(scope)

    def finished(self) -> None:
        """Every scope has completed a run."""
        self.state = BackfillState.DONE
        self.finished_at = self.clock()

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        now = self.clock() if now is None else now
        rate = None
        if self.started_at is not None:
            elapsed = (self.finished_at or now) - self.started_at
            rate = round(self.events / elapsed, 1) if elapsed > 0 else 0.0
        return {
            "state": self.state.value,
            "scopes_done": min(len(self._scopes_done), self.scopes_total),
            "scopes_total": self.scopes_total,
            "pages": self.pages,
            "events": self.events,
            "oldest_created_at": self.oldest_created_at,
            "events_per_s": rate,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }

"""What each relay connection reports (the ``status`` method's per-relay entries)."""

from __future__ import annotations

import enum
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from powrd.sync.backfill import Throttle
    from powrd.sync.negentropy import NegentropySupport

from powrd.sync.backfill_progress import BackfillProgress


class RelayState(enum.StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"


@dataclass(slots=True)
class RelayStatus:
    url: str
    read: bool = True
    write: bool = True
    state: RelayState = RelayState.CONNECTING
    connects: int = 0
    connect_attempts: int = 0
    events_received: int = 0
    events_stored: int = 0
    events_rejected: int = 0
    events_duplicate: int = 0
    # Frames the session refused, and events the pipeline rejected, by reason.
    dropped: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    last_error: str | None = None
    last_connected_at: float | None = None
    last_event_at: float | None = None
    next_retry_at: float | None = None
    backoff_seconds: float = 0.0
    backfill_complete: bool = False
    backfill: BackfillProgress = field(default_factory=BackfillProgress)
    notices: int = 0
    # The current connection's request throttle (it lives with the subscriptions).
    throttle: Throttle | None = None
    # What the relay answered to NIP-77 lately (remembered 24 h).
    negentropy: NegentropySupport | None = None

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        next_retry = None
        if self.state is RelayState.BACKOFF and self.next_retry_at is not None:
            next_retry = round(max(0.0, self.next_retry_at - now), 3)
        return {
            "url": self.url,
            "read": self.read,
            "write": self.write,
            "state": self.state.value,
            "connects": self.connects,
            "connect_attempts": self.connect_attempts,
            "events_received": self.events_received,
            "events_stored": self.events_stored,
            "events_rejected": self.events_rejected,
            "events_duplicate": self.events_duplicate,
            "dropped": dict(self.dropped),
            "rejected": dict(self.rejected),
            "last_error": self.last_error,
            "last_connected_at": self.last_connected_at,
            "last_event_at": self.last_event_at,
            "next_retry_s": next_retry,
            "backoff_s": round(self.backoff_seconds, 3),
            "backfill_complete": self.backfill_complete,
            "backfill": self.backfill.as_dict(now),
            "throttle_s": round(self.throttle.seconds, 3) if self.throttle is not None else 0.0,
            "notices": self.notices,
            "negentropy": (
                self.negentropy.status(self.url) if self.negentropy is not None else "unknown"
            ),
        }

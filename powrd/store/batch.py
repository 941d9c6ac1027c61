"""What one writer batch takes in and gives back.

The writer's ingest (:mod:`powrd.store.ingest`) plans a batch as runs and stores each
with :mod:`powrd.store.runs`; both speak these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from powrd.protocol.event import Event, is_addressable, is_replaceable
from powrd.store.rows import Processed

STORED = "stored"
SUPERSEDED = "superseded"  # stored, but an existing version is newer
DUPLICATE = "duplicate"
REJECTED = "rejected"

Address = tuple[int, str, str]
"""(kind, pubkey, d) of an addressable event; d is "" for a replaceable one."""


@dataclass(frozen=True, slots=True)
class IngestItem:
    """One validated event for the writer.

    Attributes:
        event: the event (id and signature already verified).
        source: ``local``, ``import`` or the relay URL it came from.
        processed: what the library made of it.
    """

    event: Event
    source: str
    processed: Processed


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    reason: str | None = None


@dataclass(slots=True)
class BatchResult:
    """What a batch did, for the pipeline, the resolver and the query cache."""

    outcomes: list[Outcome] = field(default_factory=list)  # one per item, in input order
    arrived: set[str] = field(default_factory=set)  # coordinates that became current
    missing: set[str] = field(default_factory=set)  # coordinates newly queued for fetch
    changed: set[str] = field(default_factory=set)  # content ids whose cached answers are stale
    deleted: set[str] = field(default_factory=set)  # ids of events removed by deletion or expiry

    @property
    def stored(self) -> int:
        return sum(1 for o in self.outcomes if o.status in (STORED, SUPERSEDED))


def event_address(event: Event) -> Address | None:
    """The address whose newest version wins, or None for a regular event."""
    if is_addressable(event.kind):
        return (event.kind, event.pubkey, event.d_tag)
    if is_replaceable(event.kind):
        return (event.kind, event.pubkey, "")
    return None


def is_newer(created_at: int, event_id: str, other_created_at: int, other_id: str) -> bool:
    """NIP-01: newest created_at wins; on a tie the lowest id wins."""
    if created_at != other_created_at:
        return created_at > other_created_at
    return event_id < other_id


def content_label(kind: int, pubkey: str, d_tag: str | None, event_id: str) -> str:
    """The id under which an event's cached answers are invalidated (``changed``)."""
    return f"{kind}:{pubkey}:{d_tag}" if d_tag is not None else event_id

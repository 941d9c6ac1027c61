"""The writer's half of the one path an event takes.

:func:`ingest` runs inside a writer transaction for a batch of events that already
passed validation (shape, policy, id, signature). For each event it applies, in order:
duplicate check, deletion tombstones, addressable/replaceable replacement, the raw
event and its tags, NIP-09 deletions it carries, the processed NIP-101e rows, and the
dependency bookkeeping (incomplete templates, fetch queue, re-resolution of dependents).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import apsw

from powrd.protocol import reasons
from powrd.protocol.event import Event, dumps, is_addressable, is_replaceable
from powrd.protocol.validate import expiration
from powrd.store import processed as processed_rows
from powrd.store.rows import Processed

STORED = "stored"
SUPERSEDED = "superseded"  # stored, but an existing version is newer
DUPLICATE = "duplicate"
REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class IngestItem:
    event: Event
    source: str
    processed: Processed
    raw: str | None = None  # compact JSON when the caller already has it


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    reason: str | None = None


@dataclass(slots=True)
class BatchResult:
    outcomes: list[Outcome] = field(default_factory=list)
    arrived: set[str] = field(default_factory=set)  # coordinates that became current
    missing: set[str] = field(default_factory=set)  # coordinates newly queued for fetch
    changed: set[str] = field(default_factory=set)  # content ids whose cached answers are stale
    deleted: set[str] = field(default_factory=set)  # ids of events removed by deletion or expiry

    @property
    def stored(self) -> int:
        return sum(1 for o in self.outcomes if o.status in (STORED, SUPERSEDED))


def _address(event: Event) -> tuple[int, str, str] | None:
    if is_addressable(event.kind):
        return (event.kind, event.pubkey, event.d_tag)
    if is_replaceable(event.kind):
        return (event.kind, event.pubkey, "")
    return None


def _is_newer(created_at: int, event_id: str, other_created_at: int, other_id: str) -> bool:
    """NIP-01: newest created_at wins; on a tie the lowest id wins."""
    if created_at != other_created_at:
        return created_at > other_created_at
    return event_id < other_id


def _tombstoned(conn: apsw.Connection, event: Event, address: tuple[int, str, str] | None) -> bool:
    """Whether a NIP-09 deletion by this event's author covers it (its id or its address)."""
    coordinate = f"{address[0]}:{address[1]}:{address[2]}" if address is not None else event.id
    for target, deleted_until in conn.execute(
        "SELECT target, deleted_until FROM tombstones WHERE target IN (?, ?) AND pubkey = ?",
        (event.id, coordinate, event.pubkey),
    ):
        if target == event.id or event.created_at <= deleted_until:
            return True
    return False


def _insert_event(conn: apsw.Connection, item: IngestItem, current: bool, now: int) -> int:
    event = item.event
    address = _address(event)
    conn.execute(
        "INSERT INTO nostr_events (id, pubkey, kind, created_at, d_tag, raw_event, received_at,"
        " source, expires_at, current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.id,
            event.pubkey,
            event.kind,
            event.created_at,
            address[2] if address else None,
            item.raw if item.raw is not None else event.to_json(),
            now,
            item.source,
            expiration(event),
            1 if current else 0,
        ),
    )
    seq = conn.last_insert_rowid()
    conn.executemany(
        "INSERT INTO event_tags (event_seq, position, name, value, extra) VALUES (?, ?, ?, ?, ?)",
        [
            (seq, position, tag[0], tag[1] if len(tag) > 1 else None,
             dumps(tag[2:]) if len(tag) > 2 else None)
            for position, tag in enumerate(event.tags)
        ],
    )
    return seq


def delete_event_rows(conn: apsw.Connection, seqs: Iterable[int], result: BatchResult) -> None:
    """Remove stored events (cascading to tags and processed rows) and re-resolve dependents."""
    for seq in seqs:
        row = conn.execute(
            "SELECT kind, pubkey, d_tag, current, id FROM nostr_events WHERE seq = ?", (seq,)
        ).fetchone()
        if row is None:
            continue
        kind, pubkey, d_tag, current, event_id = row
        result.deleted.add(event_id)
        conn.execute("DELETE FROM nostr_events WHERE seq = ?", (seq,))
        if d_tag is not None and current:
            coordinate = f"{kind}:{pubkey}:{d_tag}"
            result.changed.add(coordinate)
            processed_rows.reresolve_dependents(conn, coordinate, result.missing, result.changed)


def _apply_deletion(conn: apsw.Connection, event: Event, result: BatchResult) -> None:
    """NIP-09: tombstone and remove what the author's kind-5 event names."""
    doomed: list[int] = []
    for tag in event.tags:
        if len(tag) < 2:
            continue
        name, target = tag[0], tag[1]
        if name == "e" and len(target) == 64:
            conn.execute(
                "INSERT INTO tombstones (target, pubkey, target_type, deleted_until, deletion_id)"
                " VALUES (?, ?, 'e', ?, ?) ON CONFLICT (target, pubkey) DO NOTHING",
                (target, event.pubkey, event.created_at, event.id),
            )
            doomed.extend(
                r[0]
                for r in conn.execute(
                    "SELECT seq FROM nostr_events WHERE id = ? AND pubkey = ? AND kind != 5",
                    (target, event.pubkey),
                )
            )
        elif name == "a":
            parts = target.split(":", 2)
            if len(parts) != 3 or not parts[0].isdigit() or parts[1] != event.pubkey:
                continue  # only the author may delete their addressable events
            conn.execute(
                "INSERT INTO tombstones (target, pubkey, target_type, deleted_until, deletion_id)"
                " VALUES (?, ?, 'a', ?, ?) ON CONFLICT (target, pubkey) DO UPDATE SET"
                " deleted_until = max(deleted_until, excluded.deleted_until),"
                " deletion_id = excluded.deletion_id",
                (target, event.pubkey, event.created_at, event.id),
            )
            doomed.extend(
                r[0]
                for r in conn.execute(
                    "SELECT seq FROM nostr_events WHERE kind = ? AND pubkey = ? AND d_tag = ?"
                    " AND created_at <= ?",
                    (int(parts[0]), parts[1], parts[2], event.created_at),
                )
            )
    delete_event_rows(conn, doomed, result)


def ingest_one(conn: apsw.Connection, item: IngestItem, now: int, result: BatchResult) -> Outcome:
    event = item.event
    if conn.execute("SELECT 1 FROM nostr_events WHERE id = ?", (event.id,)).fetchone():
        return Outcome(DUPLICATE)
    address = _address(event)
    if _tombstoned(conn, event, address):
        return Outcome(REJECTED, reasons.DELETED)
    current = True
    if address is not None:
        existing = conn.execute(
            "SELECT seq, created_at, id FROM nostr_events"
            " WHERE kind = ? AND pubkey = ? AND d_tag = ? AND current = 1",
            address,
        ).fetchone()
        if existing is not None:
            if _is_newer(event.created_at, event.id, existing[1], existing[2]):
                conn.execute("UPDATE nostr_events SET current = 0 WHERE seq = ?", (existing[0],))
                processed_rows.remove(conn, existing[0])
            else:
                current = False
    seq = _insert_event(conn, item, current, now)
    if not current:
        return Outcome(SUPERSEDED)
    if event.kind == 5:
        _apply_deletion(conn, event, result)
    processed_rows.write(conn, seq, event, item.processed, result.missing, result.changed)
    coordinate = event.coordinate
    if coordinate is not None:
        result.arrived.add(coordinate)
        result.changed.add(coordinate)
        processed_rows.reresolve_dependents(conn, coordinate, result.missing, result.changed)
    return Outcome(STORED)


def ingest(conn: apsw.Connection, items: Sequence[IngestItem], now: int) -> BatchResult:
    """Store a batch of validated events (a writer operation)."""
    result = BatchResult()
    for item in items:
        result.outcomes.append(ingest_one(conn, item, now, result))
    result.missing -= result.arrived
    return result


def log_rejections(
    conn: apsw.Connection, rejections: Sequence[tuple[str | None, str, str]], now: int, keep: int
) -> None:
    """Append (event_id, source, reason) rows to the bounded rejected-events log."""
    if not rejections:
        return
    conn.executemany(
        "INSERT INTO rejected_events (event_id, source, reason, received_at) VALUES (?, ?, ?, ?)",
        [(event_id, source, reason, now) for event_id, source, reason in rejections],
    )
    last = conn.last_insert_rowid()
    conn.execute("DELETE FROM rejected_events WHERE seq <= ?", (last - keep,))


def expire(conn: apsw.Connection, now: int) -> int:
    """Drop stored events whose NIP-40 expiration has passed; returns how many."""
    result = BatchResult()
    seqs = [
        r[0]
        for r in conn.execute(
            "SELECT seq FROM nostr_events WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        )
    ]
    delete_event_rows(conn, seqs, result)
    return len(seqs)

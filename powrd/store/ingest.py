"""The writer's half of the one path an event takes.

:func:`ingest` runs inside a writer transaction for a batch of events that already
passed validation (shape, policy, id, signature). For each event it applies, in order:
duplicate check, deletion tombstones, addressable/replaceable replacement, the raw
event and its tags, NIP-09 deletions it carries, the processed NIP-101e rows, and the
dependency bookkeeping (incomplete templates, fetch queue, re-resolution of dependents).

Events whose outcome depends on the order of the batch (deletions, a second version
of an address, a repeated id) go through :func:`ingest_one`; the runs between them are
stored in bulk by :mod:`powrd.store.bulk` with the same result.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import apsw

from powrd.protocol import reasons
from powrd.protocol.coordinates import split_coordinate
from powrd.protocol.event import Event, dumps
from powrd.protocol.validate import expiration
from powrd.store import bulk
from powrd.store import processed as processed_rows
from powrd.store.batch import (
    DUPLICATE,
    REJECTED,
    STORED,
    SUPERSEDED,
    Address,
    BatchResult,
    IngestItem,
    Outcome,
    event_address,
    is_newer,
)

__all__ = [
    "DUPLICATE",
    "REJECTED",
    "STORED",
    "SUPERSEDED",
    "BatchResult",
    "IngestItem",
    "Outcome",
    "delete_event_rows",
    "expire",
    "ingest",
    "ingest_one",
    "log_rejections",
]


def _tombstoned(conn: apsw.Connection, event: Event, address: Address | None) -> bool:
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
    address = event_address(event)
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
            parts = split_coordinate(target)
            if parts is None or parts[1] != event.pubkey:
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
                    (*parts, event.created_at),
                )
            )
    delete_event_rows(conn, doomed, result)


def ingest_one(conn: apsw.Connection, item: IngestItem, now: int, result: BatchResult) -> Outcome:
    """The per-event path: every rule for one item, in order, against the store as it is.

    The bulk runs of :mod:`powrd.store.bulk` must leave exactly what this leaves.
    """
    event = item.event
    if conn.execute("SELECT 1 FROM nostr_events WHERE id = ?", (event.id,)).fetchone():
        return Outcome(DUPLICATE)
    address = event_address(event)
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
            if is_newer(event.created_at, event.id, existing[1], existing[2]):
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
    """Store a batch of validated events (a writer operation).

    Returns:
        One outcome per item in input order, plus what the batch made current, queued
        for fetching, invalidated and deleted.
    """
    result = BatchResult()
    planned = [(item, event_address(item.event)) for item in items]
    coordinate_ids: dict[str, int] = {}
    run: list[bulk.Planned] = []
    for entry, one_by_one in zip(planned, bulk.one_by_one(planned), strict=True):
        if one_by_one:
            bulk.ingest_run(conn, run, now, result, coordinate_ids)
            run = []
            result.outcomes.append(ingest_one(conn, entry[0], now, result))
        else:
            run.append(entry)
    bulk.ingest_run(conn, run, now, result, coordinate_ids)
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

"""NIP-09 deletions and NIP-40 expiry: tombstones, and removing stored events.

A kind 5 event by an author tombstones the ids (``e`` tags) and addresses (``a`` tags,
every version up to the deletion's time) it names, and removes what is stored of them.
A tombstone also rejects the named events when they arrive later.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import apsw

from powrd.protocol.coordinates import split_coordinate
from powrd.protocol.event import Event, dumps
from powrd.store import resolution
from powrd.store.batch import Address, BatchResult, IngestItem

KIND_DELETION = 5

Found = dict[str, list[tuple[str, int]]]
"""target -> [(author, deleted_until), …] of the tombstones naming it."""

_TOMBSTONE_UPSERT = (
    "INSERT INTO tombstones (target, pubkey, target_type, deleted_until, deletion_id)"
    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (target, pubkey) DO UPDATE SET"
    " deleted_until = max(deleted_until, excluded.deleted_until),"
    " deletion_id = excluded.deletion_id"
    " WHERE excluded.target_type = 'a'"  # an id is deleted once: the first deletion stays
)


def _target_of(event: Event, address: Address | None) -> str:
    """What an ``a`` tombstone would name for this event (its id when it has no address)."""
    return f"{address[0]}:{address[1]}:{address[2]}" if address else event.id


def tombstones(conn: apsw.Connection, run: Sequence[tuple[IngestItem, Address | None]]) -> Found:
    """Every tombstone naming an event of ``run`` (by id or by address), with one query."""
    if conn.execute("SELECT 1 FROM tombstones LIMIT 1").fetchone() is None:
        return {}  # the common case: nothing was ever deleted
    targets = {item.event.id for item, _ in run}
    targets.update(_target_of(item.event, address) for item, address in run)
    found: Found = {}
    for target, pubkey, deleted_until in conn.execute(
        "SELECT target, pubkey, deleted_until FROM tombstones"
        " WHERE target IN (SELECT value FROM json_each(?))",
        (dumps(sorted(targets)),),
    ):
        found.setdefault(target, []).append((pubkey, deleted_until))
    return found


def is_deleted(event: Event, address: Address | None, found: Found) -> bool:
    """Whether a deletion by this event's author covers it (its id or its address)."""
    for target in {event.id, _target_of(event, address)}:
        for pubkey, deleted_until in found.get(target, ()):
            if pubkey == event.pubkey and (target == event.id or event.created_at <= deleted_until):
                return True
    return False


def _named(event: Event) -> Iterator[tuple[str, str, str, tuple[Any, ...]]]:
    """(target type, target, query for the stored events it names, its arguments)."""
    for tag in event.tags:
        if len(tag) < 2:
            continue
        name, target = tag[0], tag[1]
        if name == "e" and len(target) == 64:
            yield (
                "e", target,
                "SELECT seq FROM nostr_events WHERE id = ? AND pubkey = ? AND kind != 5",
                (target, event.pubkey),
            )
        elif name == "a":
            parts = split_coordinate(target)
            if parts is None or parts[1] != event.pubkey:
                continue  # only the author may delete their addressable events
            yield (
                "a", target,
                "SELECT seq FROM nostr_events WHERE kind = ? AND pubkey = ? AND d_tag = ?"
                " AND created_at <= ?",
                (*parts, event.created_at),
            )


def apply(conn: apsw.Connection, event: Event, result: BatchResult) -> None:
    """Tombstone and remove what a stored kind 5 event names (a writer operation)."""
    doomed: list[int] = []
    for target_type, target, query, args in _named(event):
        conn.execute(
            _TOMBSTONE_UPSERT, (target, event.pubkey, target_type, event.created_at, event.id)
        )
        doomed.extend(row[0] for row in conn.execute(query, args))
    delete_events(conn, doomed, result)


def delete_events(conn: apsw.Connection, seqs: Iterable[int], result: BatchResult) -> None:
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
            resolution.reresolve_dependents(conn, coordinate, result.missing, result.changed)


def expire(conn: apsw.Connection, now: int) -> int:
    """Drop stored events whose NIP-40 expiration has passed; returns how many."""
    seqs = [
        row[0]
        for row in conn.execute(
            "SELECT seq FROM nostr_events WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,)
        )
    ]
    delete_events(conn, seqs, BatchResult())
    return len(seqs)

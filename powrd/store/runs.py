"""Storing one run of a batch: a few statements per table for all its events.

:mod:`powrd.store.ingest` splits a batch into runs in which the per-event rules
commute (every address and id is new to the batch, no deletion), so a run is stored
at once with the result of storing its events one by one. An event whose effect
depends on what came before it in the batch is a run of one.

Within a run, an event's competitor, if any, is a version stored before the run,
looked up per run; so are duplicates and tombstones. Replaced versions are demoted
(:mod:`powrd.store.replacement`) before the run's events go in; then events, tags,
processed rows (:mod:`powrd.store.processed`) and dependency resolution
(:mod:`powrd.store.resolution`) are written a table at a time, with seqs assigned
here in input order as SQLite would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from powrd.protocol import reasons
from powrd.protocol.event import dumps, is_addressable
from powrd.protocol.validate import expiration
from powrd.store import batch, deletion, processed, replacement, resolution
from powrd.store.batch import Address, BatchResult, IngestItem, Outcome
from powrd.store.raw_events import pack
from powrd.store.rows import Reference

Planned = tuple[IngestItem, Address | None]
"""An item and its address, worked out once per batch."""

_STORED = Outcome(batch.STORED)
_SUPERSEDED = Outcome(batch.SUPERSEDED)
_DUPLICATE = Outcome(batch.DUPLICATE)
_DELETED = Outcome(batch.REJECTED, reasons.DELETED)


@dataclass(frozen=True, slots=True)
class _Entry:
    """An event of the run that will be stored."""

    item: IngestItem
    address: Address | None
    seq: int
    current: bool


def store(
    conn: apsw.Connection,
    run: Sequence[Planned],
    now: int,
    result: BatchResult,
    coordinate_ids: dict[str, int],
) -> None:
    """Store a run of items (see the module docstring), appending their outcomes.

    Args:
        conn: the writer connection, inside the batch's transaction.
        run: the items, each with its address.
        now: the receive time to record.
        result: the batch's result, to which this run's outcomes and effects are added.
        coordinate_ids: interned coordinates known so far in this batch (updated).
    """
    if not run:
        return
    stored_ids = _stored_ids(conn, [item.event.id for item, _ in run])
    tombstones = deletion.tombstones(conn, run)
    outcomes: list[Outcome | None] = []  # None: decided once versions are compared
    kept: list[Planned] = []
    for item, address in run:
        if item.event.id in stored_ids:
            outcomes.append(_DUPLICATE)
        elif tombstones and deletion.is_deleted(item.event, address, tombstones):
            outcomes.append(_DELETED)
        else:
            outcomes.append(None)
            kept.append((item, address))
    entries, replaced = _entries(conn, kept) if kept else ([], [])
    decided = iter(entries)
    for screened in outcomes:
        current = screened is None and next(decided).current
        result.outcomes.append(screened or (_STORED if current else _SUPERSEDED))
    if not entries:
        return
    if replaced:
        replacement.demote(conn, replaced, _needed_before(entries))
    _store(conn, entries, now, result, coordinate_ids)


def _entries(
    conn: apsw.Connection, kept: Sequence[Planned]
) -> tuple[list[_Entry], list[tuple[int, int]]]:
    """Seqs and currency of the events to store, and the stored versions they replace."""
    rivals = _current_versions(conn, {address for _, address in kept if address is not None})
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM nostr_events").fetchone()
    first_seq = int(row[0]) + 1 if row is not None else 1
    entries: list[_Entry] = []
    replaced: list[tuple[int, int]] = []
    for position, (item, address) in enumerate(kept):
        event = item.event
        rival = rivals.get(address) if address is not None else None
        current = True
        if rival is not None:
            rival_seq, rival_created_at, rival_id = rival
            if batch.is_newer(event.created_at, event.id, rival_created_at, rival_id):
                replaced.append((rival_seq, position))
            else:
                current = False
        entries.append(_Entry(item, address, first_seq + position, current))
    return entries, replaced


def _current_versions(
    conn: apsw.Connection, addresses: set[Address]
) -> dict[Address, tuple[int, int, str]]:
    """address -> (seq, created_at, id) of its current stored version, where there is one."""
    if not addresses:
        return {}
    found: dict[Address, tuple[int, int, str]] = {}
    for kind, pubkey, d_tag, seq, created_at, event_id in conn.execute(
        "SELECT e.kind, e.pubkey, e.d_tag, e.seq, e.created_at, e.id"
        " FROM json_each(?) AS j CROSS JOIN nostr_events AS e"
        " ON e.kind = j.value ->> 0 AND e.pubkey = j.value ->> 1 AND e.d_tag = j.value ->> 2"
        " AND e.current = 1 ORDER BY e.seq",
        (dumps(list(addresses)),),
    ):
        found.setdefault((kind, pubkey, d_tag), (seq, created_at, event_id))
    return found


def _needed_before(entries: Sequence[_Entry]) -> replacement.NeededBefore:
    """Whether a current run event before a position depends on a coordinate."""

    def needed(coordinate: str, position: int) -> bool:
        return any(
            ref.coordinate == coordinate
            for entry in entries[:position]
            if entry.current
            for ref in entry.item.processed.dependencies
        )

    return needed


def _stored_ids(conn: apsw.Connection, ids: list[str]) -> set[str]:
    return {
        row[0]
        for row in conn.execute(
            "SELECT id FROM nostr_events WHERE id IN (SELECT value FROM json_each(?))",
            (dumps(ids),),
        )
    }


def _store(
    conn: apsw.Connection,
    entries: Sequence[_Entry],
    now: int,
    result: BatchResult,
    coordinate_ids: dict[str, int],
) -> None:
    """Insert the run's events and tags, then the current ones' processed rows."""
    conn.executemany(
        "INSERT INTO nostr_events (seq, id, pubkey, kind, created_at, d_tag, raw_event,"
        " received_at, source, expires_at, current) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        _event_rows(entries, now),
    )
    conn.executemany(
        "INSERT INTO event_tags (event_seq, position, name, value) VALUES (?, ?, ?, ?)",
        _tag_rows(entries),
    )
    current = [entry for entry in entries if entry.current]
    processed.write(
        conn,
        [(entry.seq, entry.item.event, entry.item.processed) for entry in current],
        coordinate_ids,
    )
    _resolve(conn, current, entries[0].seq, result, coordinate_ids)


def _event_rows(entries: Sequence[_Entry], now: int) -> Iterable[tuple[Any, ...]]:
    for entry in entries:
        item, address = entry.item, entry.address
        event = item.event
        yield (
            entry.seq, event.id, event.pubkey, event.kind, event.created_at,
            address[2] if address else None, pack(event.to_json()), now, item.source,
            expiration(event), 1 if entry.current else 0,
        )


def _tag_rows(entries: Sequence[_Entry]) -> list[tuple[Any, ...]]:
    """Only single-letter tags, the ones NIP-01 filters query (migration 5)."""
    rows: list[tuple[Any, ...]] = []
    add = rows.append
    for entry in entries:
        seq = entry.seq
        for position, tag in enumerate(entry.item.event.tags):
            if tag and len(tag[0]) == 1:
                add((seq, position, tag[0], tag[1] if len(tag) > 1 else None))
    return rows


def _resolve(
    conn: apsw.Connection,
    current: Sequence[_Entry],
    first_seq: int,
    result: BatchResult,
    coordinate_ids: dict[str, int],
) -> None:
    """Dependency bookkeeping for the run, and what it adds to ``arrived`` and ``changed``."""
    arrivals: dict[str, int] = {}  # coordinate -> seq of the event that made it current
    dependents: list[tuple[int, int, Sequence[Reference]]] = []
    for entry in current:
        event, address = entry.item.event, entry.address
        if address is not None and is_addressable(event.kind):
            arrivals[f"{event.kind}:{event.pubkey}:{address[2]}"] = entry.seq
        if entry.item.processed.dependencies:
            dependents.append((entry.seq, event.kind, entry.item.processed.dependencies))
    resolution.resolve_run(
        conn, dependents, arrivals.keys(), first_seq, result, coordinate_ids=coordinate_ids
    )
    for entry in current:
        event, made, address = entry.item.event, entry.item.processed, entry.address
        coordinate = event.coordinate
        if made.row is not None:
            result.changed.add(coordinate or event.id)
        if coordinate is not None:
            result.arrived.add(coordinate)
            result.changed.add(coordinate)
        # Stored one at a time, a dependent stored before one of its coordinates
        # arrives (or at its own arrival) is re-resolved then, which marks it changed;
        # almost always it is marked already, for its own row.
        d_tag = address[2] if address else None
        label = batch.content_label(event.kind, event.pubkey, d_tag, event.id)
        if label not in result.changed and any(
            arrivals.get(ref.coordinate, -1) >= entry.seq for ref in made.dependencies
        ):
            result.changed.add(label)

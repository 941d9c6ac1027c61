"""Storing runs of events in bulk: which events may be, and how.

Most of a batch is new events: records, and new versions of exercises and templates.
For those the per-event rules (:func:`powrd.store.ingest.ingest_one`) commute, so a run
of them is stored with a few statements per table instead of a dozen per event. An
event whose effect depends on what came before it in the same batch takes the
per-event path and splits the batch into runs:

* a kind 5 deletion (it removes and tombstones what it names);
* an addressable or replaceable event whose address appeared earlier in the batch
  (replacement compares it with a version the batch itself stored);
* an event id seen earlier in the batch.

Within a run every address is new to the batch, so an event's competitor, if any, is
a version stored before the batch, looked up per run. Duplicates and tombstones are
looked up per run too, after the per-event events before it (deletions among them)
are applied. Replaced versions are demoted (:mod:`powrd.store.replacement`) before the
run's events go in; then events, tags, processed rows and dependency resolution are
written a table at a time, with seqs assigned here in input order as SQLite would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import apsw

from powrd.protocol import reasons
from powrd.protocol.event import dumps, is_addressable
from powrd.protocol.validate import expiration
from powrd.store import bulk_processed, replacement, resolution
from powrd.store.batch import (
    DUPLICATE,
    REJECTED,
    STORED,
    SUPERSEDED,
    Address,
    BatchResult,
    IngestItem,
    Outcome,
    content_label,
    is_newer,
)
from powrd.store.rows import Reference

KIND_DELETION = 5
Planned = tuple[IngestItem, Address | None]
"""An item and its address, worked out once per batch."""

_OUTCOMES = {
    STORED: Outcome(STORED),
    SUPERSEDED: Outcome(SUPERSEDED),
    DUPLICATE: Outcome(DUPLICATE),
}
_DELETED = Outcome(REJECTED, reasons.DELETED)


@dataclass(frozen=True, slots=True)
class _Entry:
    """An event of the run that will be stored."""

    item: IngestItem
    address: Address | None
    seq: int
    current: bool


def one_by_one(planned: Sequence[Planned]) -> list[bool]:
    """For each item, whether it must take the per-event path (see the module docstring)."""
    seen_ids: set[str] = set()
    seen_addresses: set[Address] = set()
    flags: list[bool] = []
    for item, address in planned:
        event = item.event
        flags.append(
            event.kind == KIND_DELETION
            or event.id in seen_ids
            or (address is not None and address in seen_addresses)
        )
        seen_ids.add(event.id)
        if address is not None:
            seen_addresses.add(address)
    return flags


def ingest_run(
    conn: apsw.Connection,
    run: Sequence[Planned],
    now: int,
    result: BatchResult,
    coordinate_ids: dict[str, int],
) -> None:
    """Store a run of items that :func:`one_by_one` let through, appending outcomes.

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
    tombstones = _tombstones(conn, run)
    outcomes: list[Outcome | None] = []  # None: decided once versions are compared
    kept: list[Planned] = []
    for item, address in run:
        if item.event.id in stored_ids:
            outcomes.append(_OUTCOMES[DUPLICATE])
        elif tombstones and _tombstoned(item, address, tombstones):
            outcomes.append(_DELETED)
        else:
            outcomes.append(None)
            kept.append((item, address))
    entries, replaced = _entries(conn, kept) if kept else ([], [])
    decided = iter(entries)
    for screened in outcomes:
        current = screened is None and next(decided).current
        result.outcomes.append(screened or _OUTCOMES[STORED if current else SUPERSEDED])
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
            if is_newer(event.created_at, event.id, rival_created_at, rival_id):
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


def _target_of(item: IngestItem, address: Address | None) -> str:
    """What an ``a`` tombstone would name for this event (its id when it has no address)."""
    return f"{address[0]}:{address[1]}:{address[2]}" if address else item.event.id


def _tombstones(conn: apsw.Connection, run: Sequence[Planned]) -> dict[str, list[Any]]:
    """target -> [(author, deleted_until), …] for every tombstone naming one of ``run``."""
    if conn.execute("SELECT 1 FROM tombstones LIMIT 1").fetchone() is None:
        return {}  # the common case: nothing was ever deleted
    targets = {item.event.id for item, _ in run} | {_target_of(*planned) for planned in run}
    found: dict[str, list[Any]] = {}
    for target, pubkey, deleted_until in conn.execute(
        "SELECT target, pubkey, deleted_until FROM tombstones"
        " WHERE target IN (SELECT value FROM json_each(?))",
        (dumps(sorted(targets)),),
    ):
        found.setdefault(target, []).append((pubkey, deleted_until))
    return found


def _tombstoned(item: IngestItem, address: Address | None, found: dict[str, list[Any]]) -> bool:
    """Whether a NIP-09 deletion by this event's author covers it (its id or its address)."""
    event = item.event
    for target in {event.id, _target_of(item, address)}:
        for pubkey, deleted_until in found.get(target, ()):
            if pubkey == event.pubkey and (target == event.id or event.created_at <= deleted_until):
                return True
    return False


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
        "INSERT INTO event_tags (event_seq, position, name, value, extra) VALUES (?, ?, ?, ?, ?)",
        _tag_rows(entries),
    )
    current = [entry for entry in entries if entry.current]
    bulk_processed.write_all(
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
            address[2] if address else None,
            item.raw if item.raw is not None else event.to_json(),
            now, item.source, expiration(event), 1 if entry.current else 0,
        )


def _tag_rows(entries: Sequence[_Entry]) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    add = rows.append
    for entry in entries:
        seq = entry.seq
        for position, tag in enumerate(entry.item.event.tags):
            size = len(tag)
            if size == 2:  # the usual shape, tested first
                add((seq, position, tag[0], tag[1], None))
            elif size > 2:
                add((seq, position, tag[0], tag[1], dumps(tag[2:])))
            else:
                add((seq, position, tag[0], None, None))
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
        event, processed, address = entry.item.event, entry.item.processed, entry.address
        coordinate = event.coordinate
        if processed.row is not None:
            result.changed.add(coordinate or event.id)
        if coordinate is not None:
            result.arrived.add(coordinate)
            result.changed.add(coordinate)
        # The per-event path re-resolves a dependent stored before one of its
        # coordinates arrives (or at its own arrival), which marks it changed; almost
        # always it is marked already, for its own row.
        label = content_label(event.kind, event.pubkey, address[2] if address else None, event.id)
        if label not in result.changed and any(
            arrivals.get(ref.coordinate, -1) >= entry.seq for ref in processed.dependencies
        ):
            result.changed.add(label)

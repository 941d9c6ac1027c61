"""Rebuilding every processed table from the raw events (the seed's recovery procedure)."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice

import apsw

from powrd.protocol.event import Event
from powrd.store import processed, queries, resolution
from powrd.store.rows import Processed

PROCESSED_TABLES = tuple(table for table, _ in processed.OWNED)
CHUNK = 1000
"""Events whose rows are built and written together (bounds the rows held in memory)."""


def snapshot(conn: apsw.Connection) -> dict[str, object]:
    """Row counts per processed table plus the incomplete set, for a before/after report."""
    figures: dict[str, object] = {
        table: queries.count(conn, f"SELECT count(*) FROM {table}")  # noqa: S608
        for table in PROCESSED_TABLES
    }
    figures["incomplete"] = sorted(
        (row[0], row[1])
        for row in conn.execute(
            "SELECT e.id, i.missing_exercises FROM incomplete_templates i"
            " JOIN nostr_events e ON e.seq = i.template_seq"
        )
    )
    figures["fetch_queue"] = queries.count(conn, "SELECT count(*) FROM fetch_queue")
    return figures


def rebuild(conn: apsw.Connection, items: Iterable[tuple[int, Event, Processed]]) -> None:
    """Replace every processed row with what ``items`` (current events, by seq) say.

    A writer operation. Which events are current does not change, so each chunk's
    dependents are resolved against the final state at once.
    """
    for table in PROCESSED_TABLES:
        conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    coordinate_ids: dict[str, int] = {}
    missing: set[str] = set()
    events = iter(items)
    while chunk := list(islice(events, CHUNK)):
        processed.write(conn, chunk, coordinate_ids)
        dependents = {seq: event.kind for seq, event, made in chunk if made.dependencies}
        resolution.resolve_listed(conn, dependents, missing)
    conn.execute(
        "DELETE FROM fetch_queue WHERE NOT EXISTS"
        " (SELECT 1 FROM dependencies d WHERE d.coordinate = fetch_queue.coordinate)"
    )

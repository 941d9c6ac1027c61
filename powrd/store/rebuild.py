"""Rebuilding every processed table from the raw events (the seed's recovery procedure)."""

from __future__ import annotations

from collections.abc import Iterable

import apsw

from powrd.protocol.event import Event
from powrd.store import processed as processed_rows
from powrd.store import queries
from powrd.store.rows import Processed

PROCESSED_TABLES = (
    "exercise_definitions",
    "templates",
    "template_exercises",
    "workout_records",
    "record_sets",
    "collections",
    "collection_members",
    "dependency_refs",
    "incomplete_templates",
    "processing_warnings",
)


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
    """Replace every processed row with what ``items`` say (a writer operation)."""
    for table in PROCESSED_TABLES:
        conn.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
    missing: set[str] = set()
    changed: set[str] = set()
    for seq, event, processed in items:
        processed_rows.write(conn, seq, event, processed, missing, changed)
    conn.execute(
        "DELETE FROM fetch_queue WHERE NOT EXISTS"
        " (SELECT 1 FROM dependencies d WHERE d.coordinate = fetch_queue.coordinate)"
    )

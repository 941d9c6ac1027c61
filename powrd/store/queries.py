"""Read queries over events: dedupe look-ups, counts, export, NIP-01 filters."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import apsw

from powrd.protocol.filters import Filter
from powrd.store.filter_sql import filter_clauses
from powrd.store.raw_events import unpack

_CHUNK = 500  # stays well under SQLite's host-parameter limit


def known_ids(conn: apsw.Connection, ids: Sequence[str]) -> set[str]:
    """The subset of ``ids`` already stored."""
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        found.update(
            row[0]
            for row in conn.execute(f"SELECT id FROM nostr_events WHERE id IN ({marks})", chunk)  # noqa: S608
        )
    return found


def count(conn: apsw.Connection, sql: str, args: tuple[Any, ...] = ()) -> int:
    """The single integer a ``SELECT count(*) …`` returns."""
    row = conn.execute(sql, args).fetchone()
    assert row is not None  # an aggregate always returns a row
    return int(row[0])


def counts(conn: apsw.Connection) -> dict[str, Any]:
    """The figures ``status`` reports: the big tables' from the counts triggers keep."""
    rows = dict(conn.execute("SELECT name, n FROM row_counts"))
    by_kind = {
        str(kind): n
        for kind, n in conn.execute("SELECT kind, n FROM current_events WHERE n > 0 ORDER BY kind")
    }
    return {
        "events": rows["nostr_events"],
        "by_kind": by_kind,
        "exercises": rows["exercise_definitions"],
        "templates": rows["templates"],
        "records": rows["workout_records"],
        "incomplete_templates": rows["incomplete_templates"],
        # Small tables: the fetch queue holds what is missing, the outbox what is unsent,
        # the rejected log at most [store].rejected_log_max rows.
        "fetch_pending": count(conn, "SELECT count(*) FROM fetch_queue WHERE state != 'not_found'"),
        "outbox_pending": count(conn, "SELECT count(*) FROM outbox WHERE done = 0"),
        "rejected": count(conn, "SELECT count(*) FROM rejected_events"),
    }


def iter_raw_events(conn: apsw.Connection, *, include_superseded: bool = False) -> Iterator[str]:
    """Raw JSON of stored events, oldest first (deleted events are not stored)."""
    sql = "SELECT raw_event FROM nostr_events"
    if not include_superseded:
        sql += " WHERE current = 1"
    for (raw,) in conn.execute(sql + " ORDER BY created_at, id"):
        yield unpack(raw)


def iter_current_events(conn: apsw.Connection) -> Iterator[tuple[int, str]]:
    """(seq, raw JSON) of every current event, for rebuilding processed tables."""
    for seq, raw in conn.execute(
        "SELECT seq, raw_event FROM nostr_events WHERE current = 1 ORDER BY seq"
    ):
        yield seq, unpack(raw)


def event_by_id(conn: apsw.Connection, event_id: str) -> str | None:
    row = conn.execute("SELECT raw_event FROM nostr_events WHERE id = ?", (event_id,)).fetchone()
    return None if row is None else unpack(row[0])


def processing_warnings(conn: apsw.Connection, event_id: str) -> list[str]:
    return [
        row[0]
        for row in conn.execute(
            "SELECT w.message FROM processing_warnings w JOIN nostr_events e ON e.seq = w.event_seq"
            " WHERE e.id = ? ORDER BY w.position",
            (event_id,),
        )
    ]


def indexed_tags(conn: apsw.Connection, event_id: str) -> list[list[str]]:
    """The tags an event is found by in tag filters: single-letter ones, name and value."""
    return [
        [name] if value is None else [name, value]
        for name, value in conn.execute(
            "SELECT t.name, t.value FROM event_tags t"
            " JOIN nostr_events e ON e.seq = t.event_seq WHERE e.id = ? ORDER BY t.position",
            (event_id,),
        )
    ]


def query_events(conn: apsw.Connection, flt: Filter, *, max_limit: int = 5000) -> list[str]:
    """Raw JSON of current events matching a NIP-01 filter, newest first."""
    # Lists bound as JSON arrays: an app's filter may hold any number of values.
    clauses, args = filter_clauses(flt, json_lists=True)
    limit = max_limit if flt.limit is None else min(flt.limit, max_limit)
    sql = (
        f"SELECT e.raw_event FROM nostr_events e WHERE {' AND '.join(['e.current = 1', *clauses])}"  # noqa: S608
        " ORDER BY e.created_at DESC, e.id ASC LIMIT ?"
    )
    return [unpack(row[0]) for row in conn.execute(sql, (*args, limit))]

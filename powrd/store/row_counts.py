"""The counts ``status`` reports, kept up to date by triggers (migration 6).

Counting a million events scans indexes of a hundred megabytes: seconds with cold pages.
Migration 6's triggers keep each figure in ``row_counts`` and ``current_kind_counts``,
changed by the statement that changes the rows, inside its transaction (a rolled-back
batch or savepoint takes its counts back with it). :func:`read` costs a few rows at
any size; :func:`scan` counts the tables themselves, and :func:`recount` writes what it
finds (``powrd reindex`` does, so a store whose counts went wrong is repaired).
"""

from __future__ import annotations

from typing import Any

import apsw

_SCANS: dict[str, str] = {
    "events": "SELECT count(*) FROM nostr_events",
    "exercises": "SELECT count(*) FROM exercise_definitions",
    "templates": "SELECT count(*) FROM templates",
    "records": "SELECT count(*) FROM workout_records",
    "incomplete_templates": "SELECT count(*) FROM incomplete_templates",
    "fetch_pending": "SELECT count(*) FROM fetch_queue WHERE state != 'not_found'",
    "outbox_pending": "SELECT count(*) FROM outbox WHERE done = 0",
    "rejected": "SELECT count(*) FROM rejected_events",
}
"""Each kept figure and the query that counts it from its table."""


def read(conn: apsw.Connection) -> dict[str, Any]:
    """The figures ``status`` reports, from the kept counts."""
    kept = {name: int(rows) for name, rows in conn.execute("SELECT name, rows FROM row_counts")}
    by_kind = {
        str(kind): int(events)
        for kind, events in conn.execute(
            "SELECT kind, events FROM current_kind_counts WHERE events != 0 ORDER BY kind"
        )
    }
    return _figures(kept, by_kind)


def scan(conn: apsw.Connection) -> dict[str, Any]:
    """The same figures counted from the tables (a scan of every event)."""
    kept = {name: int(conn.execute(sql).fetchall()[0][0] or 0) for name, sql in _SCANS.items()}
    by_kind = {
        str(kind): int(events)
        for kind, events in conn.execute(
            "SELECT kind, count(*) FROM nostr_events WHERE current = 1 GROUP BY kind ORDER BY kind"
        )
    }
    return _figures(kept, by_kind)


def recount(conn: apsw.Connection) -> None:
    """Replace the kept counts with what the tables hold (a writer operation)."""
    figures = scan(conn)
    conn.execute("DELETE FROM row_counts")
    conn.executemany(
        "INSERT INTO row_counts (name, rows) VALUES (?, ?)",
        [(name, figures[name]) for name in _SCANS],
    )
    conn.execute("DELETE FROM current_kind_counts")
    conn.executemany(
        "INSERT INTO current_kind_counts (kind, events) VALUES (?, ?)",
        [(int(kind), events) for kind, events in figures["by_kind"].items()],
    )


def _figures(kept: dict[str, int], by_kind: dict[str, int]) -> dict[str, Any]:
    return {
        "events": kept["events"],
        "by_kind": by_kind,
        **{name: kept[name] for name in _SCANS if name != "events"},
    }

"""The figures ``status`` reports, counted by scanning: the oracle for the kept counts."""

from __future__ import annotations

from typing import Any

import apsw


def scanned_counts(conn: apsw.Connection) -> dict[str, Any]:
    def one(sql: str) -> int:
        return int(conn.execute(sql).fetchone()[0])

    return {
        "events": one("SELECT count(*) FROM nostr_events"),
        "by_kind": {
            str(kind): n
            for kind, n in conn.execute(
                "SELECT kind, count(*) FROM nostr_events WHERE current = 1 GROUP BY kind"
                " ORDER BY kind"
            )
        },
        "exercises": one("SELECT count(*) FROM exercise_definitions"),
        "templates": one("SELECT count(*) FROM templates"),
        "records": one("SELECT count(*) FROM workout_records"),
        "incomplete_templates": one("SELECT count(*) FROM incomplete_templates"),
        "fetch_pending": one("SELECT count(*) FROM fetch_queue WHERE state != 'not_found'"),
        "outbox_pending": one("SELECT count(*) FROM outbox WHERE done = 0"),
        "rejected": one("SELECT count(*) FROM rejected_events"),
    }

"""Turning a store back into what an older powrd left, to test the migrations on it."""

from __future__ import annotations

import apsw


def undo_row_counts(conn: apsw.Connection) -> None:
    """Remove what migration 7 added: the count tables and the triggers that keep them."""
    for (trigger,) in list(conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger'")):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE row_counts")
    conn.execute("DROP TABLE current_events")

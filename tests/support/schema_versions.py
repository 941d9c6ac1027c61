"""Taking a store back to an older schema version, to test the migrations after it."""

from __future__ import annotations

import apsw


def undo_kept_counts(conn: apsw.Connection) -> None:
    """Remove what migration 6 added (the kept counts and their triggers); version 5."""
    triggers = [row[0] for row in conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND name LIKE 'count\\_%' ESCAPE '\\'"
    )]
    for name in triggers:
        conn.execute(f'DROP TRIGGER "{name}"')
    conn.execute("DROP TABLE row_counts")
    conn.execute("DROP TABLE current_kind_counts")
    conn.execute("PRAGMA user_version = 5")

"""The processed-table declarations agree with the schema, so no table is left out.

Replacement and reindex drop and rebuild exactly :data:`powrd.store.processed.OWNED`;
a table that hangs off an event but is not declared there would keep stale rows.
"""

from __future__ import annotations

import apsw

from powrd.store import processed
from powrd.store.database import migrate

RAW_EVENT_TABLES = {"event_tags"}  # belongs to the raw event, not to its processing


def new_store() -> apsw.Connection:
    conn = apsw.Connection(":memory:")
    migrate(conn)
    return conn


def columns(conn: apsw.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_every_declared_column_exists() -> None:
    conn = new_store()
    for table in processed.TABLES:
        assert set(table.columns) <= columns(conn, table.name), table.name
    for table, owner in processed.OWNED:
        assert owner in columns(conn, table), table


def test_every_table_hanging_off_an_event_is_owned() -> None:
    conn = new_store()
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")]
    owned = {table for table, _ in processed.OWNED}
    parents = {"nostr_events"}
    found: set[str] = set()
    while True:  # tables whose rows go with an event's, directly or through a parent
        more = {
            table
            for table in tables
            for row in conn.execute(f"PRAGMA foreign_key_list({table})")
            if row[2] in parents and table not in RAW_EVENT_TABLES
        }
        if more <= found:
            break
        found |= more
        parents |= more
    assert found == owned


def test_inserts_are_valid_sql() -> None:
    conn = new_store()
    for table in processed.TABLES:
        # Preparing checks names and the conflict clause; EXPLAIN writes nothing.
        conn.execute("EXPLAIN " + table.insert, [None] * len(table.columns)).fetchall()

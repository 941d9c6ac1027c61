"""Migrations 6 and 7: a version-5 store's records and sets survive the table rebuild."""

from __future__ import annotations

from pathlib import Path

import apsw

from powrd.store.schema import LATEST_VERSION, MIGRATIONS
from powrd.store.store import Store
from tests.support.corpus import generate_corpus
from tests.support.old_stores import stored, undo_row_counts

NOW = 1_800_000_000
RECORD_TABLES = ("workout_records", "record_sets", "dependency_refs")


def snapshot(conn: apsw.Connection) -> dict[str, list[object]]:
    return {
        table: list(conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"))
        for table in RECORD_TABLES
    }


def unique_indexes(conn: apsw.Connection) -> list[str]:
    return [row[1] for row in conn.execute("PRAGMA index_list(workout_records)") if row[2]]


def as_version_5(path: Path) -> None:
    """Give workout_records back the UNIQUE event_id it had up to version 5."""
    conn = apsw.Connection(str(path))
    with conn:
        conn.execute("CREATE UNIQUE INDEX workout_records_event_id ON workout_records (event_id)")
        undo_row_counts(conn)
        conn.execute("PRAGMA user_version = 5")
    conn.close()


def test_a_version_5_store_keeps_its_records_and_sets(tmp_path: Path) -> None:
    assert LATEST_VERSION == len(MIGRATIONS) >= 6
    events = generate_corpus(300, 3, seed=8)
    path = tmp_path / "powrd.db"
    with stored(path, events) as store:
        fresh = snapshot(store.reader())
        assert unique_indexes(store.reader()) == []
    assert all(fresh[table] for table in RECORD_TABLES)  # the corpus has records with sets
    as_version_5(path)
    old = apsw.Connection(str(path))
    assert unique_indexes(old) == ["workout_records_event_id"]
    old.close()

    with Store(path) as store:
        conn = store.reader()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert snapshot(conn) == fresh
        assert unique_indexes(conn) == []
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        # A deleted record still takes its sets with it (the rebuilt table's cascade).
        seq = fresh["workout_records"][0][0]
        store.writer.call(lambda w: w.execute("DELETE FROM nostr_events WHERE seq = ?", (seq,)))
        assert conn.execute(
            "SELECT count(*) FROM record_sets WHERE record_seq = ?", (seq,)
        ).fetchone()[0] == 0

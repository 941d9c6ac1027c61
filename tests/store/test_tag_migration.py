"""Migration 5: a version-4 store (every tag element in event_tags) keeps its answers."""

from __future__ import annotations

from pathlib import Path

import apsw

from powrd.protocol.event import dumps, loads
from powrd.protocol.filters import Filter
from powrd.store import queries
from powrd.store.raw_events import unpack
from powrd.store.schema import LATEST_VERSION
from powrd.store.store import Store
from tests.support.corpus import generate_corpus
from tests.support.old_stores import stored, undo_row_counts

NOW = 1_800_000_000


def answers(conn: apsw.Connection, events: list[str]) -> list[object]:
    """Export and the tag filters of NIP-01, over the corpus's own d and t values."""
    parsed = [loads(e) for e in events]
    d_values = sorted({t[1] for e in parsed for t in e["tags"] if t[0] == "d"})[:40]
    t_values = sorted({t[1] for e in parsed for t in e["tags"] if t[0] == "t"})
    found: list[object] = [list(queries.iter_raw_events(conn, include_superseded=True))]
    for letter, values in (("d", d_values), ("t", t_values[:3]), ("t", t_values[-1:])):
        flt = Filter(tags={letter: frozenset(values)})
        found.append(queries.query_events(conn, flt))
    return found


def as_version_4(path: Path) -> None:
    """Put back every tag element and the indexes version 4 had, and its version number."""
    conn = apsw.Connection(str(path))
    with conn:
        for seq, packed in list(conn.execute("SELECT seq, raw_event FROM nostr_events")):
            raw = unpack(packed)  # version 4 kept the JSON as TEXT
            conn.execute("UPDATE nostr_events SET raw_event = ? WHERE seq = ?", (raw, seq))
            conn.execute("DELETE FROM event_tags WHERE event_seq = ?", (seq,))
            conn.executemany(
                "INSERT INTO event_tags (event_seq, position, name, value, extra)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (seq, position, tag[0], tag[1] if len(tag) > 1 else None,
                     dumps(tag[2:]) if len(tag) > 2 else None)
                    for position, tag in enumerate(loads(raw)["tags"])
                ],
            )
        conn.execute("CREATE INDEX record_sets_coordinate ON record_sets (coordinate_id)")
        conn.execute(
            "CREATE INDEX workout_records_author_start ON workout_records (pubkey, start)"
        )
        undo_row_counts(conn)
        conn.execute("PRAGMA user_version = 4")
    conn.close()


def test_a_version_4_store_migrates_and_answers_the_same(tmp_path: Path) -> None:
    events = generate_corpus(300, 3, seed=5)
    path = tmp_path / "powrd.db"
    with stored(path, events) as store:
        fresh = answers(store.reader(), events)
        fresh_tags = list(store.reader().execute("SELECT * FROM event_tags ORDER BY 1, 2"))
    as_version_4(path)
    old = apsw.Connection(str(path))
    assert answers(old, events) == fresh  # the old layout answered the same
    assert old.execute("SELECT count(*) FROM event_tags WHERE length(name) > 1").fetchone()[0] > 0
    old.close()

    with Store(path) as store:
        conn = store.reader()
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert answers(conn, events) == fresh
        assert list(conn.execute("SELECT * FROM event_tags ORDER BY 1, 2")) == fresh_tags
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_schema")}
        assert not indexes & {"record_sets_coordinate", "workout_records_author_start"}
    assert any(len(found) for found in fresh[1:])  # the filters did match something

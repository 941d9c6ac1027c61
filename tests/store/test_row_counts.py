"""The counts the store keeps by triggers (migration 7) agree with counting by scanning."""

from __future__ import annotations

from pathlib import Path

import apsw

from powrd.library.reindex import reindex
from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import queries
from powrd.store.deletion import expire
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.corpus import generate_corpus
from tests.support.events import keys_for, make_event
from tests.support.old_stores import undo_row_counts
from tests.support.scanned_counts import scanned_counts

NOW = 1_800_000_000


def ingest(pipeline: Pipeline, events: list[str]) -> None:
    pipeline.submit_blocking("test", [(loads(e), len(e.encode())) for e in events])


def test_counts_follow_ingest_expiry_and_reindex(tmp_path: Path) -> None:
    keys = keys_for("row-counts", 0)
    expiring = [
        make_event(keys, 1301, tags=[["d", f"run-{n}"], ["title", "Run"],
                                     ["expiration", str(NOW + 10)]], created_at=NOW - n)
        for n in range(5)
    ]
    with Store(tmp_path / "powrd.db") as store:
        pipeline = Pipeline(store, Policy(max_event_bytes=131072, max_future_seconds=900),
                            clock=lambda: NOW)
        ingest(pipeline, generate_corpus(400, 3, seed=61) + expiring)
        conn = store.reader()
        before = queries.counts(conn)
        assert before == scanned_counts(conn)
        assert before["by_kind"]["1301"] > 5 and before["records"] > 5

        assert store.writer.call(lambda w: expire(w, NOW + 10)) == 5
        after = queries.counts(conn)
        assert after == scanned_counts(conn)
        assert after["events"] == before["events"] - 5
        assert after["records"] == before["records"] - 5

        store.writer.call(lambda w: w.execute("DELETE FROM workout_records"))  # as if unread
        assert queries.counts(conn)["records"] == 0
        store.writer.call(reindex)
        assert queries.counts(conn) == scanned_counts(conn) == after


def test_a_version_6_store_is_counted_once_by_the_migration(tmp_path: Path) -> None:
    path = tmp_path / "powrd.db"
    with Store(path) as store:
        pipeline = Pipeline(store, Policy(max_event_bytes=131072, max_future_seconds=900),
                            clock=lambda: NOW)
        ingest(pipeline, generate_corpus(300, 3, seed=62))
        expected = scanned_counts(store.reader())
    conn = apsw.Connection(str(path))
    with conn:
        undo_row_counts(conn)
        conn.execute("PRAGMA user_version = 6")
    conn.close()
    with Store(path) as store:
        assert queries.counts(store.reader()) == expected

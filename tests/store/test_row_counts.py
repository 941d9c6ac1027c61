"""The counts status reports are kept by triggers: equal to a scan after every change."""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest

from powrd.library.reindex import reindex
from powrd.protocol.event import dumps, loads
from powrd.protocol.validate import Policy
from powrd.store import fetchqueue, ingest, outbox, queries, row_counts
from powrd.store.schema import LATEST_VERSION
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.corpus import generate_corpus
from tests.support.events import (
    KIND_EXERCISE,
    coordinate,
    keys_for,
    make_deletion,
    make_event,
    make_template,
)
from tests.support.schema_versions import undo_kept_counts

NOW = 1_800_000_000
SEED = 61


def submit(pipeline: Pipeline, events: list[str]) -> None:
    pipeline.submit_blocking("test", [(loads(e), len(e.encode())) for e in events])


def assert_kept(store: Store) -> dict[str, object]:
    """The kept counts equal the tables' own; returns them."""
    kept = queries.counts(store.reader())
    assert kept == row_counts.scan(store.reader())
    return kept


def tampered(event: str) -> str:
    obj = loads(event)
    obj["id"] = obj["id"][:-4] + "beef"  # an id no stored event has, and a wrong one
    return dumps(obj)


def test_kept_counts_follow_every_kind_of_change(tmp_path: Path) -> None:
    corpus = generate_corpus(400, 3, seed=SEED)
    keys = keys_for(SEED, 0)
    with Store(tmp_path / "powrd.db") as store:
        pipeline = Pipeline(store, Policy(), rejected_log_max=3, clock=lambda: NOW)
        # Newer halves first: older versions then arrive already superseded.
        submit(pipeline, corpus[200:])
        submit(pipeline, corpus[:200])
        first = assert_kept(store)
        assert first["events"] == 400 and sum(first["by_kind"].values()) < 400

        # A deletion of one id and of every version of one address.
        mine = [loads(e) for e in corpus if loads(e)["pubkey"] == keys.public_key().to_hex()]
        record = next(e for e in mine if e["kind"] == 1301)
        exercise = next(e for e in mine if e["kind"] == KIND_EXERCISE)
        d_tag = next(t[1] for t in exercise["tags"] if t[0] == "d")
        submit(pipeline, [make_deletion(keys, e_ids=[record["id"]],
                                        coords=[coordinate(KIND_EXERCISE, keys, d_tag)],
                                        created_at=NOW - 10)])
        assert assert_kept(store)["events"] < first["events"]

        # Expiry removes an event.
        submit(pipeline, [make_event(keys, 1301, "", [["d", "soon"], ["title", "x"],
                                                       ["expiration", str(NOW + 100)]],
                                     created_at=NOW - 9)])
        before_expiry = assert_kept(store)["events"]
        assert store.writer.call(lambda conn: ingest.expire(conn, NOW + 200)) == 1
        assert assert_kept(store)["events"] == before_expiry - 1

        # A template missing an exercise: incomplete, queued, then not found and retried.
        missing = coordinate(KIND_EXERCISE, keys, "nowhere")
        submit(pipeline, [make_template(keys, "needs-more", [[missing, ""]], created_at=NOW - 8)])
        queued = assert_kept(store)
        assert queued["incomplete_templates"] >= 1 and queued["fetch_pending"] >= 1
        store.writer.call(lambda conn: fetchqueue.mark_in_flight(conn, [missing], NOW))
        store.writer.call(
            lambda conn: fetchqueue.settle(conn, missing, fetchqueue.NOT_FOUND, NOW + 60, "gone")
        )
        assert assert_kept(store)["fetch_pending"] == queued["fetch_pending"] - 1
        store.writer.call(lambda conn: fetchqueue.retry_not_found(conn, NOW))
        assert assert_kept(store)["fetch_pending"] == queued["fetch_pending"]

        # The outbox: pending until every delivery is final.
        relay = "ws://127.0.0.1:1"
        store.writer.call(lambda conn: outbox.enqueue(conn, record["id"], [relay], NOW))
        assert assert_kept(store)["outbox_pending"] == 1
        store.writer.call(
            lambda conn: outbox.record(conn, record["id"], relay, outbox.ACCEPTED, NOW)
        )
        assert assert_kept(store)["outbox_pending"] == 0

        # The rejected log is bounded: old rows go, and so do their counts.
        submit(pipeline, [tampered(e) for e in corpus[:5]])
        assert assert_kept(store)["rejected"] == 3

        # A write that fails inside a batch takes its counts back with it.
        def fails(conn: apsw.Connection) -> None:
            conn.execute("DELETE FROM nostr_events WHERE seq = (SELECT max(seq) FROM nostr_events)")
            raise RuntimeError("changed my mind")

        unchanged = assert_kept(store)
        with pytest.raises(RuntimeError):
            store.writer.call(fails)
        assert assert_kept(store) == unchanged

        store.writer.call(reindex)
        assert assert_kept(store) == unchanged


def test_reindex_repairs_counts_that_went_wrong(tmp_path: Path) -> None:
    with Store(tmp_path / "powrd.db") as store:
        submit(Pipeline(store, Policy(), clock=lambda: NOW), generate_corpus(100, 2, seed=SEED))
        right = assert_kept(store)

        def spoil(conn: apsw.Connection) -> None:
            conn.execute("UPDATE row_counts SET rows = rows + 7")
            conn.execute("UPDATE current_kind_counts SET events = 0")

        store.writer.call(spoil)
        assert queries.counts(store.reader()) != right
        store.writer.call(reindex)
        assert assert_kept(store) == right


def test_a_version_5_store_is_counted_when_it_migrates(tmp_path: Path) -> None:
    path = tmp_path / "powrd.db"
    # A store filled, then taken back to version 5: no triggers, no kept counts.
    corpus = generate_corpus(150, 2, seed=SEED)
    with Store(path) as store:
        submit(Pipeline(store, Policy(), clock=lambda: NOW), corpus)
        expected = row_counts.scan(store.reader())
        store.writer.call(undo_kept_counts)
    with Store(path) as store:
        reader = store.reader()
        assert reader.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        assert queries.counts(reader) == expected
        assert expected["events"] == 150

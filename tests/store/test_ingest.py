"""Storage semantics through the real pipeline and a real SQLite file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from powrd.protocol import reasons
from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import ingest, queries
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.events import (
    coordinate,
    keys_for,
    make_deletion,
    make_event,
    make_exercise,
    make_record,
    make_template,
    pubkey_of,
)

NOW = 1_800_000_000
ALICE = keys_for("ingest", 0)
BOB = keys_for("ingest", 1)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "powrd.db") as s:
        yield s


@pytest.fixture
def pipeline(store: Store) -> Pipeline:
    return Pipeline(store, Policy(max_event_bytes=131072, max_future_seconds=900), clock=lambda: NOW)


def submit(pipeline: Pipeline, *events: str):
    return pipeline.submit_blocking("test", [(loads(e), len(e.encode())) for e in events])


def current_ids(store: Store) -> set[str]:
    return {loads(raw)["id"] for raw in queries.iter_raw_events(store.reader())}


def all_ids(store: Store) -> set[str]:
    return {loads(raw)["id"] for raw in queries.iter_raw_events(store.reader(), include_superseded=True)}


def one(store: Store, sql: str, *args: object):
    return store.reader().execute(sql, args).fetchall()


def test_stores_event_and_indexes_its_single_letter_tags(store: Store, pipeline: Pipeline) -> None:
    template = make_template(
        ALICE, "legs", [(coordinate(33401, ALICE, "squat"), "wss://hint.example", "100", "5", "", "normal", "1")]
    )
    result = submit(pipeline, template)
    assert len(result.stored) == 1
    event_id = loads(template)["id"]
    tags = loads(template)["tags"]
    assert queries.indexed_tags(store.reader(), event_id) == [
        tag[:2] for tag in tags if len(tag[0]) == 1
    ]
    assert any(len(tag[0]) > 1 for tag in tags)  # those are kept in the raw event only
    stored = queries.event_by_id(store.reader(), event_id)
    assert stored is not None and loads(stored)["tags"] == tags


def test_duplicates_are_ignored(store: Store, pipeline: Pipeline) -> None:
    event = make_exercise(ALICE, "squat")
    assert len(submit(pipeline, event).stored) == 1
    again = submit(pipeline, event, event)
    assert again.stored == [] and again.duplicates == 2
    fresh = Pipeline(store, pipeline.policy, clock=lambda: NOW)  # empty seen-set: store lookup
    assert submit(fresh, event).duplicates == 1
    assert one(store, "SELECT count(*) FROM nostr_events") == [(1,)]


@pytest.mark.parametrize("order", ["old-first", "new-first"])
def test_addressable_newest_wins_in_either_order(store: Store, pipeline: Pipeline, order: str) -> None:
    old = make_exercise(ALICE, "squat", title="Old", created_at=NOW - 100)
    new = make_exercise(ALICE, "squat", title="New", created_at=NOW - 50)
    for event in ([old, new] if order == "old-first" else [new, old]):
        submit(pipeline, event)
    assert current_ids(store) == {loads(new)["id"]}
    assert all_ids(store) == {loads(old)["id"], loads(new)["id"]}
    assert one(store, "SELECT title FROM exercise_definitions") == [("New",)]


def test_addressable_tie_lowest_id_wins(store: Store, pipeline: Pipeline) -> None:
    a = make_exercise(ALICE, "squat", title="A", created_at=NOW - 10)
    b = make_exercise(ALICE, "squat", title="B", created_at=NOW - 10)
    winner = min((a, b), key=lambda e: loads(e)["id"])
    loser = a if winner is b else b
    submit(pipeline, loser)
    submit(pipeline, winner)
    assert current_ids(store) == {loads(winner)["id"]}
    submit(pipeline, loser)  # arriving again changes nothing
    assert current_ids(store) == {loads(winner)["id"]}


def test_records_are_regular_events_and_legacy_kind_is_a_record(store: Store, pipeline: Pipeline) -> None:
    sq = coordinate(33401, ALICE, "squat")
    r1 = make_record(ALICE, "r", [(sq, "", "100", "5", "8", "normal")], created_at=NOW - 20)
    r2 = make_record(ALICE, "r", [(sq, "", "110", "5", "8", "normal")], created_at=NOW - 10)
    legacy = make_record(ALICE, "old", [(sq, "", "90", "5", "7", "normal")], kind=33403)
    submit(pipeline, r1, r2, legacy)
    assert one(store, "SELECT count(*) FROM workout_records") == [(3,)]
    assert one(store, "SELECT count(*) FROM record_sets") == [(3,)]


def test_deletion_by_e_tag_from_author(store: Store, pipeline: Pipeline) -> None:
    record = make_record(ALICE, "r", [(coordinate(33401, ALICE, "x"), "", "1")])
    submit(pipeline, record)
    rid = loads(record)["id"]
    submit(pipeline, make_deletion(ALICE, e_ids=[rid], created_at=NOW - 5))
    assert rid not in all_ids(store)
    assert one(store, "SELECT count(*) FROM workout_records") == [(0,)]
    again = submit(pipeline, record)  # a relay serving it again
    assert again.stored == [] and again.rejected == [(rid, reasons.DELETED)]


def test_deletion_before_the_event_still_blocks_it(store: Store, pipeline: Pipeline) -> None:
    record = make_record(ALICE, "r", [(coordinate(33401, ALICE, "x"), "", "1")])
    submit(pipeline, make_deletion(ALICE, e_ids=[loads(record)["id"]]))
    assert submit(pipeline, record).stored == []


def test_deletion_by_someone_else_changes_nothing(store: Store, pipeline: Pipeline) -> None:
    exercise = make_exercise(ALICE, "squat")
    submit(pipeline, exercise)
    submit(pipeline, make_deletion(BOB, e_ids=[loads(exercise)["id"]], coords=[coordinate(33401, ALICE, "squat")]))
    assert loads(exercise)["id"] in current_ids(store)
    assert one(store, "SELECT count(*) FROM exercise_definitions") == [(1,)]


def test_deletion_by_a_tag_removes_versions_up_to_its_time(store: Store, pipeline: Pipeline) -> None:
    v1 = make_exercise(ALICE, "squat", title="v1", created_at=NOW - 300)
    v2 = make_exercise(ALICE, "squat", title="v2", created_at=NOW - 200)
    v3 = make_exercise(ALICE, "squat", title="v3", created_at=NOW - 100)
    submit(pipeline, v1, v2)
    submit(pipeline, make_deletion(ALICE, coords=[coordinate(33401, ALICE, "squat")], created_at=NOW - 150))
    assert all_ids(store).isdisjoint({loads(v1)["id"], loads(v2)["id"]})
    assert submit(pipeline, v1).stored == []  # re-served old version stays deleted
    submit(pipeline, v3)  # a newer version than the deletion is allowed
    assert loads(v3)["id"] in current_ids(store)
    assert one(store, "SELECT title FROM exercise_definitions") == [("v3",)]


def test_deleting_an_exercise_makes_its_template_incomplete_again(store: Store, pipeline: Pipeline) -> None:
    sq = coordinate(33401, ALICE, "squat")
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(sq, "")]))
    assert one(store, "SELECT count(*) FROM incomplete_templates") == [(0,)]
    submit(pipeline, make_deletion(ALICE, coords=[sq], created_at=NOW - 1))
    rows = one(store, "SELECT missing_exercises FROM incomplete_templates")
    assert [json.loads(r[0]) for r in rows] == [[sq]]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: {**e, "sig": "0" * 128}, reasons.BAD_SIGNATURE),
        (lambda e: {**e, "content": e["content"] + "!"}, reasons.BAD_ID),
        (lambda e: {**e, "id": "f" * 64}, reasons.BAD_ID),
        (lambda e: {**e, "kind": "1"}, "invalid: malformed event: kind is not an integer from 0 to 65535"),
        (lambda e: {k: v for k, v in e.items() if k != "sig"}, "invalid: malformed event: missing field sig"),
        (lambda e: {**e, "tags": [["t", 1]]}, "invalid: malformed event: a tag element is not a string"),
    ],
)
def test_rejections_have_reasons(store: Store, pipeline: Pipeline, mutate, reason: str) -> None:
    bad = mutate(loads(make_exercise(ALICE, "squat")))
    result = pipeline.submit_blocking("test", [(bad, 500)])
    assert [r for _, r in result.rejected] == [reason]
    assert one(store, "SELECT reason FROM rejected_events") == [(reason,)]


def test_policy_rejections(store: Store, pipeline: Pipeline) -> None:
    future = make_exercise(ALICE, "a", created_at=NOW + 901)
    near_future = make_exercise(ALICE, "b", created_at=NOW + 899)
    expired = make_exercise(ALICE, "c", extra_tags=[["expiration", str(NOW - 1)]])
    big = make_exercise(ALICE, "d", content="x" * 140_000)
    result = submit(pipeline, future, near_future, expired, big)
    assert sorted(r for _, r in result.rejected) == sorted(
        [reasons.TOO_FAR_IN_FUTURE, reasons.EXPIRED, reasons.TOO_LARGE]
    )
    assert [e.id for e in result.stored] == [loads(near_future)["id"]]


def test_stored_events_are_dropped_when_they_expire(store: Store, pipeline: Pipeline) -> None:
    soon = make_exercise(ALICE, "a", extra_tags=[["expiration", str(NOW + 60)]])
    submit(pipeline, soon)
    assert store.writer.call(lambda c: ingest.expire(c, NOW)) == 0
    assert store.writer.call(lambda c: ingest.expire(c, NOW + 60)) == 1
    assert current_ids(store) == set()


def test_incomplete_template_resolved_when_exercise_arrives(store: Store, pipeline: Pipeline) -> None:
    sq, dl = coordinate(33401, ALICE, "squat"), coordinate(33401, ALICE, "deadlift")
    template = make_template(ALICE, "legs", [(sq, "wss://a.example", "100"), (dl, "", "140")])
    submit(pipeline, make_exercise(ALICE, "squat"), template)
    rows = one(store, "SELECT missing_exercise_count, missing_exercises FROM incomplete_templates")
    assert rows == [(1, json.dumps([dl], separators=(",", ":")))]
    assert [(r[0], r[1]) for r in one(store, "SELECT coordinate, state FROM fetch_queue")] == [(dl, "pending")]
    result = submit(pipeline, make_exercise(ALICE, "deadlift", title="Deadlift"))
    assert dl in result.batch.arrived
    assert one(store, "SELECT count(*) FROM incomplete_templates") == [(0,)]
    assert one(store, "SELECT count(*) FROM fetch_queue") == [(0,)]


def test_record_depends_on_template_and_exercises(store: Store, pipeline: Pipeline) -> None:
    sq, tpl = coordinate(33401, ALICE, "squat"), coordinate(33402, ALICE, "legs")
    record = make_record(ALICE, "r1", [(sq, "", "100", "5", "8", "normal")], template=(tpl, ""))
    submit(pipeline, record)
    (missing,) = one(store, "SELECT missing_exercises FROM incomplete_templates")
    assert sorted(json.loads(missing[0])) == sorted([sq, tpl])
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(sq, "")]))
    assert one(store, "SELECT count(*) FROM incomplete_templates") == [(0,)]


def test_pubkeyless_reference_assumes_the_author(store: Store, pipeline: Pipeline) -> None:
    template = make_template(ALICE, "legs", [("33401:squat", "")])
    submit(pipeline, template)
    (row,) = one(store, "SELECT coordinate FROM fetch_queue")
    assert row[0] == f"33401:{pubkey_of(ALICE)}:squat"
    warnings = queries.processing_warnings(store.reader(), loads(template)["id"])
    assert any("pubkey" in w for w in warnings)


def test_messy_event_is_stored_with_warnings(store: Store, pipeline: Pipeline) -> None:
    messy = make_exercise(ALICE, "x", format_units=["kg", "count"], extra_tags=[["category", "legs"]])
    result = submit(pipeline, messy)
    assert len(result.stored) == 1
    assert queries.processing_warnings(store.reader(), loads(messy)["id"])


def test_rejected_log_is_bounded(tmp_path: Path) -> None:
    with Store(tmp_path / "db") as store:
        pipeline = Pipeline(store, Policy(), rejected_log_max=5, clock=lambda: NOW)
        for i in range(4):
            bad = loads(make_event(ALICE, 1, str(i)))
            bad["sig"] = "0" * 128
            pipeline.submit_blocking("t", [(bad, 300), (dict(bad, content="y"), 300)])
        assert one(store, "SELECT count(*) FROM rejected_events") == [(5,)]

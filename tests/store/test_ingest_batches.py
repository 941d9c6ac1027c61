"""A batch leaves the store and the result that its events stored one at a time leave.

Ingest plans a batch as runs stored a table at a time (order-dependent events are runs
of one). The oracle is the same ingest given one event per call, in one transaction:
every run is then a run of one, so nothing depends on how a batch was split.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import apsw
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powrd.library.process import process
from powrd.protocol import reasons
from powrd.protocol.event import loads, parse_event
from powrd.store import ingest, queries
from powrd.store.database import migrate
from powrd.store.ingest import DUPLICATE, REJECTED, STORED, SUPERSEDED, BatchResult, IngestItem
from powrd.store.rebuild import snapshot
from powrd.store.rows import Processed, Reference
from tests.support.events import (
    coordinate,
    keys_for,
    make_deletion,
    make_event,
    make_exercise,
    make_record,
    make_template,
)
from tests.support.scanned_counts import scanned_counts

NOW = 1_800_000_000
T0 = 1_700_000_000
AUTHORS = [keys_for("bulk-ingest", i) for i in range(2)]
ALICE, BOB = AUTHORS
SQUAT = coordinate(33401, ALICE, "squat")
DEADLIFT = coordinate(33401, ALICE, "deadlift")
LEGS = coordinate(33402, ALICE, "legs")

# Every table ingest writes, every column but the wall-clock time a fetch was queued.
DUMPS = {
    "nostr_events": "SELECT * FROM nostr_events",
    "event_tags": "SELECT * FROM event_tags",
    "processing_warnings": "SELECT * FROM processing_warnings",
    "exercise_definitions": "SELECT * FROM exercise_definitions",
    "exercise_media": "SELECT * FROM exercise_media",
    "templates": "SELECT * FROM templates",
    "coordinates": "SELECT * FROM coordinates",
    "template_exercises": "SELECT * FROM template_exercises",
    "workout_records": "SELECT * FROM workout_records",
    "record_sets": "SELECT * FROM record_sets",
    "dependency_refs": "SELECT * FROM dependency_refs",
    "incomplete_templates": "SELECT * FROM incomplete_templates",
    "tombstones": "SELECT * FROM tombstones",
    "fetch_queue": "SELECT coordinate, kind, pubkey, d_tag, relay_hints, state, attempts"
    " FROM fetch_queue",
}


def new_store() -> apsw.Connection:
    conn = apsw.Connection(":memory:")
    conn.execute("PRAGMA foreign_keys = ON")
    migrate(conn)
    return conn


def item(raw: str) -> IngestItem:
    event = parse_event(loads(raw))
    return IngestItem(event, "test", process(event))


def one_at_a_time(conn: apsw.Connection, items: Sequence[IngestItem], now: int) -> BatchResult:
    """The oracle: ingest of one item after the other, their results merged as one batch's."""
    result = BatchResult()
    for entry in items:
        single = ingest.ingest(conn, [entry], now)
        result.outcomes += single.outcomes
        result.arrived |= single.arrived
        result.missing |= single.missing
        result.changed |= single.changed
        result.deleted |= single.deleted
    result.missing -= result.arrived
    return result


def ingest_batches(conn: apsw.Connection, batches: Sequence[Sequence[str]], *, oracle: bool = False):
    results = []
    for batch in batches:
        with conn:
            items = [item(raw) for raw in batch]
            results.append(one_at_a_time(conn, items, NOW) if oracle else ingest.ingest(conn, items, NOW))
            # A fetch that failed must stay failed unless the rules re-queue it afresh.
            conn.execute("UPDATE fetch_queue SET state = 'not_found', attempts = attempts + 1")
    return results


def dump(conn: apsw.Connection, *, queue_state: bool = True) -> dict[str, list[tuple[Any, ...]]]:
    tables = {table: sorted(conn.execute(sql).fetchall(), key=repr) for table, sql in DUMPS.items()}
    if not queue_state:  # ingest_batches counts failures per batch, so batching shows there
        tables["fetch_queue"] = [row[:5] for row in tables["fetch_queue"]]
    return tables


def current_ids(conn: apsw.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT id FROM nostr_events WHERE current = 1")}


def summary(result: BatchResult) -> tuple[Any, ...]:
    return (result.outcomes, result.arrived, result.missing, result.changed, result.deleted)


def assert_same_as_one_at_a_time(batches: Sequence[Sequence[str]]) -> tuple[apsw.Connection, list[BatchResult]]:
    batched, oracle = new_store(), new_store()
    got = ingest_batches(batched, batches)
    expected = ingest_batches(oracle, batches, oracle=True)
    assert [summary(r) for r in got] == [summary(r) for r in expected]
    assert dump(batched) == dump(oracle)
    # The counts the store keeps by triggers agree with counting by scanning.
    assert queries.counts(batched) == scanned_counts(batched)
    assert queries.counts(oracle) == scanned_counts(oracle)
    return batched, got


def statuses(result: BatchResult) -> list[str]:
    return [outcome.status for outcome in result.outcomes]


def one(conn: apsw.Connection, sql: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql).fetchall()


def ids(*events: str) -> set[str]:
    return {loads(e)["id"] for e in events}


def test_same_address_twice_in_one_batch_newest_wins_in_either_order() -> None:
    old = make_exercise(ALICE, "squat", title="Old", created_at=T0)
    new = make_exercise(ALICE, "squat", title="New", created_at=T0 + 10)
    note = make_event(BOB, 1, "between", created_at=T0)
    for batch, expected in (([old, note, new], [STORED] * 3), ([new, note, old], [STORED, STORED, SUPERSEDED])):
        conn, (result,) = assert_same_as_one_at_a_time([batch])
        assert statuses(result) == expected
        assert current_ids(conn) == ids(new, note)
        assert one(conn, "SELECT title FROM exercise_definitions") == [("New",)]


def test_same_address_twice_in_one_batch_tie_goes_to_the_lowest_id() -> None:
    a = make_exercise(ALICE, "squat", title="A", created_at=T0)
    b = make_exercise(ALICE, "squat", title="B", created_at=T0)
    winner = min((a, b), key=lambda e: loads(e)["id"])
    for batch in ([a, b], [b, a]):
        conn, _ = assert_same_as_one_at_a_time([batch])
        assert current_ids(conn) == ids(winner)
        assert one(conn, "SELECT title FROM exercise_definitions") == [("A" if winner is a else "B",)]


def test_deletion_in_the_middle_of_a_batch_then_its_targets() -> None:
    before = make_record(ALICE, "r0", [(SQUAT, "", "100", "5", "8", "normal")], created_at=T0)
    target = make_record(ALICE, "r1", [(SQUAT, "", "100", "5", "8", "normal")], created_at=T0)
    deletion = make_deletion(ALICE, e_ids=[loads(target)["id"]], coords=[SQUAT], created_at=T0 + 50)
    older_squat = make_exercise(ALICE, "squat", created_at=T0 + 40)
    bob_squat = make_exercise(BOB, "squat", created_at=T0)  # another author's address
    after = make_record(ALICE, "r2", [(SQUAT, "", "90", "5", "8", "normal")], created_at=T0 + 60)
    conn, (result,) = assert_same_as_one_at_a_time([[before, deletion, target, older_squat, bob_squat, after]])
    assert statuses(result) == [STORED, STORED, REJECTED, REJECTED, STORED, STORED]
    assert [o.reason for o in result.outcomes if o.status == REJECTED] == [reasons.DELETED] * 2
    assert current_ids(conn) == ids(before, deletion, bob_squat, after)
    assert one(conn, "SELECT count(*) FROM workout_records") == [(2,)]


def test_repeated_event_in_one_batch_is_a_duplicate() -> None:
    exercise = make_exercise(ALICE, "squat")
    _, (result,) = assert_same_as_one_at_a_time([[exercise, make_event(BOB, 1, "x"), exercise]])
    assert statuses(result) == [STORED, STORED, DUPLICATE]


def test_template_and_its_exercise_in_one_batch_is_complete() -> None:
    template = make_template(ALICE, "legs", [(SQUAT, "wss://hint.example", "5")])
    exercise = make_exercise(ALICE, "squat")
    for batch in ([template, exercise], [exercise, template]):
        conn, (result,) = assert_same_as_one_at_a_time([batch])
        assert statuses(result) == [STORED, STORED]
        assert one(conn, "SELECT count(*) FROM incomplete_templates") == [(0,)]
        assert one(conn, "SELECT count(*) FROM fetch_queue") == [(0,)]
        assert result.missing == set()
        assert {SQUAT, LEGS} <= result.arrived and {SQUAT, LEGS} <= result.changed


def test_exercise_in_a_later_batch_resolves_an_older_template() -> None:
    template = make_template(ALICE, "legs", [(SQUAT, "wss://a.example", "5"), (DEADLIFT, "", "3")])
    first = [template]
    second = [make_event(BOB, 1, "unrelated"), make_exercise(ALICE, "squat")]
    third = [make_exercise(ALICE, "deadlift", title="Deadlift")]
    conn, results = assert_same_as_one_at_a_time([first, second, third])
    assert results[0].missing == {SQUAT, DEADLIFT}
    assert LEGS in results[1].changed and SQUAT in results[1].arrived
    assert LEGS in results[2].changed and DEADLIFT in results[2].arrived
    assert one(conn, "SELECT count(*) FROM incomplete_templates") == [(0,)]
    assert one(conn, "SELECT count(*) FROM fetch_queue") == [(0,)]


def test_partial_resolution_keeps_the_rest_missing() -> None:
    template = make_template(ALICE, "legs", [(SQUAT, "", "5"), (DEADLIFT, "wss://d.example", "3")])
    conn, _ = assert_same_as_one_at_a_time([[template], [make_exercise(ALICE, "squat")]])
    (row,) = one(conn, "SELECT missing_exercise_count, missing_exercises FROM incomplete_templates")
    assert row == (1, json.dumps([DEADLIFT], separators=(",", ":")))
    assert one(conn, "SELECT coordinate, relay_hints FROM fetch_queue") == [(DEADLIFT, '["wss://d.example"]')]


def test_new_version_of_a_stored_exercise_in_a_later_batch() -> None:
    v1 = make_exercise(ALICE, "squat", title="v1", created_at=T0)
    template = make_template(ALICE, "legs", [(SQUAT, "", "5")], created_at=T0)
    v2 = make_exercise(ALICE, "squat", title="v2", created_at=T0 + 10)
    v0 = make_exercise(ALICE, "squat", title="v0", created_at=T0 - 10)
    record = make_record(ALICE, "r", [(SQUAT, "", "100", "5", "8", "normal")], created_at=T0 + 20)
    conn, results = assert_same_as_one_at_a_time([[v1, template], [record, v2], [v0]])
    assert statuses(results[1]) == [STORED, STORED] and statuses(results[2]) == [SUPERSEDED]
    assert LEGS in results[1].changed  # its exercise changed
    assert current_ids(conn) == ids(template, v2, record)
    assert one(conn, "SELECT title FROM exercise_definitions") == [("v2",)]


def test_fetch_queue_entry_of_a_replaced_template_follows_the_batch_order() -> None:
    """The old version's missing exercise is dropped from the queue only if nothing that
    came before the new version in the batch needs it; after it, it is queued afresh."""
    v1 = make_template(ALICE, "legs", [(DEADLIFT, "wss://a.example", "3")], created_at=T0)
    v2 = make_template(ALICE, "legs", [(SQUAT, "", "5")], created_at=T0 + 10)
    needs = make_record(ALICE, "r", [(DEADLIFT, "wss://b.example", "100", "5", "8", "normal")], created_at=T0)
    squat = make_exercise(ALICE, "squat")
    cases = {
        "alone": ([v2, squat], []),
        "needed before": ([needs, v2, squat], [(DEADLIFT, "not_found", 1)]),
        "needed after": ([v2, needs, squat], [(DEADLIFT, "not_found", 0)]),
    }
    for second, expected in cases.values():
        conn, _ = assert_same_as_one_at_a_time([[v1], second])
        # Every batch ends by marking the queue not_found: attempts tell a kept entry
        # (two batches) from one queued afresh in the second batch.
        assert one(conn, "SELECT coordinate, state, attempts - 1 FROM fetch_queue") == expected


def test_fetch_queue_entry_needed_by_two_replaced_templates() -> None:
    """Replacing the first still leaves the second needing it; replacing both drops it."""
    legs = make_template(ALICE, "legs", [(DEADLIFT, "", "3")], created_at=T0)
    arms = make_template(ALICE, "arms", [(DEADLIFT, "", "3")], created_at=T0)
    new_legs = make_template(ALICE, "legs", [], created_at=T0 + 10)
    new_arms = make_template(ALICE, "arms", [], created_at=T0 + 10)
    needs = make_record(ALICE, "r", [(DEADLIFT, "", "100", "5", "8", "normal")], created_at=T0)
    cases = {
        "both replaced": ([new_legs, new_arms], []),
        "one replaced": ([new_legs], [(DEADLIFT, "not_found", 1)]),
        "needed in between": ([new_legs, needs, new_arms], [(DEADLIFT, "not_found", 1)]),
        "needed after both": ([new_legs, new_arms, needs], [(DEADLIFT, "not_found", 0)]),
    }
    for second, expected in cases.values():
        conn, _ = assert_same_as_one_at_a_time([[legs, arms], second])
        assert one(conn, "SELECT coordinate, state, attempts - 1 FROM fetch_queue") == expected


def test_dependent_without_a_row_is_marked_changed_when_its_coordinate_arrives_later() -> None:
    """The store does not assume that only rows have dependencies."""
    note = item(make_event(BOB, 1, "needs a squat"))
    note = IngestItem(note.event, "test", Processed(dependencies=(Reference(SQUAT),)))
    exercise = item(make_exercise(ALICE, "squat"))
    batched, oracle = new_store(), new_store()
    with batched:
        got = ingest.ingest(batched, [note, exercise], NOW)
    with oracle:
        expected = one_at_a_time(oracle, [note, exercise], NOW)
    assert summary(got) == summary(expected)
    assert note.event.id in got.changed
    assert dump(batched) == dump(oracle)


# Random mixes: few authors, addresses and timestamps, so versions collide and tie.
D_TAGS = ("a", "b", "c")
HINTS = ("", "wss://one.example", "wss://two.example")
ref_strategy = st.tuples(st.integers(0, 1), st.sampled_from(D_TAGS), st.sampled_from(HINTS), st.booleans())


def reference(kind: int, ref: tuple[int, str, str, bool]) -> tuple[str, str]:
    author, d, hint, pubkeyless = ref
    return (f"{kind}:{d}" if pubkeyless else coordinate(kind, AUTHORS[author], d), hint)


@st.composite
def event_mixes(draw: st.DrawFn) -> list[str]:
    events: list[str] = []
    for _ in range(draw(st.integers(1, 16))):
        author = AUTHORS[draw(st.integers(0, 1))]
        created_at = T0 + draw(st.integers(0, 3))
        d = draw(st.sampled_from(D_TAGS))
        shape = draw(st.sampled_from(["exercise", "template", "record", "legacy", "profile", "note"]))
        if shape == "exercise":
            media = [["imeta", f"url https://m.example/{d}.mp4", "m video/mp4"]] if draw(st.booleans()) else []
            events.append(make_exercise(author, d, title=draw(st.sampled_from("XYZ")), created_at=created_at, extra_tags=media))
        elif shape == "template":
            refs = draw(st.lists(ref_strategy, max_size=3))
            events.append(make_template(author, d, [(*reference(33401, r), "5") for r in refs], created_at=created_at))
        elif shape in ("record", "legacy"):
            sets = draw(st.lists(ref_strategy, max_size=3))
            template = draw(st.none() | ref_strategy)
            events.append(
                make_record(
                    author, d, [(*reference(33401, r), "100", "5", "8", "normal") for r in sets],
                    template=None if template is None else reference(33402, template),
                    created_at=created_at, kind=33403 if shape == "legacy" else 1301,
                )
            )
        elif shape == "profile":  # replaceable: one current version per author
            events.append(make_event(author, 0, draw(st.sampled_from("pq")), created_at=created_at))
        else:
            events.append(make_event(author, 1, "note", created_at=created_at))
    for _ in range(draw(st.integers(0, 3))):
        targets = draw(st.lists(st.sampled_from(events), max_size=2))
        coords = draw(st.lists(st.tuples(st.sampled_from([33401, 33402, 33403]), ref_strategy), max_size=2))
        events.append(
            make_deletion(
                AUTHORS[draw(st.integers(0, 1))],
                e_ids=[loads(t)["id"] for t in targets],
                coords=[reference(kind, ref)[0] for kind, ref in coords],
                created_at=T0 + draw(st.integers(0, 3)),
            )
        )
    events += draw(st.lists(st.sampled_from(events), max_size=2))  # relays repeat themselves
    return draw(st.permutations(events))


def split(events: list[str], sizes: list[int]) -> list[list[str]]:
    batches, start = [], 0
    for size in sizes:
        if start < len(events):
            batches.append(events[start : start + size])
            start += size
    if start < len(events):
        batches.append(events[start:])
    return batches


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=event_mixes(), sizes=st.lists(st.integers(1, 8), max_size=8))
def test_random_batches_leave_the_same_store_as_one_event_per_batch(events: list[str], sizes: list[int]) -> None:
    batches = split(events, sizes)
    batched, _ = assert_same_as_one_at_a_time(batches)
    singles = new_store()
    ingest_batches(singles, [[raw] for raw in events])
    assert snapshot(batched) == snapshot(singles)
    assert current_ids(batched) == current_ids(singles)
    assert dump(batched, queue_state=False) == dump(singles, queue_state=False)

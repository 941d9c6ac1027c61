"""POWR lists in the store: versions replace each other, deletions remove them, members resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import lists
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.events import coordinate, keys_for, make_deletion, make_event, make_exercise

NOW = 1_800_000_000
ALICE = keys_for("lists", 0)
SQUAT = coordinate(33401, ALICE, "squat")
BENCH = coordinate(33401, ALICE, "bench")
LIST = coordinate(30003, ALICE, "powr-exercise-list")


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "powrd.db") as s:
        yield s


@pytest.fixture
def pipeline(store: Store) -> Pipeline:
    return Pipeline(store, Policy(max_event_bytes=131072, max_future_seconds=900), clock=lambda: NOW)


def submit(pipeline: Pipeline, *events: str) -> None:
    pipeline.submit_blocking("test", [(loads(e), len(e.encode())) for e in events])


def saved(members: list[str], created_at: int) -> str:
    return make_event(ALICE, 30003, "", [["d", "powr-exercise-list"], *(["a", m] for m in members)],
                      created_at=created_at)


def queued(store: Store) -> set[str]:
    return {row[0] for row in store.reader().execute("SELECT coordinate FROM fetch_queue")}


@pytest.mark.parametrize("together", [False, True], ids=["one by one", "one batch"])
def test_versions_members_and_deletion(store: Store, pipeline: Pipeline, together: bool) -> None:
    first, second = saved([SQUAT, BENCH], 1_700_000_000), saved([BENCH], 1_700_000_100)
    if together:
        submit(pipeline, first, second)
    else:
        submit(pipeline, first)
        assert queued(store) == {SQUAT, BENCH}
        submit(pipeline, second)
    (found,) = lists.collections(store.reader())
    assert found["coordinate"] == LIST
    assert found["title"] == "powr-exercise-list"  # no title tag: the d names it
    assert found["members"] == [{"coordinate": BENCH, "present": False}]
    assert queued(store) == {BENCH}  # the older version's member is no longer wanted

    submit(pipeline, make_exercise(ALICE, "bench"))
    (found,) = lists.collections(store.reader())
    assert (found["missing"], found["members"][0]["present"]) == ([], True)
    assert queued(store) == set()

    submit(pipeline, make_deletion(ALICE, coords=[LIST], created_at=1_700_000_200))
    assert lists.collections(store.reader()) == []
    assert store.reader().execute("SELECT count(*) FROM collection_members").fetchone() == (0,)


def test_other_lists_are_not_collections(store: Store, pipeline: Pipeline) -> None:
    submit(pipeline, make_event(ALICE, 30003, "", [["d", "bookmarks"], ["a", SQUAT]]))
    assert lists.collections(store.reader()) == []
    assert queued(store) == set()

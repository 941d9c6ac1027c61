"""The query cache: invalidation through the real pipeline, eviction order, access log."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from powrd.library.cache import (
    PRIORITY_NORMAL,
    PRIORITY_OWN,
    QueryCache,
    cached_exercise,
    cached_template,
    content_type_of,
    flush_accesses,
    priority_for,
    run_access_flusher,
)
from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import cache_meta
from powrd.store.cache_meta import Access
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.events import (
    coordinate,
    keys_for,
    make_deletion,
    make_exercise,
    make_template,
    pubkey_of,
)

NOW = 1_800_000_000
ALICE = keys_for("cache", 0)
BOB = keys_for("cache", 1)
OWN = frozenset({pubkey_of(ALICE)})
SQUAT = coordinate(33401, ALICE, "squat")
PRESS = coordinate(33401, ALICE, "press")
LEGS = coordinate(33402, ALICE, "legs")
SET = ("", "100", "5", "8", "normal")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "powrd.db") as opened:
        yield opened


@pytest.fixture
def cache() -> QueryCache:
    return QueryCache(100, 1 << 20, clock=lambda: NOW)


@pytest.fixture
def pipeline(store: Store, cache: QueryCache) -> Pipeline:
    return Pipeline(
        store, Policy(), clock=lambda: NOW, on_commit=lambda batch: cache.invalidate(batch.changed)
    )


def submit(pipeline: Pipeline, *events: str) -> None:
    result = pipeline.submit_blocking("test", [(loads(e), len(e)) for e in events])
    assert not result.rejected, result.rejected


def template(store: Store, cache: QueryCache, coord: str = LEGS) -> dict[str, Any] | None:
    return cached_template(cache, store.reader(), coord, OWN)


# --- invalidation through the real pipeline ------------------------------------------


def test_a_second_lookup_is_a_hit_with_the_same_answer(store: Store, cache: QueryCache,
                                                       pipeline: Pipeline) -> None:
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(SQUAT, *SET)]))
    first = template(store, cache)
    assert first is not None and first["complete"]
    assert template(store, cache) is first
    assert (cache.stats().hits, cache.stats().misses) == (1, 1)


def test_new_template_version_replaces_the_cached_answer(store: Store, cache: QueryCache,
                                                         pipeline: Pipeline) -> None:
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(SQUAT, *SET)]))
    assert template(store, cache)["title"] == "Leg Day"  # type: ignore[index]
    submit(pipeline, make_template(ALICE, "legs", [(SQUAT, *SET), (SQUAT, *SET)],
                                   title="Leg Day v2", created_at=NOW - 10))
    fresh = template(store, cache)
    assert fresh is not None
    assert fresh["title"] == "Leg Day v2"
    assert len(fresh["exercises"]) == 2


def test_new_exercise_version_shows_in_the_cached_template(store: Store, cache: QueryCache,
                                                           pipeline: Pipeline) -> None:
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(SQUAT, *SET)]))
    assert template(store, cache)["exercises"][0]["exercise"]["title"] == "Back Squat"  # type: ignore[index]
    submit(pipeline, make_exercise(ALICE, "squat", title="Front Squat", created_at=NOW - 5))
    assert template(store, cache)["exercises"][0]["exercise"]["title"] == "Front Squat"  # type: ignore[index]


def test_deleted_template_is_no_longer_served(store: Store, cache: QueryCache,
                                              pipeline: Pipeline) -> None:
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(SQUAT, *SET)]))
    assert template(store, cache) is not None
    submit(pipeline, make_deletion(ALICE, coords=[LEGS], created_at=NOW - 1))
    assert template(store, cache) is None


def test_deleted_exercise_makes_the_cached_template_incomplete(store: Store, cache: QueryCache,
                                                               pipeline: Pipeline) -> None:
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(SQUAT, *SET)]))
    assert template(store, cache)["complete"]  # type: ignore[index]
    submit(pipeline, make_deletion(ALICE, coords=[SQUAT], created_at=NOW - 1))
    fresh = template(store, cache)
    assert fresh is not None
    assert not fresh["complete"]
    assert fresh["missing"] == [SQUAT]
    assert fresh["exercises"][0]["exercise"] is None


def test_arrival_of_a_missing_exercise_completes_the_cached_template(
    store: Store, cache: QueryCache, pipeline: Pipeline
) -> None:
    submit(pipeline, make_exercise(ALICE, "squat"),
           make_template(ALICE, "legs", [(SQUAT, *SET), (PRESS, *SET)]))
    incomplete = template(store, cache)
    assert incomplete is not None and incomplete["missing"] == [PRESS]
    submit(pipeline, make_exercise(ALICE, "press", title="Overhead Press"))
    fresh = template(store, cache)
    assert fresh is not None
    assert fresh["complete"] and fresh["missing"] == []
    assert fresh["exercises"][1]["exercise"]["title"] == "Overhead Press"


def test_without_invalidation_the_cache_would_serve_stale_answers(store: Store,
                                                                  cache: QueryCache) -> None:
    # The control case: it shows the tests above can fail.
    unwired = Pipeline(store, Policy(), clock=lambda: NOW)
    submit(unwired, make_exercise(ALICE, "squat"),
           make_template(ALICE, "legs", [(SQUAT, *SET), (PRESS, *SET)]))
    assert template(store, cache)["missing"] == [PRESS]  # type: ignore[index]
    submit(unwired, make_exercise(ALICE, "press"))
    assert template(store, cache)["missing"] == [PRESS]  # type: ignore[index]


def test_unrelated_commits_keep_the_entry(store: Store, cache: QueryCache,
                                          pipeline: Pipeline) -> None:
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(SQUAT, *SET)]))
    first = template(store, cache)
    submit(pipeline, make_exercise(BOB, "row", title="Row"))
    assert template(store, cache) is first
    assert cache.stats().invalidations == 0


def test_own_templates_rank_high_and_others_normal(store: Store, cache: QueryCache,
                                                   pipeline: Pipeline) -> None:
    bob_legs = coordinate(33402, BOB, "legs")
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(SQUAT, *SET)]),
           make_template(BOB, "legs", [(SQUAT, *SET)]))
    template(store, cache)
    template(store, cache, bob_legs)
    priorities = {a.content_id: a.priority for a in cache.drain_accesses()}
    assert priorities == {LEGS: PRIORITY_OWN, bob_legs: PRIORITY_NORMAL}


def test_cached_exercise_ranks_what_own_templates_use(store: Store, cache: QueryCache,
                                                      pipeline: Pipeline) -> None:
    bob_row = coordinate(33401, BOB, "row")
    bob_curl = coordinate(33401, BOB, "curl")
    submit(pipeline, make_exercise(BOB, "row", title="Row"), make_exercise(BOB, "curl"),
           make_template(ALICE, "legs", [(bob_row, *SET)]))
    assert cached_exercise(cache, store.reader(), bob_row, OWN)["title"] == "Row"  # type: ignore[index]
    cached_exercise(cache, store.reader(), bob_curl, OWN)
    assert cached_exercise(cache, store.reader(), coordinate(33401, BOB, "nope"), OWN) is None
    priorities = {a.content_id: a.priority for a in cache.drain_accesses()}
    assert priorities == {bob_row: PRIORITY_OWN, bob_curl: PRIORITY_NORMAL}
    submit(pipeline, make_exercise(BOB, "row", title="Seated Row", created_at=NOW - 1))
    assert cached_exercise(cache, store.reader(), bob_row, OWN)["title"] == "Seated Row"  # type: ignore[index]


# --- tickets: no stale answer put after its invalidation ---------------------------------


def test_put_after_an_invalidation_of_a_dependency_is_refused(cache: QueryCache) -> None:
    ticket = cache.ticket()
    cache.invalidate({"33401:a:x"})
    assert not cache.put("33402:a:t", {"v": 1}, {"33401:a:x"}, 0, 10, since=ticket)
    assert cache.get("33402:a:t") is None
    assert cache.stats().rejected_puts == 1


def test_put_after_an_unrelated_invalidation_is_kept(cache: QueryCache) -> None:
    ticket = cache.ticket()
    cache.invalidate({"33401:a:other"})
    assert cache.put("33402:a:t", {"v": 1}, {"33401:a:x"}, 0, 10, since=ticket)
    assert cache.get("33402:a:t") == {"v": 1}


def test_put_with_a_ticket_older_than_the_log_is_refused(cache: QueryCache) -> None:
    ticket = cache.ticket()
    for n in range(600):
        cache.invalidate({f"unrelated-{n}"})
    assert not cache.put("k", 1, (), 0, 1, since=ticket)


def test_clear_drops_everything_and_refuses_older_tickets(cache: QueryCache) -> None:
    cache.put("a", 1, (), 0, 1)
    ticket = cache.ticket()
    assert cache.clear() == 1
    assert len(cache) == 0
    assert not cache.put("b", 2, (), 0, 1, since=ticket)
    assert cache.put("b", 2, (), 0, 1, since=cache.ticket())


# --- bounds and eviction order --------------------------------------------------------------


def test_eviction_takes_lowest_priority_first_then_least_recent() -> None:
    cache = QueryCache(3, 1000)
    cache.put("own-old", 1, (), PRIORITY_OWN, 1)
    cache.put("other-old", 2, (), PRIORITY_NORMAL, 1)
    cache.put("other-new", 3, (), PRIORITY_NORMAL, 1)
    cache.put("own-new", 4, (), PRIORITY_OWN, 1)
    assert "other-old" not in cache
    cache.get("other-new")
    cache.put("own-newest", 5, (), PRIORITY_OWN, 1)
    assert "other-new" not in cache  # recently read, but lower priority than every own entry
    cache.get("own-old")
    cache.put("own-latest", 6, (), PRIORITY_OWN, 1)
    assert set(cache._entries) == {"own-old", "own-newest", "own-latest"}
    assert cache.stats().evictions == 3


def test_low_priority_entry_does_not_push_out_higher_ones() -> None:
    cache = QueryCache(2, 1000)
    cache.put("a", 1, (), PRIORITY_OWN, 1)
    cache.put("b", 2, (), PRIORITY_OWN, 1)
    assert not cache.put("c", 3, (), PRIORITY_NORMAL, 1)
    assert set(cache._entries) == {"a", "b"}


def test_byte_bound_evicts_and_oversized_values_are_not_cached() -> None:
    cache = QueryCache(100, 100)
    cache.put("a", 1, (), 0, 60)
    cache.put("b", 2, (), 0, 30)
    cache.put("c", 3, (), 0, 30)
    assert set(cache._entries) == {"b", "c"}
    assert cache.stats().bytes == 60
    assert not cache.put("huge", 4, (), 5, 101)
    assert cache.put("b", 5, (), 0, 10)  # replacing updates the byte count
    assert cache.stats().bytes == 40


def test_zero_entries_caches_nothing(store: Store, pipeline: Pipeline) -> None:
    cache = QueryCache(0, 1000)
    submit(pipeline, make_exercise(ALICE, "squat"), make_template(ALICE, "legs", [(SQUAT, *SET)]))
    assert cached_template(cache, store.reader(), LEGS, OWN) is not None
    assert len(cache) == 0


def test_invalidate_drops_by_key_and_by_dependency(cache: QueryCache) -> None:
    cache.put("t1", 1, {"e1", "e2"}, 0, 1)
    cache.put("t2", 2, {"e2"}, 0, 1)
    cache.put("t3", 3, {"e3"}, 0, 1)
    assert cache.invalidate({"e2"}) == 2
    assert cache.invalidate({"t3"}) == 1
    assert cache.invalidate(set()) == 0
    assert len(cache) == 0 and cache._keys_by_dependency == {}
    assert cache.stats().invalidations == 3


def test_counters_and_stats(cache: QueryCache) -> None:
    assert cache.get("x") is None
    cache.put("x", "v", (), 0, 3)
    assert cache.get("x") == "v"
    assert cache.stats().as_dict() == {
        "entries": 1, "bytes": 3, "max_entries": 100, "max_bytes": 1 << 20, "hits": 1,
        "misses": 1, "evictions": 0, "invalidations": 0, "rejected_puts": 0,
    }


def test_priority_and_content_type_helpers() -> None:
    me = pubkey_of(ALICE)
    assert priority_for(me, OWN) == PRIORITY_OWN
    assert priority_for(pubkey_of(BOB), OWN) == PRIORITY_NORMAL
    assert priority_for(None, OWN) == PRIORITY_NORMAL
    assert priority_for(pubkey_of(BOB), OWN, referenced_by_own=True) == PRIORITY_OWN
    assert content_type_of(LEGS) == "template"
    assert content_type_of(SQUAT) == "exercise"
    assert content_type_of(f"33403:{'a' * 64}:b") == "record"
    assert content_type_of(f"30003:{'a' * 64}:powr-x") == "collection"
    assert content_type_of("ab" * 32) == "event"


# --- access log and cache_metadata -----------------------------------------------------------


async def test_accesses_are_written_in_one_batch(store: Store, cache: QueryCache) -> None:
    clock = [NOW]
    cache.clock = lambda: clock[0]
    cache.put(LEGS, {"t": 1}, {SQUAT}, PRIORITY_OWN, 10)
    for _ in range(4):
        clock[0] += 10
        cache.get(LEGS)
    cache.touch(SQUAT, PRIORITY_OWN)
    transactions = store.writer.stats.transactions
    assert await flush_accesses(cache, store.writer) == 2
    assert store.writer.stats.transactions == transactions + 1
    reader = store.reader()
    assert cache_meta.entry(reader, LEGS) == Access(LEGS, "template", NOW + 40, 5, PRIORITY_OWN)
    assert cache_meta.entry(reader, SQUAT) == Access(SQUAT, "exercise", NOW + 40, 1, PRIORITY_OWN)
    assert await flush_accesses(cache, store.writer) == 0  # drained
    cache.get(LEGS)
    await flush_accesses(cache, store.writer)
    assert cache_meta.entry(store.reader(), LEGS).count == 6  # type: ignore[union-attr]


def test_pending_accesses_are_bounded() -> None:
    cache = QueryCache(10, 100, max_pending_accesses=2)
    for key in ("a", "b", "c"):
        cache.touch(key, 0)
    cache.touch("a", 0)
    assert sorted((a.content_id, a.count) for a in cache.drain_accesses()) == [("a", 2), ("b", 1)]
    assert cache.dropped_accesses == 1


async def test_flusher_writes_on_cancel(store: Store, cache: QueryCache) -> None:
    task = asyncio.create_task(run_access_flusher(cache, store.writer, interval_seconds=3600))
    await asyncio.sleep(0)
    cache.touch(LEGS, PRIORITY_OWN)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cache_meta.entry(store.reader(), LEGS) is not None


async def test_prune_keeps_high_priority_and_recent_rows(store: Store) -> None:
    accesses = [Access(f"c{n}", "event", NOW + n, 1, PRIORITY_OWN if n < 2 else 0)
                for n in range(6)]
    await store.writer.run(lambda conn: cache_meta.record_accesses(conn, accesses))
    assert await store.writer.run(lambda conn: cache_meta.prune(conn, 4)) == 2
    assert await store.writer.run(lambda conn: cache_meta.prune(conn, 4)) == 0
    kept = {f"c{n}" for n in range(6) if cache_meta.entry(store.reader(), f"c{n}")}
    assert kept == {"c0", "c1", "c4", "c5"}


# --- a model of the rules -----------------------------------------------------------------


class CacheAgainstModel(RuleBasedStateMachine):
    """Random puts, gets and invalidations agree with a plain-list model of the rules."""

    def __init__(self) -> None:
        super().__init__()
        self.cache = QueryCache(4, 20)
        self.model: dict[str, tuple[int, frozenset[str], int, int]] = {}
        self.tick = 0

    keys = st.sampled_from("abcdefg")
    deps = st.frozensets(st.sampled_from(["x", "y", "z"]), max_size=2)

    @rule(key=keys, deps=deps, priority=st.integers(0, 2), size=st.integers(1, 25))
    def put(self, key: str, deps: frozenset[str], priority: int, size: int) -> None:
        self.cache.put(key, key, deps, priority, size)
        self.model.pop(key, None)
        if size <= 20:
            self.tick += 1
            self.model[key] = (priority, deps | {key}, size, self.tick)
        while len(self.model) > 4 or sum(v[2] for v in self.model.values()) > 20:
            victim = min(self.model, key=lambda k: (self.model[k][0], self.model[k][3]))
            del self.model[victim]

    @rule(key=keys)
    def get(self, key: str) -> None:
        found = self.cache.get(key)
        assert (found is not None) == (key in self.model)
        if key in self.model:
            self.tick += 1
            priority, deps, size, _ = self.model[key]
            self.model[key] = (priority, deps, size, self.tick)

    @rule(changed=st.frozensets(st.sampled_from(list("abcdefgxyz")), max_size=3))
    def invalidate(self, changed: frozenset[str]) -> None:
        self.cache.invalidate(changed)
        self.model = {k: v for k, v in self.model.items() if v[1].isdisjoint(changed)}

    @invariant()
    def same_contents(self) -> None:
        assert set(self.cache._entries) == set(self.model)
        assert self.cache.stats().bytes == sum(v[2] for v in self.model.values())


CacheAgainstModel.TestCase.settings = settings(max_examples=150, stateful_step_count=30,
                                               deadline=None)
TestCacheAgainstModel = CacheAgainstModel.TestCase

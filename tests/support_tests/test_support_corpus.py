"""The corpus generator and event builders keep the contracts other tests rely on."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import nostr_sdk
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.protocol.event import loads, parse_event
from tests.support import corpus
from tests.support.corpus import current_ids, generate_corpus
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

ALICE = keys_for("support-tests", 0)
BOB = keys_for("support-tests", 1)


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(corpus, "CACHE_DIR", tmp_path)
    return tmp_path


def verifies(event_json: str) -> bool:
    return bool(nostr_sdk.Event.from_json(event_json).verify())


def tag_values(event: dict, name: str) -> list[list[str]]:
    return [tag[1:] for tag in event["tags"] if tag[0] == name]


def test_generation_is_deterministic_and_cached(
    fresh_cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = generate_corpus(400, 4, seed=9)
    assert len(list(fresh_cache.glob("corpus-*.json"))) == 1
    monkeypatch.setattr(corpus, "CACHE_DIR", tmp_path_factory.mktemp("other-cache"))
    assert generate_corpus(400, 4, seed=9) == first  # generated again, not read back
    monkeypatch.setattr(corpus, "CACHE_DIR", fresh_cache)
    assert generate_corpus(400, 4, seed=9) == first  # read back from the cache
    assert generate_corpus(400, 4, seed=10) != first


def test_corrupt_cache_is_regenerated(fresh_cache: Path) -> None:
    first = generate_corpus(50, 2, seed=1)
    (cache_file,) = fresh_cache.glob("corpus-*.json")
    cache_file.write_text('["truncated')
    assert generate_corpus(50, 2, seed=1) == first


def test_every_generated_event_verifies_with_nostr_sdk(fresh_cache: Path) -> None:
    events = generate_corpus(600, 5, seed=3)
    assert all(verifies(event) for event in events)
    assert all(parse_event(loads(event)) for event in events)
    assert len({loads(event)["id"] for event in events}) == len(events)


def test_corpus_shape(fresh_cache: Path) -> None:
    n_events, n_authors = 2000, 7
    events = [loads(text) for text in generate_corpus(n_events, n_authors, seed=4)]
    assert len(events) == n_events
    assert {e["pubkey"] for e in events} == {pubkey_of(keys_for(4, i)) for i in range(n_authors)}
    kinds = Counter(e["kind"] for e in events)
    assert set(kinds) == {33401, 33402, 1301}
    assert 0.10 < kinds[33401] / n_events < 0.22
    assert 0.10 < kinds[33402] / n_events < 0.22
    assert 0.62 < kinds[1301] / n_events < 0.76
    times = [e["created_at"] for e in events]
    assert times == sorted(times)

    published: set[str] = set()  # coordinates seen so far, in list order
    for event in events:
        coord = f"{event['kind']}:{event['pubkey']}:{tag_values(event, 'd')[0][0]}"
        exercises = tag_values(event, "exercise")
        if event["kind"] == 33402:
            # 2-6, fewer only while the author has published fewer exercises.
            assert 1 <= len(exercises) <= 6
        if event["kind"] == 1301:
            assert 3 <= len(exercises) <= 12
            (template,) = tag_values(event, "template")
            assert template == [template[0], ""] and template[0] in published
        for reference in exercises:
            assert reference[0].startswith(f"33401:{event['pubkey']}:")
            assert reference[0] in published
        published.add(coord)


def test_corpus_has_same_second_groups_and_newer_versions(fresh_cache: Path) -> None:
    texts = generate_corpus(1600, 6, seed=5)
    events = [loads(text) for text in texts]
    per_second = Counter(e["created_at"] for e in events)
    assert sum(1 for count in per_second.values() if count >= 20) >= 3
    newest_first = sorted(events, key=lambda e: -e["created_at"])
    for boundary in (500, 1000, 1500):
        # The events either side of each page boundary share one second.
        assert newest_first[boundary - 1]["created_at"] == newest_first[boundary]["created_at"]
    current = current_ids(texts)
    superseded = [e for e in events if e["id"] not in current]
    assert superseded and all(e["kind"] in (33401, 33402) for e in superseded)
    newer_in_group = [
        e
        for e in events
        if e["kind"] in (33401, 33402) and e["id"] in current and per_second[e["created_at"]] >= 20
    ]
    assert any(
        o["kind"] == n["kind"] and tag_values(o, "d") == tag_values(n, "d")
        for n in newer_in_group
        for o in superseded
    )


def test_builders_make_spec_shaped_events() -> None:
    squat = coordinate(33401, ALICE, "squat")
    exercise = loads(make_exercise(ALICE, "squat", equipment="dumbbell", difficulty=None))
    assert exercise["kind"] == 33401 and exercise["pubkey"] == pubkey_of(ALICE)
    assert exercise["tags"][:5] == [
        ["d", "squat"],
        ["title", "Back Squat"],
        ["format", "weight", "reps", "rpe", "set_type"],
        ["format_units", "kg", "count", "0-10", "warmup|normal|drop|failure"],
        ["equipment", "dumbbell"],
    ]
    assert not tag_values(exercise, "difficulty")
    template = loads(make_template(ALICE, "legs", [(squat, "wss://r.example", "", "5")] * 3))
    assert tag_values(template, "exercise") == [[squat, "wss://r.example", "", "5"]] * 3
    record = make_record(
        ALICE,
        "r1",
        [(squat, "", "100", "5", "8", "normal")],
        template=(coordinate(33402, ALICE, "legs"), ""),
        created_at=1_700_000_500,
        extra_tags=[["pr", f"{squat},1RM,100"]],
    )
    parsed = loads(record)
    assert tag_values(parsed, "start") == [[str(1_700_000_500 - 3600)]]
    assert tag_values(parsed, "end") == [[str(1_700_000_500 - 60)]]
    assert tag_values(parsed, "completed") == [["true"]]
    assert tag_values(parsed, "pr") == [[f"{squat},1RM,100"]]
    legacy = loads(make_record(ALICE, "r2", [], kind=33403, completed=False))
    assert legacy["kind"] == 33403 and tag_values(legacy, "completed") == [["false"]]
    deletion = loads(make_deletion(ALICE, e_ids=["a" * 64], coords=[squat]))
    assert deletion["tags"] == [["e", "a" * 64], ["a", squat], ["k", "33401"]]
    for event in (exercise, template, parsed, legacy, deletion):
        assert verifies(make_event(ALICE, event["kind"], event["content"], event["tags"]))


def test_builders_are_deterministic() -> None:
    assert make_exercise(ALICE, "x") == make_exercise(ALICE, "x")
    assert make_exercise(ALICE, "x") != make_exercise(BOB, "x")
    assert make_exercise(ALICE, "x") != make_exercise(ALICE, "x", created_at=1)


@settings(max_examples=40, deadline=None)
@given(
    content=st.text(max_size=40),
    tags=st.lists(st.lists(st.text(max_size=12), min_size=1, max_size=4), max_size=5),
    created_at=st.integers(min_value=0, max_value=2**32),
    kind=st.integers(min_value=0, max_value=65535),
)
def test_make_event_output_verifies_for_any_content(
    content: str, tags: list[list[str]], created_at: int, kind: int
) -> None:
    text = make_event(ALICE, kind, content, tags, created_at)
    event = loads(text)
    assert (event["content"], event["tags"], event["created_at"]) == (content, tags, created_at)
    assert verifies(text)


def test_current_ids_applies_replacement_and_deletion_rules() -> None:
    v1 = make_exercise(ALICE, "squat", created_at=100)
    v2 = make_exercise(ALICE, "squat", created_at=200, title="Squat v2")
    tie_a = make_exercise(ALICE, "bench", created_at=300, title="A")
    tie_b = make_exercise(ALICE, "bench", created_at=300, title="B")
    tie_winner = min(loads(tie_a)["id"], loads(tie_b)["id"])
    record = make_record(ALICE, "r", [], created_at=150)
    other_record = make_record(BOB, "r", [], created_at=150)
    by_bob = make_deletion(BOB, e_ids=[loads(record)["id"]], created_at=400)
    by_alice = make_deletion(ALICE, e_ids=[loads(record)["id"]], created_at=400)
    stale_a = make_deletion(ALICE, coords=[coordinate(33401, ALICE, "squat")], created_at=150)
    ids = lambda *events: {loads(e)["id"] for e in events}  # noqa: E731

    everything = [v2, v1, tie_a, tie_b, record, other_record, by_bob]
    assert current_ids(everything) == ids(v2, record, other_record, by_bob) | {tie_winner}
    assert current_ids([v1, v2, record, by_alice]) == ids(v2, by_alice)
    # An `a` deletion removes versions up to its own time only.
    assert current_ids([v1, v2, stale_a]) == ids(v2, stale_a)
    assert current_ids([v1, stale_a]) == ids(stale_a)

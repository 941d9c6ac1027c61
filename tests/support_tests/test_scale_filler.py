"""The scale benchmark's streaming filler corpus (tests/bench/scale_filler.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import nostr_sdk

from powrd.protocol.event import loads
from tests.bench.scale_filler import FillerGenerator, ensure_filler, read_chunks
from tests.support.corpus import current_ids


def _coordinate_of(event: dict[str, object]) -> str:
    tags = event["tags"]
    assert isinstance(tags, list)
    d = next(tag[1] for tag in tags if tag[0] == "d")
    return f"{event['kind']}:{event['pubkey']}:{d}"


def test_same_seed_gives_the_same_events_and_a_new_generator_starts_over() -> None:
    first = list(FillerGenerator().events(200))
    assert list(FillerGenerator().events(200)) == first
    assert list(FillerGenerator(seed="other").events(200)) != first


def test_every_event_is_valid_for_nostr_sdk() -> None:
    for text in FillerGenerator(n_authors=5).events(300):
        assert nostr_sdk.Event.from_json(text).verify()


def test_mix_of_kinds_and_sets_per_record() -> None:
    events = [loads(text) for text in FillerGenerator(n_authors=20).events(3000)]
    kinds = Counter(event["kind"] for event in events)
    assert set(kinds) == {33401, 33402, 1301}
    assert 0.70 < kinds[1301] / len(events) < 0.90
    assert len({event["pubkey"] for event in events}) == 20
    for event in events:
        if event["kind"] == 1301:
            sets = [tag for tag in event["tags"] if tag[0] == "exercise"]
            assert 3 <= len(sets) <= 12


def test_references_name_exercises_and_templates_the_author_published_earlier() -> None:
    published: set[str] = set()
    for text in FillerGenerator(n_authors=10).events(1500):
        event = loads(text)
        for tag in event["tags"]:
            if tag[0] in ("exercise", "template"):
                assert tag[1] in published, f"{tag[1]} referenced before it was published"
                assert tag[1].split(":")[1] == event["pubkey"]
        if event["kind"] != 1301:
            published.add(_coordinate_of(event))


def test_created_at_never_goes_back_and_superseded_counts_the_newer_versions() -> None:
    generator = FillerGenerator(n_authors=5)
    texts = list(generator.events(2000))
    times = [loads(text)["created_at"] for text in texts]
    assert times == sorted(times)
    assert generator.superseded > 0
    assert len(current_ids(texts)) == len(texts) - generator.superseded


def test_ensure_filler_writes_ndjson_once_and_reuses_it(tmp_path: Path) -> None:
    filler, seconds = ensure_filler(tmp_path, 1200)
    assert seconds > 0
    lines = filler.path.read_text().splitlines()
    assert len(lines) == filler.events == 1200
    assert lines == list(FillerGenerator().events(1200))
    assert filler.current == len(current_ids(lines))
    assert len(filler.authors) == 200

    again, seconds_again = ensure_filler(tmp_path, 1200)
    assert seconds_again == 0.0
    assert again == filler

    chunks = list(read_chunks(filler.path, 500))
    assert [len(chunk) for chunk in chunks] == [500, 500, 200]
    assert [line for chunk in chunks for line in chunk] == lines


def test_ensure_filler_rewrites_a_truncated_file(tmp_path: Path) -> None:
    filler, _ = ensure_filler(tmp_path, 300)
    filler.path.write_text("\n".join(filler.path.read_text().splitlines()[:100]) + "\n")
    rewritten, seconds = ensure_filler(tmp_path, 300)
    assert seconds > 0
    assert len(rewritten.path.read_text().splitlines()) == 300

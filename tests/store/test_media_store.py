"""exercise_media SQL: due rows, settling, budget eviction, orphans, chunked reads."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import media
from powrd.store.cache_meta import Access, record_accesses
from powrd.store.media import Download, MediaJob, MediaNotFound
from powrd.store.schema import MIGRATIONS
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
ALICE = keys_for("media-store", 0)
BOB = keys_for("media-store", 1)
OWN = {pubkey_of(ALICE)}
BODY = bytes(range(256)) * 40  # 10,240 bytes
DIGEST = hashlib.sha256(BODY).hexdigest()


def imeta(url: str, m: str = "image/png", x: str | None = None) -> list[str]:
    tag = ["imeta", f"url {url}", f"m {m}"]
    return [*tag, f"x {x}"] if x else tag


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "powrd.db") as opened:
        yield opened


@pytest.fixture
def pipeline(store: Store) -> Pipeline:
    return Pipeline(store, Policy(), clock=lambda: NOW)


def submit(pipeline: Pipeline, *events: str) -> None:
    result = pipeline.submit_blocking("test", [(loads(e), len(e)) for e in events])
    assert not result.rejected, result.rejected


def write(store: Store, operation: Any) -> Any:
    return store.writer.call(operation)


def exercise_with_media(pipeline: Pipeline, keys: Any, d: str, url: str, **kwargs: Any) -> str:
    submit(pipeline, make_exercise(keys, d, extra_tags=[imeta(url, **kwargs)]))
    return coordinate(33401, keys, d)


def only_job(store: Store, now: int = NOW) -> MediaJob:
    (job,) = media.due(store.reader(), now, 10)
    return job


def store_download(store: Store, job: MediaJob, body: bytes = BODY, thumb: bytes | None = None,
                   now: int = NOW) -> None:
    download = Download(body, "image/png", thumb, "image/png" if thumb else None)
    assert write(store, lambda conn: media.record_success(conn, job, download, now))


def test_new_exercise_media_is_due(store: Store, pipeline: Pipeline) -> None:
    coord = exercise_with_media(pipeline, ALICE, "squat", "https://m.example/a.png", x=DIGEST)
    job = only_job(store)
    assert job == MediaJob(coord, "https://m.example/a.png", "image/png", DIGEST, 0)
    assert job.settled_for == f"image/png {DIGEST}"
    assert media.next_due(store.reader()) == 0
    assert media.counts(store.reader()) == {"pending": 1}


def test_success_is_stored_and_read_back_in_chunks(store: Store, pipeline: Pipeline) -> None:
    coord = exercise_with_media(pipeline, ALICE, "squat", "https://m.example/a.png")
    job = only_job(store)
    store_download(store, job, thumb=b"tiny")
    reader = store.reader()
    assert media.due(reader, NOW + 10**6, 10) == []
    assert media.next_due(reader) is None
    assert media.stored_bytes(reader) == len(BODY) + 4
    chunks = list(media.media_chunks(reader, coord, chunk_size=4096))
    assert [len(c) for c in chunks] == [4096, 4096, 2048]
    assert b"".join(chunks) == BODY
    assert list(media.media_chunks(reader, coord, thumbnail=True)) == [b"tiny"]
    assert media.media_info(reader, coord) == {"content_type": "image/png", "size": len(BODY)}
    (entry,) = media.entries(reader, coord)
    assert (entry["state"], entry["content_size"], entry["thumbnail_size"]) == ("stored", 10240, 4)
    assert entry["fetched_at"] == NOW


def test_missing_media_raises_before_the_first_chunk(store: Store, pipeline: Pipeline) -> None:
    coord = exercise_with_media(pipeline, ALICE, "squat", "https://m.example/v.mp4", m="video/mp4")
    reader = store.reader()
    with pytest.raises(MediaNotFound):
        media.media_chunks(reader, coord)  # still pending
    job = only_job(store)
    write(store, lambda conn: media.record_success(conn, job, Download(b"v", "video/mp4"), NOW))
    assert list(media.media_chunks(reader, coord)) == [b"v"]
    with pytest.raises(MediaNotFound):
        media.media_chunks(reader, coord, thumbnail=True)  # videos have none
    with pytest.raises(MediaNotFound):
        media.media_chunks(reader, coord, url="https://m.example/other")
    with pytest.raises(ValueError, match="chunk_size"):
        media.media_chunks(reader, coord, chunk_size=0)


def test_failure_backs_off_and_counts_attempts(store: Store, pipeline: Pipeline) -> None:
    exercise_with_media(pipeline, ALICE, "squat", "https://m.example/a.png")
    job = only_job(store)
    write(store, lambda conn: media.record_failure(conn, job, "connection refused", NOW + 30))
    assert media.due(store.reader(), NOW + 29, 10) == []
    assert media.next_due(store.reader()) == NOW + 30
    again = only_job(store, NOW + 30)
    assert again.attempts == 1
    (entry,) = media.entries(store.reader())
    assert (entry["state"], entry["last_error"]) == ("failed", "connection refused")


@pytest.mark.parametrize("state", media.REJECTED_STATES)
def test_rejections_are_final_and_recorded(store: Store, pipeline: Pipeline, state: str) -> None:
    exercise_with_media(pipeline, ALICE, "squat", "https://m.example/a.png")
    job = only_job(store)
    write(store, lambda conn: media.record_rejection(conn, job, state, f"because {state}"))
    assert media.due(store.reader(), NOW + 10**9, 10) == []
    (entry,) = media.entries(store.reader())
    assert (entry["state"], entry["last_error"]) == (state, f"because {state}")
    with pytest.raises(ValueError, match="not a rejection state"):
        write(store, lambda conn: media.record_rejection(conn, job, "stored", "no"))


def test_a_changed_tag_makes_settled_media_due_again(store: Store, pipeline: Pipeline) -> None:
    url = "https://m.example/a.png"
    exercise_with_media(pipeline, ALICE, "squat", url, x="ab" * 32)
    job = only_job(store)
    write(store, lambda conn: media.record_rejection(conn, job, media.HASH_MISMATCH, "mismatch"))
    assert media.due(store.reader(), NOW, 10) == []
    submit(pipeline, make_exercise(ALICE, "squat", created_at=NOW - 5,
                                   extra_tags=[imeta(url, x=DIGEST)]))
    fixed = only_job(store)
    assert fixed.sha256 == DIGEST
    store_download(store, fixed)
    assert media.due(store.reader(), NOW, 10) == []


def test_a_failed_retry_after_a_tag_change_drops_the_old_bytes(store: Store,
                                                                pipeline: Pipeline) -> None:
    url = "https://m.example/a.png"
    exercise_with_media(pipeline, ALICE, "squat", url)
    store_download(store, only_job(store))
    submit(pipeline, make_exercise(ALICE, "squat", created_at=NOW - 5,
                                   extra_tags=[imeta(url, m="image/jpeg")]))
    job = only_job(store)
    write(store, lambda conn: media.record_failure(conn, job, "timeout", NOW + 5))
    assert media.stored_bytes(store.reader()) == 0


def test_eviction_order_is_priority_then_least_recently_used(store: Store,
                                                             pipeline: Pipeline) -> None:
    own = exercise_with_media(pipeline, ALICE, "own", "https://m.example/own")
    used = exercise_with_media(pipeline, BOB, "used", "https://m.example/used")
    boosted = exercise_with_media(pipeline, BOB, "boosted", "https://m.example/boosted")
    old = exercise_with_media(pipeline, BOB, "old", "https://m.example/old")
    recent = exercise_with_media(pipeline, BOB, "recent", "https://m.example/recent")
    submit(pipeline, make_template(ALICE, "legs", [(used, "")]))
    for offset, job in enumerate(media.due(store.reader(), NOW, 10)):
        store_download(store, job, body=b"x" * 100, now=NOW + offset)  # fetched in url order
    write(store, lambda conn: record_accesses(conn, [
        Access(old, "exercise", NOW + 50, 1, 0),
        Access(recent, "exercise", NOW + 90, 1, 0),
        Access(boosted, "exercise", NOW + 1, 1, 1),
        Access(used, "exercise", NOW + 20, 1, 0),  # its template, not this row, ranks it
        Access(own, "exercise", NOW + 60, 1, 0),
    ]))
    order = [e.coordinate for e in media.eviction_order(store.reader(), OWN)]
    assert order == [old, recent, boosted, used, own]
    evicted = write(store, lambda conn: media.evict_to_budget(conn, 250, OWN))
    assert [e.coordinate for e in evicted] == [old, recent, boosted]
    assert media.stored_bytes(store.reader()) == 200
    assert media.counts(store.reader()) == {"evicted": 3, "stored": 2}
    with pytest.raises(MediaNotFound):
        media.media_chunks(store.reader(), old)
    assert write(store, lambda conn: media.evict_to_budget(conn, 250, OWN)) == []


def test_requested_media_is_due_again(store: Store, pipeline: Pipeline) -> None:
    coord = exercise_with_media(pipeline, ALICE, "squat", "https://m.example/a.png")
    store_download(store, only_job(store))
    write(store, lambda conn: media.evict_to_budget(conn, 0, OWN))
    assert media.due(store.reader(), NOW + 10**6, 10) == []
    assert write(store, lambda conn: media.request(conn, coord, NOW + 7)) == 1
    assert only_job(store, NOW + 7).coordinate == coord


def test_orphans_are_pruned(store: Store, pipeline: Pipeline) -> None:
    kept = exercise_with_media(pipeline, ALICE, "squat", "https://m.example/new")
    deleted = exercise_with_media(pipeline, ALICE, "press", "https://m.example/press")
    submit(pipeline, make_exercise(ALICE, "squat", created_at=NOW - 5, extra_tags=[
        ["imeta", "alt a squat", "url https://m.example/new", "m image/png"],
    ]))
    submit(pipeline, make_deletion(ALICE, coords=[deleted], created_at=NOW - 1))
    write(store, lambda conn: conn.execute(
        "INSERT INTO exercise_media (exercise_coordinate, url, created_at) VALUES (?, ?, 0)",
        (kept, "https://m.example/old-version"),
    ))
    assert write(store, media.prune_orphans) == 2
    assert [(e["exercise"], e["url"]) for e in media.entries(store.reader())] == [
        (kept, "https://m.example/new")
    ]


def test_version_one_database_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = apsw.Connection(str(path))
    conn.execute(MIGRATIONS[0])
    conn.execute(
        "INSERT INTO exercise_media (exercise_coordinate, url, created_at) VALUES ('c', 'u', 1)"
    )
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    with Store(path) as store:
        (entry,) = media.entries(store.reader())
        assert (entry["state"], entry["content_size"], entry["thumbnail_size"]) == ("pending", 0, 0)
        assert media.due(store.reader(), 0, 5)[0].url == "u"


def test_media_replaced_between_chunks_ends_the_stream(store: Store, pipeline: Pipeline) -> None:
    coord = exercise_with_media(pipeline, ALICE, "squat", "https://m.example/a.png")
    store_download(store, only_job(store))
    chunks = media.media_chunks(store.reader(), coord, chunk_size=4096)
    assert len(next(chunks)) == 4096
    write(store, lambda conn: media.evict_to_budget(conn, 0, OWN))
    with pytest.raises(MediaNotFound, match="changed while it was being read"):
        next(chunks)


def test_a_paused_stream_does_not_pin_the_reader_to_old_data(store: Store,
                                                             pipeline: Pipeline) -> None:
    coord = exercise_with_media(pipeline, ALICE, "squat", "https://m.example/a.png")
    store_download(store, only_job(store))
    reader = store.reader()
    chunks = media.media_chunks(reader, coord, chunk_size=4096)
    next(chunks)
    later = exercise_with_media(pipeline, BOB, "row", "https://m.example/row.png")
    assert [e["exercise"] for e in media.entries(reader, later)] == [later]
    assert b"".join(chunks) == BODY[4096:]

"""``exercise_media``: downloads of the media that exercises link (NIP-92 ``imeta``).

A row is inserted as ``pending`` when an exercise with an ``imeta`` tag is stored. The
media task takes due rows, and settles each one:

* ``stored``: content (and, for images, a thumbnail) is in the row;
* ``failed``: a transient problem (server down, timeout, HTTP error); due again at
  ``next_attempt``;
* ``hash_mismatch``, ``too_large``, ``wrong_type``, ``bad_url``: refused for good, with
  the reason in ``last_error``;
* ``evicted``: dropped to keep the media budget; fetched again only when asked for.

A final state remembers the tag's ``m`` and ``x`` it was reached with (``settled_for``):
when a new version of the exercise changes them, the row is due again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import apsw

from powrd.protocol.event import dumps

PENDING = "pending"
FAILED = "failed"
STORED = "stored"
HASH_MISMATCH = "hash_mismatch"
TOO_LARGE = "too_large"
WRONG_TYPE = "wrong_type"
BAD_URL = "bad_url"
EVICTED = "evicted"
REJECTED_STATES = (HASH_MISMATCH, TOO_LARGE, WRONG_TYPE, BAD_URL)
_FINAL_STATES = (STORED, *REJECTED_STATES)
# Priority given, in eviction, to media of the user's own exercises and of the exercises
# their templates use (see powrd.library.cache.PRIORITY_OWN).
OWN_PRIORITY = 1


class MediaNotFound(LookupError):
    """No stored content (or thumbnail) for the asked exercise."""


@dataclass(frozen=True, slots=True)
class MediaJob:
    """One due download, as the tag described it when it was taken."""

    coordinate: str
    url: str
    media_type: str | None
    sha256: str | None
    attempts: int

    @property
    def settled_for(self) -> str:
        return f"{self.media_type or ''} {self.sha256 or ''}"


@dataclass(frozen=True, slots=True)
class Download:
    """What a successful download stores."""

    content: bytes
    content_type: str
    thumbnail: bytes | None = None
    thumbnail_type: str | None = None
    note: str | None = None  # e.g. why there is no thumbnail


@dataclass(frozen=True, slots=True)
class Evicted:
    coordinate: str
    url: str
    size: int


def due(conn: apsw.Connection, now: int, limit: int) -> list[MediaJob]:
    """Rows to download now: pending or failed ones whose time has come, and settled ones
    whose tag changed since."""
    return [
        MediaJob(coordinate, url, media_type, sha256, attempts)
        for coordinate, url, media_type, sha256, attempts in conn.execute(
            "SELECT exercise_coordinate, url, media_type, sha256, attempts FROM exercise_media"
            " WHERE (state IN (?, ?) AND next_attempt <= ?)"
            " OR (state IN (?, ?, ?, ?, ?) AND settled_for IS NOT"
            "  (coalesce(media_type, '') || ' ' || coalesce(sha256, '')))"
            " ORDER BY next_attempt, exercise_coordinate, url LIMIT ?",
            (PENDING, FAILED, now, *_FINAL_STATES, limit),
        )
    ]


def next_due(conn: apsw.Connection) -> int | None:
    """The earliest ``next_attempt`` of a pending or failed row, or None when none waits."""
    row = conn.execute(
        "SELECT min(next_attempt) FROM exercise_media WHERE state IN (?, ?)", (PENDING, FAILED)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def record_success(conn: apsw.Connection, job: MediaJob, download: Download, now: int) -> bool:
    """Store a verified download (a writer operation); False when the row is gone."""
    thumbnail_size = len(download.thumbnail) if download.thumbnail is not None else 0
    conn.execute(
        "UPDATE exercise_media SET state = ?, content = ?, content_type = ?, content_size = ?,"
        " thumbnail = ?, thumbnail_type = ?, thumbnail_size = ?, fetched_at = ?, attempts = 0,"
        " next_attempt = 0, last_error = ?, settled_for = ?"
        " WHERE exercise_coordinate = ? AND url = ?",
        (
            STORED, download.content, download.content_type, len(download.content),
            download.thumbnail, download.thumbnail_type, thumbnail_size, now, download.note,
            job.settled_for, job.coordinate, job.url,
        ),
    )
    return conn.changes() > 0


def record_failure(conn: apsw.Connection, job: MediaJob, reason: str, next_attempt: int) -> None:
    """A transient failure: try again at ``next_attempt`` (a writer operation).

    Content from before a tag change is dropped too: it no longer matches the tag.
    """
    conn.execute(
        "UPDATE exercise_media SET state = ?, attempts = attempts + 1, next_attempt = ?,"
        " last_error = ?, content = NULL, content_size = 0, thumbnail = NULL,"
        " thumbnail_size = 0 WHERE exercise_coordinate = ? AND url = ?",
        (FAILED, next_attempt, reason[:500], job.coordinate, job.url),
    )


def record_rejection(conn: apsw.Connection, job: MediaJob, state: str, reason: str) -> None:
    """Refuse the media for good (until the tag changes); drops any older content."""
    if state not in REJECTED_STATES:
        raise ValueError(f"not a rejection state: {state}")
    conn.execute(
        "UPDATE exercise_media SET state = ?, last_error = ?, settled_for = ?, attempts = 0,"
        " next_attempt = 0, content = NULL, content_type = NULL, content_size = 0,"
        " thumbnail = NULL, thumbnail_type = NULL, thumbnail_size = 0"
        " WHERE exercise_coordinate = ? AND url = ?",
        (state, reason[:500], job.settled_for, job.coordinate, job.url),
    )


def stored_bytes(conn: apsw.Connection) -> int:
    """Bytes of content and thumbnails held, as counted against the budget."""
    row = conn.execute(
        "SELECT coalesce(sum(content_size + thumbnail_size), 0) FROM exercise_media"
    ).fetchone()
    return 0 if row is None else int(row[0])


def eviction_order(conn: apsw.Connection, own_pubkeys: Collection[str]) -> list[Evicted]:
    """Stored media, first to go first: lowest priority, then least recently used.

    Priority is the exercise's ``cache_metadata`` priority, raised to
    :data:`OWN_PRIORITY` for the user's own exercises and those their templates use.
    Recency is the later of the last access and the download.
    """
    own = dumps(sorted(own_pubkeys))
    cursor = conn.execute(
        "SELECT m.exercise_coordinate, m.url, m.content_size + m.thumbnail_size,"
        " max(coalesce(c.priority, 0), CASE WHEN"
        "   substr(m.exercise_coordinate, 7, 64) IN (SELECT value FROM json_each(:own))"
        "   OR EXISTS (SELECT 1 FROM dependencies d JOIN nostr_events e ON e.seq = d.dependent_seq"
        "     WHERE d.coordinate = m.exercise_coordinate AND e.kind = 33402"
        "     AND e.pubkey IN (SELECT value FROM json_each(:own)))"
        "   THEN :high ELSE 0 END) AS rank,"
        " max(coalesce(c.last_accessed, 0), coalesce(m.fetched_at, 0)) AS recency"
        " FROM exercise_media m LEFT JOIN cache_metadata c ON c.content_id = m.exercise_coordinate"
        " WHERE m.state = :stored"
        " ORDER BY rank, recency, m.exercise_coordinate, m.url",
        {"own": own, "high": OWN_PRIORITY, "stored": STORED},
    )
    return [Evicted(coordinate, url, int(size)) for coordinate, url, size, _, _ in cursor]


def evict_to_budget(
    conn: apsw.Connection, budget_bytes: int, own_pubkeys: Collection[str]
) -> list[Evicted]:
    """Drop stored media in :func:`eviction_order` until the total fits (a writer operation)."""
    total = stored_bytes(conn)
    if total <= budget_bytes:
        return []
    evicted: list[Evicted] = []
    for candidate in eviction_order(conn, own_pubkeys):
        if total <= budget_bytes:
            break
        evicted.append(candidate)
        total -= candidate.size
    conn.executemany(
        "UPDATE exercise_media SET state = ?, content = NULL, content_size = 0, thumbnail = NULL,"
        " thumbnail_size = 0, last_error = 'evicted to keep the media budget'"
        " WHERE exercise_coordinate = ? AND url = ?",
        [(EVICTED, e.coordinate, e.url) for e in evicted],
    )
    return evicted


def prune_orphans(conn: apsw.Connection) -> int:
    """Delete rows no current exercise links any more (deleted, expired, or a new version
    without that URL); returns how many (a writer operation)."""
    conn.execute(
        "DELETE FROM exercise_media WHERE NOT EXISTS (SELECT 1 FROM exercise_definitions x"
        " JOIN nostr_events e ON e.seq = x.event_seq,"
        " json_each(raw_json(e.raw_event), '$.tags') AS t"
        " WHERE x.coordinate = exercise_media.exercise_coordinate AND t.value ->> 0 = 'imeta'"
        " AND EXISTS (SELECT 1 FROM json_each(t.value) AS element"
        "   WHERE element.value = 'url ' || exercise_media.url))"
    )
    return conn.changes()


def request(conn: apsw.Connection, coordinate: str, now: int) -> int:
    """Make an exercise's evicted or failed media due now (``media.get`` of a missing file)."""
    conn.execute(
        "UPDATE exercise_media SET state = ?, next_attempt = ?"
        " WHERE exercise_coordinate = ? AND state IN (?, ?)",
        (PENDING, now, coordinate, EVICTED, FAILED),
    )
    return conn.changes()


def counts(conn: apsw.Connection) -> dict[str, int]:
    """Rows per state."""
    return {
        str(state): int(n)
        for state, n in conn.execute("SELECT state, count(*) FROM exercise_media GROUP BY state")
    }


def entries(conn: apsw.Connection, coordinate: str | None = None) -> list[dict[str, Any]]:
    """Every media row (without the bytes), optionally of one exercise."""
    rows = conn.execute(
        "SELECT exercise_coordinate, url, media_type, sha256, dim, alt, state, last_error,"
        " attempts, next_attempt, content_type, content_size, thumbnail_type, thumbnail_size,"
        " fetched_at FROM exercise_media WHERE ? IS NULL OR exercise_coordinate = ?"
        " ORDER BY exercise_coordinate, url",
        (coordinate, coordinate),
    ).fetchall()
    names = ("exercise", "url", "m", "x", "dim", "alt", "state", "last_error", "attempts",
             "next_attempt", "content_type", "content_size", "thumbnail_type", "thumbnail_size",
             "fetched_at")
    return [dict(zip(names, row, strict=True)) for row in rows]


@dataclass(frozen=True, slots=True)
class _StoredValue:
    rowid: int
    column: str
    media_type: str
    size: int
    version: tuple[Any, ...]  # changes when the row is evicted or downloaded again


def _stored_value(
    conn: apsw.Connection, coordinate: str, thumbnail: bool, url: str | None
) -> _StoredValue:
    column, size, kind = (
        ("thumbnail", "thumbnail_size", "thumbnail_type") if thumbnail
        else ("content", "content_size", "content_type")
    )
    row = conn.execute(
        f"SELECT rowid, {kind}, {size}, fetched_at, settled_for FROM exercise_media"  # noqa: S608
        f" WHERE exercise_coordinate = ? AND state = ? AND {column} IS NOT NULL"
        " AND (? IS NULL OR url = ?) ORDER BY url LIMIT 1",
        (coordinate, STORED, url, url),
    ).fetchone()
    if row is None:
        what = "thumbnail" if thumbnail else "media"
        raise MediaNotFound(f"no stored {what} for {coordinate}")
    rowid, media_type, length, fetched_at, settled_for = row
    return _StoredValue(
        int(rowid), column, str(media_type), int(length), (length, fetched_at, settled_for)
    )


def media_info(
    conn: apsw.Connection, coordinate: str, *, thumbnail: bool = False, url: str | None = None
) -> dict[str, Any]:
    """Type and size of what :func:`media_chunks` would send.

    Raises:
        MediaNotFound: nothing stored for that exercise (and URL).
    """
    value = _stored_value(conn, coordinate, thumbnail, url)
    return {"content_type": value.media_type, "size": value.size}


def media_chunks(
    conn: apsw.Connection,
    coordinate: str,
    thumbnail: bool = False,
    chunk_size: int = 64 * 1024,
    *,
    url: str | None = None,
) -> Iterator[bytes]:
    """The stored content (or thumbnail) of an exercise's media, ``chunk_size`` bytes at a time.

    The row is looked up at once, so a missing one raises here rather than at the first
    chunk. Each chunk is then read through SQLite's blob I/O in a short read transaction
    of its own: a large file is never held in memory whole, and a slow consumer never
    pins the connection to an old snapshot (which would make every other query on it
    stale). Should the media be evicted or replaced between two chunks, the iteration
    ends with :class:`MediaNotFound` instead of mixing two files.

    Args:
        conn: a read connection.
        coordinate: the exercise's ``33401:<pubkey>:<d>``.
        thumbnail: send the thumbnail instead of the content.
        chunk_size: bytes per chunk.
        url: which of the exercise's media (default: the first stored, by URL).

    Raises:
        MediaNotFound: nothing stored for that exercise (and URL).
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    value = _stored_value(conn, coordinate, thumbnail, url)
    return _chunks(conn, value, chunk_size, coordinate)


def _chunks(
    conn: apsw.Connection, value: _StoredValue, chunk_size: int, coordinate: str
) -> Iterator[bytes]:
    for offset in range(0, value.size, chunk_size):
        with conn:  # the version check and the read see one snapshot
            row = conn.execute(
                "SELECT content_size, thumbnail_size, fetched_at, settled_for, state"
                " FROM exercise_media WHERE rowid = ?",
                (value.rowid,),
            ).fetchone()
            current = None
            if row is not None and row[4] == STORED:
                length = row[0] if value.column == "content" else row[1]
                current = (length, row[2], row[3])
            if current != value.version:
                raise MediaNotFound(f"media of {coordinate} changed while it was being read")
            blob = conn.blob_open("main", "exercise_media", value.column, value.rowid, False)
            try:
                blob.seek(offset)
                chunk = blob.read(chunk_size)
            finally:
                blob.close()
        yield chunk

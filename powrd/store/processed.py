"""Processed NIP-101e tables, one event at a time (writer side).

:func:`write` persists what the library made of a current event and resolves its
dependencies (:mod:`powrd.store.resolution`, whose names are re-exported here);
:func:`remove` drops those rows when the event stops being current. The bulk
counterpart for runs of new events is :mod:`powrd.store.bulk_processed`.
"""

from __future__ import annotations

from collections.abc import Iterable

import apsw

from powrd.protocol.coordinates import split_coordinate
from powrd.protocol.event import Event, dumps
from powrd.store import lists
from powrd.store.resolution import (
    enqueue_fetch,
    is_present,
    reresolve_dependents,
    resolve,
)
from powrd.store.rows import (
    CollectionRow,
    ExerciseRow,
    Processed,
    RecordRow,
    Reference,
    TemplateRow,
)

__all__ = [
    "MEDIA_UPSERT",
    "coordinate_ids",
    "enqueue_fetch",
    "is_present",
    "remove",
    "reresolve_dependents",
    "resolve",
    "split_coordinate",
    "write",
]

MEDIA_UPSERT = (
    "INSERT INTO exercise_media (exercise_coordinate, url, media_type, sha256, dim, alt,"
    " created_at, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (exercise_coordinate, url)"
    " DO UPDATE SET media_type = excluded.media_type, sha256 = excluded.sha256,"
    " dim = excluded.dim, alt = excluded.alt, extra = excluded.extra"
)


def _write_exercise(conn: apsw.Connection, seq: int, event: Event, row: ExerciseRow) -> None:
    coordinate = event.coordinate
    conn.execute(
        "INSERT INTO exercise_definitions (event_seq, coordinate, pubkey, title, equipment,"
        " difficulty, format, format_units, hashtags, content, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq, coordinate, event.pubkey, row.title, row.equipment, row.difficulty,
            dumps(list(row.format)), dumps(list(row.format_units)), dumps(list(row.hashtags)),
            event.content, event.created_at,
        ),
    )
    for media in row.media:
        conn.execute(
            MEDIA_UPSERT,
            (coordinate, media.url, media.mime_type, media.sha256, media.dim, media.alt,
             event.created_at, dumps(dict(media.extra))),
        )


def coordinate_ids(conn: apsw.Connection, refs: Iterable[Reference]) -> dict[str, int]:
    """The interned id of each reference's coordinate (added when new)."""
    ids: dict[str, int] = {}
    for ref in refs:
        if ref.coordinate in ids:
            continue
        row = conn.execute(
            "SELECT id FROM coordinates WHERE coordinate = ?", (ref.coordinate,)
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO coordinates (coordinate, kind, pubkey, d_tag) VALUES (?, ?, ?, ?)",
                (ref.coordinate, ref.kind, ref.pubkey, ref.d),
            )
            ids[ref.coordinate] = conn.last_insert_rowid()
        else:
            ids[ref.coordinate] = int(row[0])
    return ids


def _reference_rows(
    conn: apsw.Connection, seq: int, refs: tuple[Reference, ...]
) -> list[tuple[object, ...]]:
    ids = coordinate_ids(conn, refs)
    return [
        (seq, position, ids[ref.coordinate], ref.relay_hint, dumps(list(ref.params)))
        for position, ref in enumerate(refs)
    ]


def _write_template(conn: apsw.Connection, seq: int, event: Event, row: TemplateRow) -> None:
    conn.execute(
        "INSERT INTO templates (event_seq, coordinate, pubkey, title, type, rounds, duration,"
        " interval, rest_between_rounds, hashtags, content, created_at, unreadable)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq, event.coordinate, event.pubkey, row.title, row.type, row.rounds, row.duration,
            row.interval, row.rest_between_rounds, dumps(list(row.hashtags)), event.content,
            event.created_at, dumps(row.unreadable),
        ),
    )
    conn.executemany(
        "INSERT INTO template_exercises (template_seq, position, coordinate_id, relay_hint, params)"
        " VALUES (?, ?, ?, ?, ?)",
        _reference_rows(conn, seq, row.exercises),
    )


def _write_record(conn: apsw.Connection, seq: int, event: Event, row: RecordRow) -> None:
    template = row.template
    conn.execute(
        "INSERT INTO workout_records (event_seq, event_id, pubkey, kind, title, type, start,"
        ' "end", completed, rounds_completed, interval, template_coordinate, template_relay,'
        " prs, hashtags, content, created_at, activity, metrics, unreadable)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq, event.id, event.pubkey, event.kind, row.title, row.type, row.start, row.end,
            None if row.completed is None else int(row.completed), row.rounds_completed,
            row.interval, template.coordinate if template else None,
            template.relay_hint if template else None, dumps(list(row.prs)),
            dumps(list(row.hashtags)), event.content, event.created_at, row.activity,
            dumps(row.metrics), dumps(row.unreadable),
        ),
    )
    conn.executemany(
        "INSERT INTO record_sets (record_seq, position, coordinate_id, relay_hint, params)"
        " VALUES (?, ?, ?, ?, ?)",
        _reference_rows(conn, seq, row.sets),
    )


def write(  # noqa: PLR0917 - rebuild passes the sets positionally
    conn: apsw.Connection,
    seq: int,
    event: Event,
    processed: Processed,
    missing: set[str],
    changed: set[str],
) -> None:
    """Persist what the library made of a current event and resolve its dependencies."""
    if processed.warnings:
        conn.executemany(
            "INSERT INTO processing_warnings (event_seq, position, message) VALUES (?, ?, ?)",
            [(seq, i, message) for i, message in enumerate(processed.warnings)],
        )
    row = processed.row
    if isinstance(row, ExerciseRow):
        _write_exercise(conn, seq, event, row)
    elif isinstance(row, TemplateRow):
        _write_template(conn, seq, event, row)
    elif isinstance(row, RecordRow):
        _write_record(conn, seq, event, row)
    elif isinstance(row, CollectionRow):
        lists.write(conn, seq, event, row, coordinate_ids(conn, row.members))
    if processed.dependencies:
        ids = coordinate_ids(conn, processed.dependencies)
        conn.executemany(
            "INSERT OR IGNORE INTO dependency_refs (dependent_seq, coordinate_id, relay_hint)"
            " VALUES (?, ?, ?)",
            [(seq, ids[ref.coordinate], ref.relay_hint) for ref in processed.dependencies],
        )
        resolve(conn, seq, event.kind, missing)
    if row is not None:
        changed.add(event.coordinate or event.id)


def remove(conn: apsw.Connection, seq: int) -> None:
    """Drop the processed rows of an event that is no longer current."""
    coordinates = [
        r[0]
        for r in conn.execute("SELECT coordinate FROM dependencies WHERE dependent_seq = ?", (seq,))
    ]
    for table in ("exercise_definitions", "templates", "workout_records", "collections"):
        conn.execute(f"DELETE FROM {table} WHERE event_seq = ?", (seq,))  # noqa: S608 - fixed names
    conn.execute("DELETE FROM dependency_refs WHERE dependent_seq = ?", (seq,))
    conn.execute("DELETE FROM incomplete_templates WHERE template_seq = ?", (seq,))
    conn.execute("DELETE FROM processing_warnings WHERE event_seq = ?", (seq,))
    for coordinate in coordinates:
        conn.execute(
            "DELETE FROM fetch_queue WHERE coordinate = ?"
            " AND NOT EXISTS (SELECT 1 FROM dependencies WHERE coordinate = ?)",
            (coordinate, coordinate),
        )

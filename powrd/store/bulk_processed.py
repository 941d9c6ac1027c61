"""Processed NIP-101e rows for a run of new current events, one statement per table.

The bulk counterpart of :func:`powrd.store.processed.write` minus dependency resolution
(see :mod:`powrd.store.bulk_resolve`): warnings, exercise definitions and media,
templates and their exercises, records and their sets, interned coordinates and
dependency rows. The events' rows in ``nostr_events`` must already exist.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import apsw

from powrd.protocol.coordinates import split_coordinate
from powrd.protocol.event import Event, dumps
from powrd.store import lists
from powrd.store.processed import MEDIA_UPSERT
from powrd.store.rows import (
    CollectionRow,
    ExerciseRow,
    Processed,
    RecordRow,
    Reference,
    TemplateRow,
)

Row = tuple[object, ...]
# Tuples (params, hashtags, formats) are dumped as they are: the same JSON arrays the
# per-event path writes from lists.


@dataclass(frozen=True, slots=True)
class _Tables:
    """Rows to insert, per table, in the order the per-event path would insert them."""

    warnings: list[Row] = field(default_factory=list)
    exercises: list[Row] = field(default_factory=list)
    media: list[Row] = field(default_factory=list)
    templates: list[Row] = field(default_factory=list)
    template_exercises: list[Row] = field(default_factory=list)
    records: list[Row] = field(default_factory=list)
    record_sets: list[Row] = field(default_factory=list)
    dependencies: list[Row] = field(default_factory=list)


_INSERTS = (
    (
        "warnings",
        "INSERT INTO processing_warnings (event_seq, position, message) VALUES (?, ?, ?)",
    ),
    (
        "exercises",
        "INSERT INTO exercise_definitions (event_seq, coordinate, pubkey, title, equipment,"
        " difficulty, format, format_units, hashtags, content, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    ("media", MEDIA_UPSERT),
    (
        "templates",
        "INSERT INTO templates (event_seq, coordinate, pubkey, title, type, rounds, duration,"
        " interval, rest_between_rounds, hashtags, content, created_at, unreadable)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    (
        "template_exercises",
        "INSERT INTO template_exercises (template_seq, position, coordinate_id, relay_hint,"
        " params) VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "records",
        "INSERT INTO workout_records (event_seq, event_id, pubkey, kind, title, type, start,"
        ' "end", completed, rounds_completed, interval, template_coordinate, template_relay,'
        " prs, hashtags, content, created_at, activity, metrics, unreadable)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    (
        "record_sets",
        "INSERT INTO record_sets (record_seq, position, coordinate_id, relay_hint, params)"
        " VALUES (?, ?, ?, ?, ?)",
    ),
    (
        "dependencies",
        "INSERT OR IGNORE INTO dependency_refs (dependent_seq, coordinate_id, relay_hint)"
        " VALUES (?, ?, ?)",
    ),
)


def write_all(
    conn: apsw.Connection,
    stored: Sequence[tuple[int, Event, Processed]],
    coordinate_ids: dict[str, int],
) -> None:
    """Persist the processed rows of new current events, given as (seq, event, processed).

    ``coordinate_ids`` caches interned coordinates across the runs of one batch (rows
    of ``coordinates`` are never removed while a batch is written); it is updated.
    """
    ids = intern_coordinates(conn, _references(stored), coordinate_ids)
    tables = _Tables()
    for seq, event, processed in stored:
        _add(tables, seq, event, processed, ids)
    for name, sql in _INSERTS:
        rows: list[Row] = getattr(tables, name)
        if rows:
            conn.executemany(sql, rows)
    for seq, event, processed in stored:
        if isinstance(processed.row, CollectionRow):
            lists.write(conn, seq, event, processed.row, ids)


def _references(stored: Sequence[tuple[int, Event, Processed]]) -> Iterator[Reference]:
    """Every reference, in the order the per-event path interns them."""
    for _, _, processed in stored:
        row = processed.row
        if isinstance(row, TemplateRow):
            yield from row.exercises
        elif isinstance(row, RecordRow):
            yield from row.sets
        elif isinstance(row, CollectionRow):
            yield from row.members
        yield from processed.dependencies


def intern_coordinates(
    conn: apsw.Connection, refs: Iterator[Reference], ids: dict[str, int]
) -> dict[str, int]:
    """Add the interned id of every reference's coordinate to ``ids``, and return it.

    One look-up for the coordinates ``ids`` lacks and one insert for the new ones,
    whose ids are assigned here in first-seen order (as SQLite itself would do).
    """
    wanted = [c for c in dict.fromkeys(ref.coordinate for ref in refs) if c not in ids]
    if not wanted:
        return ids
    ids.update(
        conn.execute(
            "SELECT coordinate, id FROM coordinates"
            " WHERE coordinate IN (SELECT value FROM json_each(?))",
            (dumps(wanted),),
        )
    )
    new = [coordinate for coordinate in wanted if coordinate not in ids]
    if new:
        (last,) = conn.execute("SELECT coalesce(max(id), 0) FROM coordinates").fetchone() or (0,)
        rows: list[Row] = []
        for number, coordinate in enumerate(new, start=int(last) + 1):
            address = split_coordinate(coordinate)
            if address is None:
                raise ValueError(f"reference coordinate {coordinate!r} is not normalized")
            ids[coordinate] = number
            rows.append((number, coordinate, *address))
        conn.executemany(
            "INSERT INTO coordinates (id, coordinate, kind, pubkey, d_tag) VALUES (?, ?, ?, ?, ?)",
            rows,
        )
    return ids


def _add(
    tables: _Tables, seq: int, event: Event, processed: Processed, ids: dict[str, int]
) -> None:
    if processed.warnings:
        tables.warnings.extend((seq, i, text) for i, text in enumerate(processed.warnings))
    row = processed.row
    if isinstance(row, ExerciseRow):
        _add_exercise(tables, seq, event, row)
    elif isinstance(row, TemplateRow):
        _add_template(tables, seq, event, row, ids)
    elif isinstance(row, RecordRow):
        _add_record(tables, seq, event, row, ids)
    tables.dependencies.extend(
        (seq, ids[ref.coordinate], ref.relay_hint) for ref in processed.dependencies
    )


def _reference_rows(seq: int, refs: Sequence[Reference], ids: dict[str, int]) -> list[Row]:
    return [
        (seq, position, ids[ref.coordinate], ref.relay_hint, dumps(ref.params))
        for position, ref in enumerate(refs)
    ]


def _add_exercise(tables: _Tables, seq: int, event: Event, row: ExerciseRow) -> None:
    coordinate = event.coordinate
    tables.exercises.append(
        (
            seq, coordinate, event.pubkey, row.title, row.equipment, row.difficulty,
            dumps(row.format), dumps(row.format_units), dumps(row.hashtags),
            event.content, event.created_at,
        )
    )
    tables.media.extend(
        (coordinate, media.url, media.mime_type, media.sha256, media.dim, media.alt,
         event.created_at, dumps(dict(media.extra)))
        for media in row.media
    )


def _add_template(
    tables: _Tables, seq: int, event: Event, row: TemplateRow, ids: dict[str, int]
) -> None:
    tables.templates.append(
        (
            seq, event.coordinate, event.pubkey, row.title, row.type, row.rounds, row.duration,
            row.interval, row.rest_between_rounds, dumps(row.hashtags), event.content,
            event.created_at, dumps(row.unreadable),
        )
    )
    tables.template_exercises.extend(_reference_rows(seq, row.exercises, ids))


def _add_record(
    tables: _Tables, seq: int, event: Event, row: RecordRow, ids: dict[str, int]
) -> None:
    template = row.template
    tables.records.append(
        (
            seq, event.id, event.pubkey, event.kind, row.title, row.type, row.start, row.end,
            None if row.completed is None else int(row.completed), row.rounds_completed,
            row.interval, template.coordinate if template else None,
            template.relay_hint if template else None, dumps(row.prs),
            dumps(row.hashtags), event.content, event.created_at, row.activity,
            dumps(row.metrics), dumps(row.unreadable),
        )
    )
    tables.record_sets.extend(_reference_rows(seq, row.sets, ids))

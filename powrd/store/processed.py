"""The processed NIP-101e tables and the one builder of each table's rows (writer side).

Each table is declared once, as a row type whose fields are its columns (the INSERT is
made from them), and filled by one builder from what the library made of an event
(:class:`~powrd.store.rows.Processed`). Ingest, replacement and rebuild all go through
:func:`write` and :data:`TABLES`; nothing else names these columns when writing.

Wide per-event rows are built by keyword from their row type; the narrow ones of which
an event has many (references, dependencies, warnings) are plain tuples in their row
type's field order, which the garbage collector does not track.

To add a column (beside its migration): add the field to the row type and give it a
value in the builder. To add a table: declare its row type and a :class:`Table` in
:data:`TABLES` (parents before children), and have the builder of its kind append rows
to it. A table whose rows belong to one event (``owner``) loses them when that event
stops being current; ``tests/store/test_processed_tables.py`` checks that every table
hanging off an event is declared.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apsw

from powrd.protocol.coordinates import split_coordinate
from powrd.protocol.event import Event, dumps
from powrd.store.rows import (
    CollectionRow,
    ExerciseRow,
    Processed,
    RecordRow,
    Reference,
    TemplateRow,
)

# Tuples (params, hashtags, formats) are dumped as they are: the same JSON arrays as lists.


class ProcessingWarning(NamedTuple):
    event_seq: int
    position: int
    message: str


class ExerciseDefinition(NamedTuple):
    event_seq: int
    coordinate: str | None
    pubkey: str
    title: str
    equipment: str | None
    difficulty: str | None
    format: str
    format_units: str
    hashtags: str
    content: str
    created_at: int


class ExerciseMedia(NamedTuple):
    exercise_coordinate: str | None
    url: str
    media_type: str | None
    sha256: str | None
    dim: str | None
    alt: str | None
    created_at: int
    extra: str  # imeta keys beyond the ones above, as a JSON object


class Template(NamedTuple):
    event_seq: int
    coordinate: str | None
    pubkey: str
    title: str
    type: str | None
    rounds: int | None
    duration: int | None
    interval: int | None
    rest_between_rounds: int | None
    hashtags: str
    content: str
    created_at: int
    unreadable: str  # [{tag, warning}] of exercise tags that could not be read


class TemplateExercise(NamedTuple):
    template_seq: int
    position: int
    coordinate_id: int
    relay_hint: str | None
    params: str


class WorkoutRecord(NamedTuple):
    event_seq: int
    event_id: str
    pubkey: str
    kind: int
    title: str
    type: str | None
    start: int | None
    end: int | None
    completed: int | None
    rounds_completed: float | None
    interval: float | None
    template_coordinate: str | None
    template_relay: str | None
    prs: str
    hashtags: str
    content: str
    created_at: int
    activity: str | None  # a cardio record's activity
    metrics: str  # a cardio record's metrics, as a JSON object
    unreadable: str


class RecordSet(NamedTuple):
    record_seq: int
    position: int
    coordinate_id: int
    relay_hint: str | None
    params: str


class Collection(NamedTuple):
    event_seq: int
    coordinate: str | None
    pubkey: str
    d_tag: str
    title: str
    created_at: int


class CollectionMember(NamedTuple):
    collection_seq: int
    position: int
    coordinate_id: int
    relay_hint: str | None


class DependencyRef(NamedTuple):
    dependent_seq: int
    coordinate_id: int
    relay_hint: str | None


@dataclass(frozen=True, slots=True, eq=False)  # eq=False: hashed by identity, cheaply
class Table:
    """One processed table.

    Attributes:
        name: the table's name.
        row: its row type, a NamedTuple whose fields are its columns.
        owner: the column holding the seq of the event each row belongs to, or None
            when rows are shared between versions (media, keyed by coordinate).
        conflict: the INSERT's conflict clause, if any.
    """

    name: str
    row: type[tuple[Any, ...]]
    owner: str | None
    conflict: str = ""

    @property
    def columns(self) -> tuple[str, ...]:
        fields: tuple[str, ...] = self.row._fields  # type: ignore[attr-defined]
        return fields

    @property
    def insert(self) -> str:
        """The INSERT statement for one row."""
        columns = ", ".join(f'"{column}"' for column in self.columns)
        marks = ", ".join("?" * len(self.columns))
        return f"INSERT INTO {self.name} ({columns}) VALUES ({marks}){self.conflict}"  # noqa: S608 - declared names


WARNINGS = Table("processing_warnings", ProcessingWarning, "event_seq")
EXERCISES = Table("exercise_definitions", ExerciseDefinition, "event_seq")
MEDIA = Table(
    "exercise_media",
    ExerciseMedia,
    None,
    " ON CONFLICT (exercise_coordinate, url) DO UPDATE SET media_type = excluded.media_type,"
    " sha256 = excluded.sha256, dim = excluded.dim, alt = excluded.alt, extra = excluded.extra",
)
TEMPLATES = Table("templates", Template, "event_seq")
TEMPLATE_EXERCISES = Table("template_exercises", TemplateExercise, "template_seq")
RECORDS = Table("workout_records", WorkoutRecord, "event_seq")
RECORD_SETS = Table("record_sets", RecordSet, "record_seq")
COLLECTIONS = Table("collections", Collection, "event_seq")
COLLECTION_MEMBERS = Table("collection_members", CollectionMember, "collection_seq")
DEPENDENCY_REFS = Table(
    "dependency_refs", DependencyRef, "dependent_seq", " ON CONFLICT DO NOTHING"
)

TABLES = (
    WARNINGS, EXERCISES, MEDIA, TEMPLATES, TEMPLATE_EXERCISES, RECORDS, RECORD_SETS,
    COLLECTIONS, COLLECTION_MEMBERS, DEPENDENCY_REFS,
)
"""Every table the builders fill, in insert order (a parent before its children)."""

DERIVED = (("incomplete_templates", "template_seq"),)
"""(table, owner column) of what dependency resolution keeps per event."""

OWNED = tuple((t.name, t.owner) for t in TABLES if t.owner is not None) + DERIVED
"""(table, owner column) of every row that belongs to one current event."""

Row = tuple[object, ...]
Rows = dict[Table, list[Row]]
Ids = dict[str, int]
"""Interned coordinate -> its id in ``coordinates``."""


def _reference_rows(seq: int, refs: Sequence[Reference], ids: Ids) -> list[Row]:
    """A template's exercises or a record's sets, in the fields of both their row types.

    Plain tuples: there are some ten of these per event, and unlike row-type instances
    tuples of plain values cost the garbage collector nothing.
    """
    return [
        (seq, position, ids[ref.coordinate], ref.relay_hint, dumps(ref.params))
        for position, ref in enumerate(refs)
    ]


def _exercise(rows: Rows, seq: int, event: Event, row: ExerciseRow) -> None:
    coordinate = event.coordinate
    rows[EXERCISES].append(ExerciseDefinition(
        event_seq=seq, coordinate=coordinate, pubkey=event.pubkey, title=row.title,
        equipment=row.equipment, difficulty=row.difficulty, format=dumps(row.format),
        format_units=dumps(row.format_units), hashtags=dumps(row.hashtags),
        content=event.content, created_at=event.created_at,
    ))
    rows[MEDIA].extend(
        ExerciseMedia(
            exercise_coordinate=coordinate, url=media.url, media_type=media.mime_type,
            sha256=media.sha256, dim=media.dim, alt=media.alt, created_at=event.created_at,
            extra=dumps(dict(media.extra)),
        )
        for media in row.media
    )


def _template(rows: Rows, seq: int, event: Event, row: TemplateRow, ids: Ids) -> None:
    rows[TEMPLATES].append(Template(
        event_seq=seq, coordinate=event.coordinate, pubkey=event.pubkey, title=row.title,
        type=row.type, rounds=row.rounds, duration=row.duration, interval=row.interval,
        rest_between_rounds=row.rest_between_rounds, hashtags=dumps(row.hashtags),
        content=event.content, created_at=event.created_at, unreadable=dumps(row.unreadable),
    ))
    rows[TEMPLATE_EXERCISES] += _reference_rows(seq, row.exercises, ids)


def _record(rows: Rows, seq: int, event: Event, row: RecordRow, ids: Ids) -> None:
    template = row.template
    rows[RECORDS].append(WorkoutRecord(
        event_seq=seq, event_id=event.id, pubkey=event.pubkey, kind=event.kind,
        title=row.title, type=row.type, start=row.start, end=row.end,
        completed=None if row.completed is None else int(row.completed),
        rounds_completed=row.rounds_completed, interval=row.interval,
        template_coordinate=template.coordinate if template else None,
        template_relay=template.relay_hint if template else None, prs=dumps(row.prs),
        hashtags=dumps(row.hashtags), content=event.content, created_at=event.created_at,
        activity=row.activity, metrics=dumps(row.metrics), unreadable=dumps(row.unreadable),
    ))
    rows[RECORD_SETS] += _reference_rows(seq, row.sets, ids)


def _collection(rows: Rows, seq: int, event: Event, row: CollectionRow, ids: Ids) -> None:
    rows[COLLECTIONS].append(Collection(
        event_seq=seq, coordinate=event.coordinate, pubkey=event.pubkey,
        d_tag=event.d_tag or "", title=row.title, created_at=event.created_at,
    ))
    rows[COLLECTION_MEMBERS] += [
        (seq, position, ids[member.coordinate], member.relay_hint)
        for position, member in enumerate(row.members)
    ]


def _add(rows: Rows, seq: int, event: Event, processed: Processed, ids: Ids) -> None:
    if processed.warnings:
        rows[WARNINGS].extend(
            (seq, position, text) for position, text in enumerate(processed.warnings)
        )
    row = processed.row  # each kind's row has its builder
    if isinstance(row, ExerciseRow):
        _exercise(rows, seq, event, row)
    elif isinstance(row, TemplateRow):
        _template(rows, seq, event, row, ids)
    elif isinstance(row, RecordRow):
        _record(rows, seq, event, row, ids)
    elif isinstance(row, CollectionRow):
        _collection(rows, seq, event, row, ids)
    if processed.dependencies:  # DependencyRef's fields, as plain tuples (see above)
        rows[DEPENDENCY_REFS] += [
            (seq, ids[ref.coordinate], ref.relay_hint) for ref in processed.dependencies
        ]


def write(
    conn: apsw.Connection, stored: Sequence[tuple[int, Event, Processed]], ids: Ids
) -> None:
    """Persist the processed rows of current events, given as (seq, event, processed).

    The events' rows in ``nostr_events`` must exist and their seqs must not have
    processed rows yet. Dependency resolution is the caller's next step
    (:mod:`powrd.store.resolution`).

    Args:
        conn: the writer connection, inside a transaction.
        stored: the events, in seq order.
        ids: interned coordinates known so far in this transaction (rows of
            ``coordinates`` are never removed while it runs); updated.
    """
    intern_coordinates(conn, _referenced(stored), ids)
    rows: Rows = {table: [] for table in TABLES}
    for seq, event, processed in stored:
        _add(rows, seq, event, processed, ids)
    for table in TABLES:
        if rows[table]:
            conn.executemany(table.insert, rows[table])


def _referenced(stored: Sequence[tuple[int, Event, Processed]]) -> Iterator[Reference]:
    """Every reference, rows' first, in the order their coordinates get interned."""
    for _, _, processed in stored:
        row = processed.row
        if isinstance(row, TemplateRow):
            yield from row.exercises
        elif isinstance(row, RecordRow):
            yield from row.sets
        elif isinstance(row, CollectionRow):
            yield from row.members
        yield from processed.dependencies


def intern_coordinates(conn: apsw.Connection, refs: Iterator[Reference], ids: Ids) -> Ids:
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


def delete_owned(conn: apsw.Connection, seqs_json: str) -> None:
    """Drop every processed row of the events whose seqs ``seqs_json`` lists (a JSON array)."""
    for table, owner in reversed(OWNED):  # children before parents
        conn.execute(
            f"DELETE FROM {table} WHERE {owner} IN (SELECT value FROM json_each(?))",  # noqa: S608
            (seqs_json,),
        )

"""Processed NIP-101e tables and dependency bookkeeping (writer side).

A template or record is *complete* when a current event is stored for every coordinate
it depends on. Otherwise it has a row in ``incomplete_templates`` listing what is
missing, and each missing coordinate is in ``fetch_queue``. Whenever a coordinate
arrives or disappears, its dependents are re-resolved in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable

import apsw

from powrd.protocol.event import Event, dumps, loads
from powrd.store.rows import ExerciseRow, Processed, RecordRow, Reference, TemplateRow


def split_coordinate(coordinate: str) -> tuple[int, str, str] | None:
    parts = coordinate.split(":", 2)
    if len(parts) != 3 or not parts[0].isdigit():
        return None
    return int(parts[0]), parts[1], parts[2]


def is_present(conn: apsw.Connection, coordinate: str) -> bool:
    address = split_coordinate(coordinate)
    if address is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM nostr_events WHERE kind = ? AND pubkey = ? AND d_tag = ? AND current = 1",
        address,
    ).fetchone()
    return row is not None


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
            "INSERT INTO exercise_media (exercise_coordinate, url, media_type, sha256, dim, alt,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (exercise_coordinate, url) DO UPDATE SET media_type = excluded.media_type,"
            " sha256 = excluded.sha256, dim = excluded.dim, alt = excluded.alt",
            (coordinate, media.url, media.mime_type, media.sha256, media.dim, media.alt,
             event.created_at),
        )


def coordinate_ids(conn: apsw.Connection, refs: Iterable[Reference]) -> dict[str, int]:
    """The interned id of each reference's coordinate (added when new)."""
    ids: dict[str, int] = {}
    for ref in refs:
        if ref.coordinate in ids:
            continue
        row = conn.execute("SELECT id FROM coordinates WHERE coordinate = ?", (ref.coordinate,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO coordinates (coordinate, kind, pubkey, d_tag) VALUES (?, ?, ?, ?)",
                (ref.coordinate, ref.kind, ref.pubkey, ref.d),
            )
            ids[ref.coordinate] = conn.last_insert_rowid()
        else:
            ids[ref.coordinate] = int(row[0])
    return ids


def _reference_rows(conn: apsw.Connection, seq: int, refs: tuple[Reference, ...]) -> list[tuple[object, ...]]:
    ids = coordinate_ids(conn, refs)
    return [
        (seq, position, ids[ref.coordinate], ref.relay_hint, dumps(list(ref.params)))
        for position, ref in enumerate(refs)
    ]


def _write_template(conn: apsw.Connection, seq: int, event: Event, row: TemplateRow) -> None:
    conn.execute(
        "INSERT INTO templates (event_seq, coordinate, pubkey, title, type, rounds, duration,"
        " interval, rest_between_rounds, hashtags, content, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq, event.coordinate, event.pubkey, row.title, row.type, row.rounds, row.duration,
            row.interval, row.rest_between_rounds, dumps(list(row.hashtags)), event.content,
            event.created_at,
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
        " prs, hashtags, content, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            seq, event.id, event.pubkey, event.kind, row.title, row.type, row.start, row.end,
            None if row.completed is None else int(row.completed), row.rounds_completed,
            row.interval, template.coordinate if template else None,
            template.relay_hint if template else None, dumps(list(row.prs)),
            dumps(list(row.hashtags)), event.content, event.created_at,
        ),
    )
    conn.executemany(
        "INSERT INTO record_sets (record_seq, position, coordinate_id, relay_hint, params)"
        " VALUES (?, ?, ?, ?, ?)",
        _reference_rows(conn, seq, row.sets),
    )


def write(
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
        r[0] for r in conn.execute("SELECT coordinate FROM dependencies WHERE dependent_seq = ?", (seq,))
    ]
    for table in ("exercise_definitions", "templates", "workout_records"):
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


def enqueue_fetch(conn: apsw.Connection, coordinate: str, hints: list[str], now: int | None = None) -> bool:
    """Queue a missing coordinate (merging relay hints); True when it was not queued yet."""
    address = split_coordinate(coordinate)
    if address is None:
        return False
    row = conn.execute("SELECT relay_hints FROM fetch_queue WHERE coordinate = ?", (coordinate,)).fetchone()
    if row is None:
        conn.execute(
            "INSERT INTO fetch_queue (coordinate, kind, pubkey, d_tag, relay_hints, added_at)"
            " VALUES (?, ?, ?, ?, ?, coalesce(?, CAST(strftime('%s', 'now') AS INTEGER)))",
            (coordinate, *address, dumps(hints), now),
        )
        return True
    known: list[str] = loads(row[0])
    merged = known + [h for h in hints if h not in known]
    if merged != known:
        conn.execute("UPDATE fetch_queue SET relay_hints = ? WHERE coordinate = ?", (dumps(merged), coordinate))
    return False


def resolve(conn: apsw.Connection, seq: int, kind: int, missing_out: set[str]) -> list[str]:
    """Recompute whether a dependent event is complete; returns its missing coordinates."""
    missing: list[str] = []
    for coordinate, hint in conn.execute(
        "SELECT c.coordinate, r.relay_hint FROM dependency_refs r"
        " JOIN coordinates c ON c.id = r.coordinate_id WHERE r.dependent_seq = ?"
        " AND NOT EXISTS (SELECT 1 FROM nostr_events e WHERE e.kind = c.kind"
        " AND e.pubkey = c.pubkey AND e.d_tag = c.d_tag AND e.current = 1) ORDER BY c.coordinate",
        (seq,),
    ).fetchall():
        missing.append(coordinate)
        if enqueue_fetch(conn, coordinate, [hint] if hint else []):
            missing_out.add(coordinate)
    if missing:
        conn.execute(
            "INSERT INTO incomplete_templates (template_seq, kind, missing_exercise_count,"
            " missing_exercises) VALUES (?, ?, ?, ?) ON CONFLICT (template_seq) DO UPDATE SET"
            " missing_exercise_count = excluded.missing_exercise_count,"
            " missing_exercises = excluded.missing_exercises",
            (seq, kind, len(missing), dumps(missing)),
        )
    else:
        conn.execute("DELETE FROM incomplete_templates WHERE template_seq = ?", (seq,))
    return missing


def reresolve_dependents(
    conn: apsw.Connection, coordinate: str, missing_out: set[str], changed: set[str]
) -> None:
    """A coordinate arrived or went away: re-resolve everything that depends on it."""
    if is_present(conn, coordinate):
        conn.execute("DELETE FROM fetch_queue WHERE coordinate = ?", (coordinate,))
    dependents = conn.execute(
        "SELECT d.dependent_seq, e.kind, e.id, e.pubkey, e.d_tag FROM dependencies d"
        " JOIN nostr_events e ON e.seq = d.dependent_seq WHERE d.coordinate = ?",
        (coordinate,),
    ).fetchall()
    for seq, kind, event_id, pubkey, d_tag in dependents:
        resolve(conn, seq, kind, missing_out)
        changed.add(f"{kind}:{pubkey}:{d_tag}" if d_tag is not None else event_id)

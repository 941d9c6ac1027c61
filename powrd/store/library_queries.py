"""Read queries over the processed NIP-101e tables (behind ``library.*``)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

import apsw

from powrd.protocol.event import loads

_EXERCISE_COLUMNS = (
    "x.coordinate, e.id, x.pubkey, e.d_tag, x.title, x.equipment, x.difficulty, x.format,"
    " x.format_units, x.hashtags, x.content, x.created_at"
)


def _exercise(row: tuple[Any, ...]) -> dict[str, Any]:
    (
        coordinate,
        event_id,
        pubkey,
        d,
        title,
        equipment,
        difficulty,
        fmt,
        units,
        tags,
        content,
        created,
    ) = row
    return {
        "coordinate": coordinate,
        "event_id": event_id,
        "pubkey": pubkey,
        "d": d,
        "title": title,
        "equipment": equipment,
        "difficulty": difficulty,
        "format": loads(fmt),
        "format_units": loads(units),
        "hashtags": loads(tags),
        "content": content,
        "created_at": created,
    }


def _where(*conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """A WHERE clause joining the conditions whose argument is given (not None)."""
    chosen = [(clause, value) for clause, value in conditions if value is not None]
    if not chosen:
        return "", []
    return "WHERE " + " AND ".join(c for c, _ in chosen), [v for _, v in chosen]


def _json_list(values: Collection[str] | None) -> str | None:
    return None if values is None else json.dumps(sorted(values))


def _references(conn: apsw.Connection, table: str, owner: str, seq: int) -> list[dict[str, Any]]:
    """The exercise references (template exercises or record sets) of one event, in order."""
    return [
        {"position": position, "coordinate": ref, "relay_hint": hint, "params": loads(params)}
        for position, ref, hint, params in conn.execute(
            f"SELECT r.position, c.coordinate, r.relay_hint, r.params FROM {table} r"  # noqa: S608
            f" JOIN coordinates c ON c.id = r.coordinate_id WHERE r.{owner} = ?"
            " ORDER BY r.position",
            (seq,),
        )
    ]


def exercises(
    conn: apsw.Connection,
    *,
    author: str | None = None,
    search: str | None = None,
    equipment: str | None = None,
    tag: str | None = None,
    limit: int = 1000,
    among: Collection[str] | None = None,
    except_: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """Current exercise definitions, by title.

    ``among``/``except_`` keep only / leave out these authors (the user's own library
    versus the public one).
    """
    escaped = None
    if search:
        escaped = "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    where, args = _where(
        ("x.pubkey = ?", author),
        ("x.title LIKE ? ESCAPE '\\'", escaped),
        ("x.equipment = ?", equipment),
        ("EXISTS (SELECT 1 FROM json_each(x.hashtags) WHERE value = ?)", tag),
        ("x.pubkey IN (SELECT value FROM json_each(?))", _json_list(among)),
        ("x.pubkey NOT IN (SELECT value FROM json_each(?))", _json_list(except_)),
    )
    sql = (
        f"SELECT {_EXERCISE_COLUMNS} FROM exercise_definitions x"  # noqa: S608
        f" JOIN nostr_events e ON e.seq = x.event_seq {where}"
        " ORDER BY x.title, x.coordinate LIMIT ?"
    )
    return [_exercise(row) for row in conn.execute(sql, (*args, limit))]


def exercises_by_coordinate(
    conn: apsw.Connection, coordinates: list[str]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(coordinates), 500):
        chunk = coordinates[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {_EXERCISE_COLUMNS} FROM exercise_definitions x"  # noqa: S608
            f" JOIN nostr_events e ON e.seq = x.event_seq WHERE x.coordinate IN ({marks})",
            chunk,
        ):
            found[row[0]] = _exercise(row)
    return found


def template(conn: apsw.Connection, coordinate: str) -> dict[str, Any] | None:
    """A current template with its exercise references and its missing list."""
    row = conn.execute(
        "SELECT t.event_seq, e.id, t.pubkey, e.d_tag, t.title, t.type, t.rounds, t.duration,"
        " t.interval, t.rest_between_rounds, t.hashtags, t.content, t.created_at,"
        " i.missing_exercises FROM templates t JOIN nostr_events e ON e.seq = t.event_seq"
        " LEFT JOIN incomplete_templates i ON i.template_seq = t.event_seq WHERE t.coordinate = ?",
        (coordinate,),
    ).fetchone()
    if row is None:
        return None
    (
        seq,
        event_id,
        pubkey,
        d,
        title,
        kind_type,
        rounds,
        duration,
        interval,
        rest,
        tags,
        content,
        created,
        missing,
    ) = row
    references = _references(conn, "template_exercises", "template_seq", seq)
    return {
        "coordinate": coordinate,
        "event_id": event_id,
        "pubkey": pubkey,
        "d": d,
        "title": title,
        "type": kind_type,
        "rounds": rounds,
        "duration": duration,
        "interval": interval,
        "rest_between_rounds": rest,
        "hashtags": loads(tags),
        "content": content,
        "created_at": created,
        "missing": loads(missing) if missing else [],
        "references": references,
    }


def records(
    conn: apsw.Connection,
    *,
    author: str | None = None,
    since: int | None = None,
    until: int | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Workout records, newest first by start time, with their sets."""
    where, args = _where(
        ("r.pubkey = ?", author),
        ("coalesce(r.start, r.created_at) >= ?", since),
        ("coalesce(r.start, r.created_at) <= ?", until),
    )
    result: list[dict[str, Any]] = []
    for row in conn.execute(
        'SELECT r.event_seq, r.event_id, r.pubkey, r.kind, r.title, r.type, r.start, r."end",'  # noqa: S608
        " r.completed, r.rounds_completed, r.interval, r.template_coordinate, r.prs, r.hashtags,"
        f" r.content, r.created_at, i.missing_exercises FROM workout_records r"
        f" LEFT JOIN incomplete_templates i ON i.template_seq = r.event_seq {where}"
        " ORDER BY coalesce(r.start, r.created_at) DESC, r.event_id LIMIT ?",
        (*args, limit),
    ):
        (
            seq,
            event_id,
            pubkey,
            kind,
            title,
            kind_type,
            start,
            end,
            completed,
            rounds,
            interval,
            template_coordinate,
            prs,
            tags,
            content,
            created,
            missing,
        ) = row
        sets = _references(conn, "record_sets", "record_seq", seq)
        result.append(
            {
                "event_id": event_id,
                "pubkey": pubkey,
                "kind": kind,
                "title": title,
                "type": kind_type,
                "start": start,
                "end": end,
                "completed": None if completed is None else bool(completed),
                "rounds_completed": rounds,
                "interval": interval,
                "template": template_coordinate,
                "prs": loads(prs),
                "hashtags": loads(tags),
                "content": content,
                "created_at": created,
                "missing": loads(missing) if missing else [],
                "sets": sets,
            }
        )
    return result

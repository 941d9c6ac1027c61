"""Read queries over the processed NIP-101e tables (behind ``library.*``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Sequence
from typing import Any

import apsw

from powrd.protocol.event import loads

Field = tuple[str, str, Callable[[Any], Any] | None]
"""(answer key, SQL expression, decoder of the stored value or None) of one answer field."""


def _json_or_empty(value: str | None) -> Any:
    return loads(value) if value else []


def _unreadable(value: str) -> list[dict[str, Any]]:
    return [{"tag": tag, "warning": warning} for tag, warning in loads(value)]


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


_EXERCISE: tuple[Field, ...] = (
    ("coordinate", "x.coordinate", None),
    ("event_id", "e.id", None),
    ("pubkey", "x.pubkey", None),
    ("d", "e.d_tag", None),
    ("title", "x.title", None),
    ("equipment", "x.equipment", None),
    ("difficulty", "x.difficulty", None),
    ("format", "x.format", loads),
    ("format_units", "x.format_units", loads),
    ("hashtags", "x.hashtags", loads),
    ("content", "x.content", None),
    ("created_at", "x.created_at", None),
)
_TEMPLATE: tuple[Field, ...] = (
    ("coordinate", "t.coordinate", None),
    ("event_id", "e.id", None),
    ("pubkey", "t.pubkey", None),
    ("d", "e.d_tag", None),
    ("title", "t.title", None),
    ("type", "t.type", None),
    ("rounds", "t.rounds", None),
    ("duration", "t.duration", None),
    ("interval", "t.interval", None),
    ("rest_between_rounds", "t.rest_between_rounds", None),
    ("hashtags", "t.hashtags", loads),
    ("content", "t.content", None),
    ("created_at", "t.created_at", None),
    ("missing", "i.missing_exercises", _json_or_empty),
    ("unreadable", "t.unreadable", _unreadable),
)
_RECORD: tuple[Field, ...] = (
    ("event_id", "r.event_id", None),
    ("pubkey", "r.pubkey", None),
    ("kind", "r.kind", None),
    ("title", "r.title", None),
    ("type", "r.type", None),
    ("start", "r.start", None),
    ("end", 'r."end"', None),
    ("completed", "r.completed", _flag),
    ("rounds_completed", "r.rounds_completed", None),
    ("interval", "r.interval", None),
    ("template", "r.template_coordinate", None),
    ("prs", "r.prs", loads),
    ("hashtags", "r.hashtags", loads),
    ("content", "r.content", None),
    ("created_at", "r.created_at", None),
    ("missing", "i.missing_exercises", _json_or_empty),
    ("activity", "r.activity", None),
    ("metrics", "r.metrics", loads),
    ("unreadable", "r.unreadable", _unreadable),
)


# Every exercise answer is read from this join, selecting _select(_EXERCISE).
_EXERCISES_FROM = "FROM exercise_definitions x JOIN nostr_events e ON e.seq = x.event_seq"


def _select(fields: tuple[Field, ...]) -> str:
    """The SELECT list of an answer's fields."""
    return ", ".join(sql for _, sql, _ in fields)


def _answer(fields: tuple[Field, ...], row: Sequence[Any]) -> dict[str, Any]:
    """An answer from a row selected with :func:`_select` (same order)."""
    return {
        key: value if decode is None else decode(value)
        for (key, _, decode), value in zip(fields, row, strict=True)
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
        f"SELECT {_select(_EXERCISE)} {_EXERCISES_FROM} {where}"
        " ORDER BY x.title, x.coordinate LIMIT ?"
    )
    return [_answer(_EXERCISE, row) for row in conn.execute(sql, (*args, limit))]


def exercises_by_coordinate(
    conn: apsw.Connection, coordinates: list[str]
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(coordinates), 500):
        chunk = coordinates[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT {_select(_EXERCISE)} {_EXERCISES_FROM}"
            f" WHERE x.coordinate IN ({marks})",
            chunk,
        ):
            found[row[0]] = _answer(_EXERCISE, row)
    return found


def template(conn: apsw.Connection, coordinate: str) -> dict[str, Any] | None:
    """A current template with its exercise references and its missing list."""
    row = conn.execute(
        f"SELECT t.event_seq, {_select(_TEMPLATE)} FROM templates t"  # noqa: S608
        " JOIN nostr_events e ON e.seq = t.event_seq"
        " LEFT JOIN incomplete_templates i ON i.template_seq = t.event_seq WHERE t.coordinate = ?",
        (coordinate,),
    ).fetchone()
    if row is None:
        return None
    seq, *fields = row
    answer = _answer(_TEMPLATE, fields)
    answer["references"] = _references(conn, "template_exercises", "template_seq", seq)
    return answer


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
    for seq, *fields in conn.execute(
        f"SELECT r.event_seq, {_select(_RECORD)} FROM workout_records r"  # noqa: S608
        f" LEFT JOIN incomplete_templates i ON i.template_seq = r.event_seq {where}"
        " ORDER BY coalesce(r.start, r.created_at) DESC, r.event_id LIMIT ?",
        (*args, limit),
    ):
        answer = _answer(_RECORD, fields)
        answer["sets"] = _references(conn, "record_sets", "record_seq", seq)
        result.append(answer)
    return result

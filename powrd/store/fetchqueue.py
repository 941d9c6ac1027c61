"""The fetch queue of missing coordinates: due entries, attempts, backoff, not_found.

Entries are added by the writer while resolving dependencies (see
:mod:`powrd.store.resolution`) and removed when their coordinate arrives by any path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apsw

from powrd.protocol.event import loads

PENDING = "pending"
IN_FLIGHT = "in_flight"
NOT_FOUND = "not_found"


def entries(conn: apsw.Connection, state: str | None = None) -> list[dict[str, Any]]:
    """Every queue entry (optionally one state), with its dependents count."""
    sql = (
        "SELECT q.coordinate, q.state, q.attempts, q.last_attempt, q.next_attempt, q.last_error,"
        " q.relay_hints, q.added_at,"
        " (SELECT count(*) FROM dependencies d WHERE d.coordinate = q.coordinate)"
        " FROM fetch_queue q"
    )
    args: tuple[Any, ...] = ()
    if state is not None:
        sql += " WHERE q.state = ?"
        args = (state,)
    return [
        {
            "coordinate": coordinate,
            "state": st,
            "attempts": attempts,
            "last_attempt": last_attempt,
            "next_attempt": next_attempt,
            "last_error": last_error,
            "relay_hints": loads(hints),
            "added_at": added_at,
            "dependents": dependents,
        }
        for (
            coordinate,
            st,
            attempts,
            last_attempt,
            next_attempt,
            last_error,
            hints,
            added_at,
            dependents,
        ) in conn.execute(sql + " ORDER BY q.added_at, q.coordinate", args)
    ]


def due(conn: apsw.Connection, now: int, limit: int) -> list[tuple[str, int, str, str, list[str]]]:
    """(coordinate, kind, pubkey, d, relay hints) of entries whose next attempt is due."""
    return [
        (coordinate, kind, pubkey, d_tag, loads(hints))
        for coordinate, kind, pubkey, d_tag, hints in conn.execute(
            "SELECT coordinate, kind, pubkey, d_tag, relay_hints FROM fetch_queue"
            " WHERE state != ? AND next_attempt <= ? ORDER BY next_attempt, coordinate LIMIT ?",
            (IN_FLIGHT, now, limit),
        )
    ]


def next_due(conn: apsw.Connection) -> int | None:
    row = conn.execute(
        "SELECT min(next_attempt) FROM fetch_queue WHERE state != ?", (IN_FLIGHT,)
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def attempts(conn: apsw.Connection, coordinates: Iterable[str]) -> dict[str, int]:
    """The attempts so far of the queued entries among ``coordinates`` (others are absent)."""
    found: dict[str, int] = {}
    for coordinate in coordinates:
        row = conn.execute(
            "SELECT attempts FROM fetch_queue WHERE coordinate = ?", (coordinate,)
        ).fetchone()
        if row is not None:
            found[coordinate] = int(row[0])
    return found


def mark_in_flight(conn: apsw.Connection, coordinates: list[str], now: int) -> None:
    conn.executemany(
        "UPDATE fetch_queue SET state = ?, attempts = attempts + 1, last_attempt = ?"
        " WHERE coordinate = ?",
        [(IN_FLIGHT, now, c) for c in coordinates],
    )


def settle(
    conn: apsw.Connection, coordinate: str, state: str, next_attempt: int, error: str | None
) -> None:
    """Record an attempt's end (the entry is gone already if the coordinate arrived)."""
    conn.execute(
        "UPDATE fetch_queue SET state = ?, next_attempt = ?, last_error = ? WHERE coordinate = ?",
        (state, next_attempt, error, coordinate),
    )


def release_in_flight(conn: apsw.Connection) -> None:
    """At start-up: attempts interrupted by a stop become pending again."""
    conn.execute("UPDATE fetch_queue SET state = ? WHERE state = ?", (PENDING, IN_FLIGHT))


def retry_not_found(conn: apsw.Connection, now: int) -> int:
    """Make every not_found entry due now (a relay was added)."""
    conn.execute(
        "UPDATE fetch_queue SET state = ?, next_attempt = ? WHERE state = ?",
        (PENDING, now, NOT_FOUND),
    )
    return conn.changes()

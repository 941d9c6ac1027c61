"""Reads the local relay endpoint makes: stored events for a REQ, NIP-45 counts, the tail.

A REQ reads each filter with :func:`powrd.store.queries.query_events` (the query behind
``events.query``) inside one read transaction, together with the highest sequence
number that transaction can see, so the endpoint knows which later commits its live
feed still has to send.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import apsw

from powrd.protocol.event import loads
from powrd.protocol.filters import Filter
from powrd.store.filter_sql import filter_clauses
from powrd.store.queries import count, query_events
from powrd.store.raw_events import unpack


def _max_seq(conn: apsw.Connection) -> int:
    row = conn.execute("SELECT coalesce(max(seq), 0) FROM nostr_events").fetchone()
    assert row is not None
    return int(row[0])


def read_stored(conn: apsw.Connection, filters: Sequence[Filter]) -> tuple[list[str], int]:
    """Current events matching any filter (each filter's limit honoured), newest first.

    Returns:
        (raw JSON of the events, the highest ``seq`` the read could see). Ties on
        ``created_at`` are ordered by id, as NIP-01 and ``events.query`` do.
    """
    with conn:  # one read transaction: the events and the sequence number agree
        seen = _max_seq(conn)
        if len(filters) == 1:
            flt = filters[0]
            return query_events(conn, flt, max_limit=flt.limit or 0), seen
        found: dict[str, tuple[int, str]] = {}
        for flt in filters:
            for raw in query_events(conn, flt, max_limit=flt.limit or 0):
                event = loads(raw)
                found.setdefault(event["id"], (event["created_at"], raw))
    ordered = sorted(found.items(), key=lambda item: (-item[1][0], item[0]))
    return [raw for _, (_, raw) in ordered], seen


def _where(flt: Filter) -> tuple[str, list[Any]]:
    clauses, args = filter_clauses(flt)
    return (" AND ".join(clauses) or "1"), args


def count_matching(conn: apsw.Connection, filters: Sequence[Filter]) -> int:
    """How many current events match any of ``filters`` (NIP-45: limits ignored)."""
    parts: list[str] = []
    args: list[Any] = []
    for flt in filters:
        where, more = _where(flt)
        parts.append(f"({where})")
        args.extend(more)
    sql = f"SELECT count(*) FROM nostr_events e WHERE e.current = 1 AND ({' OR '.join(parts)})"  # noqa: S608
    return count(conn, sql, tuple(args))


def latest_seq(conn: apsw.Connection) -> int:
    """The highest sequence number stored (0 when empty): where the live feed starts."""
    return _max_seq(conn)


def committed_after(conn: apsw.Connection, seq: int, limit: int) -> list[tuple[int, str]]:
    """(seq, raw JSON) of current events stored after ``seq``, oldest first, at most ``limit``."""
    return [
        (int(row[0]), unpack(row[1]))
        for row in conn.execute(
            "SELECT seq, raw_event FROM nostr_events WHERE seq > ? AND current = 1"
            " ORDER BY seq LIMIT ?",
            (seq, limit),
        )
    ]

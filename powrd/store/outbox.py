"""The durable outbox: local events waiting for delivery, with per-relay state.

Per relay a delivery is ``pending`` (not tried, or to retry at ``next_attempt``),
``sent`` (awaiting OK), ``accepted``, ``rejected`` (terminal, with the relay's reason) or
``failed`` (the last attempt failed; retried). An outbox entry is done when every
delivery is accepted or rejected.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apsw

from powrd.store.raw_events import unpack

PENDING = "pending"
SENT = "sent"
ACCEPTED = "accepted"
REJECTED = "rejected"
FAILED = "failed"
TERMINAL = (ACCEPTED, REJECTED)


def enqueue(conn: apsw.Connection, event_id: str, relays: Iterable[str], now: int) -> None:
    """Queue a stored local event for every write relay (same transaction as the store)."""
    conn.execute(
        "INSERT OR IGNORE INTO outbox (event_id, queued_at) VALUES (?, ?)", (event_id, now)
    )
    conn.executemany(
        "INSERT OR IGNORE INTO outbox_delivery (event_id, relay_url) VALUES (?, ?)",
        [(event_id, relay) for relay in relays],
    )


def add_relay(conn: apsw.Connection, relay: str) -> int:
    """A write relay was added: every unfinished outbox event is owed to it too."""
    conn.execute(
        "INSERT OR IGNORE INTO outbox_delivery (event_id, relay_url)"
        " SELECT event_id, ? FROM outbox WHERE done = 0",
        (relay,),
    )
    return conn.changes()


def queue_repair(
    conn: apsw.Connection, relay: str, ids: Iterable[str], *, author: str, now: int, limit: int
) -> int:
    """Queue ``author``'s current events among ``ids`` (which ``relay`` lacks) for ``relay``.

    At most ``limit``. A delivery the relay accepted before is owed again (it lost the
    event); one it rejected stays rejected, as for any publish. Returns how many were
    queued.
    """
    wanted = list(ids)
    owned: list[str] = []
    # Chunks keep each statement under SQLite's bound-parameter limit.
    for start in range(0, len(wanted), 500):
        if len(owned) >= limit:
            break
        chunk = wanted[start : start + 500]
        owned.extend(
            event_id
            for (event_id,) in conn.execute(
                f"SELECT id FROM nostr_events WHERE pubkey = ? AND current = 1"  # noqa: S608
                f" AND id IN ({','.join('?' * len(chunk))}) ORDER BY created_at, id LIMIT ?",
                (author, *chunk, limit - len(owned)),
            )
        )
    queued = 0
    for event_id in owned:
        conn.execute(
            "INSERT INTO outbox (event_id, queued_at) VALUES (?, ?)"
            " ON CONFLICT (event_id) DO UPDATE SET done = 0",
            (event_id, now),
        )
        conn.execute(
            "INSERT INTO outbox_delivery (event_id, relay_url) VALUES (?, ?)"
            " ON CONFLICT (event_id, relay_url) DO UPDATE SET state = ?, reason = NULL,"
            " next_attempt = 0 WHERE state = ?",
            (event_id, relay, PENDING, ACCEPTED),
        )
        queued += conn.changes()
    # An entry whose deliveries are all final (this one was rejected before) stays done.
    conn.executemany(
        "UPDATE outbox SET done = NOT EXISTS (SELECT 1 FROM outbox_delivery"
        " WHERE event_id = ? AND state NOT IN (?, ?)) WHERE event_id = ?",
        [(event_id, *TERMINAL, event_id) for event_id in owned],
    )
    return queued


def due(conn: apsw.Connection, relay: str, now: int, limit: int) -> list[tuple[str, str]]:
    """(event id, raw JSON) of deliveries to ``relay`` that should be sent now."""
    return [
        (event_id, unpack(raw))
        for event_id, raw in conn.execute(
            "SELECT d.event_id, e.raw_event FROM outbox_delivery d"
            " JOIN nostr_events e ON e.id = d.event_id"
            " WHERE d.relay_url = ? AND d.state IN (?, ?) AND d.next_attempt <= ?"
            " ORDER BY d.next_attempt, d.event_id LIMIT ?",
            (relay, PENDING, FAILED, now, limit),
        )
    ]


def next_due(conn: apsw.Connection, relay: str) -> int | None:
    row = conn.execute(
        "SELECT min(next_attempt) FROM outbox_delivery WHERE relay_url = ? AND state IN (?, ?)",
        (relay, PENDING, FAILED),
    ).fetchone()
    return None if row is None or row[0] is None else int(row[0])


def record(
    conn: apsw.Connection,
    event_id: str,
    relay: str,
    state: str,
    now: int,
    *,
    reason: str | None = None,
    next_attempt: int = 0,
) -> None:
    """Record one delivery's new state; marks the outbox entry done when all are terminal."""
    attempted = 1 if state == SENT else 0
    conn.execute(
        "UPDATE outbox_delivery SET state = ?, reason = ?, attempts = attempts + ?,"
        " last_attempt = CASE WHEN ? THEN ? ELSE last_attempt END, next_attempt = ?"
        " WHERE event_id = ? AND relay_url = ?",
        (state, reason, attempted, attempted, now, next_attempt, event_id, relay),
    )
    conn.execute(
        "UPDATE outbox SET done = NOT EXISTS (SELECT 1 FROM outbox_delivery"
        " WHERE event_id = ? AND state NOT IN (?, ?)) WHERE event_id = ?",
        (event_id, *TERMINAL, event_id),
    )


def release_sent(conn: apsw.Connection) -> None:
    """At start-up: deliveries sent before a stop without an OK are pending again."""
    conn.execute("UPDATE outbox_delivery SET state = ? WHERE state = ?", (PENDING, SENT))


def entries(conn: apsw.Connection, *, pending_only: bool = False) -> list[dict[str, Any]]:
    sql = (
        "SELECT o.event_id, o.queued_at, o.done, e.kind FROM outbox o"
        " LEFT JOIN nostr_events e ON e.id = o.event_id"
    )
    if pending_only:
        sql += " WHERE o.done = 0"
    result: list[dict[str, Any]] = []
    for event_id, queued_at, done, kind in conn.execute(sql + " ORDER BY o.queued_at, o.event_id"):
        deliveries = [
            {
                "relay": relay,
                "state": state,
                "reason": reason,
                "attempts": attempts,
                "last_attempt": last_attempt,
                "next_attempt": next_attempt,
            }
            for relay, state, reason, attempts, last_attempt, next_attempt in conn.execute(
                "SELECT relay_url, state, reason, attempts, last_attempt, next_attempt"
                " FROM outbox_delivery WHERE event_id = ? ORDER BY relay_url",
                (event_id,),
            )
        ]
        result.append(
            {
                "event_id": event_id,
                "kind": kind,
                "queued_at": queued_at,
                "done": bool(done),
                "deliveries": deliveries,
            }
        )
    return result


def attempts(conn: apsw.Connection, event_id: str, relay: str) -> int | None:
    row = conn.execute(
        "SELECT attempts FROM outbox_delivery WHERE event_id = ? AND relay_url = ?",
        (event_id, relay),
    ).fetchone()
    return None if row is None else int(row[0])

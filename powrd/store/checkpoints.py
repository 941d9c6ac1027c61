"""Per-relay sync checkpoints: the ``since`` each subscription may resume from."""

from __future__ import annotations

import apsw


def get(conn: apsw.Connection, relay_url: str, scope: str) -> int | None:
    row = conn.execute(
        "SELECT since FROM sync_checkpoints WHERE relay_url = ? AND scope = ?", (relay_url, scope)
    ).fetchone()
    return None if row is None else int(row[0])


def advance(conn: apsw.Connection, relay_url: str, scope: str, since: int, now: int) -> None:
    """Move the checkpoint forward (never backward); a writer operation."""
    conn.execute(
        "INSERT INTO sync_checkpoints (relay_url, scope, since, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (relay_url, scope) DO UPDATE SET since = max(since, excluded.since),"
        " updated_at = excluded.updated_at",
        (relay_url, scope, since, now),
    )


def reset(conn: apsw.Connection, relay_url: str | None = None) -> None:
    if relay_url is None:
        conn.execute("DELETE FROM sync_checkpoints")
    else:
        conn.execute("DELETE FROM sync_checkpoints WHERE relay_url = ?", (relay_url,))

"""``cache_metadata``: how recently, how often and how importantly content was used.

The query cache and the media service record accesses in memory and hand them over in
batches (:func:`record_accesses`, one writer operation per flush), so a cache hit never
costs a write. Media eviction reads these rows to decide what goes first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import apsw

from powrd.protocol.event import dumps


@dataclass(frozen=True, slots=True)
class Access:
    """Accesses to one content id since the last flush.

    Attributes:
        content_id: a coordinate (``33402:<pubkey>:<d>``) or an event id.
        content_type: ``template``, ``exercise``, ``record`` or ``event``.
        last_accessed: unix seconds of the latest access.
        count: how many accesses the batch stands for.
        priority: the content's priority as of the latest access (higher is kept longer).
    """

    content_id: str
    content_type: str
    last_accessed: int
    count: int
    priority: int


def record_accesses(conn: apsw.Connection, accesses: Iterable[Access]) -> int:
    """Merge a batch of accesses into ``cache_metadata`` (a writer operation).

    The latest access time wins, counts add up, and the priority is replaced: who owns
    what can change (a config reload), so the newest judgement is the one that holds.

    Returns:
        How many rows were written.
    """
    rows = [
        (a.content_id, a.content_type, a.last_accessed, a.count, a.priority) for a in accesses
    ]
    conn.executemany(
        "INSERT INTO cache_metadata (content_id, content_type, last_accessed, access_count,"
        " priority) VALUES (?, ?, ?, ?, ?) ON CONFLICT (content_id) DO UPDATE SET"
        " content_type = excluded.content_type,"
        " last_accessed = max(last_accessed, excluded.last_accessed),"
        " access_count = access_count + excluded.access_count,"
        " priority = excluded.priority",
        rows,
    )
    return len(rows)


def entry(conn: apsw.Connection, content_id: str) -> Access | None:
    """The stored metadata of one content id (``count`` is the total access count)."""
    row = conn.execute(
        "SELECT content_id, content_type, last_accessed, access_count, priority"
        " FROM cache_metadata WHERE content_id = ?",
        (content_id,),
    ).fetchone()
    return None if row is None else Access(*row)


def prune(conn: apsw.Connection, keep: int) -> int:
    """Bound the table to ``keep`` rows, dropping low priority, then least recent, first.

    Returns:
        How many rows were deleted.
    """
    rows = int(conn.execute("SELECT count(*) FROM cache_metadata").fetchall()[0][0] or 0)
    if rows <= keep:
        return 0
    conn.execute(
        "DELETE FROM cache_metadata WHERE content_id IN (SELECT content_id FROM cache_metadata"
        " ORDER BY priority DESC, last_accessed DESC, content_id LIMIT -1 OFFSET ?)",
        (max(0, keep),),
    )
    return conn.changes()


def referenced_by_authors(
    conn: apsw.Connection, coordinate: str, authors: Iterable[str]
) -> bool:
    """Whether a current workout template by one of ``authors`` references ``coordinate``."""
    wanted = sorted(set(authors))
    if not wanted:
        return False
    # dependencies is indexed by coordinate; only current events keep their rows there.
    row = conn.execute(
        "SELECT 1 FROM dependencies d JOIN nostr_events e ON e.seq = d.dependent_seq"
        " WHERE d.coordinate = ? AND e.kind = 33402"
        " AND e.pubkey IN (SELECT value FROM json_each(?)) LIMIT 1",
        (coordinate, dumps(wanted)),
    ).fetchone()
    return row is not None

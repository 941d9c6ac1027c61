"""POWR lists (NIP-51 kind 30003) as collections, read back with their members.

They are written by :mod:`powrd.store.processed` like every processed table. Members
that are not stored are ordinary dependencies (``dependency_refs``), so they are
resolved, queued and re-resolved exactly like a template's exercises.
"""

from __future__ import annotations

from typing import Any

import apsw

from powrd.protocol.event import loads


def collections(conn: apsw.Connection, author: str | None = None) -> list[dict[str, Any]]:
    """Current collections, by author and d, each with its members and what is missing."""
    where = "WHERE l.pubkey = ?" if author is not None else ""
    found: list[dict[str, Any]] = []
    for seq, coordinate, d, title, created, missing in conn.execute(
        "SELECT l.event_seq, l.coordinate, l.d_tag, l.title, l.created_at,"  # noqa: S608
        " i.missing_exercises FROM collections l"
        f" LEFT JOIN incomplete_templates i ON i.template_seq = l.event_seq {where}"
        " ORDER BY l.pubkey, l.d_tag",
        (author,) if author is not None else (),
    ):
        absent = set(loads(missing)) if missing else set()
        members: list[dict[str, Any]] = []
        kind_counts: dict[str, int] = {}
        for member, kind in conn.execute(
            "SELECT c.coordinate, c.kind FROM collection_members m"
            " JOIN coordinates c ON c.id = m.coordinate_id WHERE m.collection_seq = ?"
            " ORDER BY m.position",
            (seq,),
        ):
            members.append({"coordinate": member, "present": member not in absent})
            kind_counts[str(kind)] = kind_counts.get(str(kind), 0) + 1
        found.append(
            {
                "coordinate": coordinate,
                "d": d,
                "title": title,
                "created_at": created,
                "kind_counts": kind_counts,
                "members": members,
                "missing": sorted(absent),
            }
        )
    return found

"""POWR lists (NIP-51 kind 30003) as collections: writing their members and reading them.

A collection's members that are not stored are ordinary dependencies (``dependency_refs``):
the writer path that calls :func:`write` also writes those, so missing members are
resolved, queued and re-resolved exactly like a template's exercises.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apsw

from powrd.protocol.event import Event, loads
from powrd.store.rows import CollectionRow


def write(
    conn: apsw.Connection, seq: int, event: Event, row: CollectionRow, ids: Mapping[str, int]
) -> None:
    """Insert one current list and its members; ``ids`` interns every member coordinate."""
    conn.execute(
        "INSERT INTO collections (event_seq, coordinate, pubkey, d_tag, title, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (seq, event.coordinate, event.pubkey, event.d_tag or "", row.title, event.created_at),
    )
    conn.executemany(
        "INSERT INTO collection_members (collection_seq, position, coordinate_id, relay_hint)"
        " VALUES (?, ?, ?, ?)",
        [
            (seq, position, ids[member.coordinate], member.relay_hint)
            for position, member in enumerate(row.members)
        ],
    )


def remove(conn: apsw.Connection, seq: int) -> None:
    """Drop a list that is no longer current (its members go with it)."""
    conn.execute("DELETE FROM collections WHERE event_seq = ?", (seq,))


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

"""Demoting the stored versions that a run (:mod:`powrd.store.runs`) replaces.

When a newer version of an address arrives, the old version stops being current and
loses its processed rows (:data:`powrd.store.processed.OWNED`). Everything here
happens before the run's own events are inserted, so the old versions'
``exercise_definitions`` and ``templates`` rows are gone before the new ones (same
coordinate) go in.

One step depends on order: stored one at a time, a replacement drops a fetch-queue
entry that the old version needed when, at that moment, nothing else needs it any
more; the run's events that came before the replacing one count, those after it do
not. :func:`demote` replays that decision from the run's order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import apsw

from powrd.protocol.event import dumps
from powrd.store import processed

NeededBefore = Callable[[str, int], bool]
"""(coordinate, position) -> whether a run event before ``position`` depends on it."""


def demote(
    conn: apsw.Connection, replaced: Sequence[tuple[int, int]], needed_before: NeededBefore
) -> None:
    """Make old versions not current and drop their processed rows.

    Args:
        conn: the writer connection, inside the batch's transaction.
        replaced: (seq of the old version, run position of the replacing event), in
            run order.
        needed_before: tells whether a run event before a position depends on a
            coordinate (it then keeps that coordinate's fetch-queue entry alive).
    """
    seqs = [seq for seq, _ in replaced]
    listed = (dumps(seqs),)
    conn.executemany("UPDATE nostr_events SET current = 0 WHERE seq = ?", [(s,) for s in seqs])
    needs: dict[int, set[str]] = {}
    for seq, coordinate in conn.execute(
        "SELECT r.dependent_seq, c.coordinate FROM dependency_refs r"
        " JOIN coordinates c ON c.id = r.coordinate_id"
        " WHERE r.dependent_seq IN (SELECT value FROM json_each(?))",
        listed,
    ):
        needs.setdefault(seq, set()).add(coordinate)
    processed.delete_owned(conn, listed[0])
    if needs:
        _drop_unneeded_fetches(conn, replaced, needs, needed_before)


def _drop_unneeded_fetches(
    conn: apsw.Connection,
    replaced: Sequence[tuple[int, int]],
    needs: dict[int, set[str]],
    needed_before: NeededBefore,
) -> None:
    """Drop the queue entries that storing one at a time drops with the old versions."""
    queued = {
        row[0]
        for row in conn.execute(
            "SELECT coordinate FROM fetch_queue"
            " WHERE coordinate IN (SELECT value FROM json_each(?))",
            (dumps(sorted(set().union(*needs.values()))),),
        )
    }
    if not queued:
        return
    # Dependents other than the old versions (whose references are gone by now).
    still_needed = {
        row[0]
        for row in conn.execute(
            "SELECT c.coordinate FROM coordinates c"
            " WHERE c.coordinate IN (SELECT value FROM json_each(?))"
            " AND EXISTS (SELECT 1 FROM dependency_refs r WHERE r.coordinate_id = c.id)",
            (dumps(sorted(queued)),),
        )
    }
    dropped: list[tuple[str]] = []
    for coordinate in sorted(queued - still_needed):
        for index, (seq, position) in enumerate(replaced):
            if coordinate not in needs.get(seq, ()):
                continue
            # At this replacement, old versions replaced later still hold their references.
            later = any(coordinate in needs.get(other, ()) for other, _ in replaced[index + 1 :])
            if not later and not needed_before(coordinate, position):
                dropped.append((coordinate,))
                break
    if dropped:
        conn.executemany("DELETE FROM fetch_queue WHERE coordinate = ?", dropped)

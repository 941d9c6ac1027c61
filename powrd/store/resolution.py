"""Whether templates and records are complete, and the fetch queue of what they miss.

A template or record is *complete* when a current event is stored for every coordinate
it depends on (its ``dependency_refs``). Otherwise it has a row in
``incomplete_templates`` listing what is missing, and each missing coordinate is in
``fetch_queue`` with the relay hints its dependents gave. Whenever a coordinate arrives
or disappears, its dependents are re-resolved in the same transaction.

Resolution is a function of what is current, so many dependents are resolved with one
query for all their absent references; the fetch queue is then read and written once.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import apsw

from powrd.protocol.coordinates import split_coordinate
from powrd.protocol.event import dumps, loads
from powrd.store.batch import BatchResult, content_label
from powrd.store.rows import Reference

INCOMPLETE_UPSERT = (
    "INSERT INTO incomplete_templates (template_seq, kind, missing_exercise_count,"
    " missing_exercises) VALUES (?, ?, ?, ?) ON CONFLICT (template_seq) DO UPDATE SET"
    " missing_exercise_count = excluded.missing_exercise_count,"
    " missing_exercises = excluded.missing_exercises"
)

Missing = dict[int, list[tuple[str, str | None]]]
"""Dependent seq -> its absent (coordinate, relay hint) references, by coordinate."""


def _missing_references_sql(selector: str) -> str:
    """Absent references of the dependents a fixed WHERE clause on ``r`` picks.

    Rows are (dependent_seq, coordinate, relay_hint), by dependent, then coordinate.
    """
    return (
        "SELECT r.dependent_seq, c.coordinate, r.relay_hint FROM dependency_refs r"  # noqa: S608
        f" JOIN coordinates c ON c.id = r.coordinate_id WHERE {selector}"
        " AND NOT EXISTS (SELECT 1 FROM nostr_events e WHERE e.kind = c.kind"
        " AND e.pubkey = c.pubkey AND e.d_tag = c.d_tag AND e.current = 1)"
        " ORDER BY r.dependent_seq, c.coordinate"
    )


_MISSING_OF_LISTED = _missing_references_sql("r.dependent_seq IN (SELECT value FROM json_each(?))")


def is_present(conn: apsw.Connection, coordinate: str) -> bool:
    """Whether a current event is stored for ``coordinate``."""
    address = split_coordinate(coordinate)
    if address is None:
        return False
    row = conn.execute(
        "SELECT 1 FROM nostr_events WHERE kind = ? AND pubkey = ? AND d_tag = ? AND current = 1",
        address,
    ).fetchone()
    return row is not None


def merge_hints(known: list[str], hints: Iterable[str]) -> list[str]:
    """``known`` followed by the hints it lacks, in the order given."""
    return known + [h for h in hints if h not in known]


def resolve_listed(
    conn: apsw.Connection, dependents: Mapping[int, int], missing_out: set[str]
) -> None:
    """Recompute, with one query, whether each dependent (seq -> kind) is complete."""
    if not dependents:
        return
    missing: Missing = {}
    _collect(conn, _MISSING_OF_LISTED, (dumps(list(dependents)),), missing)
    _record(conn, dependents, missing, missing_out)


def dependents_of(
    conn: apsw.Connection, coordinates: Sequence[str], before_seq: int | None = None
) -> dict[int, tuple[int, str]]:
    """seq -> (kind, content id) of the stored events depending on any of ``coordinates``.

    Args:
        conn: a connection.
        coordinates: the coordinates depended on.
        before_seq: only dependents stored before this seq, when given.
    """
    return {
        seq: (kind, content_label(kind, pubkey, d_tag, event_id))
        for seq, kind, event_id, pubkey, d_tag in conn.execute(
            "SELECT DISTINCT r.dependent_seq, e.kind, e.id, e.pubkey, e.d_tag"
            " FROM coordinates c JOIN dependency_refs r ON r.coordinate_id = c.id"
            " JOIN nostr_events e ON e.seq = r.dependent_seq"
            " WHERE c.coordinate IN (SELECT value FROM json_each(?)) AND r.dependent_seq < ?"
            " ORDER BY r.dependent_seq",
            (dumps(list(coordinates)), before_seq if before_seq is not None else 2**63 - 1),
        )
    }


def reresolve_dependents(
    conn: apsw.Connection, coordinate: str, missing_out: set[str], changed: set[str]
) -> None:
    """A coordinate arrived or went away: re-resolve everything that depends on it."""
    if is_present(conn, coordinate):
        conn.execute("DELETE FROM fetch_queue WHERE coordinate = ?", (coordinate,))
    dependents = dependents_of(conn, [coordinate])
    resolve_listed(conn, {seq: kind for seq, (kind, _) in dependents.items()}, missing_out)
    changed.update(label for _, label in dependents.values())


def resolve_run(
    conn: apsw.Connection,
    dependents: Sequence[tuple[int, int, Sequence[Reference]]],
    arrivals: Collection[str],
    first_seq: int,
    result: BatchResult,
    *,
    coordinate_ids: Mapping[str, int],
) -> None:
    """Resolve a run's new dependents and re-resolve older dependents of its arrivals.

    A run (see :mod:`powrd.store.runs`) only makes coordinates current: it adds events
    and replaces versions stored before it, and nothing in it is deleted. So each
    dependent's state at the end of the run is what storing one at a time leaves after
    resolving it at its own arrival and again at every later arrival it needs.

    Args:
        conn: the writer connection, inside the batch's transaction.
        dependents: (seq, kind, dependencies) of every new event in the run that has
            dependencies (its ``dependency_refs`` are written).
        arrivals: coordinates of the run's new current addressable events.
        first_seq: the run's first seq; every older event has a smaller one.
        result: receives coordinates newly added to the fetch queue (``missing``) and
            content ids of re-resolved older dependents (``changed``).
        coordinate_ids: the interned id of every coordinate the dependents name.
    """
    missing = _missing_of_new(conn, dependents, arrivals, coordinate_ids)
    kinds = {seq: kind for seq, kind, _ in dependents}
    if arrivals:
        older = dependents_of(conn, list(arrivals), before_seq=first_seq)
        if older:
            _collect(conn, _MISSING_OF_LISTED, (dumps(list(older)),), missing)
            result.changed.update(label for _, label in older.values())
            kinds.update((seq, kind) for seq, (kind, _) in older.items())
            _delete_incomplete(conn, [seq for seq in older if seq not in missing])
        conn.execute(
            "DELETE FROM fetch_queue WHERE coordinate IN (SELECT value FROM json_each(?))",
            (dumps(list(arrivals)),),
        )
    # New dependents have no incomplete row to delete: their seqs were never used.
    _record(conn, {seq: kinds[seq] for seq in missing}, missing, result.missing)


def _missing_of_new(
    conn: apsw.Connection,
    dependents: Sequence[tuple[int, int, Sequence[Reference]]],
    arrivals: Collection[str],
    coordinate_ids: Mapping[str, int],
) -> Missing:
    """What new dependents miss, from one query over their distinct coordinates.

    Equivalent to :func:`resolve_listed`'s query: the first reference to a coordinate gives
    its relay hint (``dependency_refs`` ignores repeats), and coordinates are ordered.
    """
    wanted = {ref.coordinate for _, _, refs in dependents for ref in refs}
    unsure = wanted.difference(arrivals)  # what arrived in the run is current
    absent = _absent(conn, [coordinate_ids[c] for c in unsure]) if unsure else set()
    missing: Missing = {}
    if not absent:
        return missing
    for seq, _, refs in dependents:
        lacking: dict[str, str | None] = {}
        for ref in refs:
            if ref.coordinate in absent and ref.coordinate not in lacking:
                lacking[ref.coordinate] = ref.relay_hint
        if lacking:
            missing[seq] = sorted(lacking.items())
    return missing


def _absent(conn: apsw.Connection, coordinate_ids: list[int]) -> set[str]:
    """The interned coordinates, by id, that have no current event stored."""
    return {
        row[0]
        for row in conn.execute(
            "SELECT c.coordinate FROM coordinates c"
            " WHERE c.id IN (SELECT value FROM json_each(?)) AND NOT EXISTS (SELECT 1"
            " FROM nostr_events e WHERE e.kind = c.kind AND e.pubkey = c.pubkey"
            " AND e.d_tag = c.d_tag AND e.current = 1)",
            (dumps(coordinate_ids),),
        )
    }


def _collect(conn: apsw.Connection, sql: str, args: tuple[Any, ...], missing: Missing) -> None:
    for seq, coordinate, hint in conn.execute(sql, args):
        missing.setdefault(seq, []).append((coordinate, hint))


def _delete_incomplete(conn: apsw.Connection, seqs: list[int]) -> None:
    if seqs:
        conn.executemany(
            "DELETE FROM incomplete_templates WHERE template_seq = ?", [(seq,) for seq in seqs]
        )


def _record(
    conn: apsw.Connection, kinds: Mapping[int, int], missing: Missing, missing_out: set[str]
) -> None:
    """Write the incomplete rows of ``kinds``' dependents and queue what they miss."""
    _delete_incomplete(conn, [seq for seq in kinds if seq not in missing])
    if not missing:
        return
    conn.executemany(
        INCOMPLETE_UPSERT,
        [
            (seq, kinds[seq], len(refs), dumps([coordinate for coordinate, _ in refs]))
            for seq, refs in missing.items()
        ],
    )
    _enqueue(conn, missing, missing_out)


def _enqueue(conn: apsw.Connection, missing: Missing, missing_out: set[str]) -> None:
    """Queue every missing coordinate, merging relay hints in dependent order."""
    wanted: dict[str, list[str]] = {}
    for seq in sorted(missing):
        for coordinate, hint in missing[seq]:
            hints = wanted.setdefault(coordinate, [])
            if hint and hint not in hints:
                hints.append(hint)
    queued: dict[str, list[str]] = {
        coordinate: loads(hints)
        for coordinate, hints in conn.execute(
            "SELECT coordinate, relay_hints FROM fetch_queue"
            " WHERE coordinate IN (SELECT value FROM json_each(?))",
            (dumps(list(wanted)),),
        )
    }
    new: list[tuple[object, ...]] = []
    merged: list[tuple[str, str]] = []
    for coordinate, hints in wanted.items():
        address = split_coordinate(coordinate)
        if address is None:
            continue  # listed as missing, but there is nothing to ask a relay for
        if coordinate not in queued:
            new.append((coordinate, *address, dumps(hints)))
            missing_out.add(coordinate)
        elif (now_known := merge_hints(queued[coordinate], hints)) != queued[coordinate]:
            merged.append((dumps(now_known), coordinate))
    if new:
        conn.executemany(
            "INSERT INTO fetch_queue (coordinate, kind, pubkey, d_tag, relay_hints, added_at)"
            " VALUES (?, ?, ?, ?, ?, CAST(strftime('%s', 'now') AS INTEGER))",
            new,
        )
    if merged:
        conn.executemany("UPDATE fetch_queue SET relay_hints = ? WHERE coordinate = ?", merged)

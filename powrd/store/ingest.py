"""The writer's half of the one path every event takes, from any source.

:func:`ingest` runs inside a writer transaction for a batch of events that already
passed validation (shape, policy, id, signature). It plans the batch as runs and
stores each run with :func:`powrd.store.runs.store`: duplicate check, deletion
tombstones, addressable/replaceable replacement, the raw event and its tags, the
processed NIP-101e rows and the dependency bookkeeping (incomplete templates, fetch
queue, re-resolution of dependents); then a stored deletion is applied.

The result is the same as storing the events one at a time, in input order. Most
events do not depend on each other, so a run holds as many as it can; an event whose
effect depends on what came before it in the batch is a run of one:

* a kind 5 deletion (it removes and tombstones what it names, which later events meet);
* an addressable or replaceable event whose address appeared earlier in the batch
  (replacement compares it with a version the batch itself stored);
* an event id seen earlier in the batch (it is a duplicate of that one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import apsw

from powrd.store import deletion, runs
from powrd.store.batch import (
    DUPLICATE,
    REJECTED,
    STORED,
    SUPERSEDED,
    Address,
    BatchResult,
    IngestItem,
    Outcome,
    event_address,
)
from powrd.store.deletion import expire

__all__ = [
    "DUPLICATE",
    "REJECTED",
    "STORED",
    "SUPERSEDED",
    "BatchResult",
    "IngestItem",
    "Outcome",
    "expire",
    "ingest",
    "log_rejections",
    "plan",
]


def plan(items: Sequence[IngestItem]) -> Iterator[list[runs.Planned]]:
    """The batch as runs, in input order (see the module docstring)."""
    seen_ids: set[str] = set()
    seen_addresses: set[Address] = set()
    run: list[runs.Planned] = []
    for item in items:
        event = item.event
        address = event_address(event)
        alone = (
            event.kind == deletion.KIND_DELETION
            or event.id in seen_ids
            or (address is not None and address in seen_addresses)
        )
        seen_ids.add(event.id)
        if address is not None:
            seen_addresses.add(address)
        if alone:
            if run:
                yield run
                run = []
            yield [(item, address)]
        else:
            run.append((item, address))
    if run:
        yield run


def ingest(conn: apsw.Connection, items: Sequence[IngestItem], now: int) -> BatchResult:
    """Store a batch of validated events (a writer operation).

    Returns:
        One outcome per item in input order, plus what the batch made current, queued
        for fetching, invalidated and deleted.
    """
    result = BatchResult()
    coordinate_ids: dict[str, int] = {}
    for run in plan(items):
        runs.store(conn, run, now, result, coordinate_ids)
        event = run[0][0].event
        if event.kind == deletion.KIND_DELETION and result.outcomes[-1].status == STORED:
            deletion.apply(conn, event, result)
    result.missing -= result.arrived
    return result


def log_rejections(
    conn: apsw.Connection, rejections: Sequence[tuple[str | None, str, str]], now: int, keep: int
) -> None:
    """Append (event_id, source, reason) rows to the bounded rejected-events log."""
    if not rejections:
        return
    conn.executemany(
        "INSERT INTO rejected_events (event_id, source, reason, received_at) VALUES (?, ?, ?, ?)",
        [(event_id, source, reason, now) for event_id, source, reason in rejections],
    )
    last = conn.last_insert_rowid()
    conn.execute("DELETE FROM rejected_events WHERE seq <= ?", (last - keep,))

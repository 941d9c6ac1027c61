"""``powrd reindex``: rebuild processed tables from raw events and report the difference."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import apsw

from powrd.library.process import process
from powrd.protocol.event import Event, loads, parse_event
from powrd.store import queries, rebuild
from powrd.store.rows import Processed


@dataclass(frozen=True, slots=True)
class ReindexReport:
    before: dict[str, object]
    after: dict[str, object]

    @property
    def changed(self) -> dict[str, tuple[object, object]]:
        return {
            key: (self.before[key], self.after[key])
            for key in self.after
            if self.before.get(key) != self.after[key]
        }


def _processed_items(
    conn: apsw.Connection, progress: Callable[[int], None] | None = None
) -> Iterator[tuple[int, Event, Processed]]:
    for done, (seq, raw) in enumerate(queries.iter_current_events(conn), start=1):
        event = parse_event(loads(raw))
        yield seq, event, process(event)
        if progress is not None:
            progress(done)


def reindex(
    conn: apsw.Connection, progress: Callable[[int], None] | None = None
) -> ReindexReport:
    """A writer operation: rebuild in place and return what changed.

    ``progress`` is called with the number of events processed so far (for a progress line).
    """
    before = rebuild.snapshot(conn)
    rebuild.rebuild(conn, list(_processed_items(conn, progress)))
    return ReindexReport(before, rebuild.snapshot(conn))

"""Turning a store back into what an older powrd left, to test the migrations on it."""

from __future__ import annotations

from pathlib import Path

import apsw

from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline

NOW = 1_800_000_000


def stored(path: Path, events: list[str]) -> Store:
    """A store at ``path`` that the pipeline gave ``events`` (close it when done)."""
    store = Store(path)
    pipeline = Pipeline(store, Policy(max_event_bytes=131072, max_future_seconds=900),
                        clock=lambda: NOW)
    pipeline.submit_blocking("test", [(loads(e), len(e.encode())) for e in events])
    return store


def undo_row_counts(conn: apsw.Connection) -> None:
    """Remove what migration 7 added: the count tables and the triggers that keep them."""
    for (trigger,) in list(conn.execute("SELECT name FROM sqlite_schema WHERE type = 'trigger'")):
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE row_counts")
    conn.execute("DROP TABLE current_events")

"""The store's negentropy items: same events as a NIP-01 query, read from the index alone."""

from __future__ import annotations

import json
import random
from pathlib import Path

import apsw
import pytest

from powrd.library.process import process
from powrd.protocol.event import Event
from powrd.protocol.filters import Filter
from powrd.protocol.negentropy import StorageVector
from powrd.store import ingest
from powrd.store.batch import IngestItem
from powrd.store.database import open_writer_connection
from powrd.store.negentropy_items import count_negentropy_items, negentropy_items, query_plan
from powrd.store.queries import query_events
from powrd.store.schema import LATEST_VERSION

AUTHORS = [f"{n:064x}" for n in range(1, 4)]
BASE = 1_650_000_000


def event(
    rnd: random.Random, kind: int, author: str, created_at: int, tags: list[list[str]]
) -> Event:
    return Event(rnd.randbytes(32).hex(), author, created_at, kind, tags, "", "00" * 64)


@pytest.fixture
def store(tmp_path: Path) -> apsw.Connection:
    """A real SQLite file with records, exercises (some replaced) and tagged events."""
    conn = open_writer_connection(tmp_path / "powrd.db")
    rnd = random.Random(77)
    events = []
    for n in range(600):
        author = AUTHORS[n % 3]
        events.append(event(rnd, 1301, author, BASE + n // 4, [["t", f"tag{n % 5}"]]))
    for n in range(60):
        author = AUTHORS[n % 2]
        # Two versions per address: only the newer one is current.
        for version in range(2):
            events.append(
                event(rnd, 33401, author, BASE + 1000 + n * 10 + version, [["d", f"ex{n}"]])
            )
    with conn:
        ingest.ingest(conn, [IngestItem(e, "test", process(e)) for e in events], BASE + 10_000)
    return conn


FILTERS = [
    Filter(),
    Filter(kinds=frozenset({1301})),
    Filter(kinds=frozenset({1301, 33401, 33402}), authors=frozenset({AUTHORS[0]})),
    Filter(kinds=frozenset({33401})),
    Filter(authors=frozenset(AUTHORS[1:])),
    Filter(kinds=frozenset({1301}), since=BASE + 20, until=BASE + 90),
    Filter(kinds=frozenset({1301}), tags={"t": frozenset({"tag1", "tag3"})}),
    Filter(kinds=frozenset({7})),
]


@pytest.mark.parametrize("flt", FILTERS)
def test_items_are_the_current_events_a_query_returns(store: apsw.Connection, flt: Filter) -> None:
    expected = {
        (e["created_at"], bytes.fromhex(e["id"]))
        for e in map(json.loads, query_events(store, flt, max_limit=10**6))
    }
    items = negentropy_items(store, flt)
    assert len(items) == len(expected) == count_negentropy_items(store, flt)
    assert set(items) == expected
    StorageVector.seal(items)  # the shape and ids negentropy needs


def test_superseded_versions_are_left_out(store: apsw.Connection) -> None:
    assert len(negentropy_items(store, Filter(kinds=frozenset({33401})))) == 60


def test_limit_does_not_cut_the_set(store: apsw.Connection) -> None:
    assert len(negentropy_items(store, Filter(kinds=frozenset({1301}), limit=5))) == 600


@pytest.mark.parametrize(
    "flt",
    [
        Filter(kinds=frozenset({1301})),
        Filter(kinds=frozenset({1301, 33401}), authors=frozenset(AUTHORS[:2])),
        Filter(kinds=frozenset({1301}), tags={"t": frozenset({"tag1"})}),
        Filter(),
    ],
)
def test_sync_filters_read_only_the_covering_index(store: apsw.Connection, flt: Filter) -> None:
    plan = query_plan(store, flt)
    assert "COVERING INDEX nostr_events_negentropy" in plan[0], plan


def test_fresh_database_has_the_negentropy_index(store: apsw.Connection) -> None:
    (version,) = store.execute("PRAGMA user_version").fetchone()
    assert version == LATEST_VERSION
    names = {row[0] for row in store.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "nostr_events_negentropy" in names


def test_a_responder_reads_at_most_limit_items(store: apsw.Connection) -> None:
    assert len(negentropy_items(store, Filter(kinds=frozenset({1301})), limit=11)) == 11

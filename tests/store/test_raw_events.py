"""Stored events are packed (deflate with a preset dictionary) and read back exactly.

Rows from before packing are TEXT; they are read as they are, beside packed rows.
"""

from __future__ import annotations

from pathlib import Path

import apsw
import pytest
from hypothesis import given
from hypothesis import strategies as st

from powrd.protocol.event import dumps, loads
from powrd.protocol.validate import Policy
from powrd.store import queries
from powrd.store.raw_events import pack, unpack
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.events import keys_for, make_exercise, make_record

NOW = 1_800_000_000
ALICE = keys_for("raw-events", 0)


@given(st.text())
def test_any_text_round_trips(text: str) -> None:
    assert unpack(pack(text)) == text


def test_lone_surrogates_round_trip() -> None:
    text = dumps({"content": "\ud800 and \udfff alone"})
    assert unpack(pack(text)) == text


def test_text_rows_from_before_packing_are_read_as_they_are() -> None:
    assert unpack('{"id":"x"}') == '{"id":"x"}'


def test_an_unknown_format_is_an_error_not_garbage() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        unpack(b"\x07whatever")


def test_a_workout_record_packs_to_well_under_half() -> None:
    lift = f"33401:{'ab' * 32}:bench-press"
    raw = make_record(ALICE, "monday", [(lift, "", "80", "5", "8", "normal")] * 12)
    assert len(pack(raw)) < len(raw.encode()) / 2


def test_a_store_reads_packed_and_text_rows_alike(tmp_path: Path) -> None:
    events = [make_exercise(ALICE, f"lift-{n}", title=f"Lift {n}") for n in range(4)]
    with Store(tmp_path / "powrd.db") as store:
        pipeline = Pipeline(store, Policy(max_event_bytes=131072, max_future_seconds=900),
                            clock=lambda: NOW)
        pipeline.submit_blocking("test", [(loads(e), len(e.encode())) for e in events])
        kinds = {row[0] for row in store.reader().execute(
            "SELECT typeof(raw_event) FROM nostr_events")}
        assert kinds == {"blob"}
        first_id = loads(events[0])["id"]
        # As an older version stored it: the JSON as TEXT.
        store.writer.call(lambda conn: conn.execute(
            "UPDATE nostr_events SET raw_event = ? WHERE id = ?", (events[0], first_id)))
        reader = store.reader()
        assert sorted(queries.iter_raw_events(reader)) == sorted(events)
        assert queries.event_by_id(reader, first_id) == events[0]
        # The SQL function reads both forms too.
        kinds_read = [row[0] for row in reader.execute(
            "SELECT json_extract(raw_json(raw_event), '$.kind') FROM nostr_events")]
        assert kinds_read == [33401] * 4


def test_raw_json_is_on_every_connection(tmp_path: Path) -> None:
    with Store(tmp_path / "powrd.db") as store:
        assert store.reader().execute("SELECT raw_json(?)", (pack("{}"),)).fetchone() == ("{}",)
    plain = apsw.Connection(":memory:")
    with pytest.raises(apsw.SQLError):
        plain.execute("SELECT raw_json('{}')").fetchone()

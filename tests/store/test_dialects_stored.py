"""Arbitrary dialect tags go through the real pipeline into SQLite and read back.

Whatever the tags, processing, storing and every library read succeed: nothing
escapes as an exception, and what is read back is JSON-ready.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powrd.library.service import records_with_sets, resolve_template
from powrd.protocol.event import dumps, loads
from powrd.protocol.validate import Policy
from powrd.store import library_queries, lists
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.events import keys_for, make_event, pubkey_of

ALICE = keys_for("dialects-stored", 0)
ME = pubkey_of(ALICE)
NOW = 1_800_000_000
_clock = itertools.count(1_700_000_000)

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=16)
d_values = st.one_of(text, st.builds("local:{}".format, text), st.just("x:y:z"))
references = st.one_of(
    st.builds("33401:{}".format, d_values),
    st.builds("33401::{}".format, d_values),
    st.builds("{}:{}:{}".format, st.sampled_from([33401, 33402, 30003]), st.just(ME), d_values),
    text,
)
values = st.one_of(
    text, st.sampled_from(["", "wss://r.example", "1.5", "1736950800000", "-5", "00:28:15",
                           "9223372036854775807", "km", "mi", "running"]),
)
tags = st.lists(
    st.one_of(
        st.builds(lambda name, ref, rest: [name, ref, *rest],
                  st.sampled_from(["exercise", "template", "a"]), references,
                  st.lists(values, max_size=8)),
        st.builds(lambda name, rest: [name, *rest],
                  st.sampled_from(["start", "end", "rounds_completed", "interval", "distance",
                                   "duration", "split", "avg_pace", "calories", "imeta",
                                   "format", "format_units", "workout_start_time", "title"]),
                  st.lists(values, max_size=6)),
    ),
    max_size=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from([33401, 33402, 1301, 33403, 30003]), d_values, tags)
def test_any_dialect_tags_store_and_read_back(
    tmp_path: Path, kind: int, d: str, event_tags: list[list[str]]
) -> None:
    with Store(tmp_path / f"{next(_clock)}.db") as store:
        pipeline = Pipeline(store, Policy(max_event_bytes=131072, max_future_seconds=900),
                            clock=lambda: NOW)
        prefix = "powr-" if kind == 30003 else ""
        event = make_event(ALICE, kind, "", [["d", prefix + d], *event_tags],
                           created_at=next(_clock))
        result = pipeline.submit_blocking("test", [(loads(event), len(event.encode()))])
        assert not result.rejected
        reader = store.reader()
        dumps(library_queries.exercises(reader))
        dumps(records_with_sets(reader))
        dumps(lists.collections(reader))
        if kind == 33402:
            found = resolve_template(reader, f"33402:{ME}:{d}")
            assert found is not None
            assert found["complete"] is (not found["missing"] and not found["unreadable"])

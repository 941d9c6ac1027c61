"""The fetch queue answers the attempts of a few coordinates without reading the rest."""

from __future__ import annotations

from pathlib import Path

from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import fetchqueue
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.events import coordinate, keys_for, make_template

ALICE = keys_for("fetch-queue-attempts", 0)


def test_attempts_of_queued_coordinates_only(tmp_path: Path) -> None:
    wanted = [coordinate(33401, ALICE, name) for name in ("squat", "bench", "row")]
    template = make_template(ALICE, "push", [(c, "") for c in wanted])
    with Store(tmp_path / "powrd.db") as store:
        pipeline = Pipeline(store, Policy())
        assert len(pipeline.submit_blocking("test", [(loads(template), len(template))]).stored) == 1
        assert {e["coordinate"] for e in fetchqueue.entries(store.reader())} == set(wanted)
        for _ in range(2):
            store.writer.call(lambda c: fetchqueue.mark_in_flight(c, wanted[:1], 1_700_000_000))
        unknown = coordinate(33401, ALICE, "curl")
        assert fetchqueue.attempts(store.reader(), [wanted[0], wanted[1], unknown]) == {
            wanted[0]: 2,
            wanted[1]: 0,
        }

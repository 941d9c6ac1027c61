"""status counts: exact on small stores, never a scan on the event loop for big ones."""

from __future__ import annotations

import threading
from pathlib import Path

from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.service.counts import StatusCounts
from powrd.store import queries
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.corpus import generate_corpus
from tests.support.daemon_process import poll


def ingest(pipeline: Pipeline, events: list[str]) -> None:
    pipeline.submit_blocking("test", [(loads(e), len(e.encode())) for e in events])


def test_small_stores_are_counted_exactly_at_every_call(tmp_path: Path) -> None:
    corpus = generate_corpus(300, 3, seed=51)
    with Store(tmp_path / "powrd.db") as store:
        pipeline = Pipeline(store, Policy())
        counts = StatusCounts(store)
        ingest(pipeline, corpus[:100])
        assert counts.get()["events"] == 100
        # No changed() call: a small store is counted afresh anyway.
        ingest(pipeline, corpus[100:])
        figures = counts.get()
        assert figures["events"] == 300 and figures["as_of_s"] == 0
        assert {k: v for k, v in figures.items() if k != "as_of_s"} == queries.counts(store.reader())
        counts.close()


def test_big_stores_are_counted_on_another_thread_and_answer_with_the_last_count(
    tmp_path: Path,
) -> None:
    corpus = generate_corpus(300, 3, seed=52)
    with Store(tmp_path / "powrd.db") as store:
        pipeline = Pipeline(store, Policy())
        # Anything from 100 events on counts as "big" here.
        counts = StatusCounts(store, background_from_events=100)
        ingest(pipeline, corpus[:100])
        assert counts.get()["events"] == 100  # the first count is made on the spot
        ingest(pipeline, corpus[100:])
        counts.changed()
        counting_threads: list[str] = []
        original = counts._count

        def recorded() -> None:
            counting_threads.append(threading.current_thread().name)
            original()

        counts._count = recorded  # type: ignore[method-assign]
        answered = counts.get()
        assert answered["events"] == 100  # the last finished count, not a scan now
        poll(lambda: counts.get()["events"] == 300, timeout=5, what="the background count")
        assert counting_threads and all(n.startswith("powrd-counts") for n in counting_threads)
        counts.close()

"""Closing the store while a worker thread's query still runs on a reader."""

from __future__ import annotations

import threading
from pathlib import Path

from powrd.store.store import Store


def test_close_waits_for_a_reader_query_in_another_thread(tmp_path: Path) -> None:
    store = Store(tmp_path / "powrd.db")
    started, go = threading.Event(), threading.Event()
    answers: list[object] = []

    def slow(*_: object) -> int:
        started.set()
        go.wait(10)
        return 1

    def query() -> None:
        conn = store.reader()
        conn.create_scalar_function("slow", slow, 0)
        answers.append(conn.execute("SELECT slow()").fetchone())

    worker = threading.Thread(target=query)
    worker.start()
    assert started.wait(10)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            store.close()
        except BaseException as error:  # the failure this test is about
            errors.append(error)

    closer = threading.Thread(target=close)
    closer.start()
    go.set()
    closer.join(10)
    worker.join(10)
    assert not closer.is_alive() and errors == []
    assert answers == [(1,)]

"""The writer under a full disk: batches wait and are retried, nothing is lost or doubled."""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path

import apsw
import pytest

from powrd.store.writer import Writer


def open_writer(tmp_path: Path) -> Writer:
    conn = apsw.Connection(str(tmp_path / "w.db"))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE item (n INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    writer = Writer(conn, full_retry_min_seconds=0.01, full_retry_max_seconds=0.05)
    writer.start()
    return writer


def insert(n: int, size: int = 2000):
    def operation(conn: apsw.Connection) -> int:
        conn.execute("INSERT INTO item (n, payload) VALUES (?, ?)", (n, "x" * size))
        return n

    return operation


def limit_pages(writer: Writer, extra: int) -> int:
    """Cap the database at its current size plus ``extra`` pages; returns the cap."""

    def operation(conn: apsw.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return conn.execute(f"PRAGMA max_page_count = {pages + extra}").fetchone()[0]

    return writer.call(operation)


def lift_limit(writer: Writer) -> None:
    """Give the database room again, from this thread (the writer's queue is stuck).

    The writer connection is idle between retries; apsw refuses (ThreadingViolation)
    rather than interleave if the writer thread happens to be using it, so try again.
    """
    deadline = time.monotonic() + 10
    while True:
        try:
            writer.conn.execute("PRAGMA max_page_count = 1000000").fetchall()
            return
        except apsw.ThreadingViolation:
            assert time.monotonic() < deadline
            time.sleep(0.001)


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def stored(writer: Writer) -> list[int]:
    return writer.call(lambda c: [row[0] for row in c.execute("SELECT n FROM item ORDER BY n")])


def test_full_batch_waits_then_commits_every_operation_once(tmp_path: Path) -> None:
    writer = open_writer(tmp_path)
    try:
        limit_pages(writer, 2)
        futures = [writer.submit(insert(n)) for n in range(40)]
        wait_until(lambda: writer.full)
        assert "disk full" in (writer.stats.last_error or "")
        assert not all(f.done() for f in futures)  # held back, not failed
        assert not any(f.done() and f.exception() is not None for f in futures)
        wait_until(lambda: writer.stats.full_retries >= 2)  # retried while still full
        lift_limit(writer)
        assert sorted(f.result(timeout=10) for f in futures) == list(range(40))
        assert not writer.full
        assert writer.stats.last_error is None
        assert writer.stats.full_episodes == 1
        assert stored(writer) == list(range(40))
    finally:
        writer.stop()


def test_stop_gives_up_a_full_batch_without_committing_it(tmp_path: Path) -> None:
    writer = open_writer(tmp_path)
    limit_pages(writer, 1)
    futures = [writer.submit(insert(n)) for n in range(20)]
    wait_until(lambda: writer.full)
    started = time.monotonic()
    writer.stop()
    assert time.monotonic() - started < 5
    failures = [f.exception(timeout=1) for f in futures if not f.done() or f.exception() is not None]
    assert failures and all(isinstance(e, apsw.FullError) for e in failures)
    committed = [f.result() for f in futures if f.exception() is None]
    conn = apsw.Connection(str(tmp_path / "w.db"))
    assert [r[0] for r in conn.execute("SELECT n FROM item ORDER BY n")] == sorted(committed)
    with pytest.raises(RuntimeError):
        writer.submit(insert(99)).result()


def test_a_failing_operation_fails_alone(tmp_path: Path) -> None:
    writer = open_writer(tmp_path)
    try:
        ok = writer.submit(insert(1))

        def broken(conn: apsw.Connection) -> None:
            conn.execute("INSERT INTO item (n, payload) VALUES (2, 'y')")
            raise ValueError("bad operation")

        bad = writer.submit(broken)
        also_ok = writer.submit(insert(3))
        assert ok.result(timeout=5) == 1
        assert also_ok.result(timeout=5) == 3
        with pytest.raises(ValueError, match="bad operation"):
            bad.result(timeout=5)
        assert stored(writer) == [1, 3]
        assert writer.stats.last_error is None
    finally:
        writer.stop()


def hold(writer: Writer) -> tuple[concurrent.futures.Future[None], concurrent.futures.Future[None]]:
    """Keep the writer busy until the gate returned is set, so that what is submitted
    meanwhile shares one batch; also returns the holding operation's future."""
    gate: concurrent.futures.Future[None] = concurrent.futures.Future()
    running: concurrent.futures.Future[None] = concurrent.futures.Future()

    def operation(conn: apsw.Connection) -> None:
        running.set_result(None)
        gate.result(timeout=5)

    held = writer.submit(operation)
    running.result(timeout=5)
    return gate, held


def test_a_failure_inside_a_shared_batch_undoes_only_itself(tmp_path: Path) -> None:
    writer = open_writer(tmp_path)
    try:
        def broken(conn: apsw.Connection) -> None:
            conn.execute("INSERT INTO item (n, payload) VALUES (2, 'y')")
            raise ValueError("bad operation")

        gate, first = hold(writer)
        transactions = writer.stats.transactions
        batch = [writer.submit(insert(1)), writer.submit(broken), writer.submit(insert(3))]
        gate.set_result(None)
        first.result(timeout=5)
        assert batch[0].result(timeout=5) == 1 and batch[2].result(timeout=5) == 3
        with pytest.raises(ValueError, match="bad operation"):
            batch[1].result(timeout=5)
        # The held operation's transaction, then the three in one: committed once.
        assert writer.stats.transactions == transactions + 2
        assert stored(writer) == [1, 3]
    finally:
        writer.stop()


def test_a_transaction_sqlite_rolled_back_fails_the_whole_batch_and_the_writer_goes_on(
    tmp_path: Path,
) -> None:
    writer = open_writer(tmp_path)
    try:
        gate, first = hold(writer)
        before = writer.submit(insert(1))

        def ends_transaction(conn: apsw.Connection) -> None:
            conn.execute("ROLLBACK")  # as SQLite does itself after some I/O errors
            raise apsw.IOError("simulated")

        broken = writer.submit(ends_transaction)
        gate.set_result(None)
        first.result(timeout=5)
        with pytest.raises(apsw.IOError):
            broken.result(timeout=5)
        with pytest.raises(apsw.IOError):
            before.result(timeout=5)  # it shared the lost transaction: not committed
        assert writer.submit(insert(5)).result(timeout=5) == 5
        assert stored(writer) == [5]
    finally:
        writer.stop()

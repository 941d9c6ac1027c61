"""The write-ahead log is copied back by a thread of its own, and stays bounded."""

from __future__ import annotations

from pathlib import Path

import apsw

from powrd.store.checkpointer import Checkpointer
from powrd.store.database import open_writer_connection
from tests.support.daemon_process import poll

ROW_BYTES = 3000


def write(conn: apsw.Connection, commits: int, rows: int = 20) -> None:
    for _ in range(commits):
        with conn:
            conn.executemany(
                "INSERT INTO sync_checkpoints (relay_url, scope, since, updated_at) VALUES (?, ?, 0, 0)",
                [(f"ws://127.0.0.1/{n}", "x" * ROW_BYTES) for n in range(rows)],
            )
            conn.execute("DELETE FROM sync_checkpoints")  # the pages change, the file stays


def test_a_growing_log_is_checkpointed_by_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "powrd.db"
    conn = open_writer_connection(path)
    checkpointer = Checkpointer(path, conn, step_bytes=64 * 1024, limit_bytes=2**40)
    checkpointer.start()
    try:
        before = path.stat().st_size  # the schema is still in the log only
        write(conn, 10)
        poll(lambda: checkpointer.background_runs > 0, timeout=10, what="a checkpoint")
        assert checkpointer.writer_runs == 0
        assert path.stat().st_size > before  # pages went from the log into the file
    finally:
        conn.close()
        checkpointer.close()
    assert not path.with_name("powrd.db-wal").exists()  # closed last, it removed the log


def test_the_writer_checkpoints_itself_past_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "powrd.db"
    conn = open_writer_connection(path)
    limit = 256 * 1024
    # A step this large never wakes the thread: only the writer's own limit works here.
    checkpointer = Checkpointer(path, conn, step_bytes=2**40, limit_bytes=limit)
    checkpointer.start()
    try:
        write(conn, 200)  # about 12 MB of pages through the log
        assert checkpointer.writer_runs > 0 and checkpointer.background_runs == 0
        wal = path.with_name("powrd.db-wal").stat().st_size
        assert wal < 4 * limit, wal  # the log started again instead of growing
    finally:
        conn.close()
        checkpointer.close()

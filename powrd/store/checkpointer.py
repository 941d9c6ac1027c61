"""Copying the write-ahead log back into the database file on a thread of its own.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold: the
writer waits while the log's pages are written into the file and both files are
fsynced. At a million events that was 40% of the writer's time. Here a commit that
grows the log by :data:`CHECKPOINT_STEP_BYTES` wakes a thread with a connection of its
own, which checkpoints while the writer goes on.

A log can only start again from its beginning once every frame in it is checkpointed;
a writer that keeps committing while a checkpoint runs keeps it growing. Past
:data:`CHECKPOINT_LIMIT_BYTES` the writer therefore checkpoints itself, as SQLite would:
the log stays bounded, and the background checkpoints have done most of that work.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import apsw
import structlog

log = structlog.get_logger("powrd.store.checkpointer")

# At a million events a commit dirties about a thousand pages of the big indexes: SQLite's
# default of a checkpoint every 1000 pages ran one after every commit.
CHECKPOINT_STEP_BYTES = 64 * 1024 * 1024
CHECKPOINT_LIMIT_BYTES = 4 * CHECKPOINT_STEP_BYTES


class Checkpointer:
    """Checkpoints the log of the database at ``path`` for the writer connection ``writer``.

    Call :meth:`start` before the writer commits anything and :meth:`close` after the
    writer's connection is closed (this connection, closed last, removes the log).
    """

    def __init__(
        self,
        path: Path,
        writer: apsw.Connection,
        *,
        step_bytes: int = CHECKPOINT_STEP_BYTES,
        limit_bytes: int = CHECKPOINT_LIMIT_BYTES,
    ) -> None:
        page_size = int(writer.pragma("page_size"))
        self.step_frames = max(1, step_bytes // page_size)
        self.limit_frames = max(1, limit_bytes // page_size)
        self.background_runs = 0
        self.writer_runs = 0
        self._writer = writer
        self._conn = apsw.Connection(str(path))
        # A connection learns the file is in WAL mode when it first reads it.
        self._conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        self._requested_at = 0  # log size (frames) when the last checkpoint was asked for
        self._due = threading.Event()
        self._closing = False
        self._thread = threading.Thread(
            target=self._loop, name="powrd-checkpoint", daemon=True
        )

    def start(self) -> None:
        # Replaces SQLite's automatic checkpoint on the writer connection.
        self._writer.setwalhook(self._after_commit)
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        self._due.set()
        if self._thread.is_alive():
            self._thread.join()
        self._conn.close()

    def _after_commit(self, conn: apsw.Connection, _db: str, frames: int) -> int:
        """SQLite's WAL hook on the writer's thread: ``frames`` is the log's size now."""
        if frames < self._requested_at:
            self._requested_at = 0  # the log started again from its beginning
        if frames >= self.limit_frames:
            self.writer_runs += 1
            # Busy: the thread is checkpointing right now, and this commit need not wait.
            with contextlib.suppress(apsw.BusyError):
                conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
        elif frames - self._requested_at >= self.step_frames:
            self._requested_at = frames
            self._due.set()
        return apsw.SQLITE_OK

    def _loop(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            if self._closing:
                return
            try:
                self._conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
            except apsw.BusyError:
                pass  # the writer is checkpointing itself; the next request comes
            except apsw.Error as error:  # the writer's own limit still bounds the log
                log.warning("checkpoint failed", error=str(error))
            self.background_runs += 1

"""The store facade: the writer, a read connection per thread, and the writer lock."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import apsw

from powrd.store.database import (
    StoreError,
    WriterLock,
    open_reader_connection,
    open_writer_connection,
)
from powrd.store.writer import Writer


class Store:
    """One database file: a single writer thread plus per-thread read connections.

    Args:
        path: the SQLite file (created and migrated when absent).
        max_batch: the most write operations one transaction groups.
    """

    def __init__(self, path: Path, *, max_batch: int = 256) -> None:
        self.path = path
        self._lock = WriterLock(path)
        self._lock.acquire()
        try:
            conn = open_writer_connection(path)
        except BaseException:
            self._lock.release()
            raise
        self.writer = Writer(conn, max_batch=max_batch)
        self._readers = threading.local()
        self._all_readers: list[apsw.Connection] = []
        self._guard = threading.Lock()
        self.writer.start()

    def reader(self) -> apsw.Connection:
        """A read-only connection owned by the calling thread (WAL: never blocks the writer)."""
        conn: apsw.Connection | None = getattr(self._readers, "conn", None)
        if conn is None:
            conn = open_reader_connection(self.path)
            self._readers.conn = conn
            with self._guard:
                self._all_readers.append(conn)
        return conn

    def close(self) -> None:
        """Commit what is queued, stop the writer, close every connection.

        Readers close first, so the writer's connection is the last one and SQLite
        checkpoints and removes the -wal and -shm files.
        """
        with self._guard:
            for conn in self._all_readers:
                _close_reader(conn)
            self._all_readers.clear()
        self.writer.stop()
        self._lock.release()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["Store", "StoreError"]


READER_BUSY_WAIT_SECONDS = 5.0


def _close_reader(conn: apsw.Connection) -> None:
    """Close a reader, waiting for a query another thread still runs on it to end.

    A reader can still be in use at shutdown by a worker thread (a local relay query or a
    negentropy items read whose caller was cancelled); its query ends on its own.
    """
    deadline = time.monotonic() + READER_BUSY_WAIT_SECONDS
    while True:
        try:
            conn.close()
            return
        except apsw.ThreadingViolationError:
            if time.monotonic() >= deadline:
                return  # left to the garbage collector; the writer still closes last
            time.sleep(0.01)

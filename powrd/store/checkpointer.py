"""WAL checkpoints on their own thread and connection, off the writer's path.

SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, on the
writer thread, and was most of the writer's commit time. The writer turns it off; this
thread copies committed WAL pages back into the database with PASSIVE checkpoints,
which never block the writer or readers.
"""

from __future__ import annotations

import threading
from pathlib import Path

import apsw
import structlog

log = structlog.get_logger("powrd.store.checkpointer")

INTERVAL_SECONDS = 1.0


class Checkpointer:
    """Runs ``PRAGMA wal_checkpoint(PASSIVE)`` every :data:`INTERVAL_SECONDS` until stopped."""

    def __init__(self, path: Path, interval: float = INTERVAL_SECONDS) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="powrd-checkpoint", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        conn = apsw.Connection(str(self.path))
        conn.setbusytimeout(1000)
        try:
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                    self.last_error = None
                except apsw.Error as error:  # busy or full: try again next time
                    if str(error) != self.last_error:
                        log.warning("checkpoint failed", reason=str(error))
                    self.last_error = str(error)
        finally:
            conn.close()

"""Opening the database: pragmas, migrations, read connections, single-writer lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import apsw

from powrd.store.schema import LATEST_VERSION, MIGRATIONS


class StoreError(RuntimeError):
    """The database cannot be used; the message says why and what to do."""


def _configure(conn: apsw.Connection, *, readonly: bool) -> None:
    conn.setbusytimeout(5000)
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA cache_size = -32000")  # 32 MiB page cache per connection
    conn.execute("PRAGMA temp_store = MEMORY")


def open_writer_connection(path: Path) -> apsw.Connection:
    """Open (creating if needed) and migrate the database; the one read-write connection."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        conn = apsw.Connection(str(path))
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
        if mode != "wal":
            raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode})")
        _configure(conn, readonly=False)
        migrate(conn)
        conn.execute("PRAGMA quick_check(1)")
    except apsw.ReadOnlyError:
        raise StoreError(f"{path}: database is read-only; make it writable by the daemon's user") from None
    except apsw.NotADBError:
        raise StoreError(f"{path}: not an SQLite database (or corrupt); move it aside") from None
    except apsw.CorruptError:
        raise StoreError(f"{path}: database is corrupt; restore a backup or move it aside") from None
    except apsw.CantOpenError:
        raise StoreError(f"{path}: cannot open; check the directory exists and is writable") from None
    return conn


def open_reader_connection(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    _configure(conn, readonly=True)
    return conn


def migrate(conn: apsw.Connection) -> int:
    """Apply every migration newer than the database; returns the resulting version."""
    version = int(conn.execute("PRAGMA user_version").fetchall()[0][0])
    if version > LATEST_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this powrd ({LATEST_VERSION});"
            " upgrade powrd"
        )
    for number in range(version + 1, LATEST_VERSION + 1):
        with conn:
            conn.execute(MIGRATIONS[number - 1])
            conn.execute(f"PRAGMA user_version = {number}")
    return LATEST_VERSION


class WriterLock:
    """An advisory lock next to the database: one daemon (one writer) per store."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(
                f"{self.path.with_suffix('')}: another powrd process is using this database;"
                " stop it first or configure another store.path"
            ) from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

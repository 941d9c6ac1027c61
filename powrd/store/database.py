"""Opening the database: pragmas, migrations, read connections, single-writer lock."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import apsw

from powrd.store import raw_events
from powrd.store.schema import LATEST_VERSION, MIGRATIONS

# Above this size the start-up integrity check is limited to the schema (see _check_usable).
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024

# A new event writes a page at a random place of a few big indexes (ids, d tags), and
# each such page goes to the WAL and back to the file whole: into a store of a million
# events the writer took 4 KiB pages 10-15% faster than 8 KiB ones, and no slower into
# an empty one. Deflated raw events (about 0.6 KB) no longer need bigger pages.
# Existing stores keep the page size they were created with.
PAGE_SIZE = 4096


class StoreError(RuntimeError):
    """The database cannot be used; the message says why and what to do."""


# Page cache per connection, in KiB. The writer's decides how fast a big store takes
# new events (its index pages); a reader's holds pages that each commit of the writer
# makes it drop, and a daemon has several readers (one per thread that reads), so a
# larger one mostly costs resident memory: the file's pages stay in the OS cache anyway.
WRITER_CACHE_KIB = 32_000
READER_CACHE_KIB = 8_000
# Log size after which a commit copies the WAL into the database file. At a million
# events each commit dirties about a thousand pages of the big indexes (ids, d tags), so
# SQLite's default of 1000 pages checkpointed, with its fsyncs, after every commit: 64 MiB
# took the writer's ingest into a 1M store from 2,800 to 4,000 events/s. A full disk
# checkpoints at once (Writer), so the log never holds it full.
WAL_AUTOCHECKPOINT_BYTES = 64 * 1024 * 1024


def _configure(conn: apsw.Connection, *, readonly: bool) -> None:
    conn.setbusytimeout(5000)
    raw_events.register(conn)
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        conn.execute("PRAGMA synchronous = NORMAL")
        page_size = int(conn.pragma("page_size"))
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_BYTES // page_size}")
    cache_kib = READER_CACHE_KIB if readonly else WRITER_CACHE_KIB
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute("PRAGMA temp_store = MEMORY")


def open_writer_connection(path: Path) -> apsw.Connection:
    """Open (creating if needed) and migrate the database; the one read-write connection.

    An existing file is checked before anything is written to it: a read-only or
    damaged database is refused with a :class:`StoreError` and left exactly as found.

    Raises:
        StoreError: the file cannot be used; the message is one line naming it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise StoreError(f"{path.parent}: cannot create the directory: {error.strerror}") from None
    _create_private(path)
    conn: apsw.Connection | None = None
    try:
        conn = apsw.Connection(str(path))
        _check_usable(conn, path)
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # takes effect on a new file only
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchall()[0][0]
        if mode != "wal":
            raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode})")
        _configure(conn, readonly=False)
        migrate(conn)
    except BaseException as error:
        if conn is not None:
            conn.close()
        if isinstance(error, apsw.Error):
            raise _explain(path, error) from None
        raise
    return conn


def _create_private(path: Path) -> None:
    """Create a missing database file with mode 0600, whatever the process umask.

    The store holds the user's private workout history. SQLite creates the ``-wal``
    and ``-shm`` files with the database file's mode, so the three stay owner-only.
    An existing file keeps the mode it has.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    except OSError as error:
        raise StoreError(f"{path}: cannot create the database: {error.strerror}") from None
    try:
        os.fchmod(fd, 0o600)  # a umask such as 0o277 would have left it unwritable
    finally:
        os.close(fd)


def _check_usable(conn: apsw.Connection, path: Path) -> None:
    """Refuse a database we could not write or that is damaged, before writing to it."""
    # SQLite quietly falls back to read-only when it cannot open the file for writing;
    # a daemon that cannot commit must say so at start-up, not at its first event.
    if conn.readonly("main"):
        raise StoreError(f"{path}: database is read-only; make it writable by the daemon's user")
    # Reading the schema catches a damaged header at once; a full quick_check reads every
    # page, so it only runs on small files (start-up must stay fast on a big store).
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
    if path.stat().st_size > QUICK_CHECK_MAX_BYTES:
        return
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        first = str(problems[0]).replace("\n", " ")[:200]
        raise StoreError(
            f"{path}: database is corrupt ({first}); restore a backup or move it aside"
        )


_EXPLANATIONS: tuple[tuple[type[apsw.Error], str], ...] = (
    (apsw.ReadOnlyError, "database is read-only; make it writable by the daemon's user"),
    (apsw.NotADBError, "not an SQLite database (or corrupt); move it aside"),
    (apsw.CorruptError, "database is corrupt; restore a backup or move it aside"),
    (apsw.CantOpenError, "cannot open; check the directory exists and is writable"),
    (apsw.FullError, "the disk is full; free some space and start again"),
    (apsw.BusyError, "the database is locked by another program; stop it first"),
)
"""What each SQLite error says about the database file, and what to do (first match)."""


def _explain(path: Path, error: apsw.Error) -> StoreError:
    """One line saying what is wrong with the database file and what to do."""
    for kind, explanation in _EXPLANATIONS:
        if isinstance(error, kind):
            return StoreError(f"{path}: {explanation}")
    return StoreError(f"{path}: cannot use the database: {error}")


def open_reader_connection(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    _configure(conn, readonly=True)
    return conn


def migrate(conn: apsw.Connection) -> int:
    """Apply every migration newer than the database; returns the resulting version."""
    version = conn.execute("PRAGMA user_version").fetchall()[0][0]
    assert isinstance(version, int)
    if version > LATEST_VERSION:
        raise StoreError(
            f"database schema version {version} is newer than this powrd ({LATEST_VERSION});"
            " upgrade powrd"
        )
    if version == LATEST_VERSION:
        return version
    # A migration may rebuild a table (SQLite cannot drop a constraint in place): with
    # foreign keys on, dropping the old table would delete the rows that reference it.
    # The pragma is a no-op inside a transaction, hence set outside.
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for number in range(version + 1, LATEST_VERSION + 1):
            with conn:
                conn.execute(MIGRATIONS[number - 1])
                conn.execute(f"PRAGMA user_version = {number}")
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
    return LATEST_VERSION


class WriterLock:
    """An advisory lock next to the database: one daemon (one writer) per store."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`StoreError` (held elsewhere, or no lock file)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            raise StoreError(
                f"{self.path}: cannot create the lock file: {error.strerror}"
            ) from None
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


def sqlite_memory() -> tuple[int, int]:
    """Bytes SQLite holds now, and the most it has held, over every connection."""
    return apsw.memory_used(), apsw.memory_high_water()

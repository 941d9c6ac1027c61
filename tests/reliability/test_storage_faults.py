"""Storage faults: a full disk pauses ingest and resumes; unusable database files are refused.

Disk full is simulated portably with SQLite's ``max_page_count`` on the daemon's own
writer connection (the database "is full" at its current size), and for real on a
small tmpfs when the tests run as root. Read-only and damaged database files must make
``powrd run`` exit at once with one clear line, leaving the file byte for byte as it was.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path

import apsw
import pytest

from powrd.control.client import ControlClient, ControlError, RpcError, call_sync
from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store.store import Store
from powrd.store.writer import Writer
from powrd.sync.pipeline import Pipeline
from tests.reliability.powrd_process import one_line_error, run_powrd, spawn_daemon
from tests.support.corpus import current_ids, generate_corpus, keys_for, pubkey_of
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config

SEED = 77
AUTHORS = [pubkey_of(keys_for(SEED, i)) for i in range(4)]
USER = keys_for("storage-faults", 0)
EXERCISE_TAGS = [
    ["d", "full-disk-squat"], ["title", "Squat"], ["format", "weight", "reps"],
    ["format_units", "kg", "count"], ["equipment", "barbell"],
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return generate_corpus(500, len(AUTHORS), seed=SEED)


def key_file(directory: Path) -> Path:
    path = directory / "user.nsec"
    path.write_text(USER.secret_key().to_bech32() + "\n")
    path.chmod(0o600)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- disk full ----------------------------------------------------------------------


async def fill_to_current_size(writer: Writer) -> int:
    """Make the database full at its current size (SQLite then answers SQLITE_FULL)."""

    def operation(conn: apsw.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return int(conn.execute(f"PRAGMA max_page_count = {pages}").fetchone()[0])

    return await writer.run(operation)


def give_space_back(writer: Writer) -> None:
    """Lift the page limit from outside the writer thread (its queue is held up).

    The connection is idle between the writer's retries; apsw refuses rather than
    interleave if the writer thread is using it at that instant, so try again.
    """
    deadline = time.monotonic() + 10
    while True:
        try:
            writer.conn.execute("PRAGMA max_page_count = 4294967294").fetchall()
            return
        except apsw.ThreadingViolation:
            assert time.monotonic() < deadline, "the writer connection never came free"


async def test_disk_full_pauses_ingest_keeps_answering_reads_and_resumes(
    local_relay, tmp_path: Path, corpus: list[str]
) -> None:
    first, later = corpus[:200], corpus[200:]
    await local_relay.publish(first)
    config = write_config(tmp_path, relays=[local_relay.url], authors=AUTHORS,
                          secret_key_file=key_file(tmp_path))
    async with running_daemon(config) as daemon, ControlClient(tmp_path / "powrd.sock") as reads, \
            ControlClient(tmp_path / "powrd.sock") as writes:
        writer = daemon.store.writer
        await wait_for(lambda: current_ids(first) <= stored_ids(daemon), what="the first events")
        await fill_to_current_size(writer)
        await local_relay.publish(later)
        await wait_for(lambda: writer.full, what="the writer to hit the full database")

        status = await reads.call("status")
        assert any("disk full" in problem for problem in status["health"]), status["health"]
        assert status["state"] == "running"
        held = status["counts"]["events"]
        # A publish is refused at once, so the client knows it was not stored.
        with pytest.raises(RpcError, match="disk is full"):
            await writes.call("publish", {"kind": 33401, "content": "", "tags": EXERCISE_TAGS})
        retries = writer.stats.full_retries
        await wait_for(lambda: writer.stats.full_retries >= retries + 3, what="more retries")

        # Reads are answered at once while writes wait; nothing is stored meanwhile.
        started = time.monotonic()
        status = await reads.call("status")
        assert time.monotonic() - started < 1.0
        assert status["counts"]["events"] == held
        exercises = await reads.call("library.exercises", {"limit": 5})
        assert exercises["exercises"]
        found = await reads.call("events.query", {"filter": {"kinds": [33402], "limit": 3}})
        assert len(found["events"]) == 3

        give_space_back(writer)
        await wait_for(lambda: not writer.full, what="the writer to find space again")
        reply = await writes.call("publish", {"kind": 33401, "content": "", "tags": EXERCISE_TAGS})
        await wait_for(lambda: current_ids(corpus) <= stored_ids(daemon), what="ingest to resume")
        assert reply["id"] in stored_ids(daemon)
        status = await reads.call("status")
        assert not any("full" in problem for problem in status["health"]), status["health"]
        assert [relay["state"] for relay in status["relays"]] == ["connected"]
        assert writer.stats.full_episodes == 1


def mount_tmpfs(directory: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, check=False)
    return mounted.returncode == 0


def unmount(directory: Path) -> None:
    subprocess.run(["umount", "-l", str(directory)], check=False)


def fill_disk(directory: Path) -> Path:
    """Write a filler file until the file system refuses (ENOSPC)."""
    filler = directory / "filler"
    chunk = b"\0" * 65536
    with filler.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(chunk)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


def status_of(socket: Path) -> dict:
    return call_sync(socket, "status", None, timeout=5.0)


async def poll_status(socket: Path, condition, what: str) -> dict:
    def check():
        try:
            status = status_of(socket)
        except (ControlError, OSError):
            return None
        return status if condition(status) else None

    return await wait_for(check, timeout=30.0, what=what)


async def test_real_disk_full_on_a_small_tmpfs(local_relay, tmp_path: Path, corpus: list[str]) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if not mount_tmpfs(small, "6m"):
        pytest.skip("needs root and a mountable tmpfs")
    process = None
    try:
        first, later = corpus[:100], corpus[100:]
        await local_relay.publish(first)
        config = write_config(small, relays=[local_relay.url], authors=AUTHORS)
        socket = small / "powrd.sock"
        process = spawn_daemon(config, tmp_path / "daemon.log")
        status = await poll_status(socket, lambda s: s["counts"]["events"] >= len(current_ids(first)),
                                   "the first events")
        fill_disk(small)
        await local_relay.publish(later)
        status = await poll_status(socket, lambda s: any("disk full" in p for p in s["health"]),
                                   "health to report the full disk")
        assert process.poll() is None
        held = status["counts"]["events"]
        assert held < len(current_ids(corpus))
        for _ in range(5):  # still answering, and not storing
            started = time.monotonic()
            assert status_of(socket)["counts"]["events"] == held
            assert time.monotonic() - started < 1.0

        (small / "filler").unlink()
        await poll_status(socket, lambda s: s["counts"]["events"] >= len(current_ids(corpus))
                          and not s["health"], "ingest to resume after space returned")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 30) == 0
        conn = apsw.Connection(str(small / "powrd.db"), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            stored = {row[0] for row in conn.execute("SELECT id FROM nostr_events")}
        finally:
            conn.close()
        assert current_ids(corpus) <= stored
    finally:
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        unmount(small)


# -- unusable database files ----------------------------------------------------------


def populated_database(directory: Path, corpus: list[str]) -> Path:
    """A real powrd database holding some events, closed cleanly (no -wal left)."""
    path = directory / "powrd.db"
    with Store(path) as store:
        pipeline = Pipeline(store, Policy(131072, 900))
        result = pipeline.submit_blocking("import", [(loads(e), len(e)) for e in corpus[:120]])
        assert result.stored
    assert not path.with_name("powrd.db-wal").exists()
    return path


def refused_start(directory: Path) -> str:
    config = write_config(directory)
    return one_line_error(run_powrd("--config", str(config), "run", timeout=30))


def make_immutable(path: Path) -> bool:
    """Make ``path`` unwritable even for root (chattr +i), or by mode for other users."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode == 0


def test_a_read_only_database_is_refused_and_left_alone(tmp_path: Path, corpus: list[str]) -> None:
    path = populated_database(tmp_path, corpus)
    before = sha256(path)
    if not make_immutable(path):
        pytest.skip("cannot make a file read-only for root here (no chattr +i)")
    try:
        message = refused_start(tmp_path)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=False)
    assert str(path) in message and "read-only" in message
    assert sha256(path) == before


def corrupt_page(path: Path, table: str) -> None:
    """Scribble over the first page of ``table``'s b-tree (past the file header)."""
    conn = apsw.Connection(str(path))
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0]
    finally:
        conn.close()
    with path.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(bytes(range(256)) * (page_size // 256))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "scribbled b-tree"])
def test_a_damaged_database_is_refused_and_left_alone(tmp_path: Path, corpus: list[str], damage: str) -> None:
    path = populated_database(tmp_path, corpus)
    if damage == "garbage":
        path.write_bytes(os.urandom(64 * 1024))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    else:
        corrupt_page(path, "event_tags")
    before = sha256(path)
    message = refused_start(tmp_path)
    assert str(path) in message
    assert "corrupt" in message or "not an SQLite database" in message
    assert sha256(path) == before

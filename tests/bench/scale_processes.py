"""Processes and files for the scale benchmark: powrd subprocesses, RSS, store copies.

:class:`RunningDaemon` is ``powrd run`` as a subprocess whose resident memory a thread
samples; :class:`StoreWatcher` reads the daemon's database from outside, so a benchmark
can tell when an ingest is finished without asking the daemon anything.
"""

from __future__ import annotations

import contextlib
import os
import pstats
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

from powrd.control.client import ControlError, call_sync
from powrd.store import queries
from powrd.store.database import open_reader_connection
from tests.support.daemon_process import REPO_ROOT, child_environment

RSS_SAMPLE_SECONDS = 0.5
# How often a waiting benchmark looks whether the store still grows.
STALL_CHECK = 5.0


class Stalled(RuntimeError):
    """A daemon stopped storing events before it had them all."""


def db_bytes(directory: Path) -> int:
    """Size on disk of ``powrd.db`` and its ``-wal``/``-shm`` companions."""
    return sum(p.stat().st_size for p in directory.glob("powrd.db*"))


def stored_events(directory: Path) -> int:
    """``counts.events`` of a store that no daemon has open."""
    conn = open_reader_connection(directory / "powrd.db")
    try:
        return int(queries.counts(conn)["events"])
    finally:
        conn.close()


def proc_status_kib(pid: int, key: str) -> int:
    """A ``VmRSS``/``VmHWM``-style figure of ``/proc/<pid>/status`` in KiB (0 if gone)."""
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def command(config: Path, *args: str, profile: Path | None = None) -> list[str]:
    prefix = [sys.executable]
    if profile is not None:
        prefix += ["-m", "cProfile", "-o", str(profile)]
    return [*prefix, "-m", "powrd", "--config", str(config), *args]


def run_import(config: Path, source: Path) -> tuple[float, int, str]:
    """``powrd import``: (seconds, peak RSS in KiB from wait4, its output)."""
    log = config.parent / "import.log"
    with log.open("w") as out:
        started = time.perf_counter()
        child = subprocess.Popen(command(config, "import", str(source)), cwd=REPO_ROOT,
                                 env=child_environment(), stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text()
    if child.returncode != 0:
        raise SystemExit(f"powrd import failed ({child.returncode}): {output[-2000:]}")
    return seconds, usage.ru_maxrss, output


class RunningDaemon:
    """A ``powrd run`` subprocess with its RSS sampled in a thread every 0.5 s."""

    def __init__(self, config: Path, profile: Path | None = None) -> None:
        self.socket = config.parent / "powrd.sock"
        self.store = StoreWatcher(config.parent / "powrd.db")
        self._log = (config.parent / "daemon.log").open("ab")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command(config, "run", profile=profile), cwd=REPO_ROOT,
                                        env=child_environment(), stdout=self._log,
                                        stderr=subprocess.STDOUT)
        self.peak_rss_kib = 0
        self._stop_sampling = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop_sampling.wait(RSS_SAMPLE_SECONDS):
            self.peak_rss_kib = max(self.peak_rss_kib, proc_status_kib(self.process.pid, "VmRSS"))

    def status(self) -> dict[str, Any] | None:
        """The ``status`` reply, or None while nothing answers."""
        self._check_alive()
        try:
            reply: dict[str, Any] = call_sync(self.socket, "status", timeout=60.0)
        except (ControlError, OSError):
            return None
        return reply

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            log = (self.socket.parent / "daemon.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"powrd run exited with {self.process.returncode}: {log}")

    def wait(self, done: Callable[[RunningDaemon], bool], interval: float, timeout: float,
             what: str, stall_seconds: float | None = None) -> float:
        """Call ``done`` every ``interval`` s until it is true; seconds since spawn.

        Raises:
            Stalled: ``stall_seconds`` passed without a new event in the store.
            SystemExit: the daemon exited, or ``timeout`` passed.
        """
        deadline = time.perf_counter() + timeout
        progress = (0, time.perf_counter())
        next_check = time.perf_counter() + STALL_CHECK
        while time.perf_counter() < deadline:
            self._check_alive()
            if done(self):
                return time.perf_counter() - self.started
            if stall_seconds is not None and time.perf_counter() > next_check:
                progress = self._check_progress(progress, stall_seconds, what)
                next_check = time.perf_counter() + STALL_CHECK
            time.sleep(interval)  # a polling interval, not synchronisation
        raise SystemExit(f"timed out after {timeout} s waiting for {what}")

    def _check_progress(self, last: tuple[int, float], stall_seconds: float,
                        what: str) -> tuple[int, float]:
        """(events stored, when that number last grew); raises Stalled when it stopped."""
        events, now = self.store.events(), time.perf_counter()
        if events != last[0]:
            return events, now
        if now - last[1] < stall_seconds:
            return last
        status = self.status() or {}
        relays = [{k: r.get(k) for k in ("url", "state", "events_stored", "last_error",
                                          "backfill_complete")} for r in status.get("relays", [])]
        raise Stalled(f"{what}: no new event for {stall_seconds:.0f} s at {events:,} stored; "
                      f"relays {relays}; health {status.get('health')}")

    def stop(self) -> int:
        """SIGTERM, wait, and return the kernel's peak RSS figure (VmHWM) in KiB."""
        high_water = proc_status_kib(self.process.pid, "VmHWM")
        self._stop_sampling.set()
        self.store.close()
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        return max(high_water, self.peak_rss_kib)


class StoreWatcher:
    """Reads a daemon's database file from outside, costing the daemon nothing.

    ``status`` counts every stored event on the daemon's event loop, which at a million
    events takes long enough to slow what it measures; this watcher is the alternative.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: apsw.Connection | None = None
        self._missing: list[str] | None = None

    def _connection(self) -> apsw.Connection | None:
        if self._conn is None and self.path.exists():
            with contextlib.suppress(apsw.Error):
                self._conn = open_reader_connection(self.path)
        return self._conn

    def holds_all(self, ids: list[str], total: int) -> bool:
        """Whether every one of ``ids`` is stored, once the store holds ``total`` events.

        Looking up thousands of ids in a big store at every poll took this process a good
        share of the cores the daemon was being measured on; the event count is one row.
        """
        conn = self._connection()
        if conn is None or self.events() < total:
            return False
        missing = ids if self._missing is None else self._missing
        try:
            self._missing = sorted(set(missing) - queries.known_ids(conn, missing))
        except apsw.Error:  # the daemon has not created its tables yet
            return False
        return not self._missing

    def events(self) -> int:
        """Rows in the event table (0 until the daemon has created it)."""
        conn = self._connection()
        if conn is None:
            return 0
        try:
            return int(queries.counts(conn)["events"])  # kept by the store: no scan
        except apsw.Error:
            return 0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def copy_store(source: Path, target: Path) -> Path:
    """A copy of the database files of ``source`` in a fresh directory, flushed to disk.

    Flushed so that writing the copy back does not overlap the run that follows.
    """
    target = fresh_dir(target.parent, target.name)
    for part in source.glob("powrd.db*"):
        if part.name.endswith(".lock"):
            continue
        shutil.copyfile(part, target / part.name)
        with (target / part.name).open("rb+") as handle:
            os.fsync(handle.fileno())
    return target


def print_profile(path: Path | None, title: str, lines: int = 25) -> None:
    if path is None or not path.exists():
        return
    print(f"\n--- profile: {title} (cumulative, top {lines}) ---")
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(lines)
    print(f"--- profile: {title} (own time, top {lines}) ---")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(lines)

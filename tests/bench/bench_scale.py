"""Benchmark: powrd at scale — start-up, flat ingest and memory with many events stored.

Issue 8, targets 3 and 4. Every figure is measured on ``python -m powrd`` subprocesses,
the way a user runs the daemon:

1. A filler corpus of ``--stored`` NIP-101e events (200 authors) is written, streaming,
   to NDJSON in the work directory, or reused when it is already there.
2. ``powrd import`` loads it into store A: events/s, the child's peak RSS, size on disk.
3. Start-up: ``powrd run`` on store A, spawn to the first ``status`` answer, 3 times.
4. Flat at scale: a 20,000-event corpus (other authors) on an in-process relay, synced
   by ``powrd run`` into an empty store and into a copy of store A.
5. Memory: ``powrd run`` backfills the whole filler corpus from an in-process relay
   into an empty store while its RSS is sampled every 0.5 s.

Run from the repository root (``--profile`` runs each daemon under cProfile and prints
its hottest functions)::

    python tests/bench/bench_scale.py [--stored 1000000] [--corpus 20000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Run as a script, the repository root (for tests.support) is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from powrd.control.client import ControlError, call_sync
from powrd.store import queries
from powrd.store.database import open_reader_connection
from tests.bench.scale_filler import Filler, ensure_filler, read_chunks
from tests.support.corpus import current_ids, generate_corpus
from tests.support.daemon import write_config
from tests.support.daemon_process import REPO_ROOT, child_environment
from tests.support.events import keys_for, pubkey_of
from tests.support.relays import start_local_relay

# Events per relay.publish call: the helper parses and sorts a whole call in memory.
PUBLISH_CHUNK = 20_000
CORPUS_AUTHORS, CORPUS_SEED = 8, 11
STARTUP_RUNS = 3
FLAT_POLL_SECONDS = 0.05
RSS_SAMPLE_SECONDS = 0.5
# counts.events is a count(*) over every stored event: poll a long backfill gently.
BACKFILL_POLL_SECONDS = 1.0


# ---------------------------------------------------------------------------- processes


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
        if self.process.poll() is not None:
            log = (self.socket.parent / "daemon.log").read_text(errors="replace")[-2000:]
            raise SystemExit(f"powrd run exited with {self.process.returncode}: {log}")
        try:
            reply: dict[str, Any] = call_sync(self.socket, "status", timeout=60.0)
        except (ControlError, OSError):
            return None
        return reply

    def wait_events(self, expected: int, interval: float, timeout: float) -> float:
        """Poll ``status`` until ``counts.events`` reaches ``expected``; seconds since spawn."""
        deadline = time.perf_counter() + timeout
        last = 0
        while time.perf_counter() < deadline:
            status = self.status()
            if status is not None:
                last = status["counts"]["events"]
                if last >= expected:
                    return time.perf_counter() - self.started
            time.sleep(interval)  # a polling interval, not synchronisation
        raise SystemExit(f"counts.events stuck at {last:,} of {expected:,} after {timeout} s")

    def stop(self) -> int:
        """SIGTERM, wait, and return the kernel's peak RSS figure (VmHWM) in KiB."""
        high_water = proc_status_kib(self.process.pid, "VmHWM")
        self._stop_sampling.set()
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()
        return max(high_water, self.peak_rss_kib)


def fresh_dir(parent: Path, name: str) -> Path:
    path = parent / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def copy_store(source: Path, target: Path) -> Path:
    """A copy of the database files of ``source`` in a fresh directory."""
    target = fresh_dir(target.parent, target.name)
    for part in source.glob("powrd.db*"):
        shutil.copy2(part, target / part.name)
    return target


def print_profile(path: Path | None, title: str, lines: int = 25) -> None:
    if path is None or not path.exists():
        return
    print(f"\n--- profile: {title} (cumulative, top {lines}) ---")
    pstats.Stats(str(path)).sort_stats("cumulative").print_stats(lines)
    print(f"--- profile: {title} (own time, top {lines}) ---")
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(lines)


# ---------------------------------------------------------------------------- steps


@dataclass
class Results:
    """Every figure, filled in step by step."""

    figures: dict[str, float] = field(default_factory=dict)


def step_import(workdir: Path, filler: Filler, results: Results) -> Path:
    """Store A: the filler imported with ``powrd import``; returns its directory."""
    store_a = fresh_dir(workdir, "store-a")
    config = write_config(store_a)
    print(f"importing {filler.events:,} events into store A ...", flush=True)
    seconds, peak_kib, output = run_import(config, filler.path)
    print("  " + output.strip().replace("\n", "\n  "))
    results.figures.update({
        "import_seconds": seconds, "import_rate": filler.events / seconds,
        "import_peak_rss_mb": peak_kib / 1024, "db_mb": db_bytes(store_a) / 1e6,
        "stored_a": stored_events(store_a),
    })
    return store_a


def step_startup(store_a: Path, results: Results, profile_dir: Path | None) -> None:
    """``powrd run`` on store A: spawn to the first ``status`` answer, three times."""
    config = write_config(store_a)
    times = []
    for run in range(STARTUP_RUNS):
        profile = profile_dir / f"startup-{run}.prof" if profile_dir else None
        daemon = RunningDaemon(config, profile)
        status = None
        while status is None and time.perf_counter() - daemon.started < 60:
            status = daemon.status()
            if status is None:
                time.sleep(0.005)  # a polling interval, not synchronisation
        elapsed = time.perf_counter() - daemon.started
        daemon.stop()
        if status is None:
            raise SystemExit("powrd run never answered status")
        times.append(elapsed)
        print(f"  start-up run {run + 1}: {elapsed:.3f} s to the first status "
              f"({status['counts']['events']:,} events)", flush=True)
        if run == 0 and profile_dir:
            print_profile(profile, "start-up")
    results.figures["startup_median"] = statistics.median(times)
    results.figures["startup_max"] = max(times)


def sync_run(store: Path, relay_url: str, authors: tuple[str, ...], expected: int,
             interval: float, profile: Path | None = None) -> tuple[float, int]:
    """``powrd run`` syncing until ``counts.events == expected``: (seconds, peak RSS KiB)."""
    config = write_config(store, relays=[relay_url], authors=list(authors))
    daemon = RunningDaemon(config, profile)
    try:
        seconds = daemon.wait_events(expected, interval, timeout=3600)
    finally:
        peak = daemon.stop()
    return seconds, peak


async def step_flat(workdir: Path, store_a: Path, n_corpus: int, results: Results,
                    profile_dir: Path | None) -> None:
    """The same 20,000-event corpus synced into an empty store and into a copy of A."""
    corpus = generate_corpus(n_corpus, CORPUS_AUTHORS, seed=CORPUS_SEED)
    expected = len(current_ids(corpus))
    authors = tuple(pubkey_of(keys_for(CORPUS_SEED, i)) for i in range(CORPUS_AUTHORS))
    async with await start_local_relay() as relay:
        await relay.publish(corpus)
        empty = fresh_dir(workdir, "flat-empty")
        profile = profile_dir / "flat-empty.prof" if profile_dir else None
        seconds, _ = await asyncio.to_thread(
            sync_run, empty, relay.url, authors, expected, FLAT_POLL_SECONDS, profile)
        results.figures["flat_empty_rate"] = expected / seconds
        print(f"  empty store: {expected:,} events in {seconds:.2f} s", flush=True)

        full = await asyncio.to_thread(copy_store, store_a, workdir / "flat-full")
        base = await asyncio.to_thread(stored_events, full)
        profile = profile_dir / "flat-full.prof" if profile_dir else None
        seconds, _ = await asyncio.to_thread(
            sync_run, full, relay.url, authors, base + expected, FLAT_POLL_SECONDS, profile)
        results.figures["flat_full_rate"] = expected / seconds
        print(f"  store with {base:,} events: {expected:,} events in {seconds:.2f} s", flush=True)
    results.figures["flat_ratio"] = (results.figures["flat_full_rate"]
                                     / results.figures["flat_empty_rate"])
    print_profile(profile_dir / "flat-empty.prof" if profile_dir else None, "sync, empty")
    print_profile(profile_dir / "flat-full.prof" if profile_dir else None, "sync, full")


async def step_backfill(workdir: Path, filler: Filler, results: Results,
                        profile_dir: Path | None) -> None:
    """The whole filler backfilled from a relay into an empty store, RSS sampled."""
    async with await start_local_relay() as relay:
        started = time.perf_counter()
        for index, chunk in enumerate(read_chunks(filler.path, PUBLISH_CHUNK)):
            await relay.publish(chunk)
            if index % 10 == 9:
                print(f"  relay: {(index + 1) * PUBLISH_CHUNK:,} events published", flush=True)
        results.figures["publish_rate"] = filler.events / (time.perf_counter() - started)
        store = fresh_dir(workdir, "backfill")
        profile = profile_dir / "backfill.prof" if profile_dir else None
        seconds, peak_kib = await asyncio.to_thread(
            sync_run, store, relay.url, filler.authors, filler.current,
            BACKFILL_POLL_SECONDS, profile)
    results.figures.update({"backfill_rate": filler.current / seconds,
                            "backfill_seconds": seconds, "backfill_peak_mb": peak_kib / 1024})
    print(f"  backfill: {filler.current:,} events in {seconds:.1f} s", flush=True)
    print_profile(profile, "backfill")


# ---------------------------------------------------------------------------- report


def summary(results: Results, stored: int, corpus: int) -> str:
    f = results.figures
    cores = len(os.sched_getaffinity(0))
    rows = [
        ("filler import (powrd import)", f"{f['import_rate']:,.0f} events/s "
         f"({f['import_seconds']:.0f} s)", "-", ""),
        ("  import peak RSS", f"{f['import_peak_rss_mb']:.0f} MB", "-", ""),
        ("  store A on disk", f"{f['db_mb']:,.0f} MB ({f['stored_a']:,} events)", "-", ""),
        ("start-up to status, median of 3", f"{f['startup_median']:.3f} s "
         f"(max {f['startup_max']:.3f})", "< 1 s", _verdict(f["startup_median"] < 1.0)),
        (f"sync {corpus:,}, empty store", f"{f['flat_empty_rate']:,.0f} events/s", "-", ""),
        (f"sync {corpus:,}, {f['stored_a']:,} stored", f"{f['flat_full_rate']:,.0f} events/s",
         "-", ""),
        ("  ratio full / empty", f"{f['flat_ratio']:.2f}", ">= 0.8",
         _verdict(f["flat_ratio"] >= 0.8)),
        ("relay publish (setup)", f"{f['publish_rate']:,.0f} events/s", "-", ""),
        (f"backfill {stored:,} from a relay", f"{f['backfill_rate']:,.0f} events/s "
         f"({f['backfill_seconds']:.0f} s)", "-", ""),
        ("  daemon peak RSS", f"{f['backfill_peak_mb']:.0f} MB", "< 250 MB",
         _verdict(f["backfill_peak_mb"] < 250)),
    ]
    width = max(len(r[0]) for r in rows) + 2
    value_width = max(len(r[1]) for r in rows) + 2
    lines = [f"powrd scale benchmark: --stored {stored:,}, {cores} cores "
             f"(os.cpu_count() {os.cpu_count()}), Python {sys.version.split()[0]}",
             f"{'figure':<{width}}{'measured':<{value_width}}{'target':<10}verdict"]
    lines += [f"{a:<{width}}{b:<{value_width}}{c:<10}{d}" for a, b, c, d in rows]
    return "\n".join(lines)


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


async def run(args: argparse.Namespace) -> None:
    workdir: Path = args.workdir
    profile_dir = fresh_dir(workdir, "profiles") if args.profile else None
    results = Results()
    print(f"work directory: {workdir}", flush=True)
    filler, seconds = ensure_filler(workdir, args.stored)
    print(f"filler: {filler.events:,} events ({filler.current:,} current), "
          + (f"written in {seconds:.0f} s" if seconds else "reused"), flush=True)
    store_a = step_import(workdir, filler, results)
    print("start-up on store A ...", flush=True)
    step_startup(store_a, results, profile_dir)
    print(f"flat at scale: {args.corpus:,}-event corpus ...", flush=True)
    await step_flat(workdir, store_a, args.corpus, results, profile_dir)
    print(f"backfill of {filler.events:,} events ...", flush=True)
    await step_backfill(workdir, filler, results, profile_dir)
    print()
    print(summary(results, args.stored, args.corpus))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=1_000_000,
                        help="events in the filler corpus (store A and the backfill)")
    parser.add_argument("--corpus", type=int, default=20_000,
                        help="events in the corpus synced for the flat-at-scale figure")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the filler, stores and logs go (kept; reuses the filler)")
    parser.add_argument("--profile", action="store_true",
                        help="run each daemon under cProfile and print its hottest functions")
    args = parser.parse_args()
    if args.workdir is None:
        args.workdir = Path(tempfile.gettempdir()) / "powrd-bench-scale"
    args.workdir.mkdir(parents=True, exist_ok=True)
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

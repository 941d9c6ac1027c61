"""Benchmark: powrd at scale — start-up, flat ingest and memory with many events stored.

Issue 8, targets 3 and 4. Every figure is measured on ``python -m powrd`` subprocesses,
the way a user runs the daemon:

1. A filler corpus of ``--stored`` NIP-101e events (200 authors) is written, streaming,
   to NDJSON in the work directory, or reused when it is already there.
2. ``powrd import`` loads it into store A: events/s, the child's peak RSS, size on disk.
3. Start-up: ``powrd run`` on store A, spawn to the first ``status`` answer, 3 times;
   also a bare interpreter importing the daemon, and one warm ``status`` call.
4. Flat at scale: a 20,000-event corpus (other authors) on an in-process relay, synced
   by ``powrd run`` into an empty store and into a copy of store A, alternately. Each
   pair is timed twice over: until ``status`` reports the expected count (polled every
   50 ms, as a client would), and until the daemon's file holds every expected id (read
   from this process, so the daemon answers no ``status``: the event count the store
   keeps, then the ids once the count is reached).
5. Memory: ``powrd run`` backfills the whole filler from in-process relays into an empty
   store while its RSS is sampled every 0.5 s. nostr-sdk's relay keeps only 75,000
   events, so the filler's authors are spread over one relay per 60,000 events.

The work directory keeps the filler and store A (``--reuse-store`` skips the import on a
later run); the other stores are deleted after their step. At a million events it needs
about 20 GB free; a backfill whose write-ahead log eats the disk is stopped at 5 GB free.

Run from the repository root (``--profile`` runs each daemon under cProfile and prints
its hottest functions; ``--steps`` picks steps)::

    python tests/bench/bench_scale.py [--stored 1000000] [--corpus 20000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# Run as a script, the repository root (for tests.support) is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from powrd.protocol.event import loads
from tests.bench.scale_filler import Filler, ensure_filler, read_chunks
from tests.bench.scale_processes import (
    RunningDaemon,
    Stalled,
    copy_store,
    db_bytes,
    fresh_dir,
    print_profile,
    proc_status_kib,
    run_import,
    stored_events,
)
from tests.support.corpus import current_ids, generate_corpus
from tests.support.daemon import write_config
from tests.support.daemon_process import REPO_ROOT, child_environment
from tests.support.events import keys_for, pubkey_of
from tests.support.relays import start_local_relay

# Events per relay.publish call: the helper parses and sorts a whole call in memory.
PUBLISH_CHUNK = 20_000
# nostr-sdk's in-memory relay drops its oldest events beyond 75,000; stay well below.
RELAY_CAPACITY = 60_000
CORPUS_AUTHORS, CORPUS_SEED = 8, 11
STARTUP_RUNS = 3
FLAT_POLL_SECONDS = 0.05
BACKFILL_POLL_SECONDS = 1.0
# A sync that stores nothing new for this long has hung (seen once in many runs: a relay
# worker reporting "connected" with no connection left); the flat step retries it once.
STALL_SECONDS = 60.0
MIN_FREE_BYTES = 5 * 10**9


# ---------------------------------------------------------------------------- steps


@dataclass
class Results:
    """Every figure, filled in step by step (absent when its step did not run)."""

    figures: dict[str, float] = field(default_factory=dict)


def step_import(workdir: Path, filler: Filler, results: Results, reuse: bool) -> Path:
    """Store A: the filler imported with ``powrd import``; returns its directory."""
    store_a = workdir / "store-a"
    if reuse and (store_a / "powrd.db").exists() and stored_events(store_a) == filler.events:
        print("store A: reused", flush=True)
    else:
        store_a = fresh_dir(workdir, "store-a")
        config = write_config(store_a)
        print(f"importing {filler.events:,} events into store A ...", flush=True)
        seconds, peak_kib, output = run_import(config, filler.path)
        print("  " + output.strip().replace("\n", "\n  "))
        results.figures.update({"import_seconds": seconds, "import_rate": filler.events / seconds,
                                "import_peak_rss_mb": peak_kib / 1024})
    results.figures.update({"db_mb": db_bytes(store_a) / 1e6,
                            "stored_a": stored_events(store_a)})
    return store_a


def step_startup(store_a: Path, results: Results, profile_dir: Path | None) -> None:
    """``powrd run`` on store A: spawn to the first ``status`` answer, three times.

    Also timed, to say where start-up goes: a bare interpreter importing the daemon's
    modules, and ``status`` itself once the daemon is up.
    """
    imports = [_seconds_to_run([sys.executable, "-c", "import powrd.cli.main, "
                                "powrd.service.daemon, powrd.service.methods"])
               for _ in range(STARTUP_RUNS)]
    config = write_config(store_a)
    times, status_seconds = [], []
    for run in range(STARTUP_RUNS):
        profile = profile_dir / f"startup-{run}.prof" if profile_dir else None
        daemon = RunningDaemon(config, profile)
        try:
            elapsed = daemon.wait(lambda d: d.status() is not None, 0.005, 60, "status")
            for _ in range(3):
                started = time.perf_counter()
                daemon.status()
                status_seconds.append(time.perf_counter() - started)
        finally:
            daemon.stop()
        times.append(elapsed)
        print(f"  start-up run {run + 1}: {elapsed:.3f} s to the first status", flush=True)
    results.figures.update({
        "startup_median": statistics.median(times), "startup_max": max(times),
        "imports_median": statistics.median(imports),
        "status_median": statistics.median(status_seconds),
    })
    print_profile(profile_dir / "startup-0.prof" if profile_dir else None, "start-up")


def _seconds_to_run(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=REPO_ROOT, env=child_environment(), check=True)
    return time.perf_counter() - started


def sync_run(store: Path, relay_urls: list[str], authors: tuple[str, ...],
             done: Callable[[RunningDaemon], bool], interval: float,
             profile: Path | None = None) -> tuple[float, int]:
    """``powrd run`` syncing until ``done``: (seconds since spawn, peak RSS in KiB)."""
    config = write_config(store, relays=relay_urls, authors=list(authors))
    daemon = RunningDaemon(config, profile)
    try:
        seconds = daemon.wait(done, interval, 3600, f"the sync into {store}", STALL_SECONDS)
    finally:
        peak = daemon.stop()
    return seconds, peak


def status_reached(total: int) -> Callable[[RunningDaemon], bool]:
    def done(daemon: RunningDaemon) -> bool:
        status = daemon.status()
        return status is not None and status["counts"]["events"] >= total
    return done


def store_holds(ids: list[str], total: int) -> Callable[[RunningDaemon], bool]:
    return lambda daemon: daemon.store.holds_all(ids, total)


async def step_flat(workdir: Path, store_a: Path, args: argparse.Namespace, results: Results,
                    profile_dir: Path | None) -> None:
    """The same corpus synced into an empty store and into a copy of A, alternately.

    Each pair runs twice over: finished when ``status`` reports the expected count
    (polled every 50 ms), and finished when the daemon's file holds every expected id
    (read from this process, so the daemon answers no ``status`` at all).
    """
    corpus = generate_corpus(args.corpus, CORPUS_AUTHORS, seed=CORPUS_SEED)
    expected = sorted(current_ids(corpus))
    authors = tuple(pubkey_of(keys_for(CORPUS_SEED, i)) for i in range(CORPUS_AUTHORS))
    base = results.figures["stored_a"]
    rates: dict[str, list[float]] = {}
    async with await start_local_relay() as relay:
        await relay.publish(corpus)
        for repeat in range(args.flat_repeats):
            for mode in ("status", "store"):
                for kind in ("empty", "full"):
                    name = f"flat-{mode}-{kind}"
                    profile = (profile_dir / f"{name}.prof"
                               if profile_dir and repeat == 0 else None)
                    total = len(expected) + (int(base) if kind == "full" else 0)
                    done = (status_reached(total) if mode == "status"
                            else store_holds(expected, total))
                    seconds = await _flat_once(workdir, store_a if kind == "full" else None,
                                               relay.url, authors, done, profile, name)
                    rates.setdefault(name, []).append(len(expected) / seconds)
                    print(f"  {name} #{repeat + 1}: {len(expected):,} events in {seconds:.2f} s",
                          flush=True)
    for leftover in ("flat-empty", "flat-full"):
        await asyncio.to_thread(shutil.rmtree, workdir / leftover, True)
    for name, values in rates.items():
        results.figures[name] = statistics.median(values)
    for mode in ("status", "store"):
        results.figures[f"flat-{mode}-ratio"] = (results.figures[f"flat-{mode}-full"]
                                                 / results.figures[f"flat-{mode}-empty"])
    for name in sorted(rates):
        print_profile(profile_dir / f"{name}.prof" if profile_dir else None, name)


async def _flat_once(workdir: Path, copy_of: Path | None, relay_url: str,
                     authors: tuple[str, ...], done: Callable[[RunningDaemon], bool],
                     profile: Path | None, name: str) -> float:
    """One flat-at-scale sync into an empty store or a copy of ``copy_of``; retried once."""
    for attempt in (1, 2):
        store = fresh_dir(workdir, "flat-empty") if copy_of is None else \
            await asyncio.to_thread(copy_store, copy_of, workdir / "flat-full")
        try:
            seconds, _ = await asyncio.to_thread(
                sync_run, store, [relay_url], authors, done, FLAT_POLL_SECONDS, profile)
            return seconds
        except Stalled as stalled:
            print(f"  {name}: STALLED ({stalled}); "
                  + ("retrying" if attempt == 1 else "giving up"), flush=True)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def step_backfill(workdir: Path, filler: Filler, results: Results,
                        profile_dir: Path | None) -> None:
    """The whole filler backfilled from relays into an empty store, RSS sampled.

    nostr-sdk's in-memory relay keeps only its newest 75,000 events, so the filler's
    authors are split over as many relays as it takes to hold at most 60,000 each; the
    daemon backfills from all of them at once.
    """
    n_relays = max(1, -(-filler.events // RELAY_CAPACITY))
    relay_of = {author: index % n_relays for index, author in enumerate(filler.authors)}
    relays = [await start_local_relay() for _ in range(n_relays)]
    store = workdir / "backfill"
    results.figures["backfill_expected"] = filler.current
    try:
        started = time.perf_counter()
        for index, chunk in enumerate(read_chunks(filler.path, PUBLISH_CHUNK)):
            parts: list[list[str]] = [[] for _ in relays]
            for line in chunk:
                parts[relay_of[loads(line)["pubkey"]]].append(line)
            await asyncio.gather(*(relay.publish(part)
                                   for relay, part in zip(relays, parts, strict=True)))
            if index % 10 == 9:
                print(f"  {(index + 1) * PUBLISH_CHUNK:,} events published to {n_relays} relays",
                      flush=True)
        results.figures["publish_rate"] = filler.events / (time.perf_counter() - started)
        fresh_dir(workdir, "backfill")
        profile = profile_dir / "backfill.prof" if profile_dir else None
        progress = BackfillProgress(filler.current, results)
        try:
            seconds, peak_kib = await asyncio.to_thread(
                sync_run, store, [relay.url for relay in relays], filler.authors, progress,
                BACKFILL_POLL_SECONDS, profile)
            results.figures["backfill_peak_mb"] = max(results.figures["backfill_peak_mb"],
                                                      peak_kib / 1024)
            results.figures["backfill_seconds"] = seconds
            print(f"  backfill: {filler.current:,} events in {seconds:.1f} s", flush=True)
        except (Stalled, DiskLow) as stopped:
            print(f"  backfill STOPPED EARLY: {stopped}", flush=True)
    finally:
        for relay in relays:
            relay.stop()
        await asyncio.to_thread(shutil.rmtree, store, True)
    results.figures["relays"] = n_relays
    results.figures["backfill_rate"] = (results.figures["backfill_stored"]
                                        / results.figures["backfill_seconds"])
    print_profile(profile, "backfill")


class DiskLow(RuntimeError):
    """The work directory's disk is nearly full; the run stops before it fills."""


@dataclass
class BackfillProgress:
    """The backfill's end condition, which also keeps the figures of a partial run.

    Prints progress every 30 s, and stops the run while the disk still has 5 GB free:
    a write-ahead log that never gets checkpointed grows without bound (seen at a million
    events: 27 GB of WAL beside a 5 GB database).
    """

    expected: int
    results: Results
    _last_print: float = field(default_factory=time.perf_counter)

    def __call__(self, daemon: RunningDaemon) -> bool:
        stored = daemon.store.events()
        rss_kib = proc_status_kib(daemon.process.pid, "VmRSS")
        wal = daemon.store.path.with_name(daemon.store.path.name + "-wal")
        wal_bytes = wal.stat().st_size if wal.exists() else 0
        elapsed = time.perf_counter() - daemon.started
        f = self.results.figures
        f.update({"backfill_stored": stored, "backfill_seconds": elapsed,
                  "backfill_rss_end_mb": rss_kib / 1024,
                  "backfill_peak_mb": max(f.get("backfill_peak_mb", 0),
                                          max(rss_kib, daemon.peak_rss_kib) / 1024),
                  "backfill_wal_gb": max(f.get("backfill_wal_gb", 0), wal_bytes / 1e9)})
        if time.perf_counter() - self._last_print >= 30:
            self._last_print = time.perf_counter()
            print(f"  {stored:,} of {self.expected:,} stored after {elapsed:.0f} s; RSS "
                  f"{rss_kib / 1024:.0f} MB (peak {f['backfill_peak_mb']:.0f}); WAL "
                  f"{wal_bytes / 1e9:.1f} GB", flush=True)
        free = shutil.disk_usage(wal.parent).free
        if free < MIN_FREE_BYTES:
            raise DiskLow(f"{free / 1e9:.1f} GB left on disk (WAL {wal_bytes / 1e9:.1f} GB)")
        return stored >= self.expected


# ---------------------------------------------------------------------------- report


def summary(results: Results, args: argparse.Namespace) -> str:
    """Each figure next to its target, as a table."""
    f = results.figures
    stored = f"{int(f['stored_a']):,}"
    rows: list[tuple[str, str, str, str]] = []

    def row(label: str, key: str, value: str, target: str = "-", ok: bool | None = None) -> None:
        if key in f:
            verdict = "" if ok is None else "met" if ok else "MISSED"
            rows.append((label, value, target, verdict))

    def fmt(key: str, pattern: str) -> str:
        return pattern.format(f.get(key, float("nan")))

    row("powrd import of the filler", "import_rate",
        fmt("import_rate", "{:,.0f} events/s") + fmt("import_seconds", " ({:.0f} s)"))
    row("  import peak RSS", "import_peak_rss_mb", fmt("import_peak_rss_mb", "{:.0f} MB"))
    row("  store A on disk", "db_mb", fmt("db_mb", "{:,.0f} MB") + f" ({stored} events)")
    row("start-up to status (median of 3)", "startup_median",
        fmt("startup_median", "{:.3f} s") + fmt("startup_max", " (max {:.3f})"), "< 1 s",
        f.get("startup_median", 9) < 1.0)
    row("  interpreter + imports alone", "imports_median", fmt("imports_median", "{:.3f} s"))
    row("  one status call, warm", "status_median", fmt("status_median", "{:.3f} s"))
    for mode, how in (("status", "status every 50 ms"), ("store", "file polled")):
        row(f"sync {args.corpus:,}, empty ({how})", f"flat-{mode}-empty",
            fmt(f"flat-{mode}-empty", "{:,.0f} events/s"))
        row(f"sync {args.corpus:,}, {stored} stored ({how})", f"flat-{mode}-full",
            fmt(f"flat-{mode}-full", "{:,.0f} events/s"))
        row("  ratio full / empty", f"flat-{mode}-ratio", fmt(f"flat-{mode}-ratio", "{:.2f}"),
            ">= 0.8", f.get(f"flat-{mode}-ratio", 0) >= 0.8)
    row("relay publish (set-up only)", "publish_rate", fmt("publish_rate", "{:,.0f} events/s"))
    partial = f.get("backfill_stored", 0) < f.get("backfill_expected", 0)
    row(f"backfill of {args.stored:,}" + (" (STOPPED at " + fmt("backfill_stored", "{:,.0f})")
                                          if partial else ""), "backfill_rate",
        fmt("backfill_rate", "{:,.0f} events/s") + fmt("backfill_seconds", " ({:.0f} s") +
        fmt("relays", ", {:.0f} relays)"))
    row("  daemon peak RSS", "backfill_peak_mb", fmt("backfill_peak_mb", "{:.0f} MB"),
        "< 250 MB", f.get("backfill_peak_mb", 1e9) < 250)
    row("  daemon RSS at the end", "backfill_rss_end_mb", fmt("backfill_rss_end_mb", "{:.0f} MB"))
    row("  largest write-ahead log", "backfill_wal_gb", fmt("backfill_wal_gb", "{:.1f} GB"))
    widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
    lines = [f"powrd scale benchmark: --stored {args.stored:,} --corpus {args.corpus:,}; "
             f"{len(os.sched_getaffinity(0))} cores; Python {sys.version.split()[0]}",
             "".join(h.ljust(w) for h, w in zip(("figure", "measured", "target"), widths, strict=True))
             + "verdict"]
    lines += ["".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + r[3] for r in rows]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> None:
    workdir: Path = args.workdir
    profile_dir = fresh_dir(workdir, "profiles") if args.profile else None
    results = Results()
    print(f"work directory: {workdir}", flush=True)
    filler, seconds = ensure_filler(workdir, args.stored)
    print(f"filler: {filler.events:,} events ({filler.current:,} current), "
          + (f"written in {seconds:.0f} s" if seconds else "reused"), flush=True)
    try:
        store_a = step_import(workdir, filler, results, args.reuse_store)
        if "startup" in args.steps:
            print("start-up on store A ...", flush=True)
            step_startup(store_a, results, profile_dir)
        if "flat" in args.steps:
            print(f"flat at scale: {args.corpus:,}-event corpus ...", flush=True)
            await step_flat(workdir, store_a, args, results, profile_dir)
        if "backfill" in args.steps:
            print(f"backfill of {filler.events:,} events ...", flush=True)
            await step_backfill(workdir, filler, results, profile_dir)
    finally:
        print()
        print(summary(results, args))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stored", type=int, default=1_000_000,
                        help="events in the filler corpus (store A and the backfill)")
    parser.add_argument("--corpus", type=int, default=20_000,
                        help="events in the corpus synced for the flat-at-scale figure")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where the filler, stores and logs go (kept; reuses the filler)")
    parser.add_argument("--flat-repeats", type=int, default=2,
                        help="runs of each flat-at-scale case (the median is reported)")
    parser.add_argument("--steps", default="startup,flat,backfill",
                        help="comma-separated subset of startup,flat,backfill")
    parser.add_argument("--reuse-store", action="store_true",
                        help="keep store A from an earlier run when it holds the filler")
    parser.add_argument("--profile", action="store_true",
                        help="run each daemon under cProfile and print its hottest functions")
    args = parser.parse_args()
    if args.workdir is None:
        args.workdir = Path(tempfile.gettempdir()) / "powrd-bench-scale"
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.steps = set(args.steps.split(","))
    asyncio.run(run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

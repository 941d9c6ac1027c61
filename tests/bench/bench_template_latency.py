"""Benchmark: ``library.template`` latency with and without a cache hit.

Stores a generated corpus (100,000 events by default) through the same pipeline as
``powrd import``, then resolves workout templates directly through
:func:`powrd.library.cache.cached_template`: once each on a cold cache (misses), again
(hits), and through the uncached :func:`resolve_template` for reference. Prints p50 and
p99 per case.

Then it starts ``powrd run`` on the same database and measures ``library.template`` over
the control socket (one persistent connection): a first pass over the sample (cache
misses) and a second (cache hits).

Run from the repository root::

    python tests/bench/bench_template_latency.py [--events 100000] [--samples 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

# Run as a script, the repository root (for tests.support) is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from powrd.control.client import ControlClient, ControlError
from powrd.library.cache import QueryCache, cached_template
from powrd.library.service import resolve_template
from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import queries
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.corpus import generate_corpus

IMPORT_BATCH = 2000


def template_coordinates(events: list[str]) -> list[str]:
    """Coordinates of every workout template in the corpus (each once)."""
    found: dict[str, None] = {}
    for raw in events:
        event = loads(raw)
        if event["kind"] == 33402:
            d = next(tag[1] for tag in event["tags"] if tag[0] == "d")
            found[f"33402:{event['pubkey']}:{d}"] = None
    return list(found)


def ingest(store: Store, events: list[str]) -> float:
    """Store the corpus as ``powrd import`` does; returns seconds taken."""
    pipeline = Pipeline(store, Policy(), rejected_log_max=1000)
    started = time.perf_counter()
    for start in range(0, len(events), IMPORT_BATCH):
        batch = events[start : start + IMPORT_BATCH]
        result = pipeline.submit_blocking("import", [(loads(raw), len(raw)) for raw in batch])
        if result.rejected:
            raise SystemExit(f"corpus event rejected: {result.rejected[0]}")
    return time.perf_counter() - started


def timed(call: Callable[[str], object], coordinate: str) -> float:
    """Microseconds one call takes."""
    started = time.perf_counter_ns()
    answer = call(coordinate)
    elapsed = (time.perf_counter_ns() - started) / 1000
    if answer is None:
        raise SystemExit(f"template {coordinate} not found")
    return elapsed


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def over_socket(database: Path, sample: list[str]) -> tuple[list[float], list[float]]:
    """(misses, hits) in microseconds for ``library.template`` over a running daemon's socket."""
    config = database.with_name("bench.toml")
    socket = database.with_name("bench.sock")
    config.write_text(
        f'[store]\npath = "{database}"\n[control]\nsocket = "{socket}"\n'
        '[logging]\nlevel = "warning"\n[media]\nenabled = false\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWRD_")}
    daemon = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [sys.executable, "-m", "powrd", "--config", str(config), "run"], env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with ControlClient(socket) as probe:
                    await probe.call("status")
                break
            except ControlError:
                if time.monotonic() > deadline:
                    raise SystemExit("the daemon did not answer within 30 s") from None
                await asyncio.sleep(0.05)
        async with ControlClient(socket) as client:
            passes: list[list[float]] = []
            for _ in range(2):
                latencies = []
                for coordinate in sample:
                    started = time.perf_counter_ns()
                    await client.call("library.template", {"coordinate": coordinate})
                    latencies.append((time.perf_counter_ns() - started) / 1000)
                passes.append(latencies)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    return passes[0], passes[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--authors", type=int, default=40)
    parser.add_argument("--samples", type=int, default=2000)
    args = parser.parse_args()

    started = time.perf_counter()
    events = generate_corpus(args.events, args.authors, seed=2024)
    generated = time.perf_counter() - started
    coordinates = template_coordinates(events)
    random.Random(1).shuffle(coordinates)
    sample = coordinates[: args.samples]

    with tempfile.TemporaryDirectory(prefix="powrd-bench-") as directory, \
            Store(Path(directory) / "bench.db") as store:
        seconds = ingest(store, events)
        conn = store.reader()
        counts = queries.counts(conn)
        own = frozenset(c.split(":")[1] for c in sample[:1])
        cache = QueryCache(max_entries=len(sample) + 1, max_bytes=1 << 30)
        uncached: list[float] = []
        misses: list[float] = []
        for index, coordinate in enumerate(sample):
            # Interleaved, each first half the time: the second call finds warmer pages.
            pair = [(uncached, lambda c: resolve_template(conn, c)),
                    (misses, lambda c: cached_template(cache, conn, c, own))]
            for into, call in pair if index % 2 else reversed(pair):
                into.append(timed(call, coordinate))
        hits = [timed(lambda c: cached_template(cache, conn, c, own), c) for c in sample]
        stats = cache.stats()
        store.close()
        socket_misses, socket_hits = asyncio.run(over_socket(Path(directory) / "bench.db", sample))

    print(f"corpus: {len(events):,} events ({generated:.1f} s to generate or load), "
          f"stored in {seconds:.1f} s ({len(events) / seconds:,.0f} events/s)")
    print(f"store: {counts}")
    print(f"templates: {len(coordinates):,}; sampled {len(sample):,}; "
          f"cache {stats.entries:,} entries, {stats.bytes / 1024:,.0f} KiB, "
          f"{stats.hits:,} hits, {stats.misses:,} misses")
    print()
    print(f"{'library.template (direct)':<28}{'n':>7}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}")
    for name, values in (("cache miss", misses), ("cache hit", hits),
                         ("no cache", uncached)):
        print(f"{name:<28}{len(values):>7}{percentile(values, 0.5):>10.1f}"
              f"{percentile(values, 0.99):>10.1f}{statistics.fmean(values):>10.1f}")
    print()
    print(f"{'library.template (socket)':<28}{'n':>7}{'p50 µs':>10}{'p99 µs':>10}{'mean µs':>10}")
    for name, values in (("cache miss", socket_misses), ("cache hit", socket_hits)):
        print(f"{name:<28}{len(values):>7}{percentile(values, 0.5):>10.1f}"
              f"{percentile(values, 0.99):>10.1f}{statistics.fmean(values):>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

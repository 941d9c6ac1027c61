"""Benchmark: end-to-end relay ingest, beside a raw drain and nostr-sdk's own Client.

A deterministic NIP-101e corpus (20,000 events by default, :mod:`tests.support.corpus`)
is published to nostr-sdk's in-process relay (:mod:`tests.support.relays`), which keeps
the current versions and returns at most 500 events per REQ. Three clients then fetch
everything, one after another, in the same process and run:

raw drain
    a plain ``websockets`` client that pages backwards with an inclusive ``until``
    and only counts frames (it decodes just the frames it needs to find the next
    ``until`` and the ids of the boundary second). The ceiling: what the relay and
    the socket can deliver.
nostr-sdk
    ``nostr_sdk.Client()`` (in-memory) with ``fetch_events`` per page (``limit`` 500, paging with
    ``until`` the same way), which verifies every event and records it in the
    client's default store (in nostr-sdk 0.45 an in-memory tracker of seen ids).
sdk+lmdb (``--lmdb``)
    the same with the client's events kept in nostr-sdk's LMDB store on disk, the
    closer match to powrd, which stores every event. Much slower than the default in
    this binding, whose store calls back into Python for each database operation.
powrd
    a :class:`~powrd.service.daemon.Daemon` on an empty store, timed from its start
    (its first REQ follows at once) until every event is committed: verified, stored
    with its tags, processed into the NIP-101e tables.

With ``--relays 3`` the same corpus is served by three relays at once and each client
fetches from all three (the raw drain and powrd read them concurrently; nostr-sdk's
``ReqTarget.auto`` asks every relay it is connected to); the single-relay figures are
measured in the same run for comparison, and their time ratio printed. powrd's store
size is reported against the JSON bytes of the events a relay serves. Rates are distinct events per second; the
clients take turns ``--repeat`` times and each one's fastest run is reported, which
damps the noise of a shared machine.

Run from the repository root::

    python tests/bench/bench_ingest.py [--events 20000] [--authors 20] [--relays 3]
        [--repeat 3] [--lmdb]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

# Run as a script, the repository root (for tests.support) is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import nostr_sdk
from websockets.asyncio.client import ClientConnection, connect

from powrd.config import load_config
from powrd.logs import configure_logging
from powrd.protocol.event import dumps, loads
from powrd.service.daemon import Daemon
from powrd.store import queries
from tests.support.corpus import current_ids, generate_corpus, keys_for, pubkey_of
from tests.support.daemon import write_config
from tests.support.relays import LocalRelayHandle, start_local_relay

KINDS = (33401, 33402, 1301)
PAGE = 500
SEED = 3101
POLL_SECONDS = 0.01
TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True)
class Measurement:
    """One client's fetch of the corpus."""

    client: str
    events: int
    seconds: float
    store_bytes: int = 0  # powrd only: the database files once the daemon has stopped

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else float("inf")


# ---------------------------------------------------------------- raw drain


async def drain(url: str, authors: list[str]) -> int:
    """How many events the relay holds for ``authors``, paging with an inclusive ``until``.

    Frames are counted, not decoded, except the few a pager must read: the page's
    leading frames in the repeated boundary second (are they new?) and its trailing
    frames in its oldest second (the next boundary).
    """
    total, until, boundary = 0, None, set[str]()
    async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        for page_number in itertools.count():
            wanted: dict[str, object] = {"authors": authors, "kinds": list(KINDS), "limit": PAGE}
            if until is not None:
                wanted["until"] = until
            frames = await _page(ws, f"p{page_number}", wanted)
            new = len(frames) - sum(
                1 for event in _leading_second(frames, until) if event["id"] in boundary
            )
            if new == 0:
                return total
            total += new
            oldest_second = _leading_second(frames[::-1], None)
            oldest = oldest_second[0]["created_at"]
            ids = {event["id"] for event in oldest_second}
            boundary = boundary | ids if oldest == until else ids
            until = oldest
    raise AssertionError("itertools.count() ended")


def _leading_second(frames: list[str], second: int | None) -> list[dict[str, Any]]:
    """The decoded events at the head of ``frames`` that share one ``created_at``.

    With ``second`` given, only events of that second count; None takes the first
    frame's second.
    """
    events: list[dict[str, Any]] = []
    for frame in frames:
        event = loads(frame)[2]
        if second is None and not events:
            second = event["created_at"]
        if event["created_at"] != second:
            break
        events.append(event)
    return events


async def _page(ws: ClientConnection, sub: str, wanted: dict[str, object]) -> list[str]:
    await ws.send(dumps(["REQ", sub, wanted]))
    frames: list[str] = []
    while True:
        frame = await ws.recv()
        assert isinstance(frame, str)
        if frame.startswith('["EVENT"'):
            frames.append(frame)
        elif frame.startswith('["EOSE"'):
            await ws.send(dumps(["CLOSE", sub]))
            return frames
        elif frame.startswith('["CLOSED"'):
            raise RuntimeError(f"relay closed the REQ: {frame[:200]}")


async def measure_drain(urls: list[str], authors: list[str]) -> Measurement:
    started = time.perf_counter()
    counts = await asyncio.gather(*(drain(url, authors) for url in urls))
    seconds = time.perf_counter() - started
    # Every relay serves the same corpus: the distinct events are one relay's.
    assert len(set(counts)) == 1, counts
    return Measurement("raw drain", counts[0], seconds)


# ---------------------------------------------------------------- nostr-sdk


async def measure_sdk(urls: list[str], authors: list[str]) -> Measurement:
    """nostr-sdk's default ``Client()``: its store is an in-memory tracker of seen ids."""
    client = nostr_sdk.Client()
    seconds, fetched = await _sdk_fetch(client, urls, authors)
    await client.shutdown()
    return Measurement("nostr-sdk", fetched, seconds)


async def measure_sdk_lmdb(urls: list[str], authors: list[str]) -> Measurement:
    """nostr-sdk's Client keeping the events in its LMDB store, on disk as powrd's are."""
    # NostrLmdb reaches Python through uniffi callbacks that need the running loop.
    nostr_sdk.uniffi_set_event_loop(asyncio.get_running_loop())
    with tempfile.TemporaryDirectory(prefix="sdk-lmdb-") as directory:
        database = await nostr_sdk.NostrLmdb.open(directory)
        client = nostr_sdk.ClientBuilder().database(database).build()
        seconds, fetched = await _sdk_fetch(client, urls, authors)
        kinds = [nostr_sdk.Kind(kind) for kind in KINDS]
        kept = await client.database().count(nostr_sdk.Filter().kinds(kinds))
        await client.shutdown()
    if kept != fetched:
        raise SystemExit(f"nostr-sdk's LMDB store kept {kept} of {fetched} events")
    return Measurement("sdk+lmdb", fetched, seconds)


async def _sdk_fetch(client: nostr_sdk.Client, urls: list[str], authors: list[str]) -> tuple[float, int]:
    """Page through the corpus with ``fetch_events``; returns seconds and events fetched."""
    for url in urls:
        await client.add_relay(nostr_sdk.RelayUrl.parse(url))
    pubkeys = [nostr_sdk.PublicKey.parse(author) for author in authors]
    kinds = [nostr_sdk.Kind(kind) for kind in KINDS]
    seen: set[str] = set()
    started = time.perf_counter()
    await client.connect()
    until: int | None = None
    while True:
        wanted = nostr_sdk.Filter().authors(pubkeys).kinds(kinds).limit(PAGE)
        if until is not None:
            wanted = wanted.until(nostr_sdk.Timestamp.from_secs(until))
        page = await client.fetch_events(
            nostr_sdk.ReqTarget.auto([wanted]), timedelta(seconds=60)
        )
        ids = {event.id().to_hex() for event in page}
        if not ids - seen:
            break
        seen |= ids
        until = min(event.created_at().as_secs() for event in page)
    return time.perf_counter() - started, len(seen)


# ---------------------------------------------------------------- powrd


async def measure_powrd(urls: list[str], authors: list[str], expected: int) -> Measurement:
    with tempfile.TemporaryDirectory(prefix="powrd-bench-") as directory:
        config = load_config(write_config(Path(directory), relays=urls, authors=authors), {})
        daemon = Daemon(config, {})
        await daemon.start()
        try:
            # The relay tasks exist now; their connections and first REQs follow at once.
            started = time.perf_counter()
            workers = [worker for worker, _ in daemon.workers.values()]
            deadline = started + TIMEOUT_SECONDS
            while sum(w.status.events_stored for w in workers) < expected:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"powrd stored {stored(daemon)} of {expected} events")
                await asyncio.sleep(POLL_SECONDS)  # polling the counters, not synchronising
            seconds = time.perf_counter() - started
            if stored(daemon) != expected:
                raise SystemExit(f"powrd's store holds {stored(daemon)} events, not {expected}")
            rejected = sum(w.status.events_rejected for w in workers)
            if rejected:
                raise SystemExit(f"powrd rejected {rejected} corpus events")
        finally:
            await stop(daemon)
        size = store_bytes(Path(directory))
    return Measurement("powrd", expected, seconds, size)


async def stop(daemon: Daemon) -> None:
    """``daemon.stop()``, cancelling again the tasks that swallowed their cancellation.

    On Python 3.11 ``asyncio.wait_for`` returns instead of raising when it is cancelled
    just as the awaited event is set. The resolver (and the publisher and media tasks)
    wait that way, and the commit that completes the corpus wakes the resolver just as
    the benchmark stops the daemon, so ``stop()`` can wait for it forever.
    """
    stopping = asyncio.ensure_future(daemon.stop())
    while not (await asyncio.wait({stopping}, timeout=1.0))[0]:
        stragglers = daemon._background + [task for _, task in daemon.workers.values()]
        for task in stragglers:
            task.cancel()
    stopping.result()


def store_bytes(directory: Path) -> int:
    """Bytes of the database files (main file, WAL if any) in ``directory``."""
    return sum(path.stat().st_size for path in directory.glob("*.db*"))


def stored(daemon: Daemon) -> int:
    assert daemon.store is not None
    return int(queries.counts(daemon.store.reader())["events"])


# ---------------------------------------------------------------- driver


async def serve_corpus(events: list[str], n_relays: int) -> list[LocalRelayHandle]:
    relays = [await start_local_relay() for _ in range(n_relays)]
    await asyncio.gather(*(relay.publish(events) for relay in relays))
    return relays


async def measure_all(
    urls: list[str], authors: list[str], expected: int, repeat: int, lmdb: bool
) -> list[Measurement]:
    """Each client ``repeat`` times, taking turns; the fastest run of each counts."""
    steps: list[Callable[[], Awaitable[Measurement]]] = [
        lambda: measure_drain(urls, authors),
        lambda: measure_sdk(urls, authors),
        lambda: measure_powrd(urls, authors, expected),
    ]
    if lmdb:
        steps.insert(2, lambda: measure_sdk_lmdb(urls, authors))
    best: dict[str, Measurement] = {}
    for _ in range(repeat):
        for step in steps:
            result = await step()
            if result.events != expected:
                raise SystemExit(f"{result.client} fetched {result.events} events, not {expected}")
            fastest = best.get(result.client)
            if fastest is None or result.seconds < fastest.seconds:
                best[result.client] = result
    return list(best.values())


def report(title: str, results: list[Measurement], corpus_bytes: int) -> None:
    by_client = {m.client: m for m in results}
    print(f"\n{title}")
    for m in results:
        print(f"  {m.client:<10} {m.events:>7} events in {m.seconds:7.2f} s  {m.rate:>9,.0f} events/s")
    powrd, sdk, raw = by_client["powrd"], by_client["nostr-sdk"], by_client["raw drain"]
    print(f"  powrd / nostr-sdk  {powrd.rate / sdk.rate:5.2f}")
    if "sdk+lmdb" in by_client:
        print(f"  powrd / sdk+lmdb   {powrd.rate / by_client['sdk+lmdb'].rate:5.2f}")
    print(f"  powrd / raw drain  {powrd.rate / raw.rate:5.2f}")
    print(f"  powrd store / corpus JSON  {powrd.store_bytes / corpus_bytes:5.2f}"
          f"  ({powrd.store_bytes / 2**20:.1f} MiB for {corpus_bytes / 2**20:.1f} MiB)")


async def main(n_events: int, n_authors: int, n_relays: int, repeat: int, lmdb: bool) -> None:
    events = generate_corpus(n_events, n_authors, seed=SEED)
    kept = current_ids(events)
    expected = len(kept)
    # What a relay serves: the current versions, as compact JSON.
    corpus_bytes = sum(len(e.encode()) for e in events if loads(e)["id"] in kept)
    authors = [pubkey_of(keys_for(SEED, i)) for i in range(n_authors)]
    print(f"corpus: {n_events} events by {n_authors} authors, {expected} current"
          f" (what a relay keeps); {os.cpu_count()} cores; pages of {PAGE};"
          f" best of {repeat} runs per client")
    relays = await serve_corpus(events, max(1, n_relays))
    try:
        single = await measure_all([relays[0].url], authors, expected, repeat, lmdb)
        report("1 relay", single, corpus_bytes)
        if n_relays > 1:
            urls = [relay.url for relay in relays]
            results = await measure_all(urls, authors, expected, repeat, lmdb)
            report(f"{n_relays} relays, same corpus", results, corpus_bytes)
            one = {m.client: m.seconds for m in single}
            print(f"\n{n_relays} relays / 1 relay, time: "
                  + "  ".join(f"{m.client} {m.seconds / one[m.client]:.2f}" for m in results))
    finally:
        for relay in relays:
            relay.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="corpus size (default 20000)")
    parser.add_argument("--authors", type=int, default=20, help="corpus authors (default 20)")
    parser.add_argument("--relays", type=int, default=1, help="also measure N relays at once")
    parser.add_argument("--repeat", type=int, default=3, help="runs per client (default 3)")
    parser.add_argument("--lmdb", action="store_true", help="also nostr-sdk with its LMDB store")
    arguments = parser.parse_args()
    configure_logging("error", "console")
    asyncio.run(
        main(arguments.events, arguments.authors, arguments.relays, arguments.repeat, arguments.lmdb)
    )

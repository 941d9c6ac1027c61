"""Benchmark: resyncing a relay's events with NIP-77 negentropy vs REQ paging.

A deterministic NIP-101e corpus (20,000 events by default) is published to nostr-sdk's
in-process relay. The local side then holds either all of the relay's current events
("unchanged") or all but 1% of them ("1% missing"), as (created_at, id) items. Two
ways to get back in step, each in the same run, over a fresh websocket:

negentropy
    :func:`powrd.sync.negentropy.reconcile_with_relay` (NEG-OPEN … NEG-CLOSE), then
    ``REQ {ids}`` in batches of 500 for the ids it says we need.
REQ paging
    what a client without a usable checkpoint does: page backwards through every
    matching event with ``limit`` 500 and an inclusive ``until``.

Bytes are websocket payload bytes in both directions; times are wall-clock, the
fastest of ``--repeat`` runs. With ``--store-items N`` it also fills a real SQLite
file with N events and times reading their negentropy items from the index and
sealing them.

Run from the repository root::

    python tests/bench/bench_negentropy.py [--events 20000] [--repeat 3] [--store-items 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# Run as a script, the repository root (for tests.support) is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from websockets.asyncio.client import ClientConnection, connect

from powrd.protocol.filters import Filter, parse_filter
from powrd.protocol.negentropy import StorageVector
from powrd.sync.negentropy import Verdict, reconcile_with_relay
from tests.support.corpus import current_ids, generate_corpus, keys_for, pubkey_of
from tests.support.negentropy_channel import Counted, WebsocketChannel
from tests.support.relays import start_local_relay

KINDS = (33401, 33402, 1301)
AUTHORS = 20
SEED = 7701
PAGE = 500
ID_BATCH = 500


async def request(
    websocket: ClientConnection, sub_id: str, filter_: dict[str, Any], counted: Counted
) -> list[dict[str, Any]]:
    """One REQ until EOSE; the events' dicts."""
    frame = json.dumps(["REQ", sub_id, filter_])
    counted.sent += len(frame)
    await websocket.send(frame)
    events = []
    while True:
        text = await websocket.recv()
        counted.received += len(text)
        message = json.loads(text)
        if message[0] == "EVENT" and message[1] == sub_id:
            events.append(message[2])
        elif message[0] in ("EOSE", "CLOSED") and message[1] == sub_id:
            if message[0] == "EOSE":
                closing = json.dumps(["CLOSE", sub_id])
                counted.sent += len(closing)
                await websocket.send(closing)
            return events


async def by_negentropy(
    url: str, filter_: dict[str, Any], local: StorageVector
) -> tuple[float, Counted, int, int]:
    """(seconds, bytes, ids needed, events fetched) for reconcile + fetch of the needs."""
    counted = Counted()
    async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        started = time.perf_counter()
        result = await reconcile_with_relay(
            WebsocketChannel(ws, counted), local, parse_filter(filter_), "neg"
        )
        assert result.verdict is Verdict.RECONCILED, result.reason
        fetched = 0
        for number, start in enumerate(range(0, len(result.need), ID_BATCH)):
            batch = result.need[start : start + ID_BATCH]
            fetched += len(await request(ws, f"ids{number}", {"ids": batch}, counted))
        seconds = time.perf_counter() - started
    return seconds, counted, len(result.need), fetched


async def by_paging(url: str, filter_: dict[str, Any]) -> tuple[float, Counted, int]:
    """(seconds, bytes, distinct events) for paging through everything with until."""
    counted = Counted()
    seen: set[str] = set()
    until: int | None = None
    async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
        started = time.perf_counter()
        for page_number in itertools.count():
            wanted = {**filter_, "limit": PAGE}
            if until is not None:
                wanted["until"] = until
            page = await request(ws, f"p{page_number}", wanted, counted)
            fresh = [event for event in page if event["id"] not in seen]
            if not fresh:
                break
            seen.update(event["id"] for event in fresh)
            until = min(event["created_at"] for event in page)
        seconds = time.perf_counter() - started
    return seconds, counted, len(seen)


def store_items_figures(count: int) -> None:
    """Fill a real SQLite file with ``count`` events; time reading and sealing the items."""
    from powrd.library.process import process
    from powrd.protocol.event import Event
    from powrd.store import ingest
    from powrd.store.batch import IngestItem
    from powrd.store.database import open_writer_connection
    from powrd.store.negentropy_items import negentropy_items, query_plan

    authors = [f"{n:064x}" for n in range(1, 21)]
    rnd = random.Random(SEED)
    with tempfile.TemporaryDirectory() as directory:
        conn = open_writer_connection(Path(directory) / "powrd.db")
        for start in range(0, count, 5000):
            batch = []
            for n in range(start, min(count, start + 5000)):
                event = Event(
                    rnd.randbytes(32).hex(),
                    authors[n % 20],
                    1_600_000_000 + n,
                    1301,
                    [["title", f"workout {n}"]],
                    "x" * 300,
                    "00" * 64,
                )
                batch.append(IngestItem(event, "bench", process(event)))
            with conn:
                ingest.ingest(conn, batch, 1_700_000_000)
        for label, flt in (
            ("kinds", Filter(kinds=frozenset(KINDS))),
            ("kinds+1 author", Filter(kinds=frozenset(KINDS), authors=frozenset(authors[:1]))),
        ):
            best_query = best_seal = float("inf")
            for _ in range(3):
                started = time.perf_counter()
                items = negentropy_items(conn, flt)
                queried = time.perf_counter()
                StorageVector.seal(items)
                best_query = min(best_query, queried - started)
                best_seal = min(best_seal, time.perf_counter() - queried)
            print(
                f"store items, {label}: {len(items):,} items, query {best_query * 1000:.0f} ms,"
                f" seal {best_seal * 1000:.0f} ms; plan: {query_plan(conn, flt)[0]}"
            )
        conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--store-items", type=int, default=0)
    args = parser.parse_args()
    print(f"cores: {os.cpu_count()}")

    events = generate_corpus(args.events, AUTHORS, SEED)
    current = current_ids(events)
    relay_events = [e for e in map(json.loads, events) if e["id"] in current]
    items = [(e["created_at"], bytes.fromhex(e["id"])) for e in relay_events]
    authors = [pubkey_of(keys_for(SEED, n)) for n in range(AUTHORS)]
    filter_ = {"authors": authors, "kinds": list(KINDS)}
    relay = await start_local_relay()
    try:
        await relay.publish(events)
        rnd = random.Random(SEED)
        missing = set(rnd.sample(range(len(items)), len(items) // 100))
        cases = {
            "unchanged": [item for item in items],
            "1% missing": [item for n, item in enumerate(items) if n not in missing],
        }
        print(f"relay holds {len(items):,} current events")
        print(
            f"{'case':<12} {'method':<11} {'seconds':>8} {'bytes sent':>11} "
            f"{'bytes received':>15} {'fetched':>8}"
        )
        for case, local_items in cases.items():
            started = time.perf_counter()
            local = StorageVector.seal(local_items)
            seal_ms = (time.perf_counter() - started) * 1000
            negentropy_runs = [
                await by_negentropy(relay.url, filter_, local) for _ in range(args.repeat)
            ]
            paging_runs = [await by_paging(relay.url, filter_) for _ in range(args.repeat)]
            seconds, counted, needed, fetched = min(negentropy_runs, key=lambda r: r[0])
            assert needed == fetched == len(items) - len(local_items)
            print(
                f"{case:<12} {'negentropy':<11} {seconds:8.3f} {counted.sent:11,} "
                f"{counted.received:15,} {fetched:8,}   (sealing the local set: {seal_ms:.0f} ms)"
            )
            page_seconds, page_counted, distinct = min(paging_runs, key=lambda r: r[0])
            assert distinct == len(items)
            print(
                f"{case:<12} {'REQ paging':<11} {page_seconds:8.3f} {page_counted.sent:11,} "
                f"{page_counted.received:15,} {distinct:8,}"
            )
            print(
                f"{case:<12} negentropy/paging: {seconds / page_seconds:.2%} of the time, "
                f"{counted.total / page_counted.total:.2%} of the bytes"
            )
    finally:
        relay.stop()
    if args.store_items:
        store_items_figures(args.store_items)


if __name__ == "__main__":
    asyncio.run(main())

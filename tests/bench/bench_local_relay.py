"""Benchmark: the local relay endpoint serving a large REQ, beside nostr-sdk's LocalRelay.

A deterministic NIP-101e corpus (20,000 events by default, :mod:`tests.support.corpus`)
is stored twice: ``powrd import`` into a fresh database served by a ``powrd run``
subprocess (its local relay on a free loopback port, ``max_limit`` raised to cover the
corpus), and published to nostr-sdk's in-process ``LocalRelay`` (Rust, in-memory,
``max_filter_limit`` raised the same way). Both keep the current versions only, so both
answer with the same events.

nostr-sdk's LocalRelay returns at most 500 events per REQ whatever its
``max_filter_limit``, so the comparison is made the way apps page through a relay:
REQs of ``limit`` 500 going backwards with an inclusive ``until`` (each page's oldest
second), events deduplicated by id, until a page brings nothing new — the same plain
``websockets`` client for both servers, once with one client, then with 10 clients at
once (events/s counts all of them). powrd is also timed answering the whole corpus in
one REQ ``{"limit": N}`` (frames counted, not decoded), which nostr-sdk cannot. Each
figure is the best of ``--repeat`` runs; the ratio is powrd / nostr-sdk (above 1.0:
powrd faster).

Run from the repository root::

    python tests/bench/bench_local_relay.py [--events 20000] [--clients 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, the repository root (for tests.support) is not on the path by itself.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import nostr_sdk
from websockets.asyncio.client import connect

from powrd.protocol.event import loads
from tests.support import relays as support_relays
from tests.support.corpus import current_ids, generate_corpus

SEED = 4869
PAGE = 500
START_TIMEOUT = 60.0


async def drain(url: str, limit: int) -> int:
    """One REQ for ``limit`` events; returns how many EVENT frames came before EOSE."""
    async with connect(url, compression=None, max_size=None, ping_interval=None) as websocket:
        await websocket.send(json.dumps(["REQ", "bench", {"limit": limit}]))
        count = 0
        async for frame in websocket:
            if isinstance(frame, str) and frame.startswith('["EOSE"'):
                return count
            count += 1
    raise SystemExit(f"{url} closed before EOSE")


async def drain_paged(url: str, limit: int) -> int:
    """Page backwards through everything in REQs of :data:`PAGE`; returns distinct events."""
    seen: set[str] = set()
    until: int | None = None
    async with connect(url, compression=None, max_size=None, ping_interval=None) as websocket:
        for page_number in itertools.count():
            wanted: dict[str, int] = {"limit": PAGE}
            if until is not None:
                wanted["until"] = until
            sub_id = f"p{page_number}"
            await websocket.send(json.dumps(["REQ", sub_id, wanted]))
            fresh = 0
            oldest = None
            async for frame in websocket:
                message = loads(frame)
                if message[0] == "EOSE":
                    break
                event = message[2]
                if event["id"] not in seen:
                    seen.add(event["id"])
                    fresh += 1
                created_at = event["created_at"]
                oldest = created_at if oldest is None else min(oldest, created_at)
            await websocket.send(json.dumps(["CLOSE", sub_id]))
            if not fresh or oldest is None:
                return len(seen)
            until = oldest
    return len(seen)


async def measure(
    url: str, limit: int, clients: int, repeat: int, expected: int, *, paged: bool
) -> float:
    """Best events/s of ``repeat`` runs with ``clients`` concurrent readers."""
    best = 0.0
    reader = drain_paged if paged else drain
    for _ in range(repeat):
        started = time.perf_counter()
        counts = await asyncio.gather(*(reader(url, limit) for _ in range(clients)))
        seconds = time.perf_counter() - started
        if any(count != expected for count in counts):
            raise SystemExit(f"{url}: expected {expected} events per client, got {counts}")
        best = max(best, sum(counts) / seconds)
    return best


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch_powrd(directory: Path, corpus: list[str], limit: int, port: int) -> subprocess.Popen[bytes]:
    """``powrd import`` the corpus into a fresh store, then start ``powrd run`` on it."""
    config = directory / "powrd.toml"
    config.write_text(
        '[store]\npath = "powrd.db"\n[control]\nsocket = "powrd.sock"\n'
        '[logging]\nlevel = "error"\nformat = "json"\n'
        f'[local_relay]\nlisten = "127.0.0.1:{port}"\nmax_limit = {limit}\n'
    )
    (directory / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    command = [sys.executable, "-m", "powrd", "--config", str(config)]
    subprocess.run(
        [*command, "import", str(directory / "corpus.jsonl")], check=True, capture_output=True
    )
    return subprocess.Popen([*command, "run"])


async def start_powrd(directory: Path, corpus: list[str], limit: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = await asyncio.to_thread(launch_powrd, directory, corpus, limit, port)
    url = f"ws://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            async with connect(url, compression=None):
                return process, url
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise SystemExit("powrd did not start listening") from None
            await asyncio.sleep(0.1)  # polling a subprocess's port, not synchronising a test


async def start_sdk_relay(corpus: list[str], limit: int) -> support_relays.LocalRelayHandle:
    relay = (
        nostr_sdk.LocalRelayBuilder()
        .max_filter_limit(limit)
        .default_filter_limit(limit)
        .rate_limit(nostr_sdk.RateLimit(max_reqs=100_000, notes_per_minute=10_000_000))
        .build()
    )
    await relay.run()
    options = support_relays._Options(nip42=False, max_reqs=100_000, notes_per_minute=10_000_000)
    handle = support_relays.LocalRelayHandle(relay, str(await relay.url()), options)
    await handle.publish(corpus)
    return handle


async def main(n_events: int, n_clients: int, repeat: int) -> None:
    corpus = generate_corpus(n_events, 20, seed=SEED)
    expected = len(current_ids(corpus))
    limit = n_events + 1000
    print(f"corpus: {n_events} events, {expected} current; {os.cpu_count()} cores;"
          f" best of {repeat} runs")
    sdk = await start_sdk_relay(corpus, limit)
    with tempfile.TemporaryDirectory(prefix="bench-local-relay-") as directory:
        process, url = await start_powrd(Path(directory), corpus, limit)
        try:
            for clients in (1, n_clients):
                label = f"{clients:>2} client{'s' if clients > 1 else ' '}"
                mine = await measure(url, limit, clients, repeat, expected, paged=True)
                theirs = await measure(sdk.url, limit, clients, repeat, expected, paged=True)
                print(f"{label} paged       powrd {mine:>9,.0f} events/s   nostr-sdk LocalRelay"
                      f" {theirs:>9,.0f} events/s   ratio {mine / theirs:.2f}")
                whole = await measure(url, limit, clients, repeat, expected, paged=False)
                print(f"{label} one REQ     powrd {whole:>9,.0f} events/s   (nostr-sdk: capped at 500)")
        finally:
            process.terminate()
            process.wait(timeout=30)
            sdk.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000, help="corpus size (default 20000)")
    parser.add_argument("--clients", type=int, default=10, help="concurrent clients (default 10)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (default 3)")
    arguments = parser.parse_args()
    asyncio.run(main(arguments.events, arguments.clients, arguments.repeat))

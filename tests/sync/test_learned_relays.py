"""Relay hints are learned, not trusted: address policy, pinning and limits in the resolver.

Every connection in these tests goes to 127.0.0.1; names are answered by a stub resolver.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from powrd.config import ResolverConfig
from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import fetchqueue
from powrd.store.store import Store
from powrd.sync.address import UnresolvableHost
from powrd.sync.learned import DAY_SECONDS, LearnedRelays
from powrd.sync.pipeline import Pipeline
from powrd.sync.resolver import Resolver
from tests.support.daemon import running_daemon, wait_for, write_config
from tests.support.events import coordinate, keys_for, make_exercise, make_template, pubkey_of
from tests.support.faultrelay import FaultRelay

ALICE = keys_for("learned-relays", 0)
FAST = ResolverConfig(retry_min_seconds=10, retry_max_seconds=1000, fetch_timeout_seconds=5.0,
                      not_found_retry_seconds=3600)


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections and closes each at once."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        writer.close()


@asynccontextmanager
async def listener() -> AsyncIterator[Listener]:
    counting = Listener()
    server = await asyncio.start_server(counting._accept, "127.0.0.1", 0)
    counting.port = server.sockets[0].getsockname()[1]
    try:
        yield counting
    finally:
        server.close()
        await server.wait_closed()


class StubResolver:
    def __init__(self, answers: dict[str, list[Sequence[str]]]) -> None:
        self.answers = answers  # host -> the answer to each successive question
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        answers = self.answers.get(host)
        if not answers:
            raise UnresolvableHost(f"cannot resolve {host}")
        return answers.pop(0) if len(answers) > 1 else answers[0]


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "powrd.db") as s:
        yield s


def submit(pipeline: Pipeline, *events: str) -> None:
    pipeline.submit_blocking("test", [(loads(e), len(e)) for e in events])


def queue(store: Store) -> dict[str, dict]:
    return {e["coordinate"]: e for e in fetchqueue.entries(store.reader())}


@pytest.mark.parametrize("allow_private", [False, True])
async def test_a_daemon_connects_to_a_loopback_hint_only_when_allowed(
    tmp_path: Path, allow_private: bool
) -> None:
    async with listener() as hinted, FaultRelay([]) as configured:
        wanted = coordinate(33401, ALICE, "squat")
        hints = [f"ws://127.0.0.1:{hinted.port}/admin"]
        if not allow_private:
            hints += [f"ws://localhost:{hinted.port}", f"ws://2130706433:{hinted.port}",
                      f"ws://[::ffff:127.0.0.1]:{hinted.port}", f"ws://0x7f.1:{hinted.port}"]
        refs = [(wanted, hint) for hint in hints]
        await configured.add_event(loads(make_template(ALICE, "legs", refs)))
        config = write_config(tmp_path, relays=[configured.url], authors=[pubkey_of(ALICE)],
                              allow_private_relays=allow_private)
        async with running_daemon(config) as daemon:
            assert daemon.store is not None
            store = daemon.store
            if allow_private:
                async def connected() -> bool:
                    return hinted.connections > 0

                await wait_for(connected, what="a connection to the hinted relay", timeout=20)
            else:
                async def settled() -> bool:
                    entry = queue(store).get(wanted)
                    return entry is not None and entry["state"] == fetchqueue.NOT_FOUND

                # The configured relay answered EOSE and every hint was refused.
                await wait_for(settled, what="the coordinate to be not_found", timeout=20)
                assert hinted.connections == 0


async def test_hints_with_a_query_string_are_never_contacted(store: Store) -> None:
    async with listener() as hinted:
        pipeline = Pipeline(store, Policy())
        resolver = Resolver(pipeline, lambda: [], FAST, allow_private_relays=True)
        url = f"ws://127.0.0.1:{hinted.port}/admin/reset?confirm=yes"
        submit(pipeline, make_template(ALICE, "t", [(coordinate(33401, ALICE, "x"), url)]))
        assert await resolver.run_once()
        assert hinted.connections == 0


async def test_a_hint_that_failed_is_not_retried_before_the_backoff(store: Store) -> None:
    async with listener() as hinted:
        now = [float(time.time())]
        pipeline = Pipeline(store, Policy())
        resolver = Resolver(pipeline, lambda: [], FAST, clock=lambda: now[0],
                            allow_private_relays=True)
        url = f"ws://127.0.0.1:{hinted.port}"
        submit(pipeline, make_template(ALICE, "a", [(coordinate(33401, ALICE, "one"), url)]))
        assert await resolver.run_once()
        assert hinted.connections == 1
        # Another reference to the same relay arrives: the relay is still backing off.
        submit(pipeline, make_template(ALICE, "b", [(coordinate(33401, ALICE, "two"), url)]))
        assert await resolver.run_once()
        assert hinted.connections == 1
        assert "not tried" in queue(store)[coordinate(33401, ALICE, "two")]["last_error"]
        now[0] += FAST.retry_max_seconds + 1
        assert await resolver.run_once()
        assert hinted.connections == 2


def test_attempts_per_url_are_capped_per_day() -> None:
    now = [1_000_000.0]
    limits = LearnedRelays(4, 1, 1, max_attempts_per_day=3, clock=lambda: now[0])

    async def attempts() -> int:
        made = 0
        for _ in range(10):
            if limits.deferred("wss://r.example") is None:
                async with limits.attempt("wss://r.example"):
                    limits.succeeded("wss://r.example")
                made += 1
            now[0] += 60
        return made

    assert asyncio.run(attempts()) == 3
    assert "3 attempts" in (limits.deferred("wss://r.example") or "")
    assert limits.deferred("wss://other.example") is None
    now[0] += DAY_SECONDS
    assert limits.deferred("wss://r.example") is None


async def test_at_most_max_concurrent_learned_connections_at_a_time() -> None:
    limits = LearnedRelays(2, 1, 1, clock=time.time)
    peak = 0
    release = asyncio.Event()

    async def connect(url: str) -> None:
        nonlocal peak
        async with limits.attempt(url):
            peak = max(peak, limits.open)
            await release.wait()

    tasks = [asyncio.create_task(connect(f"wss://r{i}.example")) for i in range(5)]
    for _ in range(20):
        await asyncio.sleep(0)  # every task gets many turns to enter
    assert limits.open == 2
    release.set()
    await asyncio.gather(*tasks)
    assert peak == 2
    assert LearnedRelays(0, 1, 1, clock=time.time).deferred("wss://r.example") is not None


async def test_the_connection_goes_to_the_checked_address_not_a_second_answer(
    store: Store,
) -> None:
    squat = make_exercise(ALICE, "squat")
    async with FaultRelay([loads(squat)]) as relay:
        port = relay.url.rsplit(":", 1)[1]
        # A TTL-0 name: loopback when checked, another loopback address afterwards,
        # where nothing listens. A second lookup at connect time would fail.
        stub = StubResolver({"xn--zca.example": [["127.0.0.1"], ["127.0.0.2"]]})
        pipeline = Pipeline(store, Policy())
        resolver = Resolver(pipeline, lambda: [], FAST, allow_private_relays=True, resolve=stub)
        hint = f"ws://ß.example:{port}"
        submit(pipeline, make_template(ALICE, "t", [(coordinate(33401, ALICE, "squat"), hint)]))
        assert await resolver.run_once()
        assert queue(store) == {}  # fetched from the relay at the checked address
        assert stub.asked == ["xn--zca.example"]  # one lookup, of the IDNA-2008 name

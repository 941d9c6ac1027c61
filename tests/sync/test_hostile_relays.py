"""The sync engine against relays that break the rules (tests/support/faultrelay.py).

Each test runs a real :class:`~powrd.service.daemon.Daemon` in the test's event loop
against a :class:`FaultRelay` and checks three things: powrd ends with exactly the
events it asked for, the relay's misbehaviour is counted per relay under its reason,
and the connection (or the daemon) survives as it should.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from powrd.control.client import ControlClient
from powrd.protocol import reasons
from powrd.protocol.event import dumps, loads
from powrd.service.daemon import Daemon
from powrd.store import checkpoints
from powrd.sync.plan import plan
from powrd.sync.relay import RelayWorker
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import (
    exercises_and_records,
    keys_for,
    make_event,
    make_exercise,
    pubkey_of,
)
from tests.support.faultrelay import GARBAGE_FRAMES, Behaviour, FaultRelay

ALICE = keys_for("hostile", 0)
MALLORY = keys_for("hostile", 1)
KINDS = (33401, 33402, 1301)
# Old enough never to trip the future-timestamp policy.
T0 = 1_700_000_000


def alice_events(n: int) -> list[str]:
    """``n`` of Alice's exercises and records, one second apart from T0, oldest first."""
    return exercises_and_records(ALICE, n, T0)


def ids(events: list[str]) -> set[str]:
    return {loads(e)["id"] for e in events}


def config_for(tmp_path: Path, urls: list[str], **sync: float | str) -> Path:
    """write_config's fast test config for Alice, with ``[sync]`` values set or added.

    REQ paging only, unless a test says otherwise: these tests pin down how paging
    copes with hostile relays (tests/sync/test_negentropy_sync.py covers the fallback
    from negentropy to paging).
    """
    sync.setdefault("negentropy", '"off"')
    path = write_config(tmp_path, relays=urls, authors=[pubkey_of(ALICE)], kinds=KINDS)
    lines = path.read_text().splitlines()
    for name, value in sync.items():
        setting = f"{name} = {value}"
        index = next((i for i, line in enumerate(lines) if line.startswith(f"{name} =")), None)
        if index is None:
            lines.insert(lines.index("[sync]") + 1, setting)
        else:
            lines[index] = setting
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Setup:
    relay: FaultRelay
    daemon: Daemon
    worker: RelayWorker

    def reqs(self) -> list[list[Any]]:
        """The REQ frames the relay received, in order."""
        return [m for m in self.relay.received if isinstance(m, list) and m[:1] == ["REQ"]]

    def checkpoint(self) -> int | None:
        (scope,) = plan((pubkey_of(ALICE),), KINDS, 200)
        assert self.daemon.store is not None
        return checkpoints.get(self.daemon.store.reader(), self.relay.url, scope.key)

    async def backfilled(self, within: float = 10) -> None:
        await wait_for(lambda: self.worker.status.backfill_complete, timeout=within, what="backfill")


@asynccontextmanager
async def hostile(tmp_path: Path, relay: FaultRelay, **sync: float) -> AsyncIterator[Setup]:
    """A daemon syncing Alice from ``relay`` (entered here) with ``[sync]`` overrides."""
    async with relay, running_daemon(config_for(tmp_path, [relay.url], **sync)) as daemon:
        yield Setup(relay, daemon, daemon.workers[relay.url][0])


# ---------------------------------------------------------------- malformed frames


async def test_garbage_frames_are_dropped_and_counted(tmp_path: Path) -> None:
    events = alice_events(30)
    async with hostile(tmp_path, FaultRelay(events, Behaviour(garbage=True))) as s:
        await s.backfilled()
        assert stored_ids(s.daemon) == ids(events)
        # Every garbage frame sent before each REQ's answer, counted under one reason.
        assert s.worker.status.dropped[reasons.MALFORMED_FRAME] == len(s.reqs()) * len(GARBAGE_FRAMES)
        assert s.worker.status.as_dict()["dropped"] == {reasons.MALFORMED_FRAME: len(s.reqs()) * 10}
        assert s.worker.status.connects == 1
        assert s.worker.status.events_rejected == 0
        assert s.checkpoint() == T0 + 29


async def test_oversized_frame_is_dropped_and_the_connection_survives(tmp_path: Path) -> None:
    events = alice_events(10)
    # 2 MiB: over max_frame_bytes (1 MiB) but under the 4 MiB websocket cap.
    relay = FaultRelay(events, Behaviour(oversized_bytes=2 * 1024 * 1024))
    async with hostile(tmp_path, relay) as s:
        await s.backfilled()
        assert stored_ids(s.daemon) == ids(events)
        assert s.worker.status.dropped[reasons.FRAME_TOO_LARGE] == len(s.reqs()) >= 1
        assert s.worker.status.connects == 1
        live = make_exercise(ALICE, "live", created_at=int(time.time()))
        await relay.add_event(live)
        await wait_for(lambda: ids([live]) <= stored_ids(s.daemon), timeout=10, what="live event")


@pytest.mark.parametrize(
    ("too_big", "compression"),
    [
        # 5 MiB of plain text over the 4 MiB websocket cap.
        (Behaviour(oversized_bytes=5 * 1024 * 1024), False),
        # 64 KB on the wire that would inflate to 64 MiB: inflation stops at the cap.
        (Behaviour(bombs=1, bomb_bytes=64 * 1024 * 1024), True),
    ],
    ids=["plain", "compressed"],
)
async def test_frame_over_the_hard_cap_ends_the_connection_and_is_counted(
    tmp_path: Path, too_big: Behaviour, compression: bool
) -> None:
    events = alice_events(5)
    relay = FaultRelay(events, per_connection=[too_big], compression=compression)
    async with hostile(tmp_path, relay, compression=str(compression).lower()) as s:
        await s.backfilled(within=15)
        assert stored_ids(s.daemon) == ids(events)
        assert s.worker.status.dropped[reasons.FRAME_TOO_LARGE] == 1
        assert s.worker.status.connects == 2
        assert "hard cap" in (s.worker.status.last_error or "")


async def test_compressed_bombs_under_the_hard_cap_are_dropped_and_the_connection_survives(
    tmp_path: Path,
) -> None:
    events = alice_events(10)
    # Each bomb is about 3 KB on the wire and inflates to 3 MiB: over max_frame_bytes,
    # under the 4 MiB cap that bounds inflation.
    bombs = Behaviour(bombs=20, bomb_bytes=3 * 1024 * 1024)
    relay = FaultRelay(events, bombs, compression=True)
    async with hostile(tmp_path, relay, compression="true") as s:
        await s.backfilled()
        assert stored_ids(s.daemon) == ids(events)
        assert s.worker.status.dropped[reasons.FRAME_TOO_LARGE] == 20 * len(s.reqs())
        assert s.worker.status.connects == 1


async def test_compressed_frames_unasked_end_the_connection_when_compression_is_off(
    tmp_path: Path,
) -> None:
    events = alice_events(5)
    # The relay offers compression but powrd (by default) does not ask for it; the
    # bomb arrives anyway, and is refused without being inflated.
    bomb = Behaviour(bombs=1, bomb_bytes=3 * 1024 * 1024)
    relay = FaultRelay(events, per_connection=[bomb], compression=True)
    async with hostile(tmp_path, relay) as s:
        await s.backfilled(within=15)
        assert stored_ids(s.daemon) == ids(events)
        assert s.worker.status.connects == 2
        assert "1002" in (s.worker.status.last_error or ""), s.worker.status.last_error
        assert s.worker.status.dropped[reasons.FRAME_TOO_LARGE] == 0


# ---------------------------------------------------------------- what the relay sends


async def test_events_outside_the_filter_are_dropped_as_mismatches(tmp_path: Path) -> None:
    wanted = alice_events(20)
    other_kind = [make_event(ALICE, 1, f"note {i}", [], T0 + 100 + i) for i in range(5)]
    others = [make_exercise(MALLORY, f"m{i}", created_at=T0 + 200 + i) for i in range(7)]
    relay = FaultRelay(wanted + other_kind + others, Behaviour(mismatched=True))
    async with hostile(tmp_path, relay) as s:
        await s.backfilled()
        assert stored_ids(s.daemon) == ids(wanted)
        # Each page brings the 12 strangers, and the events newer than its `until`.
        assert s.worker.status.dropped[reasons.FILTER_MISMATCH] >= 12 * len(s.reqs())
        # Received counts what passed the session: the wanted events (and a page's
        # repeat of its boundary second), never the strangers.
        assert len(wanted) <= s.worker.status.events_received <= len(wanted) + len(s.reqs())
        assert s.worker.status.events_rejected == 0
        assert s.worker.status.connects == 1


async def test_events_for_another_author_are_dropped(tmp_path: Path) -> None:
    mine = alice_events(4)
    theirs = [make_exercise(MALLORY, f"m{i}", created_at=T0 + i) for i in range(6)]
    relay = FaultRelay(mine + theirs, Behaviour(mismatched=True))
    async with hostile(tmp_path, relay) as s:
        await s.backfilled()
        # Every page's answer carried all of Mallory's events.
        assert s.worker.status.dropped[reasons.FILTER_MISMATCH] >= len(theirs) * len(s.reqs())
        assert stored_ids(s.daemon) == ids(mine)
        assert len(mine) <= s.worker.status.events_received <= len(mine) + len(s.reqs())


async def test_events_beyond_the_filter_limit_are_dropped(tmp_path: Path) -> None:
    events = alice_events(100)
    relay = FaultRelay(events, Behaviour(ignore_limit=True))
    async with hostile(tmp_path, relay, page_limit=30) as s:
        await s.backfilled()
        assert stored_ids(s.daemon) == ids(events)
        assert {r[2]["limit"] for r in s.reqs()} == {30}
        # The relay sends everything up to `until` every time; each page keeps 30.
        assert s.worker.status.events_received <= 30 * len(s.reqs())
        assert s.worker.status.dropped[reasons.OVER_LIMIT] >= 70
        assert s.checkpoint() == T0 + 99


# ---------------------------------------------------------------- stalls and storms


async def test_never_eose_times_out_keeps_the_checkpoint_and_streams_live(tmp_path: Path) -> None:
    events = alice_events(40)
    relay = FaultRelay(events, Behaviour(no_eose=True))
    async with hostile(tmp_path, relay, page_limit=25, eose_timeout_seconds=0.5) as s:
        await wait_for(lambda: "EOSE" in (s.worker.status.last_error or ""), timeout=10, what="timeout")
        # What arrived is kept, but nothing says the relay sent all it holds.
        assert stored_ids(s.daemon) == ids(events[-25:])
        assert s.checkpoint() is None
        assert not s.worker.status.backfill_complete
        assert s.worker.status.state.value == "connected"
        # The first page had filled its limit; live events must still get through.
        live = [make_exercise(ALICE, f"live{i}", created_at=int(time.time())) for i in range(3)]
        for event in live:
            await relay.add_event(event)
        await wait_for(lambda: ids(live) <= stored_ids(s.daemon), timeout=10, what="live events")
        assert s.worker.status.dropped[reasons.OVER_LIMIT] == 0
        assert s.checkpoint() is None
        assert s.worker.status.connects == 1


async def test_never_eose_then_recovering_relay_completes_the_backfill(tmp_path: Path) -> None:
    events = alice_events(40)
    relay = FaultRelay(events, Behaviour(no_eose=True))
    async with hostile(tmp_path, relay, page_limit=25, eose_timeout_seconds=0.5) as s:
        await wait_for(lambda: "EOSE" in (s.worker.status.last_error or ""), timeout=10, what="timeout")
        relay.set_behaviour(Behaviour())
        # The backfill is tried again, with backoff, on the same connection.
        await s.backfilled()
        assert stored_ids(s.daemon) == ids(events)
        assert s.checkpoint() == T0 + 39
        assert s.worker.status.connects == 1


async def test_instant_disconnects_do_not_cause_a_reconnect_storm(tmp_path: Path) -> None:
    relay = FaultRelay(alice_events(3), Behaviour(close_on_accept=True))
    async with hostile(tmp_path, relay) as s:
        window = 3.0
        await asyncio.sleep(window)  # the observation window itself, not synchronisation
        times = [t for t, _ in relay.connections]
        # Backoff 0.2 s doubling towards 2 s (plus jitter): at most 6 attempts in 3 s.
        assert 2 <= len(times) <= 6
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.2 - 0.02
        assert max(gaps) >= 0.7  # the delay grew: 0.2, 0.4, 0.8 s (+ up to 0.2 s jitter)
        status = s.worker.status.as_dict()
        assert status["connect_attempts"] in (len(times), len(times) + 1)
        assert status["last_error"]
        if status["state"] == "backoff":
            assert 0 <= status["next_retry_s"] <= 2.2


class ThreadedRelay:
    """A FaultRelay on its own thread and event loop.

    A flooding relay in the test's own loop would measure the fixture's sending rather
    than the daemon: its sends rarely yield. On a thread it competes for the CPU the way
    a remote relay's traffic does.
    """

    def __init__(self, relay: FaultRelay) -> None:
        self.relay = relay
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FaultRelay:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.relay.__aenter__(), self.loop).result(10)
        return self.relay

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.relay.__aexit__(None, None, None), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


async def test_flood_leaves_the_daemon_responsive_and_other_relays_syncing(
    tmp_path: Path, relay_factory: Any
) -> None:
    healthy = await relay_factory()
    events = alice_events(50)
    with ThreadedRelay(FaultRelay(events, Behaviour(flood=2_000_000))) as flooder:
        async with running_daemon(config_for(tmp_path, [flooder.url, healthy.url])) as daemon:
            flooded, calm = daemon.workers[flooder.url][0], daemon.workers[healthy.url][0]
            await wait_for(lambda: flooded.status.events_duplicate > 5000, timeout=10, what="flood")
            latencies, published = [], []
            async with ControlClient(daemon.config.control.socket) as client:
                for i in range(20):
                    started = time.monotonic()
                    status = await asyncio.wait_for(client.call("status"), 5)
                    latencies.append(time.monotonic() - started)
                    assert len(status["relays"]) == 2
                    if i % 5 == 0:
                        fresh = make_exercise(ALICE, f"calm{i}", created_at=int(time.time()))
                        await healthy.publish([fresh])
                        published.append(fresh)
                    await asyncio.sleep(0.05)  # pacing between probes
            await wait_for(lambda: ids(published) <= stored_ids(daemon), timeout=10, what="healthy relay")
            assert max(latencies) < 1.0, latencies
            # Still flooding: the calm relay was served during the flood, not after it.
            before = flooded.status.events_duplicate
            await wait_for(lambda: flooded.status.events_duplicate > before, timeout=5, what="flood goes on")
            assert calm.status.events_stored == len(published)
            assert ids(events) <= stored_ids(daemon)
            assert flooded.status.connects == 1
            # Stopping does not wait for the flood to end.
            async with asyncio.timeout(10):
                await daemon.stop()


# ---------------------------------------------------------------- rate limits


class TimedRelay(FaultRelay):
    """A FaultRelay that notes when each REQ arrives (``req_times``).

    Args:
        notice_before_req: REQ number (0-based) to a NOTICE sent before answering it.
    """

    def __init__(
        self, *args: Any, notice_before_req: dict[int, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.req_times: list[float] = []
        self.notices = dict(notice_before_req or {})

    async def _dispatch(self, websocket: Any, session: Any, message: Any) -> None:
        if isinstance(message, list) and message[:1] == ["REQ"]:
            notice = self.notices.get(len(self.req_times))
            self.req_times.append(time.monotonic())
            if notice is not None:
                await websocket.send(dumps(["NOTICE", notice]))
        await super()._dispatch(websocket, session, message)


async def test_rate_limited_closed_slows_down_then_completes(tmp_path: Path) -> None:
    events = alice_events(60)
    relay = TimedRelay(events, Behaviour(closed_reason="rate-limited: slow down"))
    async with hostile(tmp_path, relay, page_limit=20) as s:
        await wait_for(lambda: len(s.reqs()) >= 3, timeout=10, what="re-sent REQs")
        first, second, third = s.reqs()[:3]
        # The same REQ again, each time after a longer pause (0.2 s, then 0.4 s).
        assert first == second == third
        gaps = [b - a for a, b in itertools.pairwise(relay.req_times[:3])]
        assert 0.18 <= gaps[0] < gaps[1]
        assert s.worker.status.as_dict()["throttle_s"] >= 0.4
        relay.set_behaviour(Behaviour())
        await s.backfilled()
        assert stored_ids(s.daemon) == ids(events)
        assert s.worker.status.connects == 1
        # Each completed page eased the throttle: paging ended at full speed.
        assert len(s.reqs()) >= 3 + 3
        assert s.worker.status.as_dict()["throttle_s"] == 0


async def test_rate_limited_notice_spaces_the_next_request(tmp_path: Path) -> None:
    events = alice_events(60)
    # The NOTICE comes before the answer to the first REQ, as a relay warning a client.
    relay = TimedRelay(events, notice_before_req={0: "rate-limited: too many requests"})
    async with hostile(tmp_path, relay, page_limit=20) as s:
        await s.backfilled()
        assert stored_ids(s.daemon) == ids(events)
        assert s.worker.status.notices == 1
        gaps = [b - a for a, b in itertools.pairwise(relay.req_times)]
        # The page asked after the NOTICE waited for the throttle; once it completed
        # unhindered, the throttle eased off and paging went on at full speed.
        assert gaps[0] >= 0.18
        assert min(gaps[1:]) < 0.18
        assert s.worker.status.as_dict()["throttle_s"] == 0


# ---------------------------------------------------------------- closed subscriptions


async def test_thousands_of_closed_frames_for_unknown_subscriptions_are_counted(
    tmp_path: Path,
) -> None:
    events = alice_events(20)
    relay = FaultRelay(events, Behaviour(closed_flood=5_000))
    async with hostile(tmp_path, relay) as s:
        await s.backfilled()
        await wait_for(
            lambda: s.worker.status.dropped[reasons.UNKNOWN_SUBSCRIPTION] == 5_000 * len(s.reqs()),
            timeout=10, what="every CLOSED counted",
        )
        assert stored_ids(s.daemon) == ids(events)
        assert s.worker.status.connects == 1
        # Nothing was re-requested: a CLOSED for someone else's subscription ends nothing.
        # The two REQs are the first page (the live stream) and the empty page below it.
        assert len(s.reqs()) == 2
        live = make_exercise(ALICE, "live", created_at=int(time.time()))
        await relay.add_event(live)
        await wait_for(lambda: ids([live]) <= stored_ids(s.daemon), timeout=10, what="live event")


async def test_a_thousand_subscriptions_closed_at_once_are_retried_with_backoff(
    tmp_path: Path,
) -> None:
    # One author per filter: a thousand scopes, each its own subscription.
    authors = [keys_for("closed-many", i) for i in range(1000)]
    events = [make_exercise(keys, "squat", created_at=T0) for keys in authors[:20]]
    relay = TimedRelay(events, Behaviour(closed_reason="error: too many subscriptions"))
    async with relay:
        config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(k) for k in authors])
        text = config.read_text().replace(
            "[sync]\n", '[sync]\nmax_authors_per_filter = 1\nnegentropy = "off"\n'
        )
        config.write_text(text)
        async with running_daemon(config) as daemon:
            worker = daemon.workers[relay.url][0]
            await wait_for(lambda: len(relay.req_times) >= 3000, timeout=30, what="retries")
            asked: dict[str, list[float]] = {}
            reqs = [m for m in relay.received if isinstance(m, list) and m[:1] == ["REQ"]]
            for req, at in zip(reqs, relay.req_times, strict=False):
                asked.setdefault(req[2]["authors"][0], []).append(at)
            assert len(asked) == 1000
            # Each closed subscription waited out its backoff (0.2 s at least) before it
            # was asked for again: none answered its CLOSED with a REQ at once.
            gaps = [b - a for times in asked.values() for a, b in itertools.pairwise(times)]
            assert gaps and min(gaps) >= 0.18, min(gaps)
            async with ControlClient(daemon.config.control.socket) as client:
                started = time.monotonic()
                status = await client.call("status")
                assert time.monotonic() - started < 1.0
            assert status["relays"][0]["state"] == "connected"
            relay.set_behaviour(Behaviour())
            await wait_for(lambda: worker.status.backfill_complete, timeout=30, what="recovery")
            assert ids(events) <= stored_ids(daemon)
            assert worker.status.connects == 1


async def test_relay_ending_every_subscription_is_backed_off_from_and_still_synced(
    tmp_path: Path,
) -> None:
    events = alice_events(20)
    # The relay ends each subscription 0.1 s after its EOSE: after the run completed.
    idle = Behaviour(close_after_eose="error: shutting down idle subscriptions", close_delay=0.1)
    relay = TimedRelay(events, idle)

    def retry_gaps() -> list[float]:
        # A run sends two REQs at once (its live page, then the empty page below it);
        # the gaps between runs are the retry delays.
        return [b - a for a, b in itertools.pairwise(relay.req_times) if b - a > 0.15]

    async with hostile(tmp_path, relay) as s:
        await wait_for(lambda: len(retry_gaps()) >= 4, timeout=15, what="four retried runs")
        assert stored_ids(s.daemon) == ids(events)
        # Each run completed, yet its live stream was ended soon after: the retries back
        # off (0.2, 0.4, 0.8, 1.6 s + up to 0.2 s jitter) instead of repeating at the
        # minimum delay.
        gaps = retry_gaps()
        assert gaps[3] >= 1.0 and gaps[3] > gaps[0], gaps
        assert s.worker.status.connects == 1
        # A new event reaches the store through the retried run, not a live stream.
        fresh = make_exercise(ALICE, "fresh", created_at=int(time.time()))
        await relay.add_event(fresh)
        await wait_for(lambda: ids([fresh]) <= stored_ids(s.daemon), timeout=10, what="retried run")


# ---------------------------------------------------------------- broken streams


async def test_slow_loris_relay_does_not_stall_the_daemon_or_other_relays(
    tmp_path: Path, relay_factory: Any
) -> None:
    healthy = await relay_factory()
    calm_events = [make_exercise(ALICE, f"calm{i}", created_at=T0 + 1000 + i) for i in range(5)]
    await healthy.publish(calm_events)
    slow = FaultRelay(alice_events(20), Behaviour(trickle_interval=0.05, trickle_chunk=1))
    async with slow, running_daemon(config_for(tmp_path, [slow.url, healthy.url])) as daemon:
        await wait_for(lambda: ids(calm_events) <= stored_ids(daemon), what="the healthy relay")
        async with ControlClient(daemon.config.control.socket) as client:
            for _ in range(10):
                started = time.monotonic()
                await client.call("status")
                assert time.monotonic() - started < 1.0
        # The trickling relay is still mid-frame: nothing of it is stored, and no task died.
        trickler = daemon.workers[slow.url][1]
        assert not trickler.done()
        async with asyncio.timeout(10):
            await daemon.stop()


async def test_reset_mid_frame_reconnects_and_keeps_other_relays_syncing(
    tmp_path: Path, relay_factory: Any
) -> None:
    healthy = await relay_factory()
    calm_events = [make_exercise(ALICE, f"calm{i}", created_at=T0 + 1000 + i) for i in range(5)]
    await healthy.publish(calm_events)
    broken = FaultRelay(alice_events(20), Behaviour(reset_mid_frame=True))
    async with broken, running_daemon(config_for(tmp_path, [broken.url, healthy.url])) as daemon:
        await wait_for(lambda: ids(calm_events) <= stored_ids(daemon), what="the healthy relay")
        worker, task = daemon.workers[broken.url]
        await wait_for(lambda: len(broken.connections) >= 2, what="a reconnect after the reset")
        assert worker.status.last_error
        assert not task.done()
        broken.set_behaviour(Behaviour())
        await wait_for(lambda: ids(alice_events(20)) <= stored_ids(daemon), timeout=30, what="recovery")

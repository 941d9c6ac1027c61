"""A real ``powrd run`` stays responsive and small while relays attack it.

Each hostile relay runs in a process of its own (tests/support/faultrelay_process.py)
and a healthy nostr-sdk relay in this one. The test asks ``status`` over the control
socket the way ``powrd ctl status`` does — a new connection each time — 20 times a
second while the attack goes on, publishes to the healthy relay meanwhile, and reads
the daemon's peak resident memory (``VmHWM``) from /proc at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from powrd.control.client import call_sync
from powrd.protocol import reasons
from powrd.protocol.event import loads
from tests.support.daemon import write_config
from tests.support.daemon_process import DaemonProcess, daemon_process, poll
from tests.support.events import (
    exercises_and_records,
    keys_for,
    make_event,
    make_exercise,
    pubkey_of,
)
from tests.support.faultrelay import Behaviour
from tests.support.faultrelay_process import relay_process

ALICE = keys_for("hostile-process", 0)
T0 = 1_700_000_000
STATUS_BOUND_SECONDS = 0.100
# Measured peaks are 58-90 MB; a relay that could make powrd buffer what it sends
# went past 1 GB before the limits of powrd/sync/connection.py.
PEAK_RSS_BOUND_KB = 200 * 1024
PROBE_SECONDS = 3.0


def alice_events(n: int) -> list[str]:
    """``n`` of Alice's exercises and records, one second apart from T0, oldest first."""
    return exercises_and_records(ALICE, n, T0)


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc/<pid>/status")


def relay_status(daemon: DaemonProcess, url: str) -> dict[str, Any]:
    (relay,) = [r for r in daemon.call("status")["relays"] if r["url"] == url]
    return relay


def stored(daemon: DaemonProcess, event_ids: set[str]) -> bool:
    found = daemon.call("events.query", {"filter": {"ids": sorted(event_ids)}})
    return {event["id"] for event in found["events"]} == event_ids


def flood() -> tuple[list[str], Behaviour, bool]:
    """The relay's events again and again, as fast as the socket takes them."""
    return alice_events(50), Behaviour(flood=10**9), False


def bombs() -> tuple[list[str], Behaviour, bool]:
    """Compressed frames of 3 KB that inflate to 3 MiB each, without end."""
    return alice_events(5), Behaviour(bombs=10**9, bomb_bytes=3 * 1024 * 1024), True


def big_events() -> tuple[list[str], Behaviour, bool]:
    """Validly signed events of 900 KB (over max_event_bytes), again and again."""
    events = [make_event(ALICE, 1301, "x" * 900_000, [], T0 + i) for i in range(5)]
    return events, Behaviour(flood=10**9), False


ATTACKS: dict[str, tuple[Callable[[], tuple[list[str], Behaviour, bool]], str]] = {
    # attack: (what the relay does, the status counter that shows it is under way)
    "flood": (flood, "events_duplicate"),
    "bombs": (bombs, reasons.FRAME_TOO_LARGE),
    "big_events": (big_events, "events_rejected"),
}


def attacked(relay: dict[str, Any], counter: str) -> int:
    """A relay status counter, or the count of frames it dropped for that reason."""
    return int(relay[counter] if counter in relay else relay["dropped"].get(counter, 0))


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_status_answers_within_100_ms_and_memory_stays_bounded(
    attack: str, tmp_path: Path, relay_factory: Any
) -> None:
    healthy = await relay_factory()
    make, counter = ATTACKS[attack]
    events, behaviour, compression = make()
    with ExitStack() as stack:
        url = stack.enter_context(relay_process(events, behaviour, tmp_path, compression=compression))
        extra = "compression = true\n" if compression else ""
        config = write_config(tmp_path, relays=[url, healthy.url], authors=[pubkey_of(ALICE)])
        config.write_text(config.read_text().replace("[sync]\n", f"[sync]\n{extra}"))
        daemon = stack.enter_context(daemon_process(config))
        poll(lambda: attacked(relay_status(daemon, url), counter) > 1000, timeout=20,
             what=f"the {attack} to be under way")

        latencies: list[float] = []
        published: set[str] = set()
        started = time.monotonic()
        while time.monotonic() - started < PROBE_SECONDS:
            before = time.monotonic()
            status = call_sync(daemon.socket, "status", timeout=5)
            latencies.append(time.monotonic() - before)
            assert status["state"] == "running"
            if len(latencies) % 15 == 1:
                fresh = make_exercise(ALICE, f"calm{len(latencies)}", created_at=int(time.time()))
                await healthy.publish([fresh])
                published.add(loads(fresh)["id"])
            await asyncio.sleep(0.05)  # pacing between probes, not synchronisation

        poll(lambda: stored(daemon, published), timeout=10, what="the healthy relay's events")
        under_attack = relay_status(daemon, url)
        peak = peak_rss_kb(daemon.process.pid)
        latencies.sort()
        report = (
            f"{attack}: {len(latencies)} probes, status p50 {latencies[len(latencies) // 2] * 1e3:.1f} ms, "
            f"max {latencies[-1] * 1e3:.1f} ms; peak RSS {peak / 1024:.0f} MiB; "
            f"{counter} {attacked(under_attack, counter)}"
        )
        print(report)
        assert latencies[-1] < STATUS_BOUND_SECONDS, report
        assert peak < PEAK_RSS_BOUND_KB, report
        assert under_attack["connects"] == 1, report  # never dropped: it is just noisy
        assert status["health"] == [], report

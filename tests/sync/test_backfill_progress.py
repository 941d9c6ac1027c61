"""The ``backfill`` entry of ``relays.list``: a backfill from a relay is seen running
with growing counts, then done; the counters themselves are checked on their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from powrd.sync.backfill_progress import BackfillProgress, BackfillState
from tests.support.daemon import running_daemon, wait_for, write_config
from tests.support.events import exercises_and_records, keys_for, pubkey_of
from tests.support.faultrelay import Behaviour, FaultRelay

ALICE = keys_for("backfill-progress", 0)
T0 = 1_700_000_000
EVENTS = 240
PAGE = 40


async def test_backfill_is_seen_running_then_done(tmp_path: Path) -> None:
    events = exercises_and_records(ALICE, EVENTS, T0)
    # Frames trickle out in chunks, so the six pages take a few seconds to arrive.
    slow = Behaviour(trickle_interval=0.002, trickle_chunk=512)
    async with FaultRelay(events, slow) as relay:
        config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(ALICE)])
        text = config.read_text().replace("[sync]\n", f"[sync]\npage_limit = {PAGE}\n", 1)
        config.write_text(text)
        async with running_daemon(config) as daemon:
            status = daemon.workers[relay.url][0].status
            seen: list[dict[str, Any]] = []

            def sample() -> bool:
                entry = status.as_dict()["backfill"]
                if not seen or entry != seen[-1]:
                    seen.append(entry)
                return entry["state"] == "done"

            await wait_for(sample, timeout=60, interval=0.005, what="the backfill to finish")

    running = [s for s in seen if s["state"] == "running"]
    assert len({s["events"] for s in running}) >= 3, seen  # watched it grow
    counts = [s["events"] for s in running]
    assert counts == sorted(counts)
    assert all(s["scopes_total"] == 1 and s["scopes_done"] == 0 for s in running)
    oldest = [s["oldest_created_at"] for s in running if s["oldest_created_at"] is not None]
    assert oldest == sorted(oldest, reverse=True)  # paging backwards in time
    done = seen[-1]
    assert done["scopes_done"] == done["scopes_total"] == 1
    assert done["events"] == EVENTS
    assert done["pages"] >= EVENTS // PAGE
    assert done["oldest_created_at"] == T0
    assert done["events_per_s"] > 0
    assert done["started_at"] <= done["finished_at"]


def test_counters_of_a_round() -> None:
    now = [100.0]
    progress = BackfillProgress(clock=lambda: now[0])
    assert progress.as_dict()["state"] == "idle"
    assert progress.as_dict()["events_per_s"] is None
    progress.scope_started("a", 2)
    progress.scope_started("b", 2)
    for created_at, event_id in ((50, "x"), (40, "y"), (45, "z"), (40, "y"), (40, "w")):
        progress.event(created_at, event_id)  # the second "y" is a page repeating it
    progress.page_done()
    progress.scope_done("a")
    progress.scope_done("a")  # the same scope completing twice counts once
    now[0] = 102.0
    entry = progress.as_dict()
    assert entry == {"state": "running", "scopes_done": 1, "scopes_total": 2, "pages": 1, "events": 4,
                     "oldest_created_at": 40, "events_per_s": 2.0, "started_at": 100.0, "finished_at": None}
    progress.scope_done("b")
    progress.finished()
    now[0] = 200.0  # the rate of a finished round stays what it was
    assert progress.as_dict()["events_per_s"] == 2.0
    assert progress.state is BackfillState.DONE
    # A new round (sync.now, a reconnect) starts counting afresh.
    progress.scope_started("a", 2)
    assert progress.as_dict()["events"] == 0
    assert progress.as_dict()["scopes_done"] == 0
    assert progress.as_dict()["started_at"] == 200.0

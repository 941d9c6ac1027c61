"""The daemon's backfill reconciles by NIP-77 first, repairs what relays lack, falls back.

Against nostr-sdk's LocalRelay (which answers NEG-OPEN) and the fault relay (which
refuses it in the ways real relays do), through the whole daemon: config, relay worker,
store, outbox, publisher.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from powrd.library.process import process
from powrd.protocol.event import parse_event
from powrd.store import ingest, outbox
from powrd.store.batch import IngestItem
from powrd.store.database import open_writer_connection
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import keys_for, make_event, pubkey_of, write_key_file
from tests.support.faultrelay import Behaviour, FaultRelay
from tests.support.proxy import ByteCountingProxy

KIND = 1301
BASE = 1_700_000_000
USER = keys_for("negentropy-sync", 0)


def prefill(path: Path, raws: list[str]) -> None:
    """Store events before the daemon starts, as an earlier sync (or an import) would."""
    conn = open_writer_connection(path)
    events = [parse_event(json.loads(raw)) for raw in raws]
    with conn:
        ingest.ingest(conn, [IngestItem(e, "test", process(e)) for e in events], BASE)
    conn.close()


def sync_keys(config: Path, *lines: str) -> None:
    """Add ``lines`` to the ``[sync]`` table of a config written by ``write_config``."""
    text = config.read_text().replace("[sync]\n", "[sync]\n" + "".join(f"{line}\n" for line in lines), 1)
    config.write_text(text)


def relays_list_entry(daemon) -> dict:
    worker = next(iter(daemon.workers.values()))[0]
    return worker.status.as_dict()


def records(count: int, *, label: str = "workout", step: int = 1) -> list[str]:
    return [
        make_event(USER, KIND, f"{label} {n} " + "x" * 200, created_at=BASE + n // 4 * step)
        for n in range(count)
    ]


async def test_store_short_of_50_downloads_only_the_difference(local_relay, tmp_path: Path) -> None:
    relay_events = records(3000)
    await local_relay.publish(relay_events)
    lacking = set(range(0, 3000, 60))
    prefill(tmp_path / "powrd.db", [raw for n, raw in enumerate(relay_events) if n not in lacking])
    wanted = {json.loads(raw)["id"] for raw in relay_events}
    proxy = ByteCountingProxy(local_relay.port)
    async with proxy.running():
        url = f"ws://127.0.0.1:{proxy.port}"
        config = write_config(tmp_path, relays=[(url, True, False)], authors=[pubkey_of(USER)],
                              kinds=[KIND])
        async with running_daemon(config) as daemon:
            await wait_for(lambda: stored_ids(daemon) == wanted, timeout=60, what="all 3,000")
            worker = next(iter(daemon.workers.values()))[0]
            await wait_for(lambda: worker.status.backfill_complete, what="backfill complete")
            entry = relays_list_entry(daemon)
            assert entry["negentropy"] == "supported"
            assert entry["events_received"] == 50
    all_json = sum(len(raw) for raw in relay_events)
    assert proxy.received < all_json * 0.10, (proxy.received, all_json)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "nsec.txt", USER)


async def test_own_events_the_relay_lacks_are_repaired(
    local_relay, tmp_path: Path, key_file: Path
) -> None:
    on_relay = records(200)
    ours_only = records(30, label="lost by the relay", step=20)
    await local_relay.publish(on_relay)
    prefill(tmp_path / "powrd.db", on_relay + ours_only)
    lost = {json.loads(raw)["id"] for raw in ours_only}
    config = write_config(tmp_path, relays=[local_relay.url], authors=[pubkey_of(USER)],
                          kinds=[KIND], secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        assert daemon.store is not None
        entries = await wait_for(
            lambda: outbox.entries(daemon.store.reader()), what="repairs in the outbox"
        )
        assert {e["event_id"] for e in entries} == lost
        assert {d["relay"] for e in entries for d in e["deliveries"]} == {local_relay.url}

        async def relay_has_them() -> bool:
            return lost <= await local_relay.fetch_all_ids({"kinds": [KIND]})

        await wait_for(relay_has_them, what="the relay to get the lost events", interval=0.1)
        await wait_for(
            lambda: all(e["done"] for e in outbox.entries(daemon.store.reader())),
            what="deliveries accepted",
        )


@pytest.mark.parametrize("answer", ["ignore", "notice", "neg-err"])
async def test_relays_refusing_negentropy_fall_back_to_req_paging(
    tmp_path: Path, answer: str
) -> None:
    events = records(1200)
    relay = FaultRelay(events, Behaviour(neg_open=answer, max_results=300))
    wanted = {json.loads(raw)["id"] for raw in events}
    async with relay:
        config = write_config(
            tmp_path, relays=[(relay.url, True, False)], authors=[pubkey_of(USER)], kinds=[KIND]
        )
        sync_keys(config, "negentropy_timeout_seconds = 1.0")
        async with running_daemon(config) as daemon:
            started = time.monotonic()
            await wait_for(lambda: stored_ids(daemon) == wanted, timeout=30, what="paged sync")
            # The 1 s answer timeout at most, then paging: not the 5 s EOSE timeout.
            assert time.monotonic() - started < 5.0
            entry = relays_list_entry(daemon)
            assert entry["negentropy"] == "unsupported"
    assert any(isinstance(m, list) and m[:1] == ["NEG-OPEN"] for m in relay.received)


async def test_only_never_pages_a_relay_that_refuses(tmp_path: Path) -> None:
    relay = FaultRelay(records(50), Behaviour(neg_open="neg-err"))
    async with relay:
        config = write_config(
            tmp_path, relays=[(relay.url, True, False)], authors=[pubkey_of(USER)], kinds=[KIND]
        )
        sync_keys(config, 'negentropy = "only"')
        async with running_daemon(config) as daemon:
            worker = daemon.workers[relay.url][0]
            await wait_for(
                lambda: "no REQ paging" in (worker.status.last_error or ""), what="refusal"
            )
            assert stored_ids(daemon) == set()
    reqs = [m for m in relay.received if isinstance(m, list) and m[:1] == ["REQ"]]
    assert reqs, "the live subscription"
    assert all(f.get("limit") == 0 for m in reqs for f in m[2:]), reqs


async def test_a_periodic_reconcile_runs_on_the_open_connection(local_relay, tmp_path: Path) -> None:
    await local_relay.publish(records(20))
    config = write_config(
        tmp_path, relays=[(local_relay.url, True, False)], authors=[pubkey_of(USER)], kinds=[KIND]
    )
    sync_keys(config, "reconcile_interval_seconds = 0.5")
    async with running_daemon(config) as daemon:
        worker = daemon.workers[local_relay.url][0]
        await wait_for(lambda: worker.status.backfill_complete, what="first backfill")
        first = worker.status.backfill.started_at
        await wait_for(
            lambda: (worker.status.backfill.started_at or 0) > (first or 0)
            and worker.status.backfill_complete,
            what="a second reconcile",
        )
        # The live stream (limit 0, not since=now) still brings a new event with an old
        # created_at between reconciles.
        late = make_event(USER, KIND, "stored late", created_at=BASE - 100)
        await local_relay.publish([late])
        await wait_for(lambda: json.loads(late)["id"] in stored_ids(daemon), what="late event")
        assert worker.status.connects == 1
        assert worker.status.as_dict()["negentropy"] == "supported"


async def test_a_write_only_relay_is_repaired_and_not_read(
    local_relay, tmp_path: Path, key_file: Path
) -> None:
    shared = records(100)
    relay_only = records(10, label="only on the relay", step=30)
    ours_only = records(30, label="lost by the relay", step=20)
    await local_relay.publish(shared + relay_only)
    prefill(tmp_path / "powrd.db", shared + ours_only)
    lost = {json.loads(raw)["id"] for raw in ours_only}
    config = write_config(tmp_path, relays=[(local_relay.url, False, True)],
                          authors=[pubkey_of(USER)], kinds=[KIND], secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        assert daemon.store is not None
        entries = await wait_for(
            lambda: outbox.entries(daemon.store.reader()), what="repairs in the outbox"
        )
        assert {e["event_id"] for e in entries} == lost
        await wait_for(
            lambda: all(e["done"] for e in outbox.entries(daemon.store.reader())),
            what="deliveries accepted",
        )
        assert lost <= await local_relay.fetch_all_ids({"kinds": [KIND]})
        # A relay powrd only writes to is never read from.
        assert stored_ids(daemon) == {json.loads(raw)["id"] for raw in shared + ours_only}

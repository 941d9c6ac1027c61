"""The sync engine against nostr-sdk's in-process relay (a real NIP-01 implementation)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.corpus import current_ids, generate_corpus
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import keys_for, make_exercise, pubkey_of
from tests.support.proxy import proxy_in_front


def authors(seed: int, n: int) -> list[str]:
    return [pubkey_of(keys_for(seed, i)) for i in range(n)]


async def test_backfill_pages_through_the_relay_cap_and_streams_live(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory()
    corpus = generate_corpus(1800, 4, seed=21)
    await relay.publish(corpus)
    on_relay = await relay.fetch_all_ids({"kinds": [33401, 33402, 1301]})
    assert on_relay == current_ids(corpus)  # the relay keeps the newest versions only
    config = write_config(tmp_path, relays=[relay.url], authors=authors(21, 4))
    async with running_daemon(config) as daemon:
        await wait_for(lambda: stored_ids(daemon) == on_relay, timeout=60, what="backfill")
        worker = next(iter(daemon.workers.values()))[0]
        await wait_for(lambda: worker.status.backfill_complete, what="backfill complete")
        assert worker.status.events_rejected == 0
        # Live: published after EOSE, delivered on the open subscription.
        live = make_exercise(keys_for(21, 2), "live-one", created_at=int(time.time()))
        await relay.publish([live])
        live_id = json.loads(live)["id"]
        await wait_for(lambda: live_id in stored_ids(daemon), what="live event")


async def test_resume_after_restart_asks_only_since_checkpoint(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory()
    corpus = generate_corpus(600, 2, seed=22)
    await relay.publish(corpus[:400])
    config = write_config(tmp_path, relays=[relay.url], authors=authors(22, 2))
    async with running_daemon(config) as daemon:
        await wait_for(lambda: len(stored_ids(daemon)) >= len(current_ids(corpus[:400])), what="first sync")
        worker = next(iter(daemon.workers.values()))[0]
        await wait_for(lambda: worker.status.backfill_complete, what="backfill complete")
    await relay.publish(corpus[400:])
    async with running_daemon(config) as daemon:
        await wait_for(lambda: stored_ids(daemon) == current_ids(corpus), what="resumed sync")
        worker = next(iter(daemon.workers.values()))[0]
        # Resuming from the checkpoint re-reads only the overlap, not the whole history.
        assert worker.status.events_received < 400


async def test_relay_restart_reconnects_with_backoff(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory()
    first = generate_corpus(50, 1, seed=23)
    await relay.publish(first)
    async with proxy_in_front(relay.port) as proxy:
        config = write_config(tmp_path, relays=[proxy.url], authors=authors(23, 1))
        async with running_daemon(config) as daemon:
            await wait_for(lambda: stored_ids(daemon) == current_ids(first), what="initial sync")
            worker = next(iter(daemon.workers.values()))[0]
            proxy.go_down()
            await wait_for(lambda: worker.status.state.value == "backoff", what="backoff state")
            attempts_down = worker.status.connect_attempts
            assert worker.status.last_error
            restarted = await relay_factory()  # the relay comes back empty, at the same URL
            proxy.go_up(restarted.port)
            later = make_exercise(keys_for(23, 0), "after-restart", created_at=int(time.time()))
            await restarted.publish([later])
            later_id = json.loads(later)["id"]
            await wait_for(lambda: later_id in stored_ids(daemon), what="event published while down")
            assert worker.status.connects >= 2
            assert worker.status.connect_attempts > attempts_down - 1


async def test_two_relays_overlapping_events_each_verified_once(relay_factory, tmp_path: Path) -> None:
    a, b = await relay_factory(), await relay_factory()
    corpus = generate_corpus(400, 2, seed=24)
    await a.publish(corpus[:300])
    await b.publish(corpus[100:])
    config = write_config(tmp_path, relays=[a.url, b.url], authors=authors(24, 2))
    async with running_daemon(config) as daemon:
        await wait_for(lambda: stored_ids(daemon) == current_ids(corpus), timeout=60, what="both relays")
        for worker, _ in daemon.workers.values():
            await wait_for(lambda w=worker: w.status.backfill_complete, what="backfill complete")
        assert daemon.pipeline is not None
        # Every distinct event was verified once, however many relays served it.
        served = sum(w.status.events_received for w, _ in daemon.workers.values())
        assert served > len(current_ids(corpus))
        assert daemon.status()["events_verified"] == len(set(current_ids(corpus[:300])) | set(current_ids(corpus[100:])))


async def test_nip42_relay_requires_auth(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory(nip42=True)
    corpus = generate_corpus(80, 1, seed=25)
    await relay.publish(corpus)
    key_file = tmp_path / "nsec"
    key_file.write_text(keys_for("auth-user", 0).secret_key().to_hex())
    key_file.chmod(0o600)
    config = write_config(tmp_path, relays=[relay.url], authors=authors(25, 1), secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        await wait_for(lambda: stored_ids(daemon) == current_ids(corpus), what="sync after AUTH")


async def test_nip42_relay_without_identity_reports_why(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory(nip42=True)
    await relay.publish(generate_corpus(20, 1, seed=26))
    config = write_config(tmp_path, relays=[relay.url], authors=authors(26, 1))
    async with running_daemon(config) as daemon:
        worker = next(iter(daemon.workers.values()))[0]
        await wait_for(lambda: "AUTH" in (worker.status.last_error or ""), what="auth error")
        assert stored_ids(daemon) == set()

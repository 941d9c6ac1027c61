"""NIP-65 outbox discovery against in-process relays: reading where authors write."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from powrd.service.methods import build_methods
from powrd.store import outbox
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import (
    DEFAULT_CREATED_AT,
    keys_for,
    make_event,
    make_exercise,
    pubkey_of,
    write_key_file,
)

FRIEND = keys_for("outbox", 0)
OTHER = keys_for("outbox", 1)
USER = keys_for("outbox", 2)


def relay_list(keys: Any, tags: list[list[str]], created_at: int = DEFAULT_CREATED_AT) -> str:
    return make_event(keys, 10002, "", tags, created_at)


def event_id(raw: str) -> str:
    return str(json.loads(raw)["id"])


def entry(daemon: Any, url: str) -> dict[str, Any] | None:
    return next((r for r in daemon.relays_report()["relays"] if r["url"] == url), None)


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"ws://127.0.0.1:{s.getsockname()[1]}"


def config_for(tmp_path: Path, relays: list[Any], authors: list[str], extra: str = "", **kw: Any) -> Path:
    path = write_config(tmp_path, relays=relays, authors=authors, outbox=True, **kw)
    path.write_text(path.read_text().replace("[sync]\n", "[sync]\n" + extra, 1))
    return path


async def test_friend_events_are_read_from_the_relay_their_list_names_and_the_list_is_followed(
    relay_factory, tmp_path: Path
) -> None:
    configured, index, first, second = [await relay_factory() for _ in range(4)]
    await index.publish([relay_list(FRIEND, [["r", first.url, "write"], ["r", configured.url, "read"]])])
    on_first = make_exercise(FRIEND, "on-first")
    on_second = make_exercise(FRIEND, "on-second", created_at=DEFAULT_CREATED_AT + 5)
    await first.publish([on_first])
    await second.publish([on_second])
    config = config_for(
        tmp_path, [configured.url], [pubkey_of(FRIEND)], f'index_relays = ["{index.url}"]\n'
    )
    async with running_daemon(config) as daemon:
        await wait_for(lambda: event_id(on_first) in stored_ids(daemon), what="the friend's event from their relay")
        shown = entry(daemon, first.url)
        assert shown is not None
        assert (shown["source"], shown["authors"], shown["read"], shown["write"]) == (
            "nip65", [pubkey_of(FRIEND)], True, False,
        )
        assert entry(daemon, configured.url)["source"] == "config"
        assert entry(daemon, index.url)["source"] == "index"
        report = daemon.relays_report()["discovery"]["authors"][pubkey_of(FRIEND)]
        assert (report["write_relays"], report["read_from"]) == (1, 1)

        newer = relay_list(FRIEND, [["r", second.url]], created_at=DEFAULT_CREATED_AT + 10)
        await index.publish([newer])
        await wait_for(lambda: event_id(on_second) in stored_ids(daemon), what="events from the new list's relay")
        await wait_for(lambda: entry(daemon, first.url) is None, what="the old relay dropped")
        assert entry(daemon, second.url)["source"] == "nip65"


async def test_publish_reaches_the_write_relays_of_the_identity_own_list(relay_factory, tmp_path: Path) -> None:
    configured, own_write = await relay_factory(), await relay_factory()
    await configured.publish([relay_list(USER, [["r", own_write.url, "write"]])])
    key_file = write_key_file(tmp_path / "nsec.txt", USER)
    config = config_for(tmp_path, [configured.url], [], secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        await wait_for(lambda: entry(daemon, own_write.url) is not None, what="the identity's write relay")
        shown = entry(daemon, own_write.url)
        assert (shown["source"], shown["read"], shown["write"]) == ("nip65", False, True)
        tags = [["d", "curl"], ["title", "Curl"], ["format", "reps"], ["format_units", "count"], ["equipment", "dumbbell"]]
        published = await daemon.publisher.publish(33401, "", tags)

        def delivered() -> bool:
            states = {
                d["relay"]: d["state"]
                for e in outbox.entries(daemon.store.reader())
                if e["event_id"] == published
                for d in e["deliveries"]
            }
            return states == {configured.url: "accepted", own_write.url: "accepted"}

        await wait_for(delivered, what="delivery to both relays")
    assert await own_write.fetch_all_ids({"ids": [published]}) == {published}


async def test_a_hostile_list_costs_bounded_work_and_does_not_hurt_other_authors(
    relay_factory, tmp_path: Path
) -> None:
    configured, good = await relay_factory(), await relay_factory()
    dead = [dead_url() for _ in range(3)]
    junk = [["r", f"wss://relay{n}.invalid"] for n in range(300)]
    junk += [["r", "https://not-a-relay.example"], ["r", "ws://user@host.example"], ["r", dead[0] + "/"]]
    await configured.publish([
        relay_list(OTHER, [["r", url] for url in dead] + junk),
        relay_list(FRIEND, [["r", good.url, "write"]]),
    ])
    exercise = make_exercise(FRIEND, "still-synced")
    await good.publish([exercise])
    config = config_for(
        tmp_path, [configured.url], [pubkey_of(FRIEND), pubkey_of(OTHER)],
        "outbox_relays_per_author = 2\n",
    )
    async with running_daemon(config) as daemon:
        await wait_for(lambda: event_id(exercise) in stored_ids(daemon), what="the other author's events")
        learned = [r for r in daemon.relays_report()["relays"] if r["source"] == "nip65"]
        assert len(learned) <= 3  # 2 for the hostile author, 1 for the friend
        report = daemon.relays_report()["discovery"]["authors"][pubkey_of(OTHER)]
        assert report["skipped"]["not a ws:// or wss:// URL"] == 2
        assert report["skipped"]["duplicate URL"] == 1
        assert report["skipped"]["more than 50 relays"] > 200

        def dropped() -> set[str]:
            return {d["url"] for d in daemon.relays_report()["discovery"]["dropped"]}

        await wait_for(lambda: len(dropped() & set(dead)) >= 2, timeout=60, what="dead relays dropped")
        reasons = [d["reason"] for d in daemon.relays_report()["discovery"]["dropped"]]
        assert all("failed connections in a row" in reason for reason in reasons)
        assert entry(daemon, good.url)["state"] == "connected"


async def test_a_listed_loopback_relay_is_refused_without_allow_private_relays(relay_factory, tmp_path: Path) -> None:
    configured, hidden = await relay_factory(), await relay_factory()
    await configured.publish([relay_list(FRIEND, [["r", hidden.url]])])
    secret = make_exercise(FRIEND, "behind-the-firewall")
    await hidden.publish([secret])
    config = config_for(tmp_path, [configured.url], [pubkey_of(FRIEND)], allow_private_relays=False)
    async with running_daemon(config) as daemon:

        def unusable() -> dict[str, str]:
            return daemon.relays_report()["discovery"]["authors"][pubkey_of(FRIEND)].get("unusable", {})

        await wait_for(lambda: hidden.url in unusable(), what="the address policy's refusal")
        assert "non-public address" in unusable()[hidden.url]
        await wait_for(lambda: entry(daemon, hidden.url) is None, what="the refused relay's worker stopped")
        assert event_id(secret) not in stored_ids(daemon)


async def test_publish_list_signs_the_configured_relays_with_their_markers(relay_factory, tmp_path: Path) -> None:
    both, reader, writer = [await relay_factory() for _ in range(3)]
    key_file = write_key_file(tmp_path / "nsec.txt", USER)
    relays = [both.url, (reader.url, True, False), (writer.url, False, True)]
    config = config_for(tmp_path, relays, [], secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        result = await build_methods(daemon)["relays.publish_list"]({})
        assert result["relays"] == 3

        def accepted() -> set[str]:
            return {
                d["relay"]
                for e in outbox.entries(daemon.store.reader())
                if e["event_id"] == result["id"]
                for d in e["deliveries"]
                if d["state"] == "accepted"
            }

        await wait_for(lambda: accepted() == {both.url, writer.url}, what="the list on the write relays")
        assert await writer.fetch_all_ids({"ids": [result["id"]]}) == {result["id"]}
        (published,) = await both.fetch_all({"ids": [result["id"]]})
        assert (published["kind"], published["pubkey"]) == (10002, pubkey_of(USER))
        assert published["tags"] == [["r", both.url], ["r", reader.url, "read"], ["r", writer.url, "write"]]
        assert await reader.fetch_all_ids({"ids": [result["id"]]}) == set()


async def test_an_author_added_by_reload_is_read_from_their_listed_relay(relay_factory, tmp_path: Path) -> None:
    configured, theirs = await relay_factory(), await relay_factory()
    await configured.publish([relay_list(FRIEND, [["r", theirs.url, "write"]])])
    exercise = make_exercise(FRIEND, "after-reload")
    await theirs.publish([exercise])
    config = config_for(tmp_path, [configured.url], [])
    async with running_daemon(config) as daemon:
        await wait_for(lambda: all(w.status.backfill_complete for w, _ in daemon.workers.values()), what="backfill")
        assert entry(daemon, theirs.url) is None
        config.write_text(config.read_text().replace("authors = []", f'authors = ["{pubkey_of(FRIEND)}"]'))
        daemon.reload()
        await wait_for(lambda: event_id(exercise) in stored_ids(daemon), what="the new author's events")
        assert entry(daemon, theirs.url)["authors"] == [pubkey_of(FRIEND)]

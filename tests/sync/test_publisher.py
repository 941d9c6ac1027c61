"""Local-first publishing: signed, stored, queued durably, delivered with OK tracking."""

from __future__ import annotations

import io
import json
from pathlib import Path

import nostr_sdk
import pytest

from powrd.logs import configure_logging
from powrd.store import outbox, queries
from powrd.sync.publisher import PublishError, classify
from tests.support.daemon import running_daemon, wait_for, write_config
from tests.support.events import keys_for, pubkey_of, write_key_file
from tests.support.faultrelay import Behaviour, FaultRelay
from tests.support.proxy import proxy_in_front

USER = keys_for("publisher", 0)
EXERCISE_TAGS = [
    ["d", "goblet-squat"], ["title", "Goblet Squat"], ["format", "weight", "reps"],
    ["format_units", "kg", "count"], ["equipment", "dumbbell"],
]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "nsec.txt", USER)


def deliveries(daemon) -> dict[str, dict[str, str]]:
    return {
        entry["event_id"]: {d["relay"]: d["state"] for d in entry["deliveries"]}
        for entry in outbox.entries(daemon.store.reader())
    }


async def test_publish_is_local_first_then_on_the_relay(relay_factory, tmp_path: Path, key_file: Path) -> None:
    relay = await relay_factory()
    config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(USER)], secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        event_id = await daemon.publisher.publish(33401, "Hold the bell at your chest.", EXERCISE_TAGS)
        assert queries.event_by_id(daemon.store.reader(), event_id) is not None  # stored before the reply
        await wait_for(lambda: deliveries(daemon)[event_id] == {relay.url: "accepted"}, what="OK from relay")
        (served,) = await relay.fetch_all({"ids": [event_id]})
        copy = nostr_sdk.Event.from_json(json.dumps(served))
        assert copy.verify()
        assert copy.author().to_hex() == pubkey_of(USER)
        assert [t.to_vec() for t in copy.tags()] == EXERCISE_TAGS


async def test_publish_while_relay_down_survives_a_restart_and_is_delivered_once(
    relay_factory, tmp_path: Path, key_file: Path
) -> None:
    async with proxy_in_front(None) as down:  # the relay's address refuses connections
        url = down.url
        config = write_config(tmp_path, relays=[url], authors=[pubkey_of(USER)], secret_key_file=key_file)
        async with running_daemon(config) as daemon:
            event_id = await daemon.publisher.publish(33401, "", EXERCISE_TAGS)
            assert deliveries(daemon)[event_id] == {url: "pending"}
        relay = await relay_factory()
        down.go_up(relay.port)
        async with running_daemon(config) as daemon:
            await wait_for(lambda: deliveries(daemon)[event_id] == {url: "accepted"}, what="delivery after restart")
            entry = outbox.entries(daemon.store.reader())[0]
            assert entry["done"] is True
    assert await relay.fetch_all_ids({"authors": [pubkey_of(USER)]}) == {event_id}


async def test_blocked_relay_is_terminal_while_another_accepts(relay_factory, tmp_path: Path, key_file: Path) -> None:
    good = await relay_factory()
    async with FaultRelay([], Behaviour(ok_false="blocked: not on the allow list")) as blocking:
        config = write_config(tmp_path, relays=[good.url, blocking.url], authors=[pubkey_of(USER)],
                              secret_key_file=key_file)
        async with running_daemon(config) as daemon:
            event_id = await daemon.publisher.publish(33401, "", EXERCISE_TAGS)
            await wait_for(lambda: deliveries(daemon)[event_id] == {good.url: "accepted", blocking.url: "rejected"},
                           what="terminal states")
            (entry,) = outbox.entries(daemon.store.reader())
            reasons = {d["relay"]: d["reason"] for d in entry["deliveries"]}
            assert reasons[blocking.url] == "blocked: not on the allow list"
            assert entry["done"] is True
            sent = [f for f in blocking.received if f[0] == "EVENT"]
            assert len(sent) == 1  # a terminal rejection is not retried


async def test_transient_failure_is_retried_until_accepted(tmp_path: Path, key_file: Path) -> None:
    async with FaultRelay([], Behaviour(ok_false="error: database busy")) as relay:
        config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(USER)], secret_key_file=key_file)
        async with running_daemon(config) as daemon:
            event_id = await daemon.publisher.publish(33401, "", EXERCISE_TAGS)
            await wait_for(lambda: len([f for f in relay.received if f[0] == "EVENT"]) >= 2, what="a retry")
            relay.set_behaviour(Behaviour())
            await wait_for(lambda: deliveries(daemon)[event_id] == {relay.url: "accepted"}, what="accepted")


@pytest.mark.parametrize(
    ("kind", "tags", "message"),
    [
        (33401, [t for t in EXERCISE_TAGS if t[0] != "title"], "title"),
        (33401, [t for t in EXERCISE_TAGS if t[0] != "equipment"], "equipment"),
        (33401, [*EXERCISE_TAGS[:3], ["format_units", "kg"], EXERCISE_TAGS[4]], "format_units"),
        (1, [], "kind"),
        (5, [["a", "33401:" + "0" * 64 + ":x"]], "your own"),
        (33402, [["d", "x"], ["title", "T"], ["type", "strength"], ["exercise", "junk"]], "exercise"),
    ],
)
async def test_invalid_requests_store_nothing(tmp_path: Path, key_file: Path, kind, tags, message) -> None:
    config = write_config(tmp_path, secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        with pytest.raises(PublishError, match=message):
            await daemon.publisher.publish(kind, "", tags)
        assert queries.counts(daemon.store.reader())["events"] == 0
        assert outbox.entries(daemon.store.reader()) == []


async def test_deleting_own_event_removes_it_locally_and_delivers_the_deletion(
    relay_factory, tmp_path: Path, key_file: Path
) -> None:
    relay = await relay_factory()
    config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(USER)], secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        event_id = await daemon.publisher.publish(33401, "", EXERCISE_TAGS)
        coord = f"33401:{pubkey_of(USER)}:goblet-squat"
        deletion = await daemon.publisher.publish(5, "", [["a", coord], ["e", event_id]])
        assert queries.event_by_id(daemon.store.reader(), event_id) is None
        await wait_for(lambda: deliveries(daemon).get(deletion) == {relay.url: "accepted"}, what="deletion sent")
        assert await relay.fetch_all_ids({"kinds": [33401]}) == set()


async def test_no_identity_refuses_publishing(tmp_path: Path) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon:
        with pytest.raises(PublishError, match="no identity"):
            await daemon.publisher.publish(33401, "", EXERCISE_TAGS)


async def test_secret_never_reaches_logs_or_replies(relay_factory, tmp_path: Path, key_file: Path) -> None:
    stream = io.StringIO()
    configure_logging("debug", "json", stream=stream)
    relay = await relay_factory(nip42=True)
    config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(USER)], secret_key_file=key_file)
    from powrd.service.methods import build_methods

    async with running_daemon(config) as daemon:
        event_id = await daemon.publisher.publish(33401, "", EXERCISE_TAGS)
        await wait_for(lambda: deliveries(daemon)[event_id] == {relay.url: "accepted"}, what="delivery via AUTH")
        methods = build_methods(daemon)
        replies = json.dumps([await methods["status"]({}), await methods["outbox.list"]({})], default=str)
    secrets = {USER.secret_key().to_hex(), USER.secret_key().to_bech32()}
    logged = stream.getvalue()
    assert "delivery" in logged
    for secret in secrets:
        assert secret not in logged and secret not in replies


def test_ok_classification() -> None:
    assert classify(True, "") == "accepted"
    assert classify(False, "duplicate: have it") == "accepted"
    for prefix in ("invalid", "blocked", "pow", "restricted"):
        assert classify(False, f"{prefix}: no") == "rejected"
    assert classify(False, "auth-required: who are you") == "auth"
    assert classify(False, "rate-limited: slow down") == "failed"
    assert classify(False, "error: oops") == "failed"

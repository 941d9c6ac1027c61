"""The in-process nostr-sdk relay helpers and fixtures."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidMessage

from powrd.protocol.event import loads
from tests.support.corpus import current_ids, generate_corpus
from tests.support.events import keys_for, make_exercise, pubkey_of
from tests.support.proxy import proxy_in_front
from tests.support.relays import (
    LocalRelayHandle,
    PublishRejected,
    start_local_relay,
)

ALICE = keys_for("local-relay-tests", 0)


async def single_req(url: str, filter_: dict) -> list[list]:
    """Everything a plain client gets for one REQ, up to EOSE or CLOSED."""
    async with connect(url) as ws:
        await ws.send(json.dumps(["REQ", "s", filter_]))
        messages = []
        while True:
            message = json.loads(await ws.recv())
            messages.append(message)
            if message[0] in ("EOSE", "CLOSED"):
                return messages


async def test_round_trip_pages_past_the_relay_cap(local_relay: LocalRelayHandle) -> None:
    corpus = generate_corpus(1600, 6, seed=21)
    replies = await local_relay.publish(corpus)
    assert len(replies) == len(corpus) and all(r.accepted for r in replies.values())

    one_req = await single_req(local_relay.url, {"limit": 5000})
    assert len(one_req) == 501  # 500 events + EOSE: a single REQ is capped
    expected = current_ids(corpus)
    assert len(expected) > 1500
    assert await local_relay.fetch_all_ids({}) == expected

    author = pubkey_of(keys_for(21, 0))
    by_author = {loads(e)["id"] for e in corpus if loads(e)["pubkey"] == author} & expected
    assert await local_relay.fetch_all_ids({"authors": [author]}) == by_author
    records = [loads(e) for e in corpus if loads(e)["kind"] == 1301]
    until = records[len(records) // 2]["created_at"]
    older_records = {e["id"] for e in records if e["created_at"] <= until}
    assert await local_relay.fetch_all_ids({"kinds": [1301], "until": until}) == older_records
    events = await local_relay.fetch_all({"kinds": [1301]})
    times = [e["created_at"] for e in events]
    assert times == sorted(times, reverse=True)


async def test_fetch_all_rejects_a_limit(local_relay: LocalRelayHandle) -> None:
    with pytest.raises(ValueError, match="limit"):
        await local_relay.fetch_all({"limit": 10})


async def test_publish_reports_refusals(local_relay: LocalRelayHandle) -> None:
    old = make_exercise(ALICE, "squat", created_at=1_700_000_000)
    new = make_exercise(ALICE, "squat", created_at=1_700_000_100)
    await local_relay.publish([old, new])
    await local_relay.publish([new])  # a duplicate is still OK true
    with pytest.raises(PublishRejected) as caught:
        await local_relay.publish([old])  # older than the stored version
    assert list(caught.value.rejected) == [loads(old)["id"]]
    replies = await local_relay.publish([old], check=False)
    assert not replies[loads(old)["id"]].accepted
    assert await local_relay.fetch_all_ids({}) == {loads(new)["id"]}


async def test_a_proxy_gives_a_relay_downtime_without_reusing_a_port(relay_factory) -> None:
    event = make_exercise(ALICE, "squat")
    relay = await relay_factory()
    await relay.publish([event])
    async with proxy_in_front(relay.port) as proxy:
        async with connect(proxy.url) as open_before:
            assert await single_req(proxy.url, {}) == [["EVENT", "s", loads(event)], ["EOSE", "s"]]
            proxy.go_down()
            with pytest.raises(ConnectionClosed):  # open connections are dropped
                await open_before.recv()
        with pytest.raises((OSError, InvalidMessage)):  # new ones are refused
            async with connect(proxy.url, open_timeout=5):
                pass
        empty = await relay_factory()  # "comes back empty": a new relay, the same URL
        proxy.go_up(empty.port)
        assert await single_req(proxy.url, {}) == [["EOSE", "s"]]
        proxy.go_down()
        proxy.go_up()  # back to the last target
        assert await single_req(proxy.url, {}) == [["EOSE", "s"]]


async def test_nip42_relay_demands_auth_and_helpers_provide_it(relay_factory) -> None:
    relay = await relay_factory(nip42=True)
    closed = await single_req(relay.url, {})
    assert closed[-1][0] == "CLOSED" and closed[-1][2].startswith("auth-required:")
    event = make_exercise(ALICE, "squat")
    await relay.publish([event])
    assert await relay.fetch_all_ids({}) == {loads(event)["id"]}


async def test_relay_factory_makes_independent_relays(relay_factory, corpus_small) -> None:
    first, second = await relay_factory(), await relay_factory()
    assert first.url != second.url
    await first.publish(corpus_small)
    assert await first.fetch_all_ids({}) == current_ids(corpus_small)
    assert await second.fetch_all_ids({}) == set()


async def test_context_manager_stops_the_relay() -> None:
    async with await start_local_relay() as relay:
        assert relay.url == f"ws://127.0.0.1:{relay.port}"
        assert await single_req(relay.url, {}) == [["EOSE", "s"]]
    assert not relay.running


def test_corpus_small_fixture(corpus_small: list[str]) -> None:
    assert len(corpus_small) == 300
    corpus_small.clear()  # each test gets its own list


def test_corpus_small_is_fresh_per_test(corpus_small: list[str]) -> None:
    assert len(corpus_small) == 300

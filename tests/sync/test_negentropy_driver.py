"""The negentropy sync driver against real relays, through a thin websocket adapter.

The adapter (:mod:`tests.support.negentropy_channel`) stands in for the relay connection's owner: it sends frames and routes
NEG-MSG/NEG-ERR and NOTICEs to the driver. Relays: nostr-sdk's ``LocalRelay`` (a
working NIP-77 relay), the fault relay (does not know NEG-OPEN and says so with a
NOTICE), and the test-only negentropy relay scripted to stay silent, refuse, or
break down mid-way.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import AsyncIterator

from websockets.asyncio.client import connect

from powrd.protocol.filters import Filter
from powrd.protocol.negentropy import StorageVector
from powrd.protocol.negentropy_messages import (
    NegErr,
    NegMsg,
)
from powrd.sync.negentropy import (
    NegentropySupport,
    Reply,
    Verdict,
    reconcile_with_relay,
)
from tests.support.events import keys_for, make_event
from tests.support.faultrelay import FaultRelay
from tests.support.negentropy_channel import WebsocketChannel
from tests.support.negentropy_relay import NegentropyTestRelay
from tests.support.relays import LocalRelayHandle

KIND = 1301
FILTER = Filter(kinds=frozenset({KIND}))
BASE = 1_700_000_000


def items_of(events: list[str]) -> list[tuple[int, bytes]]:
    return [(e["created_at"], bytes.fromhex(e["id"])) for e in map(json.loads, events)]


def some_items(count: int, seed: int) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    return [(BASE + n // 2, rnd.randbytes(32)) for n in range(count)]


async def test_reconciles_with_local_relay(local_relay: LocalRelayHandle) -> None:
    keys = keys_for("negentropy-driver", 0)
    events = [make_event(keys, KIND, f"r{n}", created_at=BASE + n // 5) for n in range(400)]
    await local_relay.publish(events)
    relay_items = items_of(events)
    ours = [(BASE + 1000 + n, bytes([n]) * 32) for n in range(6)]  # events the relay lacks
    local = relay_items[:350] + relay_items[370:] + ours
    ticks = itertools.count()
    async with connect(local_relay.url, max_size=None) as websocket:
        channel = WebsocketChannel(websocket)
        result = await reconcile_with_relay(
            channel,
            StorageVector.seal(local),
            FILTER,
            "neg-1",
            answer_timeout=10,
            clock=lambda: float(next(ticks)),
        )
    assert result.verdict is Verdict.RECONCILED, result.reason
    assert set(result.have) == {item_id.hex() for _, item_id in ours}
    assert set(result.need) == {item_id.hex() for _, item_id in relay_items[350:370]}
    assert result.rounds >= 1 and result.bytes_sent > 0 and result.bytes_received > 0
    assert result.seconds > 0  # measured with the injected clock
    assert channel.sent[0][:3] == ["NEG-OPEN", "neg-1", {"kinds": [KIND]}]
    assert channel.sent[-1] == ["NEG-CLOSE", "neg-1"]


async def test_identical_sets_need_one_round(local_relay: LocalRelayHandle) -> None:
    keys = keys_for("negentropy-driver", 1)
    events = [make_event(keys, KIND, f"s{n}", created_at=BASE + n) for n in range(200)]
    await local_relay.publish(events)
    async with connect(local_relay.url, max_size=None) as websocket:
        result = await reconcile_with_relay(
            WebsocketChannel(websocket), StorageVector.seal(items_of(events)), FILTER, "neg"
        )
    assert (result.verdict, result.have, result.need, result.rounds) == (
        Verdict.RECONCILED,
        [],
        [],
        1,
    )


async def test_fault_relay_notice_means_unsupported() -> None:
    async with FaultRelay([]) as relay, connect(relay.url) as websocket:
        result = await reconcile_with_relay(
            WebsocketChannel(websocket), StorageVector.seal(some_items(50, 1)), FILTER, "neg"
        )
    assert result.verdict is Verdict.UNSUPPORTED
    assert result.reason.startswith("NOTICE: ")
    assert result.rounds == 0


async def test_silence_times_out_as_unsupported() -> None:
    async with NegentropyTestRelay([], silent=True) as relay, connect(relay.url) as websocket:
        channel = WebsocketChannel(websocket)
        result = await reconcile_with_relay(
            channel, StorageVector.seal(some_items(50, 2)), FILTER, "neg", answer_timeout=0.3
        )
    assert result.verdict is Verdict.UNSUPPORTED
    assert "within 0.3 s" in result.reason
    assert channel.sent[-1] == ["NEG-CLOSE", "neg"]


async def test_neg_err_blocked_is_unsupported() -> None:
    async with (
        NegentropyTestRelay([], refuse="blocked: negentropy disabled") as relay,
        connect(relay.url) as websocket,
    ):
        result = await reconcile_with_relay(
            WebsocketChannel(websocket), StorageVector.seal(some_items(50, 3)), FILTER, "neg"
        )
    assert (result.verdict, result.reason) == (
        Verdict.UNSUPPORTED,
        "NEG-ERR: blocked: negentropy disabled",
    )


async def test_breaking_down_mid_way_is_failed() -> None:
    # Enough items on both sides that one round is not enough.
    server = some_items(3000, 4)
    local = server[::2] + some_items(500, 5)
    async with NegentropyTestRelay(server, err_after=1) as relay, connect(relay.url) as ws:
        result = await reconcile_with_relay(
            WebsocketChannel(ws), StorageVector.seal(local), FILTER, "neg"
        )
    assert (result.verdict, result.rounds) == (Verdict.FAILED, 1)
    assert result.reason == "NEG-ERR: error: gave up"


async def test_a_malformed_answer_is_refusal() -> None:
    async with (
        NegentropyTestRelay([], payload_after=(0, "61000001ab")) as relay,
        connect(relay.url) as websocket,
    ):
        channel = WebsocketChannel(websocket)
        result = await reconcile_with_relay(
            channel, StorageVector.seal(some_items(10, 6)), FILTER, "neg"
        )
    assert result.verdict is Verdict.UNSUPPORTED
    assert result.reason.startswith("bad negentropy message from the relay: ")
    assert channel.sent[-1] == ["NEG-CLOSE", "neg"]


async def test_answers_for_other_subscriptions_are_ignored() -> None:
    server = some_items(100, 7)
    async with NegentropyTestRelay(server) as relay, connect(relay.url) as websocket:

        class Crossed(WebsocketChannel):
            async def replies(self) -> AsyncIterator[Reply]:
                yield NegErr("someone-else", "closed: not yours")
                yield NegMsg("someone-else", b"\x62")
                async for reply in super().replies():
                    yield reply

        result = await reconcile_with_relay(
            Crossed(websocket), StorageVector.seal(server[:90]), FILTER, "neg"
        )
    assert result.verdict is Verdict.RECONCILED
    assert set(result.need) == {item_id.hex() for _, item_id in server[90:]}


async def test_max_rounds_bounds_a_relay_that_never_finishes() -> None:
    server = some_items(5000, 8)
    local = server[1::2]
    async with NegentropyTestRelay(server) as relay, connect(relay.url) as websocket:
        result = await reconcile_with_relay(
            WebsocketChannel(websocket),
            StorageVector.seal(local),
            FILTER,
            "neg",
            frame_size_limit=4096,
            max_rounds=2,
        )
    assert (result.verdict, result.rounds) == (Verdict.FAILED, 2)
    assert "did not finish in 2 rounds" in result.reason


def test_support_verdicts_are_remembered_for_a_day() -> None:
    now = [0.0]
    support = NegentropySupport(lambda: now[0], max_relays=2)
    assert support.status("wss://a") == "unknown" and support.should_try("wss://a")
    support.record("wss://a", Verdict.UNSUPPORTED)
    assert support.status("wss://a") == "unsupported" and not support.should_try("wss://a")
    support.record("wss://b", Verdict.RECONCILED)
    support.record("wss://b", Verdict.FAILED)  # says nothing about the relay
    assert support.status("wss://b") == "supported"
    now[0] = 24 * 3600
    assert support.status("wss://a") == "unknown" and support.should_try("wss://a")
    bounded = NegentropySupport(lambda: 0.0, max_relays=1)
    bounded.record("wss://a", Verdict.UNSUPPORTED)
    bounded.record("wss://c", Verdict.UNSUPPORTED)  # over the bound: the oldest goes
    assert (bounded.status("wss://a"), bounded.status("wss://c")) == ("unknown", "unsupported")

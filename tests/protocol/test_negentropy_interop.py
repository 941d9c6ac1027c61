"""powrd's negentropy against nostr-sdk's, in both directions, over real websockets.

nostr-sdk's ``Relay.sync(..., SyncOptions().dry_run())`` is the oracle: it reports the
ids a local set has and the relay lacks (``local``) and the reverse (``remote``)
without transferring events.

* powrd as the client: the test drives :class:`NegentropyClient` over a plain
  websocket (``NEG-OPEN``/``NEG-MSG``/``NEG-CLOSE``) against nostr-sdk's
  ``LocalRelay``, and compares its have/need with the oracle's for the same set.
* powrd as the server: nostr-sdk's client reconciles against
  :class:`tests.support.negentropy_relay.NegentropyTestRelay`, which answers with
  :class:`NegentropyServer`; its result must equal the true differences.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import nostr_sdk
import pytest
from websockets.asyncio.client import connect

from powrd.protocol.negentropy import NegentropyClient, StorageVector
from tests.support.events import keys_for, make_event
from tests.support.negentropy_relay import NegentropyTestRelay
from tests.support.nostr_sdk_sync import sdk_reconcile, sdk_relay
from tests.support.relays import LocalRelayHandle

Item = tuple[int, bytes]
REPLY_TIMEOUT = 20.0
KIND = 1
RELAY_EVENTS = 3000
BASE = 1_700_000_000


async def powrd_reconcile(
    url: str, filter_: dict[str, Any], items: list[Item], frame_size_limit: int
) -> tuple[set[bytes], set[bytes]]:
    """Reconcile ``items`` with the relay at ``url`` as powrd's client: (have, need)."""
    client = NegentropyClient(StorageVector.seal(items), frame_size_limit)
    have: set[bytes] = set()
    need: set[bytes] = set()
    async with connect(url, max_size=None, ping_interval=None) as websocket:
        await websocket.send(json.dumps(["NEG-OPEN", "neg", filter_, client.initiate().hex()]))
        while True:
            reply = json.loads(await asyncio.wait_for(websocket.recv(), REPLY_TIMEOUT))
            assert reply[:2] == ["NEG-MSG", "neg"], reply
            step = client.reconcile(bytes.fromhex(reply[2]))
            have.update(step.have)
            need.update(step.need)
            if step.message is None:
                break
            assert not frame_size_limit or len(step.message) <= frame_size_limit
            await websocket.send(json.dumps(["NEG-MSG", "neg", step.message.hex()]))
        await websocket.send(json.dumps(["NEG-CLOSE", "neg"]))
    return have, need


def local_variant(relay_items: list[Item], rnd: random.Random) -> list[Item]:
    """A local set: part of the relay's items plus some of our own, often in its seconds."""
    dropped = rnd.choice([0.0, 0.001, 0.02, 0.5, 1.0])
    extra = rnd.choice([0, 3, 40, 400])
    kept = [item for item in relay_items if rnd.random() >= dropped]
    timestamps = [created_at for created_at, _ in relay_items] or [BASE]
    ours = [
        (rnd.choice(timestamps) + rnd.choice([0, 0, 1]), rnd.randbytes(32)) for _ in range(extra)
    ]
    return kept + ours


async def test_powrd_client_agrees_with_nostr_sdk_against_local_relay(
    local_relay: LocalRelayHandle,
) -> None:
    keys = keys_for("negentropy-interop", 0)
    # Runs of three events per second, and one run of 60, to exercise id-prefix bounds.
    events = [
        make_event(keys, KIND, f"n{n}", created_at=BASE + (n // 3 if n >= 60 else 0))
        for n in range(RELAY_EVENTS)
    ]
    await local_relay.publish(events)
    relay_items = [(e["created_at"], bytes.fromhex(e["id"])) for e in map(json.loads, events)]
    relay_ids = {item_id for _, item_id in relay_items}
    rnd = random.Random(16)
    async with sdk_relay(local_relay.url) as relay:
        for scenario in range(14):
            local = local_variant(relay_items, rnd)
            limit = rnd.choice([0, 4096, 60_000])
            local_ids = {item_id for _, item_id in local}
            truth = (local_ids - relay_ids, relay_ids - local_ids)
            ours = await powrd_reconcile(local_relay.url, {"kinds": [KIND]}, local, limit)
            oracle = await sdk_reconcile(
                relay, nostr_sdk.Filter().kind(nostr_sdk.Kind(KIND)), local
            )
            assert ours == oracle == truth, f"scenario {scenario}, frame limit {limit}"
        # A filter the relay holds nothing for: everything local is ours alone.
        local = local_variant(relay_items, rnd)
        empty = await powrd_reconcile(local_relay.url, {"kinds": [7]}, local, 0)
        assert empty == ({item_id for _, item_id in local}, set())


@pytest.mark.parametrize(
    ("seed", "count", "frame_size_limit"),
    [(1, 0, 0), (2, 40, 0), (3, 5000, 4096), (4, 20_000, 0), (5, 50_000, 60_000)],
)
async def test_nostr_sdk_client_reconciles_against_powrd_server(
    seed: int, count: int, frame_size_limit: int
) -> None:
    rnd = random.Random(seed)
    server_items: list[Item] = []
    timestamp = BASE
    for _ in range(count):
        if rnd.random() < 0.3:
            timestamp += rnd.randrange(1, 100)
        server_items.append((timestamp, rnd.randbytes(32)))
    local = local_variant(server_items, rnd)
    server_ids = {item_id for _, item_id in server_items}
    local_ids = {item_id for _, item_id in local}
    async with NegentropyTestRelay(server_items, frame_size_limit) as test_relay:
        async with sdk_relay(test_relay.url) as relay:
            result = await sdk_reconcile(
                relay, nostr_sdk.Filter().kind(nostr_sdk.Kind(KIND)), local
            )
        assert test_relay.errors == []
        assert test_relay.messages_sent >= 1
    assert result == (local_ids - server_ids, server_ids - local_ids)

"""A store short of a relay's events reconciles and downloads only the difference.

The pieces the daemon will wire together, end to end over a real websocket and a
real SQLite file: the store's negentropy items, :func:`reconcile_with_relay`, a
``REQ {ids}`` for what we need (verified, then ingested), and the events the relay
lacks sent back to it. A loopback TCP proxy between client and relay counts every
byte received.
"""

from __future__ import annotations

import json
from pathlib import Path

from websockets.asyncio.client import connect

from powrd.library.process import process
from powrd.protocol.event import parse_event
from powrd.protocol.filters import Filter
from powrd.protocol.negentropy import StorageVector
from powrd.protocol.verify import verification_failure
from powrd.store import ingest
from powrd.store.batch import IngestItem
from powrd.store.database import open_writer_connection
from powrd.store.negentropy_items import negentropy_items
from powrd.sync.negentropy import Verdict, reconcile_with_relay
from tests.support.events import keys_for, make_event, pubkey_of
from tests.support.negentropy_channel import WebsocketChannel
from tests.support.proxy import ByteCountingProxy
from tests.support.relays import LocalRelayHandle

KIND = 1301
BASE = 1_700_000_000
IDS_PER_REQ = 500


async def test_store_fetches_only_what_it_lacks_and_returns_what_the_relay_lacks(
    local_relay: LocalRelayHandle, tmp_path: Path
) -> None:
    keys = keys_for("negentropy-store", 0)
    author = pubkey_of(keys)
    relay_events = [
        make_event(keys, KIND, f"workout {n} " + "x" * 200, created_at=BASE + n // 4)
        for n in range(3000)
    ]
    ours = [make_event(keys, KIND, f"only here {n}", created_at=BASE + 5 * n) for n in range(30)]
    await local_relay.publish(relay_events)
    lacking = set(range(0, 3000, 60))  # 50 spread over the whole range
    conn = open_writer_connection(tmp_path / "powrd.db")

    def store(raws: list[str]) -> None:
        events = [parse_event(json.loads(raw)) for raw in raws]
        with conn:
            ingest.ingest(conn, [IngestItem(e, "test", process(e)) for e in events], BASE)

    store([raw for n, raw in enumerate(relay_events) if n not in lacking] + ours)

    flt = Filter(kinds=frozenset({KIND}), authors=frozenset({author}))
    storage = StorageVector.seal(negentropy_items(conn, flt))
    assert len(storage) == 2950 + 30
    proxy = ByteCountingProxy(local_relay.port)
    async with proxy.running(), connect(f"ws://127.0.0.1:{proxy.port}", max_size=None) as ws:
        result = await reconcile_with_relay(WebsocketChannel(ws), storage, flt, "neg")
        assert result.verdict is Verdict.RECONCILED, result.reason
        fetched: list[str] = []
        for start in range(0, len(result.need), IDS_PER_REQ):
            await ws.send(
                json.dumps(["REQ", "ids", {"ids": result.need[start : start + IDS_PER_REQ]}])
            )
            while (message := json.loads(await ws.recv()))[0] != "EOSE":
                assert message[0] == "EVENT"
                fetched.append(json.dumps(message[2]))
            await ws.send(json.dumps(["CLOSE", "ids"]))
        events = [parse_event(json.loads(raw)) for raw in fetched]
        assert [verification_failure(e) for e in events] == [None] * len(events)
        store(fetched)
        # What the relay lacks goes back to it.
        by_id = {json.loads(raw)["id"]: raw for raw in ours}
        assert set(result.have) == set(by_id)
        for event_id in result.have:
            await ws.send(f'["EVENT",{by_id[event_id]}]')
            while (message := json.loads(await ws.recv()))[0] == "CLOSED":
                pass  # the relay's answer to our CLOSE of the ids subscription
            assert message[:3] == ["OK", event_id, True]

    assert len(negentropy_items(conn, flt)) == 3030
    assert await local_relay.fetch_all_ids({"kinds": [KIND]}) == {
        json.loads(raw)["id"] for raw in relay_events + ours
    }
    all_json = sum(len(raw) for raw in relay_events)
    # The 50 missing events, the reconciliation and the OKs: far below a full download.
    assert proxy.received < all_json * 0.10, (proxy.received, all_json)

"""nostr-sdk's Client (a real Nostr app library) against powrd's local relay endpoint."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta
from pathlib import Path

import nostr_sdk

from powrd.protocol.event import loads
from powrd.protocol.filters import parse_filter
from powrd.store import queries
from tests.serve.conftest import endpoint
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import keys_for, make_exercise, pubkey_of

AUTHORS = [pubkey_of(keys_for(101, i)) for i in range(5)]


async def sdk_client(url: str) -> nostr_sdk.Client:
    client = nostr_sdk.Client()
    await client.add_relay(nostr_sdk.RelayUrl.parse(url))
    await client.connect(timedelta(seconds=5))
    return client


async def test_client_fetches_the_same_ids_as_events_query(tmp_path: Path, corpus_small: list[str]) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon:
        await daemon.pipeline.submit("import", [(loads(e), len(e)) for e in corpus_small])
        client = await sdk_client(endpoint(daemon))
        try:
            for wire in ({"kinds": [33401], "limit": 50}, {"authors": AUTHORS[:2], "kinds": [1301], "limit": 20}):
                sdk_filter = nostr_sdk.Filter.from_json(json.dumps(wire))
                events = await client.fetch_events(nostr_sdk.ReqTarget.auto([sdk_filter]), timedelta(seconds=10))
                got = {event.id().to_hex() for event in events}
                expected = {loads(r)["id"] for r in queries.query_events(daemon.store.reader(), parse_filter(wire))}
                assert got == expected and 0 < len(got) <= wire["limit"]
        finally:
            await client.shutdown()


async def test_client_subscription_gets_live_events_and_its_own_writes(tmp_path: Path) -> None:
    writer_keys = keys_for("sdk-app", 0)
    async with running_daemon(write_config(tmp_path)) as daemon:
        client = await sdk_client(endpoint(daemon))
        try:
            notifications = client.notifications()
            wanted = nostr_sdk.Filter().kinds([nostr_sdk.Kind(33401)])
            await client.subscribe(nostr_sdk.ReqTarget.auto([wanted]), id="library")
            await wait_for(lambda: daemon.status()["local_relay"]["subscriptions"] == 1, what="REQ")
            imported = make_exercise(keys_for(101, 0), "imported-live", created_at=int(time.time()))
            await daemon.pipeline.submit("import", [(loads(imported), len(imported))])
            written = nostr_sdk.Event.from_json(make_exercise(writer_keys, "from-sdk", created_at=int(time.time())))
            output = await client.send_event(written)
            assert [str(url) for url in output.success] == [endpoint(daemon)]
            seen: set[str] = set()
            while loads(imported)["id"] not in seen:
                note = await asyncio.wait_for(notifications.next(), 10)
                if note is not None and note.is_new_event():
                    seen.add(note.event.id().to_hex())
            assert written.id().to_hex() in stored_ids(daemon)
            # The app's own write went back to its subscription too (the SDK, having sent
            # it, does not announce it as new): two live events sent in all.
            await wait_for(lambda: daemon.status()["local_relay"]["events_sent"] == 2, what="sent")
        finally:
            await client.shutdown()

"""NIP-77 on the local relay endpoint: nostr-sdk reconciles against a powrd daemon's store."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import nostr_sdk

from powrd.protocol.event import loads
from powrd.protocol.filters import parse_filter
from powrd.protocol.negentropy import NegentropyClient, StorageVector
from powrd.serve.negentropy import BUSY
from powrd.store import queries
from tests.serve.conftest import app, endpoint, publish, reply, stored_events
from tests.support.daemon import running_daemon, wait_for, write_config
from tests.support.events import keys_for, make_exercise, pubkey_of
from tests.support.nostr_sdk_sync import Item, sdk_reconcile, sdk_relay

APP = keys_for("negentropy-app", 0)
AUTHORS = [pubkey_of(keys_for(101, i)) for i in range(5)]


def items_of(events: list[str]) -> list[Item]:
    return [(e["created_at"], bytes.fromhex(e["id"])) for e in map(loads, events)]


async def import_events(daemon, events: list[str]) -> None:
    await daemon.pipeline.submit("import", [(loads(e), len(e.encode())) for e in events])


def sdk_filter(wire: dict[str, object]) -> nostr_sdk.Filter:
    return nostr_sdk.Filter.from_json(json.dumps(wire))


async def test_nostr_sdk_sync_gets_exact_have_and_need(tmp_path: Path, corpus_small: list[str]) -> None:
    rnd = random.Random(77)
    async with running_daemon(write_config(tmp_path)) as daemon:
        await import_events(daemon, corpus_small)
        # One more event through the endpoint itself, as an app would write it.
        written = make_exercise(APP, "via-endpoint", created_at=1_700_000_500)
        async with app(daemon) as websocket:
            assert (await publish(websocket, written))[2] is True
        async with sdk_relay(endpoint(daemon)) as relay:
            for wire in ({"kinds": [33401]}, {"kinds": [33401, 33402, 1301]}, {"authors": AUTHORS[:2]}):
                # The truth is what a REQ reads (current versions only), without a limit.
                server = items_of(queries.query_events(daemon.store.reader(), parse_filter(wire), max_limit=10**6))
                assert len(server) > 30, wire
                # The app holds most of the relay's events and some of its own.
                local = [item for item in server if rnd.random() > 0.1]
                local += [(1_700_000_000 + rnd.randrange(1000), rnd.randbytes(32)) for _ in range(25)]
                server_ids, local_ids = {i for _, i in server}, {i for _, i in local}
                have, need = await sdk_reconcile(relay, sdk_filter(wire), local)
                assert (have, need) == (local_ids - server_ids, server_ids - local_ids), wire
                assert need, "the test must leave the app something to fetch"
            # An app that holds exactly the store's set learns there is nothing to do.
            everything = items_of(queries.query_events(daemon.store.reader(), parse_filter({}), max_limit=10**6))
            assert loads(written)["id"] in {i.hex() for _, i in everything}
            assert await sdk_reconcile(relay, sdk_filter({}), everything) == (set(), set())


async def test_a_filter_over_the_record_cap_is_blocked(tmp_path: Path, corpus_small: list[str]) -> None:
    config = write_config(tmp_path, extra='[local_relay]\nlisten = "127.0.0.1:0"\nmax_negentropy_records = 50')
    async with running_daemon(config) as daemon:
        await import_events(daemon, corpus_small)
        initial = NegentropyClient(StorageVector.seal([])).initiate().hex()
        async with app(daemon) as websocket:
            await websocket.send(json.dumps(["NEG-OPEN", "big", {"kinds": [33401, 33402, 1301]}, initial]))
            assert await reply(websocket) == ["NEG-ERR", "big", "blocked: too many records"]
            few = {"ids": [loads(e)["id"] for e in corpus_small[:50]]}
            await websocket.send(json.dumps(["NEG-OPEN", "small", few, initial]))
            answer = await reply(websocket)
            assert answer[:2] == ["NEG-MSG", "small"]
        async with sdk_relay(endpoint(daemon)) as relay:
            try:
                await sdk_reconcile(relay, sdk_filter({"kinds": [33401, 33402, 1301]}), [])
            except nostr_sdk.NostrSdkError as error:
                assert "too many records" in str(error)
            else:
                raise AssertionError("nostr-sdk's sync over the cap should fail")


async def test_malformed_negentropy_messages_get_neg_err_and_the_connection_survives(
    tmp_path: Path, corpus_small: list[str]
) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon:
        await import_events(daemon, corpus_small)
        initial = NegentropyClient(StorageVector.seal([])).initiate().hex()
        async with app(daemon, max_size=None) as websocket:
            cases = [
                '["NEG-MSG","n","zz"]',  # not hex
                '["NEG-MSG","n","61ff"]',  # hex, but not a negentropy message
                '["NEG-MSG","n","6100ff"]',  # a range of an unknown mode
            ]
            for frame in cases:
                await websocket.send(json.dumps(["NEG-OPEN", "n", {"kinds": [33401]}, initial]))
                assert (await reply(websocket))[:2] == ["NEG-MSG", "n"]
                await websocket.send(frame)
                refused = await reply(websocket)
                assert refused[:2] == ["NEG-ERR", "n"] and refused[2].split(":")[0] in ("invalid", "error"), frame
                # The reconciliation is over; the connection is not.
                await websocket.send('["NEG-MSG","n","61"]')
                assert await reply(websocket) == ["NEG-ERR", "n", "closed: no such negentropy subscription"]
            # A message over max_message_bytes is refused unread.
            await websocket.send(json.dumps(["NEG-MSG", "n", "61" * 140_000]))
            notice = await reply(websocket)
            assert notice[0] == "NOTICE" and notice[1].startswith("invalid: message too large")
            assert len(await stored_events(websocket, "still-here", {"kinds": [33401], "limit": 3})) == 3


async def test_at_most_two_reconciliations_per_connection(tmp_path: Path, corpus_small: list[str]) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon:
        await import_events(daemon, corpus_small)
        initial = NegentropyClient(StorageVector.seal([])).initiate().hex()
        async with app(daemon) as websocket:
            for sub_id in ("a", "b"):
                await websocket.send(json.dumps(["NEG-OPEN", sub_id, {}, initial]))
                assert (await reply(websocket))[:2] == ["NEG-MSG", sub_id]
            await websocket.send(json.dumps(["NEG-OPEN", "c", {}, initial]))
            refused = await reply(websocket)
            assert refused[:2] == ["NEG-ERR", "c"] and refused[2].startswith("blocked: ")
            await websocket.send('["NEG-CLOSE","a"]')
            await websocket.send(json.dumps(["NEG-OPEN", "c", {}, initial]))
            assert (await reply(websocket))[:2] == ["NEG-MSG", "c"]
            # Reopening an open id replaces it rather than counting twice.
            await websocket.send(json.dumps(["NEG-OPEN", "c", {}, initial]))
            assert (await reply(websocket))[:2] == ["NEG-MSG", "c"]


async def test_nip11_lists_77(tmp_path: Path) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon:
        reader, writer = await asyncio.open_connection("127.0.0.1", daemon.local_relay.port)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/nostr+json\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        document = json.loads(data.decode().partition("\r\n\r\n")[2])
        assert 77 in document["supported_nips"]


async def test_records_held_by_all_connections_are_bounded(tmp_path: Path, corpus_small: list[str]) -> None:
    # The relay-wide budget is twice max_negentropy_records: 240 records here.
    config = write_config(tmp_path, extra='[local_relay]\nlisten = "127.0.0.1:0"\nmax_negentropy_records = 120')
    async with running_daemon(config) as daemon:
        await import_events(daemon, corpus_small)
        budget = daemon.local_relay.negentropy_budget
        initial = NegentropyClient(StorageVector.seal([])).initiate().hex()
        current = queries.query_events(daemon.store.reader(), parse_filter({}), max_limit=10**6)
        ids = sorted(loads(e)["id"] for e in current)
        assert len(ids) >= 300 - 60  # the corpus holds a few superseded versions

        async def neg_open(websocket, sub_id: str, first: int) -> list[object]:
            await websocket.send(json.dumps(["NEG-OPEN", sub_id, {"ids": ids[first : first + 100]}, initial]))
            return await reply(websocket)

        async with app(daemon) as first, app(daemon) as second:
            assert (await neg_open(first, "a", 0))[0] == "NEG-MSG"
            assert (await neg_open(first, "b", 100))[0] == "NEG-MSG"
            assert budget.held == 200
            assert await neg_open(second, "c", 200) == ["NEG-ERR", "c", BUSY]
            await first.send('["NEG-CLOSE","a"]')
            await wait_for(lambda: budget.held == 100, what="NEG-CLOSE gives its records back")
            assert (await neg_open(second, "c", 200))[0] == "NEG-MSG"
            # A reconciliation ended by a malformed message gives its records back too.
            await second.send('["NEG-MSG","c","61ff"]')
            assert (await reply(second))[:2] == ["NEG-ERR", "c"]
            assert budget.held == 100
        await wait_for(lambda: budget.held == 0, what="disconnected apps give their records back")

"""The local relay endpoint over real sockets: REQ, live, EVENT, COUNT, NIP-11, bind retry."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from powrd.control.client import ControlClient
from powrd.protocol.event import loads
from powrd.protocol.filters import parse_filter
from powrd.serve import server as serve_server
from powrd.store import outbox, queries
from tests.serve.conftest import app, publish, reply, stored_events
from tests.support.corpus import generate_corpus
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import keys_for, make_event, make_exercise, pubkey_of, write_key_file

USER = keys_for("local-relay", 0)
STRANGER = keys_for("local-relay", 1)
AUTHORS = [pubkey_of(keys_for(101, i)) for i in range(5)]


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return write_key_file(tmp_path / "nsec.txt", USER)


async def import_corpus(daemon, corpus: list[str]) -> None:
    await daemon.pipeline.submit("import", [(loads(e), len(e.encode())) for e in corpus])


FILTERS = [
    {"kinds": [33401], "limit": 40},
    {"authors": AUTHORS[:2], "limit": 100},
    {"kinds": [1301], "since": 1_700_000_000, "limit": 7},
    {"#t": ["pull", "push"], "limit": 30},
    {"authors": AUTHORS[3:], "kinds": [33402, 1301], "limit": 500},
]


async def test_req_returns_what_events_query_returns_then_eose(tmp_path: Path, corpus_small: list[str]) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon:
        await import_corpus(daemon, corpus_small)
        async with app(daemon) as websocket, ControlClient(tmp_path / "powrd.sock") as control:
            for number, wire in enumerate(FILTERS):
                served = await stored_events(websocket, f"q{number}", wire)
                answer = await control.call("events.query", {"filter": wire})
                assert [e["id"] for e in served] == [e["id"] for e in answer["events"]], wire
                assert served == answer["events"], wire  # the same events, byte for byte
                assert served, wire  # each filter selects something, so the test can fail
            # Several filters: the union, newest first, each filter's limit honoured.
            union = await stored_events(websocket, "union", FILTERS[0], FILTERS[2])
            wanted = {loads(r)["id"] for f in (FILTERS[0], FILTERS[2])
                      for r in queries.query_events(daemon.store.reader(), parse_filter(f))}
            assert {e["id"] for e in union} == wanted and len(union) == len(wanted)
            keys = [(-e["created_at"], e["id"]) for e in union]
            assert keys == sorted(keys)
            # No limit: the default page of 500; COUNT counts them all.
            everything = await stored_events(websocket, "all", {})
            assert len(everything) == min(500, len(stored_ids(daemon)))
            await websocket.send(json.dumps(["COUNT", "c", {"kinds": [33401]}, {"kinds": [1301]}]))
            counted = queries.count(
                daemon.store.reader(),
                "SELECT count(*) FROM nostr_events WHERE current = 1 AND kind IN (33401, 1301)",
            )
            assert await reply(websocket) == ["COUNT", "c", {"count": counted}]


async def test_live_events_from_any_source_reach_subscribers_once(tmp_path: Path) -> None:
    async with (
        running_daemon(write_config(tmp_path)) as daemon,
        app(daemon) as listener,
        app(daemon) as writer,
    ):
        assert await stored_events(listener, "live", {"kinds": [33401]}) == []
        await stored_events(listener, "other", {"kinds": [1]})
        now = int(time.time())
        from_app = make_exercise(STRANGER, "from-app", created_at=now)
        assert (await publish(writer, from_app))[2] is True
        imported = make_exercise(STRANGER, "imported", created_at=now)
        await import_corpus(daemon, [imported])
        record = make_event(STRANGER, 1301, "done", [["d", "r"]], created_at=now)  # no match
        await import_corpus(daemon, [record])
        got = [await reply(listener), await reply(listener)]
        assert [m[:2] for m in got] == [["EVENT", "live"], ["EVENT", "live"]]
        assert [m[2]["id"] for m in got] == [loads(from_app)["id"], loads(imported)["id"]]
        # Closing ends delivery; the other subscription saw nothing.
        await listener.send('["CLOSE","live"]')
        await import_corpus(daemon, [make_exercise(STRANGER, "after-close", created_at=now)])
        await listener.send('["REQ","probe",{"ids":["' + "0" * 64 + '"]}]')
        assert await reply(listener) == ["EOSE", "probe"]
        status = daemon.status()["local_relay"]
        assert status["connections"] == 2 and status["subscriptions"] == 2
        assert status["events_accepted"] == 1 and status["events_sent"] == 2


async def test_own_events_go_to_the_outbox_and_upstream_foreign_ones_stay_local(
    relay_factory, tmp_path: Path, key_file: Path
) -> None:
    relay = await relay_factory()
    config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(USER)], secret_key_file=key_file)
    async with running_daemon(config) as daemon:
        now = int(time.time())
        mine = make_exercise(USER, "mine", created_at=now)
        theirs = make_exercise(STRANGER, "theirs", created_at=now)
        async with app(daemon) as websocket:
            assert await publish(websocket, mine) == ["OK", loads(mine)["id"], True, ""]
            assert await publish(websocket, theirs) == ["OK", loads(theirs)["id"], True, ""]
            again = await publish(websocket, mine)
            assert again[2] is True and again[3].startswith("duplicate:")

        def delivered() -> bool:
            entries = outbox.entries(daemon.store.reader())
            return [(e["event_id"], [d["state"] for d in e["deliveries"]]) for e in entries] == [
                (loads(mine)["id"], ["accepted"])
            ]

        await wait_for(delivered, what="own event delivered upstream")
        assert await relay.fetch_all_ids({"kinds": [33401]}) == {loads(mine)["id"]}
        assert stored_ids(daemon) == {loads(mine)["id"], loads(theirs)["id"]}
        sources = dict(daemon.store.reader().execute("SELECT id, source FROM nostr_events"))
        assert set(sources.values()) == {"local-relay"}


async def test_upstream_event_reaches_a_local_subscriber(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory()
    author = keys_for(101, 0)
    config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(author)])
    async with running_daemon(config) as daemon:
        worker = next(iter(daemon.workers.values()))[0]
        await wait_for(lambda: worker.status.backfill_complete, what="backfill complete")
        async with app(daemon) as websocket:
            assert await stored_events(websocket, "s", {"authors": [pubkey_of(author)]}) == []
            upstream = make_exercise(author, "from-upstream", created_at=int(time.time()))
            await relay.publish([upstream])
            message = await reply(websocket)
            assert message[:2] == ["EVENT", "s"] and message[2]["id"] == loads(upstream)["id"]


async def test_nip11_document_and_text_page(tmp_path: Path) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon:
        port = daemon.local_relay.port

        async def get(headers: str) -> tuple[str, str]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n\r\n".encode())
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            head, _, body = data.decode().partition("\r\n\r\n")
            return head, body

        head, body = await get("Accept: application/nostr+json\r\n")
        assert "200 OK" in head and "application/nostr+json" in head
        document = json.loads(body)
        assert document["supported_nips"] == [1, 9, 11, 40, 45, 77]
        assert document["software"] == "powrd"
        assert document["limitation"]["max_limit"] == 5000
        assert document["limitation"]["max_subscriptions"] == 32
        head, body = await get("")
        assert "200 OK" in head and "Nostr relay" in body and daemon.local_relay.url in body


async def test_taken_port_is_reported_and_bound_when_free(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(serve_server, "BIND_RETRY_SECONDS", 0.1)
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    config = write_config(tmp_path, extra=f'[local_relay]\nlisten = "127.0.0.1:{port}"')
    async with running_daemon(config) as daemon:
        assert daemon.state == "running"
        problems = [p for p in daemon.health() if p.startswith("local relay")]
        assert problems and f"127.0.0.1:{port}" in problems[0] and "retrying every" in problems[0]
        assert daemon.status()["local_relay"]["listening"] is False
        blocker.close()
        await wait_for(lambda: daemon.local_relay.port == port, what="bind after the port came free")
        assert not [p for p in daemon.health() if p.startswith("local relay")]
        async with app(daemon) as websocket:
            assert await stored_events(websocket, "s", {"limit": 1}) == []


async def test_disabled_endpoint_listens_nowhere(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="[local_relay]\nenabled = false")
    async with running_daemon(config) as daemon:
        assert daemon.local_relay is None
        assert daemon.status()["local_relay"] == {"enabled": False}


def test_corpus_has_tags_for_the_filters() -> None:
    corpus = [loads(e) for e in generate_corpus(300, 5, seed=101)]
    assert any(t[:2] == ["t", "pull"] for e in corpus for t in e["tags"])


async def test_connections_beyond_the_limit_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='[local_relay]\nlisten = "127.0.0.1:0"\nmax_connections = 2')
    async with running_daemon(config) as daemon, app(daemon) as first, app(daemon) as second:
        with pytest.raises(InvalidStatus) as refused:
            async with app(daemon):
                pass
        assert refused.value.response.status_code == 503
        for websocket in (first, second):
            assert await stored_events(websocket, "s", {"limit": 1}) == []


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_loopback_listen(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra='[local_relay]\nlisten = "[::1]:0"')
    async with running_daemon(config) as daemon:
        assert daemon.local_relay.url.startswith("ws://[::1]:")
        async with app(daemon) as websocket:
            assert await stored_events(websocket, "s", {"limit": 1}) == []


def test_a_non_loopback_address_is_refused_at_start_up(tmp_path: Path) -> None:
    # Refused while reading the config: nothing is ever bound to the address.
    config = write_config(tmp_path, extra='[local_relay]\nlisten = "0.0.0.0:4869"')
    result = subprocess.run(
        [sys.executable, "-m", "powrd", "--config", str(config), "run"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "local_relay.allow_remote = true" in result.stderr

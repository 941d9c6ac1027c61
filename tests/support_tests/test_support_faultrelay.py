"""Each FaultRelay behaviour, observed with a plain websockets client."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from powrd.protocol.event import loads
from tests.support.events import keys_for, make_event, make_exercise, make_record
from tests.support.faultrelay import GARBAGE_FRAMES, Behaviour, FaultRelay, matches

ALICE = keys_for("fault-relay-tests", 0)
EXERCISES = [make_exercise(ALICE, f"ex{i}", created_at=1_700_000_000 + i) for i in range(6)]
RECORDS = [make_record(ALICE, f"r{i}", [], created_at=1_700_000_100 + i) for i in range(4)]
EVENTS = EXERCISES + RECORDS
TIMEOUT = 10


async def read_until(ws: ClientConnection, *kinds: str) -> list:
    """Frames (parsed when JSON) up to and including the first well-formed one of ``kinds``."""
    frames: list = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            frame = await ws.recv()
            try:
                message = json.loads(frame)
            except (ValueError, TypeError):
                message = frame
            frames.append(message)
            if isinstance(message, list) and len(message) >= 2 and message[0] in kinds:
                return frames


def event_ids(frames: list) -> list[str]:
    return [f[2]["id"] for f in frames if isinstance(f, list) and f[:1] == ["EVENT"]]


def ids_of(events: list[str]) -> list[str]:
    return [loads(e)["id"] for e in events]


async def test_well_behaved_by_default() -> None:
    async with FaultRelay(EVENTS, Behaviour(max_results=5)) as relay, connect(relay.url) as ws:
        await ws.send(json.dumps(["REQ", "all", {}]))
        newest_five = ids_of(list(reversed(EVENTS))[:5])
        assert event_ids(await read_until(ws, "EOSE")) == newest_five
        await ws.send(json.dumps(["REQ", "ex", {"kinds": [33401], "limit": 2}]))
        assert event_ids(await read_until(ws, "EOSE")) == ids_of([EXERCISES[5], EXERCISES[4]])
        # A published event is acknowledged, stored and pushed to the open subscription.
        fresh = make_exercise(ALICE, "fresh", created_at=1_700_000_050)
        await ws.send(f'["EVENT",{fresh}]')
        frames = await read_until(ws, "OK")
        assert frames[-1] == ["OK", loads(fresh)["id"], True, ""]
        pushed = [(await read_until(ws, "EVENT"))[-1] for _ in range(2)]
        assert sorted((sub, event["id"]) for _, sub, event in pushed) == [
            ("all", loads(fresh)["id"]),
            ("ex", loads(fresh)["id"]),
        ]
        await ws.send(json.dumps(["CLOSE", "ex"]))
        await ws.send(json.dumps(["REQ", "id", {"ids": [loads(fresh)["id"]]}]))
        assert event_ids(await read_until(ws, "EOSE")) == [loads(fresh)["id"]]
        assert relay.received[0] == ["REQ", "all", {}]
        assert ["CLOSE", "ex"] in relay.received
        assert len(relay.connections) == 1


def test_filter_matching() -> None:
    record = loads(RECORDS[0])
    assert matches(record, {"kinds": [1301], "authors": [record["pubkey"]]})
    assert matches(record, {"#d": ["r0", "x"], "since": record["created_at"]})
    assert not matches(record, {"#d": ["r1"]})
    assert not matches(record, {"until": record["created_at"] - 1})
    assert not matches(record, {"ids": ["0" * 64]})


async def test_garbage_frames_then_a_normal_answer() -> None:
    async with FaultRelay(EVENTS, Behaviour(garbage=True)) as relay, connect(relay.url) as ws:
        await ws.send(json.dumps(["REQ", "s", {"kinds": [1301]}]))
        frames = await read_until(ws, "EOSE")
        assert "this is not json" in frames
        assert any(isinstance(f, bytes) for f in frames)
        assert ["WHATEVER", "s", {"x": 1}] in frames
        assert len(frames) == len(GARBAGE_FRAMES) + len(RECORDS) + 1


async def test_oversized_frame() -> None:
    behaviour = Behaviour(oversized_bytes=5_000_000)
    async with FaultRelay(EVENTS, behaviour) as relay:
        async with connect(relay.url, max_size=None) as ws:
            await ws.send(json.dumps(["REQ", "s", {}]))
            big = await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert len(big) >= 4_900_000 and json.loads(big)[0] == "EVENT"
        async with connect(relay.url) as ws:  # default max_size is 1 MiB
            await ws.send(json.dumps(["REQ", "s", {}]))
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert closed.value.sent is not None and closed.value.sent.code == 1009  # too big


async def test_mismatched_events_and_ignored_limit() -> None:
    behaviour = Behaviour(mismatched=True)
    async with FaultRelay(EVENTS, behaviour) as relay, connect(relay.url) as ws:
        await ws.send(json.dumps(["REQ", "s", {"kinds": [1301]}]))
        assert set(event_ids(await read_until(ws, "EOSE"))) == set(ids_of(EVENTS))
        relay.set_behaviour(Behaviour(ignore_limit=True))
        await ws.send(json.dumps(["REQ", "t", {"kinds": [33401], "limit": 2}]))
        assert len(event_ids(await read_until(ws, "EOSE"))) == len(EXERCISES)


async def test_no_eose() -> None:
    async with FaultRelay(EVENTS, Behaviour(no_eose=True)) as relay, connect(relay.url) as ws:
        await ws.send(json.dumps(["REQ", "s", {"kinds": [1301]}]))
        # Frames are ordered, so an OK for a later EVENT proves no EOSE was sent before it.
        await ws.send(f'["EVENT",{EXERCISES[0]}]')
        frames = await read_until(ws, "OK")
        assert [f[0] for f in frames] == ["EVENT"] * len(RECORDS) + ["OK"]


async def test_close_on_accept_counts_every_attempt() -> None:
    async with FaultRelay(EVENTS, Behaviour(close_on_accept=True)) as relay:
        for _ in range(3):
            async with connect(relay.url) as ws:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert len(relay.connections) == 3
        times = [when for when, _ in relay.connections]
        assert times == sorted(times) and times[-1] <= time.monotonic()
        assert all(remote[0] == "127.0.0.1" for _, remote in relay.connections)


async def test_flood() -> None:
    async with FaultRelay(EVENTS, Behaviour(flood=3000)) as relay, connect(relay.url) as ws:
        await ws.send(json.dumps(["REQ", "s", {"kinds": [1301]}]))
        await read_until(ws, "EOSE")
        # An OK can only come after the whole flood: frames on one connection are ordered.
        await ws.send(f'["EVENT",{EXERCISES[0]}]')
        frames = await read_until(ws, "OK")
        assert len(event_ids(frames)) == 3000


async def test_slow_loris_trickles_bytes() -> None:
    behaviour = Behaviour(trickle_interval=0.005, trickle_chunk=2)
    async with FaultRelay(EVENTS, behaviour) as relay, connect(relay.url) as ws:
        started = time.monotonic()
        await ws.send(json.dumps(["REQ", "s", {"ids": ["0" * 64]}]))  # answered by EOSE only
        assert await read_until(ws, "EOSE") == [["EOSE", "s"]]
        frame_bytes = 2 + len('["EOSE","s"]')
        assert time.monotonic() - started >= (frame_bytes // 2 - 1) * 0.005


async def test_reset_mid_frame() -> None:
    behaviour = Behaviour(reset_mid_frame=True)
    async with FaultRelay(EVENTS, behaviour) as relay, connect(relay.url) as ws:
        await ws.send(json.dumps(["REQ", "s", {}]))
        with pytest.raises(ConnectionClosedError) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert closed.value.rcvd is None  # no closing handshake, just a dead socket


async def test_closed_rate_limited() -> None:
    behaviour = Behaviour(closed_reason="rate-limited: slow down")
    async with FaultRelay(EVENTS, behaviour) as relay, connect(relay.url) as ws:
        await ws.send(json.dumps(["REQ", "s", {}]))
        assert await read_until(ws, "CLOSED") == [["CLOSED", "s", "rate-limited: slow down"]]


async def test_auth_challenge_then_access_after_auth() -> None:
    behaviour = Behaviour(auth_challenge="c-123")
    async with FaultRelay(EVENTS, behaviour) as relay, connect(relay.url) as ws:
        assert await read_until(ws, "AUTH") == [["AUTH", "c-123"]]
        await ws.send(json.dumps(["REQ", "s", {}]))
        closed = await read_until(ws, "CLOSED")
        assert closed[-1][2].startswith("auth-required:")
        await ws.send(f'["EVENT",{EXERCISES[0]}]')
        assert (await read_until(ws, "OK"))[-1][2:3] == [False]
        wrong = make_event(ALICE, 22242, "", [["challenge", "nope"]])
        await ws.send(f'["AUTH",{wrong}]')
        assert (await read_until(ws, "OK"))[-1][2] is False
        auth = make_event(ALICE, 22242, "", [["relay", relay.url], ["challenge", "c-123"]])
        await ws.send(f'["AUTH",{auth}]')
        assert (await read_until(ws, "OK"))[-1] == ["OK", loads(auth)["id"], True, ""]
        await ws.send(json.dumps(["REQ", "s", {"kinds": [1301]}]))
        assert len(event_ids(await read_until(ws, "EOSE"))) == len(RECORDS)


async def test_ok_false_with_prefix() -> None:
    behaviour = Behaviour(ok_false="blocked: not on the list")
    async with FaultRelay(EVENTS, behaviour) as relay, connect(relay.url) as ws:
        fresh = make_exercise(ALICE, "fresh")
        await ws.send(f'["EVENT",{fresh}]')
        ok = (await read_until(ws, "OK"))[-1]
        assert ok == ["OK", loads(fresh)["id"], False, "blocked: not on the list"]
        assert loads(fresh)["id"] not in {e["id"] for e in relay.events}


async def test_per_connection_script_then_default() -> None:
    script = [Behaviour(close_on_accept=True), Behaviour(closed_reason="rate-limited: no")]
    async with FaultRelay(EVENTS, per_connection=script) as relay:
        outcomes = []
        for _ in range(3):
            async with connect(relay.url) as ws:
                try:
                    await ws.send(json.dumps(["REQ", "s", {"limit": 1}]))
                    outcomes.append((await read_until(ws, "EOSE", "CLOSED"))[-1][0])
                except ConnectionClosed:
                    outcomes.append("dropped")
        assert outcomes == ["dropped", "CLOSED", "EOSE"]


async def test_add_event_reaches_open_subscriptions_only_when_matching() -> None:
    async with FaultRelay([], Behaviour()) as relay, connect(relay.url) as ws:
        await ws.send(json.dumps(["REQ", "records", {"kinds": [1301]}]))
        assert await read_until(ws, "EOSE") == [["EOSE", "records"]]
        await relay.add_event(EXERCISES[0])  # not a record: not pushed
        await relay.add_event(loads(RECORDS[0]))
        pushed = await read_until(ws, "EVENT")
        assert pushed == [["EVENT", "records", loads(RECORDS[0])]]
        assert [e["id"] for e in relay.events] == ids_of([EXERCISES[0], RECORDS[0]])

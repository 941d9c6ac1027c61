"""RelayConnection: one owner per socket, messages routed to the client they belong to."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from powrd.config import SyncConfig
from powrd.protocol import reasons
from powrd.protocol.event import loads
from powrd.protocol.filters import Filter
from powrd.protocol.session import (
    Dropped,
    EndOfStored,
    Incoming,
    Output,
    PublishResult,
    SubscriptionClosed,
)
from powrd.sync.auth import Authenticator
from powrd.sync.backfill import ScopeSync, Subscriptions, Throttle
from powrd.sync.commits import CommitQueue
from powrd.sync.plan import plan
from powrd.sync.relay_connection import Closed, ConnectionLost, RelayConnection
from powrd.sync.status import RelayStatus
from tests.support.events import keys_for, make_exercise, make_record, pubkey_of
from tests.support.faultrelay import Behaviour, FaultRelay
from tests.support.proxy import proxy_in_front

ALICE = keys_for("relay-connection", 0)
BOB = keys_for("relay-connection", 1)


@dataclass
class Recorder:
    """A client that keeps what it is given."""

    got: list[Output] = field(default_factory=list)

    async def on_message(self, output: Output) -> None:
        self.got.append(output)


async def drive(connection: RelayConnection, done, *, within: float = 10.0) -> None:
    """Hand events to their clients until ``done()``."""
    deadline = time.monotonic() + within
    while not done():
        assert time.monotonic() < deadline, "timed out driving the connection"
        for event in await connection.next_events(100, 0.05):
            assert not isinstance(event, Closed), event
            await event.client.on_message(event.output)


async def open_connection(url: str) -> RelayConnection:
    return await RelayConnection.open(url, max_frame_bytes=1 << 20, queue_max=100)


async def test_each_client_gets_only_its_subscriptions(local_relay) -> None:
    exercise, record = make_exercise(ALICE, "squat"), make_record(BOB, "r1", [])
    await local_relay.publish([exercise, record])
    exercises, records = Recorder(), Recorder()
    async with await open_connection(local_relay.url) as connection:
        await connection.open_subscription("ex", [Filter(kinds=frozenset({33401}))], exercises)
        await connection.open_subscription("rec", [Filter(authors=frozenset({pubkey_of(BOB)}))], records)
        await drive(connection, lambda: len(exercises.got) == 2 and len(records.got) == 2)
    assert [type(o) for o in exercises.got] == [Incoming, EndOfStored]
    assert exercises.got[0].event["id"] == loads(exercise)["id"]  # type: ignore[union-attr]
    assert [type(o) for o in records.got] == [Incoming, EndOfStored]
    assert records.got[0].event["id"] == loads(record)["id"]  # type: ignore[union-attr]


async def test_ok_goes_to_the_client_that_published(local_relay) -> None:
    publisher, bystander = Recorder(), Recorder()
    text = make_exercise(ALICE, "lunge")
    event_id = loads(text)["id"]
    async with await open_connection(local_relay.url) as connection:
        await connection.open_subscription("s", [Filter(kinds=frozenset({1}))], bystander)
        await connection.publish(event_id, text, publisher)
        await drive(connection, lambda: publisher.got and bystander.got)
    (ok,) = publisher.got
    assert isinstance(ok, PublishResult) and (ok.event_id, ok.accepted) == (event_id, True)
    assert bystander.got == [EndOfStored("s")]
    assert connection.routes.by_event == {}  # an OK is routed once


async def test_frames_the_session_does_not_build_are_routed_by_id() -> None:
    # A client that builds its own frames (as NEG-OPEN will be) claims the id by hand.
    closing = Behaviour(closed_reason="error: not here")
    own, unrouted = Recorder(), Recorder()
    async with FaultRelay([], closing) as relay, await open_connection(relay.url) as connection:
        connection.route_type(Dropped, unrouted)
        frame = connection.session.open_subscription("mine", [Filter()])
        connection.route("mine", own)
        await connection.send(frame)
        await drive(connection, lambda: own.got)
    assert own.got == [SubscriptionClosed("mine", "error: not here")]
    assert connection.routes.by_sub == {}  # a CLOSED ends the route
    assert unrouted.got == []


async def test_type_routes_get_what_no_id_claims() -> None:
    drops = Recorder()
    async with FaultRelay([], Behaviour(garbage=True)) as relay, await open_connection(relay.url) as connection:
        connection.route_type(Dropped, drops)
        await connection.open_subscription("g", [Filter()], Recorder())
        await drive(connection, lambda: len(drops.got) >= 10)
    assert {d.reason for d in drops.got} >= {reasons.MALFORMED_FRAME}  # type: ignore[union-attr]


async def test_a_dropped_connection_ends_with_closed_and_refuses_to_send(local_relay) -> None:
    async with proxy_in_front(local_relay.port) as proxy, await open_connection(proxy.url) as connection:
        await connection.open_subscription("s", [Filter()], Recorder())
        proxy.go_down()
        events: list = []
        deadline = time.monotonic() + 10
        while not any(isinstance(e, Closed) for e in events):
            assert time.monotonic() < deadline
            events += await connection.next_events(100, 1.0)
        assert isinstance(events[-1], Closed) and events[-1].reason == connection.closed
        with pytest.raises(ConnectionLost):
            await connection.send('["CLOSE","s"]')


async def test_subscriptions_time_out_on_the_injected_clock() -> None:
    """No EOSE: the page times out when the injected clock says so, not the wall clock."""
    now = [1000.0]
    settings = SyncConfig(eose_timeout_seconds=30.0)
    scope = plan((pubkey_of(ALICE),), (33401,), 10)[0]
    status = RelayStatus("ws://test")
    async with FaultRelay([], Behaviour(no_eose=True)) as relay, await open_connection(relay.url) as connection:

        async def committed(sync: ScopeSync, created_at: int) -> None:
            pass

        async def save(key: str, since: int) -> None:
            pass

        subscriptions = Subscriptions(
            connection, CommitQueue(relay.url, None, status, committed),  # type: ignore[arg-type]
            Authenticator(connection, None, status), [scope], settings, status,
            lambda key: None, save, Throttle.for_settings(settings), monotonic=lambda: now[0],
        )
        await subscriptions.start()
        assert subscriptions.next_timer() == 30.0
        now[0] += 29.0
        await subscriptions.fire_timers()
        assert status.last_error is None
        now[0] += 1.0
        assert subscriptions.next_timer() == 0.0
        await subscriptions.fire_timers()
    assert status.last_error is not None and "no EOSE within 30 s" in status.last_error
    assert [frame[0] for frame in relay.received].count("REQ") == 2  # the page, then a live REQ

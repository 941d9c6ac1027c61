"""A real Nostr relay in the test process: nostr-sdk's ``LocalRelay``.

The relay runs on nostr-sdk's own (Rust) runtime and listens on 127.0.0.1; tests talk
to it over real websockets, exactly as powrd's sync layer will. Its store is in memory.
It returns at most 500 events per REQ, newest first. Its port is chosen by the relay and
never reused: for a relay that goes down and comes back, put a
:class:`~tests.support.proxy.SwitchableProxy` in front of it (or of a new one).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import nostr_sdk
from websockets.asyncio.client import ClientConnection, connect

from powrd.protocol.event import dumps, is_addressable, is_replaceable, loads
from tests.support.events import KIND_AUTH, keys_for, make_event

# Outstanding EVENTs per connection: the relay drops clients that pipeline hundreds.
PUBLISH_WINDOW = 100
PUBLISH_CONNECTIONS = 4
PAGE_SIZE = 500
REPLY_TIMEOUT = 15.0
# Only used to answer NIP-42 challenges; any key will do.
AUTH_KEYS = keys_for("local-relay-auth", 0)


class RelayReplyError(RuntimeError):
    """The relay refused something (OK false, CLOSED) or went quiet for too long."""


class PublishRejected(RelayReplyError):
    """Some events were answered ``OK false``; ``rejected`` maps id to the message."""

    def __init__(self, rejected: Mapping[str, str]) -> None:
        self.rejected = dict(rejected)
        first_id, first_message = next(iter(self.rejected.items()))
        super().__init__(f"{len(rejected)} events rejected, e.g. {first_id}: {first_message}")


@dataclass(frozen=True)
class OkReply:
    """The relay's ``OK`` for one published event."""

    accepted: bool
    message: str


class LocalRelayHandle:
    """A running local relay plus client helpers that speak to it over websockets.

    Build with :func:`start_local_relay`; the handle is also an async context manager
    that stops the relay on exit.

    Attributes:
        url: ``ws://127.0.0.1:<port>``.
        port: the TCP port.
        nip42: whether the relay requires NIP-42 AUTH for reads and writes. The helpers
            below authenticate by themselves (as :data:`AUTH_KEYS`).
    """

    def __init__(self, relay: nostr_sdk.LocalRelay, url: str, nip42: bool) -> None:
        self._relay: nostr_sdk.LocalRelay | None = relay
        self.url = url
        self.port = int(url.rsplit(":", 1)[1].rstrip("/"))
        self.nip42 = nip42

    @property
    def running(self) -> bool:
        return self._relay is not None

    def stop(self) -> None:
        """Shut the relay down (idempotent); open client connections are dropped."""
        if self._relay is not None:
            self._relay.shutdown()
            self._relay = None

    async def __aenter__(self) -> LocalRelayHandle:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.stop()

    async def publish(
        self,
        events_json: Iterable[str],
        *,
        check: bool = True,
        connections: int = PUBLISH_CONNECTIONS,
        window: int = PUBLISH_WINDOW,
    ) -> dict[str, OkReply]:
        """Send events and wait for every ``OK``.

        Events go out over ``connections`` parallel websockets with at most ``window``
        unacknowledged EVENTs each. All versions of one replaceable or addressable event
        travel on one connection in ``created_at`` order, because the relay refuses a
        version older than one it already holds (``OK false "error: unknown"``).
        Duplicates are accepted (``OK true "duplicate: …"``).

        Returns:
            event id -> the relay's reply.

        Raises:
            PublishRejected: ``check`` is true and any reply was ``OK false``.
            RelayReplyError: an OK did not arrive within 15 s.
        """
        lanes: list[list[tuple[str, str]]] = [[] for _ in range(max(1, connections))]
        spread = itertools.cycle(range(len(lanes)))
        parsed = sorted(((loads(text), text) for text in events_json), key=_created_at)
        for event, text in parsed:
            key = _replacement_key(event)
            lane = next(spread) if key is None else zlib.crc32(dumps(key).encode()) % len(lanes)
            lanes[lane].append((event["id"], text))
        replies: dict[str, OkReply] = {}
        await asyncio.gather(*(self._publish_lane(lane, window, replies) for lane in lanes if lane))
        rejected = {eid: reply.message for eid, reply in replies.items() if not reply.accepted}
        if check and rejected:
            raise PublishRejected(rejected)
        return replies

    async def fetch_all(self, filter_: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every stored event matching one NIP-01 filter, newest first, no duplicates.

        Pages backwards with ``until`` (starting from the filter's own ``until`` if any)
        because the relay caps each REQ at 500 events. Each next page repeats the
        oldest second of the previous one, so events sharing a second at a page
        boundary are not lost.

        Raises:
            ValueError: the filter has a ``limit`` (paging owns the limit).
            RelayReplyError: the relay closed a REQ, stalled, or more than a page of
                events share one second (they cannot be paged with ``until``).
        """
        if "limit" in filter_:
            raise ValueError("fetch_all pages by itself; pass a filter without limit")
        found: dict[str, dict[str, Any]] = {}
        until: int | None = filter_.get("until")
        async with _open(self.url, self.nip42) as websocket:
            for page_number in itertools.count():
                page_filter = {**filter_, "limit": PAGE_SIZE}
                if until is not None:
                    page_filter["until"] = until
                page = await _request(websocket, f"page-{page_number}", page_filter)
                fresh = [event for event in page if event["id"] not in found]
                if not fresh:
                    if len(page) >= PAGE_SIZE and until == min(e["created_at"] for e in page):
                        raise RelayReplyError(f"over {PAGE_SIZE} events share second {until}")
                    break
                found.update((event["id"], event) for event in fresh)
                until = min(event["created_at"] for event in page)
        return sorted(found.values(), key=lambda e: (-e["created_at"], e["id"]))

    async def fetch_all_ids(self, filter_: Mapping[str, Any]) -> set[str]:
        """Ids of :meth:`fetch_all`; same contract."""
        return {event["id"] for event in await self.fetch_all(filter_)}

    async def _publish_lane(
        self, lane: list[tuple[str, str]], window: int, replies: dict[str, OkReply]
    ) -> None:
        async with _open(self.url, self.nip42) as websocket:
            pending: set[str] = set()
            for event_id, text in lane:
                while len(pending) >= window:
                    await _read_ok(websocket, pending, replies)
                pending.add(event_id)
                await websocket.send(f'["EVENT",{text}]')
            while pending:
                await _read_ok(websocket, pending, replies)


async def start_local_relay(
    *,
    nip42: bool = False,
    max_reqs: int = 100_000,
    notes_per_minute: int = 10_000_000,
) -> LocalRelayHandle:
    """Start nostr-sdk's in-memory relay on 127.0.0.1, on a free port it chooses.

    Args:
        nip42: require NIP-42 authentication for both reading and writing.
        max_reqs: the relay's rate limit on concurrent subscriptions per connection.
        notes_per_minute: the relay's rate limit on published events per connection.

    Returns:
        A running :class:`LocalRelayHandle`; call ``stop()`` (or use ``async with``).

    Raises:
        RelayReplyError: the relay could not start.
    """
    builder = nostr_sdk.LocalRelayBuilder().rate_limit(
        nostr_sdk.RateLimit(max_reqs=max_reqs, notes_per_minute=notes_per_minute)
    )
    if nip42:
        mode = nostr_sdk.LocalRelayBuilderNip42Mode.BOTH
        builder = builder.nip42(nostr_sdk.LocalRelayBuilderNip42(mode=mode))
    relay = builder.build()
    try:
        await relay.run()
    except Exception as error:  # nostr-sdk raises NostrSdkError.Generic
        raise RelayReplyError(f"cannot start a relay: {error}") from error
    return LocalRelayHandle(relay, str(await relay.url()), nip42)


@asynccontextmanager
async def _open(url: str, nip42: bool) -> AsyncIterator[ClientConnection]:
    """A client connection, already authenticated when the relay requires NIP-42."""
    async with connect(url, max_size=None, ping_interval=None) as websocket:
        if nip42:
            await _authenticate(websocket, url)
        yield websocket


async def _authenticate(websocket: ClientConnection, url: str) -> None:
    await websocket.send('["REQ","auth-probe",{"limit":0}]')
    challenge = None
    while challenge is None:
        message = await _receive(websocket)
        if message[0] == "AUTH":
            challenge = message[1]
    tags = [["relay", url], ["challenge", challenge]]
    auth = make_event(AUTH_KEYS, KIND_AUTH, "", tags, int(time.time()))
    await websocket.send(dumps(["AUTH", loads(auth)]))
    while True:
        message = await _receive(websocket)
        if message[0] == "OK" and message[1] == loads(auth)["id"]:
            if not message[2]:
                raise RelayReplyError(f"AUTH refused: {message[3]}")
            return


async def _receive(websocket: ClientConnection) -> list[Any]:
    try:
        async with asyncio.timeout(REPLY_TIMEOUT):
            frame = await websocket.recv()
    except TimeoutError as error:
        raise RelayReplyError(f"no reply within {REPLY_TIMEOUT} s") from error
    message = loads(frame)
    if not isinstance(message, list) or not message:
        raise RelayReplyError(f"unexpected frame {frame!r:.200}")
    return message


async def _read_ok(
    websocket: ClientConnection, pending: set[str], replies: dict[str, OkReply]
) -> None:
    message = await _receive(websocket)
    if message[0] == "OK" and message[1] in pending:
        pending.discard(message[1])
        replies[message[1]] = OkReply(bool(message[2]), str(message[3]))


async def _request(
    websocket: ClientConnection, subscription: str, filter_: Mapping[str, Any]
) -> list[dict[str, Any]]:
    await websocket.send(dumps(["REQ", subscription, filter_]))
    events: list[dict[str, Any]] = []
    while True:
        message = await _receive(websocket)
        if message[1:2] != [subscription]:
            continue
        if message[0] == "EVENT":
            events.append(message[2])
        elif message[0] == "EOSE":
            await websocket.send(dumps(["CLOSE", subscription]))
            return events
        elif message[0] == "CLOSED":
            raise RelayReplyError(f"REQ closed: {message[2:]}")


def _created_at(pair: tuple[dict[str, Any], str]) -> int:
    return int(pair[0]["created_at"])


def _replacement_key(event: Mapping[str, Any]) -> tuple[Any, ...] | None:
    """Events with the same key replace each other on a relay."""
    kind = event["kind"]
    if is_addressable(kind):
        d = next((t[1] for t in event["tags"] if len(t) > 1 and t[0] == "d"), "")
        return (kind, event["pubkey"], d)
    if is_replaceable(kind):
        return (kind, event["pubkey"])
    return None


@contextmanager
def seeded_relay(events: Iterable[str]) -> Iterator[LocalRelayHandle]:
    """A relay holding ``events``, for synchronous module-scoped fixtures."""
    handle = asyncio.run(start_local_relay())
    try:
        asyncio.run(handle.publish(list(events)))
        yield handle
    finally:
        handle.stop()

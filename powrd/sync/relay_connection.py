"""One open relay connection: the only owner of its websocket and its protocol session.

:class:`RelayConnection` reads every frame, runs it through the connection's
:class:`~powrd.protocol.session.RelaySession` and queues what comes out, each output
addressed to the *client* it belongs to. It is also the only writer: every frame goes
out through :meth:`RelayConnection.send`. The read subscriptions
(:class:`~powrd.sync.backfill.Subscriptions`), the outbox delivery, NIP-42 AUTH and
NIP-77 reconciliations are clients: they build frames with the connection's helpers (or
on their own, for messages the session does not know) and receive the messages routed
to them.

Routing, in order:

1. by subscription id (``Incoming``, ``EndOfStored``, ``SubscriptionClosed``,
   ``CountResult`` and any output with a ``subscription_id``): the client that opened the
   subscription (:meth:`~RelayConnection.open_subscription`) or claimed the id
   (:meth:`~RelayConnection.route`). A ``CLOSED`` ends the route; opening the id again
   (a retry, a resend after AUTH) makes a new one.
2. by event id (``PublishResult``): the client that sent the ``EVENT`` or ``AUTH``.
3. by output type (``Notice``, ``AuthRequested``, ``Dropped`` …): the client registered
   with :meth:`~RelayConnection.route_type`.

Outputs no client claims are left out. Whoever drives the connection takes its events
(:meth:`RelayConnection.next_events`) in arrival order and hands each
:class:`Message` to its client; a :class:`Closed` event is the last one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode

from powrd.protocol import reasons
from powrd.protocol.filters import Filter
from powrd.protocol.session import (
    Dropped,
    Incoming,
    Output,
    PublishResult,
    RelaySession,
    SubscriptionClosed,
)
from powrd.sync.address import Pinned
from powrd.sync.connection import HARD_FRAME_CAP, connect_relay, receive_frames
from powrd.sync.inflow import Inflow
from powrd.sync.slices import TimeSlice
from powrd.sync.waiting import wait_until_woken


class ConnectionLost(Exception):
    """The connection ended (or a frame was sent on one that had); reconnect."""


@dataclass(frozen=True, slots=True)
class Closed:
    """The connection ended; nothing follows. ``reason`` is for status and logs."""

    reason: str


class Client(Protocol):
    """Something that sends on a connection and receives the messages routed to it."""

    async def on_message(self, output: Output) -> None:
        """Handle one session output routed to this client (in arrival order)."""


@dataclass(frozen=True, slots=True)
class Message:
    """A session output and the client it is routed to."""

    output: Output
    client: Client


ConnectionEvent = Message | Closed


@dataclass(eq=False)
class Routes:
    """Who receives each session output; the order is the module docstring's.

    Attributes:
        by_sub: subscription id -> client.
        by_event: id of an EVENT or AUTH awaiting its OK -> client (used once).
        by_type: output type -> client, for outputs no id claims.
    """

    by_sub: dict[str, Client] = field(default_factory=dict)
    by_event: dict[str, Client] = field(default_factory=dict)
    by_type: dict[type, Client] = field(default_factory=dict)

    def client_of(self, output: Output) -> Client | None:
        sub_id = getattr(output, "subscription_id", None)
        if sub_id is not None and not isinstance(output, Dropped):
            return self.by_sub.get(sub_id)
        if isinstance(output, PublishResult):
            return self.by_event.pop(output.event_id, None)
        return self.by_type.get(type(output))


class RelayConnection:
    """An open websocket to one relay, its session and its routes; see the module docstring.

    Open with :meth:`open`; use as an async context manager (or call :meth:`close`).

    Args:
        url: the relay, for logs.
        ws: the open websocket; this object owns it from now on.
        session: the connection's protocol state.
        queue_max: events waiting for the driver, at most. A full queue stops the
            reading, and TCP then slows the relay down.
        inflow: the byte budget of received events shared with the other connections
            (:mod:`powrd.sync.inflow`): each event takes its size before it is queued;
            :meth:`discharge` gives it back once committed, :meth:`close` the rest.
        monotonic: the clock publishes are timed with.
    """

    def __init__(
        self,
        url: str,
        ws: ClientConnection,
        session: RelaySession,
        *,
        queue_max: int,
        inflow: Inflow | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url, self.session, self.monotonic = url, session, monotonic
        self._inflow = inflow
        # Bytes of this connection's events taken from the inflow and not yet given back.
        self._charged = 0
        self.routes = Routes()
        self._ws = ws
        self._reader: asyncio.Task[None] | None = None
        self._closed: str | None = None
        self._events: asyncio.Queue[ConnectionEvent] = asyncio.Queue(maxsize=queue_max)
        # Set when an event is queued, or by wake(): the driver has something to look at.
        self._ready = asyncio.Event()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        max_frame_bytes: int,
        queue_max: int,
        inflow: Inflow | None = None,
        compression: bool = False,
        monotonic: Callable[[], float] = time.monotonic,
        pinned: Pinned | None = None,
    ) -> RelayConnection:
        """Connect to ``url`` (powrd's limits, see :mod:`powrd.sync.connection`), or to
        the address ``pinned`` was checked at (learned URLs, :mod:`powrd.sync.address`).

        Raises:
            OSError, TimeoutError, websockets.exceptions.WebSocketException: connecting failed.
        """
        ws = await connect_relay(url, compression=compression, pinned=pinned)
        session = RelaySession(max_frame_bytes=max_frame_bytes)
        return cls(
            url, ws, session, queue_max=queue_max, inflow=inflow, monotonic=monotonic
        )

    # -- lifetime ---------------------------------------------------------------

    async def __aenter__(self) -> RelayConnection:
        self._reader = asyncio.create_task(self._read(), name=f"read {self.url}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop reading and close the socket (idempotent)."""
        if self._closed is None:
            self._closed = "closed by powrd"
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        with contextlib.suppress(Exception):
            await self._ws.close()
        # Events read and never committed no longer count against the other connections.
        self.discharge(self._charged)

    @property
    def closed(self) -> str | None:
        """Why the connection ended, or None while it is open."""
        return self._closed

    # -- routes -----------------------------------------------------------------

    def route(self, sub_id: str, client: Client) -> None:
        """Send what the relay says about subscription ``sub_id`` to ``client``.

        For subscriptions whose frames the session does not build (NEG-OPEN); a REQ
        sent with :meth:`open_subscription` is routed by it.
        """
        self.routes.by_sub[sub_id] = client

    def unroute(self, sub_id: str) -> None:
        """Messages for ``sub_id`` go nowhere from now on."""
        self.routes.by_sub.pop(sub_id, None)

    def route_type(self, output_type: type, client: Client) -> None:
        """Send outputs of ``output_type`` that no subscription or event claims to ``client``."""
        self.routes.by_type[output_type] = client

    # -- sending ----------------------------------------------------------------

    async def send(self, frame: str) -> None:
        """Send one frame: the only way anything is written to the socket.

        Raises:
            ConnectionLost: the connection has ended.
        """
        if self._closed is not None:
            raise ConnectionLost(self._closed)
        try:
            await self._ws.send(frame)
        except websockets.exceptions.ConnectionClosed as closed:
            raise ConnectionLost(f"connection closed: {closed}") from None

    async def open_subscription(
        self, sub_id: str, filters: Iterable[Filter], client: Client
    ) -> None:
        """Send a REQ and route the subscription's messages to ``client``."""
        frame = self.session.open_subscription(sub_id, filters)
        self.route(sub_id, client)
        await self.send(frame)

    async def close_subscription(self, sub_id: str) -> None:
        """Send a CLOSE; late messages for the subscription go nowhere."""
        self.unroute(sub_id)
        await self.send(self.session.close_subscription(sub_id))

    async def publish(self, event_id: str, event_json: str, client: Client) -> None:
        """Send an EVENT; its OK goes to ``client``."""
        self.routes.by_event[event_id] = client
        await self.send(self.session.publish(event_id, event_json, self.monotonic()))

    async def authenticate(self, event_id: str, event_json: str, client: Client) -> None:
        """Send an AUTH event; its OK goes to ``client``."""
        self.routes.by_event[event_id] = client
        await self.send(self.session.authenticate(event_id, event_json, self.monotonic()))

    def timed_out_publishes(self, timeout: float) -> list[str]:
        """Ids of EVENTs and AUTHs without an OK for ``timeout`` seconds; no longer awaited."""
        expired = self.session.timed_out_publishes(self.monotonic(), timeout)
        for event_id in expired:
            self.routes.by_event.pop(event_id, None)
        return expired

    # -- receiving --------------------------------------------------------------

    async def next_events(self, most: int, within: float | None) -> list[ConnectionEvent]:
        """Up to ``most`` events in arrival order.

        Waits at most ``within`` seconds (None: no limit) for the first one; returns an
        empty list when none came in time or :meth:`wake` was called.
        """
        if self._events.empty():
            self._ready.clear()
            await wait_until_woken(self._ready, within)
        events: list[ConnectionEvent] = []
        while len(events) < most and not self._events.empty():
            events.append(self._events.get_nowait())
        return events

    def discharge(self, size: int) -> None:
        """``size`` bytes of this connection's events are committed (or given up)."""
        size = min(size, self._charged)
        self._charged -= size
        if self._inflow is not None and size:
            self._inflow.give_back(size)

    def wake(self) -> None:
        """Make a waiting :meth:`next_events` return now (the driver has other work)."""
        self._ready.set()

    async def _put(self, event: ConnectionEvent) -> None:
        await self._events.put(event)
        self._ready.set()

    async def _read(self) -> None:
        time_slice = TimeSlice()
        try:
            # Buffered frames are handed out without a suspension point: a flooding
            # relay would keep this loop running unless it yields on its own.
            async for frame in receive_frames(self._ws):
                for output in self.session.receive(frame):
                    client = self.routes.client_of(output)
                    if client is not None:
                        if isinstance(output, Incoming) and self._inflow is not None:
                            await self._inflow.take(output.size)
                            self._charged += output.size
                        await self._put(Message(output, client))
                    if isinstance(output, SubscriptionClosed):
                        self.unroute(output.subscription_id)
                await time_slice.pause()
            reason = "connection closed by relay"
        except websockets.exceptions.ConnectionClosed as closed:
            reason = f"connection closed: {closed}"
            if closed.sent is not None and closed.sent.code == CloseCode.MESSAGE_TOO_BIG:
                # websockets refused a frame over the hard cap, which ends the connection.
                dropped = Dropped(reasons.FRAME_TOO_LARGE, None, "over the hard cap")
                client = self.routes.client_of(dropped)
                if client is not None:
                    await self._put(Message(dropped, client))
                cap = HARD_FRAME_CAP // (1024 * 1024)
                reason = f"frame over the {cap} MiB hard cap (message too big)"
        except Exception as error:  # whatever ends the reading, the driver must hear of it
            reason = f"reading failed: {error!r}"
        self._closed = reason
        await self._put(Closed(reason))

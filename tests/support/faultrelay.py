"""A small Nostr relay that misbehaves on purpose, for sync-layer robustness tests.

It serves a fixed list of events (plus whatever clients publish to it) and answers
NIP-01 REQ/EVENT/CLOSE/AUTH. A :class:`Behaviour` scripts how it breaks the rules; it
can differ per connection and change at run time. It never checks ids or signatures.

Usage::

    async with FaultRelay(events, Behaviour(no_eose=True)) as relay:
        ... connect to relay.url ...
        assert len(relay.connections) == 1
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory

from powrd.protocol.event import dumps, loads
from tests.support.wire import (
    deflate_bomb_frame,
    oversized_event_frame,
    reset_mid_frame,
    send_raw,
    trickle,
)

# Frames that are not valid relay messages, each wrong in a different way.
GARBAGE_FRAMES: tuple[str | bytes, ...] = (
    "this is not json",
    '{"not": "an array"}',
    "[]",
    '["EVENT"]',
    '["EVENT","{sub}","not an event object"]',
    '["EOSE"]',
    '["OK",1,2,3]',
    '["WHATEVER","{sub}",{"x":1}]',
    '["NOTICE"',
    b"\x00\xffbinary frame",
)


@dataclass(frozen=True)
class Behaviour:
    """How the relay (mis)behaves. The default is a well-behaved relay.

    Attributes:
        max_results: cap on events returned per REQ (after the filter's ``limit``).
        garbage: before answering a REQ, send every frame in :data:`GARBAGE_FRAMES`
            (``{sub}`` replaced by the subscription id), then answer normally.
        oversized_bytes: before answering a REQ, send one EVENT frame for the
            subscription whose content makes the frame about this many bytes.
        mismatched: also send stored events that do NOT match the REQ's filters.
        ignore_limit: disregard the filters' ``limit`` (still capped by max_results).
        no_eose: never send EOSE.
        close_on_accept: close the websocket right after the handshake.
        flood: after answering a REQ, send this many extra copies of its events
            (cycling through them) as fast as the socket accepts them.
        trickle_interval: if > 0, write every frame answering a REQ in chunks of
            ``trickle_chunk`` raw bytes with this many seconds between chunks.
        trickle_chunk: bytes per trickled write.
        reset_mid_frame: answer a REQ with half a frame, then reset the TCP connection.
        closed_reason: answer every REQ with ``CLOSED`` and this message, e.g.
            ``"rate-limited: slow down"``.
        auth_challenge: send ``["AUTH", challenge]`` on connect and answer REQ with
            ``CLOSED "auth-required: …"`` and EVENT with ``OK false "auth-required: …"``
            until the client sends an AUTH event carrying this challenge.
        ok_false: answer every EVENT with ``OK false`` and this message, e.g.
            ``"blocked: not allowed"``; such events are not stored.
        bombs: before answering a REQ, send this many compressed EVENT frames that
            each inflate to ``bomb_bytes`` (needs a relay made with ``compression``).
        bomb_bytes: the inflated size of each bomb.
        closed_flood: after answering a REQ, send this many ``CLOSED`` frames for
            subscriptions the client never opened.
        close_after_eose: ``close_delay`` seconds after the EOSE, end the subscription
            (if the client has not) with ``CLOSED`` and this message, e.g.
            ``"error: shutting down idle subscriptions"``.
        close_delay: see ``close_after_eose``.
        neg_open: how NIP-77 ``NEG-OPEN`` is answered: ``"notice"`` (the NOTICE any
            unknown message gets), ``"ignore"`` (silence), or ``"neg-err"`` (``NEG-ERR
            "blocked: negentropy disabled"``).
    """

    max_results: int = 500
    garbage: bool = False
    oversized_bytes: int = 0
    mismatched: bool = False
    ignore_limit: bool = False
    no_eose: bool = False
    close_on_accept: bool = False
    flood: int = 0
    trickle_interval: float = 0.0
    trickle_chunk: int = 1
    reset_mid_frame: bool = False
    closed_reason: str | None = None
    auth_challenge: str | None = None
    ok_false: str | None = None
    bombs: int = 0
    bomb_bytes: int = 0
    closed_flood: int = 0
    close_after_eose: str | None = None
    close_delay: float = 0.0
    neg_open: str = "notice"


def matches(event: dict[str, Any], filter_: dict[str, Any]) -> bool:
    """NIP-01 filter matching (``limit`` is ignored here); exact ids and authors."""
    for name, wanted in filter_.items():
        if name == "ids" and event["id"] not in wanted:
            return False
        if name == "authors" and event["pubkey"] not in wanted:
            return False
        if name == "kinds" and event["kind"] not in wanted:
            return False
        if name == "since" and event["created_at"] < wanted:
            return False
        if name == "until" and event["created_at"] > wanted:
            return False
        if name.startswith("#") and len(name) == 2:
            values = {tag[1] for tag in event["tags"] if len(tag) > 1 and tag[0] == name[1]}
            if values.isdisjoint(wanted):
                return False
    return True


@dataclass
class _Session:
    index: int
    authenticated: bool = False
    subscriptions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class FaultRelay:
    """A scripted relay on 127.0.0.1 and a random port; see the module docstring.

    Attributes:
        url: ``ws://127.0.0.1:<port>`` once entered.
        connections: ``(time.monotonic(), remote address)`` per accepted connection, in
            order; use it to assert reconnect pacing.
        received: every client frame, parsed as JSON (a frame that is not JSON is
            kept as its text), in arrival order across connections.
        events: the stored events, as dicts; published events are appended.
    """

    def __init__(
        self,
        events: Iterable[str | dict[str, Any]] = (),
        behaviour: Behaviour | None = None,
        *,
        per_connection: Sequence[Behaviour] = (),
        compression: bool = False,
    ) -> None:
        """Create the relay (it listens once entered with ``async with``).

        Args:
            events: events to serve, as JSON text or dicts.
            behaviour: the behaviour of every connection not scripted below.
            per_connection: behaviour of the first, second, … connection; later
                connections fall back to ``behaviour``.
            compression: offer permessage-deflate (each message compressed on its own).
        """
        self.events = [loads(e) if isinstance(e, str) else e for e in events]
        self.behaviour = behaviour or Behaviour()
        self.per_connection = list(per_connection)
        self.connections: list[tuple[float, Any]] = []
        self.received: list[Any] = []
        self.url = ""
        self.compression = compression
        self._server: Server | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        self._live: dict[ServerConnection, _Session] = {}

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Change the behaviour of every unscripted connection, open ones included."""
        self.behaviour = behaviour

    async def __aenter__(self) -> FaultRelay:
        deflate = ServerPerMessageDeflateFactory(server_no_context_takeover=True)
        self._server = await serve(
            self._handle, "127.0.0.1", 0, ping_interval=None, close_timeout=1, compression=None,
            extensions=[deflate] if self.compression else None,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in list(self._handlers):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def add_event(self, event: str | dict[str, Any]) -> None:
        """Store an event and push it to open subscriptions it matches."""
        await self._store_and_broadcast(loads(event) if isinstance(event, str) else event)

    def _behaviour_of(self, session: _Session) -> Behaviour:
        if session.index < len(self.per_connection):
            return self.per_connection[session.index]
        return self.behaviour

    async def _handle(self, websocket: ServerConnection) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        session = _Session(len(self.connections))
        self.connections.append((time.monotonic(), websocket.remote_address))
        self._live[websocket] = session
        try:
            behaviour = self._behaviour_of(session)
            if behaviour.close_on_accept:
                await websocket.close()
                return
            if behaviour.auth_challenge is not None:
                await websocket.send(dumps(["AUTH", behaviour.auth_challenge]))
            async for frame in websocket:
                try:
                    message = loads(frame)
                except ValueError:
                    message = frame
                self.received.append(message)
                await self._dispatch(websocket, session, message)
        except ConnectionClosed:
            pass
        finally:
            self._live.pop(websocket, None)
            self._handlers.discard(task)

    async def _dispatch(self, websocket: ServerConnection, session: _Session, message: Any) -> None:
        behaviour = self._behaviour_of(session)
        kind = message[0] if isinstance(message, list) and message else None
        if kind == "REQ" and len(message) >= 2:
            await self._req(websocket, session, behaviour, str(message[1]), message[2:])
        elif kind == "EVENT" and len(message) == 2 and isinstance(message[1], dict):
            await self._event(websocket, session, behaviour, message[1])
        elif kind == "AUTH" and len(message) == 2 and isinstance(message[1], dict):
            tags = message[1].get("tags", [])
            ok = ["challenge", behaviour.auth_challenge] in tags
            session.authenticated = session.authenticated or ok
            reason = "" if ok else "auth-required: wrong challenge"
            await websocket.send(dumps(["OK", message[1].get("id"), ok, reason]))
        elif kind == "CLOSE" and len(message) == 2:
            session.subscriptions.pop(str(message[1]), None)
        elif kind in ("NEG-OPEN", "NEG-MSG", "NEG-CLOSE") and behaviour.neg_open != "notice":
            if kind == "NEG-OPEN" and behaviour.neg_open == "neg-err":
                reply = ["NEG-ERR", message[1], "blocked: negentropy disabled"]
                await websocket.send(dumps(reply))
        else:
            await websocket.send(dumps(["NOTICE", "error: could not understand message"]))

    async def _req(
        self,
        websocket: ServerConnection,
        session: _Session,
        behaviour: Behaviour,
        sub: str,
        filters: list[Any],
    ) -> None:
        if behaviour.auth_challenge is not None and not session.authenticated:
            await websocket.send(dumps(["CLOSED", sub, "auth-required: authenticate first"]))
            return
        if behaviour.closed_reason is not None:
            await websocket.send(dumps(["CLOSED", sub, behaviour.closed_reason]))
            return
        if behaviour.garbage:
            for garbage in GARBAGE_FRAMES:
                text = garbage.replace("{sub}", sub) if isinstance(garbage, str) else None
                await websocket.send(garbage if text is None else text)
        if behaviour.oversized_bytes > 0:
            await websocket.send(oversized_event_frame(sub, behaviour.oversized_bytes))
        if behaviour.bombs > 0:
            bomb = deflate_bomb_frame(sub, behaviour.bomb_bytes)
            for _ in range(behaviour.bombs):
                await send_raw(websocket, bomb)
        selected = self._select([f for f in filters if isinstance(f, dict)], behaviour)
        frames = [dumps(["EVENT", sub, event]) for event in selected]
        if not behaviour.no_eose:
            frames.append(dumps(["EOSE", sub]))
        if behaviour.reset_mid_frame:
            await reset_mid_frame(websocket, frames[0] if frames else dumps(["EOSE", sub]))
            return
        for frame in frames:
            if behaviour.trickle_interval > 0:
                await trickle(websocket, frame, behaviour.trickle_chunk, behaviour.trickle_interval)
            else:
                await websocket.send(frame)
        for i in range(behaviour.flood if selected else 0):
            await websocket.send(dumps(["EVENT", sub, selected[i % len(selected)]]))
        for i in range(behaviour.closed_flood):
            await websocket.send(dumps(["CLOSED", f"{sub}:{i}", "error: no such subscription"]))
        session.subscriptions[sub] = [f for f in filters if isinstance(f, dict)]
        if behaviour.close_after_eose is not None:
            closing = self._close_later(websocket, session, sub, behaviour)
            self._handlers.add(asyncio.create_task(closing))

    async def _close_later(
        self, websocket: ServerConnection, session: _Session, sub: str, behaviour: Behaviour
    ) -> None:
        task = asyncio.current_task()
        try:
            await asyncio.sleep(behaviour.close_delay)
            if session.subscriptions.pop(sub, None) is not None:
                await websocket.send(dumps(["CLOSED", sub, behaviour.close_after_eose]))
        except ConnectionClosed:
            pass
        finally:
            self._handlers.discard(task)  # type: ignore[arg-type]

    def _select(self, filters: list[dict[str, Any]], behaviour: Behaviour) -> list[dict[str, Any]]:
        newest_first = sorted(self.events, key=lambda e: (-e["created_at"], e["id"]))
        chosen: dict[str, dict[str, Any]] = {}
        for filter_ in filters:
            hits = [e for e in newest_first if matches(e, filter_)]
            if "limit" in filter_ and not behaviour.ignore_limit:
                hits = hits[: max(0, int(filter_["limit"]))]
            chosen.update((e["id"], e) for e in hits)
        if behaviour.mismatched:
            misses = [e for e in newest_first if not any(matches(e, f) for f in filters)]
            chosen.update((e["id"], e) for e in misses)
        ordered = sorted(chosen.values(), key=lambda e: (-e["created_at"], e["id"]))
        return ordered[: behaviour.max_results]

    async def _event(
        self,
        websocket: ServerConnection,
        session: _Session,
        behaviour: Behaviour,
        event: dict[str, Any],
    ) -> None:
        event_id = event.get("id")
        if behaviour.auth_challenge is not None and not session.authenticated:
            await websocket.send(dumps(["OK", event_id, False, "auth-required: authenticate"]))
        elif behaviour.ok_false is not None:
            await websocket.send(dumps(["OK", event_id, False, behaviour.ok_false]))
        else:
            duplicate = any(e.get("id") == event_id for e in self.events)
            await websocket.send(dumps(["OK", event_id, True, "duplicate:" if duplicate else ""]))
            if not duplicate:
                await self._store_and_broadcast(event)

    async def _store_and_broadcast(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        for websocket, session in list(self._live.items()):
            for sub, filters in list(session.subscriptions.items()):
                if any(matches(event, f) for f in filters):
                    try:
                        await websocket.send(dumps(["EVENT", sub, event]))
                    except ConnectionClosed:
                        break

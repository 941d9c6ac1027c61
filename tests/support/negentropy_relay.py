"""A tiny test-only relay that answers NIP-77 negentropy with powrd's responder.

It holds a fixed set of (created_at, id) items, ignores the filter a client sends,
and answers ``NEG-OPEN``/``NEG-MSG`` with :class:`powrd.protocol.negentropy.NegentropyServer`
(``NEG-ERR`` on malformed input), ``NEG-CLOSE`` by forgetting the subscription, and
``REQ`` with an immediate ``EOSE``. It exists to prove that other clients (nostr-sdk)
reconcile against powrd's server side; it listens on 127.0.0.1 only.

Usage::

    async with NegentropyTestRelay(items, frame_size_limit=4096) as relay:
        ... connect to relay.url ...
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from powrd.protocol.negentropy import NegentropyError, NegentropyServer, StorageVector


class NegentropyTestRelay:
    """Serve ``items`` to negentropy clients; counts the NEG-MSG frames it sent.

    Args:
        items: the relay's (created_at, id) items.
        frame_size_limit: the responder's frame limit (0 or at least 4096).
        refuse: answer every NEG-OPEN with ``NEG-ERR`` and this reason.
        silent: never answer NEG-OPEN or NEG-MSG.
        err_after: answer this many NEG-OPEN/NEG-MSG, then ``NEG-ERR`` the next one.
        payload_after: answer this many properly, then send this hex as NEG-MSG.
    """

    def __init__(
        self,
        items: Iterable[tuple[int, bytes]],
        frame_size_limit: int = 0,
        *,
        refuse: str | None = None,
        silent: bool = False,
        err_after: int | None = None,
        payload_after: tuple[int, str] | None = None,
    ) -> None:
        self._storage = StorageVector.seal(items)
        self._frame_size_limit = frame_size_limit
        self._refuse = refuse
        self._silent = silent
        self._err_after = err_after
        self._payload_after = payload_after
        self.received: list[Any] = []
        self._server: Server | None = None
        self.url = ""
        self.messages_sent = 0
        self.errors: list[str] = []

    async def __aenter__(self) -> NegentropyTestRelay:
        self._server = await serve(self._serve, "127.0.0.1", 0, max_size=None)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, websocket: ServerConnection) -> None:
        sessions: dict[str, NegentropyServer] = {}
        try:
            async for frame in websocket:
                message = json.loads(frame)
                self.received.append(message)
                reply = self._answer(message, sessions)
                if reply is not None:
                    await websocket.send(json.dumps(reply))
        except ConnectionClosed:
            pass

    def _answer(self, message: list[Any], sessions: dict[str, NegentropyServer]) -> Any:
        verb = message[0]
        if verb == "REQ":
            return ["EOSE", message[1]]
        if verb == "NEG-CLOSE":
            sessions.pop(message[1], None)
            return None
        if verb not in ("NEG-OPEN", "NEG-MSG"):
            return ["NOTICE", f"unsupported: {verb}"]
        sub_id = message[1]
        if self._silent:
            return None
        if self._refuse is not None:
            return ["NEG-ERR", sub_id, self._refuse]
        if self._err_after is not None and self.messages_sent >= self._err_after:
            return ["NEG-ERR", sub_id, "error: gave up"]
        if self._payload_after is not None and self.messages_sent >= self._payload_after[0]:
            self.messages_sent += 1
            return ["NEG-MSG", sub_id, self._payload_after[1]]
        if verb == "NEG-OPEN":
            sessions[sub_id] = NegentropyServer(self._storage, self._frame_size_limit)
        session = sessions.get(sub_id)
        if session is None:
            return ["NEG-ERR", sub_id, "closed: no such negentropy subscription"]
        try:
            answer = session.reconcile(bytes.fromhex(message[-1]))
        except (NegentropyError, ValueError) as error:
            self.errors.append(str(error))
            sessions.pop(sub_id, None)
            return ["NEG-ERR", sub_id, f"error: {error}"]
        self.messages_sent += 1
        return ["NEG-MSG", sub_id, answer.hex()]

"""A tiny test-only relay that answers NIP-77 negentropy with powrd's responder.

It holds a fixed set of (created_at, id) items, ignores the filter a client sends,
and hands ``NEG-OPEN``/``NEG-MSG``/``NEG-CLOSE`` to
:class:`powrd.protocol.negentropy_responder.NegentropyResponder` (one per
connection); ``REQ`` gets an immediate ``EOSE``. It exists to prove that other
clients (nostr-sdk) reconcile against powrd's server side, and can be scripted to
misbehave for the sync driver's fallback tests. It listens on 127.0.0.1 only.

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

from powrd.protocol.negentropy_messages import (
    NegClose,
    NegMsg,
    NegOpen,
    parse_negentropy_client_message,
)
from powrd.protocol.negentropy_responder import DEFAULT_MAX_RECORDS, NegentropyResponder


class NegentropyTestRelay:
    """Serve ``items`` to negentropy clients; counts the NEG-MSG frames it sent.

    Args:
        items: the relay's (created_at, id) items.
        frame_size_limit: the responder's frame limit (0 or at least 4096).
        refuse: answer every NEG-OPEN and NEG-MSG with ``NEG-ERR`` and this reason.
        silent: never answer NEG-OPEN or NEG-MSG.
        err_after: answer this many NEG-OPEN/NEG-MSG, then ``NEG-ERR`` the next one.
        payload_after: answer this many properly, then send this hex as NEG-MSG.
        max_records: the responder's limit (NEG-ERR "blocked: too many records").

    Attributes:
        received: every client frame, parsed as JSON, in arrival order.
        messages_sent: NEG-MSG frames sent.
        errors: reasons of the NEG-ERR frames sent.
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
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        self._items = list(items)
        self._frame_size_limit = frame_size_limit
        self._refuse = refuse
        self._silent = silent
        self._err_after = err_after
        self._payload_after = payload_after
        self._max_records = max_records
        self._server: Server | None = None
        self.url = ""
        self.received: list[Any] = []
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
        responder = NegentropyResponder(
            max_records=self._max_records, frame_size_limit=self._frame_size_limit
        )
        try:
            async for frame in websocket:
                message = json.loads(frame)
                self.received.append(message)
                reply = self._answer(frame, message, responder)
                if reply is not None:
                    await websocket.send(reply)
        except ConnectionClosed:
            pass

    def _answer(
        self, frame: str | bytes, message: list[Any], responder: NegentropyResponder
    ) -> str | None:
        verb = message[0]
        if verb == "REQ":
            return json.dumps(["EOSE", message[1]])
        parsed = parse_negentropy_client_message(frame)
        if parsed is None:
            return json.dumps(["NOTICE", f"unsupported: {verb}"])
        if isinstance(parsed, NegClose):
            responder.close(parsed)
            return None
        scripted = self._scripted(parsed)
        if scripted is not None or self._silent:
            return scripted
        if isinstance(parsed, NegOpen):
            reply = responder.open(parsed, self._items)
        else:
            reply = responder.message(parsed)
        answer = json.loads(reply)
        if answer[0] == "NEG-ERR":
            self.errors.append(answer[2])
        else:
            self.messages_sent += 1
        return reply

    def _scripted(self, parsed: NegOpen | NegMsg) -> str | None:
        sub_id = parsed.subscription_id
        if self._refuse is not None:
            return json.dumps(["NEG-ERR", sub_id, self._refuse])
        if self._err_after is not None and self.messages_sent >= self._err_after:
            return json.dumps(["NEG-ERR", sub_id, "error: gave up"])
        if self._payload_after is not None and self.messages_sent >= self._payload_after[0]:
            self.messages_sent += 1
            return json.dumps(["NEG-MSG", sub_id, self._payload_after[1]])
        return None

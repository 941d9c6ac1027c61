"""The smallest relay-connection owner the negentropy sync driver needs, for tests.

:class:`WebsocketChannel` wraps one client websocket: it sends the driver's frames
and routes NEG-MSG/NEG-ERR and NOTICEs back to it, as the sync layer's connection
owner will once the driver is wired in.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection

from powrd.protocol.messages import MalformedFrame, NoticeMessage, parse_relay_message
from powrd.protocol.negentropy_messages import parse_negentropy_relay_message
from powrd.sync.negentropy import Reply


@dataclass
class Counted:
    """Websocket payload bytes one way and the other."""

    sent: int = 0
    received: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.received


class WebsocketChannel:
    """A negentropy channel over one websocket; ``sent`` keeps every frame it sent, and
    ``counted`` (when given) adds up the bytes both ways."""

    def __init__(self, websocket: ClientConnection, counted: Counted | None = None) -> None:
        self._websocket = websocket
        self.sent: list[Any] = []
        self.counted = counted if counted is not None else Counted()

    async def send(self, frame: str) -> None:
        self.sent.append(json.loads(frame))
        self.counted.sent += len(frame.encode())
        await self._websocket.send(frame)

    async def replies(self) -> AsyncIterator[Reply]:
        async for frame in self._websocket:
            self.counted.received += len(frame)
            negentropy = parse_negentropy_relay_message(frame)
            if negentropy is not None:
                yield negentropy
                continue
            try:
                message = parse_relay_message(frame)
            except MalformedFrame:
                continue
            if isinstance(message, NoticeMessage):
                yield message

"""Helpers for the local relay endpoint tests: a raw websocket client that reads replies."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from powrd.service.daemon import Daemon

REPLY_TIMEOUT = 10.0


def endpoint(daemon: Daemon) -> str:
    assert daemon.local_relay is not None and daemon.local_relay.port is not None
    return daemon.local_relay.url


@asynccontextmanager
async def app(daemon: Daemon, **options: Any) -> AsyncIterator[ClientConnection]:
    """A raw websocket client connected to the daemon's local relay."""
    async with connect(endpoint(daemon), compression=None, **options) as websocket:
        yield websocket


async def reply(websocket: ClientConnection) -> list[Any]:
    """The next message, decoded."""
    return json.loads(await asyncio.wait_for(websocket.recv(), REPLY_TIMEOUT))


async def stored_events(websocket: ClientConnection, sub_id: str, *filters: dict[str, Any]) -> list[dict[str, Any]]:
    """REQ and collect events up to EOSE (the subscription stays open)."""
    await websocket.send(json.dumps(["REQ", sub_id, *filters]))
    events: list[dict[str, Any]] = []
    while True:
        message = await reply(websocket)
        if message[0] == "EOSE" and message[1] == sub_id:
            return events
        assert message[0] == "EVENT" and message[1] == sub_id, message
        events.append(message[2])


async def publish(websocket: ClientConnection, event_json: str) -> list[Any]:
    """EVENT and wait for its OK."""
    await websocket.send(f'["EVENT",{event_json}]')
    while True:
        message = await reply(websocket)
        if message[0] == "OK":
            return message

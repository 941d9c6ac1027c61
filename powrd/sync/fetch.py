"""One-shot relay exchanges: connect, ask or publish once, disconnect.

The resolver fetches missing coordinates this way, including from relays that are only
named in a relay hint and are not configured (those are checked and pinned by
:mod:`powrd.sync.address` first); ``powrd demo`` seeds its relay with
:func:`publish_once`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import websockets

from powrd.protocol.event import loads
from powrd.protocol.filters import Filter
from powrd.protocol.session import (
    EndOfStored,
    Incoming,
    PublishResult,
    RelaySession,
    SubscriptionClosed,
)
from powrd.sync.address import Pinned
from powrd.sync.connection import connect_relay, receive_frames


class FetchFailed(Exception):
    """The relay could not be asked (connect error, timeout, closed subscription)."""


@dataclass(slots=True)
class FetchResult:
    events: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    dropped: int = 0


def is_fetchable_url(url: str) -> bool:
    """Only ws:// and wss:// relays are ever contacted, whatever a hint says."""
    return url.startswith(("ws://", "wss://")) and len(url) <= 512 and " " not in url


async def fetch_once(
    url: str,
    filters: Sequence[Filter],
    *,
    within: float,
    max_frame_bytes: int,
    max_events: int,
    pinned: Pinned | None = None,
) -> FetchResult:
    """Ask ``url`` for ``filters`` once and return the events served before EOSE.

    ``pinned``: for a learned URL, the checked address to connect to (see
    :func:`~powrd.sync.connection.connect_relay`).

    Raises:
        FetchFailed: on connection errors, a timeout before EOSE, or a CLOSED reply.
    """
    session = RelaySession(max_frame_bytes=max_frame_bytes)
    result = FetchResult()
    deadline = time.monotonic() + within
    try:
        async with asyncio.timeout(within):
            ws = await connect_relay(url, open_timeout=within, pinned=pinned)
            try:
                await ws.send(session.open_subscription("fetch", filters))
                async for frame in receive_frames(ws):
                    for output in session.receive(frame):
                        if isinstance(output, Incoming):
                            result.events.append((output.event, output.size))
                            if len(result.events) >= max_events:
                                return result
                        elif isinstance(output, EndOfStored):
                            with contextlib.suppress(Exception):
                                await ws.send(session.close_subscription("fetch"))
                            return result
                        elif isinstance(output, SubscriptionClosed):
                            raise FetchFailed(f"subscription closed: {output.message[:200]}")
                raise FetchFailed("connection closed before EOSE")
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()
    except TimeoutError:
        left = max(0.0, deadline - time.monotonic())
        raise FetchFailed(f"no EOSE within {within:.0f} s" if left == 0 else "timed out") from None
    except (OSError, websockets.exceptions.WebSocketException) as error:
        raise FetchFailed(f"connect: {error}") from None
    except ValueError as error:  # websockets refusing a redirect away from a pinned host
        raise FetchFailed(f"connect: {error}") from None


async def publish_once(
    url: str, events_json: Sequence[str], *, within: float
) -> dict[str, tuple[bool, str]]:
    """Send events and wait for the relay's ``OK`` on each: event id → (accepted, message).

    Raises:
        FetchFailed: on connection errors or when an ``OK`` is missing after ``within`` seconds.
    """
    session = RelaySession()
    replies: dict[str, tuple[bool, str]] = {}
    try:
        async with asyncio.timeout(within):
            ws = await connect_relay(url)
            try:
                for raw in events_json:
                    event_id = loads(raw)["id"]
                    await ws.send(session.publish(event_id, raw, time.monotonic()))
                async for frame in receive_frames(ws):
                    for output in session.receive(frame):
                        if isinstance(output, PublishResult):
                            replies[output.event_id] = (output.accepted, output.message)
                    if len(replies) == len(events_json):
                        return replies
                raise FetchFailed("connection closed before every OK")
            finally:
                with contextlib.suppress(Exception):
                    await ws.close()
    except TimeoutError:
        raise FetchFailed(f"no OK for every event within {within:.0f} s") from None
    except (OSError, websockets.exceptions.WebSocketException) as error:
        raise FetchFailed(f"connect: {error}") from None

"""Opening a websocket to a relay, with the limits that keep a hostile one affordable.

Every relay connection powrd makes (sync workers, missing-exercise fetches, one-shot
publishes) goes through :func:`connect_relay`, so they all share these bounds:

- A message may inflate to at most :data:`HARD_FRAME_CAP` bytes. permessage-deflate
  lets a relay send a few kilobytes that inflate a thousandfold; websockets stops
  inflating at the cap and ends the connection (close code 1009). Frames between the
  configured ``max_frame_bytes`` and the cap are dropped and counted by the session
  instead, without losing the connection.
- At most :data:`RECEIVE_QUEUE_FRAMES` received messages wait in websockets' buffer
  before it stops reading the socket: the buffer never holds more than
  ``RECEIVE_QUEUE_FRAMES * HARD_FRAME_CAP`` bytes (64 MiB).
- The socket is read :data:`READ_CHUNK_BYTES` at a time instead of asyncio's 256 KiB,
  and :data:`READ_CHUNK_BYTES_COMPRESSED` when permessage-deflate is on. websockets
  parses and inflates every frame of a read in one callback, during which nothing
  else runs. A compressed read can inflate a thousandfold: 1 KiB reads complete at
  most about one message per callback (a bomb flood then held ``status`` at p50 13 ms,
  against 50 ms with 4 KiB reads).
- Frames arrive as UTF-8 bytes, not text: the session measures and parses bytes, so
  decoding to ``str`` first would only cost a copy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosedOK

from powrd.sync.address import Pinned

HARD_FRAME_CAP = 4 * 1024 * 1024
RECEIVE_QUEUE_FRAMES = 16
READ_CHUNK_BYTES = 16 * 1024
READ_CHUNK_BYTES_COMPRESSED = 1024


async def connect_relay(
    url: str,
    *,
    open_timeout: float | None = 10,
    compression: bool = False,
    pinned: Pinned | None = None,
) -> ClientConnection:
    """Open a websocket to ``url`` with powrd's limits (see the module docstring).

    Args:
        url: the relay.
        open_timeout: seconds for the TCP, TLS and websocket handshakes.
        compression: offer permessage-deflate. Off by default: inflating costs the
            event loop up to :data:`HARD_FRAME_CAP` bytes of work per few kilobytes a
            relay sends, and a relay that sends compressed frames unasked is refused
            with a protocol error instead.
        pinned: for a learned URL, the address :class:`~powrd.sync.address.AddressPolicy`
            checked: the TCP connection goes there (no second name lookup), the URL's
            host stays in the ``Host`` header and TLS server name, and no redirect is
            followed to another host.

    Raises:
        OSError, TimeoutError, websockets.exceptions.WebSocketException: as
            ``websockets.connect`` does.
    """
    pinning: dict[str, Any] = {}
    if pinned is not None:
        url = pinned.url
        pinning = {"host": pinned.address, "port": pinned.port}
        if pinned.scheme == "wss":
            pinning["server_hostname"] = pinned.host
    ws = await websockets.connect(
        url,
        max_size=HARD_FRAME_CAP,
        max_queue=RECEIVE_QUEUE_FRAMES,
        compression="deflate" if compression else None,
        open_timeout=open_timeout,
        close_timeout=2,
        proxy=None,
        **pinning,
    )
    compressed = bool(ws.protocol.extensions)
    # The attribute asyncio's selector transports pass to recv(); absent elsewhere,
    # where setting it is harmless.
    chunk = READ_CHUNK_BYTES_COMPRESSED if compressed else READ_CHUNK_BYTES
    ws.transport.max_size = chunk  # type: ignore[attr-defined]
    return ws


async def receive_frames(ws: ClientConnection) -> AsyncIterator[bytes]:
    """The relay's messages, undecoded, until it closes the connection cleanly.

    Raises:
        websockets.exceptions.ConnectionClosedError: the connection broke.
    """
    while True:
        try:
            yield await ws.recv(decode=False)
        except ConnectionClosedOK:
            return

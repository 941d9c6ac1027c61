"""Byte-level misbehaviour for :mod:`tests.support.faultrelay`.

These helpers write websocket frames straight to the TCP transport, underneath the
``websockets`` connection. That is only safe while nothing else is written on the same
connection: the fault relay turns keepalive pings and compression off for that reason.
"""

from __future__ import annotations

import asyncio
import socket
import struct

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from powrd.protocol.event import dumps


def raw_text_frame(text: str) -> bytes:
    """An unmasked, uncompressed, final text frame: what a server puts on the wire."""
    payload = text.encode()
    if len(payload) < 126:
        header = struct.pack("!BB", 0x81, len(payload))
    elif len(payload) < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, len(payload))
    else:
        header = struct.pack("!BBQ", 0x81, 127, len(payload))
    return header + payload


def oversized_event_frame(subscription: str, size: int) -> str:
    """An ``EVENT`` message of about ``size`` bytes (its event is not validly signed)."""
    event = {"id": "0" * 64, "pubkey": "0" * 64, "created_at": 0, "kind": 1301, "tags": []}
    event.update({"content": "x" * max(0, size - 400), "sig": "0" * 128})
    return dumps(["EVENT", subscription, event])


async def trickle(websocket: ServerConnection, text: str, chunk: int, interval: float) -> None:
    """Send ``text`` as one frame, ``chunk`` bytes at a time, ``interval`` s apart.

    Raises:
        ConnectionClosed: the peer went away mid-trickle.
    """
    raw = raw_text_frame(text)
    step = max(1, chunk)
    for offset in range(0, len(raw), step):
        if websocket.transport.is_closing():
            raise ConnectionClosed(None, None)
        websocket.transport.write(raw[offset : offset + step])
        await asyncio.sleep(interval)


async def reset_mid_frame(websocket: ServerConnection, text: str) -> None:
    """Send the first half of a frame of ``text``, then reset the TCP connection."""
    transport = websocket.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # Linger 0 makes the close a TCP RST instead of an orderly FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw = raw_text_frame(text)
    transport.write(raw[: max(2, len(raw) // 2)])
    await asyncio.sleep(0.05)  # give the half frame time to leave before the reset
    transport.abort()

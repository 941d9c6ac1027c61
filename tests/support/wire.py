"""Byte-level misbehaviour for :mod:`tests.support.faultrelay`.

These helpers write websocket frames straight to the TCP transport, underneath the
``websockets`` connection. That is only safe while nothing else is written on the same
connection: the fault relay turns keepalive pings off for that reason, and when it
compresses it compresses every message on its own (no shared deflate window).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import zlib

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from powrd.protocol.event import dumps

# FIN + text opcode; RSV1 on top marks a permessage-deflate compressed message (RFC 7692).
_FIN_TEXT = 0x81
_RSV1 = 0x40


def _frame(first_byte: int, payload: bytes) -> bytes:
    if len(payload) < 126:
        header = struct.pack("!BB", first_byte, len(payload))
    elif len(payload) < 1 << 16:
        header = struct.pack("!BBH", first_byte, 126, len(payload))
    else:
        header = struct.pack("!BBQ", first_byte, 127, len(payload))
    return header + payload


def raw_text_frame(text: str) -> bytes:
    """An unmasked, uncompressed, final text frame: what a server puts on the wire."""
    return _frame(_FIN_TEXT, text.encode())


def deflate_bomb_frame(subscription: str, size: int) -> bytes:
    """A compressed ``EVENT`` frame that inflates to about ``size`` bytes.

    A run of one repeated byte deflates about a thousandfold, so a frame of a few
    kilobytes on the wire asks the client to inflate megabytes. It is compressed on its
    own (no shared window), which the client can only decode if the server negotiated
    ``server_no_context_takeover``.
    """
    head, tail = oversized_event_frame(subscription, 0).encode().split(b'"content":""')
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [compressor.compress(head + b'"content":"')]
    chunk = b"x" * (1 << 20)
    for offset in range(0, max(0, size), len(chunk)):
        parts.append(compressor.compress(chunk[: size - offset]))
    parts.append(compressor.compress(b'"' + tail))
    # A sync flush ends in 00 00 ff ff, which permessage-deflate leaves off the wire.
    payload = b"".join(parts) + compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    return _frame(_FIN_TEXT | _RSV1, payload)


def oversized_event_frame(subscription: str, size: int) -> str:
    """An ``EVENT`` message of about ``size`` bytes (its event is not validly signed)."""
    event = {"id": "0" * 64, "pubkey": "0" * 64, "created_at": 0, "kind": 1301, "tags": []}
    event.update({"content": "x" * max(0, size - 400), "sig": "0" * 128})
    return dumps(["EVENT", subscription, event])


async def send_raw(websocket: ServerConnection, raw: bytes) -> None:
    """Write ready-made frame bytes, waiting while the client is not reading.

    Raises:
        ConnectionClosed: the connection is closing.
    """
    if websocket.transport.is_closing():
        raise ConnectionClosed(None, None)
    websocket.transport.write(raw)
    await websocket.drain()


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

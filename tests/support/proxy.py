"""A loopback TCP proxy that stays bound and can be switched off: relay downtime in tests.

A test that stops a relay and starts it again on the same port races the kernel (and
nostr-sdk, which releases a port some time after ``shutdown()``) for that port, and fails
with "Address already in use" under load. Put a :class:`SwitchableProxy` in front of
the relay instead and give powrd the proxy's URL: the proxy's port is bound once, for
the proxy's whole life, and "relay down" is a state of the proxy, not of the port.

- :meth:`SwitchableProxy.go_down` drops every open connection and resets each new one
  as soon as it is accepted (a client sees its websocket handshake fail).
- :meth:`SwitchableProxy.go_up` forwards again, optionally to another relay: a relay
  that "comes back empty" is a new relay (on a port of its own) behind the same URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

CHUNK_BYTES = 64 * 1024


class SwitchableProxy:
    """Forwards ``127.0.0.1:<port>`` to a target port while up; see the module docstring.

    Build with :func:`start_proxy`.

    Attributes:
        port: the proxy's own port (bound until :meth:`close`).
        url: ``ws://127.0.0.1:<port>``: what powrd is configured with.
        target_port: where connections go while up, or None (down).
        accepted: connections accepted so far, refused ones included.
    """

    def __init__(self, target_port: int | None) -> None:
        self.target_port = target_port
        self._last_target = target_port
        self.accepted = 0
        self.port = 0
        self.url = ""
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def up(self) -> bool:
        return self.target_port is not None

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        self.url = f"ws://127.0.0.1:{self.port}"

    def go_down(self) -> None:
        """Drop every open connection; refuse new ones until :meth:`go_up`."""
        self.target_port = None
        for writer in list(self._open):
            _reset(writer)
        self._open.clear()

    def go_up(self, target_port: int | None = None) -> None:
        """Forward new connections again, to ``target_port`` if given (else the last one)."""
        if target_port is not None:
            self._last_target = target_port
        self.target_port = target_port if target_port is not None else self._last_target

    async def close(self) -> None:
        """Drop every connection and release the port."""
        self.go_down()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SwitchableProxy:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        target = self.target_port
        if target is None:
            _reset(writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            _reset(writer)
            return
        self._open.update((writer, upstream_writer))
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for end in (writer, upstream_writer):
                self._open.discard(end)
                end.close()


async def start_proxy(target_port: int | None = None) -> SwitchableProxy:
    """Bind a proxy on 127.0.0.1 (a free port) forwarding to ``target_port`` (None: down)."""
    proxy = SwitchableProxy(target_port)
    await proxy._start()
    return proxy


@asynccontextmanager
async def proxy_in_front(target_port: int | None = None) -> AsyncIterator[SwitchableProxy]:
    """:func:`start_proxy`, closed on exit."""
    proxy = await start_proxy(target_port)
    try:
        yield proxy
    finally:
        await proxy.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    # Either side ending ends both: a half-open websocket is of no use to anyone.
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while chunk := await reader.read(CHUNK_BYTES):
            writer.write(chunk)
            await writer.drain()
    _reset(writer)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset, as a relay that died would, without TIME_WAIT on our side."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class ByteCountingProxy:
    """Forwards one loopback port to another, counting bytes relay -> client."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self.received = 0
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ByteCountingProxy]:
        server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self._target_port
        )
        for task in (
            asyncio.create_task(self._pipe(reader, upstream_writer, count=False)),
            asyncio.create_task(self._pipe(upstream_reader, writer, count=True)),
        ):
            self._tasks.add(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        try:
            while data := await reader.read(65536):
                if count:
                    self.received += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

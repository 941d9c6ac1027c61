"""Clients for the control socket: an asyncio one and a blocking one for the CLI.

Both speak the line-delimited JSON-RPC 2.0 described in :mod:`powrd.control.server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from powrd.control.rpc import request_line
from powrd.protocol.event import loads

DEFAULT_MAX_RESPONSE_BYTES: Final = 64 * 1024 * 1024


class ControlError(Exception):
    """Base class of the errors a control client raises."""


class DaemonNotRunning(ControlError):
    """Nothing listens on the control socket (absent, or connection refused)."""


class ConnectionLost(ControlError):
    """The daemon closed the connection or sent something that is not a response."""


class RpcError(ControlError):
    """The daemon answered with a JSON-RPC error.

    Attributes:
        code: The JSON-RPC error code (see :mod:`powrd.control.rpc`).
        message: The daemon's message.
        data: Optional details, or None.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message
        self.data = data


class ControlClient:
    """An asyncio client holding one connection, opened on first use.

    Calls on one client are serialized (the server answers a connection in order);
    use several clients for concurrent calls. Usable as an async context manager.

    Args:
        path: The daemon's control socket.
        max_response_bytes: Longest response line accepted.
    """

    def __init__(self, path: Path, max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> None:
        self.path = path
        self._max_response_bytes = max_response_bytes
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call ``method`` and return its result.

        Raises:
            DaemonNotRunning: The socket is absent or refuses connections.
            RpcError: The daemon answered with an error.
            ConnectionLost: The connection broke before the answer arrived.
        """
        async with self._lock:
            request_id = await self._send(method, params)
            try:
                response = await self._receive(request_id)
            except asyncio.CancelledError:
                # The answer would otherwise be read as the reply to the next call.
                self._drop()
                raise
            return _result(response)

    async def notify(self, method: str, params: Mapping[str, Any] | None = None) -> None:
        """Send a notification (no answer is expected or read)."""
        async with self._lock:
            await self._send(method, params, notification=True)

    async def stream(
        self, method: str, params: Mapping[str, Any] | None = None
    ) -> AsyncIterator[Any]:
        """Call a streaming method and yield its chunks.

        If the caller stops early the connection is closed, since the rest of the
        stream would otherwise be read as the answer to the next call. The client is
        busy until the generator finishes or is closed, so wrap early exits in
        ``contextlib.aclosing``.

        Raises:
            DaemonNotRunning: The socket is absent or refuses connections.
            RpcError: The daemon answered (or ended the stream) with an error.
            ConnectionLost: The connection broke, or the method does not stream.
        """
        async with self._lock:
            request_id = await self._send(method, params)
            finished = False
            try:
                while True:
                    result = _result(await self._receive(request_id))
                    if not isinstance(result, dict) or not isinstance(result.get("more"), bool):
                        raise ConnectionLost(f"{method} did not answer with a stream")
                    if not result["more"]:
                        finished = True
                        return
                    yield result.get("chunk")
            except RpcError:
                finished = True  # an error response ends the stream cleanly
                raise
            finally:
                if not finished:
                    await self._disconnect()

    async def close(self) -> None:
        """Close the connection (a later call reconnects)."""
        async with self._lock:
            await self._disconnect()

    async def _send(
        self, method: str, params: Mapping[str, Any] | None, *, notification: bool = False
    ) -> int:
        if self._writer is None:
            await self._connect()
        assert self._writer is not None
        request_id = next(self._ids)
        try:
            self._writer.write(request_line(None if notification else request_id, method, params))
            await self._writer.drain()
        except ConnectionError as exc:
            if notification:
                await self._disconnect()
                raise ConnectionLost(f"lost connection to {self.path}: {exc}") from exc
            # The daemon may have answered (a refusal) and hung up before reading the
            # request; _receive still reads that answer, or reports the loss.
        return request_id

    async def _receive(self, request_id: int) -> dict[str, Any]:
        assert self._reader is not None
        try:
            line = await self._reader.readuntil(b"\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError) as exc:
            await self._disconnect()
            raise ConnectionLost(f"no answer from {self.path}") from exc
        response = _parse_response(line)
        response_id = response.get("id")
        if response_id is None:
            # An answer not tied to the request (refused peer, oversized line): the
            # server may be closing this connection, so start afresh next time.
            await self._disconnect()
        elif response_id != request_id:
            await self._disconnect()
            raise ConnectionLost(f"answer for id {response_id!r}, expected {request_id}")
        return response

    async def _connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.open_unix_connection(
                os.fspath(self.path), limit=self._max_response_bytes
            )
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"powrd is not running (no daemon at {self.path})") from exc

    async def _disconnect(self) -> None:
        writer = self._drop()
        if writer is not None:
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _drop(self) -> asyncio.StreamWriter | None:
        """Forget the connection and start closing it, without waiting."""
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()
        return writer


def call_sync(
    path: Path,
    method: str,
    params: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> Any:
    """Blocking one-shot call for the command-line tool.

    Args:
        path: The daemon's control socket.
        method: Method name.
        params: Named params, or None for none.
        timeout: Seconds allowed for each socket operation.

    Raises:
        DaemonNotRunning: The socket is absent or refuses connections.
        RpcError: The daemon answered with an error.
        ConnectionLost: The connection broke before the answer arrived.
        TimeoutError: The daemon did not answer in time.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(os.fspath(path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise DaemonNotRunning(f"powrd is not running (no daemon at {path})") from exc
        try:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                # The daemon may have answered (a refusal) and hung up before reading
                # the request; the answer is still there to read.
                sock.sendall(request_line(1, method, params))
            line = _read_line(sock)
        except ConnectionError as exc:
            raise ConnectionLost(f"lost connection to {path}: {exc}") from exc
    return _result(_parse_response(line))


def _read_line(sock: socket.socket) -> bytes:
    parts: list[bytes] = []
    size = 0
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionLost("the daemon closed the connection without answering")
        newline = data.find(b"\n")
        if newline >= 0:
            parts.append(data[: newline + 1])
            return b"".join(parts)
        parts.append(data)
        size += len(data)
        if size > DEFAULT_MAX_RESPONSE_BYTES:
            raise ConnectionLost("response too large")


def _parse_response(line: bytes) -> dict[str, Any]:
    try:
        response = loads(line)
    except (ValueError, RecursionError) as exc:
        raise ConnectionLost("the daemon sent invalid JSON") from exc
    if not isinstance(response, dict) or ("result" not in response and "error" not in response):
        raise ConnectionLost("the daemon sent something that is not a JSON-RPC response")
    return response


def _result(response: dict[str, Any]) -> Any:
    error = response.get("error")
    if error is None:
        return response.get("result")
    if not isinstance(error, dict) or not isinstance(error.get("code"), int):
        raise ConnectionLost("the daemon sent a malformed error")
    raise RpcError(error["code"], str(error.get("message", "")), error.get("data"))

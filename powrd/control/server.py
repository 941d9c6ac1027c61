"""The control socket server: JSON-RPC 2.0 over a Unix stream socket.

Wire format: every message, in both directions, is one JSON object on one line
terminated by ``\\n`` (UTF-8). Requests on one connection are answered in order; a
client that wants to run things concurrently opens more connections. The subset of
JSON-RPC 2.0 that is understood (named params only, no batches) is described in
:mod:`powrd.control.rpc`.

Streaming results: a method whose handler returns :class:`~powrd.control.rpc.Stream`
answers one request with several responses, all carrying the request's ``id``::

    {"jsonrpc": "2.0", "id": 7, "result": {"chunk": <value>, "more": true}}
    {"jsonrpc": "2.0", "id": 7, "result": {"chunk": <value>, "more": true}}
    {"jsonrpc": "2.0", "id": 7, "result": {"more": false}}

A stream with no chunks is just the final ``{"more": false}``. If producing a chunk
fails, an ordinary error response with that ``id`` ends the stream instead of the final
result; the chunks already sent remain valid. The next request on the connection is
read only after the stream has ended.

Access control: the socket file is created with mode 0600, and each peer's
credentials (``SO_PEERCRED``) must show the daemon's uid or root; any other peer gets
one -32003 error (``id`` null) and is disconnected. A connection beyond
``max_clients`` gets one -32004 error and is disconnected.

A request line longer than ``max_request_bytes`` is answered with -32600 "request too
large" (``id`` null, since the id was not read), the rest of that line is skipped and
the connection stays open for the next request.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
import struct
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, Final

import structlog

from powrd.control import MAX_SOCKET_PATH_BYTES
from powrd.control.framing import TOO_LONG, LineSplitter
from powrd.control.rpc import (
    END_OF_STREAM,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PERMISSION_DENIED,
    SERVER_BUSY,
    ErrorReply,
    Handler,
    Request,
    Stream,
    chunk_result,
    error_line,
    failure_reply,
    invoke,
    parse_request,
    result_line,
)

log = structlog.get_logger(__name__)

DEFAULT_MAX_REQUEST_BYTES: Final = 1024 * 1024
DEFAULT_MAX_CLIENTS: Final = 64
READ_CHUNK_BYTES: Final = 64 * 1024
# How long start() waits for an existing socket to accept before calling it live.
PROBE_TIMEOUT_SECONDS: Final = 2.0
_UCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid


class AlreadyRunning(RuntimeError):
    """Another process is serving the control socket path."""


class ControlServer:
    """Serves a method table on a Unix socket.

    Args:
        path: Filesystem path of the socket; its directory must exist.
        methods: Method name to handler. Handlers receive the params object.
        max_request_bytes: Longest accepted request line, newline excluded.
        max_clients: Most connections served at once.
    """

    def __init__(
        self,
        path: Path,
        methods: Mapping[str, Handler],
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_clients: int = DEFAULT_MAX_CLIENTS,
    ) -> None:
        if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            raise ValueError(f"control socket path longer than {MAX_SOCKET_PATH_BYTES} bytes")
        if max_request_bytes <= 0 or max_clients <= 0:
            raise ValueError("max_request_bytes and max_clients must be positive")
        self.path = path
        self._methods = methods
        self._max_request_bytes = max_request_bytes
        self._max_clients = max_clients
        self._server: asyncio.Server | None = None
        self._bound_inode: tuple[int, int] | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    @property
    def client_count(self) -> int:
        """Connections currently being served."""
        return len(self._clients)

    async def start(self) -> None:
        """Bind the socket and start accepting connections.

        Raises:
            AlreadyRunning: A live process answers on ``path``.
            FileExistsError: ``path`` exists and is not a socket.
            OSError: The socket could not be created or bound.
        """
        if self._server is not None:
            raise RuntimeError("control server already started")
        await _remove_stale_socket(self.path)
        sock = _bind_private(self.path)
        try:
            self._server = await asyncio.start_unix_server(self._serve_client, sock=sock)
        except BaseException:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        # The listening socket keeps this inode alive, so no successor can get the same
        # one while we run; close() relies on that to tell our file from theirs.
        bound = os.stat(self.path)
        self._bound_inode = (bound.st_dev, bound.st_ino)
        log.info("control socket listening", path=str(self.path))

    async def close(self) -> None:
        """Stop accepting, cancel every client (and its running handler), remove the socket.

        The socket file is removed only if it is still the one this server bound, so
        closing never deletes a successor's socket.
        """
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        clients = list(self._clients)
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            current = os.stat(self.path)
            if (current.st_dev, current.st_ino) == self._bound_inode:
                os.unlink(self.path)
        log.info("control socket closed", path=str(self.path))

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        try:
            refusal = self._refusal(writer)
            if refusal is not None:
                await _send(writer, refusal.to_line())
                return
            self._clients.add(task)
            await self._converse(reader, writer)
        except ConnectionError:
            pass  # the peer went away; nothing to answer
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    def _refusal(self, writer: asyncio.StreamWriter) -> ErrorReply | None:
        if len(self._clients) >= self._max_clients:
            log.warning("control client refused", reason="too many clients")
            return ErrorReply(SERVER_BUSY, "too many clients")
        pid, uid = _peer_credentials(writer.get_extra_info("socket"))
        if uid not in (os.geteuid(), 0):
            log.warning("control client refused", reason="uid not allowed", pid=pid, uid=uid)
            return ErrorReply(PERMISSION_DENIED, "permission denied")
        return None

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        splitter = LineSplitter(self._max_request_bytes)
        while data := await reader.read(READ_CHUNK_BYTES):
            for line in splitter.feed(data):
                if line is TOO_LONG:
                    await _send(writer, error_line(None, INVALID_REQUEST, "request too large"))
                else:
                    await self._answer(line, writer)
        # A last request without a trailing newline is still a request.
        await self._answer(splitter.pending(), writer)

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        if not line.strip():
            return
        request = parse_request(line)
        if isinstance(request, ErrorReply):
            await _send(writer, request.to_line())
            return
        outcome = await invoke(request, self._methods)
        if request.is_notification:
            if isinstance(outcome, Stream):
                await _close_iterator(outcome.iterator)
            elif isinstance(outcome, ErrorReply):
                log.info("control notification failed", method=request.method, code=outcome.code)
            return
        if isinstance(outcome, ErrorReply):
            await _send(writer, outcome.to_line())
        elif isinstance(outcome, Stream):
            await self._stream(request, outcome.iterator, writer)
        else:
            response = _encode_result(request, outcome)
            await _send(writer, _internal_error(request) if response is None else response)

    async def _stream(
        self, request: Request, iterator: AsyncIterator[Any], writer: asyncio.StreamWriter
    ) -> None:
        try:
            while True:
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    await _send(writer, failure_reply(request, exc).to_line())
                    return
                line = _encode_result(request, chunk_result(chunk))
                if line is None:
                    await _send(writer, _internal_error(request))
                    return
                await _send(writer, line)
            await _send(writer, result_line(request.id, END_OF_STREAM))
        finally:
            await _close_iterator(iterator)


def _encode_result(request: Request, result: Any) -> bytes | None:
    """The response line for ``result``, or None (logged) if it is not JSON."""
    try:
        return result_line(request.id, result)
    except (TypeError, ValueError) as exc:
        log.error("control result not JSON", method=request.method, exc_info=exc)
        return None


def _internal_error(request: Request) -> bytes:
    return error_line(request.id, INTERNAL_ERROR, "internal error")


async def _send(writer: asyncio.StreamWriter, line: bytes) -> None:
    writer.write(line)
    # drain() makes a client that does not read slow down only its own task.
    await writer.drain()


async def _close_iterator(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    try:
        await aclose()
    except Exception as exc:
        log.error("control stream close failed", exc_info=exc)


def _peer_credentials(sock: Any) -> tuple[int, int]:
    """(pid, uid) of the process at the other end of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, _gid = _UCRED.unpack(raw)
    return pid, uid


async def _remove_stale_socket(path: Path) -> None:
    """Delete a socket file nobody listens on; refuse if someone does."""
    try:
        existing = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(existing.st_mode):
        # strerror carries the whole explanation: callers print it after the path.
        raise FileExistsError(errno.EEXIST, _not_a_socket(path, existing.st_mode), str(path))
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(os.fspath(path)), PROBE_TIMEOUT_SECONDS
        )
    except ConnectionRefusedError:
        os.unlink(path)
        log.info("stale control socket removed", path=str(path))
        return
    except TimeoutError:
        raise AlreadyRunning(f"{path} is held by a process that does not answer") from None
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    raise AlreadyRunning(f"another powrd is already serving {path}")


def _not_a_socket(path: Path, mode: int) -> str:
    """What is at the socket path instead of a socket, and what to do about it."""
    if stat.S_ISLNK(mode):
        try:
            what = f"a symbolic link to {os.readlink(path)}"
        except OSError:
            what = "a symbolic link"
    elif stat.S_ISDIR(mode):
        what = "a directory"
    elif stat.S_ISREG(mode):
        what = "a regular file"
    elif stat.S_ISFIFO(mode):
        what = "a named pipe"
    else:
        what = "a device or other special file"
    return (
        f"the path holds {what}, not a socket, and powrd never replaces anything but a "
        "stale socket; remove it if nothing needs it, or set [control] socket to another path"
    )


def _bind_private(path: Path) -> socket.socket:
    """A Unix stream socket bound at ``path`` whose file is created with mode 0600."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # The umask is applied by bind() itself, so there is no moment at which the
        # socket file exists with wider permissions (a later chmod would leave one).
        # umask is process-wide, hence restored at once.
        previous = os.umask(0o177)
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(previous)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AlreadyRunning(f"another process bound {path} concurrently") from exc
        raise
    return sock

"""JSON-RPC 2.0 messages for the control socket, free of I/O.

This module turns one received line into a :class:`Request` or an error reply, runs a
request against a method table, and builds the response objects the server writes.
Nothing here touches a socket, so every rule of the protocol is testable directly.

Supported subset of JSON-RPC 2.0:

* ``params`` must be an object (named parameters) or absent (treated as ``{}``).
  Positional ``params`` arrays are answered with -32602; any other type with -32600.
* ``id`` may be a string, an integer or null. A request without an ``id`` member is a
  notification and is never answered, whatever happens while running it.
* Batch requests (a JSON array) are not supported and are answered with a single
  -32600 error whose ``id`` is null.

Streaming results are described in :mod:`powrd.control.server`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import orjson
import structlog

from powrd.protocol.event import loads

log = structlog.get_logger(__name__)

JSONRPC_VERSION: Final = "2.0"

PARSE_ERROR: Final = -32700
INVALID_REQUEST: Final = -32600
METHOD_NOT_FOUND: Final = -32601
INVALID_PARAMS: Final = -32602
INTERNAL_ERROR: Final = -32603

# Application errors (JSON-RPC reserves -32000..-32099 for the server's own use).
NOT_READY: Final = -32000
"""The daemon is still starting (store or relays not ready); retry later."""
NOT_FOUND: Final = -32001
"""The object the request names (event, exercise, template, media) does not exist."""
PUBLISH_FAILED: Final = -32002
"""An event could not be accepted for publishing (invalid, or not durably queued)."""
PERMISSION_DENIED: Final = -32003
"""The peer's uid is neither the daemon's nor root's."""
SERVER_BUSY: Final = -32004
"""Too many clients are connected; the connection is closed."""

APPLICATION_ERROR_MIN: Final = -32099
APPLICATION_ERROR_MAX: Final = -32000

RequestId = str | int | None


class InvalidParams(Exception):
    """Raised by a handler whose params are missing, mistyped or out of range (-32602)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MethodError(Exception):
    """Raised by a handler to report an application failure to the caller.

    Args:
        code: One of the application codes, between -32099 and -32000.
        message: A short sentence for a human; never a traceback or a secret.
        data: Optional JSON-serializable details.
    """

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        if not APPLICATION_ERROR_MIN <= code <= APPLICATION_ERROR_MAX:
            raise ValueError(f"application error code {code} outside -32099..-32000")
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


@dataclass(frozen=True, slots=True)
class Stream:
    """A handler result that is sent as a sequence of chunks (see the server docs)."""

    iterator: AsyncIterator[Any]


Handler = Callable[[dict[str, Any]], Awaitable[Any]]
"""A method implementation: takes the params object, returns a JSON value or a Stream."""


@dataclass(frozen=True, slots=True)
class Request:
    """A well-formed request. ``is_notification`` is true when ``id`` was absent."""

    method: str
    params: dict[str, Any]
    id: RequestId = None
    is_notification: bool = False


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error to send back for a line that is not a valid request."""

    code: int
    message: str
    id: RequestId = None
    data: Any = field(default=None)

    def to_line(self) -> bytes:
        """The serialized response, newline included."""
        return error_line(self.id, self.code, self.message, self.data)


def parse_request(line: bytes) -> Request | ErrorReply:
    """Interpret one received line.

    Returns an :class:`ErrorReply` for lines that must be answered with an error before
    any handler runs (parse error, invalid request, positional params). Its ``id`` is
    the request's when it could be read, else null, as the specification requires.
    """
    try:
        message = loads(line)
    except (ValueError, RecursionError):
        return ErrorReply(PARSE_ERROR, "parse error: invalid JSON")
    if isinstance(message, list):
        return ErrorReply(INVALID_REQUEST, "invalid request: batch requests are not supported")
    if not isinstance(message, dict):
        return ErrorReply(INVALID_REQUEST, "invalid request: expected a JSON object")
    has_id = "id" in message
    request_id = message.get("id")
    if not _is_valid_id(request_id):
        return ErrorReply(INVALID_REQUEST, "invalid request: id must be a string, integer or null")
    if message.get("jsonrpc") != JSONRPC_VERSION:
        return ErrorReply(INVALID_REQUEST, 'invalid request: "jsonrpc" must be "2.0"', request_id)
    method = message.get("method")
    if not isinstance(method, str):
        return ErrorReply(INVALID_REQUEST, 'invalid request: "method" must be a string', request_id)
    params = message.get("params", {})
    if isinstance(params, list):
        return ErrorReply(
            INVALID_PARAMS, "invalid params: positional params are not supported", request_id
        )
    if not isinstance(params, dict):
        return ErrorReply(
            INVALID_REQUEST, 'invalid request: "params" must be an object', request_id
        )
    return Request(method, params, request_id, is_notification=not has_id)


def _is_valid_id(value: object) -> bool:
    # bool is an int subclass, but true/false are not ids.
    return value is None or isinstance(value, str) or (
        isinstance(value, int) and not isinstance(value, bool)
    )


def result_line(request_id: RequestId, result: Any) -> bytes:
    """Serialize a success response, newline included.

    Raises:
        TypeError: ``result`` is not JSON-serializable.
        ValueError: ``result`` is not JSON-serializable.
    """
    return _line({"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result})


def error_line(request_id: RequestId, code: int, message: str, data: Any = None) -> bytes:
    """Serialize an error response, newline included (``data`` omitted when None)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    try:
        return _line({"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error})
    except (TypeError, ValueError):
        # A handler put something unserializable in data; the code and message still go.
        del error["data"]
        return _line({"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": error})


def request_line(request_id: RequestId, method: str, params: Mapping[str, Any] | None) -> bytes:
    """Serialize a request (a notification when ``request_id`` is None), newline included."""
    message: dict[str, Any] = {"jsonrpc": JSONRPC_VERSION, "method": method}
    if params:
        message["params"] = dict(params)
    if request_id is not None:
        message["id"] = request_id
    return _line(message)


def _line(message: dict[str, Any]) -> bytes:
    try:
        return orjson.dumps(message) + b"\n"
    except orjson.JSONEncodeError:
        # orjson refuses lone surrogates and integers beyond 64 bits; json escapes the
        # former as \uXXXX escapes (valid JSON, valid UTF-8) and handles the latter.
        return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def chunk_result(chunk: Any) -> dict[str, Any]:
    """The ``result`` of one streamed chunk."""
    return {"chunk": chunk, "more": True}


END_OF_STREAM: Final[Mapping[str, Any]] = {"more": False}
"""The ``result`` of the response that ends a stream."""


async def invoke(request: Request, methods: Mapping[str, Handler]) -> Any:
    """Run ``request`` against ``methods``.

    Returns:
        The handler's result (a JSON value or a :class:`Stream`), or an
        :class:`ErrorReply` for an unknown method or a handler failure. Unexpected
        exceptions are logged with their traceback and become a bare -32603, so
        nothing internal reaches the peer.
    """
    handler = methods.get(request.method)
    if handler is None:
        return ErrorReply(METHOD_NOT_FOUND, f"method not found: {request.method}", request.id)
    try:
        return await handler(request.params)
    except Exception as exc:
        return failure_reply(request, exc)


def failure_reply(request: Request, exc: Exception) -> ErrorReply:
    """The error reply for an exception raised while running ``request``.

    :class:`InvalidParams` and :class:`MethodError` carry their message to the peer.
    Anything else is a bug: it is logged with its traceback and answered with a bare
    -32603 so that nothing internal leaks.
    """
    if isinstance(exc, InvalidParams):
        return ErrorReply(INVALID_PARAMS, f"invalid params: {exc.message}", request.id)
    if isinstance(exc, MethodError):
        return ErrorReply(exc.code, exc.message, request.id, exc.data)
    log.error("control handler failed", method=request.method, exc_info=exc)
    return ErrorReply(INTERNAL_ERROR, "internal error", request.id)

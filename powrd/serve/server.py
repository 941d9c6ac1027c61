"""The local relay's listening socket, its clients, and the live feed they share.

:class:`LocalRelayServer` binds ``[local_relay].listen``; when that fails (the port is
taken) the daemon runs on, ``status.health`` says so and the bind is retried every
``retry_seconds``. Plain HTTP ``GET`` on the same port answers the NIP-11 document
(``Accept: application/nostr+json``) or a short text page.

The live feed follows the store, not the callers of the pipeline: every commit wakes it,
and it reads the events stored after the last one it saw (by sequence number) and
hands each to every connection. So events from relays, ``powrd import``, ``publish`` and
other apps all reach subscribers the same way, exactly once, and the feed never blocks
ingest (it only reads).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from powrd import __version__
from powrd.config import LocalRelayConfig
from powrd.protocol.client_session import ClientSession, SessionLimits
from powrd.protocol.event import dumps, loads, parse_event
from powrd.protocol.negentropy_responder import NegentropyResponder
from powrd.protocol.reasons import Rejected
from powrd.serve import nip11
from powrd.serve.connection import Backend, ClientConnection
from powrd.serve.negentropy import ConnectionNegentropy, ReadItems, RecordBudget

log = structlog.get_logger("powrd.serve")

BIND_RETRY_SECONDS = 30.0
FEED_CHUNK = 1000
# Bytes of frames queued for one client before it counts as too slow for live events.
DEFAULT_QUEUE_BYTES = 4 * 1024 * 1024
_COUNTERS = ("events_sent", "events_accepted", "events_refused", "notices")
# The largest NEG-MSG payload powrd sends (bytes before hex): answering stops there, so
# one client message costs bounded CPU however many ranges it lists. nostr-sdk's
# clients use the same limit.
NEGENTROPY_FRAME_LIMIT = 60_000
# Reconciliations one connection may have open at once; each holds its sealed items
# (about 250 bytes a record). All connections together hold at most
# NEGENTROPY_BUDGET_FACTOR * max_negentropy_records records.
NEGENTROPY_SESSIONS = 2
NEGENTROPY_BUDGET_FACTOR = 2


class LocalRelayServer:
    """The NIP-01 endpoint for apps on this machine.

    Args:
        config: the ``[local_relay]`` section.
        backend: store reads and the pipeline.
        committed_after: (seq, limit) -> [(seq, raw)] of current events stored later; blocking.
        latest_seq: the highest stored seq; blocking.
        max_event_bytes: from ``[limits]``, for the NIP-11 document.
        retry_seconds: between bind attempts while the address is unavailable
            (default :data:`BIND_RETRY_SECONDS`).
        queue_bytes: per-client bound of queued frames (see :class:`Outgoing`).
        ping_interval: websocket keep-alive; a client that does not answer is dropped.
    """

    def __init__(
        self,
        config: LocalRelayConfig,
        backend: Backend,
        committed_after: Callable[[int, int], list[tuple[int, str]]],
        latest_seq: Callable[[], int],
        *,
        max_event_bytes: int,
        retry_seconds: float | None = None,
        queue_bytes: int = DEFAULT_QUEUE_BYTES,
        ping_interval: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.backend = backend
        self.committed_after = committed_after
        self.latest_seq = latest_seq
        # Read at construction, so a test can shorten the module's interval.
        self.retry_seconds = BIND_RETRY_SECONDS if retry_seconds is None else retry_seconds
        self.queue_bytes = queue_bytes
        self.ping_interval = ping_interval
        self.clock = clock
        self.limits = SessionLimits(
            max_subscriptions=config.max_subscriptions_per_connection,
            max_filters=config.max_filters_per_req,
            max_limit=config.max_limit,
            default_limit=config.default_limit,
            max_message_bytes=config.max_message_bytes,
            events_per_minute=config.events_per_minute,
        )
        self.document = dumps(
            nip11.information_document(
                config, max_event_bytes, negentropy=backend.negentropy_items is not None
            )
        ).encode()
        self.negentropy_budget = RecordBudget(
            NEGENTROPY_BUDGET_FACTOR * config.max_negentropy_records
        )
        self.bind_error: str | None = None
        self.port: int | None = None
        self._server: Server | None = None
        self._clients: set[ClientConnection] = set()
        self._finished = dict.fromkeys(_COUNTERS, 0)
        self._cut_off = 0
        self._connections_total = 0
        self._wake = asyncio.Event()
        self._mark = 0
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Start the live feed and bind; a failed bind is retried in the background."""
        self._mark = await asyncio.to_thread(self.latest_seq)
        self._tasks.append(asyncio.create_task(self._feed(), name="local relay feed"))
        if not await self._bind():
            self._tasks.append(asyncio.create_task(self._retry_bind(), name="local relay bind"))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _bind(self) -> bool:
        host, port = self.config.address
        try:
            self._server = await serve(
                self._handle,
                host,
                port,
                process_request=self._http,
                compression=None,  # loopback: deflate would only cost CPU and invite bombs
                max_size=2 * self.config.max_message_bytes,
                max_queue=16,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_interval,
                close_timeout=2.0,
                server_header=f"powrd/{__version__}",
            )
        except OSError as error:
            reason = error.strerror or str(error)
            if self.bind_error != reason:
                log.warning("local relay cannot listen", listen=self.config.listen, reason=reason)
            self.bind_error = reason
            return False
        self.bind_error = None
        self.port = int(next(iter(self._server.sockets)).getsockname()[1])
        log.info("local relay listening", url=self.url)
        return True

    async def _retry_bind(self) -> None:
        while True:
            await asyncio.sleep(self.retry_seconds)
            if await self._bind():
                return

    @property
    def url(self) -> str:
        host, port = self.config.address
        shown = f"[{host}]" if ":" in host else host
        return f"ws://{shown}:{self.port if self.port is not None else port}"

    # -- HTTP and websocket ------------------------------------------------------------

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() != "websocket":
            if "application/nostr+json" in request.headers.get("Accept", ""):
                headers = Headers(
                    [
                        ("Content-Type", nip11.NOSTR_JSON),
                        ("Access-Control-Allow-Origin", "*"),
                        ("Access-Control-Allow-Headers", "*"),
                        ("Access-Control-Allow-Methods", "GET"),
                    ]
                )
                return Response(200, "OK", headers, self.document)
            return connection.respond(200, nip11.text_page(self.url))
        # The server's own count includes handshakes finished whose handler has not run yet.
        open_now = len(self._server.connections) if self._server is not None else 0
        if max(open_now, len(self._clients)) >= self.config.max_connections:
            return connection.respond(
                503, f"powrd: {self.config.max_connections} apps already connected\n"
            )
        return None

    async def _handle(self, websocket: ServerConnection) -> None:
        client = ClientConnection(
            websocket,
            ClientSession(
                self.limits, negentropy=self.backend.negentropy_items is not None, now=self.clock()
            ),
            self.backend,
            max_queue_bytes=self.queue_bytes,
            clock=self.clock,
            start_negentropy=self._start_negentropy,
        )
        self._clients.add(client)
        self._connections_total += 1
        try:
            await client.run()
        finally:
            self._clients.discard(client)
            for name in _COUNTERS:
                self._finished[name] += client.session.counters[name]  # type: ignore[literal-required]
            self._cut_off += client.cut_off

    def _start_negentropy(self, read_items: ReadItems) -> ConnectionNegentropy:
        responder = NegentropyResponder(
            max_records=self.config.max_negentropy_records,
            max_sessions=NEGENTROPY_SESSIONS,
            frame_size_limit=NEGENTROPY_FRAME_LIMIT,
        )
        return ConnectionNegentropy(responder, read_items, self.negentropy_budget)

    # -- live feed -----------------------------------------------------------------------

    def on_commit(self, batch: object) -> None:
        """A commit listener: wake the feed (cheap; the reading happens in the feed task)."""
        self._wake.set()

    async def _feed(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._catch_up()
            except Exception as error:  # a failed read is retried at the next commit
                log.error("local relay live feed read failed", reason=str(error))

    async def _catch_up(self) -> None:
        if not self._clients:
            # Nobody to deliver to: skip the rows. Re-checked after the read, because an
            # app that connected meanwhile may have read the store before the newest commit.
            latest = await asyncio.to_thread(self.latest_seq)
            if not self._clients:
                self._mark = max(self._mark, latest)
                return
        while True:
            rows = await asyncio.to_thread(self.committed_after, self._mark, FEED_CHUNK)
            if not rows:
                return
            self._mark = rows[-1][0]
            if self._clients:
                self._dispatch(rows)
            if len(rows) < FEED_CHUNK:
                return

    def _dispatch(self, rows: list[tuple[int, str]]) -> None:
        clients = list(self._clients)
        for seq, raw in rows:
            try:
                event = parse_event(loads(raw))
            except (Rejected, ValueError):
                continue  # stored events are valid; a damaged row is skipped, not fatal
            for client in clients:
                client.deliver(event, raw, seq)

    # -- inspection ----------------------------------------------------------------------

    def health(self) -> list[str]:
        if self.bind_error is None:
            return []
        return [
            f"local relay cannot listen on {self.config.listen}: {self.bind_error}; "
            f"retrying every {self.retry_seconds:g} s"
        ]

    def status(self) -> dict[str, Any]:
        totals = dict(self._finished)
        for client in self._clients:
            for name in _COUNTERS:
                totals[name] += client.session.counters[name]  # type: ignore[literal-required]
        return {
            "enabled": True,
            "url": self.url,
            "listening": self._server is not None,
            "error": self.bind_error,
            "connections": len(self._clients),
            "connections_total": self._connections_total,
            "subscriptions": sum(c.session.subscription_count for c in self._clients),
            "cut_off": self._cut_off + sum(c.cut_off for c in self._clients),
            **totals,
        }

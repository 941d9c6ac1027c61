"""One relay connection: connect, backfill every scope, stream live, reconnect.

Two tasks per connection: a reader that turns frames into session outputs on a
bounded queue (back-pressure reaches the relay through TCP), and a consumer that
batches events into the pipeline, drives paging and answers CLOSED/AUTH. A relay that
floods or stalls only ever fills its own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import nostr_sdk
import structlog
import websockets
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from websockets.asyncio.client import ClientConnection

from powrd.protocol import messages
from powrd.protocol.paging import Backfill
from powrd.protocol.session import (
    AuthRequested,
    Dropped,
    EndOfStored,
    Incoming,
    Notice,
    PublishResult,
    RelaySession,
    SubscriptionClosed,
)
from powrd.protocol.signing import auth_event
from powrd.store import checkpoints
from powrd.sync import backoff
from powrd.sync.plan import Scope
from powrd.sync.pipeline import Pipeline
from powrd.sync.publisher import RelayDelivery
from powrd.sync.status import RelayState, RelayStatus

log = structlog.get_logger("powrd.sync.relay")

# websockets closes a connection whose message exceeds this; smaller oversized frames
# are dropped and counted by the session instead (max_frame_bytes).
HARD_FRAME_CAP = 16 * 1024 * 1024
STABLE_SESSION_SECONDS = 30.0
BATCH_MAX = 500


@dataclass(frozen=True, slots=True)
class SyncSettings:
    overlap_seconds: int = 600
    page_limit: int = 500
    max_frame_bytes: int = 1024 * 1024
    reconnect_min_seconds: float = 1.0
    reconnect_max_seconds: float = 300.0
    min_reconnect_interval_seconds: float = 2.0
    eose_timeout_seconds: float = 30.0
    queue_max_events: int = 10000


class ConnectionLost(Exception):
    """The connection ended; the worker backs off and reconnects."""


class StableSessionEnded(Exception):
    """A connection that had been healthy ended: reconnect with a fresh backoff."""


@dataclass(slots=True)
class _ScopeSync:
    scope: Scope
    backfill: Backfill
    live_sub: str | None = None
    page_sub: str | None = None  # the subscription of the page being fetched
    newest_committed: int | None = None
    complete: bool = False


@dataclass(slots=True)
class _Connection:
    ws: ClientConnection
    session: RelaySession
    scopes: dict[str, _ScopeSync] = field(default_factory=dict)  # sub id → scope sync
    sub_filters: dict[str, list[Any]] = field(default_factory=dict)
    page_deadline: dict[str, float] = field(default_factory=dict)
    waiting_for_auth: set[str] = field(default_factory=set)
    challenge: str | None = None
    auth_event_id: str | None = None
    next_sub: int = 0

    def new_sub_id(self, prefix: str) -> str:
        self.next_sub += 1
        return f"{prefix}{self.next_sub}"


class RelayWorker:
    """Keeps one relay in sync; run :meth:`run` as a task, cancel it to stop.

    Args:
        url: the relay's ws:// or wss:// URL.
        scopes: the subscriptions to backfill and stream (empty for write-only relays).
        pipeline: where events go.
        settings: timeouts, limits and backoff.
        keys: the identity used for NIP-42 AUTH, if any.
    """

    def __init__(
        self,
        url: str,
        scopes: list[Scope],
        pipeline: Pipeline,
        settings: SyncSettings,
        *,
        keys: nostr_sdk.Keys | None = None,
        read: bool = True,
        write: bool = True,
        delivery: RelayDelivery | None = None,
        on_backfill_complete: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.on_backfill_complete = on_backfill_complete
        self.url = url
        self.delivery = delivery if write else None
        self.scopes = scopes if read else []
        self.pipeline = pipeline
        self.settings = settings
        self.keys = keys
        self.clock = clock
        self.status = RelayStatus(url, read=read, write=write)
        self._resync = asyncio.Event()
        self._connection: _Connection | None = None
        self._last_attempt = 0.0

    # -- public -----------------------------------------------------------------

    def request_resync(self) -> None:
        """Re-run the backfill of every scope on the current connection (``sync.now``)."""
        self._resync.set()

    async def run(self) -> None:
        while True:
            try:
                async for attempt in AsyncRetrying(
                    wait=backoff.strategy(
                        self.settings.reconnect_min_seconds, self.settings.reconnect_max_seconds
                    ),
                    retry=retry_if_exception_type((ConnectionLost, OSError, TimeoutError)),
                    before_sleep=self._on_backoff,
                    reraise=True,
                ):
                    with attempt:
                        await self._connect_once()
            except StableSessionEnded:
                continue

    # -- connection -------------------------------------------------------------

    def _on_backoff(self, state: RetryCallState) -> None:
        delay = state.next_action.sleep if state.next_action else 0.0
        self.status.state = RelayState.BACKOFF
        self.status.backoff_seconds = delay
        self.status.next_retry_at = self.clock() + delay
        log.info("relay backoff", relay=self.url, delay_s=round(delay, 2), error=self.status.last_error)

    async def _connect_once(self) -> None:
        # Never two connection attempts closer than the minimum interval, whatever the backoff.
        wait = self._last_attempt + self.settings.min_reconnect_interval_seconds - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_attempt = time.monotonic()
        self.status.state = RelayState.CONNECTING
        self.status.connect_attempts += 1
        try:
            ws = await websockets.connect(
                self.url, max_size=HARD_FRAME_CAP, open_timeout=10, close_timeout=2,
                max_queue=64, proxy=None,
            )
        except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
            self.status.last_error = f"connect: {error}"
            raise ConnectionLost(str(error)) from None
        started = time.monotonic()
        self.status.state = RelayState.CONNECTED
        self.status.connects += 1
        self.status.last_connected_at = self.clock()
        self.status.next_retry_at = None
        log.info("relay connected", relay=self.url)
        try:
            await self._serve(ws)
        except websockets.exceptions.ConnectionClosed as closed:
            self.status.last_error = f"connection closed: {closed}"
        except ConnectionLost as lost:
            self.status.last_error = str(lost)
        finally:
            self._connection = None
            with contextlib.suppress(Exception):
                await ws.close()
        log.info("relay disconnected", relay=self.url, error=self.status.last_error)
        if time.monotonic() - started >= STABLE_SESSION_SECONDS:
            raise StableSessionEnded
        raise ConnectionLost(self.status.last_error or "connection ended")

    async def _serve(self, ws: ClientConnection) -> None:
        session = RelaySession(max_frame_bytes=self.settings.max_frame_bytes)
        conn = _Connection(ws, session)
        self._connection = conn
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.settings.queue_max_events)
        tasks = [asyncio.create_task(self._read(ws, session, queue), name=f"read {self.url}")]
        if self.delivery is not None:
            tasks.append(asyncio.create_task(self.delivery.pump(ws.send, session), name=f"publish {self.url}"))
        try:
            await self._start_backfill(conn)
            await self._consume(conn, queue, tasks)
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.delivery is not None:
                await self.delivery.connection_lost()

    async def _read(self, ws: ClientConnection, session: RelaySession, queue: asyncio.Queue[Any]) -> None:
        try:
            async for frame in ws:
                for output in session.receive(frame):
                    await queue.put(output)
        except websockets.exceptions.ConnectionClosed as closed:
            await queue.put(ConnectionLost(f"connection closed: {closed}"))
            return
        await queue.put(ConnectionLost("connection closed by relay"))

    # -- backfill ---------------------------------------------------------------

    async def _start_backfill(self, conn: _Connection) -> None:
        self._resync.clear()
        self.status.backfill_complete = not self.scopes
        reader = self.pipeline.store.reader()
        for scope in self.scopes:
            since = checkpoints.get(reader, self.url, scope.key)
            if since is not None:
                since = max(0, since - self.settings.overlap_seconds)
            sync = _ScopeSync(scope, Backfill([scope.filter], since, self.settings.page_limit))
            await self._next_page(conn, sync, first=True)

    async def _next_page(self, conn: _Connection, sync: _ScopeSync, *, first: bool = False) -> None:
        filters = sync.backfill.next_request()
        if filters is None:
            await self._backfill_done(sync)
            return
        sub_id = conn.new_sub_id("live" if first else "page")
        sync.page_sub = sub_id
        if first:
            sync.live_sub = sub_id  # the first page's subscription stays open for live events
        conn.scopes[sub_id] = sync
        await self._send_req(conn, sub_id, filters)

    async def _send_req(self, conn: _Connection, sub_id: str, filters: list[Any]) -> None:
        if self.status.throttle_seconds:
            await asyncio.sleep(self.status.throttle_seconds)
        conn.sub_filters[sub_id] = filters
        conn.page_deadline[sub_id] = time.monotonic() + self.settings.eose_timeout_seconds
        await conn.ws.send(conn.session.open_subscription(sub_id, filters))

    async def _backfill_done(self, sync: _ScopeSync) -> None:
        sync.complete = True
        sync.page_sub = None
        for warning in sync.backfill.warnings:
            log.warning("backfill", relay=self.url, scope=sync.scope.key, reason=warning)
        await self._advance_checkpoint(sync)
        if self._connection is not None and all(s.complete for s in self._connection.scopes.values()):
            self.status.backfill_complete = True
            log.info("backfill complete", relay=self.url)
            if self.on_backfill_complete is not None:
                self.on_backfill_complete()

    async def _advance_checkpoint(self, sync: _ScopeSync) -> None:
        if not sync.complete or sync.newest_committed is None:
            return
        since, url, key, now = sync.newest_committed, self.url, sync.scope.key, int(self.clock())
        await self.pipeline.store.writer.run(lambda c: checkpoints.advance(c, url, key, since, now))

    async def _page_ended(self, conn: _Connection, sub_id: str, *, complete: bool) -> None:
        sync = conn.scopes.get(sub_id)
        conn.page_deadline.pop(sub_id, None)
        if sync is None or sync.complete:
            return
        if sub_id != sync.live_sub:
            del conn.scopes[sub_id]
            await conn.ws.send(conn.session.close_subscription(sub_id))
        if not complete:
            # No EOSE: keep what arrived, but never move the checkpoint past a gap.
            sync.backfill = Backfill([], None, self.settings.page_limit)
            self.status.last_error = f"subscription {sub_id}: no EOSE within timeout"
            return
        sync.backfill.page_done()
        await self._next_page(conn, sync)

    # -- consuming --------------------------------------------------------------

    async def _consume(
        self, conn: _Connection, queue: asyncio.Queue[Any], tasks: list[asyncio.Task[None]]
    ) -> None:
        while True:
            for task in tasks[1:]:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise ConnectionLost(f"publishing failed: {task.exception()}")
            if self._resync.is_set():
                await self._start_backfill(conn)
            try:
                first = await asyncio.wait_for(queue.get(), timeout=self._next_deadline(conn))
            except TimeoutError:
                await self._expire_pages(conn)
                continue
            items = [first]
            while len(items) < BATCH_MAX and not queue.empty():
                items.append(queue.get_nowait())
            batch: list[Incoming] = []
            for item in items:
                if isinstance(item, Incoming):
                    self._observe(conn, item)
                    batch.append(item)
                    continue
                await self._flush(conn, batch)
                batch = []
                if isinstance(item, ConnectionLost):
                    raise item
                await self._handle(conn, item)
            await self._flush(conn, batch)

    def _next_deadline(self, conn: _Connection) -> float | None:
        if not conn.page_deadline:
            return None if not self._resync.is_set() else 0
        return max(0.0, min(conn.page_deadline.values()) - time.monotonic()) + 0.01

    async def _expire_pages(self, conn: _Connection) -> None:
        now = time.monotonic()
        for sub_id, deadline in list(conn.page_deadline.items()):
            if deadline <= now:
                await self._page_ended(conn, sub_id, complete=False)

    def _observe(self, conn: _Connection, item: Incoming) -> None:
        sync = conn.scopes.get(item.sub_id)
        if sync is None or sync.complete or sync.page_sub != item.sub_id:
            return
        conn.page_deadline[item.sub_id] = time.monotonic() + self.settings.eose_timeout_seconds
        obj = item.event
        created_at, event_id = obj.get("created_at"), obj.get("id")
        if type(created_at) is int and isinstance(event_id, str):
            sync.backfill.observe(created_at, event_id)

    async def _flush(self, conn: _Connection, batch: list[Incoming]) -> None:
        if not batch:
            return
        result = await self.pipeline.submit(self.url, [(i.event, i.size) for i in batch])
        status = self.status
        status.events_received += len(batch)
        status.events_stored += len(result.stored)
        status.events_duplicate += result.duplicates
        status.events_rejected += len(result.rejected)
        status.last_event_at = self.clock()
        for event_id, reason in result.rejected:
            log.debug("event rejected", relay=self.url, event_id=event_id, reason=reason)
        if not result.stored:
            return
        newest: dict[int, int] = {}
        sub_of = {i.event.get("id"): i.sub_id for i in batch}
        touched: list[_ScopeSync] = []
        for event in result.stored:
            sync = conn.scopes.get(sub_of.get(event.id, ""))
            if sync is None:
                continue
            key = id(sync)
            if newest.get(key, -1) < event.created_at:
                newest[key] = event.created_at
                if sync not in touched:
                    touched.append(sync)
        for sync in touched:
            created = newest[id(sync)]
            if sync.newest_committed is None or created > sync.newest_committed:
                sync.newest_committed = created
            await self._advance_checkpoint(sync)

    async def _handle(self, conn: _Connection, item: Any) -> None:
        if isinstance(item, EndOfStored):
            await self._page_ended(conn, item.sub_id, complete=True)
        elif isinstance(item, SubscriptionClosed):
            await self._on_closed(conn, item.sub_id, item.message)
        elif isinstance(item, Dropped):
            self.status.dropped[item.reason] += 1
            log.debug("frame dropped", relay=self.url, reason=item.reason)
        elif isinstance(item, Notice):
            self.status.notices += 1
            if messages.machine_prefix(item.message) == "rate-limited":
                self._slow_down()
            log.info("relay notice", relay=self.url, notice=item.message[:200])
        elif isinstance(item, AuthRequested):
            conn.challenge = item.challenge
            if conn.waiting_for_auth or (self.delivery is not None and self.delivery.awaiting_auth):
                await self._authenticate(conn)
        elif isinstance(item, PublishResult):
            await self._on_ok(conn, item)

    def _slow_down(self) -> None:
        current = self.status.throttle_seconds
        self.status.throttle_seconds = min(60.0, max(1.0, current * 2))

    async def _on_closed(self, conn: _Connection, sub_id: str, message: str) -> None:
        prefix = messages.machine_prefix(message)
        filters = conn.sub_filters.get(sub_id)
        log.info("subscription closed by relay", relay=self.url, sub=sub_id, reason=message[:200])
        if filters is None:
            return
        if prefix == "auth-required":
            if self.keys is None:
                self.status.last_error = "relay requires NIP-42 AUTH but no identity is configured"
                conn.page_deadline.pop(sub_id, None)
                return
            conn.waiting_for_auth.add(sub_id)
            conn.page_deadline.pop(sub_id, None)
            if conn.challenge is not None:
                await self._authenticate(conn)
        elif prefix == "rate-limited":
            self._slow_down()
            await self._send_req(conn, sub_id, filters)
        else:
            self.status.last_error = f"subscription closed: {message[:200]}"
            await self._page_ended(conn, sub_id, complete=False)

    async def _authenticate(self, conn: _Connection) -> None:
        if self.keys is None or conn.challenge is None:
            return
        event = auth_event(self.keys, self.url, conn.challenge, int(self.clock()))
        conn.auth_event_id = event.id
        await conn.ws.send(conn.session.authenticate(event.id, event.to_json(), time.monotonic()))

    async def _on_ok(self, conn: _Connection, result: PublishResult) -> None:
        if result.event_id != conn.auth_event_id:
            if self.delivery is not None and await self.delivery.on_result(
                result.event_id, result.accepted, result.message
            ):
                if self.keys is None:
                    self.status.last_error = "relay requires NIP-42 AUTH to publish; no identity"
                elif conn.challenge is not None:
                    await self._authenticate(conn)
            return
        conn.auth_event_id = None
        if not result.accepted:
            self.status.last_error = f"AUTH refused: {result.message[:200]}"
            return
        log.info("authenticated", relay=self.url)
        if self.delivery is not None:
            self.delivery.authenticated()
        waiting, conn.waiting_for_auth = conn.waiting_for_auth, set()
        for sub_id in sorted(waiting):
            await self._send_req(conn, sub_id, conn.sub_filters[sub_id])

"""One relay connection: connect, backfill every scope, stream live, reconnect.

Two tasks per connection: a reader that turns frames into session outputs on a
bounded queue (back-pressure reaches the relay through TCP), and a consumer that
batches events into the pipeline, counts what the session dropped and answers
CLOSED/AUTH. Which REQs to send and when (paging, EOSE timeouts, retries, rate limits)
is :mod:`powrd.sync.backfill`'s job. A relay that floods or stalls only ever fills its
own queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nostr_sdk
import structlog
import websockets
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type
from websockets.asyncio.client import ClientConnection
from websockets.frames import CloseCode

from powrd.config import SyncConfig
from powrd.protocol import messages, reasons
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
from powrd.sync.address import AddressRefused, Pinned, UnresolvableHost
from powrd.sync.backfill import ScopeSync, Subscriptions
from powrd.sync.connection import HARD_FRAME_CAP, connect_relay, receive_frames
from powrd.sync.pipeline import Pipeline
from powrd.sync.plan import Scope
from powrd.sync.publisher import RelayDelivery
from powrd.sync.slices import TimeSlice
from powrd.sync.status import RelayState, RelayStatus

log = structlog.get_logger("powrd.sync.relay")

STABLE_SESSION_SECONDS = 30.0
BATCH_MAX = 500
MAX_BATCHES_COMMITTING = 2


class ConnectionLost(Exception):
    """The connection ended; the worker backs off and reconnects."""


class StableSessionEnded(Exception):
    """A connection that had been healthy ended: reconnect with a fresh backoff."""


_Batch = list[tuple[Incoming, ScopeSync | None]]


class _Wake:
    """Queued to make the consumer look at its flags (a resync was requested)."""


@dataclass(slots=True)
class _Connection:
    ws: ClientConnection
    session: RelaySession
    subscriptions: Subscriptions
    # Batches being committed, oldest first. The next batch is verified while the
    # previous one commits, and each settles (counters, checkpoint) after the one
    # before it, so a checkpoint never passes a batch that is not committed.
    committing: deque[asyncio.Task[None]] = field(default_factory=deque)
    waiting_for_auth: set[str] = field(default_factory=set)
    challenge: str | None = None
    auth_event_id: str | None = None


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
        settings: SyncConfig,
        *,
        keys: nostr_sdk.Keys | None = None,
        read: bool = True,
        write: bool = True,
        delivery: RelayDelivery | None = None,
        on_backfill_complete: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        pin: Callable[[str], Awaitable[Pinned]] | None = None,
    ) -> None:
        self.on_backfill_complete = on_backfill_complete
        # A learned URL (NIP-65) is checked and pinned by the address policy per attempt.
        self.pin = pin
        self.url = url
        self.delivery = delivery if write else None
        self.scopes = scopes if read else []
        self.pipeline = pipeline
        self.settings = settings
        self.keys = keys
        self.clock = clock
        self.status = RelayStatus(url, read=read, write=write)
        self._resync = False
        self._queue: asyncio.Queue[Any] | None = None
        self._last_attempt = 0.0

    # -- public -----------------------------------------------------------------

    def request_resync(self) -> None:
        """Re-run the backfill of every scope on the current connection (``sync.now``)."""
        self._resync = True
        # Wake an idle consumer; a busy one (full queue) sees the flag on its next turn.
        if self._queue is not None and not self._queue.full():
            self._queue.put_nowait(_Wake())

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
        log.info(
            "relay backoff", relay=self.url, delay_s=round(delay, 2), error=self.status.last_error
        )

    async def _connect_once(self) -> None:
        # Never two connection attempts closer than the minimum interval, whatever the backoff.
        wait = self._last_attempt + self.settings.min_reconnect_interval_seconds - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_attempt = time.monotonic()
        self.status.state = RelayState.CONNECTING
        self.status.connect_attempts += 1
        try:
            pinned = await self.pin(self.url) if self.pin is not None else None
            ws = await connect_relay(
                self.url, compression=self.settings.compression, pinned=pinned
            )
        except (
            OSError,
            TimeoutError,
            websockets.exceptions.WebSocketException,
            AddressRefused,
            UnresolvableHost,
        ) as error:
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
            with contextlib.suppress(Exception):
                await ws.close()
        log.info("relay disconnected", relay=self.url, error=self.status.last_error)
        if time.monotonic() - started >= STABLE_SESSION_SECONDS:
            raise StableSessionEnded
        raise ConnectionLost(self.status.last_error or "connection ended")

    async def _serve(self, ws: ClientConnection) -> None:
        session = RelaySession(max_frame_bytes=self.settings.max_frame_bytes)
        subscriptions = Subscriptions(
            self.url,
            session,
            ws.send,
            self.scopes,
            self.settings,
            self.status,
            load_checkpoint=self._load_checkpoint,
            save_checkpoint=self._save_checkpoint,
            on_complete=self.on_backfill_complete,
            clock=self.clock,
        )
        conn = _Connection(ws, session, subscriptions)
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=self.settings.queue_max_events)
        self._queue = queue
        tasks = [asyncio.create_task(self._read(ws, session, queue), name=f"read {self.url}")]
        if self.delivery is not None:
            pump = self.delivery.pump(ws.send, session)
            tasks.append(asyncio.create_task(pump, name=f"publish {self.url}"))
        try:
            self._resync = False
            await subscriptions.start()
            await self._consume(conn, queue, tasks)
        finally:
            self._queue = None
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.delivery is not None:
                await self.delivery.connection_lost()

    async def _read(
        self, ws: ClientConnection, session: RelaySession, queue: asyncio.Queue[Any]
    ) -> None:
        time_slice = TimeSlice()
        try:
            # Buffered frames are handed out without a suspension point: a flooding
            # relay would keep this loop running unless it yields on its own.
            async for frame in receive_frames(ws):
                for output in session.receive(frame):
                    await queue.put(output)
                await time_slice.pause()
        except websockets.exceptions.ConnectionClosed as closed:
            if closed.sent is not None and closed.sent.code == CloseCode.MESSAGE_TOO_BIG:
                # websockets refused a frame over the hard cap, which ends the connection.
                await queue.put(Dropped(reasons.FRAME_TOO_LARGE, None, "over the hard cap"))
                cap = HARD_FRAME_CAP // (1024 * 1024)
                reason = f"frame over the {cap} MiB hard cap (message too big)"
                await queue.put(ConnectionLost(reason))
                return
            await queue.put(ConnectionLost(f"connection closed: {closed}"))
            return
        await queue.put(ConnectionLost("connection closed by relay"))

    # -- checkpoints ------------------------------------------------------------

    def _load_checkpoint(self, scope_key: str) -> int | None:
        return checkpoints.get(self.pipeline.store.reader(), self.url, scope_key)

    async def _save_checkpoint(self, scope_key: str, since: int) -> None:
        url, now = self.url, int(self.clock())
        await self.pipeline.store.writer.run(
            lambda c: checkpoints.advance(c, url, scope_key, since, now)
        )

    # -- consuming --------------------------------------------------------------

    async def _consume(
        self, conn: _Connection, queue: asyncio.Queue[Any], tasks: list[asyncio.Task[None]]
    ) -> None:
        try:
            await self._consume_items(conn, queue, tasks)
        finally:
            for task in conn.committing:
                task.cancel()

    async def _consume_items(
        self,
        conn: _Connection,
        queue: asyncio.Queue[Any],
        tasks: list[asyncio.Task[None]],
    ) -> None:
        subscriptions = conn.subscriptions
        while True:
            for task in tasks[1:]:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    raise ConnectionLost(f"publishing failed: {task.exception()}")
            if self._resync:
                self._resync = False
                await subscriptions.resync()
            try:
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation when the get completes at the same moment, which under a
                # flood is every time, and the worker would then never stop.
                async with asyncio.timeout(subscriptions.next_timer()):
                    first = await queue.get()
            except TimeoutError:
                await subscriptions.fire_timers()
                continue
            items = [first]
            while len(items) < BATCH_MAX and not queue.empty():
                items.append(queue.get_nowait())
            batch: _Batch = []
            for item in items:
                if isinstance(item, Incoming):
                    event = item.event
                    created_at, event_id = event.get("created_at"), event.get("id")
                    batch.append((item, subscriptions.observe(item.sub_id, created_at, event_id)))
                elif isinstance(item, ConnectionLost):
                    await self._commit_all(conn, batch)
                    raise item
                elif isinstance(item, EndOfStored):
                    # The next page is asked for before this one is committed: the relay
                    # works on it meanwhile. A finished run waits for its events.
                    if await subscriptions.on_eose(item.sub_id):
                        await self._commit_all(conn, batch)
                        batch = []
                        await subscriptions.runs_committed()
                else:
                    await self._handle(conn, item)
            if batch:
                self._start_commit(conn, batch)
                if len(conn.committing) > MAX_BATCHES_COMMITTING:
                    await conn.committing.popleft()
            # A flood keeps the queue full; timers must still fire on time.
            if subscriptions.next_timer() == 0.0:
                await subscriptions.fire_timers()

    def _start_commit(self, conn: _Connection, batch: _Batch) -> None:
        previous = conn.committing[-1] if conn.committing else None
        conn.committing.append(asyncio.create_task(self._commit(conn, batch, previous)))

    async def _commit_all(self, conn: _Connection, batch: _Batch) -> None:
        if batch:
            self._start_commit(conn, batch)
        while conn.committing:
            await conn.committing.popleft()

    async def _commit(
        self, conn: _Connection, batch: _Batch, previous: asyncio.Task[None] | None
    ) -> None:
        """Store a batch; then, after the batch before it, count it and move checkpoints."""
        result = await self.pipeline.submit(
            self.url, [(i.parsed or i.event, i.size) for i, _ in batch]
        )
        if previous is not None:
            await previous
        status = self.status
        status.events_received += len(batch)
        status.events_stored += len(result.stored)
        status.events_duplicate += result.duplicates
        status.events_rejected += len(result.rejected)
        status.last_event_at = self.clock()
        for event_id, reason in result.rejected:
            status.rejected[reasons.reason_key(reason)] += 1
            log.debug("event rejected", relay=self.url, event_id=event_id, reason=reason)
        if not result.stored:
            return
        scope_of = {item.event.get("id"): sync for item, sync in batch}
        newest: dict[int, tuple[ScopeSync, int]] = {}
        for event in result.stored:
            sync = scope_of.get(event.id)
            if sync is not None:
                _, seen = newest.get(id(sync), (sync, -1))
                newest[id(sync)] = (sync, max(seen, event.created_at))
        for sync, created_at in newest.values():
            await conn.subscriptions.committed(sync, created_at)

    async def _handle(self, conn: _Connection, item: Any) -> None:
        if isinstance(item, SubscriptionClosed):
            await self._on_closed(conn, item.sub_id, item.message)
        elif isinstance(item, Dropped):
            self.status.dropped[item.reason] += 1
            log.debug("frame dropped", relay=self.url, reason=item.reason)
        elif isinstance(item, Notice):
            self.status.notices += 1
            if messages.machine_prefix(item.message) == "rate-limited":
                conn.subscriptions.slow_down()
            log.info("relay notice", relay=self.url, notice=item.message[:200])
        elif isinstance(item, AuthRequested):
            conn.challenge = item.challenge
            if conn.waiting_for_auth or (self.delivery is not None and self.delivery.awaiting_auth):
                await self._authenticate(conn)
        elif isinstance(item, PublishResult):
            await self._on_ok(conn, item)

    async def _on_closed(self, conn: _Connection, sub_id: str, message: str) -> None:
        prefix = messages.machine_prefix(message)
        log.info("subscription closed by relay", relay=self.url, sub=sub_id, reason=message[:200])
        if prefix != "auth-required":
            await conn.subscriptions.on_closed(sub_id, prefix == "rate-limited", message)
            return
        conn.subscriptions.hold(sub_id)
        if self.keys is None:
            self.status.last_error = "relay requires NIP-42 AUTH but no identity is configured"
            return
        conn.waiting_for_auth.add(sub_id)
        if conn.challenge is not None:
            await self._authenticate(conn)

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
            await conn.subscriptions.resend(sub_id)

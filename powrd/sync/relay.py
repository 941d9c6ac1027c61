"""One relay: connect, backfill every scope, stream live, deliver the outbox, reconnect.

Each connection is a :class:`~powrd.sync.relay_connection.RelayConnection`, the one
owner of the socket and the protocol session; this worker drives it. Its clients are
the read subscriptions (:class:`~powrd.sync.backfill.Subscriptions`, whose events a
:class:`~powrd.sync.commits.CommitQueue` batches into the pipeline), the outbox delivery
(:class:`~powrd.sync.publisher.RelayDelivery`, sending from a task of its own), NIP-42
AUTH (:class:`~powrd.sync.auth.Authenticator`) and the worker's own watch on NOTICEs and
dropped frames. Each scope's backfill starts with a NIP-77 reconciliation where the
relay allows it (:mod:`powrd.sync.negentropy_backfill`). The worker takes the
connection's events in arrival order and hands each to its client, fires the
subscriptions' timers, and reconnects with backoff when the connection ends. A relay
that floods or stalls only ever fills its own connection's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nostr_sdk
import structlog
import websockets
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from powrd.config import SyncConfig
from powrd.protocol import messages
from powrd.protocol.filters import Filter
from powrd.protocol.negentropy import StorageVector
from powrd.protocol.session import Dropped, Notice, Output
from powrd.store import checkpoints, outbox
from powrd.sync import backoff
from powrd.sync.address import AddressRefused, Pinned, UnresolvableHost
from powrd.sync.auth import Authenticator
from powrd.sync.backfill import ScopeSync, Subscriptions, Throttle
from powrd.sync.commits import CommitQueue
from powrd.sync.id_fetch import IdFetch
from powrd.sync.negentropy import NegentropySupport
from powrd.sync.negentropy_backfill import NegentropyBackfill
from powrd.sync.packed_ids import PackedIds
from powrd.sync.pipeline import Pipeline
from powrd.sync.plan import Scope
from powrd.sync.publisher import RelayDelivery
from powrd.sync.relay_connection import Closed, ConnectionLost, RelayConnection
from powrd.sync.status import RelayState, RelayStatus

log = structlog.get_logger("powrd.sync.relay")

STABLE_SESSION_SECONDS = 30.0
BATCH_MAX = 500


class StableSessionEnded(Exception):
    """A connection that had been healthy ended: reconnect with a fresh backoff."""


@dataclass(eq=False)
class _Watch:
    """The worker's own client: counts dropped frames and NOTICEs, slows down on request."""

    url: str
    status: RelayStatus
    subscriptions: Subscriptions
    negentropy: NegentropyBackfill

    async def on_message(self, output: Output) -> None:
        if isinstance(output, Dropped):
            self.status.dropped[output.reason] += 1
            log.debug("frame dropped", relay=self.url, reason=output.reason)
        elif isinstance(output, Notice):
            self.status.notices += 1
            self.negentropy.notice(output.message)
            if messages.machine_prefix(output.message) == "rate-limited":
                self.subscriptions.slow_down()
            log.info("relay notice", relay=self.url, notice=output.message[:200])


class RelayWorker:
    """Keeps one relay in sync; run :meth:`run` as a task, cancel it to stop.

    Args:
        url: the relay's ws:// or wss:// URL.
        scopes: the subscriptions to backfill and stream (empty for write-only relays).
        pipeline: where events go.
        settings: timeouts, limits and backoff.
        keys: the identity used for NIP-42 AUTH, if any.
        clock: unix time.
        monotonic: the clock of timeouts, throttling and reconnect spacing.
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
        monotonic: Callable[[], float] = time.monotonic,
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
        self.monotonic = monotonic
        self.status = RelayStatus(url, read=read, write=write)
        # The relay's request throttle outlives its connections.
        self.throttle = Throttle.for_settings(settings)
        self.status.throttle = self.throttle
        # What the relay answered to negentropy outlives its connections.
        support = NegentropySupport(monotonic)
        self.status.negentropy = support
        self.negentropy = NegentropyBackfill(
            url,
            settings.negentropy,
            settings.negentropy_timeout_seconds,
            support,
            self._negentropy_items,
            self._queue_repair if self.delivery is not None and keys is not None else None,
            self._id_fetch,
        )
        self._resync = False
        self._connection: RelayConnection | None = None
        self._last_attempt = float("-inf")

    # -- public -----------------------------------------------------------------

    def request_resync(self) -> None:
        """Re-run the backfill of every scope on the current connection (``sync.now``)."""
        self._resync = True
        if self._connection is not None:
            self._connection.wake()

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
        wait = self._last_attempt + self.settings.min_reconnect_interval_seconds - self.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_attempt = self.monotonic()
        self.status.state = RelayState.CONNECTING
        self.status.connect_attempts += 1
        settings = self.settings
        try:
            pinned = await self.pin(self.url) if self.pin is not None else None
            connection = await RelayConnection.open(
                self.url,
                max_frame_bytes=settings.max_frame_bytes,
                queue_max=settings.queue_max_events,
                inflow=self.pipeline.inflow,
                compression=settings.compression,
                monotonic=self.monotonic,
                pinned=pinned,
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
        started = self.monotonic()
        async with connection:
            self._connection = connection
            self.status.state = RelayState.CONNECTED
            self.status.connects += 1
            self.status.last_connected_at = self.clock()
            self.status.next_retry_at = None
            log.info("relay connected", relay=self.url)
            try:
                await self._serve(connection)
            except ConnectionLost as lost:
                self.status.last_error = str(lost)
            finally:
                # Never "connected" without a socket: the state changes before it closes.
                self._connection = None
                self.status.state = RelayState.CONNECTING
        log.info("relay disconnected", relay=self.url, error=self.status.last_error)
        if self.monotonic() - started >= STABLE_SESSION_SECONDS:
            raise StableSessionEnded
        raise ConnectionLost(self.status.last_error or "connection ended")

    async def _serve(self, connection: RelayConnection) -> None:
        """Set up the connection's clients and drive it until it ends (raises ConnectionLost)."""
        auth = Authenticator(connection, self.keys, self.status, self.clock)
        subscriptions: Subscriptions | None = None

        async def committed(sync: ScopeSync, created_at: int) -> None:
            assert subscriptions is not None
            await subscriptions.committed(sync, created_at)

        commits = CommitQueue(
            self.url, self.pipeline, self.status, committed, clock=self.clock,
            discharge=connection.discharge,
        )
        subscriptions = Subscriptions(
            connection, commits, auth, self.scopes, self.settings, self.status,
            self._load_checkpoint, self._save_checkpoint, self.throttle,
            on_complete=self.on_backfill_complete, negentropy=self.negentropy,
            clock=self.clock, monotonic=self.monotonic,
        )
        watch = _Watch(self.url, self.status, subscriptions, self.negentropy)
        connection.route_type(Dropped, watch)
        connection.route_type(Notice, watch)
        pump: asyncio.Task[None] | None = None
        if self.delivery is not None:
            pump = asyncio.create_task(
                self.delivery.pump(connection, auth), name=f"publish {self.url}"
            )
        repair: asyncio.Task[None] | None = None
        if (
            not self.scopes
            and self.settings.kinds
            and self.keys is not None
            and self.negentropy.repair is not None
        ):
            # No backfill to reconcile with: reconcile our own events to repair the relay.
            own = Filter(
                authors=frozenset({self.keys.public_key().to_hex()}),
                kinds=frozenset(self.settings.kinds),
            )
            repair = asyncio.create_task(
                self.negentropy.repair_only(
                    connection, own, self.settings.reconcile_interval_seconds
                ),
                name=f"repair {self.url}",
            )
        try:
            self._resync = False
            await subscriptions.start()
            await self._drive(connection, subscriptions, commits, pump)
        finally:
            subscriptions.cancel()
            if repair is not None:
                repair.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await repair
            commits.cancel()
            if pump is not None:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await pump
            if self.delivery is not None:
                await self.delivery.connection_lost()

    async def _drive(
        self,
        connection: RelayConnection,
        subscriptions: Subscriptions,
        commits: CommitQueue,
        pump: asyncio.Task[None] | None,
    ) -> None:
        """Hand each event to its client, fire timers; returns never, raises ConnectionLost."""
        while True:
            if pump is not None and pump.done() and not pump.cancelled():
                error = pump.exception()
                raise ConnectionLost(f"publishing failed: {error}")
            if self._resync:
                self._resync = False
                await subscriptions.resync()
            events = await connection.next_events(BATCH_MAX, subscriptions.next_timer())
            if not events:
                await subscriptions.fire_timers()
                continue
            for event in events:
                if isinstance(event, Closed):
                    await commits.settle()
                    raise ConnectionLost(event.reason)
                await event.client.on_message(event.output)
            await commits.flush()
            # A flood keeps the queue full; timers must still fire on time.
            if subscriptions.next_timer() == 0.0:
                await subscriptions.fire_timers()

    # -- negentropy -------------------------------------------------------------

    def _id_fetch(self, need: PackedIds) -> IdFetch:
        # Shared with the other relays' workers through the pipeline they all feed.
        return IdFetch(need, self.pipeline.fetching, self.pipeline.held)

    async def _negentropy_items(self, flt: Filter) -> StorageVector:
        """The store's items for ``flt`` (shared with other relays reconciling it)."""
        return await self.pipeline.reconcile_items.items_of(flt)

    async def _queue_repair(self, have: list[str]) -> int:
        """Queue our own events the relay lacks to its outbox (``repair_max_events`` at most)."""
        assert self.keys is not None and self.delivery is not None
        url, author, now = self.url, self.keys.public_key().to_hex(), int(self.clock())
        limit = self.settings.repair_max_events
        queued = await self.pipeline.store.writer.run(
            lambda c: outbox.queue_repair(c, url, have, author=author, now=now, limit=limit)
        )
        if queued:
            self.delivery.wake.set()
        return queued

    # -- checkpoints ------------------------------------------------------------

    def _load_checkpoint(self, scope_key: str) -> int | None:
        return checkpoints.get(self.pipeline.store.reader(), self.url, scope_key)

    async def _save_checkpoint(self, scope_key: str, since: int) -> None:
        url, now = self.url, int(self.clock())
        await self.pipeline.store.writer.run(
            lambda c: checkpoints.advance(c, url, scope_key, since, now)
        )

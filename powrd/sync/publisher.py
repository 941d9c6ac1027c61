"""Publishing the user's own events: local-first, then delivered to every write relay.

:meth:`Publisher.publish` checks the request against the kind's rules, signs it,
stores it through the pipeline (``source = local``) and queues it in the outbox in the
same transaction, all before answering. Each write relay's worker then runs a
:class:`RelayDelivery` on its connection (a client of the
:class:`~powrd.sync.relay_connection.RelayConnection`): it sends due outbox events (a
small window of unacknowledged EVENTs), receives the relay's ``OK`` for each, records it,
and retries with backoff until the relay accepts or definitively rejects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import TYPE_CHECKING, Any

import apsw
import nostr_sdk
import structlog

from powrd.config import PublisherConfig
from powrd.library.authoring import AuthoringError, check_publishable
from powrd.protocol.event import Event
from powrd.protocol.messages import machine_prefix
from powrd.protocol.session import Output, PublishResult
from powrd.protocol.signing import sign_event
from powrd.store import outbox
from powrd.store.ingest import BatchResult
from powrd.store.store import Store
from powrd.sync import backoff
from powrd.sync.pipeline import Pipeline
from powrd.sync.waiting import wait_until_woken

if TYPE_CHECKING:
    from powrd.sync.auth import Authenticator
    from powrd.sync.relay_connection import RelayConnection

log = structlog.get_logger("powrd.sync.publisher")

TERMINAL_PREFIXES = frozenset(("invalid", "blocked", "pow", "restricted"))
# EVENTs sent to one relay and not yet answered by an OK, at most.
WINDOW = 20


class PublishError(Exception):
    """A publish request was refused; nothing was stored."""


def classify(accepted: bool, message: str) -> str:
    """The delivery state an ``OK`` leads to (``auth`` means: authenticate, then resend)."""
    prefix = machine_prefix(message)
    if accepted or prefix == "duplicate":
        return outbox.ACCEPTED
    if prefix in TERMINAL_PREFIXES:
        return outbox.REJECTED
    if prefix == "auth-required":
        return "auth"
    return outbox.FAILED


@dataclass(eq=False)
class Publisher:
    """Accepts publish requests and wakes the deliveries.

    Args:
        pipeline: the ingest pipeline (local events take the same path).
        keys: the user's identity, or None (publishing is then refused).
        write_relays: the current write relay URLs.
        clock: unix time (tests inject one).
    """

    pipeline: Pipeline
    keys: nostr_sdk.Keys | None
    write_relays: Callable[[], list[str]]
    _: KW_ONLY
    clock: Callable[[], float] = time.time
    # Write relay URL -> its delivery, registered by the relay's worker.
    deliveries: dict[str, RelayDelivery] = field(default_factory=dict, init=False)

    async def publish(self, kind: Any, content: Any, tags: Any, created_at: Any = None) -> str:
        """Sign, store and queue an event; returns its id once all of that is durable.

        Raises:
            PublishError: no identity, an invalid request, or the event was refused.
        """
        keys = self.signing_keys()
        author = keys.public_key().to_hex()
        try:
            check_publishable(kind, content, tags, author)
        except AuthoringError as error:
            raise PublishError(str(error)) from None
        if created_at is None:
            created_at = int(self.clock())
        if type(created_at) is not int or created_at < 0:
            raise PublishError("created_at: expected unix seconds")
        event = sign_event(keys, kind, content, tags, created_at)
        relays = await self.store_and_queue(event, int(self.clock()))
        log.info("published locally", event_id=event.id, kind=kind, relays=len(relays))
        return event.id

    def signing_keys(self) -> nostr_sdk.Keys:
        """The identity's keys.

        Raises:
            PublishError: no identity is configured.
        """
        if self.keys is None:
            raise PublishError(
                "no identity configured: set [identity].secret_key_file or POWRD_SECRET_KEY"
            )
        return self.keys

    async def store_and_queue(self, event: Event, now: int) -> list[str]:
        """Store a signed event as local, queue it for every write relay in the same
        transaction, and wake the deliveries; returns the relays it was queued for.

        Raises:
            PublishError: the pipeline refused the event or did not store it.
        """
        relays = self.write_relays()

        def queue_for_delivery(conn: apsw.Connection, batch: BatchResult) -> None:
            if batch.outcomes and batch.outcomes[0].status in ("stored", "superseded"):
                outbox.enqueue(conn, event.id, relays, now)

        # The JSON nostr-sdk signed is the one measured, stored and later sent.
        size = len(event.to_json().encode())
        result = await self.pipeline.submit("local", [(event, size)], also=queue_for_delivery)
        if result.rejected:
            raise PublishError(f"event refused: {result.rejected[0][1]}")
        if not result.stored and not result.duplicates:
            raise PublishError("event was not stored")
        for delivery in self.deliveries.values():
            delivery.wake.set()
        return relays


@dataclass(eq=False)
class RelayDelivery:
    """Delivers the outbox to one relay over its worker's connection.

    Args:
        url: the write relay.
        store: where the outbox is read and each relay's answer recorded.
        settings: the OK timeout and the retry backoff.
        clock: unix time (tests inject one).
    """

    url: str
    store: Store
    settings: PublisherConfig
    _: KW_ONLY
    clock: Callable[[], float] = time.time
    # Set to make the pump look at the outbox again (a publish, an OK, AUTH).
    wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    in_flight: set[str] = field(default_factory=set, init=False)
    awaiting_auth: set[str] = field(default_factory=set, init=False)
    _auth: Authenticator | None = field(default=None, init=False)

    async def _record(
        self, event_id: str, state: str, *, reason: str | None = None, retry_attempt: int = 0
    ) -> None:
        now = int(self.clock())
        next_attempt = 0
        if state == outbox.FAILED:
            s = self.settings
            next_attempt = now + int(
                backoff.delay(retry_attempt, s.retry_min_seconds, s.retry_max_seconds)
            )
        url = self.url
        await self.store.writer.run(
            lambda conn: outbox.record(
                conn, event_id, url, state, now, reason=reason, next_attempt=next_attempt
            )
        )

    def _attempts(self, event_id: str) -> int:
        row = outbox.attempts(self.store.reader(), event_id, self.url)
        return row if row is not None else 1

    async def pump(self, connection: RelayConnection, auth: Authenticator) -> None:
        """Send due deliveries on ``connection`` until cancelled; OKs come to :meth:`on_message`."""
        self._auth = auth
        while True:
            self.wake.clear()
            for event_id in connection.timed_out_publishes(self.settings.ok_timeout_seconds):
                if event_id in self.in_flight:
                    self.in_flight.discard(event_id)
                    await self._record(
                        event_id,
                        outbox.FAILED,
                        reason="no OK from relay",
                        retry_attempt=self._attempts(event_id),
                    )
            room = WINDOW - len(self.in_flight)
            if room > 0:
                now = int(self.clock())
                for event_id, raw in outbox.due(
                    self.store.reader(), self.url, now, room + len(self.in_flight)
                ):
                    if event_id in self.in_flight or event_id in self.awaiting_auth or room <= 0:
                        continue
                    await self._record(event_id, outbox.SENT)
                    self.in_flight.add(event_id)
                    room -= 1
                    await connection.publish(event_id, raw, self)
            await self._sleep()

    async def _sleep(self) -> None:
        timeout: float | None = None
        if self.in_flight:
            timeout = self.settings.ok_timeout_seconds / 4
        next_due = outbox.next_due(self.store.reader(), self.url)
        if next_due is not None and (len(self.in_flight) < WINDOW):
            wait = max(0.05, next_due - self.clock())
            timeout = wait if timeout is None else min(timeout, wait)
        await wait_until_woken(self.wake, timeout)

    async def on_message(self, output: Output) -> None:
        """The relay's OK for an event this delivery sent."""
        if not isinstance(output, PublishResult):
            return
        wants_auth = await self.on_result(output.event_id, output.accepted, output.message)
        if wants_auth and self._auth is not None:
            await self._auth.request(
                "delivery",
                self.authenticated,
                no_identity="relay requires NIP-42 AUTH to publish; no identity",
            )

    async def on_result(self, event_id: str, accepted: bool, message: str) -> bool:
        """Record a relay's OK; returns True when the relay wants NIP-42 AUTH first."""
        if event_id not in self.in_flight:
            return False
        self.in_flight.discard(event_id)
        state = classify(accepted, message)
        if state == "auth":
            self.awaiting_auth.add(event_id)
            await self._record(event_id, outbox.PENDING, reason=message[:300])
            return True
        if state == outbox.FAILED:
            await self._record(
                event_id, state, reason=message[:300], retry_attempt=self._attempts(event_id)
            )
        else:
            await self._record(
                event_id, state, reason=None if state == outbox.ACCEPTED else message[:300]
            )
        log.info(
            "delivery", relay=self.url, event_id=event_id, state=state, reason=message[:200] or None
        )
        self.wake.set()
        return False

    async def authenticated(self) -> None:
        self.awaiting_auth.clear()
        self.wake.set()

    async def connection_lost(self) -> None:
        """Events sent without an OK are owed again (the relay dedupes by id)."""
        for event_id in list(self.in_flight):
            await self._record(event_id, outbox.PENDING)
        self.in_flight.clear()
        self.awaiting_auth.clear()
        self._auth = None

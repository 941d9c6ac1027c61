"""Negentropy in a relay's backfill: reconcile a scope first, then fetch only what is missing.

With ``[sync] negentropy = "auto"`` (or ``"only"``) a scope's backfill run starts with a
NIP-77 reconciliation of the store's items for the scope's filter against the relay
(:func:`~powrd.sync.negentropy.reconcile_with_relay`). The ids the relay holds and the
store lacks are then fetched as an :class:`~powrd.sync.id_fetch.IdFetch` run: ``REQ {ids}``
pages of at most 500 ids, shared out between the relays that hold them, one subscription
at a time, through the same page machinery (EOSE timeouts, throttle, commits) as REQ
paging. A refusal falls back to REQ paging and is remembered
per relay (:class:`~powrd.sync.negentropy.NegentropySupport`).

:class:`ReconcileChannel` is the reconciliation's client on the relay connection: the
connection routes the subscription id's NEG-MSG/NEG-ERR to it, the worker forwards the
relay's NOTICEs, and the driver reads them as a stream. The reconciliation runs as a
task of its own (it waits for answers the connection's driver hands out), and the
scope picks its result up from the driver's timers, so all subscription state changes
on the driver's side only.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from powrd.protocol.filters import Filter
from powrd.protocol.messages import NoticeMessage
from powrd.protocol.negentropy import StorageVector
from powrd.protocol.session import NegentropyMessage, NegentropyRefused, Output
from powrd.sync.id_fetch import IdFetch
from powrd.sync.negentropy import (
    NegentropySupport,
    ReconcileResult,
    Reply,
    Verdict,
    reconcile_with_relay,
)
from powrd.sync.packed_ids import PackedIds
from powrd.sync.relay_connection import ConnectionLost, RelayConnection

log = structlog.get_logger("powrd.sync.negentropy")

AUTO, OFF, ONLY = "auto", "off", "only"
# Answers waiting for the reconciliation task; a relay sends one per message of ours.
REPLY_QUEUE_MAX = 64

ItemsOf = Callable[[Filter], Awaitable[StorageVector]]
Repair = Callable[[list[str]], Awaitable[int]]


class ReconcileChannel:
    """One reconciliation's view of the relay connection (a connection client)."""

    def __init__(self, connection: RelayConnection) -> None:
        self._connection = connection
        self._replies: asyncio.Queue[Reply] = asyncio.Queue(maxsize=REPLY_QUEUE_MAX)

    async def send(self, frame: str) -> None:
        await self._connection.send(frame)

    def _put(self, reply: Reply) -> None:
        # A relay flooding answers we did not ask for only loses its own surplus.
        if not self._replies.full():
            self._replies.put_nowait(reply)

    async def on_message(self, output: Output) -> None:
        if isinstance(output, NegentropyMessage | NegentropyRefused):
            self._put(output)

    def notice(self, message: str) -> None:
        self._put(NoticeMessage(message))

    async def replies(self) -> AsyncIterator[Reply]:
        while True:
            yield await self._replies.get()


@dataclass(eq=False)
class NegentropyBackfill:
    """A relay's negentropy settings and memory; reconciles scopes on its connections.

    Args:
        url: the relay.
        mode: ``auto``, ``off`` or ``only`` (``[sync] negentropy``).
        timeout: seconds to wait for each relay answer.
        support: the relay's remembered verdicts (it outlives connections).
        items_of: the store's sealed items for a filter (read off the event loop).
        repair: queues ids we hold and the relay lacks for upload; returns how many
            were queued (None: not a write relay, or no identity).
        id_fetch: the run that fetches what a reconciliation found missing (shares
            the work with the other relays' runs when the daemon gives it the claims).
    """

    url: str
    mode: str
    timeout: float
    support: NegentropySupport
    items_of: ItemsOf
    repair: Repair | None = None
    id_fetch: Callable[[PackedIds], IdFetch] = IdFetch
    _channels: dict[str, ReconcileChannel] = field(default_factory=dict)

    def should_try(self) -> bool:
        if self.mode == OFF:
            return False
        return self.mode == ONLY or self.support.should_try(self.url)

    def notice(self, message: str) -> None:
        """A relay NOTICE: before its first NEG-MSG a reconciliation counts it as a refusal."""
        for channel in self._channels.values():
            channel.notice(message)

    async def reconcile(
        self, connection: RelayConnection, flt: Filter, sub_id: str
    ) -> ReconcileResult:
        """Reconcile the store's items for ``flt`` with the relay; record the verdict."""
        storage = await self.items_of(flt)
        channel = ReconcileChannel(connection)
        self._channels[sub_id] = channel
        connection.route(sub_id, channel)
        try:
            result = await reconcile_with_relay(
                channel, storage, flt, sub_id, answer_timeout=self.timeout
            )
        finally:
            connection.unroute(sub_id)
            del self._channels[sub_id]
        self.support.record(self.url, result.verdict)
        log.info(
            "negentropy",
            relay=self.url,
            verdict=result.verdict.value,
            have=len(result.have),
            need=len(result.need),
            rounds=result.rounds,
            bytes_received=result.bytes_received,
            seconds=round(result.seconds, 3),
            reason=result.reason or None,
        )
        if result.verdict is Verdict.RECONCILED and result.have and self.repair is not None:
            queued = await self.repair(list(result.have))
            if queued:
                log.info("negentropy repair queued", relay=self.url, events=queued)
        return result

    async def repair_only(
        self, connection: RelayConnection, flt: Filter, interval: float
    ) -> None:
        """Reconcile ``flt`` (our own events) now and every ``interval`` s, only to repair.

        For write relays powrd does not read from: what the relay holds and we lack is
        left alone. Cancel to stop.
        """
        rounds = 0
        while True:
            if self.should_try():
                rounds += 1
                try:
                    await self.reconcile(connection, flt, f"repair{rounds}")
                except ConnectionLost:
                    return  # the worker reconnects and starts over
            await asyncio.sleep(interval)

"""The ingest pipeline shared by relays, import and local publishing.

    decoded event ─► shape ─► dedupe (seen ids + store) ─► policy (size, future, expiry)
    ─► id + signature ─► NIP-101e processing ─► one writer operation (raw + tags +
    replacement + processed rows + dependencies + rejected log) ─► COMMIT ─► result

A caller that awaits :meth:`Pipeline.submit` knows its events are committed, so it may
then advance a checkpoint past them.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import apsw

from powrd.library.process import process
from powrd.protocol import reasons
from powrd.protocol.event import Event, parse_event
from powrd.protocol.reasons import Rejected
from powrd.protocol.validate import Policy, policy_failure
from powrd.protocol.verify import verification_failure
from powrd.store import ingest as store_ingest
from powrd.store.ingest import BatchResult, IngestItem
from powrd.store.queries import known_ids
from powrd.store.store import Store
from powrd.sync.id_fetch import FetchClaims
from powrd.sync.inflow import Inflow
from powrd.sync.shared_items import SharedItems, from_store
from powrd.sync.slices import TimeSlice


@dataclass(slots=True)
class SubmitResult:
    stored: list[Event] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[tuple[str | None, str]] = field(default_factory=list)  # (event id, reason)
    batch: BatchResult | None = None


AlsoInTransaction = Callable[[apsw.Connection, BatchResult], None]


class SeenIds:
    """A bounded memory of ids known to be stored (or verified and on their way)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        return event_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def discard(self, event_id: str) -> None:
        self._ids.pop(event_id, None)


class Pipeline:
    """Validates, deduplicates and stores events from any source.

    Args:
        store: the open store.
        policy: size and clock-skew limits.
        rejected_log_max: rows kept in the rejected-events log.
        seen_capacity: ids remembered to skip the store lookup for events that come
            again (from another relay, or a flood). Older ids are still found in the
            store before verification; 50,000 ids take about 10 MB.
        clock: unix time source (tests inject one).
        on_commit: called with each committed :class:`BatchResult` (wakes the resolver,
            invalidates caches).
    """

    def __init__(
        self,
        store: Store,
        policy: Policy,
        *,
        rejected_log_max: int = 10000,
        clock: Callable[[], float] = time.time,
        seen_capacity: int = 50_000,
        on_commit: Callable[[BatchResult], None] | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.rejected_log_max = rejected_log_max
        self.clock = clock
        self.seen = SeenIds(seen_capacity)
        # Ids some relay is fetching right now, so the other relays fetch the rest.
        self.fetching = FetchClaims()
        # Bytes of relay events received and not yet committed, bounded for all relays.
        self.inflow = Inflow()
        # The store's negentropy items of a filter, held once for the relays reconciling it.
        self.reconcile_items = SharedItems(from_store(store))
        # Events whose signature was checked (reported by ``status`` as events_verified):
        # an event served by several relays is verified once.
        self.verified = 0
        self.on_commit = on_commit

    def _screen(
        self, items: Sequence[tuple[Any, int]], result: SubmitResult
    ) -> list[tuple[Event, int]]:
        """Shape-check and drop what is already stored: the cheap part of preparing."""
        events: list[tuple[Event, int]] = []
        for obj, size in items:
            if isinstance(obj, Event):  # already shape-checked by the relay session
                events.append((obj, size))
                continue
            try:
                events.append((parse_event(obj), size))
            except Rejected as rejection:
                event_id = obj.get("id") if isinstance(obj, dict) else None
                result.rejected.append(
                    (event_id if isinstance(event_id, str) else None, rejection.reason)
                )
        held = self.held([e.id for e, _ in events])
        fresh = [(e, s) for e, s in events if e.id not in held]
        result.duplicates += len(events) - len(fresh)
        return fresh

    def held(self, ids: list[str]) -> set[str]:
        """The subset of ``ids`` admitted (verified, on their way) or stored."""
        held = {event_id for event_id in ids if event_id in self.seen}
        if len(held) < len(ids):
            held |= known_ids(self.store.reader(), [i for i in ids if i not in held])
        return held

    def _admit(
        self, source: str, event: Event, size: int, *, now: int, into: SubmitResult,
        prepared: list[IngestItem],
    ) -> None:
        """Policy, signature and NIP-101e processing of one fresh event."""
        failure = policy_failure(event, size, self.policy, now) or verification_failure(event)
        self.verified += 1
        if failure is not None:
            into.rejected.append((event.id, failure))
            return
        self.seen.add(event.id)
        prepared.append(IngestItem(event, source, process(event)))

    def _prepare(
        self, source: str, items: Sequence[tuple[Any, int]], result: SubmitResult
    ) -> list[IngestItem]:
        """Everything before the writer: shape, dedupe, policy, verification, processing."""
        now = int(self.clock())
        prepared: list[IngestItem] = []
        for event, size in self._screen(items, result):
            if event.id in self.seen:  # twice in this batch
                result.duplicates += 1
            else:
                self._admit(source, event, size, now=now, into=result, prepared=prepared)
        return prepared

    async def _prepare_in_slices(
        self, source: str, items: Sequence[tuple[Any, int]], result: SubmitResult
    ) -> list[IngestItem]:
        """:meth:`_prepare`, yielding to the event loop between events as its slice ends."""
        now = int(self.clock())
        prepared: list[IngestItem] = []
        time_slice = TimeSlice()
        for event, size in self._screen(items, result):
            if event.id in self.seen:  # twice in this batch, or admitted meanwhile
                result.duplicates += 1
            else:
                self._admit(source, event, size, now=now, into=result, prepared=prepared)
            await time_slice.pause()
        return prepared

    def _operation(
        self,
        source: str,
        prepared: list[IngestItem],
        rejected: list[tuple[str | None, str]],
        now: int,
        also: AlsoInTransaction | None,
    ) -> Callable[[apsw.Connection], BatchResult]:
        keep = self.rejected_log_max

        def operation(conn: apsw.Connection) -> BatchResult:
            batch = store_ingest.ingest(conn, prepared, now)
            store_ingest.log_rejections(conn, [(i, source, r) for i, r in rejected], now, keep)
            if also is not None:
                also(conn, batch)
            return batch

        return operation

    def _finish(
        self, prepared: list[IngestItem], batch: BatchResult, result: SubmitResult
    ) -> None:
        result.batch = batch
        for event_id in batch.deleted:
            self.seen.discard(event_id)
        for item, outcome in zip(prepared, batch.outcomes, strict=True):
            if outcome.status in (store_ingest.STORED, store_ingest.SUPERSEDED):
                result.stored.append(item.event)
            elif outcome.status == store_ingest.DUPLICATE:
                result.duplicates += 1
            else:
                self.seen.discard(item.event.id)
                result.rejected.append((item.event.id, outcome.reason or reasons.DELETED))
        if self.on_commit is not None:
            self.on_commit(batch)

    async def submit(
        self,
        source: str,
        items: Sequence[tuple[Any, int]],
        *,
        also: AlsoInTransaction | None = None,
    ) -> SubmitResult:
        """Validate and store decoded events ``(object, size in bytes)``; returns once committed.

        An item's object may also be an :class:`Event` that was already shape-checked.

        Args:
            source: the relay URL, ``import`` or ``local``.
            items: decoded event objects with their size in bytes as received.
            also: more writes for the same transaction (the outbox entry of a local event).
        """
        try:
            return await self._submit(source, items, also)
        finally:
            # Stored, rejected or failed: no relay's fetch waits for these any longer.
            self.fetching.settle(_ids_of(items))

    async def _submit(
        self, source: str, items: Sequence[tuple[Any, int]], also: AlsoInTransaction | None
    ) -> SubmitResult:
        result = SubmitResult()
        prepared = await self._prepare_in_slices(source, items, result)
        now = int(self.clock())
        operation = self._operation(source, prepared, list(result.rejected), now, also)
        try:
            batch = await self.store.writer.run(operation)
        except BaseException:
            self._forget(prepared)
            raise
        self._finish(prepared, batch, result)
        return result

    def submit_blocking(self, source: str, items: Sequence[tuple[Any, int]]) -> SubmitResult:
        """:meth:`submit` for callers without an event loop (``powrd import``)."""
        result = SubmitResult()
        prepared = self._prepare(source, items, result)
        now = int(self.clock())
        operation = self._operation(source, prepared, list(result.rejected), now, None)
        try:
            batch = self.store.writer.call(operation)
        except BaseException:
            self._forget(prepared)
            raise
        self._finish(prepared, batch, result)
        return result

    def _forget(self, prepared: list[IngestItem]) -> None:
        """The batch was not stored: its ids must be verified again when they come back."""
        for item in prepared:
            self.seen.discard(item.event.id)


def _ids_of(items: Sequence[tuple[Any, int]]) -> list[str]:
    ids: list[str] = []
    for obj, _ in items:
        if isinstance(obj, Event):
            ids.append(obj.id)
        elif isinstance(obj, dict) and isinstance(obj.get("id"), str):
            ids.append(obj["id"])
    return ids

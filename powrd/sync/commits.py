"""Events of one connection's read subscriptions, committed in batches and in order.

The next batch is verified while the previous one commits, and each batch settles (the
relay's counters, the scopes' checkpoints) only after the one before it, so a
checkpoint never passes a batch that is not committed.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from powrd.protocol import reasons
from powrd.protocol.session import Incoming
from powrd.sync.pipeline import Pipeline
from powrd.sync.status import RelayStatus

if TYPE_CHECKING:
    from powrd.sync.backfill import ScopeSync

log = structlog.get_logger("powrd.sync.commits")

# Batches being committed at once, at most, before the connection waits for the oldest.
MAX_BATCHES_COMMITTING = 2

Batch = list[tuple[Incoming, "ScopeSync | None"]]
Committed = Callable[["ScopeSync", int], Awaitable[None]]


@dataclass(eq=False)
class CommitQueue:
    """Gathers received events into batches and commits them through the pipeline.

    Args:
        url: the relay (the pipeline's ``source``).
        pipeline: where events go.
        status: the relay's status; its event counters are kept here.
        committed: called, in order, with each scope's newest committed ``created_at``.
        clock: unix time, for ``last_event_at``.
        discharge: told the bytes of each batch once the pipeline is done with it
            (the connection gives them back to the shared inflow budget).
    """

    url: str
    pipeline: Pipeline
    status: RelayStatus
    committed: Committed
    clock: Callable[[], float] = time.time
    discharge: Callable[[int], None] | None = None
    _batch: Batch = field(default_factory=list)
    _committing: deque[asyncio.Task[None]] = field(default_factory=deque)

    def add(self, item: Incoming, sync: ScopeSync | None) -> None:
        """An event for the next batch (``sync``: the scope it belongs to, if any)."""
        self._batch.append((item, sync))

    async def flush(self) -> None:
        """Start committing what was added; waits while too many batches are committing."""
        if self._batch:
            self._start(self._batch)
            self._batch = []
        if len(self._committing) > MAX_BATCHES_COMMITTING:
            await self._committing.popleft()

    async def settle(self) -> None:
        """Commit everything added so far and wait until it is committed and counted."""
        if self._batch:
            self._start(self._batch)
            self._batch = []
        while self._committing:
            await self._committing.popleft()

    def cancel(self) -> None:
        for task in self._committing:
            task.cancel()

    def _start(self, batch: Batch) -> None:
        previous = self._committing[-1] if self._committing else None
        self._committing.append(asyncio.create_task(self._commit(batch, previous)))

    async def _commit(self, batch: Batch, previous: asyncio.Task[None] | None) -> None:
        """Store a batch; then, after the batch before it, count it and move checkpoints."""
        try:
            result = await self.pipeline.submit(
                self.url, [(i.parsed or i.event, i.size) for i, _ in batch]
            )
        finally:
            if self.discharge is not None:
                self.discharge(sum(item.size for item, _ in batch))
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
            await self.committed(sync, created_at)

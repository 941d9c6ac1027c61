"""The local relay's view of the daemon: store reads and the one ingest pipeline.

Store reads include the (created_at, id) items NIP-77 reconciles, from their index.

An EVENT from an app takes the path of every other event (``source = local-relay``).
When it is signed by the configured identity it is also queued in the outbox for every
write relay in the same transaction, as ``publish`` does, so it reaches the user's
relays with retries even after the app is closed.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

from powrd.protocol.event import Event
from powrd.protocol.filters import Filter
from powrd.serve.connection import Backend, Verdict
from powrd.store import outbox, relay_reads
from powrd.store.ingest import STORED, SUPERSEDED, BatchResult
from powrd.store.negentropy_items import Item, negentropy_items
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from powrd.sync.publisher import Publisher

SOURCE = "local-relay"
DUPLICATE = "duplicate: already have this event"


def store_backend(
    store: Store,
    pipeline: Pipeline,
    publisher: Publisher | None,
    own_pubkey: Callable[[], str | None],
) -> Backend:
    """A :class:`Backend` over the daemon's store, pipeline and publisher."""

    def read_stored(filters: tuple[Filter, ...]) -> tuple[list[str], int]:
        return relay_reads.read_stored(store.reader(), filters)

    def count(filters: tuple[Filter, ...]) -> int:
        return relay_reads.count_matching(store.reader(), filters)

    def items(flt: Filter, limit: int) -> list[Item]:
        return negentropy_items(store.reader(), flt, limit=limit)

    async def publish(event: Event, size: int) -> Verdict:
        if store.writer.full:
            return Verdict(False, "error: the disk is full; nothing was stored")
        also = None
        if publisher is not None and event.pubkey == own_pubkey():
            relays = publisher.write_relays()
            now = int(publisher.clock())

            def also(conn: apsw.Connection, batch: BatchResult) -> None:
                if batch.outcomes and batch.outcomes[0].status in (STORED, SUPERSEDED):
                    outbox.enqueue(conn, event.id, relays, now)

        try:
            result = await pipeline.submit(SOURCE, [(event, size)], also=also)
        except Exception as error:  # the app gets the reason; the daemon runs on
            return Verdict(False, f"error: the event could not be stored: {error}")
        if result.rejected:
            return Verdict(False, result.rejected[0][1])
        if not result.stored:
            return Verdict(True, DUPLICATE)
        if also is not None and publisher is not None:
            for delivery in publisher.deliveries.values():
                delivery.wake.set()
        return Verdict(True, "")

    return Backend(read_stored, count, publish, items)


def committed_after(store: Store) -> Callable[[int, int], list[tuple[int, str]]]:
    return lambda seq, limit: relay_reads.committed_after(store.reader(), seq, limit)


def latest_seq(store: Store) -> Callable[[], int]:
    return lambda: relay_reads.latest_seq(store.reader())

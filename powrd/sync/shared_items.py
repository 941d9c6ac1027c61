"""The store's negentropy items for a filter, shared by the relays reconciling it at once.

Every relay worker reconciles the same scopes, and after a start-up (or on the periodic
reconcile) they do so together. Each reconciliation holds the store's sealed items for
its filter, about 180 bytes an item: with half a million stored events in a scope, some
90 MB for each relay. So while one relay's reconciliation still holds the items of a
filter, another relay asking for the same filter is given the same items, and a filter
being read from the store is read once for everyone who asks meanwhile.

The shared items are a snapshot at most as old as the reconciliation that holds them.
That is as good as a fresh read: an event stored since then shows up as an id to fetch,
and the fetch skips ids the store holds by then.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Coroutine
from typing import Any

from powrd.protocol.filters import Filter
from powrd.protocol.negentropy import StorageVector
from powrd.store.negentropy_items import negentropy_items
from powrd.store.store import Store

Load = Callable[[Filter], Coroutine[Any, Any, StorageVector]]


def from_store(store: Store) -> Load:
    """Read and seal the store's items for a filter off the event loop."""

    async def load(flt: Filter) -> StorageVector:
        return await asyncio.to_thread(
            lambda: StorageVector.seal(negentropy_items(store.reader(), flt))
        )

    return load


class SharedItems:
    """Sealed items by filter, kept only while some reconciliation uses them.

    Args:
        load: reads and seals the store's items for a filter.
    """

    def __init__(self, load: Load) -> None:
        self._load = load
        self._held: weakref.WeakValueDictionary[Filter, StorageVector] = (
            weakref.WeakValueDictionary()
        )
        self._loading: dict[Filter, asyncio.Task[StorageVector]] = {}
        self.loads = 0

    async def items_of(self, flt: Filter) -> StorageVector:
        """The items for ``flt``: those another reconciliation holds, or a new read."""
        held = self._held.get(flt)
        if held is not None:
            return held
        loading = self._loading.get(flt)
        if loading is None:
            self.loads += 1
            loading = asyncio.create_task(self._load(flt), name="negentropy items")
            self._loading[flt] = loading
            # Registered before anyone awaits the read, so it runs before they resume.
            loading.add_done_callback(lambda task: self._loaded(flt, task))
        # One caller giving up (its connection ended) does not stop the read for the rest.
        return await asyncio.shield(loading)

    def _loaded(self, flt: Filter, task: asyncio.Task[StorageVector]) -> None:
        del self._loading[flt]
        if not task.cancelled() and task.exception() is None:
            self._held[flt] = task.result()

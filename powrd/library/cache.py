"""The query cache: resolved templates and exercise lookups kept in memory.

:class:`QueryCache` is an LRU with priorities, bounded by entries and by bytes. When a
bound is passed the entry with the lowest priority goes first and, among equals, the
least recently used. The user's own content and the exercises their templates use rank
highest (:func:`priority_for`), so browsing other people's libraries cannot push them out.

Every entry names the content ids it was computed from. After each commit the pipeline
hands the batch's ``changed`` set to :meth:`QueryCache.invalidate`, which drops every
entry whose key or dependencies it names, through an index from dependency to keys.

A lookup that reads the store in one thread while a commit's invalidation runs in
another could put an answer computed before the commit after its invalidation. Callers
therefore take a :meth:`QueryCache.ticket` before reading and pass it to
:meth:`QueryCache.put`, which refuses the answer when an invalidation since the ticket
named one of its dependencies.

Accesses are counted in memory and written to ``cache_metadata`` in batches
(:func:`flush_accesses`), never one write per hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import Any

import apsw
import structlog

from powrd.library.coordinates import EXERCISE, LEGACY_RECORD, LIST, TEMPLATE, parse_coordinate
from powrd.library.service import resolve_template
from powrd.protocol.event import dumps
from powrd.store import cache_meta, library_queries
from powrd.store.cache_meta import Access
from powrd.store.writer import Writer

log = structlog.get_logger("powrd.library.cache")

PRIORITY_NORMAL = 0
PRIORITY_OWN = 1
"""The user's own content and what their templates reference."""

_CONTENT_TYPES = {
    EXERCISE: "exercise", TEMPLATE: "template", LEGACY_RECORD: "record", LIST: "collection"
}
# Invalidations remembered for refusing late puts; a ticket older than this is refused.
# A ticket spans one query, a handful of commits at most; each entry holds a commit's whole
# changed set (thousands of names during a backfill), so keep few.
_RECENT_INVALIDATIONS = 32


def priority_for(
    pubkey: str | None, own_pubkeys: Collection[str], *, referenced_by_own: bool = False
) -> int:
    """The cache priority of content by ``pubkey``.

    Args:
        pubkey: the content's author (None when unknown).
        own_pubkeys: the user's own public keys (hex).
        referenced_by_own: the content is an exercise one of the user's templates uses.
    """
    if referenced_by_own or (pubkey is not None and pubkey in own_pubkeys):
        return PRIORITY_OWN
    return PRIORITY_NORMAL


def content_type_of(content_id: str) -> str:
    """``exercise``/``template``/``record`` for coordinates of those kinds, else ``event``."""
    coordinate = parse_coordinate(content_id)
    return "event" if coordinate is None else _CONTENT_TYPES.get(coordinate.kind, "event")


@dataclass(slots=True)
class _Entry:
    value: Any
    depends_on: frozenset[str]
    priority: int
    size: int


@dataclass(frozen=True, slots=True)
class CacheStats:
    """Counters for ``status``; ``rejected_puts`` were refused as possibly stale."""

    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    hits: int
    misses: int
    evictions: int
    invalidations: int
    rejected_puts: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


class QueryCache:
    """An LRU with priorities and dependency invalidation; safe to share between threads.

    Cached values are shared, not copied: treat what :meth:`get` returns as read-only.

    Args:
        max_entries: the most entries kept (0: cache nothing).
        max_bytes: the most bytes of values kept, as the callers measure them.
        clock: unix time, for access times.
        max_pending_accesses: distinct content ids remembered between two flushes;
            accesses to further ids are not recorded until the next flush.
    """

    def __init__(
        self,
        max_entries: int,
        max_bytes: int,
        *,
        clock: Callable[[], float] = time.time,
        max_pending_accesses: int = 10_000,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.clock = clock
        self.max_pending_accesses = max_pending_accesses
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        # One recency order per priority: eviction looks at the lowest priority only.
        self._by_priority: dict[int, OrderedDict[str, None]] = {}
        self._keys_by_dependency: dict[str, set[str]] = {}
        self._bytes = 0
        self._epoch = 0
        self._recent: deque[tuple[int, frozenset[str] | None]] = deque(
            maxlen=_RECENT_INVALIDATIONS
        )
        self._pending: dict[str, Access] = {}
        self.hits = self.misses = self.evictions = self.invalidations = 0
        self.rejected_puts = 0
        self.dropped_accesses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    # -- lookups -------------------------------------------------------------------

    def get(self, key: str) -> Any | None:
        """The cached value (now the most recently used), or None on a miss."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self._by_priority[entry.priority].move_to_end(key)
            self._note_access(key, entry.priority)
            return entry.value

    def ticket(self) -> int:
        """Take before reading the store for a :meth:`put`; see the module docs."""
        with self._lock:
            return self._epoch

    def put(
        self,
        key: str,
        value: Any,
        depends_on: Iterable[str],
        priority: int,
        size: int,
        *,
        since: int | None = None,
    ) -> bool:
        """Cache ``value`` under ``key`` and evict down to the bounds.

        Args:
            key: a content id (the key itself is a dependency).
            value: the answer; None is not cached.
            depends_on: content ids whose change makes the answer stale.
            priority: higher is kept longer (:func:`priority_for`).
            size: the value's size in bytes, for the byte bound.
            since: the :meth:`ticket` taken before the answer was read.

        Returns:
            True when the value is in the cache afterwards.
        """
        dependencies = frozenset(depends_on) | {key}
        with self._lock:
            self._note_access(key, priority)
            self._remove(key)
            if since is not None and self._stale_since(since, dependencies):
                self.rejected_puts += 1
                return False
            if value is None or self.max_entries <= 0 or size > self.max_bytes:
                return False
            self._entries[key] = _Entry(value, dependencies, priority, size)
            self._by_priority.setdefault(priority, OrderedDict())[key] = None
            for dependency in dependencies:
                self._keys_by_dependency.setdefault(dependency, set()).add(key)
            self._bytes += size
            self._evict()
            return key in self._entries

    def touch(self, content_id: str, priority: int) -> None:
        """Record an access to content served without the cache (media, for one)."""
        with self._lock:
            self._note_access(content_id, priority)

    # -- invalidation ----------------------------------------------------------------

    def invalidate(self, changed: Iterable[str]) -> int:
        """Drop every entry whose key or dependencies are in ``changed``; returns how many."""
        names = frozenset(changed)
        if not names:
            return 0
        with self._lock:
            self._epoch += 1
            self._recent.append((self._epoch, names))
            doomed: set[str] = set()
            for name in names:
                doomed.update(self._keys_by_dependency.get(name, ()))
            for key in doomed:
                self._remove(key)
            self.invalidations += len(doomed)
            return len(doomed)

    def clear(self) -> int:
        """Invalidate everything (after changes that name no content ids); returns how many."""
        with self._lock:
            self._epoch += 1
            self._recent.append((self._epoch, None))
            dropped = len(self._entries)
            for key in list(self._entries):
                self._remove(key)
            self.invalidations += dropped
            return dropped

    # -- access log and counters --------------------------------------------------------

    def drain_accesses(self) -> list[Access]:
        """The accesses recorded since the last drain, for :func:`cache_meta.record_accesses`."""
        with self._lock:
            accesses = list(self._pending.values())
            self._pending = {}
            return accesses

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                entries=len(self._entries), bytes=self._bytes, max_entries=self.max_entries,
                max_bytes=self.max_bytes, hits=self.hits, misses=self.misses,
                evictions=self.evictions, invalidations=self.invalidations,
                rejected_puts=self.rejected_puts,
            )

    # -- internals (lock held) -------------------------------------------------------------

    def _stale_since(self, since: int, dependencies: frozenset[str]) -> bool:
        if since == self._epoch:
            return False
        if since > self._epoch or not self._recent or self._recent[0][0] > since + 1:
            return True  # the log no longer covers the ticket: assume the worst
        for epoch, names in reversed(self._recent):
            if epoch <= since:
                break
            if names is None or not names.isdisjoint(dependencies):
                return True
        return False

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        bucket = self._by_priority[entry.priority]
        del bucket[key]
        if not bucket:
            del self._by_priority[entry.priority]
        for dependency in entry.depends_on:
            keys = self._keys_by_dependency[dependency]
            keys.discard(key)
            if not keys:
                del self._keys_by_dependency[dependency]
        self._bytes -= entry.size

    def _evict(self) -> None:
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            lowest = self._by_priority[min(self._by_priority)]
            self._remove(next(iter(lowest)))
            self.evictions += 1

    def _note_access(self, content_id: str, priority: int) -> None:
        now = int(self.clock())
        known = self._pending.get(content_id)
        if known is None:
            if len(self._pending) >= self.max_pending_accesses:
                self.dropped_accesses += 1
                return
            self._pending[content_id] = Access(
                content_id, content_type_of(content_id), now, 1, priority
            )
        else:
            self._pending[content_id] = Access(
                content_id, known.content_type, max(now, known.last_accessed), known.count + 1,
                priority,
            )


def cached_template(
    cache: QueryCache, conn: apsw.Connection, coordinate: str, own: Collection[str]
) -> dict[str, Any] | None:
    """:func:`resolve_template` through the cache (the answer is shared: do not modify it).

    The answer depends on the template and on every exercise it references, the missing
    ones included, so a new version, a deletion or a missing exercise arriving each
    invalidate it.

    Args:
        cache: the query cache.
        conn: a read connection.
        coordinate: the template's ``33402:<pubkey>:<d>``.
        own: the user's public keys, for the entry's priority.
    """
    cached: dict[str, Any] | None = cache.get(coordinate)
    if cached is not None:
        return cached
    ticket = cache.ticket()
    found = resolve_template(conn, coordinate)
    if found is None:
        return None
    depends_on = {reference["coordinate"] for reference in found["exercises"]}
    depends_on.update(found["missing"])
    priority = priority_for(found["pubkey"], own)
    cache.put(coordinate, found, depends_on, priority, len(dumps(found)), since=ticket)
    return found


def cached_exercise(
    cache: QueryCache, conn: apsw.Connection, coordinate: str, own: Collection[str]
) -> dict[str, Any] | None:
    """One current exercise definition by coordinate, through the cache.

    Its priority is high when the user wrote it or one of their templates uses it.
    """
    cached: dict[str, Any] | None = cache.get(coordinate)
    if cached is not None:
        return cached
    ticket = cache.ticket()
    found = library_queries.exercises_by_coordinate(conn, [coordinate]).get(coordinate)
    if found is None:
        return None
    used = cache_meta.referenced_by_authors(conn, coordinate, own)
    priority = priority_for(found["pubkey"], own, referenced_by_own=used)
    cache.put(coordinate, found, (), priority, len(dumps(found)), since=ticket)
    return found


async def flush_accesses(cache: QueryCache, writer: Writer, *, keep_rows: int = 100_000) -> int:
    """Write the recorded accesses to ``cache_metadata`` in one writer operation.

    Args:
        cache: the query cache whose access log is drained.
        writer: the store's writer.
        keep_rows: ``cache_metadata`` is pruned to this many rows.

    Returns:
        How many content ids were written.
    """
    accesses = cache.drain_accesses()
    if not accesses:
        return 0

    def operation(conn: apsw.Connection) -> int:
        written = cache_meta.record_accesses(conn, accesses)
        cache_meta.prune(conn, keep_rows)
        return written

    return await writer.run(operation)


async def run_access_flusher(
    cache: QueryCache, writer: Writer, interval_seconds: float = 30.0
) -> None:
    """Flush the access log every ``interval_seconds``, and once more when cancelled."""
    try:
        while True:
            await asyncio.sleep(interval_seconds)
            try:
                await flush_accesses(cache, writer)
            except apsw.Error as error:
                log.warning("cache metadata flush failed", reason=str(error))
    except asyncio.CancelledError:
        # Shutdown cancels before the store closes: keep what was counted.
        with contextlib.suppress(apsw.Error, RuntimeError):
            await flush_accesses(cache, writer)
        raise

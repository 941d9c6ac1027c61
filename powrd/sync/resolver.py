"""The resolver: drains the fetch queue of missing coordinates.

Due coordinates are batched per (kind, author) into one filter each (``kinds``,
``authors``, ``#d``), so N missing exercises of one author cost one REQ per relay, not
N. Relays are asked in order: the references' relay hints first (``ws(s)://`` only, at
most ``max_extra_relays`` that are not configured), then the configured read relays,
each only for what is still missing. A hinted relay that is not configured is learned,
not trusted: :mod:`powrd.sync.address` checks and pins its address (refusing private
ones unless ``[sync] allow_private_relays``), and :mod:`powrd.sync.learned` bounds how
often and how many at once it is tried. A refused hint is skipped, not retried.

A coordinate every relay answered EOSE for without serving it is ``not_found`` and is
retried on a long interval; one that could not be asked everywhere is retried with
exponential backoff.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import apsw
import structlog

from powrd.config import ResolverConfig
from powrd.protocol.filters import Filter
from powrd.store import fetchqueue, resolution
from powrd.store.ingest import BatchResult
from powrd.sync import backoff
from powrd.sync.address import (
    AddressPolicy,
    AddressRefused,
    Pinned,
    Resolve,
    UnresolvableHost,
    system_resolve,
)
from powrd.sync.fetch import FetchFailed, FetchResult, fetch_once, is_fetchable_url
from powrd.sync.learned import LearnedRelays
from powrd.sync.pipeline import Pipeline
from powrd.sync.waiting import wait_until_woken

log = structlog.get_logger("powrd.sync.resolver")

BACKFILL_POLL_SECONDS = 1.0
# A relay whose backfill never ends (no EOSE) must not hold the resolver back for ever.
BACKFILL_HOLD_MAX_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Missing:
    coordinate: str
    kind: int
    pubkey: str
    d: str
    hints: tuple[str, ...]


def batch_filters(missing: Sequence[Missing]) -> list[Filter]:
    """One filter per (kind, author) naming every wanted ``d``."""
    groups: dict[tuple[int, str], set[str]] = defaultdict(set)
    for entry in missing:
        groups[(entry.kind, entry.pubkey)].add(entry.d)
    return [
        Filter(kinds=frozenset({kind}), authors=frozenset({pubkey}), tags={"d": frozenset(ds)})
        for (kind, pubkey), ds in sorted(groups.items())
    ]


class Resolver:
    """Run :meth:`run` as a task; :meth:`wake` when coordinates went missing.

    Args:
        allow_private_relays: let hinted relays that are not configured resolve to
            loopback/private addresses (``[sync] allow_private_relays``).
        resolve: the name resolver for hinted relays (tests inject a stub).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        read_relays: Callable[[], list[str]],
        settings: ResolverConfig,
        *,
        max_frame_bytes: int = 1024 * 1024,
        backfilling: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
        allow_private_relays: bool = False,
        resolve: Resolve = system_resolve,
    ) -> None:
        self.pipeline = pipeline
        self.store = pipeline.store
        self.read_relays = read_relays
        self.settings = settings
        self.max_frame_bytes = max_frame_bytes
        self.clock = clock
        self.backfilling = backfilling
        self._held_since: float | None = None
        self.policy = AddressPolicy(
            ("ws", "wss"), allow_private=allow_private_relays, resolve=resolve
        )
        self.learned = LearnedRelays(
            settings.max_extra_relays,
            settings.retry_min_seconds,
            settings.retry_max_seconds,
            clock=clock,
        )
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def on_commit(self, batch: BatchResult) -> None:
        if batch.missing:
            self._wake.set()

    async def retry_not_found(self) -> None:
        """A relay was added: not_found coordinates may be there now."""
        now = int(self.clock())
        await self.store.writer.run(lambda conn: fetchqueue.retry_not_found(conn, now))
        self._wake.set()

    async def run(self) -> None:
        await self.store.writer.run(fetchqueue.release_in_flight)
        while True:
            self._wake.clear()
            if self._held_by_backfill():
                # What a backfill brings resolves most references: fetch after it ends.
                await wait_until_woken(self._wake, BACKFILL_POLL_SECONDS)
                continue
            worked = await self.run_once()
            if worked:
                continue
            next_due = fetchqueue.next_due(self.store.reader())
            timeout = None if next_due is None else max(0.05, next_due - self.clock())
            await wait_until_woken(self._wake, timeout)

    def _held_by_backfill(self) -> bool:
        if not self.backfilling():
            self._held_since = None
            return False
        now = time.monotonic()
        if self._held_since is None:
            self._held_since = now
        return now - self._held_since < BACKFILL_HOLD_MAX_SECONDS

    async def run_once(self) -> bool:
        """Attempt every due coordinate (one batch); returns False when nothing was due."""
        now = int(self.clock())
        rows = fetchqueue.due(self.store.reader(), now, self.settings.batch_max_coordinates)
        if not rows:
            return False
        batch = [Missing(c, k, p, d, tuple(h)) for c, k, p, d, h in rows]
        coordinates = [m.coordinate for m in batch]
        await self.store.writer.run(lambda conn: fetchqueue.mark_in_flight(conn, coordinates, now))
        failures = await self._fetch(batch)
        await self._settle(batch, failures)
        return True

    def _relay_order(self, batch: Sequence[Missing]) -> list[str]:
        """Hinted relays first (unconfigured ones capped), then the configured read relays."""
        configured = self.read_relays()
        hinted: list[str] = []
        for entry in batch:
            hinted.extend(h for h in entry.hints if is_fetchable_url(h) and h not in hinted)
        learned = [h for h in hinted if h not in configured and self._plain(h)]
        extra = learned[: self.settings.max_extra_relays]
        hinted_configured = [h for h in hinted if h in configured]
        return extra + hinted_configured + [c for c in configured if c not in hinted_configured]

    def _plain(self, url: str) -> bool:
        """A learned URL without query string, userinfo or fragment (else never asked)."""
        try:
            self.policy.check(url)
        except AddressRefused as refusal:
            log.info("relay hint refused", relay=url[:200], reason=str(refusal))
            return False
        return True

    async def _fetch(self, batch: list[Missing]) -> dict[str, list[str]]:
        """Ask relays in order; returns, per coordinate still missing, the relays that failed."""
        failures: dict[str, list[str]] = {m.coordinate: [] for m in batch}
        remaining = list(batch)
        configured = self.read_relays()
        for url in self._relay_order(batch):
            if not remaining:
                break
            wanted = [m for m in remaining if self._relay_applies(url, m)]
            if not wanted:
                continue
            try:
                if url in configured:
                    result = await self._ask(url, wanted, None)
                else:
                    result = await self._ask_learned(url, wanted)
            except AddressRefused as refusal:
                # For good: the coordinates fall through to the configured relays.
                log.info("relay hint refused", relay=url, reason=str(refusal))
                continue
            except FetchFailed as error:
                log.info("fetch failed", relay=url, reason=str(error), coordinates=len(wanted))
                for m in wanted:
                    failures[m.coordinate].append(f"{url}: {error}")
                continue
            if result.events:
                await self.pipeline.submit(url, result.events)
            reader = self.store.reader()
            remaining = [m for m in remaining if not resolution.is_present(reader, m.coordinate)]
        return {m.coordinate: failures[m.coordinate] for m in remaining}

    async def _ask(self, url: str, wanted: list[Missing], pinned: Pinned | None) -> FetchResult:
        return await fetch_once(
            url,
            batch_filters(wanted),
            within=self.settings.fetch_timeout_seconds,
            max_frame_bytes=self.max_frame_bytes,
            max_events=len(wanted) * 4 + 50,
            pinned=pinned,
        )

    async def _ask_learned(self, url: str, wanted: list[Missing]) -> FetchResult:
        """Ask a relay known only from a hint: checked, pinned, rate-limited.

        Raises:
            AddressRefused: the address policy refuses the URL.
            FetchFailed: deferred by the limits, unresolvable, or the fetch failed.
        """
        deferred = self.learned.deferred(url)
        if deferred is not None:
            raise FetchFailed(f"not tried: {deferred}")
        async with self.learned.attempt(url):
            try:
                pinned = await self.policy.pin(url)
                result = await self._ask(url, wanted, pinned)
            except (UnresolvableHost, FetchFailed) as error:
                self.learned.failed(url)
                raise FetchFailed(str(error)) from None
            self.learned.succeeded(url)
            return result

    def _relay_applies(self, url: str, entry: Missing) -> bool:
        """A hinted relay that is not configured is only asked for what hinted it."""
        return url in self.read_relays() or url in entry.hints

    async def _settle(self, batch: list[Missing], still_missing: dict[str, list[str]]) -> None:
        now = int(self.clock())
        s = self.settings
        reader = self.store.reader()
        # Only the batch's entries: the queue can hold a hundred thousand during a backfill.
        attempts = fetchqueue.attempts(reader, [e.coordinate for e in batch])
        decisions: list[tuple[str, str, int, str | None]] = []
        for entry in batch:
            if entry.coordinate not in still_missing:
                continue  # arrived: the writer already removed it from the queue
            failed = still_missing[entry.coordinate]
            if failed:
                tries = attempts.get(entry.coordinate, 1)
                delay = backoff.delay(tries, s.retry_min_seconds, s.retry_max_seconds)
                error = "; ".join(failed)[:500]
                decisions.append(
                    (entry.coordinate, fetchqueue.PENDING, now + int(delay) + 1, error)
                )
            else:
                retry_at = now + s.not_found_retry_seconds
                decisions.append(
                    (entry.coordinate, fetchqueue.NOT_FOUND, retry_at, "no relay had it")
                )

        def operation(conn: apsw.Connection) -> None:
            for coordinate, state, next_attempt, error in decisions:
                fetchqueue.settle(conn, coordinate, state, next_attempt, error)

        await self.store.writer.run(operation)
        found = len(batch) - len(still_missing)
        log.info("resolver pass", asked=len(batch), found=found, missing=len(still_missing))

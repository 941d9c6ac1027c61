"""NIP-65 outbox discovery: which relays to connect to, for whom, and why not others.

The relay lists themselves (kind 10002 of the configured authors and of the identity)
arrive like any other event: the configured read relays and ``[sync] index_relays`` are
asked for them (backfilled, then streamed live) and they are stored. :class:`Discovery`
reads the newest stored list per author, checks each URL against the learned-URL
address policy, and turns config plus lists into :class:`Target` s — the relay workers
the daemon should run, each with its scopes. It also watches discovered relays: one
that keeps failing is dropped for a while, with the reason shown in ``relays.list``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import apsw

from powrd.config import Config
from powrd.protocol.event import loads
from powrd.protocol.filters import Filter
from powrd.protocol.relay_list import KIND_RELAY_LIST, RelayList, parse_relay_list
from powrd.store import queries
from powrd.sync.address import AddressPolicy, AddressRefused
from powrd.sync.outbox_plan import choose_outbox_relays
from powrd.sync.plan import Scope, plan, public_scope
from powrd.sync.status import RelayStatus

# Failed connection attempts in a row before a discovered relay is dropped, and for how long.
FAILURES_BEFORE_DROP = 3
DROP_SECONDS = 1800.0
# The identity's own write relays that receive its events (NIP-65 suggests 2 to 4).
MAX_OWN_WRITE_RELAYS = 8
# Authors named per relay in relays.list (the count is always there).
MAX_AUTHORS_SHOWN = 100
# Refused URLs remembered (until a reload): past this, refusals are simply found again.
MAX_REFUSED = 10_000
# Author groups (checkpoint scopes) per discovered relay before they are merged again.
MAX_GROUPS_PER_RELAY = 4
# How often discovered relays' health is looked at, and how long commits are gathered
# before the stored relay lists are read again.
TICK_SECONDS = 5.0
SETTLE_SECONDS = 0.2

CONFIG = "config"
INDEX = "index"
NIP65 = "nip65"


@dataclass(frozen=True, slots=True)
class Target:
    """One relay connection the daemon should keep, and why."""

    url: str
    read: bool
    write: bool
    scopes: tuple[Scope, ...]
    source: str  # "config", "index" (asked for relay lists only) or "nip65"
    authors: frozenset[str] = frozenset()


@dataclass(slots=True)
class _AuthorList:
    created_at: int
    event_id: str
    relays: RelayList


@dataclass(slots=True)
class _Health:
    failures_at_last_connect: int = 0
    connects: int = 0


@dataclass(slots=True)
class _Dropped:
    reason: str
    until: float


@dataclass(slots=True)
class Discovery:
    """The relay lists seen, the relays dropped, and the plan they make.

    Args:
        policy: the learned-URL address policy (``allow_private_relays``).
        clock: unix time (tests inject one).
    """

    policy: AddressPolicy
    clock: Callable[[], float] = time.time
    failures_before_drop: int = FAILURES_BEFORE_DROP
    drop_seconds: float = DROP_SECONDS
    lists: dict[str, _AuthorList] = field(default_factory=dict)
    dropped: dict[str, _Dropped] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)
    _health: dict[str, _Health] = field(default_factory=dict)
    # Discovered relay -> the author groups it is read for, each its own checkpoint scope.
    _groups: dict[str, list[frozenset[str]]] = field(default_factory=dict)

    # -- relay lists --------------------------------------------------------------

    def read_lists(self, reader: apsw.Connection, authors: Collection[str]) -> bool:
        """Take the newest stored list of each of ``authors``; True when any changed."""
        if not authors:
            changed = bool(self.lists)
            self.lists = {}
            return changed
        flt = Filter(authors=frozenset(authors), kinds=frozenset((KIND_RELAY_LIST,)))
        raw = queries.query_events(reader, flt, max_limit=len(authors) + 1)
        return self.update_lists(raw, authors)

    def update_lists(self, raw_events: Iterable[str], authors: Iterable[str]) -> bool:
        """Keep the newest of ``raw_events`` per author of ``authors`` (a list already
        parsed is not parsed again); True when any author's list changed."""
        wanted = set(authors)
        fresh: dict[str, _AuthorList] = {}
        for raw in raw_events:
            event = loads(raw)
            author = event.get("pubkey")
            if event.get("kind") != KIND_RELAY_LIST or author not in wanted:
                continue
            known = fresh.get(author)
            if known is not None and known.created_at >= event["created_at"]:
                continue
            old = self.lists.get(author)
            if old is not None and old.event_id == event["id"]:
                fresh[author] = old
            else:
                fresh[author] = _AuthorList(
                    event["created_at"], event["id"], parse_relay_list(event.get("tags", []))
                )
        changed = {a: x.event_id for a, x in fresh.items()} != {
            a: x.event_id for a, x in self.lists.items()
        }
        self.lists = fresh
        return changed

    def refuse(self, url: str, reason: str) -> None:
        """The address policy refused ``url`` when connecting: leave it out from now on."""
        if len(self.refused) < MAX_REFUSED:
            self.refused[url] = reason

    def _usable(self, url: str) -> bool:
        """The URL passes the address policy's form check and is not dropped now."""
        if url in self.refused:
            return False
        try:
            self.policy.check(url)
        except AddressRefused as error:
            self.refuse(url, str(error))
            return False
        dropped = self.dropped.get(url)
        return dropped is None or dropped.until <= self.clock()

    def write_relays(self, author: str) -> list[str]:
        found = self.lists.get(author)
        if found is None:
            return []
        return [url for url in found.relays.write_urls if self._usable(url)]

    # -- the plan -----------------------------------------------------------------

    def targets(self, config: Config, identity: str | None) -> dict[str, Target]:
        """Every relay to keep a connection to: configured, index and discovered ones."""
        sync = config.sync
        own_scopes = plan(sync.authors, sync.kinds, sync.max_authors_per_filter)
        own_scopes += public_scope(sync.public_kinds)
        list_authors = set(sync.authors) | ({identity} if identity else set())
        list_scopes = (
            plan(tuple(sorted(list_authors)), (KIND_RELAY_LIST,), sync.max_authors_per_filter)
            if sync.outbox
            else []
        )
        targets: dict[str, Target] = {}
        for relay in config.relays:
            scopes = tuple(own_scopes + list_scopes) if relay.read else ()
            targets[relay.url] = Target(relay.url, relay.read, relay.write, scopes, CONFIG)
        if not sync.outbox:
            return targets
        for url in sync.index_relays:
            if url not in targets and list_scopes:
                targets[url] = Target(url, True, False, tuple(list_scopes), INDEX)
        already_read = [relay.url for relay in config.relays if relay.read]
        chosen = choose_outbox_relays(
            {author: self.write_relays(author) for author in sync.authors},
            per_author=sync.outbox_relays_per_author,
            max_relays=sync.max_discovered_relays,
            already_read=already_read,
        )
        for url, authors in chosen.items():
            scopes = self._scopes(url, authors, sync.kinds, sync.max_authors_per_filter)
            known = targets.get(url)
            if known is None:
                targets[url] = Target(url, True, False, scopes, NIP65, authors)
            else:  # an index or write-only configured relay, now also read for these authors
                scopes = known.scopes + scopes
                targets[url] = Target(url, True, known.write, scopes, known.source, authors)
        for url in [u for u in self._groups if u not in chosen]:
            del self._groups[url]
        if identity is not None:
            for url in self.write_relays(identity)[:MAX_OWN_WRITE_RELAYS]:
                known = targets.get(url)
                if known is None:
                    targets[url] = Target(url, False, True, (), NIP65)
                elif not known.write and known.source != CONFIG:  # write = false wins
                    targets[url] = Target(
                        url, known.read, True, known.scopes, known.source, known.authors
                    )
        return targets

    def _scopes(
        self, url: str, authors: frozenset[str], kinds: tuple[int, ...], per_filter: int
    ) -> tuple[Scope, ...]:
        """Scopes for ``authors`` on one discovered relay, keeping earlier groups.

        A scope's checkpoint is keyed by its authors, so one scope for the whole set
        would send every author back to the beginning whenever one joins. Instead a
        group that is still wholly served keeps its scope (and checkpoint), and the
        newcomers form a group of their own; past MAX_GROUPS_PER_RELAY groups they are
        merged again (one fresh backfill) to keep the REQs per relay few.
        """
        kept = [g for g in self._groups.get(url, []) if g <= authors]
        newcomers = authors.difference(*kept)
        groups = kept + ([frozenset(newcomers)] if newcomers else [])
        if len(groups) > MAX_GROUPS_PER_RELAY:
            groups = [authors]
        self._groups[url] = groups
        return tuple(
            scope
            for group in groups
            for scope in plan(tuple(sorted(group)), kinds, per_filter)
        )

    # -- the running task ---------------------------------------------------------

    async def follow(
        self,
        wake: asyncio.Event,
        read_lists: Callable[[], bool],
        learned: Callable[[], Mapping[str, RelayStatus]],
        replan: Callable[[], None],
    ) -> None:
        """Re-plan when stored lists change (``wake`` is set on commits) or a
        discovered relay keeps failing; run as a task, cancel to stop."""
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
            # that arrives as the event is set, and the daemon's stop would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await wake.wait()
            if wake.is_set():
                await asyncio.sleep(SETTLE_SECONDS)  # gather a backfill's commits
                wake.clear()
            changed = read_lists()
            if self.observe(learned()) or changed:
                replan()

    # -- health -------------------------------------------------------------------

    def observe(self, statuses: Mapping[str, RelayStatus]) -> bool:
        """Look at discovered relays' connection counters; True when one was dropped
        or a drop ran out (the plan changes)."""
        now = self.clock()
        changed = False
        for url in [u for u, d in self.dropped.items() if d.until <= now]:
            del self.dropped[url]
            changed = True
        for url, status in statuses.items():
            health = self._health.setdefault(url, _Health())
            failures = status.connect_attempts - status.connects
            if status.state.value == "connecting":
                failures -= 1  # the attempt under way has not failed (yet)
            if status.connects != health.connects:
                health.connects = status.connects
                health.failures_at_last_connect = failures
            if failures - health.failures_at_last_connect >= self.failures_before_drop:
                reason = status.last_error or "connection failed"
                self.dropped[url] = _Dropped(
                    f"{self.failures_before_drop} failed connections in a row: {reason}"[:300],
                    now + self.drop_seconds,
                )
                del self._health[url]
                changed = True
        for url in [u for u in self._health if u not in statuses]:
            del self._health[url]
        return changed

    # -- reporting ----------------------------------------------------------------

    def report(self, targets: Mapping[str, Target], authors: Iterable[str]) -> dict[str, Any]:
        """The ``discovery`` part of ``relays.list``: lists per author, dropped relays."""
        now = self.clock()
        serving: Counter[str] = Counter()
        for target in targets.values():
            serving.update(target.authors)
        per_author: dict[str, Any] = {}
        for author in authors:
            found = self.lists.get(author)
            if found is None:
                per_author[author] = {"relay_list": None, "read_from": serving[author]}
                continue
            unusable = {
                url: self.refused.get(url) or self.dropped[url].reason
                for url in found.relays.write_urls
                if url in self.refused or url in self.dropped
            }
            per_author[author] = {
                "relay_list": found.event_id,
                "created_at": found.created_at,
                "write_relays": len(found.relays.write_urls),
                "read_from": serving[author],
                "skipped": dict(found.relays.skipped),
                "unusable": unusable,
            }
        return {
            "authors": per_author,
            "dropped": [
                {"url": url, "reason": d.reason, "retry_in_s": round(max(0.0, d.until - now))}
                for url, d in sorted(self.dropped.items())
            ],
        }


def target_fields(target: Target | None) -> dict[str, Any]:
    """``source`` and ``authors`` for one ``relays.list`` entry."""
    if target is None:
        return {"source": CONFIG}
    authors = sorted(target.authors)
    return {
        "source": target.source,
        "authors": authors[:MAX_AUTHORS_SHOWN],
        "author_count": len(authors),
    }

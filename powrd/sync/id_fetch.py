"""Fetching known ids from a relay, shared out between the relays that hold them.

A negentropy reconciliation tells each relay's backfill which ids the store lacks. When
several relays hold the same events (the usual case: an author writes to all of them),
each would download all of them. Instead every page is built just before it is asked
for, from the ids that are neither held (admitted by the pipeline, or stored) nor
claimed by another relay (:class:`FetchClaims`). The relays then fetch disjoint shares
side by side.

A claim lasts while its page is in flight and, for the events that arrived, until the
pipeline has settled them (stored, found stored, or rejected). An id another relay
claimed is set aside; once a run has asked for everything else it waits for those
claims to end and asks for whatever is still not held: a relay that drops its
connection, times out or sends a forged copy holds nothing back. A wait lasts at most
``wait_seconds``; after that the run asks for the claimed ids itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from powrd.protocol.filters import Filter
from powrd.sync.packed_ids import PackedIds

MAX_IDS_PER_REQ = 500

Held = Callable[[list[str]], set[str]]


class FetchClaims:
    """Which relay's run is fetching which id, and who waits for claims to end."""

    def __init__(self) -> None:
        self._owner: dict[str, object] = {}
        self._waiting: dict[object, Callable[[], None]] = {}
        # Bumped whenever a claim ends, so a waiting run knows it may look again.
        self.version = 0

    def __len__(self) -> int:
        return len(self._owner)

    def held_by(self, event_id: str, owner: object) -> bool:
        return self._owner.get(event_id) is owner

    def claimed_by_other(self, event_id: str, owner: object) -> bool:
        claimant = self._owner.get(event_id)
        return claimant is not None and claimant is not owner

    def claim(self, ids: Iterable[str], owner: object) -> None:
        for event_id in ids:
            self._owner[event_id] = owner

    def release(self, ids: Iterable[str], owner: object) -> None:
        """End ``owner``'s claims on ``ids`` (claims of others stay)."""
        self._ended([i for i in ids if self._owner.get(i) is owner])

    def settle(self, ids: Iterable[str]) -> None:
        """The pipeline is done with ``ids``: whoever claimed them, they are no one's now."""
        self._ended([i for i in ids if i in self._owner])

    def wait(self, owner: object, wake: Callable[[], None]) -> None:
        """Call ``wake`` (once) when a claim next ends."""
        self._waiting[owner] = wake

    def _ended(self, ids: list[str]) -> None:
        if not ids:
            return
        for event_id in ids:
            del self._owner[event_id]
        self.version += 1
        waiting, self._waiting = self._waiting, {}
        for wake in waiting.values():
            wake()


def _nothing_held(ids: list[str]) -> set[str]:
    return set()


class IdFetch:
    """A backfill run that fetches known ids: ``REQ {ids}`` pages, one after another.

    It has the shape of :class:`~powrd.protocol.paging.Backfill` (``next_request``,
    ``observe``, ``page_done``, ``done``, ``warnings``), so the subscriptions run it the
    same way; ``next_request`` may also answer ``[]``: nothing to ask until another
    relay's claims end (see :meth:`wait` and :meth:`may_go_on`).

    The ids wait packed (:class:`~powrd.sync.packed_ids.PackedIds`, 32 bytes each) and
    become hex strings a page at a time.

    Args:
        need: the ids to fetch, in the order to ask for them (hex, or packed: a
            :class:`PackedIds` is taken over, not copied).
        claims: shared with the other relays' runs (None: this run fetches alone).
        held: which of some ids are already admitted or stored, so not asked for.
        batch: ids per page at most.
    """

    def __init__(
        self,
        need: PackedIds | Iterable[str],
        claims: FetchClaims | None = None,
        held: Held = _nothing_held,
        batch: int = MAX_IDS_PER_REQ,
    ) -> None:
        self._remaining = need if isinstance(need, PackedIds) else PackedIds.from_hex(need)
        self._set_aside = PackedIds()
        self._claims = claims
        self._held = held
        self._batch = batch
        self._page: set[str] = set()
        self._arrived: set[str] = set()
        self._finished = False
        self._waited_version: int | None = None
        self._wait_until = float("inf")
        self._overdue = False
        self.warnings: list[str] = []
        self.pages = 0
        self.skipped = 0

    @property
    def done(self) -> bool:
        return self._finished

    @property
    def waiting(self) -> bool:
        return self._waited_version is not None

    @property
    def wait_until(self) -> float:
        return self._wait_until

    def next_request(self) -> list[Filter] | None:
        """The next page; None when every id is asked for, ``[]`` to wait for others."""
        take_claimed, self._overdue = self._overdue, False
        self._waited_version = None
        page = self._build_page()
        if not page and self._set_aside:
            # The rest is asked for: look again at what others were fetching.
            self._remaining.extend(self._set_aside.raw())
            self._set_aside = PackedIds()
            page = self._build_page(take_claimed=take_claimed)
        if not page and self._set_aside:
            assert self._claims is not None  # only claims set ids aside
            self._waited_version = self._claims.version
            return []
        if not page:
            self._finished = True
            return None
        self._page = set(page)
        if self._claims is not None:
            self._claims.claim(page, self)
        return [Filter(ids=frozenset(page))]

    def wait(self, wake: Callable[[], None], until: float) -> None:
        """After ``next_request`` said ``[]``: ``wake`` when a claim ends; stop at ``until``."""
        assert self._claims is not None
        self._wait_until = until
        self._claims.wait(self, wake)

    def may_go_on(self, now: float) -> bool:
        """While waiting: a claim ended since, or the wait is over."""
        if self._waited_version is None or self._claims is None:
            return False
        self._overdue = now >= self._wait_until
        return self._overdue or self._claims.version != self._waited_version

    def _build_page(self, *, take_claimed: bool = False) -> list[str]:
        page: list[str] = []
        claims = self._claims
        while self._remaining and len(page) < self._batch:
            raw = self._remaining.take(self._batch - len(page))
            candidates = [event_id.hex() for event_id in raw]
            held = self._held(candidates)
            self.skipped += len(held)
            for raw_id, event_id in zip(raw, candidates, strict=True):
                if event_id in held:
                    continue
                if not take_claimed and claims is not None and claims.claimed_by_other(
                    event_id, self
                ):
                    self._set_aside.append(raw_id)
                else:
                    page.append(event_id)
        return page

    def observe(self, created_at: int, event_id: str) -> None:
        """An event of the page arrived: its claim now ends when the pipeline settles it."""
        if event_id in self._page:
            self._arrived.add(event_id)

    def page_done(self) -> None:
        claims = self._claims
        if claims is not None:
            claims.release(self._page - self._arrived, self)
        # Only arrivals whose claims the pipeline has not settled yet are worth keeping
        # (to release if the run ends first): a run of a million ids kept them all.
        self._arrived = (
            {i for i in self._arrived if claims.held_by(i, self)} if claims is not None else set()
        )
        self._page = set()
        self.pages += 1

    def release(self) -> None:
        """End every claim of this run (its connection ended, or it was given up)."""
        if self._claims is not None:
            self._claims.release(self._page | self._arrived, self)
        self._page = set()
        self._arrived = set()

"""Backfill paging for relays that cap how many stored events one REQ returns.

Relays answer a REQ with at most a few hundred events, newest first. To fetch
everything since a checkpoint the client pages backwards: each page asks ``until`` the
oldest ``created_at`` of the previous page, *inclusive*, because the relay may have
cut the page in the middle of a second. Events of that boundary second that were
already seen are recognised by id; only that second's ids are remembered.

Base filters are paged one after another, each on its own. Relays apply ``limit`` per
filter, so in a REQ with several filters the oldest event of the page says nothing
about where each filter was cut; paging a single filter keeps that boundary exact.

A filter's backfill ends when a page brings no new event. A page made only of the
boundary second's known events can mean that the relay holds more events in that
second than it returns per request; then paging steps past that second and, when the
relay's cap is established, records a warning instead of asking the same page forever.
"""

from __future__ import annotations

from dataclasses import dataclass

from powrd.protocol.filters import Filter

DEFAULT_PAGE_LIMIT = 500
DEFAULT_MAX_IDS_PER_SECOND = 10_000


@dataclass(frozen=True, slots=True)
class _PageSummary:
    """What the previous page of the current filter looked like."""

    count: int
    oldest: int
    # True when paging stepped past this page's second without knowing the relay's cap.
    stepped_unsure: bool = False


class Backfill:
    """Plans the pages that fetch every stored event matching some filters.

    Drive it with :meth:`next_request` (send its filters as a REQ), :meth:`observe`
    for each event of that page, and :meth:`page_done` at EOSE, until
    :meth:`next_request` returns None.

    Args:
        filters: the base filters; their own ``since``/``until`` narrow the range.
        since: the oldest ``created_at`` wanted (checkpoint minus overlap), or None.
        page_limit: the ``limit`` asked of the relay per page.
        max_ids_per_second: how many ids of one boundary second to remember before
            giving up on that second (a bound on memory against a hostile relay).

    Attributes:
        warnings: human-readable notes on seconds that may be incomplete.
        newest_seen: the newest ``created_at`` observed, for the checkpoint.
        pages: how many pages have been completed.
    """

    def __init__(
        self,
        filters: list[Filter],
        since: int | None,
        page_limit: int = DEFAULT_PAGE_LIMIT,
        *,
        max_ids_per_second: int = DEFAULT_MAX_IDS_PER_SECOND,
    ) -> None:
        if page_limit < 1:
            raise ValueError("page_limit must be at least 1")
        self.warnings: list[str] = []
        self.newest_seen: int | None = None
        self.pages = 0
        self._filters = list(filters)
        self._since = since
        self._page_limit = page_limit
        self._max_ids_per_second = max_ids_per_second
        # What this relay has shown of its cap; it holds across filters.
        self._largest_page = 0
        self._relay_cap: int | None = None
        self._index = -1
        self._until: int | None = None
        self._boundary_ids: set[str] = set()
        self._previous: _PageSummary | None = None
        self._in_flight = False
        # The page in flight: events counted, new ones, its oldest second and its ids.
        self._page_count = 0
        self._page_new = 0
        self._page_oldest: int | None = None
        self._page_oldest_ids: set[str] = set()
        self._next_filter()

    @property
    def done(self) -> bool:
        return self._index >= len(self._filters)

    def next_request(self) -> list[Filter] | None:
        """The filters of the next page, or None when the backfill is complete.

        Asking again before :meth:`page_done` returns the same page.
        """
        if self.done:
            return None
        self._in_flight = True
        base = self._filters[self._index]
        return [
            base.with_bounds(
                since=self._effective_since(), until=self._until, limit=self._page_limit
            )
        ]

    def observe(self, created_at: int, event_id: str) -> None:
        """Count one event of the current page (one that passed the session checks)."""
        if self.newest_seen is None or created_at > self.newest_seen:
            self.newest_seen = created_at
        if not self._in_flight or (self._until is not None and created_at > self._until):
            return  # not part of this page: a live event, or a relay ignoring `until`
        self._page_count += 1
        if self._until is None or created_at < self._until or event_id not in self._boundary_ids:
            self._page_new += 1
        if self._page_oldest is None or created_at < self._page_oldest:
            self._page_oldest = created_at
            self._page_oldest_ids = {event_id}
        elif created_at == self._page_oldest:
            self._page_oldest_ids.add(event_id)

    def page_done(self) -> None:
        """The relay sent EOSE for the current page."""
        if not self._in_flight or self.done:
            return
        self._in_flight = False
        self.pages += 1
        count, oldest = self._page_count, self._page_oldest
        self._learn_cap(count, oldest)
        if self._page_new and oldest is not None:
            self._advance(count, oldest)
        elif count and self._until is not None and self._maybe_capped(count):
            self._step_past(self._until, count)
        else:
            self._next_filter()
        self._largest_page = max(self._largest_page, count)
        self._reset_page()

    # -- page outcomes ----------------------------------------------------------

    def _learn_cap(self, count: int, oldest: int | None) -> None:
        # Events older than everything the previous page returned were within its
        # range too, so the relay cut that page short: its size is the relay's cap.
        previous = self._previous
        if previous is None or not count or oldest is None or oldest >= previous.oldest:
            return
        self._relay_cap = previous.count
        if previous.stepped_unsure:
            self._warn_overfull(previous.oldest, previous.count)

    def _advance(self, count: int, oldest: int) -> None:
        if oldest == self._until:
            self._boundary_ids |= self._page_oldest_ids
        else:
            self._until = oldest
            self._boundary_ids = set(self._page_oldest_ids)
        self._previous = _PageSummary(count, oldest)
        if len(self._boundary_ids) > self._max_ids_per_second:
            self.warnings.append(
                f"created_at {oldest}: over {self._max_ids_per_second} events in one second;"
                " skipping the rest of that second"
            )
            self._step_to(oldest - 1)

    def _maybe_capped(self, count: int) -> bool:
        if self._certainly_capped(count):
            return True
        # Unknown cap: a page as big as any seen so far may have been cut by it.
        return self._relay_cap is None and count >= self._largest_page

    def _certainly_capped(self, count: int) -> bool:
        return count >= self._page_limit or (
            self._relay_cap is not None and count >= self._relay_cap
        )

    def _step_past(self, second: int, count: int) -> None:
        certain = self._certainly_capped(count)
        if certain:
            self._warn_overfull(second, count)
        self._previous = _PageSummary(count, second, stepped_unsure=not certain)
        self._step_to(second - 1)

    def _step_to(self, until: int) -> None:
        self._until = until
        self._boundary_ids = set()
        if until < 0 or (self._effective_since() or 0) > until:
            self._next_filter()

    def _warn_overfull(self, second: int, count: int) -> None:
        self.warnings.append(
            f"created_at {second}: the relay returns at most {count} events per request and"
            " that second fills a whole page; events beyond them in that second may be missing"
        )

    # -- state ------------------------------------------------------------------

    def _next_filter(self) -> None:
        self._index += 1
        self._previous = None
        self._boundary_ids = set()
        if self.done:
            return
        self._until = self._filters[self._index].until
        if self._until is not None and (self._effective_since() or 0) > self._until:
            self._next_filter()

    def _effective_since(self) -> int | None:
        own = self._filters[self._index].since
        if own is None or self._since is None:
            return self._since if own is None else own
        return max(own, self._since)

    def _reset_page(self) -> None:
        self._page_count = 0
        self._page_new = 0
        self._page_oldest = None
        self._page_oldest_ids = set()

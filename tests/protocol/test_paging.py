"""Backfill paging against simulated relays that cap every REQ."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.protocol.event import Event
from powrd.protocol.filters import Filter
from powrd.protocol.paging import Backfill

AUTHORS = [f"{n:064x}" for n in range(1, 5)]
KINDS = [1301, 33401]
MAX_PAGES = 5000


def stored(number: int, created_at: int, author: str = AUTHORS[0], kind: int = 1301) -> Event:
    return Event(f"{number:064x}", author, created_at, kind, [], "", "00" * 64)


@dataclass
class SimulatedRelay:
    """A relay holding ``events``: newest first, ties in any order, at most ``cap`` per REQ."""

    events: list[Event]
    cap: int
    rng: random.Random | None = None
    requests: int = 0

    def query(self, filters: list[Filter]) -> list[Event]:
        self.requests += 1
        matching = [e for e in self.events if any(f.matches(e) for f in filters)]
        if self.rng is not None:
            self.rng.shuffle(matching)  # the sort below is stable: ties stay shuffled
        matching.sort(key=lambda e: -e.created_at)
        limits = [f.limit for f in filters if f.limit is not None]
        return matching[: min([self.cap, *limits])]


def run(backfill: Backfill, relay: SimulatedRelay) -> set[str]:
    """Drive a backfill to completion; the ids of every event the relay sent."""
    received: set[str] = set()
    for _ in range(MAX_PAGES):
        request = backfill.next_request()
        if request is None:
            return received
        for event in relay.query(request):
            backfill.observe(event.created_at, event.id)
            received.add(event.id)
        backfill.page_done()
    pytest.fail("backfill did not finish")


def wanted(events: list[Event], filters: list[Filter], since: int | None) -> set[str]:
    return {
        e.id
        for e in events
        if any(f.matches(e) for f in filters) and (since is None or e.created_at >= since)
    }


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Event], list[Filter], int | None]:
    times = draw(st.lists(st.integers(0, 25), min_size=0, max_size=120))
    events = [
        stored(n, t, draw(st.sampled_from(AUTHORS)), draw(st.sampled_from(KINDS)))
        for n, t in enumerate(times)
    ]
    filters = draw(
        st.lists(
            st.builds(
                Filter,
                authors=st.frozensets(st.sampled_from(AUTHORS), min_size=1),
                kinds=st.none() | st.frozensets(st.sampled_from(KINDS), min_size=1),
            ),
            min_size=1,
            max_size=3,
        )
    )
    since = draw(st.none() | st.integers(0, 25))
    return events, filters, since


def largest_second(events: list[Event], filters: list[Filter]) -> int:
    """The most events one filter matches within a single second."""
    sizes = [
        count
        for f in filters
        for count in Counter(e.created_at for e in events if f.matches(e)).values()
    ]
    return max(sizes, default=1)


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.integers(0, 6), st.integers(0, 6), st.randoms(use_true_random=False))
def test_backfill_gets_every_event_when_no_second_exceeds_the_cap(
    scenario: tuple[list[Event], list[Filter], int | None],
    cap_extra: int,
    limit_extra: int,
    rng: random.Random,
) -> None:
    events, filters, since = scenario
    group = largest_second(events, filters)
    relay = SimulatedRelay(events, cap=group + cap_extra, rng=rng)
    backfill = Backfill(filters, since, page_limit=group + limit_extra)
    assert run(backfill, relay) == wanted(events, filters, since)
    assert backfill.done
    assert backfill.newest_seen == max(
        (e.created_at for e in events if e.id in wanted(events, filters, since)), default=None
    )


@settings(max_examples=100, deadline=None)
@given(scenarios(), st.integers(1, 4), st.randoms(use_true_random=False))
def test_backfill_with_overfull_seconds_finishes_and_loses_only_those_seconds(
    scenario: tuple[list[Event], list[Filter], int | None], cap: int, rng: random.Random
) -> None:
    events, filters, since = scenario
    relay = SimulatedRelay(events, cap=cap, rng=rng)
    received = run(Backfill(filters, since, page_limit=500), relay)
    expected = wanted(events, filters, since)
    assert received <= expected
    for flt in filters:
        mine = [e for e in events if e.id in expected and flt.matches(e)]
        per_second = Counter(e.created_at for e in mine)
        assert {e.id for e in mine if per_second[e.created_at] <= cap} <= received


def test_pages_walk_back_with_an_inclusive_until() -> None:
    base = Filter(kinds=frozenset({1301}))
    backfill = Backfill([base], since=5, page_limit=4)
    assert backfill.next_request() == [base.with_bounds(since=5, limit=4)]
    assert backfill.next_request() == [base.with_bounds(since=5, limit=4)]  # same page again
    for number, created_at in [(1, 30), (2, 20), (3, 20), (4, 20)]:
        backfill.observe(created_at, f"{number:064x}")
    backfill.page_done()
    assert backfill.next_request() == [base.with_bounds(since=5, until=20, limit=4)]
    for number, created_at in [(2, 20), (3, 20), (4, 20), (5, 20)]:
        backfill.observe(created_at, f"{number:064x}")
    backfill.page_done()
    # Event 5 shared the boundary second: still second 20, now with four known ids.
    assert backfill.next_request() == [base.with_bounds(since=5, until=20, limit=4)]
    for number, created_at in [(3, 20), (4, 20), (5, 20), (6, 12)]:
        backfill.observe(created_at, f"{number:064x}")
    backfill.page_done()
    assert backfill.next_request() == [base.with_bounds(since=5, until=12, limit=4)]
    backfill.observe(12, f"{6:064x}")
    backfill.page_done()
    assert backfill.next_request() is None
    assert backfill.done
    assert (backfill.pages, backfill.newest_seen, backfill.warnings) == (4, 30, [])


def test_a_second_fuller_than_the_page_steps_on_with_a_warning() -> None:
    events = [stored(n, 50) for n in range(5)] + [stored(9, 40)]
    relay = SimulatedRelay(events, cap=100)
    backfill = Backfill([Filter()], None, page_limit=3)
    received = run(backfill, relay)
    assert len(received) == 4
    assert stored(9, 40).id in received
    assert len(backfill.warnings) == 1
    assert "created_at 50" in backfill.warnings[0]


def test_a_cap_found_later_warns_about_the_second_it_cut() -> None:
    # The relay returns 3 events per REQ while powrd asks for 500: the second 10 looks
    # complete until an older event proves that the relay was cutting pages short.
    events = [stored(n, 10) for n in range(4)] + [stored(9, 5)]
    relay = SimulatedRelay(events, cap=3)
    backfill = Backfill([Filter()], None, page_limit=500)
    received = run(backfill, relay)
    assert stored(9, 5).id in received
    assert len(received) == 4
    assert len(backfill.warnings) == 1
    assert "created_at 10" in backfill.warnings[0]


def test_no_warning_when_the_last_page_was_merely_small() -> None:
    relay = SimulatedRelay([stored(1, 10)], cap=3)
    backfill = Backfill([Filter()], None, page_limit=500)
    assert run(backfill, relay) == {stored(1, 10).id}
    assert backfill.warnings == []


def test_filters_are_paged_one_after_another() -> None:
    first, second = Filter(authors=frozenset({AUTHORS[0]})), Filter(authors=frozenset({AUTHORS[1]}))
    events = [stored(1, 10, AUTHORS[0]), stored(2, 11, AUTHORS[0]), stored(3, 20, AUTHORS[1])]
    relay = SimulatedRelay([*events, stored(4, 21, AUTHORS[1])], cap=10)
    backfill = Backfill([first, second], None, page_limit=10)
    assert backfill.next_request() == [first.with_bounds(limit=10)]
    assert run(backfill, relay) == {f"{n:064x}" for n in range(1, 5)}
    assert relay.requests == 4  # each filter: one page, then one that brings nothing new


def test_base_filter_bounds_narrow_the_range() -> None:
    base = Filter(kinds=frozenset({1}), since=50, until=100, limit=7)
    backfill = Backfill([base], since=30, page_limit=10)
    assert backfill.next_request() == [base.with_bounds(since=50, until=100, limit=10)]
    assert Backfill([base], since=70).next_request() == [
        base.with_bounds(since=70, until=100, limit=500)
    ]
    assert Backfill([base], since=101).next_request() is None


def test_nothing_to_page() -> None:
    backfill = Backfill([], None, 500)
    assert backfill.done
    assert backfill.next_request() is None
    backfill.page_done()
    assert backfill.pages == 0


def test_events_outside_the_page_only_move_newest_seen() -> None:
    backfill = Backfill([Filter()], None, page_limit=2)
    backfill.observe(99, "ff" * 32)  # between pages: a live event
    backfill.next_request()
    backfill.observe(10, "01" * 32)
    backfill.observe(9, "02" * 32)
    backfill.page_done()
    backfill.next_request()
    backfill.observe(50, "03" * 32)  # newer than `until`: not part of this page
    backfill.page_done()
    assert backfill.done
    assert backfill.newest_seen == 99


def test_a_relay_inventing_events_in_one_second_cannot_keep_paging_forever() -> None:
    backfill = Backfill([Filter()], None, page_limit=10, max_ids_per_second=50)
    fresh = iter(range(10**6))
    pages = 0
    while backfill.next_request() is not None and pages < MAX_PAGES:
        for _ in range(10):
            backfill.observe(1000, f"{next(fresh):064x}")
        backfill.page_done()
        pages += 1
    assert backfill.done
    assert pages < 20
    assert any("over 50 events in one second" in w for w in backfill.warnings)


def test_page_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Backfill([Filter()], None, page_limit=0)

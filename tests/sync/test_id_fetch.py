"""Fetching known ids is shared out between relays, and nothing is held back for long.

:class:`IdFetch` runs are driven by hand here (they are sans-I/O state machines); the
last test runs three real relays holding the same events through the daemon.
"""

from __future__ import annotations

import json
from pathlib import Path

from powrd.protocol.filters import Filter
from powrd.sync.id_fetch import FetchClaims, IdFetch
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import keys_for, make_event, pubkey_of
from tests.support.relays import start_local_relay

IDS = [f"{n:064x}" for n in range(1201)]


def asked(filters: list[Filter] | None) -> set[str]:
    assert filters is not None and len(filters) == 1
    return set(filters[0].ids or ())


def test_a_lone_run_asks_for_every_id_in_pages_of_500() -> None:
    run = IdFetch(IDS)
    pages = []
    while (filters := run.next_request()) is not None:
        pages.append(asked(filters))
        run.page_done()
    assert [len(p) for p in pages] == [500, 500, 201]
    assert set().union(*pages) == set(IDS)
    assert run.done
    assert IdFetch([]).next_request() is None


def test_held_ids_are_not_asked_for() -> None:
    held = set(IDS[::3])
    run = IdFetch(IDS, held=lambda ids: {i for i in ids if i in held})
    pages = []
    while (filters := run.next_request()) is not None:
        pages.append(asked(filters))
        run.page_done()
    assert set().union(*pages) == set(IDS) - held
    assert run.skipped == len(held)


class Relay:
    """One relay's run, answered page by page in full; the pipeline settles at once."""

    def __init__(self, run: IdFetch, claims: FetchClaims, stored: set[str]) -> None:
        self.run, self.claims, self.stored = run, claims, stored
        self.asked: set[str] = set()
        self.page: set[str] = set()

    def ask(self, now: float = 0.0) -> bool:
        """Ask for the next page if the run has one; False once it is done."""
        if self.run.done:
            return False
        if self.run.waiting and not self.run.may_go_on(now):
            return True
        filters = self.run.next_request()
        if filters == []:
            self.run.wait(lambda: None, until=10.0)
        elif filters is not None:
            self.page = asked(filters)
            self.asked |= self.page
        return not self.run.done

    def answer(self, *, forged: bool = False) -> None:
        if not self.page:
            return
        for event_id in self.page:
            self.run.observe(0, event_id)
        self.run.page_done()
        if not forged:
            self.stored |= self.page
        self.claims.settle(self.page)
        self.page = set()


def two_relays() -> tuple[Relay, Relay, FetchClaims]:
    claims = FetchClaims()
    stored: set[str] = set()

    def held(ids: list[str]) -> set[str]:
        return {i for i in ids if i in stored}

    return (Relay(IdFetch(IDS, claims, held), claims, stored),
            Relay(IdFetch(IDS, claims, held), claims, stored), claims)


def test_two_relays_fetch_disjoint_shares() -> None:
    first, second, claims = two_relays()
    while first.ask() | second.ask():
        first.answer()
        second.answer()
    assert first.asked | second.asked == set(IDS)
    assert not first.asked & second.asked
    assert len(claims) == 0


def test_a_run_waits_for_a_page_in_flight_and_takes_what_did_not_arrive() -> None:
    first, second, _ = two_relays()
    first.ask()  # ids 0-499, in flight while the second relay asks for everything else
    while second.ask() and not second.run.waiting:
        second.answer()
    assert second.asked == set(IDS[500:])
    assert second.run.waiting and not second.run.may_go_on(0.0)
    first.answer(forged=True)  # arrived, failed verification: nothing stored
    assert second.run.may_go_on(0.0)
    second.ask()
    assert second.page == set(IDS[:500])


def test_a_claim_that_never_ends_is_waited_for_only_until_the_timeout() -> None:
    claims = FetchClaims()
    stalled = IdFetch(IDS[:500], claims)
    stalled_page = asked(stalled.next_request())  # asked, never answered
    run = IdFetch(IDS, claims)
    pages = []
    while (filters := run.next_request()) is not None:
        if filters == []:
            run.wait(lambda: None, until=30.0)
            assert not run.may_go_on(29.9)
            assert run.may_go_on(30.0)
            continue
        pages.append(asked(filters))
        run.page_done()
    assert pages[0] == set(IDS[500:1000])  # the claimed ids were set aside first
    assert pages[-1] == stalled_page
    assert set().union(*pages) == set(IDS)


def test_a_dropped_connection_ends_its_claims_and_wakes_who_waits() -> None:
    claims = FetchClaims()
    run = IdFetch(IDS[:500], claims)
    run.next_request()
    run.observe(0, IDS[0])
    assert len(claims) == 500
    other = IdFetch(IDS[:500], claims)
    assert other.next_request() == []
    woken = []
    other.wait(lambda: woken.append(True), until=30.0)
    run.release()
    assert len(claims) == 0 and woken == [True]
    assert other.may_go_on(0.0)
    assert asked(other.next_request()) == set(IDS[:500])


def test_a_long_run_forgets_arrivals_once_the_pipeline_has_settled_them() -> None:
    claims = FetchClaims()
    run = IdFetch(IDS, claims)
    unsettled: set[str] = set()
    while (filters := run.next_request()) is not None:
        page = sorted(asked(filters))
        for event_id in page:
            run.observe(0, event_id)
        run.page_done()  # EOSE comes before the page's events are committed
        # Arrivals still unsettled are remembered, settled ones forgotten (a run of a
        # million ids kept every one of them).
        assert run._arrived == set(page) | unsettled
        claims.settle(page[1:])
        unsettled.add(page[0])  # still in the pipeline when the connection drops
    assert len(claims) == len(unsettled) == 3
    run.release()
    assert len(claims) == 0


async def test_three_relays_holding_the_same_events_share_the_download(tmp_path: Path) -> None:
    author = keys_for("id-fetch", 0)
    events = [
        make_event(author, 1301, f"workout {n} " + "x" * 100, created_at=1_700_000_000 + n)
        for n in range(3000)
    ]
    wanted = {json.loads(raw)["id"] for raw in events}
    relays = [await start_local_relay() for _ in range(3)]
    try:
        for relay in relays:
            await relay.publish(events)
        config = write_config(tmp_path, relays=[(r.url, True, False) for r in relays],
                              authors=[pubkey_of(author)], kinds=[1301])
        async with running_daemon(config) as daemon:
            await wait_for(lambda: stored_ids(daemon) == wanted, timeout=60, what="all 3,000")
            workers = [worker for worker, _ in daemon.workers.values()]
            await wait_for(lambda: all(w.status.backfill_complete for w in workers),
                           timeout=30, what="every backfill complete")
            received = sum(w.status.events_received for w in workers)
            assert daemon.pipeline.fetching is not None and len(daemon.pipeline.fetching) == 0
    finally:
        for relay in relays:
            relay.stop()
    # Each relay alone would send all 3,000 (9,000 in all); shared, little is sent twice.
    assert 3000 <= received <= 3600, received

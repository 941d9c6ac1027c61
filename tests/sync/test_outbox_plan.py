"""The outbox planner: bounded relay choice that covers the most authors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.sync.outbox_plan import choose_outbox_relays


def author(n: int) -> str:
    return f"{n:064x}"


def test_shared_relays_are_chosen_first_and_each_author_gets_at_most_per_author() -> None:
    lists = {
        author(1): ["wss://big", "wss://a1", "wss://a1b"],
        author(2): ["wss://big", "wss://a2"],
        author(3): ["wss://big", "wss://a3"],
    }
    chosen = choose_outbox_relays(lists, per_author=2, max_relays=10)
    assert chosen["wss://big"] == {author(1), author(2), author(3)}
    assert sum(author(1) in served for served in chosen.values()) == 2
    assert "wss://a1b" not in chosen


def test_uncovered_authors_beat_redundancy_when_slots_are_few() -> None:
    lists = {
        author(1): ["wss://x", "wss://y"],
        author(2): ["wss://x", "wss://y"],
        author(3): ["wss://z"],
    }
    assert set(choose_outbox_relays(lists, per_author=3, max_relays=2)) == {"wss://x", "wss://z"}


def test_configured_read_relays_count_and_are_never_chosen() -> None:
    lists = {author(1): ["wss://configured", "wss://other"], author(2): ["wss://configured"]}
    chosen = choose_outbox_relays(lists, per_author=1, max_relays=5, already_read=["wss://configured"])
    assert chosen == {}


def test_two_hundred_authors_with_ten_relays_each_stay_within_the_cap() -> None:
    lists = {author(a): [f"wss://r{(a * 7 + k) % 400}" for k in range(10)] for a in range(200)}
    chosen = choose_outbox_relays(lists, per_author=3, max_relays=50)
    assert len(chosen) == 50
    covered = set().union(*chosen.values())
    assert len(covered) == 200  # 50 relays reach every author here
    assert all(sum(a in s for s in chosen.values()) <= 3 for a in lists)


def test_zero_slots_choose_nothing() -> None:
    assert choose_outbox_relays({author(1): ["wss://a"]}, per_author=3, max_relays=0) == {}


lists_strategy = st.dictionaries(
    st.integers(0, 60).map(author),
    st.lists(st.integers(0, 30).map(lambda n: f"wss://r{n}"), max_size=12),
    max_size=40,
)


@settings(max_examples=200)
@given(lists_strategy, st.integers(1, 4), st.integers(0, 20), st.sets(st.integers(0, 30).map(lambda n: f"wss://r{n}"), max_size=3))
def test_plan_bounds_and_coverage(lists: dict[str, list[str]], per_author: int, max_relays: int, configured: set[str]) -> None:
    chosen = choose_outbox_relays(lists, per_author=per_author, max_relays=max_relays, already_read=configured)
    assert len(chosen) <= max_relays
    assert not set(chosen) & configured
    for url, served in chosen.items():
        assert served
        assert all(url in lists[a] for a in served)
    for a in lists:
        assert sum(a in s for s in chosen.values()) <= per_author
    assert chosen == choose_outbox_relays(lists, per_author=per_author, max_relays=max_relays, already_read=configured)
    # With a slot for every relay anyone listed, nobody who listed an unconfigured relay
    # and has none configured goes unread.
    everything = {u for urls in lists.values() for u in urls} - configured
    if max_relays >= len(everything):
        for a, urls in lists.items():
            if set(urls) - configured and not set(urls) & configured:
                assert any(a in s for s in chosen.values())


def plain_greedy(lists: dict[str, list[str]], per_author: int, max_relays: int, configured: set[str]) -> dict[str, frozenset[str]]:
    """The greedy choice spelled out: recompute every relay's gain each round."""
    need, listing = {}, {}
    for a, urls in lists.items():
        candidates = list(dict.fromkeys(urls))[:20]
        need[a] = max(0, per_author - sum(u in configured for u in candidates))
        if need[a]:
            for u in candidates:
                if u not in configured:
                    listing.setdefault(u, set()).add(a)
    covered = {a for a, n in need.items() if n < per_author}
    chosen: dict[str, frozenset[str]] = {}
    while len(chosen) < max_relays:
        best = min(
            ((-sum(a not in covered for a in w), -len(w), u) for u, s in listing.items() if u not in chosen
             for w in [[a for a in s if need[a] > 0]] if w),
            default=None,
        )
        if best is None:
            break
        url = best[2]
        chosen[url] = frozenset(a for a in listing[url] if need[a] > 0)
        for a in chosen[url]:
            need[a] -= 1
            covered.add(a)
    return chosen


@settings(max_examples=200)
@given(lists_strategy, st.integers(1, 4), st.integers(0, 20), st.sets(st.integers(0, 30).map(lambda n: f"wss://r{n}"), max_size=3))
def test_lazy_greedy_chooses_what_plain_greedy_chooses(
    lists: dict[str, list[str]], per_author: int, max_relays: int, configured: set[str]
) -> None:
    assert choose_outbox_relays(
        lists, per_author=per_author, max_relays=max_relays, already_read=configured
    ) == plain_greedy(lists, per_author, max_relays, configured)

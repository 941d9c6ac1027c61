"""Discovery's plan from config plus stored relay lists, and its failure bookkeeping."""

from __future__ import annotations

import dataclasses
from typing import Any

from powrd.config import DEFAULT_KINDS, Config, RelayConfig
from powrd.sync.address import AddressPolicy
from powrd.sync.discovery import Discovery
from powrd.sync.status import RelayState, RelayStatus
from tests.support.events import keys_for, make_event, pubkey_of

AUTHORS = [keys_for("discovery", n) for n in range(3)]
IDENTITY = keys_for("discovery", 99)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def config(**sync: Any) -> Config:
    base = Config()
    settings = dataclasses.replace(base.sync, authors=tuple(pubkey_of(k) for k in AUTHORS), **sync)
    relays = (RelayConfig("wss://configured.example"), RelayConfig("wss://writeonly.example", read=False))
    return dataclasses.replace(base, sync=settings, relays=relays)


def listing(keys: Any, urls: list[str], created_at: int = 1_700_000_000) -> str:
    return make_event(keys, 10002, "", [["r", url] for url in urls], created_at)


def discovery(clock: Clock | None = None) -> Discovery:
    return Discovery(AddressPolicy(("ws", "wss")), clock=clock or Clock())


def test_lists_become_targets_with_their_sources_and_authors() -> None:
    found = discovery()
    lists = [
        listing(AUTHORS[0], ["wss://shared.example", "wss://configured.example"]),
        listing(AUTHORS[1], ["wss://shared.example", "ws://u:p@bad.example", "http://web.example", "wss://zero.example:0"]),
        listing(IDENTITY, ["wss://mine.example"]),
    ]
    everyone = [pubkey_of(k) for k in [*AUTHORS, IDENTITY]]
    assert found.update_lists(lists, everyone)
    assert not found.update_lists(lists, everyone)  # the same lists: nothing changed
    targets = found.targets(config(index_relays=("wss://index.example",)), pubkey_of(IDENTITY))
    sources = {url: (t.source, t.read, t.write) for url, t in targets.items()}
    assert sources == {
        "wss://configured.example": ("config", True, True),
        "wss://writeonly.example": ("config", False, True),
        "wss://index.example": ("index", True, False),
        "wss://shared.example": ("nip65", True, False),
        "wss://mine.example": ("nip65", False, True),
    }
    assert targets["wss://shared.example"].authors == {pubkey_of(AUTHORS[0]), pubkey_of(AUTHORS[1])}
    index_kinds = {k for scope in targets["wss://index.example"].scopes for k in scope.filter.kinds or ()}
    assert index_kinds == {10002}
    report = found.report(targets, everyone)
    unusable = report["authors"][pubkey_of(AUTHORS[1])]["unusable"]
    assert list(unusable) == ["wss://zero.example:0"]
    assert "port" in unusable["wss://zero.example:0"]
    assert report["authors"][pubkey_of(AUTHORS[1])]["skipped"] == {"not a ws:// or wss:// URL": 2}
    assert report["authors"][pubkey_of(AUTHORS[2])] == {"relay_list": None, "read_from": 0}


def test_a_listed_write_only_configured_relay_is_read_for_the_author_and_still_written() -> None:
    found = discovery()
    author = pubkey_of(AUTHORS[0])
    found.update_lists([listing(AUTHORS[0], ["wss://writeonly.example"])], [author])
    target = found.targets(config(), None)["wss://writeonly.example"]
    assert (target.read, target.write, target.source, target.authors) == (True, True, "config", {author})
    assert {k for s in target.scopes for k in s.filter.kinds or ()} == set(DEFAULT_KINDS)


def test_outbox_off_reads_only_the_config() -> None:
    found = discovery()
    found.update_lists([listing(AUTHORS[0], ["wss://shared.example"])], [pubkey_of(AUTHORS[0])])
    targets = found.targets(config(outbox=False), pubkey_of(IDENTITY))
    assert set(targets) == {"wss://configured.example", "wss://writeonly.example"}
    assert all(10002 not in (s.filter.kinds or ()) for s in targets["wss://configured.example"].scopes)


def test_a_newer_list_replaces_the_older_one() -> None:
    found = discovery()
    author = pubkey_of(AUTHORS[0])
    old, new = listing(AUTHORS[0], ["wss://old.example"]), listing(AUTHORS[0], ["wss://new.example"], 1_700_000_100)
    found.update_lists([new, old], [author])
    assert found.write_relays(author) == ["wss://new.example"]


def test_two_hundred_authors_with_ten_relays_each_make_at_most_fifty_connections() -> None:
    keys = [keys_for("discovery-many", n) for n in range(200)]
    lists = [listing(k, [f"wss://r{(n * 13 + j) % 500}.example" for j in range(10)]) for n, k in enumerate(keys)]
    found = discovery()
    found.update_lists(lists, [pubkey_of(k) for k in keys])
    cfg = dataclasses.replace(config(), sync=dataclasses.replace(config().sync, authors=tuple(pubkey_of(k) for k in keys)))
    targets = found.targets(cfg, None)
    assert sum(1 for t in targets.values() if t.source == "nip65") == 50


def status(url: str, attempts: int, connects: int, state: RelayState = RelayState.BACKOFF) -> RelayStatus:
    return RelayStatus(url, connect_attempts=attempts, connects=connects, state=state, last_error="connect: refused")


def test_a_relay_failing_three_times_in_a_row_is_dropped_then_tried_again() -> None:
    clock = Clock()
    found = discovery(clock)
    author = pubkey_of(AUTHORS[0])
    found.update_lists([listing(AUTHORS[0], ["wss://flaky.example", "wss://dead.example"])], [author])
    url = "wss://dead.example"
    assert not found.observe({url: status(url, 2, 0)})
    assert found.observe({url: status(url, 3, 0)})
    assert found.write_relays(author) == ["wss://flaky.example"]
    assert "3 failed connections in a row: connect: refused" in found.dropped[url].reason
    # A relay that connects between failures is not dropped.
    flaky = "wss://flaky.example"
    for attempts, connects in [(2, 0), (3, 1), (5, 1), (6, 2), (8, 2)]:
        assert not found.observe({flaky: status(flaky, attempts, connects)})
    clock.now += 1801
    assert found.observe({})
    assert found.write_relays(author) == ["wss://flaky.example", "wss://dead.example"]


def test_an_author_joining_a_relay_keeps_the_others_checkpoint_scope() -> None:
    found = discovery()
    everyone = [pubkey_of(k) for k in AUTHORS]
    shared = "wss://shared.example"
    found.update_lists([listing(k, [shared]) for k in AUTHORS[:2]], everyone)
    (before,) = found.targets(config(), None)[shared].scopes
    found.update_lists([listing(k, [shared]) for k in AUTHORS], everyone)
    after = found.targets(config(), None)[shared].scopes
    assert after[0] == before  # same authors, same key: the checkpoint stays
    assert after[1].filter.authors == {pubkey_of(AUTHORS[2])}
    # An author leaving ends their group; the rest keep theirs.
    found.update_lists([listing(k, [shared]) for k in AUTHORS[:2]], everyone)
    assert found.targets(config(), None)[shared].scopes == (before,)


def test_groups_are_merged_past_the_cap() -> None:
    keys = [keys_for("discovery-groups", n) for n in range(8)]
    everyone = [pubkey_of(k) for k in keys]
    cfg = dataclasses.replace(config(), sync=dataclasses.replace(config().sync, authors=tuple(everyone)))
    found = discovery()
    for n in range(1, 8):
        found.update_lists([listing(k, ["wss://shared.example"]) for k in keys[:n]], everyone)
        scopes = found.targets(cfg, None)["wss://shared.example"].scopes
        assert len(scopes) <= 4
        assert set().union(*(s.filter.authors or () for s in scopes)) == set(everyone[:n])

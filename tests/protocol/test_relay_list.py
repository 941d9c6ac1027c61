"""NIP-65 relay lists: bounded, de-duplicated parsing of untrusted r tags."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from powrd.protocol.relay_list import (
    MAX_RELAYS_KEPT,
    ListedRelay,
    normalize_relay_url,
    parse_relay_list,
    relay_list_tags,
)


def test_markers_spellings_and_junk() -> None:
    parsed = parse_relay_list([
        ["r", "wss://Relay.Example/"],
        ["r", "wss://relay.example", "write"],
        ["r", "wss://reader.example", "read"],
        ["r", "wss://writer.example", "write"],
        ["r", "https://web.example"],
        ["r", "wss://x.example", "sometimes"],
        ["p", "wss://ignored.example"],
        ["r"],
    ])
    assert parsed.relays == (
        ListedRelay("wss://relay.example", True, True),
        ListedRelay("wss://reader.example", True, False),
        ListedRelay("wss://writer.example", False, True),
    )
    assert parsed.write_urls == ("wss://relay.example", "wss://writer.example")
    assert parsed.skipped == {
        "duplicate URL": 1,
        "not a ws:// or wss:// URL": 1,
        "unknown marker (neither read nor write)": 1,
    }


def test_hundreds_of_relays_are_cut_at_the_cap() -> None:
    parsed = parse_relay_list([["r", f"wss://r{n}.example"] for n in range(5000)])
    assert len(parsed.relays) == MAX_RELAYS_KEPT
    assert parsed.skipped["more than 1000 tags: the rest ignored"] == 1
    assert parsed.skipped[f"more than {MAX_RELAYS_KEPT} relays"] == 1000 - MAX_RELAYS_KEPT


def test_urls_with_userinfo_query_or_space_are_not_relays() -> None:
    for text in ("wss://u:p@h.example", "wss://h.example/?a=1", "wss://h .example", "ws://", "wss://h:99999"):
        assert normalize_relay_url(text) is None, text


def test_tags_for_publishing_round_trip() -> None:
    relays = [("wss://a.example", True, True), ("wss://b.example", True, False), ("wss://c.example", False, True)]
    tags = relay_list_tags([*relays, ("wss://d.example", False, False)])
    assert tags == [["r", "wss://a.example"], ["r", "wss://b.example", "read"], ["r", "wss://c.example", "write"]]
    assert [(r.url, r.read, r.write) for r in parse_relay_list(tags).relays] == relays


tag = st.lists(st.one_of(st.text(max_size=40), st.sampled_from(["r", "read", "write", "wss://a.b", "ws://c.d/"])), max_size=4)


@given(st.lists(tag, max_size=200))
def test_any_tags_parse_to_a_bounded_list_of_plain_unique_urls(tags: list[list[str]]) -> None:
    parsed = parse_relay_list(tags)
    urls = [relay.url for relay in parsed.relays]
    assert len(urls) == len(set(urls)) <= MAX_RELAYS_KEPT
    for relay in parsed.relays:
        assert normalize_relay_url(relay.url) == relay.url
        assert relay.read or relay.write

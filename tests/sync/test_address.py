"""The address policy for learned URLs, without any network traffic.

Every name here is answered by a stub resolver or is an IP literal; nothing connects.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powrd.sync.address import (
    AddressPolicy,
    AddressRefused,
    UnresolvableHost,
    check_url,
    is_public_address,
)

RELAYS = ("ws", "wss")
PUBLIC_V4 = "8.8.8.8"  # only ever a string in these tests: nothing connects to it


class StubResolver:
    """Answers from a table and records every question."""

    def __init__(self, answers: dict[str, Sequence[str] | list[Sequence[str]]]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append((host, port))
        if host not in self.answers:
            raise UnresolvableHost(f"cannot resolve {host}")
        return self.answers[host]  # type: ignore[return-value]


NON_PUBLIC = [
    "127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
    "100.64.0.1", "100.127.255.254", "0.0.0.0", "224.0.0.1", "239.255.255.250",
    "255.255.255.255", "192.0.0.1", "198.18.0.1", "240.0.0.1",
    "::1", "::", "fe80::1", "fec0::1", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1",
    # IPv6 spellings of IPv4 loopback/private addresses (Python calls several global).
    "::127.0.0.1", "::ffff:127.0.0.1", "::ffff:0:127.0.0.1", "64:ff9b::7f00:1",
    "::ffff:10.0.0.1", "::ffff:0:192.168.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1",
    "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "::8.8.8.8",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]


@pytest.mark.parametrize("text", NON_PUBLIC)
def test_non_public_addresses_are_refused(text: str) -> None:
    assert not is_public_address(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str) -> None:
    assert is_public_address(ipaddress.ip_address(text))


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_embedded_ipv4_is_judged_as_the_ipv4_address(value: int) -> None:
    v4 = ipaddress.IPv4Address(value)
    for prefix in ("::ffff:0:0", "::ffff:0:0:0", "64:ff9b::"):
        embedded = ipaddress.IPv6Address(int(ipaddress.IPv6Address(prefix)) | value)
        assert is_public_address(embedded) == is_public_address(v4)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ws://127.0.0.1:6379/admin/reset?confirm=yes", "query"),
        ("ws://relay.example/?", "query"),
        ("wss://user:secret@relay.example", "user name"),
        ("wss://user@relay.example", "user name"),
        ("wss://relay.example/#x", "fragment"),
        ("http://relay.example", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("wss://relay.example:99999", "not a URL"),
        ("wss://relay.example:0", "port 0"),
        ("wss:///path", "no host"),
        ("wss://relay.exa mple", "white space"),
        ("wss://" + "a" * 600 + ".example", "longer than"),
    ],
)
def test_urls_that_are_never_learned(url: str, why: str) -> None:
    with pytest.raises(AddressRefused, match=why):
        check_url(url, RELAYS)


def test_query_strings_are_allowed_only_when_asked_for() -> None:
    sent, host, port = check_url("https://cdn.example/a.png?v=2", ("https",), allow_query=True)
    assert (sent, host, port) == ("https://cdn.example/a.png?v=2", "cdn.example", 443)


def test_the_host_is_the_idna_2008_name_the_client_sends() -> None:
    # CPython's codec (IDNA 2003) maps ß to "ss"; httpx and the wire use xn--zca.
    assert check_url("wss://ß.example/r", RELAYS) == ("wss://xn--zca.example/r", "xn--zca.example", 443)
    assert check_url("ws://FAß.Example:7777", RELAYS)[1:] == ("xn--fa-hia.example", 7777)
    assert check_url("ws://[::1]:81/", RELAYS) == ("ws://[::1]:81/", "::1", 81)


async def test_the_idna_2008_name_is_the_one_resolved_and_checked() -> None:
    stub = StubResolver({"xn--zca.example": ["127.0.0.1"], "ss.example": [PUBLIC_V4]})
    policy = AddressPolicy(RELAYS, resolve=stub)
    with pytest.raises(AddressRefused, match="non-public"):
        await policy.pin("wss://ß.example")
    assert stub.asked == [("xn--zca.example", 443)]


async def test_pin_returns_the_checked_address_and_keeps_the_name() -> None:
    stub = StubResolver({"relay.example": [PUBLIC_V4]})
    pinned = await AddressPolicy(RELAYS, resolve=stub).pin("wss://Relay.Example:8443/nostr")
    assert pinned.address == PUBLIC_V4
    assert (pinned.host, pinned.port, pinned.scheme) == ("relay.example", 8443, "wss")
    assert pinned.url == "wss://relay.example:8443/nostr"
    assert pinned.host_header == "relay.example:8443"
    assert pinned.address_url == f"wss://{PUBLIC_V4}:8443/nostr"
    assert stub.asked == [("relay.example", 8443)]


async def test_one_private_answer_among_public_ones_refuses_the_name() -> None:
    stub = StubResolver({"mixed.example": [PUBLIC_V4, "::ffff:0:127.0.0.1"]})
    with pytest.raises(AddressRefused, match="non-public"):
        await AddressPolicy(RELAYS, resolve=stub).pin("wss://mixed.example")


@pytest.mark.parametrize(
    "url",
    ["ws://[::127.0.0.1]:1", "ws://[::ffff:0:127.0.0.1]:1", "ws://[64:ff9b::7f00:1]:1",
     "ws://[::ffff:127.0.0.1]:1", "ws://127.0.0.1:1", "ws://[fe80::1]:1"],
)
async def test_ip_literals_are_checked_without_resolving(url: str) -> None:
    stub = StubResolver({})
    with pytest.raises(AddressRefused, match="non-public"):
        await AddressPolicy(RELAYS, resolve=stub).pin(url)
    assert stub.asked == []


async def test_other_spellings_of_loopback_are_refused_by_the_system_resolver() -> None:
    # Both resolve locally (/etc/hosts, numeric parsing): no query leaves the machine.
    policy = AddressPolicy(RELAYS)
    for url in ("ws://localhost:1", "ws://2130706433:1", "ws://0x7f.1:1"):
        with pytest.raises(AddressRefused, match="non-public"):
            await policy.pin(url)


async def test_allow_private_still_checks_the_url_and_pins() -> None:
    stub = StubResolver({"lan-relay": ["192.168.1.20"]})
    policy = AddressPolicy(RELAYS, allow_private=True, resolve=stub)
    assert (await policy.pin("ws://lan-relay:7000")).address == "192.168.1.20"
    with pytest.raises(AddressRefused, match="query"):
        await policy.pin("ws://127.0.0.1:6379/admin/reset?confirm=yes")


async def test_an_unresolvable_name_is_a_transient_failure() -> None:
    with pytest.raises(UnresolvableHost):
        await AddressPolicy(RELAYS, resolve=StubResolver({})).pin("wss://gone.example")
    with pytest.raises(UnresolvableHost):
        await AddressPolicy(RELAYS, resolve=StubResolver({"none.example": []})).pin(
            "wss://none.example"
        )


URL_PIECES = st.sampled_from(
    ["ws://", "wss://", "http://", "ws:", "//", "@", ":", "[", "]", "::1", "?", "#", "%", "ß",
     "xn--", ".", "/", "127.0.0.1", "relay.example", "80", "99999", "\u3002", "\x00", " "]
)


@given(st.lists(st.one_of(URL_PIECES, st.text(max_size=6)), max_size=10).map("".join))
def test_check_url_refuses_or_returns_a_plain_url(url: str) -> None:
    try:
        sent, host, port = check_url(url, RELAYS)
    except AddressRefused:
        return
    assert sent.startswith(("ws://", "wss://")) and host.isascii() and 0 < port < 65536
    assert "?" not in sent and "#" not in sent and "@" not in sent.split("/")[2]
    assert check_url(sent, RELAYS) == (sent, host, port)  # the sent form is stable

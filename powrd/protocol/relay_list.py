"""NIP-65 relay lists (kind 10002): reading an author's list, writing the user's own.

A relay list is written by its author, so it is untrusted input: it may name hundreds of
relays, repeat one in different spellings, or carry garbage. :func:`parse_relay_list`
looks at a bounded number of tags, keeps a bounded number of relays, merges spellings
of one URL, and counts what it skipped by reason. Whether a URL may be connected to
(its addresses) is not decided here: that is the address policy's job in ``sync``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

KIND_RELAY_LIST = 10002
# Tags looked at, and relays kept, per list: real lists name 2 to 10 relays.
MAX_TAGS_READ = 1000
MAX_RELAYS_KEPT = 50
MAX_URL_CHARS = 512


@dataclass(frozen=True, slots=True)
class ListedRelay:
    """One relay of a list; a relay without a marker is both read and write."""

    url: str
    read: bool
    write: bool


@dataclass(frozen=True, slots=True)
class RelayList:
    """What :func:`parse_relay_list` made of a list: relays in list order, skips by reason."""

    relays: tuple[ListedRelay, ...] = ()
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def write_urls(self) -> tuple[str, ...]:
        return tuple(relay.url for relay in self.relays if relay.write)


def normalize_relay_url(text: str) -> str | None:
    """``text`` as one spelling per relay (lowercase scheme and host, no trailing slash,
    no fragment), or None when it is not a plain ws:// or wss:// URL."""
    if len(text) > MAX_URL_CHARS or any(char.isspace() for char in text):
        return None
    try:
        parts = urlsplit(text)
        _ = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname or "@" in parts.netloc:
        return None
    if parts.query:
        return None
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"), "", ""))


def parse_relay_list(tags: Iterable[Sequence[object]]) -> RelayList:
    """The relays an event's ``r`` tags name, bounded and de-duplicated.

    Tags other than ``r`` are ignored; an ``r`` tag whose URL is not a plain ws/wss URL
    or whose marker is neither ``read`` nor ``write`` is skipped and counted.
    """
    skipped: Counter[str] = Counter()
    kept: dict[str, ListedRelay] = {}
    for index, tag in enumerate(tags):
        if index >= MAX_TAGS_READ:
            skipped["more than 1000 tags: the rest ignored"] += 1
            break
        if len(tag) < 2 or tag[0] != "r":
            continue
        url_text, marker = tag[1], tag[2] if len(tag) > 2 else None
        if not isinstance(url_text, str):
            skipped["not a ws:// or wss:// URL"] += 1
            continue
        url = normalize_relay_url(url_text)
        if url is None:
            skipped["not a ws:// or wss:// URL"] += 1
            continue
        if marker not in (None, "", "read", "write"):
            skipped["unknown marker (neither read nor write)"] += 1
            continue
        read = marker in (None, "", "read")
        write = marker in (None, "", "write")
        earlier = kept.get(url)
        if earlier is not None:
            skipped["duplicate URL"] += 1
            kept[url] = ListedRelay(url, earlier.read or read, earlier.write or write)
        elif len(kept) >= MAX_RELAYS_KEPT:
            skipped[f"more than {MAX_RELAYS_KEPT} relays"] += 1
        else:
            kept[url] = ListedRelay(url, read, write)
    return RelayList(tuple(kept.values()), skipped)


def relay_list_tags(relays: Iterable[tuple[str, bool, bool]]) -> list[list[str]]:
    """``r`` tags for (url, read, write) relays; a relay neither read nor write is left out."""
    tags: list[list[str]] = []
    for url, read, write in relays:
        if read and write:
            tags.append(["r", url])
        elif read or write:
            tags.append(["r", url, "read" if read else "write"])
    return tags

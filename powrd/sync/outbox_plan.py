"""Which discovered relays to read, and for whom: a pure function of the relay lists.

Each author names the relays they write to (NIP-65). Reading every one of them for
every author would open a connection per relay anyone ever listed, so the choice is
bounded twice: at most ``per_author`` relays read for one author, and at most
``max_relays`` discovered relays in all. Within those bounds relays are chosen greedily
to cover the most authors: first the relay that reaches the most authors not yet
covered at all, then (ties, or once everyone is covered) the most authors still short
of ``per_author``. One connection per URL serves every author it was chosen for.

A relay the config already reads counts for its authors without using a slot: it asks
for every configured author anyway.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence

# Write relays of one list considered at all: bounds the planner's work per author.
MAX_CANDIDATES_PER_AUTHOR = 20


def choose_outbox_relays(
    write_relays: Mapping[str, Sequence[str]],
    *,
    per_author: int,
    max_relays: int,
    already_read: Collection[str] = (),
) -> dict[str, frozenset[str]]:
    """Discovered relay URL -> the authors it is read for.

    Args:
        write_relays: author -> the usable write relay URLs of their list, in list order.
        per_author: relays read per author (configured read relays they list included).
        max_relays: discovered relays in all.
        already_read: URLs of configured read relays (never chosen, but they count).

    Returns:
        At most ``max_relays`` URLs, none of them in ``already_read``; each author appears
        under at most ``per_author`` of them, and only under URLs their list names.
    """
    configured = frozenset(already_read)
    need: dict[str, int] = {}
    listing: dict[str, set[str]] = {}
    for author, urls in write_relays.items():
        candidates = list(dict.fromkeys(urls))[:MAX_CANDIDATES_PER_AUTHOR]
        served = sum(1 for url in candidates if url in configured)
        need[author] = max(0, per_author - served)
        if need[author] == 0:
            continue
        for url in candidates:
            if url not in configured:
                listing.setdefault(url, set()).add(author)
    covered = {author for author, n in need.items() if n < per_author}

    def gain(url: str) -> tuple[int, int]:
        wanting = [a for a in listing[url] if need[a] > 0]
        return sum(1 for a in wanting if a not in covered), len(wanting)

    # Lazy greedy: a relay's gain only ever shrinks as authors get covered, so a gain
    # computed earlier is an upper bound. The heap's top is recomputed; if it still
    # matches, no other relay can beat it (ties go to the smallest URL either way).
    heap = [(-g[0], -g[1], url) for url in listing for g in [gain(url)] if g[1]]
    heapq.heapify(heap)
    chosen: dict[str, frozenset[str]] = {}
    while len(chosen) < max_relays and heap:
        stored_uncovered, stored_wanting, url = heapq.heappop(heap)
        fresh = gain(url)
        if fresh[1] == 0:
            continue
        if (-fresh[0], -fresh[1]) != (stored_uncovered, stored_wanting):
            heapq.heappush(heap, (-fresh[0], -fresh[1], url))
            continue
        served_here = frozenset(a for a in listing[url] if need[a] > 0)
        for author in served_here:
            need[author] -= 1
            covered.add(author)
        chosen[url] = served_here
    return chosen

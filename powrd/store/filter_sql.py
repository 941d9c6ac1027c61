"""A NIP-01 filter as SQL conditions on ``nostr_events e`` (and its ``event_tags``).

One translation for every read that filters events (``events.query`` and REQ, NIP-45
counts, NIP-77 items), so they cannot disagree about what matches. ``limit`` is the
caller's business.
"""

from __future__ import annotations

import json
from typing import Any

from powrd.protocol.filters import Filter


def filter_clauses(flt: Filter, *, json_lists: bool = False) -> tuple[list[str], list[Any]]:
    """The AND-ed conditions matching ``flt`` (none for ``{}``) and their arguments.

    Args:
        json_lists: bind each list as one JSON array (``IN (SELECT value FROM
            json_each(?))``), so a filter's size never meets SQLite's limit on host
            parameters (32,766); otherwise one ``?`` a value, which lets SQLite plan
            covering-index reads (the NIP-77 items) from the values themselves.
    """
    clauses: list[str] = []
    args: list[Any] = []

    def among(values: frozenset[Any]) -> str:
        """``IN (...)`` for ``values``, whose arguments it appends."""
        ordered = sorted(values)
        if json_lists:
            args.append(json.dumps(ordered))
            return "IN (SELECT value FROM json_each(?))"
        args.extend(ordered)
        return f"IN ({','.join('?' * len(ordered))})"

    for column, values in (("e.id", flt.ids), ("e.pubkey", flt.authors), ("e.kind", flt.kinds)):
        if values is not None:
            clauses.append(f"{column} {among(values)}")
    if flt.since is not None:
        clauses.append("e.created_at >= ?")
        args.append(flt.since)
    if flt.until is not None:
        clauses.append("e.created_at <= ?")
        args.append(flt.until)
    for letter, values in flt.tags.items():
        args.append(letter)
        clauses.append(
            "EXISTS (SELECT 1 FROM event_tags t WHERE t.event_seq = e.seq"  # noqa: S608
            f" AND length(t.name) = 1 AND t.name = ? AND t.value {among(values)})"
        )
    return clauses, args

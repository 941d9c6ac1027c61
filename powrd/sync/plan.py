"""Subscription planning: which filters each relay is asked for, and their checkpoint scopes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from powrd.protocol.filters import Filter, split_authors


@dataclass(frozen=True, slots=True)
class Scope:
    """One filter the relay is asked to backfill and then stream live.

    ``key`` names the checkpoint: it changes when the authors or kinds change, so a new
    author set is backfilled from the beginning rather than from an old checkpoint.
    """

    key: str
    filter: Filter


def scope_key(flt: Filter) -> str:
    authors = ",".join(sorted(flt.authors or ()))
    kinds = ",".join(str(k) for k in sorted(flt.kinds or ()))
    return hashlib.sha256(f"{authors}|{kinds}".encode()).hexdigest()[:16]


def plan(
    authors: tuple[str, ...], kinds: tuple[int, ...], max_authors_per_filter: int
) -> list[Scope]:
    if not authors or not kinds:
        return []
    return [Scope(scope_key(f), f) for f in split_authors(authors, kinds, max_authors_per_filter)]


def public_scope(kinds: tuple[int, ...]) -> list[Scope]:
    """The public library: ``kinds`` from every author (no authors field), or nothing."""
    if not kinds:
        return []
    flt = Filter(kinds=frozenset(kinds))
    return [Scope(scope_key(flt), flt)]

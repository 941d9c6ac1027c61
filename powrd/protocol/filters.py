"""NIP-01 subscription filters: parsing, the wire form, matching, planning.

A :class:`Filter` is always valid: it is either built by :func:`parse_filter` from a
decoded JSON object or checked on construction, so ``parse_filter(f.to_json()) == f``.
``None`` in a field means "no constraint"; an empty set matches nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from powrd.protocol.event import HEX, MAX_KIND, MAX_TIMESTAMP, Event, dumps

TAG_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# NIP-50 full-text search: relays that do not support it ignore it, and so do we.
IGNORED_FIELDS = frozenset(("search",))
_SCALAR_FIELDS = ("since", "until", "limit")
_FOUND_PREVIEW_CHARS = 40


class FilterError(ValueError):
    """A filter is malformed; the message names the field and what was found."""


def _empty_tags() -> Mapping[str, frozenset[str]]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Filter:
    """One NIP-01 filter.

    Attributes:
        ids: event ids (64 lowercase hex), exact match.
        authors: pubkeys (64 lowercase hex), exact match.
        kinds: event kinds.
        tags: tag letter (``e``, ``d``, ``t``, …) to the values its first value may take;
            the wire form spells the key ``#e``.
        since: oldest ``created_at`` wanted, inclusive.
        until: newest ``created_at`` wanted, inclusive.
        limit: how many stored events the relay should return at most.
    """

    ids: frozenset[str] | None = None
    authors: frozenset[str] | None = None
    kinds: frozenset[int] | None = None
    tags: Mapping[str, frozenset[str]] = field(default_factory=_empty_tags)
    since: int | None = None
    until: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        where = "filter"
        for name in ("ids", "authors"):
            values = getattr(self, name)
            if values is not None:
                object.__setattr__(self, name, frozenset(values))
                for value in values:
                    _check_hex64(value, f"{where}.{name}")
        if self.kinds is not None:
            object.__setattr__(self, "kinds", frozenset(self.kinds))
            for kind in self.kinds:
                _check_kind(kind, f"{where}.kinds")
        tags: dict[str, frozenset[str]] = {}
        for letter, values in sorted(self.tags.items()):
            _check_letter(letter, f"{where}.tags")
            tags[letter] = frozenset(values)
            for value in tags[letter]:
                _check_string(value, f"{where}.#{letter}")
        # A read-only view keeps the frozen dataclass immutable all the way down.
        object.__setattr__(self, "tags", MappingProxyType(tags))
        for name in _SCALAR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                _check_scalar(name, value, f"{where}.{name}")

    def __hash__(self) -> int:
        # Written out because the generated hash would choke on the tags mapping.
        return hash(
            (
                self.ids,
                self.authors,
                self.kinds,
                frozenset(self.tags.items()),
                self.since,
                self.until,
                self.limit,
            )
        )

    def to_json(self) -> dict[str, Any]:
        """The wire form: a JSON-ready dict with sorted lists, None fields left out."""
        wire: dict[str, Any] = {}
        if self.ids is not None:
            wire["ids"] = sorted(self.ids)
        if self.authors is not None:
            wire["authors"] = sorted(self.authors)
        if self.kinds is not None:
            wire["kinds"] = sorted(self.kinds)
        for letter, values in self.tags.items():
            wire[f"#{letter}"] = sorted(values)
        for name in _SCALAR_FIELDS:
            value = getattr(self, name)
            if value is not None:
                wire[name] = value
        return wire

    def matches(self, event: Event) -> bool:
        """Whether ``event`` satisfies every constraint of this filter (``limit`` aside).

        A tag constraint holds when the event has a tag of that name whose first value
        is one of the wanted values.
        """
        if self.ids is not None and event.id not in self.ids:
            return False
        if self.authors is not None and event.pubkey not in self.authors:
            return False
        if self.kinds is not None and event.kind not in self.kinds:
            return False
        if self.since is not None and event.created_at < self.since:
            return False
        if self.until is not None and event.created_at > self.until:
            return False
        for letter, wanted in self.tags.items():
            if not any(len(t) > 1 and t[0] == letter and t[1] in wanted for t in event.tags):
                return False
        return True

    def with_bounds(
        self, *, since: int | None = None, until: int | None = None, limit: int | None = None
    ) -> Filter:
        """A copy with ``since``, ``until`` and ``limit`` replaced (None clears them)."""
        return dataclasses.replace(self, since=since, until=until, limit=limit)


def parse_filter(obj: object, *, where: str = "filter") -> Filter:
    """Build a :class:`Filter` from a decoded JSON object.

    Args:
        obj: the decoded filter.
        where: how error messages name the filter (``filters[1]`` in a REQ, say).

    Raises:
        FilterError: naming the first problem, e.g.
            ``filter.kinds[2]: expected an integer 0..65535, found "x"`` (with an en dash).
    """
    if not isinstance(obj, dict):
        raise FilterError(f"{where}: expected an object, found {_show(obj)}")
    ids = authors = kinds = None
    tags: dict[str, frozenset[str]] = {}
    scalars: dict[str, int] = {}
    for key, value in obj.items():
        path = f"{where}.{key}"
        if key in ("ids", "authors"):
            hexes = frozenset(_check_hex64(item, f"{path}[{i}]") for i, item in _items(value, path))
            if key == "ids":
                ids = hexes
            else:
                authors = hexes
        elif key == "kinds":
            kinds = frozenset(_check_kind(item, f"{path}[{i}]") for i, item in _items(value, path))
        elif key in _SCALAR_FIELDS:
            scalars[key] = _check_scalar(key, value, path)
        elif isinstance(key, str) and key.startswith("#"):
            _check_letter(key[1:], f"{where}: field {_show(key)}")
            tags[key[1:]] = frozenset(
                _check_string(item, f"{path}[{i}]") for i, item in _items(value, path)
            )
        elif key not in IGNORED_FIELDS:
            raise FilterError(f"{where}: unknown field {_show(key)}")
    return Filter(
        ids=ids,
        authors=authors,
        kinds=kinds,
        tags=tags,
        since=scalars.get("since"),
        until=scalars.get("until"),
        limit=scalars.get("limit"),
    )


def split_authors(
    authors: Iterable[str], kinds: Iterable[int] | None, max_authors_per_filter: int
) -> list[Filter]:
    """Filters that together ask for ``kinds`` from every author, a bounded number each.

    Relays refuse or truncate filters with very long author lists, so a large follow
    list becomes several filters. Authors are sorted so the plan is deterministic.

    Args:
        authors: pubkeys (64 lowercase hex); duplicates are ignored.
        kinds: kinds wanted, or None for every kind.
        max_authors_per_filter: the most authors one filter may carry (at least 1).

    Returns:
        One filter per chunk of authors; an empty list when there are no authors.
    """
    if max_authors_per_filter < 1:
        raise ValueError("max_authors_per_filter must be at least 1")
    unique = sorted(set(authors))
    kind_set = None if kinds is None else frozenset(kinds)
    return [
        Filter(authors=frozenset(unique[start : start + max_authors_per_filter]), kinds=kind_set)
        for start in range(0, len(unique), max_authors_per_filter)
    ]


def _items(value: object, path: str) -> Iterable[tuple[int, object]]:
    if not isinstance(value, list):
        raise FilterError(f"{path}: expected a list, found {_show(value)}")
    return enumerate(value)


def _check_hex64(value: object, path: str) -> str:
    if not (isinstance(value, str) and len(value) == 64 and HEX.issuperset(value)):
        raise FilterError(f"{path}: expected 64 lowercase hex characters, found {_show(value)}")
    return value


def _check_kind(value: object, path: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_KIND:
        raise FilterError(f"{path}: expected an integer 0–{MAX_KIND}, found {_show(value)}")  # noqa: RUF001
    return value


def _check_scalar(name: str, value: object, path: str) -> int:
    if name == "limit":
        if type(value) is not int or value < 0:
            raise FilterError(f"{path}: expected a non-negative integer, found {_show(value)}")
        return value
    if type(value) is not int or not 0 <= value <= MAX_TIMESTAMP:
        raise FilterError(
            f"{path}: expected a unix timestamp 0–{MAX_TIMESTAMP}, found {_show(value)}"  # noqa: RUF001
        )
    return value


def _check_letter(letter: object, path: str) -> str:
    if not (isinstance(letter, str) and len(letter) == 1 and letter in TAG_LETTERS):
        raise FilterError(f"{path}: tag filters are '#' and one ASCII letter")
    return letter


def _check_string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise FilterError(f"{path}: expected a string, found {_show(value)}")
    return value


def _show(value: object) -> str:
    """A short JSON rendering of an offending value for error messages."""
    try:
        text = dumps(value)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    if len(text) > _FOUND_PREVIEW_CHARS:
        text = text[: _FOUND_PREVIEW_CHARS - 1] + "…"
    return text

"""Reading one event's tags for the kind parsers, collecting warnings instead of failing.

An event whose id and signature are valid is never dropped for not following NIP-101e,
so nothing here raises on odd tags: each reader returns what it could make of them and
notes the rest as a short warning that names the tag.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence

from powrd.library.coordinates import parse_coordinate
from powrd.protocol.event import Event
from powrd.store.rows import Reference

# A record names the same few exercises set after set, and a batch the same authors:
# parsing each distinct (text, author) once took NIP-101e processing of a 6,000-event
# corpus from 0.295 s to 0.212 s of CPU. The result is immutable; the cache is bounded.
_parse_reference = functools.lru_cache(maxsize=4096)(parse_coordinate)

GENERIC_TAGS = frozenset(
    ("alt", "client", "expiration", "e", "p", "a", "q", "r", "L", "l", "-", "nonce",
     "published_at", "content-warning", "proxy", "emoji", "subject", "imeta")
)
"""Tags any NIP allows on any event; their presence is not worth a warning."""

MAX_WARNINGS = 50
# The store keeps integers in SQLite's signed 64-bit column type.
MAX_STORED_INTEGER = 2**63 - 1
# ASCII digits only: int() would also take " 5", "1_000" and non-Latin digits.
_INTEGER = re.compile(r"-?[0-9]+")
_DECIMAL = re.compile(r"-?[0-9]{1,20}(\.[0-9]{1,20})?")
# Unix seconds of 9999-12-31T23:59:59Z: later times cannot be printed as dates.
MAX_TIMESTAMP = 253402300799
# 13 digits are milliseconds (powr_web): seconds have 10 digits until the year 2286.
_MILLISECONDS_DIGITS = 13
# Long enough for a coordinate with a UUID d (107 characters).
_SHOWN_LENGTH = 120


def show(text: str) -> str:
    """A tag value quoted for a warning, clipped so that warnings stay short.

    The middle goes, not the end: a coordinate's kind and d say more than its pubkey.
    """
    if len(text) > _SHOWN_LENGTH:
        kept = (_SHOWN_LENGTH - 3) // 2
        text = f"{text[:kept]}...{text[-kept:]}"
    return repr(text)


class TagReader:
    """The tags of one event and the warnings found while reading them.

    Args:
        event: the event being interpreted.
    """

    def __init__(self, event: Event) -> None:
        self.author = event.pubkey
        self.tags: Sequence[Sequence[str]] = event.tags
        # Readers ask for a dozen names and every set's tag: one pass serves them all.
        self._by_name: dict[str, list[Sequence[str]]] = {}
        for tag in self.tags:
            if tag:
                self._by_name.setdefault(tag[0], []).append(tag)
        self._warnings: list[str] = []
        self.unreadable: list[tuple[tuple[str, ...], str]] = []
        """References that could not be read: (the raw tag, why)."""

    def warn(self, message: str) -> None:
        self._warnings.append(message)

    def warnings(self) -> tuple[str, ...]:
        """The warnings so far, each once, in order, at most :data:`MAX_WARNINGS`."""
        unique = list(dict.fromkeys(self._warnings))
        if len(unique) <= MAX_WARNINGS:
            return tuple(unique)
        kept = unique[: MAX_WARNINGS - 1]
        return (*kept, f"{len(unique) - len(kept)} more warnings not shown")

    def all_named(self, name: str) -> list[Sequence[str]]:
        return list(self._by_name.get(name, ()))

    def first(self, name: str) -> Sequence[str] | None:
        """The tag called ``name`` for a tag that should appear once.

        Like NIP-01's reading of ``d``, the first such tag with a value wins; a tag
        without a value is returned only when there is nothing better.
        """
        named = self.all_named(name)
        if not named:
            return None
        if len(named) > 1:
            self.warn(f"tag {name} appears {len(named)} times; used the first")
        return next((tag for tag in named if len(tag) > 1), named[0])

    def _present(self, name: str, *, required: bool) -> Sequence[str] | None:
        """:meth:`first`, noting a missing ``required`` tag."""
        tag = self.first(name)
        if tag is None and required:
            self.warn(f"tag {name} is missing")
        return tag

    def text(self, name: str, *, required: bool) -> str | None:
        """The value of a tag that should appear once, or None when it has none."""
        tag = self._present(name, required=required)
        if tag is not None and len(tag) < 2:
            self.warn(f"tag {name} has no value")
            return None
        return None if tag is None else tag[1]

    def values(self, name: str, *, required: bool) -> tuple[str, ...] | None:
        """Every element after the name of a list tag such as ``format``."""
        tag = self._present(name, required=required)
        if tag is not None and len(tag) < 2:
            self.warn(f"tag {name} has no values")
        return None if tag is None else tuple(tag[1:])

    def has_address(self) -> bool:
        """Whether the event has a ``d`` value; warns that it is not interpreted if not.

        An addressable event without ``d`` is legal NIP-01, but NIP-101e requires ``d``
        and a reference to such an event cannot be told from a broken one.
        """
        if self.text("d", required=True) is not None:
            return True
        self.warn("without a d value the event has no NIP-101e address; not interpreted")
        return False

    def title(self) -> str:
        """The ``title``, or "" when it is missing."""
        title = self.text("title", required=True)
        if title == "":
            self.warn("tag title is empty")
        return title or ""

    def choice(self, name: str, allowed: frozenset[str], *, required: bool) -> str | None:
        """A value from a known vocabulary; an unknown value is kept as given."""
        value = self.text(name, required=required)
        if value is not None and value not in allowed:
            self.warn(f"tag {name} {show(value)} is not a known value; kept as given")
        return value

    def _matching(
        self, name: str, pattern: re.Pattern[str], what: str, *, required: bool
    ) -> str | None:
        """The tag's value if ``pattern`` matches all of it; else a warning and None."""
        text = self.text(name, required=required)
        if text is not None and not pattern.fullmatch(text):
            self.warn(f"tag {name} {show(text)} is not {what}")
            return None
        return text

    def _integer_text(self, name: str, *, required: bool) -> str | None:
        """The value if it is an integer the store can keep; else a warning and None."""
        text = self._matching(name, _INTEGER, "an integer", required=required)
        if text is None:
            return None
        # Checking the length first keeps int() away from its 4300-digit limit.
        if len(text) > len(str(MAX_STORED_INTEGER)) or abs(int(text)) > MAX_STORED_INTEGER:
            self.warn(f"tag {name} {show(text)} is too large")
            return None
        return text

    def integer(self, name: str, *, required: bool = False) -> int | None:
        """A non-negative integer (a count or unix seconds), or None when unreadable."""
        text = self._integer_text(name, required=required)
        if text is None:
            return None
        value = int(text)
        if value < 0:
            self.warn(f"tag {name} {value} is negative")
            return None
        return value

    def number(self, name: str) -> int | float | None:
        """A non-negative decimal such as ``1.5`` (an int when it has no fraction)."""
        text = self._matching(name, _DECIMAL, "a number", required=False)
        if text is None:
            return None
        value: int | float = float(text) if "." in text else int(text)
        if value < 0:
            self.warn(f"tag {name} {text} is negative")
            return None
        if isinstance(value, int) and value > MAX_STORED_INTEGER:
            self.warn(f"tag {name} {show(text)} is too large")
            return None
        return value

    def timestamp(self, name: str, *, required: bool = False) -> int | None:
        """Unix seconds; 13 digits are read as milliseconds, odd values kept raw.

        A negative time or one past the year 9999 is kept as given, with a warning, so
        that nothing is lost; the store keeps it and readers print it as a number.
        """
        text = self._integer_text(name, required=required)
        if text is None:
            return None
        value = int(text)
        if value >= 0 and len(text) == _MILLISECONDS_DIGITS:
            self.warn(f"tag {name} {text} has 13 digits: read as milliseconds")
            return value // 1000
        if value < 0 or value > MAX_TIMESTAMP:
            self.warn(f"tag {name} {value} is not a time between 1970 and 9999; kept as given")
        return value

    def hashtags(self) -> tuple[str, ...]:
        """The ``t`` values, each once: a repeated hashtag says nothing more."""
        values = (tag[1] for tag in self.all_named("t") if len(tag) > 1 and tag[1])
        return tuple(dict.fromkeys(values))

    def references(self, name: str, target_kind: int) -> tuple[Reference, ...]:
        """Every usable reference among the tags called ``name``, in tag order."""
        found = (self.reference(tag, target_kind) for tag in self.all_named(name))
        return tuple(reference for reference in found if reference is not None)

    def reference(self, tag: Sequence[str], target_kind: int | None) -> Reference | None:
        """Read ``[name, coordinate, relay hint, params...]``; None when it is unusable.

        ``target_kind`` is the kind the coordinate must name, or None for any kind.

        A reference lacking the pubkey is taken to mean the event's author, as POWR has
        published such references for the author's own exercises.
        """
        name = tag[0]
        if len(tag) < 2 or not tag[1]:
            return self._unreadable(tag, f"tag {name} has no coordinate; skipped")
        text = tag[1]
        coordinate = _parse_reference(text, self.author)
        if coordinate is None:
            return self._unreadable(tag, f"tag {name} {show(text)} is not a coordinate; skipped")
        if target_kind is not None and coordinate.kind != target_kind:
            return self._unreadable(
                tag,
                f"tag {name} {show(text)} is kind {coordinate.kind}, not {target_kind}; skipped",
            )
        if coordinate.pubkey_assumed:
            self.warn(f"{name} reference {show(text)} lacks the pubkey; assumed the author's")
        hint, params = self._relay_slot(tag)
        return Reference(str(coordinate), hint, params)

    def _unreadable(self, tag: Sequence[str], message: str) -> Reference | None:
        """Note a reference tag that cannot be read; returns None for the caller to return."""
        self.warn(message)
        self.unreadable.append((tuple(tag), message))
        return None

    def _relay_slot(self, tag: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
        """The relay hint and the parameters after it.

        POWR's templates and legacy records leave the relay slot out
        (``["exercise", <ref>, "3", "10", "normal"]``): an element after the reference
        that is neither empty nor a websocket URL is the first parameter, not a hint.
        """
        if len(tag) < 3 or not tag[2]:
            return None, tuple(tag[3:])
        hint = tag[2]
        if not hint.lower().startswith(("wss://", "ws://")):
            # One warning per event, not per set: POWR writes every tag this way.
            self.warn(
                f"tag {tag[0]} has no relay slot (the element after the reference is not"
                " a websocket URL); every element after the reference read as a parameter"
            )
            return None, tuple(tag[2:])
        # The resolver connects to hints; a URL with spaces would only fail there.
        if any(c.isspace() for c in hint):
            self.warn(f"tag {tag[0]} relay hint {show(hint)} is not a websocket URL; ignored")
            return None, tuple(tag[3:])
        return hint, tuple(tag[3:])

    def unknown_tags(self, known: frozenset[str], kind_name: str) -> None:
        """Warn once for each tag name that is neither in ``known`` nor generic."""
        names = self._by_name
        for name in names:
            if name not in known and name not in GENERIC_TAGS:
                self.warn(f"tag {show(name)} is not part of NIP-101e {kind_name}; ignored")


def dependencies_of(references: Iterable[Reference]) -> tuple[Reference, ...]:
    """One reference per coordinate, in first-seen order, without set parameters.

    The relay hint is the first one given for that coordinate, so a set that omitted the
    hint does not hide the hint another set gave.
    """
    hints: dict[str, str | None] = {}
    for reference in references:
        if hints.get(reference.coordinate) is None:
            hints[reference.coordinate] = reference.relay_hint
    return tuple(Reference(coordinate, hint) for coordinate, hint in hints.items())

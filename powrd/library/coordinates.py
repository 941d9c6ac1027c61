"""Workout kinds and the coordinates (``<kind>:<pubkey>:<d>``) that name addressable events."""

from __future__ import annotations

from dataclasses import dataclass, field

EXERCISE = 33401
TEMPLATE = 33402
RECORD = 1301
LEGACY_RECORD = 33403
"""The seed design's number for workout records; still accepted and processed as a record."""

RECORD_KINDS = frozenset((RECORD, LEGACY_RECORD))
WORKOUT_KINDS = frozenset((EXERCISE, TEMPLATE, RECORD, LEGACY_RECORD))

_HEX = frozenset("0123456789abcdef")
_ANY_CASE_HEX = frozenset("0123456789abcdefABCDEF")
_PUBKEY_LENGTH = 64
_MAX_KIND = 65535


def is_workout_kind(kind: int) -> bool:
    """Whether ``kind`` is one of the NIP-101e kinds powrd interprets."""
    return kind in WORKOUT_KINDS


@dataclass(frozen=True, slots=True)
class Coordinate:
    """The address of an addressable event.

    Attributes:
        kind: the event kind.
        pubkey: the author, 64 lowercase hex characters.
        d: the ``d`` identifier (may contain ``:``).
        pubkey_assumed: the reference lacked the pubkey and ``pubkey`` is the default the
            caller supplied (usually the referencing event's author). It is not part of
            the coordinate's identity, so it does not take part in comparisons.
    """

    kind: int
    pubkey: str
    d: str
    pubkey_assumed: bool = field(default=False, compare=False)

    def __str__(self) -> str:
        return f"{self.kind}:{self.pubkey}:{self.d}"


def parse_coordinate(text: str, default_pubkey: str | None = None) -> Coordinate | None:
    """Read ``<kind>:<pubkey>:<d>``, or ``<kind>:<d>`` when a default pubkey is given.

    The kind is a plain decimal from 0 to 65535 without leading zeros, so that every
    coordinate has exactly one spelling. The pubkey must be 64 lowercase hex characters.
    The d part may contain ``:`` in the full form. In the short form it may not: there
    ``33401:abc:x`` reads as a full coordinate with a bad pubkey, not as the d ``abc:x``,
    and a lone pubkey (``33401:<64 hex>``) reads as a coordinate missing its d.

    Args:
        text: the reference as found in a tag.
        default_pubkey: the pubkey to assume when the reference lacks one, or None to
            refuse such references.

    Returns:
        The coordinate, or None when ``text`` is not one.

    Raises:
        ValueError: ``default_pubkey`` is not 64 lowercase hex characters.
    """
    if default_pubkey is not None and not _is_pubkey(default_pubkey):
        raise ValueError("default_pubkey is not 64 lowercase hex characters")
    kind_text, separator, rest = text.partition(":")
    kind = _parse_kind(kind_text) if separator else None
    if kind is None:
        return None
    pubkey, separator, d = rest.partition(":")
    if separator:
        return Coordinate(kind, pubkey, d) if _is_pubkey(pubkey) else None
    if default_pubkey is None or not rest or _looks_like_pubkey(rest):
        return None
    return Coordinate(kind, default_pubkey, rest, pubkey_assumed=True)


def _parse_kind(text: str) -> int | None:
    canonical = text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))
    if not canonical or len(text) > len(str(_MAX_KIND)):
        return None
    kind = int(text)
    return kind if kind <= _MAX_KIND else None


def _is_pubkey(text: str) -> bool:
    return len(text) == _PUBKEY_LENGTH and _HEX.issuperset(text)


def _looks_like_pubkey(text: str) -> bool:
    return len(text) == _PUBKEY_LENGTH and _ANY_CASE_HEX.issuperset(text)

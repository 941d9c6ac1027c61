"""Coordinates (``<kind>:<pubkey>:<d>``): the one parser for every reference to an
addressable event, whether it comes from a tag, a deletion, the store or the control socket.

Apps publish three spellings. The full form ``<kind>:<64 hex>:<d>`` (d may hold ``:``).
The short forms ``<kind>:<d>`` and ``<kind>::<d>`` leave the pubkey out and mean the
referencing event's own author; POWR's app ids look like ``local:m5x2k1q-abc``, so
``33401:local:m5x2k1q-abc`` is a short form whose d is ``local:m5x2k1q-abc`` — the middle
part is only a pubkey when it is 64 lowercase hex characters.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_HEX = frozenset("0123456789abcdef")
_ANY_CASE_HEX = frozenset("0123456789abcdefABCDEF")
_PUBKEY_LENGTH = 64
_MAX_KIND = 65535
# A middle part this close to a pubkey is a broken pubkey, not the start of a d.
_NEAR_PUBKEY_LENGTHS = range(_PUBKEY_LENGTH - 8, _PUBKEY_LENGTH + 9)


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
    """Read a coordinate in the full form, or in a short form when a default pubkey is given.

    The kind is a plain decimal from 0 to 65535 without leading zeros, so that every
    coordinate has exactly one spelling. In the full form the pubkey is 64 lowercase hex
    characters and the d part is everything after it (possibly empty, possibly with
    ``:``). Otherwise the text is a short form: ``<kind>::<d>`` or ``<kind>:<d>``, where
    the d is everything after the kind (``33401:local:abc`` has d ``local:abc``). A short
    form needs a non-empty d and a middle part that is not a mangled pubkey (hex of
    nearly pubkey length in any case, an ``npub1…``), and a lone pubkey
    (``33401:<64 hex>``) is a coordinate missing its d, not a short form.

    Args:
        text: the reference as found.
        default_pubkey: the pubkey to assume when the reference lacks one, or None to
            refuse such references.

    Returns:
        The coordinate, or None when ``text`` is not one.

    Raises:
        ValueError: ``default_pubkey`` is not 64 lowercase hex characters.
    """
    if default_pubkey is not None and not is_pubkey(default_pubkey):
        raise ValueError("default_pubkey is not 64 lowercase hex characters")
    kind_text, separator, rest = text.partition(":")
    kind = _parse_kind(kind_text) if separator else None
    if kind is None:
        return None
    middle, separator, d = rest.partition(":")
    if separator and is_pubkey(middle):
        return Coordinate(kind, middle, d)
    if default_pubkey is None:
        return None
    if separator and not middle:
        short_d = d  # <kind>::<d>
    elif _looks_like_pubkey(middle):
        return None
    else:
        short_d = rest  # <kind>:<d>, the d possibly holding ':'
    if not short_d:
        return None
    return Coordinate(kind, default_pubkey, short_d, pubkey_assumed=True)


def split_coordinate(text: str) -> tuple[int, str, str] | None:
    """(kind, pubkey, d) of a full-form coordinate, or None when ``text`` is not one."""
    coordinate = parse_coordinate(text)
    return None if coordinate is None else (coordinate.kind, coordinate.pubkey, coordinate.d)


def author_of(text: str) -> str | None:
    """The pubkey of a full-form coordinate, or None when ``text`` is not one."""
    coordinate = parse_coordinate(text)
    return None if coordinate is None else coordinate.pubkey


def is_pubkey(text: str) -> bool:
    """Whether ``text`` is 64 lowercase hex characters."""
    return len(text) == _PUBKEY_LENGTH and _HEX.issuperset(text)


def _parse_kind(text: str) -> int | None:
    canonical = text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))
    if not canonical or len(text) > len(str(_MAX_KIND)):
        return None
    kind = int(text)
    return kind if kind <= _MAX_KIND else None


def _looks_like_pubkey(text: str) -> bool:
    near = len(text) in _NEAR_PUBKEY_LENGTHS and _ANY_CASE_HEX.issuperset(text)
    return near or text.lower().startswith("npub1")

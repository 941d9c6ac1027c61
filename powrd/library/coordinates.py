"""Workout kinds and the coordinates (``<kind>:<pubkey>:<d>``) that name addressable events."""

from __future__ import annotations

from powrd.protocol.coordinates import Coordinate, parse_coordinate

__all__ = [
    "EXERCISE",
    "LEGACY_RECORD",
    "LIST",
    "LIST_PREFIX",
    "RECORD",
    "RECORD_KINDS",
    "TEMPLATE",
    "WORKOUT_KINDS",
    "Coordinate",
    "is_workout_kind",
    "parse_coordinate",
]

EXERCISE = 33401
TEMPLATE = 33402
RECORD = 1301
LEGACY_RECORD = 33403
"""The seed design's number for workout records; still accepted and processed as a record."""

RECORD_KINDS = frozenset((RECORD, LEGACY_RECORD))
WORKOUT_KINDS = frozenset((EXERCISE, TEMPLATE, RECORD, LEGACY_RECORD))
LIST = 30003
"""NIP-51 sets: POWR keeps the user's saved exercises and templates in them."""
LIST_PREFIX = "powr-"
"""Only lists whose d starts with this are read as POWR collections."""

def is_workout_kind(kind: int) -> bool:
    """Whether ``kind`` is one of the NIP-101e kinds powrd interprets."""
    return kind in WORKOUT_KINDS

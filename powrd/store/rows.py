"""Processed NIP-101e content as the store writes it.

The library layer parses events into these rows; the writer persists them in the same
transaction as the raw event. Lists are never deduplicated: three identical ``exercise``
tags are three sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from powrd.protocol.coordinates import parse_coordinate


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference from a template or record to another addressable event.

    Attributes:
        coordinate: ``<kind>:<pubkey>:<d>``, normalized (a reference that lacked the
            pubkey has the referencing event's author filled in).
        relay_hint: the tag's relay hint, or None when empty or absent.
        params: the tag's elements after the relay hint (set parameters), as received.
    """

    coordinate: str
    relay_hint: str | None = None
    params: tuple[str, ...] = ()

    def _parts(self) -> tuple[int, str, str]:
        parsed = parse_coordinate(self.coordinate)
        if parsed is None:
            raise ValueError(f"reference coordinate {self.coordinate!r} is not normalized")
        return parsed.kind, parsed.pubkey, parsed.d

    @property
    def kind(self) -> int:
        return self._parts()[0]

    @property
    def pubkey(self) -> str:
        return self._parts()[1]

    @property
    def d(self) -> str:
        return self._parts()[2]


@dataclass(frozen=True, slots=True)
class MediaRef:
    """One NIP-92 ``imeta`` tag of an exercise."""

    url: str
    mime_type: str | None = None
    sha256: str | None = None
    dim: str | None = None
    alt: str | None = None
    extra: tuple[tuple[str, str], ...] = ()
    """Keys powrd does not use (``blurhash``, ``duration``, …), as (key, value) pairs."""


Unreadable = tuple[tuple[str, ...], str]
"""A reference tag that could not be read, as given, and the warning saying why."""


@dataclass(frozen=True, slots=True)
class ExerciseRow:
    title: str
    equipment: str | None
    format: tuple[str, ...]
    format_units: tuple[str, ...]
    difficulty: str | None = None
    hashtags: tuple[str, ...] = ()
    media: tuple[MediaRef, ...] = ()


@dataclass(frozen=True, slots=True)
class TemplateRow:
    title: str
    type: str | None
    exercises: tuple[Reference, ...]
    rounds: int | None = None
    duration: int | None = None
    interval: int | None = None
    rest_between_rounds: int | None = None
    hashtags: tuple[str, ...] = ()
    unreadable: tuple[Unreadable, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordRow:
    title: str
    type: str | None
    sets: tuple[Reference, ...]
    start: int | None = None
    end: int | None = None
    completed: bool | None = None
    rounds_completed: int | float | None = None
    interval: int | float | None = None
    template: Reference | None = None
    prs: tuple[str, ...] = ()
    hashtags: tuple[str, ...] = ()
    activity: str | None = None
    """A cardio record's activity (``running``); None for sets of exercises."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """A cardio record's measurements (``distance_m``, ``duration_s``, ``splits``, …)."""
    unreadable: tuple[Unreadable, ...] = ()


@dataclass(frozen=True, slots=True)
class CollectionRow:
    """A POWR list (NIP-51 kind 30003): saved exercises, templates or followed lists."""

    title: str
    members: tuple[Reference, ...]


@dataclass(frozen=True, slots=True)
class Processed:
    """What the library made of one event.

    Attributes:
        row: the kind's row, or None when the event is not NIP-101e content or could
            not be interpreted at all (the raw event is stored regardless).
        warnings: human-readable processing warnings (never a reason to drop the event).
        dependencies: every reference whose target must be stored for the event to be
            complete (template exercises; record exercises and template).
    """

    row: ExerciseRow | TemplateRow | RecordRow | CollectionRow | None = None
    warnings: tuple[str, ...] = ()
    dependencies: tuple[Reference, ...] = field(default=())


NOTHING = Processed()

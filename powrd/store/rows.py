"""Processed NIP-101e content as the store writes it.

The library layer parses events into these rows; the writer persists them in the same
transaction as the raw event. Lists are never deduplicated: three identical ``exercise``
tags are three sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field


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

    @property
    def kind(self) -> int:
        return int(self.coordinate.split(":", 1)[0])

    @property
    def pubkey(self) -> str:
        return self.coordinate.split(":", 2)[1]

    @property
    def d(self) -> str:
        return self.coordinate.split(":", 2)[2]


@dataclass(frozen=True, slots=True)
class MediaRef:
    """One NIP-92 ``imeta`` tag of an exercise."""

    url: str
    mime_type: str | None = None
    sha256: str | None = None
    dim: str | None = None
    alt: str | None = None


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


@dataclass(frozen=True, slots=True)
class RecordRow:
    title: str
    type: str | None
    sets: tuple[Reference, ...]
    start: int | None = None
    end: int | None = None
    completed: bool | None = None
    rounds_completed: int | None = None
    interval: int | None = None
    template: Reference | None = None
    prs: tuple[str, ...] = ()
    hashtags: tuple[str, ...] = ()


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

    row: ExerciseRow | TemplateRow | RecordRow | None = None
    warnings: tuple[str, ...] = ()
    dependencies: tuple[Reference, ...] = field(default=())


NOTHING = Processed()

"""Kind 33401, the exercise template: what one exercise is and how its sets are measured."""

from __future__ import annotations

from collections.abc import Sequence

from powrd.library.tags import TagReader, show
from powrd.protocol.event import Event
from powrd.store.rows import ExerciseRow, MediaRef, Processed

EQUIPMENT = frozenset(("barbell", "dumbbell", "bodyweight", "machine", "cardio"))
DIFFICULTIES = frozenset(("beginner", "intermediate", "advanced"))
SPEC_TAGS = frozenset(
    ("d", "title", "format", "format_units", "equipment", "difficulty", "imeta", "t")
)
_MEDIA_KEYS = frozenset(("url", "m", "x", "dim", "alt"))
_SHA256_HEX_LENGTH = 64
_HEX = frozenset("0123456789abcdef")


def parse_exercise(event: Event) -> Processed:
    """Interpret a kind 33401 event.

    A row is produced whenever the event has a ``d`` value; anything else that is
    missing or odd becomes a warning. ``format`` and ``format_units`` are kept as given
    even when their lengths differ: they pair by position, and
    :func:`powrd.library.layout.layout_params` copes with either being short.
    """
    tags = TagReader(event)
    if not tags.has_address():
        return Processed(warnings=tags.warnings())
    title = tags.title()
    parameters = tags.values("format", required=True)
    units = tags.values("format_units", required=True)
    if parameters is not None:
        _check_format(tags, parameters)
        if units is not None and len(units) != len(parameters):
            tags.warn(f"tag format_units has {len(units)} values but format has {len(parameters)}")
    row = ExerciseRow(
        title=title,
        equipment=tags.choice("equipment", EQUIPMENT, required=True),
        format=parameters or (),
        format_units=units or (),
        difficulty=tags.choice("difficulty", DIFFICULTIES, required=False),
        hashtags=tags.hashtags(),
        media=_media(tags),
    )
    tags.unknown_tags(SPEC_TAGS, "exercises")
    return Processed(row=row, warnings=tags.warnings())


def _check_format(tags: TagReader, parameters: tuple[str, ...]) -> None:
    for position, name in enumerate(parameters, start=1):
        if not name:
            tags.warn(f"tag format has an empty parameter at position {position}")
    repeated = {name for name in parameters if name and parameters.count(name) > 1}
    for name in sorted(repeated):
        tags.warn(f"tag format names {show(name)} more than once")


def _media(tags: TagReader) -> tuple[MediaRef, ...]:
    found = (_media_ref(tags, tag) for tag in tags.all_named("imeta"))
    return tuple(media for media in found if media is not None)


def _media_ref(tags: TagReader, tag: Sequence[str]) -> MediaRef | None:
    """Read one NIP-92 ``imeta`` tag: elements of the form ``"<key> <value>"``."""
    fields: dict[str, str] = {}
    for element in tag[1:]:
        key, separator, value = element.partition(" ")
        if not separator:
            tags.warn(f"tag imeta element {show(element)} is not a 'key value' pair; ignored")
        elif key in _MEDIA_KEYS:
            # NIP-92 lets some keys repeat (fallback URLs); for ours the first is the one.
            fields.setdefault(key, value)
    url = fields.get("url")
    if not url:
        tags.warn("tag imeta has no url; ignored")
        return None
    sha256 = fields.get("x") or None
    if sha256 is not None:
        sha256 = sha256.lower()
        if len(sha256) != _SHA256_HEX_LENGTH or not _HEX.issuperset(sha256):
            tags.warn(f"tag imeta x {show(sha256)} is not a SHA-256 hex digest; ignored")
            sha256 = None
    return MediaRef(
        url=url,
        mime_type=fields.get("m") or None,
        sha256=sha256,
        dim=fields.get("dim") or None,
        alt=fields.get("alt") or None,
    )

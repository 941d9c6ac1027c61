"""Kind 33401, the exercise template: what one exercise is and how its sets are measured."""

from __future__ import annotations

from collections.abc import Sequence

from powrd.library.tags import TagReader, show
from powrd.protocol.event import Event
from powrd.store.rows import ExerciseRow, MediaRef, Processed

EQUIPMENT = frozenset(("barbell", "dumbbell", "bodyweight", "machine", "cardio"))
DIFFICULTIES = frozenset(("beginner", "intermediate", "advanced"))
SPEC_TAGS = frozenset(
    ("d", "title", "format", "format_units", "equipment", "difficulty", "imeta", "t",
     "client", "type", "category")
)
_MEDIA_KEYS = frozenset(("url", "m", "x", "dim", "alt"))
# NIP-92/94 keys whose value is one word: in the single-string imeta form they end the
# previous value. Free-text keys (alt, summary) run until the next such key.
_ONE_WORD_KEYS = frozenset(
    ("url", "m", "x", "ox", "dim", "size", "blurhash", "thumb", "image", "fallback",
     "duration", "purpose", "service", "magnet", "i", "bitrate")
)
_TEXT_KEYS = frozenset(("alt", "summary"))
_IMETA_KEYS = _ONE_WORD_KEYS | _TEXT_KEYS
_MAX_EXTRA_KEYS = 20
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
    if parameters is not None and units is not None:
        units = _unpaired_units(tags, parameters, units)
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


def _unpaired_units(
    tags: TagReader, parameters: tuple[str, ...], units: tuple[str, ...]
) -> tuple[str, ...]:
    """POWR's ExerciseSheet writes ``format_units`` as ``name, unit`` pairs; take the units."""
    if parameters and len(units) == 2 * len(parameters) and units[0::2] == parameters:
        tags.warn("tag format_units holds (name, unit) pairs; read the units from them")
        return units[1::2]
    return units


def _media(tags: TagReader) -> tuple[MediaRef, ...]:
    found = (_media_ref(tags, tag) for tag in tags.all_named("imeta"))
    return tuple(media for media in found if media is not None)


def _media_ref(tags: TagReader, tag: Sequence[str]) -> MediaRef | None:
    """Read one NIP-92 ``imeta`` tag, in either form.

    NIP-92 puts one ``"<key> <value>"`` per element; powr_web writes all pairs into one
    string (``"url https://… m video/mp4 duration 45"``). A URL never holds whitespace,
    so an element whose url is followed by more words is read as the one-string form.
    """
    fields: dict[str, str] = {}
    extra: dict[str, str] = {}
    for element in tag[1:]:
        pairs = _imeta_pairs(element)
        if not pairs:
            tags.warn(f"tag imeta element {show(element)} is not a 'key value' pair; ignored")
        for key, value in pairs:
            # NIP-92 lets some keys repeat (fallback URLs); for ours the first is the one.
            if key in _MEDIA_KEYS:
                fields.setdefault(key, value)
            elif len(extra) < _MAX_EXTRA_KEYS:
                extra.setdefault(key, value)
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
        extra=tuple(extra.items()),
    )


def _imeta_pairs(element: str) -> list[tuple[str, str]]:
    """The (key, value) pairs of one imeta element; [] when it holds none."""
    key, separator, value = element.strip().partition(" ")
    value = value.strip()
    if not separator or not key or not value:
        return []
    words = value.split()
    if key != "url" and (len(words) < 2 or words[1] not in _IMETA_KEYS or key in _TEXT_KEYS):
        return [(key, value)]  # one pair; a free-text value keeps its spaces
    return _pairs_in(element.split())


def _pairs_in(words: list[str]) -> list[tuple[str, str]]:
    """Pairs from the one-string form: one-word keys take one word, text keys run on."""
    pairs: list[tuple[str, str]] = []
    position = 0
    while position + 1 < len(words):
        key = words[position]
        if key in _TEXT_KEYS:
            end = position + 1
            while end < len(words) and (end == position + 1 or words[end] not in _IMETA_KEYS):
                end += 1
            pairs.append((key, " ".join(words[position + 1 : end])))
            position = end
        else:
            pairs.append((key, words[position + 1]))
            position += 2
    return pairs

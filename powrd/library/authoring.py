"""Rules for the user's own events: stricter than for what relays serve.

Events from relays are stored whatever their NIP-101e quality; events powrd signs for
the user must be well formed, so a publish request that breaks a rule is refused with
a message naming the problem and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from powrd.library.coordinates import EXERCISE, LEGACY_RECORD, RECORD, TEMPLATE, parse_coordinate
from powrd.library.exercise import EQUIPMENT

DELETION = 5
PUBLISHABLE_KINDS = frozenset((EXERCISE, TEMPLATE, RECORD, LEGACY_RECORD, DELETION))
REQUIRED = {
    EXERCISE: ("d", "title", "format", "format_units", "equipment"),
    TEMPLATE: ("d", "title", "type", "exercise"),
    RECORD: ("d", "title", "type", "exercise", "start", "end", "completed"),
    LEGACY_RECORD: ("d", "title", "type", "exercise", "start", "end", "completed"),
}


class AuthoringError(ValueError):
    """A publish request is not a valid event of its kind."""


def _first(tags: Sequence[Sequence[str]], name: str) -> Sequence[str] | None:
    return next((tag for tag in tags if tag and tag[0] == name), None)


def _check_shape(kind: object, content: object, tags: object) -> None:
    if type(kind) is not int or kind not in PUBLISHABLE_KINDS:
        allowed = ", ".join(str(k) for k in sorted(PUBLISHABLE_KINDS))
        raise AuthoringError(f"kind: expected one of {allowed}, found {kind!r}")
    if not isinstance(content, str):
        raise AuthoringError("content: expected a string")
    if not isinstance(tags, list) or not all(
        isinstance(tag, list) and tag and all(isinstance(x, str) for x in tag) for tag in tags
    ):
        raise AuthoringError("tags: expected a list of non-empty lists of strings")


def check_publishable(kind: object, content: object, tags: object, author: str) -> None:
    """Raise :class:`AuthoringError` unless this is a well-formed event of its kind.

    Args:
        kind: the requested kind.
        content: the requested content.
        tags: the requested tags.
        author: the hex pubkey that will sign it (deletions may only name its events).
    """
    _check_shape(kind, content, tags)
    assert isinstance(kind, int) and isinstance(tags, list)
    if kind == DELETION:
        _check_deletion(tags, author)
        return
    for name in REQUIRED[kind]:
        tag = _first(tags, name)
        if tag is None or len(tag) < 2 or (name != "d" and not tag[1]):
            raise AuthoringError(f"kind {kind} requires a {name!r} tag with a value")
    if kind == EXERCISE:
        _check_exercise(tags)
    else:
        _check_references(kind, tags, author)


def _check_exercise(tags: Sequence[Sequence[str]]) -> None:
    fmt, units = _first(tags, "format"), _first(tags, "format_units")
    assert fmt is not None and units is not None
    if len(fmt) != len(units):
        raise AuthoringError(
            f"format has {len(fmt) - 1} parameters but format_units has {len(units) - 1} units"
        )
    equipment = _first(tags, "equipment")
    assert equipment is not None
    if equipment[1] not in EQUIPMENT:
        raise AuthoringError(f"equipment: expected one of {', '.join(sorted(EQUIPMENT))}")


def _check_references(kind: int, tags: Sequence[Sequence[str]], author: str) -> None:
    for tag in tags:
        if tag[0] == "exercise":
            ref = parse_coordinate(tag[1]) if len(tag) > 1 else None
            if ref is None or ref.kind != EXERCISE:
                found = tag[1] if len(tag) > 1 else ""
                raise AuthoringError(f"exercise tag: expected 33401:<pubkey>:<d>, found {found!r}")
        elif tag[0] == "template":
            ref = parse_coordinate(tag[1]) if len(tag) > 1 else None
            if ref is None or ref.kind != TEMPLATE:
                raise AuthoringError("template tag: expected a 33402:<pubkey>:<d> coordinate")
    if kind in (RECORD, LEGACY_RECORD):
        start, end = _first(tags, "start"), _first(tags, "end")
        assert start is not None and end is not None
        if not start[1].isdigit() or not end[1].isdigit() or int(end[1]) < int(start[1]):
            raise AuthoringError("start and end: expected unix seconds with end >= start")
        completed = _first(tags, "completed")
        assert completed is not None
        if completed[1] not in ("true", "false"):
            raise AuthoringError("completed: expected 'true' or 'false'")


def _check_deletion(tags: Sequence[Sequence[str]], author: str) -> None:
    targets = [tag for tag in tags if tag[0] in ("e", "a") and len(tag) > 1]
    if not targets:
        raise AuthoringError("a deletion (kind 5) needs at least one 'e' or 'a' tag")
    for tag in targets:
        if tag[0] == "a":
            ref = parse_coordinate(tag[1])
            if ref is None or ref.pubkey != author:
                raise AuthoringError(f"a tag {tag[1]!r}: you can only delete your own coordinates")

"""Kind 30003 (NIP-51 sets) written by POWR: the user's saved exercises and templates.

POWR keeps ``powr-exercise-list``, ``powr-workout-list`` and
``powr-collection-subscriptions``; other apps use kind 30003 for unrelated sets, so
only lists whose d starts with :data:`powrd.library.coordinates.LIST_PREFIX` are read.
Every ``a`` tag is a member; members that are not stored are dependencies, fetched and
resolved like a template's exercises.
"""

from __future__ import annotations

from powrd.library.coordinates import LIST_PREFIX
from powrd.library.tags import TagReader, dependencies_of, show
from powrd.protocol.event import Event, is_addressable
from powrd.store.rows import NOTHING, CollectionRow, Processed

SPEC_TAGS = frozenset(("d", "title", "a", "name", "description", "image", "t", "client"))


def parse_collection(event: Event, prefix: str = LIST_PREFIX) -> Processed:
    """Interpret a kind 30003 list whose d starts with ``prefix``; others give nothing."""
    tags = TagReader(event)
    d = next((tag[1] for tag in tags.all_named("d") if len(tag) > 1), None)
    if d is None or not d.startswith(prefix):
        return NOTHING
    title = tags.text("title", required=False) or tags.text("name", required=False) or d
    members = []
    for tag in tags.all_named("a"):
        member = tags.reference(tag, None)
        if member is None:
            continue
        if not is_addressable(member.kind):
            tags.warn(f"tag a {show(tag[1])} is not an addressable kind; skipped")
            continue
        members.append(member)
    tags.unknown_tags(SPEC_TAGS, "POWR lists")
    return Processed(
        row=CollectionRow(title=title, members=tuple(members)),
        warnings=tags.warnings(),
        dependencies=dependencies_of(members),
    )

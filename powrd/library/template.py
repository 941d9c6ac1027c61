"""Kind 33402, the workout template: a plan of sets that references exercises."""

from __future__ import annotations

from powrd.library.coordinates import EXERCISE
from powrd.library.tags import TagReader, dependencies_of
from powrd.protocol.event import Event
from powrd.store.rows import Processed, TemplateRow

WORKOUT_TYPES = frozenset(("strength", "circuit", "emom", "amrap", "superset", "metcon"))
"""The spec's four types plus the two that later revisions added."""

SPEC_TAGS = frozenset(
    ("d", "title", "type", "exercise", "rounds", "duration", "interval",
     "rest_between_rounds", "t", "rest_between_sets", "client", "category")
)


def parse_template(event: Event) -> Processed:
    """Interpret a kind 33402 event.

    Every usable ``exercise`` tag becomes one entry of ``exercises``, in tag order and
    never deduplicated (three identical tags are three sets). ``dependencies`` holds each
    referenced exercise once; tags that could not be read are kept in ``unreadable``, and
    make the template incomplete.
    """
    tags = TagReader(event)
    if not tags.has_address():
        return Processed(warnings=tags.warnings())
    title = tags.title()
    workout_type = tags.choice("type", WORKOUT_TYPES, required=True)
    exercises = tags.references("exercise", EXERCISE)
    if not tags.all_named("exercise"):
        tags.warn("tag exercise is missing")
    row = TemplateRow(
        title=title,
        type=workout_type,
        exercises=exercises,
        rounds=tags.integer("rounds"),
        duration=tags.integer("duration"),
        interval=tags.integer("interval"),
        rest_between_rounds=tags.integer("rest_between_rounds"),
        hashtags=tags.hashtags(),
        unreadable=tuple(tags.unreadable),
    )
    tags.unknown_tags(SPEC_TAGS, "workout templates")
    return Processed(row=row, warnings=tags.warnings(), dependencies=dependencies_of(exercises))

"""Kind 1301 (and legacy 33403), the workout record: the sets someone actually did.

A kind 1301 from RUNSTR is a cardio record instead (:mod:`powrd.library.cardio`): an
activity with metrics, and no sets.
"""

from __future__ import annotations

from powrd.library.cardio import CARDIO_TAGS, activity_of, is_cardio, read_metrics
from powrd.library.coordinates import EXERCISE, LEGACY_RECORD, TEMPLATE
from powrd.library.tags import TagReader, dependencies_of, show
from powrd.library.template import WORKOUT_TYPES
from powrd.protocol.event import Event
from powrd.store.rows import Processed, RecordRow, Reference

SPEC_TAGS = frozenset(
    ("d", "title", "type", "exercise", "start", "end", "completed", "rounds_completed",
     "interval", "template", "pr", "t")
)
RECORD_TYPES = WORKOUT_TYPES | {"cardio"}
_COMPLETED = {"true": True, "false": False}
_PR_PARTS = 3


def parse_record(event: Event) -> Processed:
    """Interpret a kind 1301 or 33403 event.

    Each usable ``exercise`` tag is one performed set, kept in tag order. A kind 1301
    record is identified by its event id, so it is interpreted even without ``d``; the
    legacy addressable kind needs ``d`` like the other addressable kinds.
    """
    tags = TagReader(event)
    if event.kind == LEGACY_RECORD and not tags.has_address():
        return Processed(warnings=tags.warnings())
    cardio = event.kind != LEGACY_RECORD and is_cardio(tags)
    if event.kind != LEGACY_RECORD and not cardio:
        tags.text("d", required=True)
    title = tags.title()
    workout_type = tags.choice("type", RECORD_TYPES, required=not cardio)
    exercise_tags = tags.all_named("exercise")
    activities = [word for word in map(activity_of, exercise_tags) if word] if cardio else []
    set_tags = [tag for tag in exercise_tags if not (cardio and activity_of(tag))]
    found = (tags.reference(tag, EXERCISE) for tag in set_tags)
    sets = tuple(reference for reference in found if reference is not None)
    if not exercise_tags:
        tags.warn("tag exercise is missing")
    start = tags.timestamp("start", required=not cardio)
    if start is None and cardio:
        start = tags.timestamp("workout_start_time")
    end = tags.timestamp("end", required=not cardio)
    if start is not None and end is not None and end < start:
        tags.warn("tag end is before tag start")
    template = _template(tags)
    row = RecordRow(
        title=title,
        type=workout_type,
        sets=sets,
        start=start,
        end=end,
        completed=_completed(tags, required=not cardio),
        rounds_completed=tags.number("rounds_completed"),
        interval=tags.number("interval"),
        template=template,
        prs=_personal_records(tags),
        hashtags=tags.hashtags(),
        activity=_activity(activities, sets) if cardio else None,
        metrics=read_metrics(tags) if cardio else {},
        unreadable=tuple(tags.unreadable),
    )
    tags.unknown_tags(SPEC_TAGS | CARDIO_TAGS if cardio else SPEC_TAGS, "workout records")
    referenced = sets if template is None else (*sets, template)
    return Processed(row=row, warnings=tags.warnings(), dependencies=dependencies_of(referenced))


def _activity(activities: list[str], sets: tuple[Reference, ...]) -> str | None:
    """The named activity; a record of sets that only carries a duration has none."""
    if activities:
        return activities[0]
    return None if sets else "cardio"


def _template(tags: TagReader) -> Reference | None:
    tag = tags.first("template")
    return None if tag is None else tags.reference(tag, TEMPLATE)


def _completed(tags: TagReader, *, required: bool) -> bool | None:
    text = tags.text("completed", required=required)
    if text is None:
        return None
    completed = _COMPLETED.get(text)
    if completed is None:
        tags.warn(f"tag completed {show(text)} is not true or false")
    return completed


def _personal_records(tags: TagReader) -> tuple[str, ...]:
    """The ``pr`` values as given; a value not shaped ``<coordinate>,<metric>,<value>``
    is kept but noted, since the d part of its coordinate may itself hold commas."""
    prs = tuple(tag[1] for tag in tags.all_named("pr") if len(tag) > 1)
    for pr in prs:
        if len(pr.rsplit(",", _PR_PARTS - 1)) < _PR_PARTS:
            tags.warn(f"tag pr {show(pr)} is not '<coordinate>,<metric>,<value>'")
    return prs

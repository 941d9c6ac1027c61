"""The library's entry point for incoming events: interpret one event by its kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from powrd.library.collection import parse_collection
from powrd.library.coordinates import EXERCISE, LEGACY_RECORD, LIST, RECORD, TEMPLATE
from powrd.library.exercise import parse_exercise
from powrd.library.record import parse_record
from powrd.library.template import parse_template
from powrd.protocol.event import Event
from powrd.store.rows import NOTHING, Processed

_PARSERS: Mapping[int, Callable[[Event], Processed]] = {
    EXERCISE: parse_exercise,
    TEMPLATE: parse_template,
    RECORD: parse_record,
    LEGACY_RECORD: parse_record,
    LIST: parse_collection,
}


def process(event: Event) -> Processed:
    """What NIP-101e makes of ``event``: its row, warnings and dependencies.

    Never raises for a well-formed event: whatever cannot be interpreted becomes a
    warning. Events of other kinds give :data:`powrd.store.rows.NOTHING`.

    Args:
        event: a well-formed event (its signature is not looked at here).
    """
    parser = _PARSERS.get(event.kind)
    return NOTHING if parser is None else parser(event)

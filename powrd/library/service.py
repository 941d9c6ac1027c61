"""The library's queries: exercises, resolved templates, records with sets."""

from __future__ import annotations

from typing import Any

import apsw

from powrd.library.layout import layout_params, split_set_number
from powrd.store import library_queries


def resolve_template(conn: apsw.Connection, coordinate: str) -> dict[str, Any] | None:
    """A template with ``complete``, ``missing`` and each exercise reference resolved.

    Each reference carries the exercise definition (or None when it is missing) and the
    template's parameters laid out by that exercise's ``format``/``format_units``.
    """
    found = library_queries.template(conn, coordinate)
    if found is None:
        return None
    references = found.pop("references")
    wanted = sorted({ref["coordinate"] for ref in references})
    definitions = library_queries.exercises_by_coordinate(conn, wanted)
    exercises = []
    for ref in references:
        definition = definitions.get(ref["coordinate"])
        fmt = tuple(definition["format"]) if definition else ()
        units = tuple(definition["format_units"]) if definition else ()
        params, set_number = split_set_number(fmt, tuple(ref["params"]))
        exercises.append(
            {
                **ref,
                "exercise": definition,
                "set_number": set_number,
                "parameters": layout_params(fmt, units, params),
            }
        )
    found["exercises"] = exercises
    found["complete"] = not found["missing"] and not found["unreadable"]
    return found


def records_with_sets(conn: apsw.Connection, **filters: Any) -> list[dict[str, Any]]:
    """Records with each set's parameters laid out by its exercise's format when known."""
    found = library_queries.records(conn, **filters)
    wanted = sorted({s["coordinate"] for r in found for s in r["sets"]})
    definitions = library_queries.exercises_by_coordinate(conn, wanted)
    for record in found:
        for performed in record["sets"]:
            definition = definitions.get(performed["coordinate"])
            fmt = tuple(definition["format"]) if definition else ()
            units = tuple(definition["format_units"]) if definition else ()
            params, set_number = split_set_number(fmt, tuple(performed["params"]))
            performed["exercise_title"] = definition["title"] if definition else None
            performed["set_number"] = set_number
            performed["parameters"] = layout_params(fmt, units, params)
    return found

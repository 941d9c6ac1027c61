"""Set parameters laid out by the referenced exercise's ``format``."""

from __future__ import annotations

from itertools import zip_longest
from typing import TypedDict


class SetParam(TypedDict):
    """One parameter of a set.

    Attributes:
        name: the exercise's ``format`` entry at this position, or None past its end.
        unit: the matching ``format_units`` entry, or None when there is none.
        value: the value given, or None when empty or absent ("to be filled in").
    """

    name: str | None
    unit: str | None
    value: str | None


def split_set_number(
    format: tuple[str, ...], params: tuple[str, ...]
) -> tuple[tuple[str, ...], int | None]:
    """The parameters without a trailing set number, and the set number.

    powr_web appends a set number after the values its ``format`` asks for; sets of a
    template sharing a number are performed together (a superset). Only a whole number
    exactly one place past a known format is read as one.
    """
    if not format or len(params) != len(format) + 1:
        return params, None
    last = params[-1]
    if last.isascii() and last.isdigit() and len(last) <= 9:
        return params[:-1], int(last)
    return params, None


def layout_params(
    format: tuple[str, ...], format_units: tuple[str, ...], params: tuple[str, ...]
) -> list[SetParam]:
    """Pair a set's parameters with the exercise's format, position by position.

    Every ``format`` entry gets a place, so a tag that stops early still shows the
    parameters it left out (as None). Parameters beyond the format are kept with name
    None rather than dropped: the data may be newer than the exercise it was laid out by.

    Args:
        format: the exercise's ``format`` parameter names.
        format_units: the exercise's ``format_units``, same order (either may be short).
        params: the elements after the relay hint in an ``exercise`` tag.

    Returns:
        One entry per position, as many as the longer of ``format`` and ``params``.
    """
    laid_out: list[SetParam] = []
    for position, (name, value) in enumerate(zip_longest(format, params)):
        unit = format_units[position] if name is not None and position < len(format_units) else None
        laid_out.append(SetParam(name=name, unit=unit or None, value=value or None))
    return laid_out

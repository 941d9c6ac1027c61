"""Cardio records (RUNSTR's kind 1301): an activity with distance, time, pace and splits.

RUNSTR publishes runs as kind 1301 too, but with ``["exercise", "running"]`` instead of
set references, and its own measurement tags. Such a record is read into an ``activity``
and a ``metrics`` object in fixed units (metres, seconds, seconds per km), whatever unit
the event used.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from powrd.library.tags import TagReader, show

ACTIVITIES = frozenset(
    ("running", "run", "walking", "walk", "jogging", "cycling", "bike", "biking", "hiking",
     "hike", "swimming", "swim", "rowing", "ruck", "rucking", "skiing", "skating",
     "elliptical", "cardio")
)
"""Words an ``exercise`` tag of a cardio record names instead of a coordinate."""

METRIC_TAGS = frozenset(("distance", "duration", "avg_pace", "split"))
"""Tags whose presence makes a kind 1301 a cardio record."""

CARDIO_TAGS = frozenset(
    (*METRIC_TAGS, "calories", "elevation_gain", "workout_start_time", "source", "client",
     "workout_end_time", "steps")
)

_METRES = {"m": 1.0, "km": 1000.0, "mi": 1609.344, "ft": 0.3048, "yd": 0.9144}
_PACE_PER = {"min/km": 1.0, "min/mi": 1 / 1.609344, "s/km": 1.0, "s/mi": 1 / 1.609344}
_NUMBER = re.compile(r"[0-9]{1,12}(\.[0-9]{1,9})?")
_CLOCK = re.compile(r"([0-9]{1,6}):([0-5]?[0-9])(?::([0-5]?[0-9](?:\.[0-9]{1,6})?))?")


def activity_of(tag: Sequence[str]) -> str | None:
    """The activity an ``exercise`` tag names (``running``), or None for a reference."""
    if len(tag) < 2:
        return None
    word = tag[1].strip().lower()
    return word if word in ACTIVITIES else None


def is_cardio(tags: TagReader) -> bool:
    """Whether a kind 1301 is a cardio record rather than sets of exercises."""
    if any(activity_of(tag) for tag in tags.all_named("exercise")):
        return True
    return any(tags.all_named(name) for name in METRIC_TAGS)


def read_metrics(tags: TagReader) -> dict[str, Any]:
    """The cardio measurements present, in metres and seconds; odd values are warned."""
    metrics: dict[str, Any] = {}
    distance = _length(tags, "distance", default_unit="km")
    if distance is not None:
        metrics["distance_m"] = distance
    duration = _duration(tags, tags.text("duration", required=False), "duration")
    if duration is not None:
        metrics["duration_s"] = duration
    calories = _plain(tags, "calories")
    if calories is not None:
        metrics["calories"] = calories
    elevation = _length(tags, "elevation_gain", default_unit="m")
    if elevation is not None:
        metrics["elevation_gain_m"] = elevation
    pace = _pace(tags)
    if pace is not None:
        metrics["avg_pace_s_per_km"] = pace
    splits = _splits(tags)
    if splits:
        metrics["splits"] = splits
    return metrics


def _number(tags: TagReader, name: str, text: str) -> float | None:
    if not _NUMBER.fullmatch(text):
        tags.warn(f"tag {name} {show(text)} is not a number")
        return None
    return float(text)


def _tidy(value: float) -> int | float:
    """Whole numbers as ints, others to millimetre/millisecond precision."""
    rounded = round(value, 3)
    return int(rounded) if rounded.is_integer() else rounded


def _plain(tags: TagReader, name: str) -> int | float | None:
    text = tags.text(name, required=False)
    value = None if text is None else _number(tags, name, text)
    return None if value is None else _tidy(value)


def _length(tags: TagReader, name: str, *, default_unit: str) -> int | float | None:
    tag = tags.first(name)
    if tag is None or len(tag) < 2:
        return None
    value = _number(tags, name, tag[1])
    if value is None:
        return None
    unit = tag[2].strip().lower() if len(tag) > 2 and tag[2].strip() else None
    if unit is None:
        tags.warn(f"tag {name} has no unit; read as {default_unit}")
        unit = default_unit
    factor = _METRES.get(unit)
    if factor is None:
        tags.warn(f"tag {name} unit {show(unit)} is not km, mi, m, ft or yd; ignored")
        return None
    return _tidy(value * factor)


def clock_seconds(text: str) -> float | None:
    """Seconds in ``HH:MM:SS``, ``MM:SS`` or plain seconds; None when not such a time."""
    text = text.strip()
    if _NUMBER.fullmatch(text):
        return float(text)
    match = _CLOCK.fullmatch(text)
    if match is None:
        return None
    first, second, third = match.groups()
    if third is None:  # MM:SS
        return int(first) * 60 + int(second)
    return int(first) * 3600 + int(second) * 60 + float(third)


def _duration(tags: TagReader, text: str | None, name: str) -> int | float | None:
    if text is None:
        return None
    seconds = clock_seconds(text)
    if seconds is None:
        tags.warn(f"tag {name} {show(text)} is not HH:MM:SS or seconds")
        return None
    return _tidy(seconds)


def _pace(tags: TagReader) -> int | float | None:
    tag = tags.first("avg_pace")
    if tag is None or len(tag) < 2:
        return None
    seconds = clock_seconds(tag[1])
    if seconds is None:
        tags.warn(f"tag avg_pace {show(tag[1])} is not MM:SS or seconds")
        return None
    unit = tag[2].strip().lower() if len(tag) > 2 and tag[2].strip() else "min/km"
    per = _PACE_PER.get(unit)
    if per is None:
        tags.warn(f"tag avg_pace unit {show(unit)} is not min/km or min/mi; ignored")
        return None
    return _tidy(seconds * per)


def _splits(tags: TagReader) -> list[dict[str, int | float]]:
    splits: list[dict[str, int | float]] = []
    for tag in tags.all_named("split"):
        if len(tag) < 3 or not tag[1].isascii() or not tag[1].isdigit() or len(tag[1]) > 6:
            tags.warn(f"tag split {show(' '.join(tag[1:]))} is not [number, time]; ignored")
            continue
        seconds = clock_seconds(tag[2])
        if seconds is None or not math.isfinite(seconds):
            tags.warn(f"tag split {tag[1]} time {show(tag[2])} is not HH:MM:SS; ignored")
            continue
        splits.append({"n": int(tag[1]), "time_s": _tidy(seconds)})
    return splits

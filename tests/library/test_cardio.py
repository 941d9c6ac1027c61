"""RUNSTR cardio records: activity, metrics in fixed units, odd values as warnings."""

from __future__ import annotations

import pytest

from powrd.library.cardio import clock_seconds
from powrd.library.record import parse_record
from powrd.protocol.event import Event
from powrd.store.rows import RecordRow

AUTHOR = "a" * 64


def record(tags: list[list[str]]) -> RecordRow:
    processed = parse_record(Event("1" * 64, AUTHOR, 1_736_952_600, 1301, tags, "", "2" * 128))
    assert isinstance(processed.row, RecordRow)
    return processed.row


def warnings(tags: list[list[str]]) -> tuple[str, ...]:
    return parse_record(Event("1" * 64, AUTHOR, 1_736_952_600, 1301, tags, "", "2" * 128)).warnings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("00:28:15", 1695), ("28:15", 1695), ("1695", 1695), ("1:02:03.5", 3723.5), ("0", 0),
     ("", None), ("28:75", None), ("abc", None), ("-5", None), ("1:2:3:4", None)],
)
def test_clock_seconds(text: str, seconds: float | None) -> None:
    assert clock_seconds(text) == seconds


def test_runstr_run() -> None:
    row = record([
        ["d", "r"], ["title", "Run"], ["exercise", "Running"], ["distance", "10", "km"],
        ["duration", "00:50:00"], ["avg_pace", "300", "s/km"], ["start", "1736950800"],
        ["workout_start_time", "1"],
    ])
    assert row.activity == "running"
    assert row.start == 1736950800  # start wins over workout_start_time
    assert row.sets == ()
    assert row.metrics == {"distance_m": 10000, "duration_s": 3000, "avg_pace_s_per_km": 300}


def test_metrics_alone_make_a_cardio_record_without_required_strength_tags() -> None:
    tags = [["title", "Walk"], ["distance", "2000", "m"], ["workout_start_time", "1736950800"]]
    row = record(tags)
    assert (row.activity, row.start, row.metrics) == ("cardio", 1736950800, {"distance_m": 2000})
    assert warnings(tags) == ("tag exercise is missing",)


@pytest.mark.parametrize(
    ("tag", "warning"),
    [
        (["distance", "5", "parsecs"], "tag distance unit 'parsecs' is not km, mi, m, ft or yd; ignored"),
        (["distance", "five", "km"], "tag distance 'five' is not a number"),
        (["distance", "5"], "tag distance has no unit; read as km"),
        (["duration", "soon"], "tag duration 'soon' is not HH:MM:SS or seconds"),
        (["avg_pace", "05:39", "min/lap"], "tag avg_pace unit 'min/lap' is not min/km or min/mi; ignored"),
        (["split", "one", "00:05:00"], "tag split 'one 00:05:00' is not [number, time]; ignored"),
        (["split", "1", "later"], "tag split 1 time 'later' is not HH:MM:SS; ignored"),
    ],
)
def test_odd_values_warn(tag: list[str], warning: str) -> None:
    tags = [["d", "r"], ["title", "Run"], ["exercise", "running"], tag]
    assert warning in warnings(tags)


def test_strength_records_have_no_activity() -> None:
    row = record([["d", "s"], ["title", "Lift"], ["type", "strength"],
                  ["exercise", f"33401:{AUTHOR}:squat", "", "100", "5"],
                  ["start", "1"], ["end", "2"], ["completed", "true"]])
    assert (row.activity, row.metrics) == (None, {})

"""Kinds 1301 and 33403: sets, times, completion, template and PRs."""

from __future__ import annotations

import pytest

from powrd.library.record import parse_record
from powrd.protocol.event import Event
from powrd.store.rows import RecordRow, Reference

AUTHOR = "a" * 64
COACH = "c" * 64
SQUAT = f"33401:{COACH}:squat"
LEG_DAY = f"33402:{COACH}:leg-day"
RELAY = "wss://relay.example.com"

BASE = [
    ["d", "session-1"],
    ["title", "Leg Day"],
    ["type", "strength"],
    ["start", "1700000000"],
    ["end", "1700003600"],
    ["completed", "true"],
]


def record(tags: list[list[str]], kind: int = 1301) -> Event:
    return Event("1" * 64, AUTHOR, 1_700_003_700, kind, tags, "Felt strong", "2" * 128)


@pytest.mark.parametrize("kind", [1301, 33403])
def test_spec_shaped_record(kind: int) -> None:
    tags = [
        *BASE,
        ["exercise", SQUAT, RELAY, "60", "8", "6", "warmup"],
        ["exercise", SQUAT, RELAY, "100", "5", "8", "normal"],
        ["exercise", SQUAT, RELAY, "100", "5", "8", "normal"],
        ["rounds_completed", "1"],
        ["interval", "120"],
        ["template", LEG_DAY, RELAY],
        ["pr", f"{SQUAT},weight,100"],
        ["t", "legs"],
    ]
    processed = parse_record(record(tags, kind))
    assert processed.warnings == ()
    assert processed.row == RecordRow(
        title="Leg Day",
        type="strength",
        sets=(
            Reference(SQUAT, RELAY, ("60", "8", "6", "warmup")),
            Reference(SQUAT, RELAY, ("100", "5", "8", "normal")),
            Reference(SQUAT, RELAY, ("100", "5", "8", "normal")),
        ),
        start=1_700_000_000,
        end=1_700_003_600,
        completed=True,
        rounds_completed=1,
        interval=120,
        template=Reference(LEG_DAY, RELAY),
        prs=(f"{SQUAT},weight,100",),
        hashtags=("legs",),
    )
    assert processed.dependencies == (Reference(SQUAT, RELAY), Reference(LEG_DAY, RELAY))


def test_completed_false_and_bad_values() -> None:
    no = parse_record(record([*BASE[:5], ["completed", "false"], ["exercise", SQUAT]]))
    assert no.row is not None and no.row.completed is False
    assert no.warnings == ()
    odd = parse_record(record([*BASE[:5], ["completed", "yes"], ["exercise", SQUAT]]))
    assert odd.row is not None and odd.row.completed is None
    assert odd.warnings == ("tag completed 'yes' is not true or false",)


def test_end_before_start_is_kept_with_a_warning() -> None:
    tags = [*BASE[:3], ["start", "200"], ["end", "100"], BASE[5], ["exercise", SQUAT]]
    processed = parse_record(record(tags))
    assert processed.row is not None
    assert (processed.row.start, processed.row.end) == (200, 100)
    assert processed.warnings == ("tag end is before tag start",)


def test_kind_1301_without_d_is_still_interpreted() -> None:
    processed = parse_record(record([*BASE[1:], ["exercise", SQUAT]]))
    assert processed.row is not None
    assert processed.warnings == ("tag d is missing",)


def test_legacy_record_without_d_is_not() -> None:
    processed = parse_record(record([*BASE[1:], ["exercise", SQUAT]], kind=33403))
    assert processed.row is None
    assert processed.dependencies == ()


def test_template_reference_must_be_a_template() -> None:
    tags = [*BASE, ["exercise", SQUAT], ["template", SQUAT]]
    processed = parse_record(record(tags))
    assert processed.row is not None and processed.row.template is None
    assert processed.dependencies == (Reference(SQUAT),)
    assert processed.warnings == (f"tag template '{SQUAT}' is kind 33401, not 33402; skipped",)


def test_template_reference_lacking_the_pubkey() -> None:
    processed = parse_record(record([*BASE, ["exercise", SQUAT], ["template", "33402:leg-day"]]))
    mine = f"33402:{AUTHOR}:leg-day"
    assert processed.row is not None and processed.row.template == Reference(mine)
    assert processed.dependencies == (Reference(SQUAT), Reference(mine))
    assert processed.warnings == (
        "template reference '33402:leg-day' lacks the pubkey; assumed the author's",
    )


def test_parameters_missing_from_the_middle_are_kept_as_given() -> None:
    tags = [*BASE, ["exercise", "33401:squat", "", "100", "", "normal"]]
    processed = parse_record(record(tags))
    assert processed.row is not None
    assert processed.row.sets == (Reference(f"33401:{AUTHOR}:squat", None, ("100", "", "normal")),)
    assert processed.warnings == (
        "exercise reference '33401:squat' lacks the pubkey; assumed the author's",
    )


def test_missing_required_tags() -> None:
    processed = parse_record(record([["d", "x"]]))
    assert processed.row == RecordRow(title="", type=None, sets=())
    assert set(processed.warnings) == {
        "tag title is missing",
        "tag type is missing",
        "tag exercise is missing",
        "tag start is missing",
        "tag end is missing",
        "tag completed is missing",
    }


def test_pr_values_are_kept_raw() -> None:
    tags = [*BASE, ["exercise", SQUAT], ["pr", "just a note"], ["pr", f"{SQUAT},reps,12"], ["pr"]]
    processed = parse_record(record(tags))
    assert processed.row is not None
    assert processed.row.prs == ("just a note", f"{SQUAT},reps,12")
    assert processed.warnings == ("tag pr 'just a note' is not '<coordinate>,<metric>,<value>'",)


def test_extra_tags_warn() -> None:
    processed = parse_record(record([*BASE, ["exercise", SQUAT], ["laps", "3600"]]))
    assert processed.warnings == (
        "tag 'laps' is not part of NIP-101e workout records; ignored",
    )


def test_a_duration_on_sets_is_a_metric_not_an_activity() -> None:
    processed = parse_record(record([*BASE, ["exercise", SQUAT], ["duration", "01:00:00"]]))
    assert processed.warnings == ()
    assert isinstance(processed.row, RecordRow)
    assert processed.row.activity is None
    assert processed.row.metrics == {"duration_s": 3600}
    assert len(processed.row.sets) == 1


@pytest.mark.parametrize(
    ("given", "stored", "warning"),
    [
        ("1736950800", 1736950800, None),
        ("1736950800123", 1736950800, "tag start 1736950800123 has 13 digits: read as milliseconds"),
        ("-123456789012", -123456789012, "not a time between 1970 and 9999; kept as given"),
        ("9223372036854775807", 9223372036854775807, "not a time between 1970 and 9999"),
        ("99999999999999", 99999999999999, "not a time between 1970 and 9999"),
        ("9223372036854775808", None, "is too large"),
        ("1.5", None, "is not an integer"),
    ],
)
def test_start_times(given: str, stored: int | None, warning: str | None) -> None:
    tags = [t for t in BASE if t[0] != "start"]
    processed = parse_record(record([*tags, ["start", given], ["exercise", SQUAT]]))
    assert isinstance(processed.row, RecordRow)
    assert processed.row.start == stored
    start_warnings = [w for w in processed.warnings if w.startswith("tag start")]
    assert len(start_warnings) == (warning is not None)
    if warning:
        assert warning in start_warnings[0]


@pytest.mark.parametrize(("given", "read"), [("1.5", 1.5), ("3", 3), ("0.25", 0.25), ("-1", None),
                                             ("1,5", None), ("", None)])
def test_rounds_completed_decimals(given: str, read: float | None) -> None:
    processed = parse_record(record([*BASE, ["exercise", SQUAT], ["rounds_completed", given]]))
    assert isinstance(processed.row, RecordRow)
    assert processed.row.rounds_completed == read

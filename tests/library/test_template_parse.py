"""Kind 33402: references to exercises, integers, dependencies, messy data."""

from __future__ import annotations

from powrd.library.template import parse_template
from powrd.protocol.event import Event
from powrd.store.rows import Reference, TemplateRow

AUTHOR = "a" * 64
COACH = "c" * 64
SQUAT = f"33401:{COACH}:squat"
BENCH = f"33401:{COACH}:bench"
RELAY = "wss://relay.example.com"


def template(tags: list[list[str]]) -> Event:
    return Event("1" * 64, AUTHOR, 1_700_000_000, 33402, tags, "", "2" * 128)


BASE = [["d", "leg-day"], ["title", "Leg Day"], ["type", "strength"]]


def test_spec_shaped_template() -> None:
    tags = [
        *BASE,
        ["exercise", SQUAT, RELAY, "100", "5", "", "normal"],
        ["exercise", SQUAT, RELAY, "100", "5", "", "normal"],
        ["exercise", SQUAT, RELAY, "100", "5", "", "normal"],
        ["exercise", BENCH, "", "60", "8", "", "normal"],
        ["rounds", "3"],
        ["duration", "3600"],
        ["interval", "0"],
        ["rest_between_rounds", "90"],
        ["t", "legs"],
    ]
    processed = parse_template(template(tags))
    assert processed.warnings == ()
    squat_set = Reference(SQUAT, RELAY, ("100", "5", "", "normal"))
    bench_set = Reference(BENCH, None, ("60", "8", "", "normal"))
    assert processed.row == TemplateRow(
        title="Leg Day",
        type="strength",
        exercises=(squat_set, squat_set, squat_set, bench_set),
        rounds=3,
        duration=3600,
        interval=0,
        rest_between_rounds=90,
        hashtags=("legs",),
    )
    assert processed.dependencies == (Reference(SQUAT, RELAY), Reference(BENCH, None))


def test_dependency_takes_the_first_hint_given() -> None:
    tags = [*BASE, ["exercise", SQUAT], ["exercise", SQUAT, RELAY], ["exercise", SQUAT, "wss://b"]]
    processed = parse_template(template(tags))
    assert processed.dependencies == (Reference(SQUAT, RELAY),)
    assert processed.row is not None and len(processed.row.exercises) == 3


def test_reference_lacking_the_pubkey_is_the_authors() -> None:
    processed = parse_template(template([*BASE, ["exercise", "33401:squat", "", "", "5"]]))
    mine = f"33401:{AUTHOR}:squat"
    assert processed.row is not None
    assert processed.row.exercises == (Reference(mine, None, ("", "5")),)
    assert processed.dependencies == (Reference(mine),)
    assert processed.warnings == (
        "exercise reference '33401:squat' lacks the pubkey; assumed the author's",
    )


def test_unusable_references_are_skipped_and_not_dependencies() -> None:
    tags = [
        *BASE,
        ["exercise"],
        ["exercise", "junk"],
        ["exercise", f"33402:{COACH}:other-template"],
        ["exercise", SQUAT],
    ]
    processed = parse_template(template(tags))
    assert processed.row is not None
    assert processed.row.exercises == (Reference(SQUAT),)
    assert processed.dependencies == (Reference(SQUAT),)
    assert processed.warnings == (
        "tag exercise has no coordinate; skipped",
        "tag exercise 'junk' is not a coordinate; skipped",
        f"tag exercise '33402:{COACH}:other-template' is kind 33402, not 33401; skipped",
    )


def test_relay_hint_that_is_not_a_relay() -> None:
    processed = parse_template(template([*BASE, ["exercise", SQUAT, "100", "5"]]))
    assert processed.row is not None
    assert processed.row.exercises == (Reference(SQUAT, None, ("100", "5")),)
    assert processed.warnings == (
        "tag exercise has no relay slot (the element after the reference is not a websocket"
        " URL); every element after the reference read as a parameter",
    )


def test_bad_integers_become_none_with_warnings() -> None:
    tags = [
        *BASE,
        ["exercise", SQUAT],
        ["rounds", "three"],
        ["duration", "-5"],
        ["interval", "1.5"],
        ["rest_between_rounds", "9" * 5000],
    ]
    processed = parse_template(template(tags))
    assert processed.row is not None
    row = processed.row
    assert (row.rounds, row.duration, row.interval, row.rest_between_rounds) == (None,) * 4
    assert processed.warnings[:3] == (
        "tag rounds 'three' is not an integer",
        "tag duration -5 is negative",
        "tag interval '1.5' is not an integer",
    )
    assert processed.warnings[3].startswith("tag rest_between_rounds '999")
    assert processed.warnings[3].endswith("is too large")


def test_integers_accept_only_ascii_digits() -> None:
    for text in (" 5", "5 ", "+5", "1_000", "٣", ""):
        processed = parse_template(template([*BASE, ["exercise", SQUAT], ["rounds", text]]))
        assert processed.row is not None and processed.row.rounds is None, text
        assert len(processed.warnings) == 1


def test_largest_stored_integer() -> None:
    tags = [*BASE, ["exercise", SQUAT], ["rounds", str(2**63 - 1)], ["duration", str(2**63)]]
    processed = parse_template(template(tags))
    assert processed.row is not None
    assert (processed.row.rounds, processed.row.duration) == (2**63 - 1, None)


def test_missing_required_tags() -> None:
    processed = parse_template(template([["d", "x"]]))
    assert processed.row == TemplateRow(title="", type=None, exercises=())
    assert processed.dependencies == ()
    assert set(processed.warnings) == {
        "tag title is missing",
        "tag type is missing",
        "tag exercise is missing",
    }


def test_no_d_means_no_row() -> None:
    processed = parse_template(template([["title", "x"], ["exercise", SQUAT]]))
    assert processed.row is None
    assert processed.dependencies == ()


def test_later_types_and_unknown_types() -> None:
    later = parse_template(template([["d", "x"], ["title", "t"], ["type", "metcon"]]))
    assert later.row is not None and later.row.type == "metcon"
    odd = parse_template(template([["d", "x"], ["title", "t"], ["type", "yoga"]]))
    assert odd.row is not None and odd.row.type == "yoga"
    assert "tag type 'yoga' is not a known value; kept as given" in odd.warnings


def test_extra_tags_and_set_numbers() -> None:
    # Later revisions append a set number; it is just another parameter here.
    tags = [*BASE, ["exercise", SQUAT, "", "100", "5", "", "normal", "1"], ["level", "x"]]
    processed = parse_template(template(tags))
    assert processed.row is not None
    assert processed.row.exercises[0].params == ("100", "5", "", "normal", "1")
    assert processed.warnings == (
        "tag 'level' is not part of NIP-101e workout templates; ignored",
    )


def test_warnings_are_capped() -> None:
    tags = [*BASE, *(["exercise", f"junk{i}"] for i in range(500))]
    processed = parse_template(template(tags))
    assert len(processed.warnings) == 50
    assert processed.warnings[-1] == "451 more warnings not shown"

"""Kind 33401: the spec's example and the messy variants seen in the wild."""

from __future__ import annotations

from powrd.library.exercise import parse_exercise
from powrd.protocol.event import Event
from powrd.store.rows import ExerciseRow, MediaRef

AUTHOR = "a" * 64
SHA = "0f" * 32

SPEC_TAGS = [
    ["d", "bb0f1d1a-9c1e-4a53-a0bb-5b2ff08f1d1a"],
    ["title", "Back Squat"],
    ["format", "weight", "reps", "rpe", "set_type"],
    ["format_units", "kg", "count", "0-10", "warmup|normal|drop|failure"],
    ["equipment", "barbell"],
    ["difficulty", "intermediate"],
    ["t", "legs"],
]


def exercise(tags: list[list[str]], content: str = "") -> Event:
    return Event("1" * 64, AUTHOR, 1_700_000_000, 33401, tags, content, "2" * 128)


def test_spec_example() -> None:
    processed = parse_exercise(exercise(SPEC_TAGS, "Stand tall."))
    assert processed.warnings == ()
    assert processed.dependencies == ()
    assert processed.row == ExerciseRow(
        title="Back Squat",
        equipment="barbell",
        format=("weight", "reps", "rpe", "set_type"),
        format_units=("kg", "count", "0-10", "warmup|normal|drop|failure"),
        difficulty="intermediate",
        hashtags=("legs",),
    )


def test_no_d_means_no_row() -> None:
    processed = parse_exercise(exercise(SPEC_TAGS[1:]))
    assert processed.row is None
    assert "tag d is missing" in processed.warnings
    assert parse_exercise(exercise([["d"], *SPEC_TAGS[1:]])).row is None


def test_empty_d_still_gets_a_row() -> None:
    assert parse_exercise(exercise([["d", ""], *SPEC_TAGS[1:]])).row is not None


def test_only_d_gives_a_row_with_warnings() -> None:
    processed = parse_exercise(exercise([["d", "x"]]))
    assert processed.row == ExerciseRow(title="", equipment=None, format=(), format_units=())
    assert set(processed.warnings) == {
        "tag title is missing",
        "tag format is missing",
        "tag format_units is missing",
        "tag equipment is missing",
    }


def test_empty_title_warns() -> None:
    processed = parse_exercise(exercise([["d", "x"], ["title", ""], *SPEC_TAGS[2:]]))
    assert processed.row is not None and processed.row.title == ""
    assert processed.warnings == ("tag title is empty",)


def test_format_units_not_lining_up() -> None:
    tags = [*SPEC_TAGS[:3], ["format_units", "kg", "count", "0-10"], *SPEC_TAGS[4:]]
    processed = parse_exercise(exercise(tags))
    assert processed.warnings == ("tag format_units has 3 values but format has 4",)
    assert processed.row is not None
    assert processed.row.format_units == ("kg", "count", "0-10")


def test_odd_format_entries() -> None:
    tags = [*SPEC_TAGS[:2], ["format", "reps", "", "reps"], ["format_units", "count", "", "count"]]
    processed = parse_exercise(exercise([*tags, *SPEC_TAGS[4:]]))
    assert processed.warnings == (
        "tag format has an empty parameter at position 2",
        "tag format names 'reps' more than once",
    )


def test_unknown_vocabulary_is_kept_with_a_warning() -> None:
    tags = [*SPEC_TAGS[:4], ["equipment", "kettlebell"], ["difficulty", "elite"]]
    processed = parse_exercise(exercise(tags))
    assert processed.row is not None
    assert (processed.row.equipment, processed.row.difficulty) == ("kettlebell", "elite")
    assert processed.warnings == (
        "tag equipment 'kettlebell' is not a known value; kept as given",
        "tag difficulty 'elite' is not a known value; kept as given",
    )


def test_extra_non_spec_tags_warn_once_each() -> None:
    tags = [*SPEC_TAGS, ["muscle", "quads"], ["level", "Legs"], ["level", "x"]]
    processed = parse_exercise(exercise([*tags, ["client", "POWR"], ["alt", "an exercise"]]))
    assert processed.row is not None
    assert processed.warnings == (
        "tag 'muscle' is not part of NIP-101e exercises; ignored",
        "tag 'level' is not part of NIP-101e exercises; ignored",
    )


def test_repeated_single_tags_use_the_first() -> None:
    processed = parse_exercise(exercise([*SPEC_TAGS, ["title", "Front Squat"]]))
    assert processed.row is not None and processed.row.title == "Back Squat"
    assert processed.warnings == ("tag title appears 2 times; used the first",)


def test_hashtags_in_order_each_once() -> None:
    tags = [*SPEC_TAGS, ["t", "squat"], ["t", "legs"], ["t", ""], ["t"]]
    processed = parse_exercise(exercise(tags))
    assert processed.row is not None and processed.row.hashtags == ("legs", "squat")


def test_imeta() -> None:
    imeta = [
        "imeta",
        "url https://example.com/squat.mp4",
        "m video/mp4",
        "dim 1920x1080",
        "alt Someone squatting, side view",
        f"x {SHA}",
        "fallback https://mirror.example.com/squat.mp4",
    ]
    processed = parse_exercise(exercise([*SPEC_TAGS, imeta]))
    assert processed.warnings == ()
    assert processed.row is not None
    assert processed.row.media == (
        MediaRef(
            url="https://example.com/squat.mp4",
            mime_type="video/mp4",
            sha256=SHA,
            dim="1920x1080",
            alt="Someone squatting, side view",
            extra=(("fallback", "https://mirror.example.com/squat.mp4"),),
        ),
    )


def test_imeta_in_one_string() -> None:
    imeta = [
        "imeta",
        "url https://example.com/squat.mp4 m video/mp4 duration 45 purpose demonstration"
        " alt Someone squatting dim 1280x720",
    ]
    processed = parse_exercise(exercise([*SPEC_TAGS, imeta]))
    assert processed.warnings == ()
    assert processed.row is not None
    assert processed.row.media == (
        MediaRef(
            url="https://example.com/squat.mp4",
            mime_type="video/mp4",
            dim="1280x720",
            alt="Someone squatting",
            extra=(("duration", "45"), ("purpose", "demonstration")),
        ),
    )


def test_url_never_holds_spaces() -> None:
    processed = parse_exercise(exercise([*SPEC_TAGS, ["imeta", "url https://e.com/a b c"]]))
    assert processed.row is not None
    assert [media.url for media in processed.row.media] == ["https://e.com/a"]


def test_format_units_as_pairs() -> None:
    tags = [
        ["d", "x"], ["title", "Squat"], ["format", "weight", "reps"],
        ["format_units", "weight", "kg", "reps", "count"], ["equipment", "barbell"],
    ]
    processed = parse_exercise(exercise(tags))
    assert processed.row is not None
    assert processed.row.format_units == ("kg", "count")
    assert processed.warnings == (
        "tag format_units holds (name, unit) pairs; read the units from them",
    )


def test_messy_imeta() -> None:
    tags = [
        *SPEC_TAGS,
        ["imeta", "m image/png", "alt no url here"],
        ["imeta", "url https://example.com/a.png", "garbage", "x not-a-hash"],
        ["imeta"],
    ]
    processed = parse_exercise(exercise(tags))
    assert processed.row is not None
    assert processed.row.media == (MediaRef(url="https://example.com/a.png"),)
    assert processed.warnings == (
        "tag imeta has no url; ignored",
        "tag imeta element 'garbage' is not a 'key value' pair; ignored",
        "tag imeta x 'not-a-hash' is not a SHA-256 hex digest; ignored",
    )


def test_long_values_are_clipped_in_warnings() -> None:
    processed = parse_exercise(exercise([*SPEC_TAGS[:4], ["equipment", "z" * 10_000]]))
    (warning,) = processed.warnings
    assert len(warning) < 200

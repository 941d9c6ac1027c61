"""process(): dispatch by kind, and properties over arbitrary tags."""

from __future__ import annotations

from random import Random

from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.library.cardio import activity_of
from powrd.library.coordinates import parse_coordinate
from powrd.library.process import process
from powrd.protocol.event import Event
from powrd.store.rows import NOTHING, ExerciseRow, RecordRow, Reference, TemplateRow

AUTHOR = "a" * 64
COACH = "c" * 64
SQUAT = f"33401:{COACH}:squat"


def event(kind: int, tags: list[list[str]], pubkey: str = AUTHOR) -> Event:
    return Event("1" * 64, pubkey, 1_700_000_000, kind, tags, "", "2" * 128)


def test_dispatch_by_kind() -> None:
    tags = [["d", "x"], ["title", "t"], ["exercise", SQUAT]]
    assert isinstance(process(event(33401, tags)).row, ExerciseRow)
    assert isinstance(process(event(33402, tags)).row, TemplateRow)
    assert isinstance(process(event(1301, tags)).row, RecordRow)
    assert isinstance(process(event(33403, tags)).row, RecordRow)


def test_other_kinds_are_nothing() -> None:
    for kind in (0, 1, 5, 1300, 30023, 33400, 33404):
        assert process(event(kind, [["d", "x"], ["exercise", SQUAT]])) is NOTHING


hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
known_names = st.sampled_from(
    ["d", "title", "type", "format", "format_units", "equipment", "difficulty", "imeta",
     "t", "exercise", "rounds", "duration", "interval", "rest_between_rounds", "start",
     "end", "completed", "rounds_completed", "template", "pr", "category"]
)
# Few pubkeys and d values, so that references often repeat a coordinate.
pubkeys = st.one_of(st.sampled_from([AUTHOR, COACH]), hex64)
identifiers = st.one_of(st.sampled_from(["squat", "bench"]), st.text(max_size=12))
coordinates = st.builds(
    "{}:{}:{}".format, st.sampled_from([33401, 33402, 1301, 7]), pubkeys, identifiers
)
exercise_coordinates = st.builds("33401:{}:{}".format, pubkeys, identifiers)
short_coordinates = st.builds("{}:{}".format, st.sampled_from([33401, 33402]), identifiers)
values = st.one_of(
    st.text(max_size=20),
    coordinates,
    short_coordinates,
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "true", "false", "wss://relay.example.com", "url https://x", "m a/b"]),
)


def tag_named(names: st.SearchStrategy[str], max_values: int = 6) -> st.SearchStrategy[list[str]]:
    return st.builds(lambda name, rest: [name, *rest], names, st.lists(values, max_size=max_values))


tags = st.lists(tag_named(st.one_of(known_names, st.text())), max_size=20)
exercise_tags = st.lists(
    st.builds(
        lambda target, hint, params: ["exercise", target, hint, *params],
        st.one_of(exercise_coordinates, coordinates, short_coordinates, st.text(max_size=8)),
        st.one_of(st.sampled_from(["", "wss://a.example", "wss://b.example"]), values),
        st.lists(values, max_size=4),
    ),
    max_size=8,
)
workout_kinds = st.sampled_from([33401, 33402, 1301, 33403])


def reference_coordinate(tag: list[str], author: str, target_kind: int) -> str | None:
    """What the spec says a reference tag points to, or None when it is to be skipped."""
    if len(tag) < 2:
        return None
    coordinate = parse_coordinate(tag[1], author)
    return str(coordinate) if coordinate is not None and coordinate.kind == target_kind else None


def expected_params(tag: list[str]) -> tuple[str, ...]:
    """Parameters follow the relay slot, or the reference when there is no relay slot."""
    if len(tag) < 3 or not tag[2] or tag[2].lower().startswith(("ws://", "wss://")):
        return tuple(tag[3:])
    return tuple(tag[2:])


@settings(max_examples=300)
@given(workout_kinds, tags, hex64)
def test_process_never_raises(kind: int, event_tags: list[list[str]], pubkey: str) -> None:
    processed = process(event(kind, event_tags, pubkey))
    assert all(isinstance(warning, str) for warning in processed.warnings)
    assert len(processed.warnings) == len(set(processed.warnings))
    if processed.row is None:
        assert processed.dependencies == ()
        assert processed.warnings


@given(tags, exercise_tags, st.randoms(use_true_random=False))
def test_every_usable_exercise_tag_is_a_set_in_order(
    noise: list[list[str]], references: list[list[str]], shuffler: Random
) -> None:
    mixed = [["d", "x"], *noise, *references]
    shuffler.shuffle(mixed)
    for kind, target in ((33402, 33401), (1301, 33401)):
        processed = process(event(kind, mixed))
        row = processed.row
        assert isinstance(row, TemplateRow | RecordRow)
        references = row.exercises if isinstance(row, TemplateRow) else row.sets
        expected = [
            (coordinate, expected_params(tag))
            for tag in mixed
            if tag[0] == "exercise"
            and not (kind == 1301 and activity_of(tag))
            and (coordinate := reference_coordinate(tag, AUTHOR, target)) is not None
        ]
        assert [(ref.coordinate, ref.params) for ref in references] == expected
        assert sum(tag[0] == "exercise" for tag in mixed) >= len(references)


@given(st.sampled_from([33402, 1301, 33403]), tags, exercise_tags)
def test_dependencies_are_the_references_once_each(
    kind: int, event_tags: list[list[str]], references: list[list[str]]
) -> None:
    processed = process(event(kind, [["d", "x"], *event_tags, *references]))
    row = processed.row
    assert isinstance(row, TemplateRow | RecordRow)
    references: list[Reference] = list(row.exercises if isinstance(row, TemplateRow) else row.sets)
    if isinstance(row, RecordRow) and row.template is not None:
        references.append(row.template)
    dependency_coordinates = [dependency.coordinate for dependency in processed.dependencies]
    assert dependency_coordinates == list(dict.fromkeys(ref.coordinate for ref in references))
    for dependency in processed.dependencies:
        assert dependency.params == ()
        hints = [ref.relay_hint for ref in references if ref.coordinate == dependency.coordinate]
        assert dependency.relay_hint == next((hint for hint in hints if hint), None)
        assert parse_coordinate(dependency.coordinate) is not None

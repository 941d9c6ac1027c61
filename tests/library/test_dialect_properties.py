"""Properties of the dialect readers over arbitrary input: nothing escapes processing."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.library.process import process
from powrd.protocol.event import Event
from powrd.store.rows import CollectionRow, ExerciseRow, RecordRow, TemplateRow

AUTHOR = "a" * 64
hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
d_values = st.one_of(st.text(), st.builds("local:{}".format, st.text()))
references = st.one_of(
    st.builds("{}:{}:{}".format, st.sampled_from([33401, 33402, 30003, 1]), hex64, d_values),
    st.builds("{}:{}".format, st.sampled_from([33401, 33402]), d_values),
    st.builds("{}::{}".format, st.sampled_from([33401, 33402]), d_values),
    st.text(max_size=20),
)
elements = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", "ws://r.example", "wss://r.example", "WSS://R", "3", "10", "1.5"]),
)
reference_tags = st.builds(
    lambda name, ref, rest: [name, ref, *rest],
    st.sampled_from(["exercise", "template", "a"]),
    references,
    st.lists(elements, max_size=10),
)


def event(kind: int, tags: list[list[str]]) -> Event:
    return Event("1" * 64, AUTHOR, 1_700_000_000, kind, tags, "", "2" * 128)


def expected_params(tag: list[str]) -> tuple[str, ...]:
    if len(tag) < 3 or not tag[2] or tag[2].lower().startswith(("ws://", "wss://")):
        return tuple(tag[3:])
    return tuple(tag[2:])


@settings(max_examples=300)
@given(st.sampled_from([33402, 1301, 33403, 30003]), st.lists(reference_tags, max_size=8))
def test_reference_tags_of_any_length(kind: int, tags: list[list[str]]) -> None:
    d = "powr-list" if kind == 30003 else "x"
    processed = process(event(kind, [["d", d], ["title", "t"], *tags]))
    row = processed.row
    assert isinstance(row, TemplateRow | RecordRow | CollectionRow)
    found = (
        row.exercises if isinstance(row, TemplateRow)
        else row.sets if isinstance(row, RecordRow) else row.members
    )
    for reference in found:
        assert reference.relay_hint is None or reference.relay_hint.lower().startswith(
            ("ws://", "wss://")
        )
        assert reference.kind >= 0 and len(reference.pubkey) == 64
    if isinstance(row, TemplateRow):
        exercise_tags = [t for t in tags if t[0] == "exercise"]
        assert len(row.exercises) + len(row.unreadable) == len(exercise_tags)
        unreadable = {tag for tag, _ in row.unreadable}
        assert [r.params for r in row.exercises] == [
            expected_params(t) for t in exercise_tags if tuple(t) not in unreadable
        ]


imeta_words = st.one_of(
    st.sampled_from(["url", "m", "x", "dim", "alt", "duration", "purpose", "blurhash",
                     "https://e.com/a.mp4", "video/mp4", "1920x1080", "demonstration"]),
    st.text(max_size=10),
)
imeta_elements = st.one_of(st.text(), st.lists(imeta_words, max_size=12).map(" ".join))


@settings(max_examples=300)
@given(st.lists(st.lists(imeta_elements, max_size=6), max_size=4))
def test_imeta_strings(imetas: list[list[str]]) -> None:
    tags = [["d", "x"], ["title", "t"], *(["imeta", *elements] for elements in imetas)]
    processed = process(event(33401, tags))
    assert isinstance(processed.row, ExerciseRow)
    for media in processed.row.media:
        assert media.url and not any(c.isspace() for c in media.url)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in media.extra)


numbers = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.text(max_size=12),
    st.sampled_from(["1.5", "1736950800000", "9223372036854775807", "-5", "00:28:15"]),
)
cardio_tags = st.lists(
    st.builds(
        lambda name, values: [name, *values],
        st.sampled_from(["start", "end", "rounds_completed", "interval", "distance", "duration",
                         "calories", "elevation_gain", "split", "avg_pace",
                         "workout_start_time", "exercise"]),
        st.lists(st.one_of(numbers, st.sampled_from(["km", "mi", "ft", "m", "min/mi", "running"])),
                 max_size=3),
    ),
    max_size=12,
)


@settings(max_examples=300)
@given(st.sampled_from([1301, 33403]), cardio_tags)
def test_numbers_and_times(kind: int, tags: list[list[str]]) -> None:
    processed = process(event(kind, [["d", "x"], *tags]))
    row = processed.row
    assert isinstance(row, RecordRow)
    for value in (row.start, row.end):
        assert value is None or -(2**63) <= value < 2**63
    for value in (row.rounds_completed, row.interval):
        assert value is None or value >= 0
    assert isinstance(row.metrics, dict)

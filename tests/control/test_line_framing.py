"""LineSplitter: bounded newline framing, fed in arbitrary pieces."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powrd.control.framing import TOO_LONG, LineSplitter

MAX = 16

lines_strategy = st.lists(
    st.binary(max_size=3 * MAX).map(lambda raw: raw.replace(b"\n", b"x")), max_size=8
)


def expected_items(lines: list[bytes]) -> list[object]:
    return [line if len(line) <= MAX else TOO_LONG for line in lines]


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    pieces, start = [], 0
    for point in [*points, len(data)]:
        pieces.append(data[start:point])
        start = point
    return pieces


@given(lines=lines_strategy, cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=10))
def test_any_chunking_yields_the_same_lines(lines: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(line + b"\n" for line in lines)
    splitter = LineSplitter(MAX)
    out: list[object] = []
    for piece in split_at(stream, cuts):
        out.extend(splitter.feed(piece))
        assert splitter.buffered <= MAX
    assert out == expected_items(lines)
    assert splitter.pending() == b""


@given(data=st.binary(max_size=200), chunk=st.integers(min_value=1, max_value=50))
def test_memory_stays_bounded_for_arbitrary_input(data: bytes, chunk: int) -> None:
    splitter = LineSplitter(MAX)
    for start in range(0, len(data), chunk):
        for item in splitter.feed(data[start : start + chunk]):
            assert item is TOO_LONG or (isinstance(item, bytes) and len(item) <= MAX)
        assert splitter.buffered <= MAX


def test_line_of_exactly_the_bound_is_accepted() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcd\nabcde\n") == [b"abcd", TOO_LONG]


def test_too_long_is_reported_before_the_newline_arrives_and_only_once() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"abcdef") == [TOO_LONG]
    assert splitter.discarding
    assert splitter.feed(b"ghijkl" * 10) == []
    assert splitter.feed(b"mno\nok\n") == [b"ok"]
    assert not splitter.discarding


def test_pending_returns_an_unterminated_tail_but_not_a_discarded_one() -> None:
    splitter = LineSplitter(4)
    assert splitter.feed(b"one\ntw") == [b"one"]
    assert splitter.pending() == b"tw"
    splitter.feed(b"ooooooo")
    assert splitter.pending() == b""


def test_empty_lines_are_lines() -> None:
    assert LineSplitter(4).feed(b"\n\n") == [b"", b""]


def test_bound_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LineSplitter(0)

"""Coordinates: parsing, the short form lacking a pubkey, round trips."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powrd.library.coordinates import (
    EXERCISE,
    LEGACY_RECORD,
    RECORD,
    RECORD_KINDS,
    TEMPLATE,
    Coordinate,
    is_workout_kind,
    parse_coordinate,
)

AUTHOR = "a" * 64
OTHER = "0123456789abcdef" * 4


def test_kind_constants() -> None:
    assert (EXERCISE, TEMPLATE, RECORD, LEGACY_RECORD) == (33401, 33402, 1301, 33403)
    assert frozenset((1301, 33403)) == RECORD_KINDS
    assert all(is_workout_kind(kind) for kind in (33401, 33402, 1301, 33403))
    assert not any(is_workout_kind(kind) for kind in (0, 1, 5, 30023, 33404))


def test_full_coordinate() -> None:
    coordinate = parse_coordinate(f"33401:{OTHER}:bb0f1d1a-uuid")
    assert coordinate == Coordinate(33401, OTHER, "bb0f1d1a-uuid")
    assert not coordinate.pubkey_assumed
    assert str(coordinate) == f"33401:{OTHER}:bb0f1d1a-uuid"


def test_d_may_contain_colons_and_be_empty() -> None:
    assert parse_coordinate(f"33402:{OTHER}:a:b::c") == Coordinate(33402, OTHER, "a:b::c")
    assert parse_coordinate(f"33402:{OTHER}:") == Coordinate(33402, OTHER, "")


def test_full_coordinate_ignores_the_default() -> None:
    coordinate = parse_coordinate(f"33401:{OTHER}:x", AUTHOR)
    assert coordinate is not None
    assert coordinate.pubkey == OTHER
    assert not coordinate.pubkey_assumed


def test_short_form_needs_a_default_pubkey() -> None:
    assert parse_coordinate("33401:bb0f1d1a") is None
    coordinate = parse_coordinate("33401:bb0f1d1a", AUTHOR)
    assert coordinate == Coordinate(33401, AUTHOR, "bb0f1d1a")
    assert coordinate is not None and coordinate.pubkey_assumed
    assert str(coordinate) == f"33401:{AUTHOR}:bb0f1d1a"


@pytest.mark.parametrize(
    ("text", "d"),
    [
        ("33401::d", "d"),  # an empty pubkey (POWR when the pubkey is unknown)
        ("33402::tpl-rn-2", "tpl-rn-2"),
        ("33401:local:m5x2k1q-abc123def45", "local:m5x2k1q-abc123def45"),  # POWR app ids
        ("33401:abc:def", "abc:def"),
        ("33401::a:b", "a:b"),
        ("33401:\u00e9t\u00e9:x", "\u00e9t\u00e9:x"),
    ],
)
def test_short_forms_mean_the_author(text: str, d: str) -> None:
    coordinate = parse_coordinate(text, AUTHOR)
    assert coordinate == Coordinate(int(text.split(":", maxsplit=1)[0]), AUTHOR, d)
    assert coordinate is not None and coordinate.pubkey_assumed
    assert parse_coordinate(text) is None


@given(st.sampled_from([33401, 33402, 30003]), st.text(min_size=1))
def test_short_form_round_trips_any_d(kind: int, d: str) -> None:
    coordinate = parse_coordinate(f"{kind}::{d}", AUTHOR)
    assert coordinate == Coordinate(kind, AUTHOR, d)
    assert str(coordinate) == f"{kind}:{AUTHOR}:{d}"
    assert parse_coordinate(str(coordinate)) == coordinate


def test_pubkey_assumed_is_not_part_of_identity() -> None:
    assert Coordinate(1, AUTHOR, "x", pubkey_assumed=True) == Coordinate(1, AUTHOR, "x")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "33401",
        "junk",
        ":" + OTHER + ":d",
        "x:" + OTHER + ":d",
        "-1:" + OTHER + ":d",
        "+1:" + OTHER + ":d",
        "033401:" + OTHER + ":d",
        "65536:" + OTHER + ":d",
        "3340\uff11:" + OTHER + ":d",  # a fullwidth digit one
        "33401:" + OTHER.upper() + ":d",
        "33401:" + OTHER[:-1] + ":d",
        "33401:" + OTHER + "0:d",
        "33401:npub1abc:d",
        "33401::",
        "33401:",
        "33401:" + OTHER,  # a pubkey without its d
        "33401:" + OTHER.upper(),
    ],
)
def test_not_coordinates(text: str) -> None:
    assert parse_coordinate(text, AUTHOR) is None


def test_kind_bounds() -> None:
    assert parse_coordinate(f"0:{OTHER}:") == Coordinate(0, OTHER, "")
    assert parse_coordinate(f"65535:{OTHER}:d") == Coordinate(65535, OTHER, "d")


def test_bad_default_pubkey_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="default_pubkey"):
        parse_coordinate("33401:x", "A" * 64)


pubkeys = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)


@given(st.integers(0, 65535), pubkeys, st.text())
def test_round_trip(kind: int, pubkey: str, d: str) -> None:
    text = f"{kind}:{pubkey}:{d}"
    coordinate = parse_coordinate(text, AUTHOR)
    assert coordinate == Coordinate(kind, pubkey, d)
    assert str(coordinate) == text


@given(st.text(), st.one_of(st.none(), pubkeys))
def test_never_raises_and_always_round_trips(text: str, default: str | None) -> None:
    coordinate = parse_coordinate(text, default)
    if coordinate is None:
        return
    assert str(parse_coordinate(str(coordinate))) == str(coordinate)
    assert len(coordinate.pubkey) == 64
    if coordinate.pubkey_assumed:
        assert coordinate.pubkey == default
        assert str(coordinate) != text
    else:
        assert str(coordinate) == text

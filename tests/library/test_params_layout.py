"""Laying a set's parameters out by the exercise's format."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from powrd.library.layout import layout_params

FORMAT = ("weight", "reps", "rpe", "set_type")
UNITS = ("kg", "count", "0-10", "warmup|normal|drop|failure")


def test_full_set() -> None:
    assert layout_params(FORMAT, UNITS, ("100", "5", "8", "normal")) == [
        {"name": "weight", "unit": "kg", "value": "100"},
        {"name": "reps", "unit": "count", "value": "5"},
        {"name": "rpe", "unit": "0-10", "value": "8"},
        {"name": "set_type", "unit": "warmup|normal|drop|failure", "value": "normal"},
    ]


def test_empty_and_absent_values_are_to_be_filled_in() -> None:
    laid_out = layout_params(FORMAT, UNITS, ("", "5"))
    assert [entry["value"] for entry in laid_out] == [None, "5", None, None]
    assert [entry["name"] for entry in laid_out] == list(FORMAT)


def test_extra_params_are_kept_without_a_name() -> None:
    laid_out = layout_params(("reps",), ("count",), ("5", "1", ""))
    assert laid_out == [
        {"name": "reps", "unit": "count", "value": "5"},
        {"name": None, "unit": None, "value": "1"},
        {"name": None, "unit": None, "value": None},
    ]


def test_units_not_lining_up() -> None:
    short = layout_params(FORMAT, ("kg",), ("100", "5"))
    assert [entry["unit"] for entry in short] == ["kg", None, None, None]
    long = layout_params(("weight",), ("kg", "count"), ("100", "5"))
    assert long[1] == {"name": None, "unit": None, "value": "5"}


def test_nothing_to_lay_out() -> None:
    assert layout_params((), (), ()) == []


@given(st.lists(st.text()), st.lists(st.text()), st.lists(st.text()))
def test_positions_are_preserved(fmt: list[str], units: list[str], params: list[str]) -> None:
    laid_out = layout_params(tuple(fmt), tuple(units), tuple(params))
    assert len(laid_out) == max(len(fmt), len(params))
    for position, entry in enumerate(laid_out):
        assert entry["name"] == (fmt[position] if position < len(fmt) else None)
        given_value = params[position] if position < len(params) else ""
        assert entry["value"] == (given_value or None)
        if entry["unit"] is not None:
            assert entry["unit"] == units[position]

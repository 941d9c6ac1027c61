"""NIP-01 filters: parsing and its error messages, the wire form, matching, planning."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powrd.protocol.event import MAX_TIMESTAMP, Event, dumps, loads
from powrd.protocol.filters import Filter, FilterError, parse_filter, split_authors

HEX64 = st.binary(min_size=32, max_size=32).map(bytes.hex)
# Small pools so that generated events and filters actually meet.
IDS = [f"{n:064x}" for n in range(1, 3)]
AUTHORS = [f"{n * 7919:064x}" for n in range(1, 3)]
KINDS = [1301, 33401]
LETTERS = "etZ"
VALUES = ["a", "b", ""]
DASH = "\N{EN DASH}"  # filter errors write ranges with it: 0-65535 with a dash

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def optional_sets(elements: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | st.frozensets(elements, max_size=4)


def filters(
    ids: st.SearchStrategy[str],
    authors: st.SearchStrategy[str],
    kinds: st.SearchStrategy[int],
    values: st.SearchStrategy[str],
    times: st.SearchStrategy[int],
) -> st.SearchStrategy[Filter]:
    tag_sets = st.frozensets(values, max_size=3)
    return st.builds(
        Filter,
        ids=optional_sets(ids),
        authors=optional_sets(authors),
        kinds=optional_sets(kinds),
        tags=st.dictionaries(st.sampled_from(LETTERS), tag_sets, max_size=3),
        since=st.none() | times,
        until=st.none() | times,
        limit=st.none() | st.integers(0, 1000),
    )


pool_filters = filters(
    ids=st.sampled_from(IDS),
    authors=st.sampled_from(AUTHORS),
    kinds=st.sampled_from(KINDS),
    values=st.sampled_from(VALUES),
    times=st.integers(0, 3),
)
any_filters = filters(
    ids=HEX64,
    authors=HEX64,
    kinds=st.integers(0, 65535),
    values=st.text(),
    times=st.integers(0, MAX_TIMESTAMP),
)

tags_strategy = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(LETTERS + "x")).map(list),
        st.tuples(st.sampled_from(LETTERS + "x"), st.sampled_from(VALUES)).map(list),
        st.tuples(st.sampled_from(LETTERS), st.sampled_from(VALUES), st.sampled_from(VALUES)).map(
            list
        ),
    ),
    max_size=5,
)

events = st.builds(
    Event,
    id=st.sampled_from(IDS),
    pubkey=st.sampled_from(AUTHORS),
    created_at=st.integers(0, 3),
    kind=st.sampled_from(KINDS),
    tags=tags_strategy,
    content=st.just(""),
    sig=st.just("0" * 128),
)


def reference_matches(wire: dict[str, Any], event: dict[str, Any]) -> bool:
    """NIP-01 matching read straight off the spec, over the JSON forms."""
    for key, wanted in wire.items():
        if key == "ids":
            ok = event["id"] in wanted
        elif key == "authors":
            ok = event["pubkey"] in wanted
        elif key == "kinds":
            ok = event["kind"] in wanted
        elif key == "since":
            ok = event["created_at"] >= wanted
        elif key == "until":
            ok = event["created_at"] <= wanted
        elif key == "limit":
            ok = True
        else:
            name = key[1:]
            ok = any(len(tag) >= 2 and tag[0] == name and tag[1] in wanted for tag in event["tags"])
        if not ok:
            return False
    return True


@given(any_filters)
def test_wire_form_round_trips(flt: Filter) -> None:
    assert parse_filter(flt.to_json()) == flt
    assert parse_filter(loads(dumps(flt.to_json()))) == flt


@st.composite
def sparse_filters(draw: st.DrawFn) -> Filter:
    """Pool filters with only a few fields set, so that matches are common."""
    full = draw(pool_filters)
    kept = draw(st.sets(st.sampled_from(["ids", "authors", "kinds", "since", "until"]), max_size=2))
    letters = draw(st.sets(st.sampled_from(LETTERS), max_size=2))
    return Filter(
        **{name: getattr(full, name) for name in kept},
        tags={
            letter: draw(st.frozensets(st.sampled_from(VALUES), max_size=2)) for letter in letters
        },
        limit=full.limit,
    )


@given(sparse_filters(), events)
def test_matches_agrees_with_reference(flt: Filter, event: Event) -> None:
    assert flt.matches(event) == reference_matches(flt.to_json(), event.to_dict())


@given(json_values)
def test_parse_raises_only_filter_error(value: Any) -> None:
    with contextlib.suppress(FilterError):
        parse_filter(value)


@given(st.dictionaries(st.sampled_from(["ids", "kinds", "#e", "since", "#x"]), json_values))
def test_parse_near_valid_objects_raises_only_filter_error(value: dict[str, Any]) -> None:
    try:
        flt = parse_filter(value)
    except FilterError:
        return
    assert parse_filter(flt.to_json()) == flt


def test_wire_form_is_sorted_and_omits_missing_fields() -> None:
    flt = Filter(kinds=frozenset({33402, 1301}), tags={"t": frozenset({"legs", "arms"})}, limit=5)
    assert flt.to_json() == {"kinds": [1301, 33402], "#t": ["arms", "legs"], "limit": 5}
    assert Filter().to_json() == {}


def test_parse_full_filter() -> None:
    wire = {
        "ids": [IDS[0]],
        "authors": [AUTHORS[0], AUTHORS[0]],
        "kinds": [33401],
        "#d": ["squat"],
        "#e": [],
        "since": 10,
        "until": 20,
        "limit": 0,
        "search": "ignored",
    }
    assert parse_filter(wire) == Filter(
        ids=frozenset({IDS[0]}),
        authors=frozenset({AUTHORS[0]}),
        kinds=frozenset({33401}),
        tags={"d": frozenset({"squat"}), "e": frozenset()},
        since=10,
        until=20,
        limit=0,
    )


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ([], "filter: expected an object, found []"),
        ({"kinds": [1, 2, "x"]}, f'filter.kinds[2]: expected an integer 0{DASH}65535, found "x"'),
        ({"kinds": [True]}, f"filter.kinds[0]: expected an integer 0{DASH}65535, found true"),
        ({"kinds": [65536]}, f"filter.kinds[0]: expected an integer 0{DASH}65535, found 65536"),
        ({"kinds": 1}, "filter.kinds: expected a list, found 1"),
        ({"ids": ["abc"]}, 'filter.ids[0]: expected 64 lowercase hex characters, found "abc"'),
        (
            {"authors": [AUTHORS[0], AUTHORS[0].replace("0", "A")]},
            'filter.authors[1]: expected 64 lowercase hex characters, found "AAAAAAAAAAAAAAA',
        ),
        (
            {"since": -1},
            f"filter.since: expected a unix timestamp 0{DASH}{MAX_TIMESTAMP}, found -1",
        ),
        (
            {"until": 1.5},
            f"filter.until: expected a unix timestamp 0{DASH}{MAX_TIMESTAMP}, found 1",
        ),
        ({"limit": None}, "filter.limit: expected a non-negative integer, found null"),
        ({"limit": -3}, "filter.limit: expected a non-negative integer, found -3"),
        ({"#e": [1]}, "filter.#e[0]: expected a string, found 1"),
        ({"#ab": []}, "filter: field \"#ab\": tag filters are '#' and one ASCII letter"),
        ({"#": []}, "filter: field \"#\": tag filters are '#' and one ASCII letter"),
        ({"#1": []}, "filter: field \"#1\": tag filters are '#' and one ASCII letter"),
        ({"kind": [1]}, 'filter: unknown field "kind"'),
    ],
)
def test_parse_errors_say_what_and_where(wire: Any, message: str) -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter(wire)
    assert str(caught.value).startswith(message)


def test_parse_error_names_the_filter_it_was_given() -> None:
    with pytest.raises(FilterError, match=r"^filters\[1\]\.kinds\[0\]: "):
        parse_filter({"kinds": ["x"]}, where="filters[1]")


def test_long_offending_values_are_shortened() -> None:
    with pytest.raises(FilterError) as caught:
        parse_filter({"ids": ["x" * 500]})
    assert len(str(caught.value)) < 120
    assert str(caught.value).endswith("…")


@pytest.mark.parametrize(
    "bad",
    [
        {"kinds": frozenset({70000})},
        {"ids": frozenset({"nothex"})},
        {"tags": {"ee": frozenset({"x"})}},
        {"since": -1},
        {"limit": -1},
    ],
)
def test_direct_construction_is_checked(bad: dict[str, Any]) -> None:
    with pytest.raises(FilterError):
        Filter(**bad)


def test_filters_are_immutable_and_hashable() -> None:
    flt = Filter(tags={"e": frozenset({"x"})}, kinds=frozenset({1}))
    same = Filter(kinds=frozenset({1}), tags={"e": frozenset({"x"})})
    assert flt == same
    assert hash(flt) == hash(same)
    assert len({flt, same, Filter()}) == 2
    with pytest.raises(TypeError):
        flt.tags["e"] = frozenset()  # type: ignore[index]


def test_empty_set_matches_nothing_and_none_everything() -> None:
    event = Event(IDS[0], AUTHORS[0], 5, 1301, [["t", "legs"]], "", "0" * 128)
    assert Filter().matches(event)
    assert not Filter(kinds=frozenset()).matches(event)
    assert not Filter(tags={"t": frozenset()}).matches(event)
    assert Filter(tags={"t": frozenset({"legs"})}, since=5, until=5).matches(event)
    assert not Filter(tags={"t": frozenset({"arms"})}).matches(event)


def test_tag_filters_only_look_at_the_first_value() -> None:
    event = Event(IDS[0], AUTHORS[0], 5, 1301, [["t", "legs", "arms"], ["e"]], "", "0" * 128)
    assert not Filter(tags={"t": frozenset({"arms"})}).matches(event)
    assert not Filter(tags={"e": frozenset({""})}).matches(event)


def test_with_bounds_replaces_and_clears() -> None:
    base = Filter(kinds=frozenset({1}), since=1, until=2, limit=3)
    assert base.with_bounds(since=10, limit=5) == Filter(kinds=frozenset({1}), since=10, limit=5)
    assert base.with_bounds() == Filter(kinds=frozenset({1}))


def test_split_authors_chunks_sorted_unique_authors() -> None:
    people = [f"{n:064x}" for n in (4, 2, 1, 3, 2)]
    plan = split_authors(people, [1301, 33401], 3)
    assert [sorted(f.authors or ()) for f in plan] == [sorted(set(people))[:3], [people[0]]]
    assert all(f.kinds == frozenset({1301, 33401}) for f in plan)
    assert split_authors(people, None, 10) == [Filter(authors=frozenset(people))]
    assert split_authors([], [1], 10) == []


@given(st.lists(HEX64, max_size=30), st.integers(1, 8))
def test_split_authors_covers_every_author_once(authors: list[str], chunk: int) -> None:
    plan = split_authors(authors, [1], chunk)
    covered = [a for f in plan for a in (f.authors or ())]
    assert sorted(covered) == sorted(set(authors))
    assert all(0 < len(f.authors or ()) <= chunk for f in plan)


def test_split_authors_rejects_a_zero_chunk() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_authors(AUTHORS, [1], 0)

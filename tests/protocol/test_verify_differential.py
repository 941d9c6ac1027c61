"""Every verification path agrees with nostr-sdk, the reference implementation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.protocol import reasons
from powrd.protocol.event import dumps, loads, parse_event
from powrd.protocol.reasons import Rejected
from powrd.protocol.validate import Policy, validate_json
from powrd.protocol.verify import verification_failure
from tests.support.corpus import generate_corpus
from tests.support.events import keys_for, make_event
from tests.support.reference import reference_verify


def flip_hex(value: str, rng: random.Random) -> str:
    i = rng.randrange(len(value))
    return value[:i] + ("0" if value[i] != "0" else "1") + value[i + 1 :]


def corruptions(event: dict, rng: random.Random) -> list[dict]:
    tags = [list(t) for t in event["tags"]] or [["t", "x"]]
    tags[0] = [*tags[0][:-1], tags[0][-1] + "!"]
    other = keys_for("differential-other", 0).public_key().to_hex()
    return [
        {**event, "id": flip_hex(event["id"], rng)},
        {**event, "sig": flip_hex(event["sig"], rng)},
        {**event, "content": event["content"] + " "},
        {**event, "tags": tags},
        {**event, "pubkey": other},
        {**event, "created_at": event["created_at"] + 1},
        {**event, "kind": (event["kind"] + 1) % 65536},
    ]


def ours(obj: dict) -> str | None:
    return verification_failure(parse_event(obj))


def verdict_class(verdict: str | None) -> str:
    return "ok" if verdict is None else "bad"


def test_agrees_with_nostr_sdk_on_valid_and_corrupted_events() -> None:
    corpus = generate_corpus(1200, 6, seed=5)
    rng = random.Random(1)
    checked = 0
    for raw in corpus:
        event = loads(raw)
        assert ours(event) is None
        assert reference_verify(raw) is None
        for bad in corruptions(event, rng):
            theirs = reference_verify(dumps(bad))
            mine = ours(bad)
            assert mine is not None and theirs is not None, (bad, mine, theirs)
            if theirs in (reasons.BAD_ID, reasons.BAD_SIGNATURE):
                assert mine == theirs, (bad, mine, theirs)
            checked += 1
    assert checked == 1200 * 7


UNICODE = st.text(alphabet=st.characters(codec="utf-8"), max_size=40)


@settings(max_examples=300, deadline=None)
@given(content=UNICODE, tags=st.lists(st.lists(UNICODE, min_size=1, max_size=4), max_size=4))
def test_canonical_serialization_matches_nostr_sdk_for_any_text(content: str, tags: list[list[str]]) -> None:
    raw = make_event(keys_for("differential", 1), 1, content, tags, 1_700_000_000)
    assert reference_verify(raw) is None
    assert ours(loads(raw)) is None
    tampered = {**loads(raw), "content": content + "x"}
    assert ours(tampered) == reasons.BAD_ID == reference_verify(dumps(tampered))


@settings(max_examples=500, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=10),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=8),
                    max_leaves=20))
def test_any_json_value_is_rejected_with_a_reason_never_an_exception(value: object) -> None:
    with pytest.raises(Rejected) as caught:
        validate_json(dumps(value), Policy(), 2_000_000_000)
    assert caught.value.reason.startswith(("invalid:", "blocked:"))

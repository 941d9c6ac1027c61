"""NIP-77 frames: round trips, other frame types passed over, malformed frames refused."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powrd.protocol.filters import Filter
from powrd.protocol.messages import MalformedFrame
from powrd.protocol.negentropy_messages import (
    NegClose,
    NegErr,
    NegMsg,
    NegOpen,
    parse_negentropy_client_message,
    parse_negentropy_relay_message,
)

sub_ids = st.text(min_size=1, max_size=64)


@given(sub_ids, st.binary(max_size=300))
def test_messages_round_trip(sub_id: str, payload: bytes) -> None:
    flt = Filter(kinds=frozenset({1301, 33401}), since=5)
    assert parse_negentropy_client_message(NegOpen(sub_id, flt, payload).to_frame()) == NegOpen(
        sub_id, flt, payload
    )
    assert parse_negentropy_client_message(NegMsg(sub_id, payload).to_frame()) == NegMsg(
        sub_id, payload
    )
    assert parse_negentropy_client_message(NegClose(sub_id).to_frame()) == NegClose(sub_id)
    assert parse_negentropy_relay_message(NegMsg(sub_id, payload).to_frame()) == NegMsg(
        sub_id, payload
    )
    assert parse_negentropy_relay_message(NegErr(sub_id, "closed: x").to_frame()) == NegErr(
        sub_id, "closed: x"
    )


@pytest.mark.parametrize("frame", ['["EOSE","s"]', '["NOTICE","hi"]', "[1]", "[]"])
def test_other_frames_are_not_negentropy(frame: str) -> None:
    assert parse_negentropy_relay_message(frame) is None
    assert parse_negentropy_client_message(frame) is None


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "{}",
        '["NEG-MSG","s"]',
        '["NEG-MSG","s","zz"]',
        '["NEG-MSG","","61"]',
        '["NEG-ERR","s",5]',
    ],
)
def test_malformed_relay_frames(frame: str) -> None:
    with pytest.raises(MalformedFrame):
        parse_negentropy_relay_message(frame)


@pytest.mark.parametrize(
    "frame",
    [
        '["NEG-OPEN","s",{"kinds":[1]}]',
        '["NEG-OPEN","s",[],"61"]',
        '["NEG-OPEN","s",{"kinds":"x"},"61"]',
        '["NEG-CLOSE"]',
        '["NEG-MSG","s",7]',
    ],
)
def test_malformed_client_frames(frame: str) -> None:
    with pytest.raises(MalformedFrame):
        parse_negentropy_client_message(frame)


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused(frame: str) -> None:
    for parse in (parse_negentropy_relay_message, parse_negentropy_client_message):
        with contextlib.suppress(MalformedFrame):
            parse(frame)

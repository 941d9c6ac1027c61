"""Relay and client messages: parsing, rejection reasons, builders, fuzzing."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powrd.protocol import messages
from powrd.protocol.event import dumps
from powrd.protocol.filters import Filter
from powrd.protocol.messages import (
    BAD_FILTER,
    NOT_ARRAY,
    NOT_JSON,
    UNKNOWN_TYPE,
    WRONG_ARITY,
    WRONG_TYPE,
    AuthMessage,
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientReq,
    ClosedMessage,
    CountMessage,
    EoseMessage,
    EventMessage,
    MalformedFrame,
    NoticeMessage,
    OkMessage,
    machine_prefix,
    parse_client_message,
    parse_relay_message,
)

EVENT_ID = "ab" * 32
EVENT_JSON = (
    '{"id":"' + EVENT_ID + '","pubkey":"' + "cd" * 32 + '","created_at":1700000000,'
    '"kind":1301,"tags":[["d","x"]],"content":"","sig":"' + "ef" * 64 + '"}'
)
TYPES = ["EVENT", "EOSE", "OK", "CLOSED", "NOTICE", "AUTH", "COUNT", "REQ", "CLOSE"]

json_values = st.recursive(
    st.none()
    | st.booleans()
    # Beyond 64 bits orjson (the fast path) reads integers as floats; no NIP-01 field
    # can hold such a number, so the round trip is only promised within 64 bits.
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
sub_ids = st.text(min_size=1, max_size=64)
small_filters = st.builds(
    Filter,
    kinds=st.none() | st.frozensets(st.integers(0, 65535), max_size=3),
    tags=st.dictionaries(st.sampled_from("edt"), st.frozensets(st.text(), max_size=2), max_size=2),
    since=st.none() | st.integers(0, 2**40),
    limit=st.none() | st.integers(0, 500),
)
filter_tuples = st.lists(small_filters, min_size=1, max_size=3).map(tuple)


def compact_size(obj: dict[str, Any]) -> int:
    return len(dumps(obj).encode("utf-8", "surrogatepass"))


relay_messages = st.one_of(
    st.builds(lambda sub, obj: EventMessage(sub, obj, compact_size(obj)), st.text(), json_objects),
    st.builds(EoseMessage, st.text()),
    st.builds(OkMessage, st.text(), st.booleans(), st.text()),
    st.builds(ClosedMessage, st.text(), st.text()),
    st.builds(NoticeMessage, st.text()),
    st.builds(AuthMessage, st.text()),
    st.builds(CountMessage, st.text(), st.integers(0, 2**53), st.booleans()),
)
client_messages = st.one_of(
    st.builds(ClientReq, sub_ids, filter_tuples),
    st.builds(ClientCount, sub_ids, filter_tuples),
    st.builds(ClientClose, sub_ids),
    st.builds(lambda obj: ClientEvent(obj, compact_size(obj)), json_objects),
    st.builds(lambda obj: ClientAuth(obj, compact_size(obj)), json_objects),
)
near_valid_frames = st.builds(
    lambda name, rest: dumps([name, *rest]),
    st.sampled_from(TYPES),
    st.lists(st.one_of(st.text(max_size=5), st.booleans(), json_objects, json_values), max_size=4),
)
any_frames = st.one_of(
    st.text(),
    st.binary(),
    json_values.map(dumps),
    near_valid_frames,
    near_valid_frames.map(str.encode),
)


@given(relay_messages)
def test_relay_messages_round_trip(message: messages.RelayMessage) -> None:
    frame = message.to_frame()
    assert parse_relay_message(frame) == message
    assert parse_relay_message(frame.encode("utf-8", "surrogatepass")) == message


@given(client_messages)
def test_client_messages_round_trip(message: messages.ClientMessage) -> None:
    assert parse_client_message(message.to_frame()) == message


@given(any_frames)
def test_parsing_anything_raises_only_malformed_frame(frame: str | bytes) -> None:
    for parse in (parse_relay_message, parse_client_message):
        try:
            parse(frame)
        except MalformedFrame as error:
            assert error.reason in {
                NOT_JSON,
                NOT_ARRAY,
                UNKNOWN_TYPE,
                WRONG_ARITY,
                WRONG_TYPE,
                BAD_FILTER,
            }


@pytest.mark.parametrize(
    "frame",
    [
        "[" * 100_000,
        "[" * 2_000 + "]" * 2_000,
        '["NOTICE",1' + "0" * 5000 + "]",
        b'["NOTICE","\xff"]',
        '["EVENT","s",' + "{" * 3000 + "}" * 3000 + "]",
    ],
)
def test_hostile_frames_are_malformed_not_crashes(frame: str | bytes) -> None:
    for parse in (parse_relay_message, parse_client_message):
        with pytest.raises(MalformedFrame):
            parse(frame)


def test_lone_surrogates_survive_parsing() -> None:
    assert parse_relay_message('["NOTICE","\\ud800"]') == NoticeMessage("\ud800")


def test_parse_each_relay_message() -> None:
    assert parse_relay_message(f'["EVENT","sub1",{EVENT_JSON}]') == EventMessage(
        "sub1", dumps_back(EVENT_JSON), len(EVENT_JSON)
    )
    assert parse_relay_message(b'["EOSE","sub1"]') == EoseMessage("sub1")
    assert parse_relay_message(f'["OK","{EVENT_ID}",false,"pow: 20 bits"]') == OkMessage(
        EVENT_ID, False, "pow: 20 bits"
    )
    assert parse_relay_message('["CLOSED","s","auth-required: x"]') == ClosedMessage(
        "s", "auth-required: x"
    )
    assert parse_relay_message('["NOTICE","hi"]') == NoticeMessage("hi")
    assert parse_relay_message('["AUTH","challenge"]') == AuthMessage("challenge")
    assert parse_relay_message('["COUNT","q",{"count":7}]') == CountMessage("q", 7)
    assert parse_relay_message('["COUNT","q",{"count":7,"approximate":true}]') == CountMessage(
        "q", 7, approximate=True
    )


def dumps_back(text: str) -> dict[str, Any]:
    result = messages.parse_client_message(f'["EVENT",{text}]')
    assert isinstance(result, ClientEvent)
    return result.event


def test_event_size_is_exact_for_compact_frames_and_never_under() -> None:
    compact = parse_relay_message(f'["EVENT","a\\"b",{EVENT_JSON}]')
    assert isinstance(compact, EventMessage)
    assert compact.size == len(EVENT_JSON)
    padded = parse_relay_message(f'[ "EVENT" , "\\u0073" ,\n {EVENT_JSON} ]')
    assert isinstance(padded, EventMessage)
    assert padded.size > len(EVENT_JSON)
    unicode = '{"content":"Kniebeuge \u00fcber 100 kg"}'
    parsed = parse_relay_message(f'["EVENT","s",{unicode}]')
    assert isinstance(parsed, EventMessage)
    assert parsed.size == len(unicode.encode())
    published = parse_client_message(f'["EVENT",{EVENT_JSON}]')
    assert isinstance(published, ClientEvent)
    assert published.size == len(EVENT_JSON)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("nope", NOT_JSON),
        (b"\xff\xfe", NOT_JSON),
        ("", NOT_JSON),
        ("{}", NOT_ARRAY),
        ('"EVENT"', NOT_ARRAY),
        ("[]", WRONG_ARITY),
        ("[1]", UNKNOWN_TYPE),
        ('["HELLO"]', UNKNOWN_TYPE),
        ('["REQ","s",{}]', UNKNOWN_TYPE),
        ('["EOSE"]', WRONG_ARITY),
        ('["EOSE","s","extra"]', WRONG_ARITY),
        ('["EVENT","s"]', WRONG_ARITY),
        ('["OK","id",true]', WRONG_ARITY),
        ('["EVENT","s",[]]', WRONG_TYPE),
        ('["EVENT",1,{}]', WRONG_TYPE),
        ('["OK","id","true",""]', WRONG_TYPE),
        ('["OK","id",true,null]', WRONG_TYPE),
        ('["CLOSED","s",1]', WRONG_TYPE),
        ('["NOTICE",{}]', WRONG_TYPE),
        ('["AUTH",{}]', WRONG_TYPE),
        ('["COUNT","q",{}]', WRONG_TYPE),
        ('["COUNT","q",{"count":-1}]', WRONG_TYPE),
        ('["COUNT","q",{"count":1.0}]', WRONG_TYPE),
        ('["COUNT","q",{"count":1,"approximate":1}]', WRONG_TYPE),
    ],
)
def test_relay_parse_errors(frame: str | bytes, reason: str) -> None:
    with pytest.raises(MalformedFrame) as caught:
        parse_relay_message(frame)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ('["REQ","s"]', WRONG_ARITY),
        ('["REQ","",{}]', WRONG_TYPE),
        ('["REQ","' + "x" * 65 + '",{}]', WRONG_TYPE),
        ('["REQ","s",{"kinds":["x"]}]', BAD_FILTER),
        ('["COUNT","s",{},[]]', BAD_FILTER),
        ('["CLOSE",1]', WRONG_TYPE),
        ('["CLOSE"]', WRONG_ARITY),
        ('["EVENT","s",{}]', WRONG_ARITY),
        ('["EVENT","s"]', WRONG_TYPE),
        ('["AUTH","challenge"]', WRONG_TYPE),
        ('["EOSE","s"]', UNKNOWN_TYPE),
    ],
)
def test_client_parse_errors(frame: str, reason: str) -> None:
    with pytest.raises(MalformedFrame) as caught:
        parse_client_message(frame)
    assert caught.value.reason == reason


def test_bad_filter_says_which_filter_and_field() -> None:
    with pytest.raises(MalformedFrame) as caught:
        parse_client_message('["REQ","s",{},{"kinds":[1,"x"]}]')
    assert caught.value.detail.startswith("filters[1].kinds[1]: expected an integer")


def test_parse_client_messages() -> None:
    flt = Filter(kinds=frozenset({33401}), limit=10)
    assert parse_client_message('["REQ","s",{"kinds":[33401],"limit":10},{}]') == ClientReq(
        "s", (flt, Filter())
    )
    assert parse_client_message('["CLOSE","s"]') == ClientClose("s")
    assert parse_client_message('["COUNT","q",{}]') == ClientCount("q", (Filter(),))
    auth = parse_client_message(f'["AUTH",{EVENT_JSON}]')
    assert isinstance(auth, ClientAuth)
    assert auth.event["id"] == EVENT_ID
    assert auth.size == len(EVENT_JSON)


def test_builders() -> None:
    flt = Filter(kinds=frozenset({1301, 33401}), limit=500)
    assert messages.req("s1", [flt]) == '["REQ","s1",{"kinds":[1301,33401],"limit":500}]'
    assert messages.count("q", [Filter()]) == '["COUNT","q",{}]'
    assert messages.close("s1") == '["CLOSE","s1"]'
    odd = '{ "id" : "x" }'
    assert messages.event(odd) == '["EVENT",' + odd + "]"
    assert messages.auth(odd) == '["AUTH",' + odd + "]"


@pytest.mark.parametrize("sub_id", ["", "x" * 65])
def test_builders_refuse_bad_subscription_ids(sub_id: str) -> None:
    with pytest.raises(ValueError, match="1 to 64"):
        messages.req(sub_id, [Filter()])
    with pytest.raises(ValueError, match="1 to 64"):
        messages.close(sub_id)


def test_builders_refuse_requests_without_filters() -> None:
    with pytest.raises(ValueError, match="at least one filter"):
        messages.req("s", [])


@pytest.mark.parametrize(
    ("message", "prefix"),
    [
        ("duplicate: already have this event", "duplicate"),
        ("pow: difficulty 25>=24", "pow"),
        ("rate-limited: slow down", "rate-limited"),
        ("auth-required: we only serve members", "auth-required"),
        ("blocked:", "blocked"),
        ("error: could not connect to the database", "error"),
        ("custom-thing: relays invent prefixes", "custom-thing"),
        ("", None),
        ("no prefix here", None),
        ("https://relay.example/why", None),
        (": empty prefix", None),
        ("Blocked: capitalised", None),
        ("two words: no", None),
    ],
)
def test_machine_prefix(message: str, prefix: str | None) -> None:
    assert machine_prefix(message) == prefix


def test_malformed_frame_is_a_value_error_with_reason_and_detail() -> None:
    error = MalformedFrame(WRONG_TYPE, "OK element 2 is not a boolean")
    assert isinstance(error, ValueError)
    assert str(error) == "wrong element type: OK element 2 is not a boolean"
    assert str(MalformedFrame(NOT_JSON)) == "not json"

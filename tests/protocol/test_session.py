"""The per-relay session: subscriptions, limits, publishes, counters, hostile relays."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from powrd.protocol import reasons
from powrd.protocol.event import dumps
from powrd.protocol.filters import Filter
from powrd.protocol.session import (
    AuthRequested,
    CountResult,
    Dropped,
    EndOfStored,
    Incoming,
    NegentropyMessage,
    NegentropyRefused,
    Notice,
    Output,
    PublishResult,
    RelaySession,
    SubscriptionClosed,
    SubscriptionState,
)

ALICE = "a1" * 32
BOB = "b0" * 32
RECORDS = Filter(kinds=frozenset({1301}))
OUTPUT_TYPES = (
    Incoming,
    Dropped,
    EndOfStored,
    SubscriptionClosed,
    Notice,
    PublishResult,
    AuthRequested,
    CountResult,
    NegentropyMessage,
    NegentropyRefused,
)


def make_event(
    number: int,
    *,
    kind: int = 1301,
    created_at: int = 100,
    pubkey: str = ALICE,
    tags: list[list[str]] | None = None,
) -> dict[str, Any]:
    """A well-formed event object; ids and signatures are not checked at this layer."""
    return {
        "id": f"{number:064x}",
        "pubkey": pubkey,
        "created_at": created_at,
        "kind": kind,
        "tags": tags if tags is not None else [["d", str(number)]],
        "content": "",
        "sig": "00" * 64,
    }


def event_frame(sub_id: str, event: dict[str, Any]) -> str:
    return f'["EVENT",{dumps(sub_id)},{dumps(event)}]'


def only(outputs: list[Output]) -> Output:
    assert len(outputs) == 1, outputs
    return outputs[0]


def test_subscription_lifecycle() -> None:
    session = RelaySession()
    assert session.open_subscription("s", [RECORDS]) == '["REQ","s",{"kinds":[1301]}]'
    event = make_event(1)
    frame = event_frame("s", event)
    assert only(session.receive(frame)) == Incoming("s", event, len(dumps(event)))
    assert only(session.receive('["EOSE","s"]')) == EndOfStored("s")
    status = session.subscription("s")
    assert status is not None
    assert (status.state, status.events_received, status.stored_counts) == (
        SubscriptionState.LIVE,
        1,
        (1,),
    )
    assert isinstance(only(session.receive(event_frame("s", make_event(2)))), Incoming)
    assert session.subscription_ids() == ["s"]
    assert session.close_subscription("s") == '["CLOSE","s"]'
    status = session.subscription("s")
    assert status is not None
    assert status.state is SubscriptionState.CLOSED
    assert session.subscription_ids() == []


def test_events_for_unknown_or_closed_subscriptions_are_dropped() -> None:
    session = RelaySession()
    session.open_subscription("s", [RECORDS])
    assert only(session.receive(event_frame("other", make_event(1)))) == Dropped(
        reasons.UNKNOWN_SUBSCRIPTION, "other"
    )
    session.close_subscription("s")
    assert only(session.receive(event_frame("s", make_event(1)))) == Dropped(
        reasons.CLOSED_SUBSCRIPTION, "s"
    )


@pytest.mark.parametrize("live", [False, True])
def test_events_matching_no_filter_are_dropped(live: bool) -> None:
    session = RelaySession()
    session.open_subscription("s", [RECORDS, Filter(authors=frozenset({BOB}))])
    if live:
        session.receive('["EOSE","s"]')
    assert only(session.receive(event_frame("s", make_event(1, kind=33401)))) == Dropped(
        reasons.FILTER_MISMATCH, "s"
    )
    assert isinstance(only(session.receive(event_frame("s", make_event(2, pubkey=BOB)))), Incoming)


def test_malformed_events_pass_on_for_the_pipeline_to_reject() -> None:
    session = RelaySession()
    session.open_subscription("s", [RECORDS.with_bounds(limit=0)])
    broken = {"id": "not hex", "kind": 1}
    assert only(session.receive(event_frame("s", broken))) == Incoming(
        "s", broken, len(dumps(broken))
    )


def test_stored_events_beyond_the_limit_are_dropped_until_eose() -> None:
    session = RelaySession()
    session.open_subscription("s", [RECORDS.with_bounds(limit=2)])
    outputs = [only(session.receive(event_frame("s", make_event(n)))) for n in range(3)]
    assert [type(o) for o in outputs] == [Incoming, Incoming, Dropped]
    assert outputs[2] == Dropped(reasons.OVER_LIMIT, "s")
    session.receive('["EOSE","s"]')
    assert isinstance(only(session.receive(event_frame("s", make_event(9)))), Incoming)
    status = session.subscription("s")
    assert status is not None
    assert status.stored_counts == (2,)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_overlapping_filters_share_events_without_false_drops(order: tuple[int, int]) -> None:
    # Filter "bob" owes one event of Bob; filter "records" owes one record. The relay
    # sends Bob's record (the newest record) and then Bob's exercise: both are owed,
    # whichever filter the first one was counted against.
    pair = [Filter(authors=frozenset({BOB}), limit=1), RECORDS.with_bounds(limit=1)]
    session = RelaySession()
    session.open_subscription("s", [pair[i] for i in order])
    bobs_record = make_event(1, pubkey=BOB)
    bobs_exercise = make_event(2, pubkey=BOB, kind=33401)
    assert isinstance(only(session.receive(event_frame("s", bobs_record))), Incoming)
    assert isinstance(only(session.receive(event_frame("s", bobs_exercise))), Incoming)
    assert only(session.receive(event_frame("s", make_event(3)))) == Dropped(
        reasons.OVER_LIMIT, "s"
    )


def max_matching(groups: list[frozenset[int]], limits: list[int]) -> int:
    """Most events that fit under the limits: Kuhn's algorithm over filter slots."""
    slots = [(f, k) for f, limit in enumerate(limits) for k in range(limit)]
    owner: dict[tuple[int, int], int] = {}

    def place(event: int, seen: set[tuple[int, int]]) -> bool:
        for slot in slots:
            if slot[0] in groups[event] and slot not in seen:
                seen.add(slot)
                if slot not in owner or place(owner[slot], seen):
                    owner[slot] = event
                    return True
        return False

    return sum(place(event, set()) for event in range(len(groups)))


limited_filters = st.lists(
    st.tuples(st.frozensets(st.sampled_from([1, 2, 3]), min_size=1), st.integers(0, 3)),
    min_size=1,
    max_size=4,
)


@settings(max_examples=60, deadline=None)
@given(limited_filters, st.lists(st.sampled_from([1, 2, 3]), max_size=14), st.randoms())
def test_limit_checks_never_cut_an_honest_relay_short(
    specs: list[tuple[frozenset[int], int]], kinds: list[int], rng: random.Random
) -> None:
    filters = [Filter(kinds=k, limit=limit) for k, limit in specs]
    events = [make_event(n, kind=kind) for n, kind in enumerate(kinds)]
    # An honest relay sends, for each filter, at most `limit` of its matching events.
    owed: set[int] = set()
    for flt in filters:
        matching = [n for n, kind in enumerate(kinds) if kind in (flt.kinds or ())]
        owed.update(rng.sample(matching, min(len(matching), flt.limit or 0)))
    order = sorted(owed)
    rng.shuffle(order)
    session = RelaySession()
    session.open_subscription("s", filters)
    for n in order:
        assert isinstance(only(session.receive(event_frame("s", events[n]))), Incoming)


@settings(max_examples=100, deadline=None)
@given(limited_filters, st.lists(st.sampled_from([1, 2, 3]), max_size=14))
# Admits one event too many if a moved event still counted where it came from.
@example([(frozenset({1, 2}), 1), (frozenset({1}), 2)], [1, 2, 2])
def test_limit_checks_admit_exactly_what_fits_from_a_flooding_relay(
    specs: list[tuple[frozenset[int], int]], kinds: list[int]
) -> None:
    filters = [Filter(kinds=k, limit=limit) for k, limit in specs]
    session = RelaySession()
    session.open_subscription("s", filters)
    admitted = 0
    groups = []
    for n, kind in enumerate(kinds):
        group = frozenset(i for i, (k, _) in enumerate(specs) if kind in k)
        output = only(session.receive(event_frame("s", make_event(n, kind=kind))))
        if group:
            groups.append(group)
        admitted += isinstance(output, Incoming)
    assert admitted == max_matching(groups, [limit for _, limit in specs])


def test_eose_handling() -> None:
    session = RelaySession()
    session.open_subscription("s", [RECORDS])
    assert only(session.receive('["EOSE","x"]')) == Dropped(reasons.UNKNOWN_SUBSCRIPTION, "x")
    session.receive('["EOSE","s"]')
    assert only(session.receive('["EOSE","s"]')) == Dropped(reasons.DUPLICATE_EOSE, "s")
    session.open_subscription("t", [RECORDS])
    session.close_subscription("t")
    assert session.receive('["EOSE","t"]') == []


def test_closed_by_relay_and_reopened() -> None:
    session = RelaySession()
    session.open_subscription("s", [RECORDS])
    closed = only(session.receive('["CLOSED","s","auth-required: members only"]'))
    assert closed == SubscriptionClosed("s", "auth-required: members only")
    assert only(session.receive(event_frame("s", make_event(1)))) == Dropped(
        reasons.CLOSED_SUBSCRIPTION, "s"
    )
    session.open_subscription("s", [RECORDS])
    assert isinstance(only(session.receive(event_frame("s", make_event(1)))), Incoming)
    assert only(session.receive('["CLOSED","x",""]')) == Dropped(reasons.UNKNOWN_SUBSCRIPTION, "x")


def test_closed_acknowledging_our_close_is_quiet() -> None:
    session = RelaySession()
    session.open_subscription("s", [RECORDS])
    session.close_subscription("s")
    assert session.receive('["CLOSED","s",""]') == []


def test_closed_subscriptions_are_forgotten_beyond_the_memory() -> None:
    session = RelaySession(closed_memory=2)
    for sub_id in ("a", "b", "c"):
        session.open_subscription(sub_id, [RECORDS])
        session.close_subscription(sub_id)
    assert session.subscription("a") is None
    assert only(session.receive(event_frame("a", make_event(1)))).reason == (  # type: ignore[union-attr]
        reasons.UNKNOWN_SUBSCRIPTION
    )
    assert only(session.receive(event_frame("c", make_event(1)))).reason == (  # type: ignore[union-attr]
        reasons.CLOSED_SUBSCRIPTION
    )


def test_publish_and_ok() -> None:
    session = RelaySession()
    event_id = "ee" * 32
    assert session.publish(event_id, '{"id":"x"}', now=10.0) == '["EVENT",{"id":"x"}]'
    assert session.pending_publishes == 1
    ok = f'["OK","{event_id}",false,"blocked: not on the list"]'
    assert only(session.receive(ok)) == PublishResult(event_id, False, "blocked: not on the list")
    assert only(session.receive(ok)) == Dropped(reasons.UNEXPECTED_OK, None, event_id)
    assert session.pending_publishes == 0


def test_authenticate_awaits_an_ok_too() -> None:
    session = RelaySession()
    assert only(session.receive('["AUTH","c-123"]')) == AuthRequested("c-123")
    assert session.auth_challenge == "c-123"
    assert session.authenticate("aa" * 32, '{"kind":22242}', now=0) == '["AUTH",{"kind":22242}]'
    result = only(session.receive(f'["OK","{"aa" * 32}",true,""]'))
    assert result == PublishResult("aa" * 32, True, "")


def test_timed_out_publishes_use_the_injected_clock() -> None:
    session = RelaySession()
    session.publish("01" * 32, "{}", now=0)
    session.publish("02" * 32, "{}", now=1)
    session.publish("03" * 32, "{}", now=4)
    session.publish("01" * 32, "{}", now=5)  # a retry restarts the wait
    assert session.timed_out_publishes(now=11, timeout=10) == ["02" * 32]
    assert session.timed_out_publishes(now=11, timeout=10) == []
    assert session.timed_out_publishes(now=15, timeout=10) == ["03" * 32, "01" * 32]
    late = only(session.receive(f'["OK","{"01" * 32}",true,""]'))
    assert late == Dropped(reasons.UNEXPECTED_OK, None, "01" * 32)


def test_notice_and_count() -> None:
    session = RelaySession()
    assert only(session.receive('["NOTICE","rate-limited: easy"]')) == Notice("rate-limited: easy")
    assert session.request_count("q", [RECORDS]) == '["COUNT","q",{"kinds":[1301]}]'
    assert only(session.receive('["COUNT","q",{"count":42}]')) == CountResult("q", 42)
    assert only(session.receive('["COUNT","q",{"count":42}]')) == Dropped(
        reasons.UNKNOWN_SUBSCRIPTION, "q"
    )
    session.request_count("r", [RECORDS])
    assert only(session.receive('["CLOSED","r","error: no"]')) == SubscriptionClosed(
        "r", "error: no"
    )


def test_oversized_frames_are_dropped_unparsed() -> None:
    session = RelaySession(max_frame_bytes=30)
    session.open_subscription("s", [RECORDS])
    notice = '["NOTICE","' + "x" * 17 + '"]'  # exactly 30 bytes
    assert only(session.receive(notice)) == Notice("x" * 17)
    wide = '["NOTICE","' + "\u00fc" * 10 + '"]'  # 23 characters, 33 bytes
    assert only(session.receive(wide)) == Dropped(reasons.FRAME_TOO_LARGE, None, "33 bytes")
    assert only(session.receive(b"x" * 31)).reason == reasons.FRAME_TOO_LARGE  # type: ignore[union-attr]


def test_malformed_frames_are_dropped_with_detail() -> None:
    session = RelaySession()
    dropped = only(session.receive('["OK","id","yes",""]'))
    assert dropped == Dropped(
        reasons.MALFORMED_FRAME, None, "wrong element type: OK element 2 is not a boolean"
    )


def test_negentropy_answers_are_outputs_for_their_subscription_id() -> None:
    session = RelaySession()
    assert session.receive('["NEG-MSG","neg1","61"]') == [NegentropyMessage("neg1", b"a")]
    assert session.receive('["NEG-ERR","neg1","blocked: too many records"]') == [
        NegentropyRefused("neg1", "blocked: too many records")
    ]


@pytest.mark.parametrize(
    ("frame", "detail"),
    [
        ('["NEG-MSG","neg1","6"]', "NEG-MSG element 2 is not hex"),
        ('["NEG-MSG","neg1"]', "NEG-MSG has 2 elements"),
        ('["NEG-ERR","neg1",5]', "NEG-ERR element 2 is not a string"),
        ('["NEG-WHAT","neg1"]', "unknown message type"),
    ],
)
def test_malformed_negentropy_frames_are_dropped(frame: str, detail: str) -> None:
    dropped = only(RelaySession().receive(frame))
    assert isinstance(dropped, Dropped)
    assert dropped.reason == reasons.MALFORMED_FRAME
    assert detail in dropped.detail


@given(st.text(max_size=64).filter(bool), st.binary(max_size=300))
def test_any_neg_msg_payload_arrives_intact(sub_id: str, payload: bytes) -> None:
    frame = dumps(["NEG-MSG", sub_id, payload.hex()])
    assert RelaySession().receive(frame) == [NegentropyMessage(sub_id, payload)]


def test_open_subscription_checks_its_arguments() -> None:
    session = RelaySession()
    with pytest.raises(ValueError, match="1 to 64"):
        session.open_subscription("", [RECORDS])
    with pytest.raises(ValueError, match="at least one filter"):
        session.open_subscription("s", [])
    assert session.subscription("s") is None


SUB_IDS = ["a", "b", "gone"]
event_objects = st.one_of(
    st.builds(
        make_event,
        st.integers(0, 5),
        kind=st.sampled_from([1, 1301, 33401]),
        created_at=st.integers(0, 3),
        pubkey=st.sampled_from([ALICE, BOB]),
    ),
    st.dictionaries(st.sampled_from(["id", "kind", "tags", "pubkey"]), st.integers() | st.text()),
)
session_frames = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=40),
    st.builds(event_frame, st.sampled_from(SUB_IDS), event_objects),
    st.builds(lambda s: dumps(["EOSE", s]), st.sampled_from(SUB_IDS)),
    st.builds(lambda s, m: dumps(["CLOSED", s, m]), st.sampled_from(SUB_IDS), st.text(max_size=5)),
    st.builds(
        lambda i, a: dumps(["OK", i, a, ""]), st.sampled_from(["01" * 32, "x"]), st.booleans()
    ),
    st.builds(lambda c: dumps(["COUNT", "q", {"count": c}]), st.integers(-2, 2)),
    st.builds(
        lambda name, rest: dumps([name, *rest]),
        st.sampled_from(["EVENT", "EOSE", "OK", "CLOSED", "NOTICE", "AUTH", "COUNT", "REQ"]),
        st.lists(st.text(max_size=3) | st.booleans() | st.integers() | st.none(), max_size=4),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(session_frames, max_size=25))
def test_receive_never_raises(frames: list[str | bytes]) -> None:
    session = RelaySession(max_frame_bytes=400, closed_memory=1)
    session.open_subscription("a", [RECORDS.with_bounds(limit=2), Filter(authors=frozenset({BOB}))])
    session.open_subscription("b", [Filter(limit=0)])
    session.open_subscription("gone", [Filter()])
    session.close_subscription("gone")
    session.publish("01" * 32, "{}", now=0)
    session.request_count("q", [Filter()])
    for frame in frames:
        for output in session.receive(frame):
            assert isinstance(output, OUTPUT_TYPES)

"""The server-side client session: REQ/COUNT/EVENT/CLOSE/AUTH/NEG-*, limits, fuzzing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.protocol.client_session import (
    AUTH_NOT_USED,
    NEGENTROPY_DISABLED,
    ClientSession,
    CountStored,
    NegClose,
    Negentropy,
    NegOpen,
    Output,
    Publish,
    QueryStored,
    Send,
    SessionLimits,
)
from powrd.protocol.event import dumps, loads, parse_event
from powrd.protocol.messages import machine_prefix

ALICE = "a1" * 32
LIMITS = SessionLimits(
    max_subscriptions=3, max_filters=2, max_limit=50, default_limit=10,
    max_message_bytes=4096, events_per_minute=6, max_held_live=2,
)


def make_event(number: int, *, kind: int = 1301, created_at: int = 100) -> dict[str, Any]:
    return {
        "id": f"{number:064x}", "pubkey": ALICE, "created_at": created_at, "kind": kind,
        "tags": [], "content": "", "sig": "00" * 64,
    }


def sent(outputs: list[Output]) -> list[list[Any]]:
    return [loads(o.frame) for o in outputs if isinstance(o, Send)]


def test_req_settles_limits_and_reports_the_query() -> None:
    session = ClientSession(LIMITS)
    (query,) = session.receive('["REQ","s",{"kinds":[1301]},{"limit":500}]', 0)
    assert isinstance(query, QueryStored)
    assert [f.limit for f in query.filters] == [10, 50]  # default page, then capped


def test_stored_then_eose_then_held_live_events_not_seen_by_the_read() -> None:
    session = ClientSession(LIMITS)
    (query,) = session.receive('["REQ","s",{"kinds":[1301]}]', 0)
    assert isinstance(query, QueryStored)
    seen, fresh = parse_event(make_event(1)), parse_event(make_event(2))
    assert session.live(seen, dumps(seen.to_dict()), seq=5) == []  # held: not live yet
    assert session.live(fresh, dumps(fresh.to_dict()), seq=6) == []
    frames = [loads(f) for f in session.stored("s", query.token, ['{"id":"x"}'], seen_seq=5)]
    assert frames == [["EVENT", "s", {"id": "x"}], ["EOSE", "s"], ["EVENT", "s", fresh.to_dict()]]
    other = parse_event(make_event(3, kind=1))
    assert session.live(other, dumps(other.to_dict()), seq=7) == []  # does not match
    assert len(session.live(fresh, "{}", seq=8)) == 1
    assert session.live(seen, "{}", seq=5) == []  # the stored read saw it: not sent twice


def test_reused_id_replaces_and_the_old_read_is_dropped() -> None:
    session = ClientSession(LIMITS)
    (first,) = session.receive('["REQ","s",{"kinds":[1]}]', 0)
    (second,) = session.receive('["REQ","s",{"kinds":[1301]}]', 0)
    assert isinstance(first, QueryStored) and isinstance(second, QueryStored)
    assert session.stored("s", first.token, [], 0) == []
    assert session.stored("s", second.token, [], 0) == ['["EOSE","s"]']
    assert session.subscription_count == 1


def test_close_ends_a_subscription_and_its_pending_read() -> None:
    session = ClientSession(LIMITS)
    (query,) = session.receive('["REQ","s",{}]', 0)
    assert session.receive('["CLOSE","s"]', 0) == []
    assert isinstance(query, QueryStored)
    assert session.stored("s", query.token, [], 0) == []


def test_too_many_subscriptions_and_filters_are_closed() -> None:
    session = ClientSession(LIMITS)
    for n in range(3):
        session.receive(f'["REQ","s{n}",{{}}]', 0)
    (frame,) = sent(session.receive('["REQ","s9",{}]', 0))
    assert frame[:2] == ["CLOSED", "s9"] and machine_prefix(frame[2]) == "blocked"
    assert isinstance(session.receive('["REQ","s0",{}]', 0)[0], QueryStored)  # replacing is fine
    (frame,) = sent(session.receive('["REQ","s1",{},{},{}]', 0))
    assert frame[:2] == ["CLOSED", "s1"] and frame[2].startswith("invalid: 3 filters")
    assert session.subscription_count == 2


def test_bad_filter_is_closed_with_the_field_named() -> None:
    (frame,) = sent(ClientSession(LIMITS).receive('["REQ","s",{"kinds":["x"]}]', 0))
    assert frame[0] == "CLOSED" and "kinds[0]" in frame[2] and frame[2].startswith("invalid:")


def test_malformed_unknown_and_oversized_frames_get_notices() -> None:
    session = ClientSession(LIMITS)
    for frame in ("nope", "{}", "[]", '["HELLO"]', '["REQ"]', '["CLOSE",1]', "x" * 5000):
        (notice,) = sent(session.receive(frame, 0))
        assert notice[0] == "NOTICE" and notice[1].startswith("invalid: "), frame
    assert "too large" in sent(session.receive("x" * 5000, 0))[0][1]


def test_event_is_published_then_acknowledged() -> None:
    session = ClientSession(LIMITS)
    (publish,) = session.receive(dumps(["EVENT", make_event(1)]), 0)
    assert isinstance(publish, Publish) and publish.event.id == f"{1:064x}"
    assert loads(session.published(publish.event.id, True, "")) == ["OK", publish.event.id, True, ""]
    assert session.counters["events_accepted"] == 1


def test_malformed_event_is_refused_with_its_id_or_a_notice() -> None:
    session = ClientSession(LIMITS)
    broken = {**make_event(1), "kind": "x"}
    (ok,) = sent(session.receive(dumps(["EVENT", broken]), 0))
    assert ok[:3] == ["OK", broken["id"], False] and ok[3].startswith("invalid: malformed event")
    (notice,) = sent(session.receive(dumps(["EVENT", {"content": ""}]), 0))
    assert notice[0] == "NOTICE"
    assert session.counters["events_refused"] == 2


def test_flood_is_rate_limited_and_the_bucket_refills() -> None:
    session = ClientSession(LIMITS)
    results = [session.receive(dumps(["EVENT", make_event(n)]), 0.0) for n in range(8)]
    assert all(isinstance(r[0], Publish) for r in results[:6])
    for refused in results[6:]:
        (ok,) = sent(refused)
        assert ok[2] is False and machine_prefix(ok[3]) == "rate-limited"
    assert isinstance(session.receive(dumps(["EVENT", make_event(9)]), 10.0)[0], Publish)


def test_count_ignores_limits() -> None:
    (count,) = ClientSession(LIMITS).receive('["COUNT","c",{"kinds":[1],"limit":1}]', 0)
    assert isinstance(count, CountStored) and count.filters[0].limit is None


def test_auth_is_refused_politely() -> None:
    (ok,) = sent(ClientSession(LIMITS).receive(dumps(["AUTH", make_event(1)]), 0))
    assert ok == ["OK", f"{1:064x}", False, AUTH_NOT_USED]


def test_negentropy_disabled_or_handed_to_the_responder() -> None:
    frame = '["NEG-OPEN","n",{"kinds":[1]},"6100"]'
    assert sent(ClientSession(LIMITS).receive(frame, 0)) == [["NEG-ERR", "n", NEGENTROPY_DISABLED]]
    assert ClientSession(LIMITS).receive('["NEG-CLOSE","n"]', 0) == []
    (handed,) = ClientSession(LIMITS, negentropy=True).receive(frame, 0)
    assert isinstance(handed, Negentropy) and isinstance(handed.message, NegOpen)
    assert handed.message.payload == b"\x61\x00"
    (refused,) = sent(ClientSession(LIMITS).receive('["NEG-MSG","n","zz"]', 0))
    assert refused[:2] == ["NEG-ERR", "n"] and refused[2].startswith("invalid: ")
    (notice,) = sent(ClientSession(LIMITS).receive('["NEG-FOO","n"]', 0))
    assert notice == ["NOTICE", "invalid: unknown message type 'NEG-FOO'"]


def test_a_malformed_negentropy_message_ends_its_reconciliation() -> None:
    close, refusal = ClientSession(LIMITS, negentropy=True).receive('["NEG-MSG","n","6"]', 0)
    assert close == Negentropy(NegClose("n"))
    assert isinstance(refusal, Send) and loads(refusal.frame)[:2] == ["NEG-ERR", "n"]
    (notice,) = sent(ClientSession(LIMITS, negentropy=True).receive('["NEG-MSG",7,"61"]', 0))
    assert notice[0] == "NOTICE"


def test_a_subscription_that_falls_behind_while_reading_is_closed() -> None:
    session = ClientSession(LIMITS)
    session.receive('["REQ","s",{}]', 0)
    for n in range(2):
        event = parse_event(make_event(n))
        assert session.live(event, "{}", seq=n) == []
    (frame,) = session.live(parse_event(make_event(5)), "{}", seq=5)
    assert loads(frame)[0] == "CLOSED" and session.subscription_count == 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
names = st.sampled_from(["REQ", "COUNT", "CLOSE", "EVENT", "AUTH", "NEG-OPEN", "NEG-MSG", "NEG-CLOSE", "X"])
client_frames = st.one_of(
    st.text(max_size=60),
    json_values.map(dumps),
    st.tuples(names, st.lists(json_values, max_size=4)).map(lambda t: dumps([t[0], *t[1]])),
    st.tuples(names, st.text(max_size=5), st.lists(json_values, max_size=3)).map(
        lambda t: dumps([t[0], t[1], *t[2]])
    ),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(client_frames, max_size=20), st.booleans())
def test_fuzz_any_frames_never_raise_and_replies_are_well_formed(frames: list[str], negentropy: bool) -> None:
    session = ClientSession(LIMITS, negentropy=negentropy)
    for number, frame in enumerate(frames):
        for output in session.receive(frame, float(number)):
            if isinstance(output, Send):
                reply = loads(output.frame)
                assert reply[0] in ("NOTICE", "CLOSED", "OK", "NEG-ERR")
                text = reply[-1]
                assert machine_prefix(text) in ("invalid", "blocked", "rate-limited"), text
            elif isinstance(output, QueryStored):
                assert all(f.limit is not None and f.limit <= LIMITS.max_limit for f in output.filters)
            elif isinstance(output, Negentropy):
                assert negentropy
        assert session.subscription_count <= LIMITS.max_subscriptions


# ---------------------------------------------------------------- sent once, never missed

operations = st.lists(
    st.one_of(
        st.tuples(st.just("req"), st.sampled_from(["a", "b"]), st.sampled_from([1301, 33401])),
        st.tuples(st.just("commit"), st.sampled_from([1301, 33401])),
        st.tuples(st.just("read"), st.sampled_from(["a", "b"])),
        st.tuples(st.just("feed"), st.integers(1, 3)),
        st.tuples(st.just("close"), st.sampled_from(["a", "b"])),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_every_matching_event_is_sent_once_whatever_the_feed_lag(ops: list[tuple[Any, ...]]) -> None:
    """A store, a lagging live feed and stored reads racing it: each subscription gets
    every matching event exactly once (stored or live), and an EOSE."""
    session = ClientSession(SessionLimits(max_held_live=1000))
    store: list[tuple[int, dict[str, Any]]] = []  # (seq, event), committed
    fed = 0  # how many committed events the feed has handed to the session
    pending: dict[str, QueryStored] = {}
    kinds: dict[str, int] = {}
    sent: dict[str, list[str]] = {}  # sub -> event ids, for the current generation
    eose: dict[str, bool] = {}

    def take(frames: list[str]) -> None:
        for frame in frames:
            message = loads(frame)
            if message[0] == "EOSE":
                eose[message[1]] = True
            elif message[0] == "EVENT":
                sent[message[1]].append(message[2]["id"])

    for op in ops:
        if op[0] == "req":
            _, sub, kind = op
            (query,) = session.receive(dumps(["REQ", sub, {"kinds": [kind]}]), 0)
            assert isinstance(query, QueryStored)
            pending[sub], kinds[sub], sent[sub], eose[sub] = query, kind, [], False
        elif op[0] == "commit":
            seq = len(store) + 1
            store.append((seq, make_event(seq, kind=op[1], created_at=seq)))
        elif op[0] == "read" and op[1] in pending:
            query = pending.pop(op[1])
            matching = [e for _, e in reversed(store) if e["kind"] == kinds[op[1]]]
            raws = [dumps(e) for e in matching]
            take(session.stored(op[1], query.token, raws, seen_seq=len(store)))
        elif op[0] == "feed":
            for seq, event in store[fed : fed + op[1]]:
                take(session.live(parse_event(event), dumps(event), seq))
            fed = min(len(store), fed + op[1])
        elif op[0] == "close":
            session.receive(dumps(["CLOSE", op[1]]), 0)
            pending.pop(op[1], None)
            kinds.pop(op[1], None)
    for sub in list(pending):  # finish: every read completes, the feed catches up
        query = pending.pop(sub)
        raws = [dumps(e) for _, e in reversed(store) if e["kind"] == kinds[sub]]
        take(session.stored(sub, query.token, raws, seen_seq=len(store)))
    for seq, event in store[fed:]:
        take(session.live(parse_event(event), dumps(event), seq))
    for sub, kind in kinds.items():
        wanted = sorted(e["id"] for _, e in store if e["kind"] == kind)
        assert sorted(sent[sub]) == wanted, sub  # complete, and no id twice
        assert eose[sub]

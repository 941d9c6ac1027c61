"""The relay side of NIP-77 for one connection: sessions, limits, refusals."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.protocol.filters import Filter
from powrd.protocol.negentropy import NegentropyClient, StorageVector
from powrd.protocol.negentropy_messages import (
    NegClose,
    NegMsg,
    NegOpen,
    parse_negentropy_relay_message,
)
from powrd.protocol.negentropy_responder import NegentropyResponder

FILTER = Filter(kinds=frozenset({1301}))


def items(count: int, seed: int) -> list[tuple[int, bytes]]:
    rnd = random.Random(seed)
    return [(1_700_000_000 + n // 3, rnd.randbytes(32)) for n in range(count)]


def test_reconciles_to_completion() -> None:
    relay_items = items(2000, 1)
    local = relay_items[100:] + items(30, 2)
    responder = NegentropyResponder(frame_size_limit=4096)
    client = NegentropyClient(StorageVector.seal(local), 4096)
    reply = parse_negentropy_relay_message(
        responder.open(NegOpen("s", FILTER, client.initiate()), relay_items)
    )
    have: set[bytes] = set()
    need: set[bytes] = set()
    while True:
        assert isinstance(reply, NegMsg) and reply.subscription_id == "s"
        step = client.reconcile(reply.payload)
        have.update(step.have)
        need.update(step.need)
        if step.message is None:
            break
        reply = parse_negentropy_relay_message(responder.message(NegMsg("s", step.message)))
    responder.close(NegClose("s"))
    assert responder.open_subscriptions == 0
    assert have == {i for _, i in local} - {i for _, i in relay_items}
    assert need == {i for _, i in relay_items[:100]}


def test_too_many_records_is_blocked() -> None:
    responder = NegentropyResponder(max_records=10)
    frame = responder.open(NegOpen("s", FILTER, b"\x61"), items(11, 3))
    assert json.loads(frame) == ["NEG-ERR", "s", "blocked: too many records"]
    assert responder.open_subscriptions == 0


def test_too_many_sessions_is_blocked() -> None:
    responder = NegentropyResponder(max_sessions=2)
    for sub_id in ("a", "b"):
        assert json.loads(responder.open(NegOpen(sub_id, FILTER, b"\x61"), []))[0] == "NEG-MSG"
    frame = json.loads(responder.open(NegOpen("c", FILTER, b"\x61"), []))
    assert frame[:2] == ["NEG-ERR", "c"] and frame[2].startswith("blocked: ")
    assert responder.full("c") and not responder.full("a")
    # Reopening an open id replaces it rather than counting twice.
    assert json.loads(responder.open(NegOpen("a", FILTER, b"\x61"), []))[0] == "NEG-MSG"
    assert responder.open_subscriptions == 2


def test_unknown_subscription_is_closed() -> None:
    frame = NegentropyResponder().message(NegMsg("nope", b"\x61"))
    assert json.loads(frame) == ["NEG-ERR", "nope", "closed: no such negentropy subscription"]


def test_malformed_message_ends_the_subscription() -> None:
    responder = NegentropyResponder()
    frame = json.loads(responder.open(NegOpen("s", FILTER, bytes.fromhex("610000")), items(5, 4)))
    assert frame[:2] == ["NEG-ERR", "s"] and frame[2].startswith("error: ")
    assert responder.open_subscriptions == 0
    assert json.loads(responder.message(NegMsg("s", b"\x61")))[2].startswith("closed: ")


def test_unknown_version_is_answered_with_version_one() -> None:
    responder = NegentropyResponder()
    frame = responder.open(NegOpen("s", FILTER, bytes.fromhex("62aabb")), items(5, 5))
    assert json.loads(frame) == ["NEG-MSG", "s", "61"]
    assert responder.open_subscriptions == 1


SERVER_ITEMS = items(3000, 6)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=120).map(lambda tail: b"\x61" + tail), min_size=1, max_size=4))
def test_hostile_messages_get_an_answer_or_end_the_subscription(payloads: list[bytes]) -> None:
    responder = NegentropyResponder(frame_size_limit=4096)
    answer = json.loads(responder.open(NegOpen("s", FILTER, payloads[0]), SERVER_ITEMS))
    for payload in [*payloads[1:], None]:
        assert answer[0] in ("NEG-MSG", "NEG-ERR") and answer[1] == "s"
        if answer[0] == "NEG-ERR":
            assert answer[2].split(":")[0] == "error" and responder.open_subscriptions == 0
            return
        # An answer never exceeds the frame limit, whatever was asked.
        assert len(bytes.fromhex(answer[2])) <= 4096
        if payload is None:
            return
        answer = json.loads(responder.message(NegMsg("s", payload)))

"""Signing: the event nostr-sdk signs is serialized once, by nostr-sdk."""

from __future__ import annotations

import nostr_sdk

from powrd.protocol.event import dumps, loads
from powrd.protocol.signing import auth_event, sign_event
from powrd.protocol.verify import verification_failure
from tests.support.events import keys_for
from tests.support.reference import reference_verify

KEYS = keys_for("signing", 0)


def test_a_signed_event_hands_out_the_json_nostr_sdk_signed() -> None:
    tags = [["d", "squat"], ["title", "Squat ü \u2028"], ["format", "weight", "reps"]]
    event = sign_event(KEYS, 33401, "Deep \"squat\"\n", tags, 1_700_000_000)
    raw = event.to_json()
    assert raw is event.to_json()  # not serialized again on each call
    assert raw is event.serialized
    assert loads(raw) == event.to_dict()
    assert verification_failure(event) is None
    assert reference_verify(raw) is None
    assert nostr_sdk.Event.from_json(raw).id().to_hex() == event.id


def test_an_event_without_its_json_is_serialized_on_demand() -> None:
    event = auth_event(KEYS, "wss://relay.example", "challenge", 1_700_000_000)
    plain = type(event)(**{**event.to_dict(), "serialized": None})
    assert plain.to_json() == dumps(event.to_dict())
    assert loads(plain.to_json()) == loads(event.to_json())
    assert plain == event

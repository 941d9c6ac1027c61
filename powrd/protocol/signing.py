"""Building and signing events with nostr-sdk (keys never leave nostr-sdk objects)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import nostr_sdk

from powrd.protocol.event import Event, loads, parse_event

AUTH_KIND = 22242


def sign_event(
    keys: nostr_sdk.Keys, kind: int, content: str, tags: Sequence[Sequence[str]], created_at: int
) -> Event:
    """Sign an event; tags are kept exactly as given (nostr-sdk does not reorder them)."""
    builder = (
        nostr_sdk.EventBuilder(nostr_sdk.Kind(kind), content)
        .tags([nostr_sdk.Tag.parse(list(tag)) for tag in tags])
        .custom_created_at(nostr_sdk.Timestamp.from_secs(created_at))
    )
    serialized = builder.finalize(keys).as_json()
    return dataclasses.replace(parse_event(loads(serialized)), serialized=serialized)


def auth_event(keys: nostr_sdk.Keys, relay_url: str, challenge: str, created_at: int) -> Event:
    """The NIP-42 kind-22242 event answering a relay's challenge."""
    return sign_event(
        keys, AUTH_KIND, "", [["relay", relay_url], ["challenge", challenge]], created_at
    )

"""nostr-sdk's verdict on an event: the oracle the differential tests check ours against."""

from __future__ import annotations

import nostr_sdk

from powrd.protocol import reasons


def reference_verify(event_json: str) -> str | None:
    """The same verdict as :func:`powrd.protocol.verify.verification_failure`, by nostr-sdk."""
    try:
        event = nostr_sdk.Event.from_json(event_json)
    except Exception:  # nostr-sdk raises its own error types for unparsable events
        return reasons.MALFORMED_PREFIX
    if not event.verify_id():
        return reasons.BAD_ID
    if not event.verify_signature():
        return reasons.BAD_SIGNATURE
    return None

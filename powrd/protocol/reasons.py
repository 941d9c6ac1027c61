"""Machine-readable verdicts for rejected events.

Reasons follow NIP-01's ``OK`` message convention (``<prefix>: <detail>``) so the same
string can be logged, counted per relay, stored in the rejected-events log and sent back
to a client.
"""

from __future__ import annotations

BAD_ID = "invalid: bad event id"
BAD_SIGNATURE = "invalid: bad signature"
TOO_LARGE = "invalid: event too large"
TOO_FAR_IN_FUTURE = "invalid: created_at too far in future"
EXPIRED = "invalid: event expired"
DELETED = "blocked: event was deleted"
FILTER_MISMATCH = "invalid: event does not match the subscription"
OVER_LIMIT = "invalid: more events than the filter's limit"
MALFORMED_PREFIX = "invalid: malformed event"


class Rejected(ValueError):
    """An event was refused; ``reason`` is one of the strings above."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @classmethod
    def malformed(cls, detail: str) -> Rejected:
        return cls(f"{MALFORMED_PREFIX}: {detail}")


def reason_key(reason: str) -> str:
    """Reason without its detail, for counters (``invalid: malformed event``)."""
    if reason.startswith(MALFORMED_PREFIX):
        return MALFORMED_PREFIX
    return reason


# Frames a relay session refuses before any event reaches the pipeline.
FRAME_TOO_LARGE = "invalid: frame too large"
MALFORMED_FRAME = "invalid: malformed frame"
UNKNOWN_SUBSCRIPTION = "invalid: unknown subscription"
CLOSED_SUBSCRIPTION = "invalid: event for a closed subscription"
DUPLICATE_EOSE = "invalid: EOSE for a subscription already live"
UNEXPECTED_OK = "invalid: OK for an event that was not published"

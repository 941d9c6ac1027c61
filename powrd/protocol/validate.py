"""Local policy on well-formed events: size, clock skew, expiration (NIP-40).

Pure functions: the caller passes ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass

from powrd.protocol import reasons
from powrd.protocol.event import Event, loads, parse_event
from powrd.protocol.reasons import Rejected
from powrd.protocol.verify import verification_failure


@dataclass(frozen=True, slots=True)
class Policy:
    max_event_bytes: int = 131072
    max_future_seconds: int = 900


def expiration(event: Event) -> int | None:
    """The NIP-40 expiration timestamp, or None when absent or unreadable."""
    value = event.first_tag("expiration")
    if value is None or not value.isdigit():
        return None
    return int(value)


def policy_failure(event: Event, size: int, policy: Policy, now: int) -> str | None:
    """Why local policy refuses this event, or None.

    Args:
        event: a well-formed event.
        size: its size in bytes as received.
        policy: the configured limits.
        now: the current unix time.
    """
    if size > policy.max_event_bytes:
        return reasons.TOO_LARGE
    if event.created_at > now + policy.max_future_seconds:
        return reasons.TOO_FAR_IN_FUTURE
    expires = expiration(event)
    if expires is not None and expires <= now:
        return reasons.EXPIRED
    return None


def validate_json(text: str | bytes, policy: Policy, now: int) -> Event:
    """Full validation of one serialized event: shape, policy, id, signature.

    Raises:
        Rejected: with the reason.
    """
    size = len(text.encode() if isinstance(text, str) else text)
    if size > policy.max_event_bytes:
        raise Rejected(reasons.TOO_LARGE)
    try:
        obj = loads(text)
    except ValueError:
        raise Rejected.malformed("not valid JSON") from None
    event = parse_event(obj)
    failure = policy_failure(event, size, policy, now) or verification_failure(event)
    if failure:
        raise Rejected(failure)
    return event

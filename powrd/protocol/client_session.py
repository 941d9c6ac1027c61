"""One app's connection to powrd's local relay: the server side of NIP-01, without I/O.

:class:`ClientSession` is the mirror of :class:`~powrd.protocol.session.RelaySession`:
it takes the frames a client sends and returns what to do — frames to send at once
(:class:`Send`) or work for its driver (:class:`QueryStored`, :class:`CountStored`,
:class:`Publish`, :class:`Negentropy`), whose results come back through
:meth:`ClientSession.stored`, :meth:`~ClientSession.counted` and
:meth:`~ClientSession.published`. Whatever a client sends, :meth:`ClientSession.receive`
never raises; every refusal carries a NIP-01 machine-readable prefix.

A subscription is ``stored`` while its driver reads the store, then ``live`` (after
EOSE). Events committed while it is ``stored`` are held (a bounded number) and sent
after EOSE unless the stored read already saw them: the driver reports the highest
store sequence number its read could see, and every live event carries its own.
The frames themselves are built in :mod:`powrd.protocol.messages`; NIP-77 messages
are parsed (and answered) with :mod:`powrd.protocol.negentropy_messages`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

from powrd.protocol.event import Event, loads, parse_event
from powrd.protocol.filters import Filter
from powrd.protocol.messages import (
    BAD_FILTER,
    MAX_SUBSCRIPTION_ID_CHARS,
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientReq,
    MalformedFrame,
    byte_length,
    closed_frame,
    count_frame,
    eose_frame,
    event_frame,
    notice_frame,
    ok_frame,
    parse_client_message,
)
from powrd.protocol.negentropy_messages import (
    NegClose,
    NegErr,
    NegMsg,
    NegOpen,
    parse_negentropy_client_message,
)
from powrd.protocol.reasons import Rejected

NEGENTROPY_DISABLED = "blocked: negentropy not enabled"
AUTH_NOT_USED = "blocked: this relay does not ask for AUTH"
_NEG_FRAME = re.compile(r'\s*\[\s*"NEG-')
_HEX64 = re.compile(r"[0-9a-f]{64}")

NegentropyMessage = NegOpen | NegMsg | NegClose


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """What one connection may ask for (``[local_relay]`` in the config).

    Attributes:
        max_subscriptions: open subscriptions per connection.
        max_filters: filters in one REQ or COUNT.
        max_limit: a filter's ``limit`` is lowered to this.
        default_limit: the page for a filter without ``limit``.
        max_message_bytes: larger frames are refused unparsed.
        events_per_minute: EVENTs accepted per connection (a bucket of this size,
            refilled evenly over a minute).
        max_held_live: events held per subscription while its stored events are read.
    """

    max_subscriptions: int = 32
    max_filters: int = 16
    max_limit: int = 5000
    default_limit: int = 500
    max_message_bytes: int = 256 * 1024
    events_per_minute: int = 600
    max_held_live: int = 1000


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Send:
    """A frame to send to the client now."""

    frame: str


@dataclass(frozen=True, slots=True)
class QueryStored:
    """Read the stored events matching ``filters`` (limits already settled), newest
    first, then call :meth:`ClientSession.stored` with ``token``."""

    sub_id: str
    filters: tuple[Filter, ...]
    token: int


@dataclass(frozen=True, slots=True)
class CountStored:
    """Count the stored events matching any of ``filters`` (NIP-45), then call
    :meth:`ClientSession.counted`."""

    sub_id: str
    filters: tuple[Filter, ...]


@dataclass(frozen=True, slots=True)
class Publish:
    """Store ``event`` through the ingest pipeline, then call :meth:`ClientSession.published`."""

    event: Event
    size: int


@dataclass(frozen=True, slots=True)
class Negentropy:
    """A NIP-77 message for the driver's negentropy responder."""

    message: NegentropyMessage


Output = Send | QueryStored | CountStored | Publish | Negentropy


class SessionCounters(TypedDict):
    events_sent: int
    events_accepted: int
    events_refused: int
    notices: int


# ---------------------------------------------------------------- session


@dataclass(slots=True)
class _Subscription:
    # Mutable on purpose: private state, changed as stored and live events flow.
    filters: tuple[Filter, ...]
    token: int
    live: bool = False
    held: list[tuple[int, str]] = field(default_factory=list)  # (seq, raw) while stored
    seen_seq: int = -1  # the stored read saw every event up to here


class ClientSession:
    """The sans-I/O protocol state of one client connected to the local relay.

    Args:
        limits: what the client may ask for.
        negentropy: whether NEG-* messages go to the driver (:class:`Negentropy`);
            when False they are answered ``NEG-ERR "blocked: negentropy not enabled"``.
        now: the clock of the events-per-minute bucket at start (seconds).
    """

    def __init__(
        self, limits: SessionLimits, *, negentropy: bool = False, now: float = 0.0
    ) -> None:
        self.limits = limits
        self.negentropy = negentropy
        self.counters = SessionCounters(
            events_sent=0, events_accepted=0, events_refused=0, notices=0
        )
        self._subscriptions: dict[str, _Subscription] = {}
        self._tokens = 0
        self._bucket = float(limits.events_per_minute)
        self._bucket_at = now

    @property
    def subscription_count(self) -> int:
        return len(self._subscriptions)

    # -- frames received --------------------------------------------------------

    def receive(self, frame: str | bytes, now: float) -> list[Output]:
        """Process one frame from the client; ``now`` feeds the rate limit. Never raises."""
        size = byte_length(frame)
        if size > self.limits.max_message_bytes:
            return [
                self._notice(
                    f"invalid: message too large ({size} bytes; at most "
                    f"{self.limits.max_message_bytes})"
                )
            ]
        head = frame[:64] if isinstance(frame, str) else frame[:64].decode("utf-8", "replace")
        if _NEG_FRAME.match(head):
            return self._negentropy(frame)
        try:
            message = parse_client_message(frame)
        except MalformedFrame as error:
            return self._malformed(frame, error)
        match message:
            case ClientReq():
                return self._on_req(message.subscription_id, message.filters)
            case ClientCount():
                return self._on_count(message.subscription_id, message.filters)
            case ClientClose():
                self._subscriptions.pop(message.subscription_id, None)
                return []
            case ClientEvent():
                return self._on_event(message.event, message.size, now)
            case ClientAuth():
                event_id = message.event.get("id")
                if isinstance(event_id, str) and _HEX64.fullmatch(event_id):
                    return [Send(ok_frame(event_id, False, AUTH_NOT_USED))]
                return [self._notice(AUTH_NOT_USED)]

    def _malformed(self, frame: str | bytes, error: MalformedFrame) -> list[Output]:
        if error.reason == BAD_FILTER:
            sub_id = _subscription_id_of(frame)
            if sub_id is not None:
                self._subscriptions.pop(sub_id, None)
                return [Send(closed_frame(sub_id, f"invalid: {error}"))]
        return [self._notice(f"invalid: {error}")]

    def _settle(self, sub_id: str, filters: tuple[Filter, ...]) -> tuple[Filter, ...] | Send:
        if len(filters) > self.limits.max_filters:
            return Send(
                closed_frame(
                    sub_id,
                    f"invalid: {len(filters)} filters; "
                    f"at most {self.limits.max_filters} per request",
                )
            )
        return tuple(self._bounded(f) for f in filters)

    def _bounded(self, flt: Filter) -> Filter:
        if flt.limit is None:
            return replace(flt, limit=self.limits.default_limit)
        if flt.limit > self.limits.max_limit:
            return replace(flt, limit=self.limits.max_limit)
        return flt

    def _on_req(self, sub_id: str, filters: tuple[Filter, ...]) -> list[Output]:
        if sub_id not in self._subscriptions and (
            len(self._subscriptions) >= self.limits.max_subscriptions
        ):
            return [
                Send(
                    closed_frame(
                        sub_id,
                        f"blocked: {self.limits.max_subscriptions} subscriptions already open "
                        "on this connection; CLOSE one first",
                    )
                )
            ]
        settled = self._settle(sub_id, filters)
        if isinstance(settled, Send):
            self._subscriptions.pop(sub_id, None)
            return [settled]
        self._tokens += 1
        # A reused id replaces the subscription; results of the old one are dropped.
        self._subscriptions[sub_id] = _Subscription(settled, self._tokens)
        return [QueryStored(sub_id, settled, self._tokens)]

    def _on_count(self, sub_id: str, filters: tuple[Filter, ...]) -> list[Output]:
        settled = self._settle(sub_id, filters)
        if isinstance(settled, Send):
            return [settled]
        # NIP-45 counts every match: the limit is not a page here.
        return [CountStored(sub_id, tuple(replace(f, limit=None) for f in filters))]

    def _on_event(self, obj: dict[str, Any], size: int, now: float) -> list[Output]:
        event_id = obj.get("id")
        named = event_id if isinstance(event_id, str) and _HEX64.fullmatch(event_id) else None
        if not self._take_token(now):
            return self._refuse(
                named, f"rate-limited: more than {self.limits.events_per_minute} events a minute"
            )
        try:
            event = parse_event(obj)
        except Rejected as rejection:
            return self._refuse(named, rejection.reason)
        return [Publish(event, size)]

    def _refuse(self, event_id: str | None, message: str) -> list[Output]:
        self.counters["events_refused"] += 1
        if event_id is None:
            return [self._notice(message)]
        return [Send(ok_frame(event_id, False, message))]

    def _take_token(self, now: float) -> bool:
        per_minute = self.limits.events_per_minute
        elapsed = max(0.0, now - self._bucket_at)
        self._bucket = min(float(per_minute), self._bucket + elapsed * per_minute / 60.0)
        self._bucket_at = max(self._bucket_at, now)
        if self._bucket < 1.0:
            return False
        self._bucket -= 1.0
        return True

    def _negentropy(self, frame: str | bytes) -> list[Output]:
        try:
            message = parse_negentropy_client_message(frame)
        except MalformedFrame as error:
            return self._malformed_negentropy(frame, error)
        if message is None:  # "NEG-" followed by a name NIP-77 does not define
            return [self._notice(f"invalid: unknown message type {_type_of(frame)!r}")]
        if self.negentropy:
            return [Negentropy(message)]
        if isinstance(message, NegClose):
            return []
        return [Send(NegErr(message.subscription_id, NEGENTROPY_DISABLED).to_frame())]

    def _malformed_negentropy(self, frame: str | bytes, error: MalformedFrame) -> list[Output]:
        # A NEG-OPEN or NEG-MSG that names its subscription gets a NEG-ERR for it (and
        # the reconciliation ends), so the client learns which one failed.
        sub_id = _subscription_id_of(frame)
        if sub_id is None or _type_of(frame) not in ("NEG-OPEN", "NEG-MSG"):
            return [self._notice(f"invalid: {error}")]
        refusal = Send(NegErr(sub_id, f"invalid: {error}").to_frame())
        return [Negentropy(NegClose(sub_id)), refusal] if self.negentropy else [refusal]

    def _notice(self, message: str) -> Send:
        self.counters["notices"] += 1
        return Send(notice_frame(message))

    # -- results from the driver --------------------------------------------------

    def stored(self, sub_id: str, token: int, raw_events: list[str], seen_seq: int) -> list[str]:
        """Frames for a finished stored read: its events, EOSE, then the held live events.

        Args:
            sub_id: the subscription.
            token: from the :class:`QueryStored`; a replaced or closed subscription's
                results are dropped (returns ``[]``).
            raw_events: the stored events' JSON, newest first.
            seen_seq: the highest store sequence number the read could see.
        """
        subscription = self._subscriptions.get(sub_id)
        if subscription is None or subscription.token != token or subscription.live:
            return []
        frames = [event_frame(sub_id, raw) for raw in raw_events]
        frames.append(eose_frame(sub_id))
        frames.extend(event_frame(sub_id, raw) for seq, raw in subscription.held if seq > seen_seq)
        self.counters["events_sent"] += len(frames) - 1
        subscription.held = []
        subscription.live = True
        subscription.seen_seq = seen_seq
        return frames

    def live(self, event: Event, raw_event: str, seq: int) -> list[str]:
        """Frames for an event committed just now, for every subscription it matches."""
        frames: list[str] = []
        overflowed: list[str] = []
        for sub_id, subscription in self._subscriptions.items():
            if not any(f.matches(event) for f in subscription.filters):
                continue
            if subscription.live:
                if seq > subscription.seen_seq:  # else its stored read already sent it
                    frames.append(event_frame(sub_id, raw_event))
            elif len(subscription.held) < self.limits.max_held_live:
                subscription.held.append((seq, raw_event))
            else:
                overflowed.append(sub_id)
        self.counters["events_sent"] += len(frames)
        for sub_id in overflowed:
            del self._subscriptions[sub_id]
            frames.append(
                closed_frame(
                    sub_id,
                    f"rate-limited: over {self.limits.max_held_live} new events arrived while "
                    "stored events were read; subscribe again",
                )
            )
        return frames

    def counted(self, sub_id: str, count: int) -> str:
        return count_frame(sub_id, count)

    def published(self, event_id: str, accepted: bool, message: str) -> str:
        """The OK frame for an event the pipeline committed (or refused)."""
        if accepted:
            self.counters["events_accepted"] += 1
        else:
            self.counters["events_refused"] += 1
        return ok_frame(event_id, accepted, message)


# ---------------------------------------------------------------- parsing helpers


def _type_of(frame: str | bytes) -> str | None:
    """The message type (first element) of a frame that is a JSON array, else None."""
    try:
        items = loads(frame)
    except (ValueError, RecursionError):
        return None
    kind = items[0] if isinstance(items, list) and items else None
    return kind[:20] if isinstance(kind, str) else None


def _subscription_id_of(frame: str | bytes) -> str | None:
    """The subscription id of a refused REQ/COUNT/NEG-* frame, if it has one."""
    try:
        items = loads(frame)
    except (ValueError, RecursionError):
        return None
    sub_id = items[1] if isinstance(items, list) and len(items) > 1 else None
    if isinstance(sub_id, str) and 0 < len(sub_id) <= MAX_SUBSCRIPTION_ID_CHARS:
        return sub_id
    return None


__all__ = [
    "AUTH_NOT_USED",
    "NEGENTROPY_DISABLED",
    "ClientSession",
    "CountStored",
    "NegClose",
    "NegMsg",
    "NegOpen",
    "Negentropy",
    "NegentropyMessage",
    "Output",
    "Publish",
    "QueryStored",
    "Send",
    "SessionLimits",
]

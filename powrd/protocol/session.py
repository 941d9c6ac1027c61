"""One relay connection's protocol state: subscriptions, publishes, session checks.

:class:`RelaySession` takes the frames a relay sends and returns typed outputs; it
builds the frames to send but never sends them. Whatever the relay sends, ``receive``
returns outputs and never raises: a misbehaving relay shows up as :class:`Dropped`
outputs and counters, never as an exception in the connection task.

A subscription moves ``open`` → ``live`` (on EOSE) → ``closed`` (on CLOSE or CLOSED).
While it is open the relay is sending stored events, and no filter may bring more
than its ``limit``.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from powrd.protocol import messages, reasons
from powrd.protocol.event import Event, parse_event
from powrd.protocol.filters import Filter
from powrd.protocol.messages import (
    AuthMessage,
    ClosedMessage,
    CountMessage,
    EoseMessage,
    EventMessage,
    MalformedFrame,
    NoticeMessage,
    OkMessage,
    byte_length,
    parse_relay_message,
)
from powrd.protocol.negentropy_messages import NegErr, NegMsg, parse_negentropy_relay_message
from powrd.protocol.reasons import Rejected

DEFAULT_MAX_FRAME_BYTES = 1024 * 1024
# Closed subscriptions are remembered so late events count as "closed", not "unknown";
# the bound keeps a long-lived connection that opens many pages from growing.
DEFAULT_CLOSED_MEMORY = 256


class SubscriptionState(enum.Enum):
    OPEN = "open"
    LIVE = "live"
    CLOSED = "closed"


# ---------------------------------------------------------------- outputs


@dataclass(frozen=True, slots=True)
class Incoming:
    """An event that passed the session checks; ``event`` is still unvalidated.

    ``parsed`` is the well-formed :class:`Event` the session built to match filters (None
    when the object is malformed), so the pipeline need not parse it again.
    """

    subscription_id: str
    event: dict[str, Any]
    size: int
    parsed: Event | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A frame the session refused; ``reason`` is a constant from :mod:`reasons`."""

    reason: str
    subscription_id: str | None = None
    detail: str = ""


# The relay's own messages, passed on as parsed once the session has checked them (a
# subscription it opened, an OK it awaits); the names say what each means to a client.

EndOfStored = EoseMessage
"""EOSE: the subscription's stored events are complete; it is live now."""
SubscriptionClosed = ClosedMessage
"""The relay ended a subscription (or a count request); see ``machine_prefix``."""
Notice = NoticeMessage
PublishResult = OkMessage
"""The relay's OK for an event (or AUTH event) this session sent."""
AuthRequested = AuthMessage
CountResult = CountMessage
NegentropyMessage = NegMsg
"""NIP-77 ``NEG-MSG``: the relay's next negentropy message (``payload``, hex-decoded)."""
NegentropyRefused = NegErr
"""NIP-77 ``NEG-ERR``: the relay refused or ended a reconciliation."""


Output = (
    Incoming
    | Dropped
    | EndOfStored
    | SubscriptionClosed
    | Notice
    | PublishResult
    | AuthRequested
    | CountResult
    | NegentropyMessage
    | NegentropyRefused
)


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    """A snapshot of one subscription.

    Attributes:
        stored_counts: per filter, the stored events counted towards its ``limit``
            (frozen at EOSE).
    """

    sub_id: str
    filters: tuple[Filter, ...]
    state: SubscriptionState
    events_received: int
    stored_counts: tuple[int, ...]


# ---------------------------------------------------------------- limits


class _LimitLedger:
    """Decides whether a relay still owes stored events under its filters' limits.

    Each filter returns at most ``limit`` events of its own and the relay sends the
    union, so an event matching several filters may be the one any of them owes.
    The ledger assigns every admitted event to one matching filter and, when all of a
    new event's filters are full, tries to move earlier events to other filters they
    match (an augmenting path, as in bipartite matching). An event is refused only
    when no assignment fits, so a well-behaved relay is never cut short.
    """

    __slots__ = ("_held", "limits", "loads")

    def __init__(self, filters: tuple[Filter, ...]) -> None:
        self.limits = tuple(f.limit for f in filters)
        self.loads = [0] * len(filters)
        # Per filter: the admitted events assigned to it, counted by their matching set.
        self._held: list[dict[frozenset[int], int]] = [{} for _ in filters]

    def admit(self, matching: frozenset[int]) -> bool:
        order = sorted(matching)
        for index in order:
            if self.limits[index] is None:
                # Unlimited filters never need to give an event up, so no bookkeeping.
                self.loads[index] += 1
                return True
        for index in order:
            if self._has_room(index):
                self._hold(index, matching, 1)
                return True
        return self._augment(order, matching)

    def _has_room(self, index: int) -> bool:
        limit = self.limits[index]
        return limit is None or self.loads[index] < limit

    def _hold(self, index: int, group: frozenset[int], delta: int) -> None:
        held = self._held[index]
        held[group] = held.get(group, 0) + delta
        if not held[group]:
            del held[group]
        self.loads[index] += delta

    def _augment(self, roots: list[int], matching: frozenset[int]) -> bool:
        parent: dict[int, tuple[int, frozenset[int]] | None] = dict.fromkeys(roots)
        queue = deque(roots)
        while queue:
            current = queue.popleft()
            for group in list(self._held[current]):
                for other in sorted(index for index in group if index not in parent):
                    parent[other] = (current, group)
                    if self._has_room(other):
                        self._shift_along(parent, other, matching)
                        return True
                    queue.append(other)
        return False

    def _shift_along(
        self,
        parent: dict[int, tuple[int, frozenset[int]] | None],
        target: int,
        matching: frozenset[int],
    ) -> None:
        step = parent[target]
        while step is not None:
            source, group = step
            self._hold(source, group, -1)
            self._hold(target, group, 1)
            target, step = source, parent[source]
        self._hold(target, matching, 1)


# ---------------------------------------------------------------- session


@dataclass(slots=True)
class _Subscription:
    # Mutable on purpose: it is the session's private state, changed on every event.
    filters: tuple[Filter, ...]
    state: SubscriptionState = SubscriptionState.OPEN
    events_received: int = 0
    ledger: _LimitLedger | None = None
    stored_counts: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        self.ledger = _LimitLedger(self.filters)


class RelaySession:
    """The sans-I/O protocol state of one connection to one relay.

    Args:
        max_frame_bytes: frames larger than this are dropped unparsed.
        closed_memory: how many closed subscriptions to remember.
    """

    def __init__(
        self,
        *,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        closed_memory: int = DEFAULT_CLOSED_MEMORY,
    ) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.closed_memory = closed_memory
        self.auth_challenge: str | None = None
        self._subscriptions: dict[str, _Subscription] = {}
        self._closed_order: OrderedDict[str, None] = OrderedDict()
        self._pending_publishes: dict[str, float] = {}
        self._pending_counts: set[str] = set()

    # -- frames to send ---------------------------------------------------------

    def open_subscription(self, sub_id: str, filters: Iterable[Filter]) -> str:
        """Start (or, as NIP-01 allows, replace) a subscription; returns the REQ frame.

        Raises:
            ValueError: the id is not 1 to 64 characters, or there are no filters.
        """
        chosen = tuple(filters)
        frame = messages.req(sub_id, chosen)
        self._closed_order.pop(sub_id, None)
        self._subscriptions[sub_id] = _Subscription(chosen)
        return frame

    def close_subscription(self, sub_id: str) -> str:
        """End a subscription; returns the CLOSE frame (harmless if already closed)."""
        frame = messages.close(sub_id)
        subscription = self._subscriptions.get(sub_id)
        if subscription is not None and subscription.state is not SubscriptionState.CLOSED:
            self._mark_closed(sub_id, subscription)
        return frame

    def request_count(self, sub_id: str, filters: Iterable[Filter]) -> str:
        """Ask for a NIP-45 count; returns the COUNT frame."""
        frame = messages.count(sub_id, filters)
        self._pending_counts.add(sub_id)
        return frame

    def publish(self, event_id: str, event_json: str, now: float) -> str:
        """Send an event and await its OK; returns the EVENT frame.

        Args:
            event_id: the event's id, which the relay's OK names.
            event_json: the serialized event, embedded as is.
            now: the caller's clock, for :meth:`timed_out_publishes`.
        """
        self._await_ok(event_id, now)
        return messages.event(event_json)

    def authenticate(self, event_id: str, event_json: str, now: float) -> str:
        """Answer an AUTH challenge with a signed kind 22242 event; returns the AUTH frame."""
        self._await_ok(event_id, now)
        return messages.auth(event_json)

    def timed_out_publishes(self, now: float, timeout: float) -> list[str]:
        """Ids of publishes without an OK for ``timeout``; they stop being awaited."""
        expired = [
            event_id for event_id, sent in self._pending_publishes.items() if now - sent >= timeout
        ]
        for event_id in expired:
            del self._pending_publishes[event_id]
        return expired

    # -- frames received --------------------------------------------------------

    def receive(self, frame: str | bytes) -> list[Output]:
        """Process one frame from the relay; never raises."""
        size = byte_length(frame)
        # Checked before parsing so an oversized frame costs no JSON decoding.
        if size > self.max_frame_bytes:
            return [self._drop(reasons.FRAME_TOO_LARGE, None, f"{size} bytes")]
        try:
            message = parse_relay_message(frame)
        except MalformedFrame as error:
            if error.reason != messages.UNKNOWN_TYPE:
                return [self._drop(reasons.MALFORMED_FRAME, None, str(error))]
            # NIP-77 frames are rare: parsed only once the NIP-01 parser gave up.
            return [self._negentropy(frame, error)]
        match message:
            case EventMessage():
                return [self._on_event(message)]
            case EoseMessage():
                return self._on_eose(message)
            case ClosedMessage():
                return self._on_closed(message)
            case OkMessage():
                return [self._on_ok(message)]
            case NoticeMessage():
                return [message]
            case AuthMessage():
                self.auth_challenge = message.challenge
                return [message]
            case CountMessage():
                return [self._on_count(message)]

    def _negentropy(self, frame: str | bytes, unknown: MalformedFrame) -> Output:
        try:
            message = parse_negentropy_relay_message(frame)
        except MalformedFrame as error:
            return self._drop(reasons.MALFORMED_FRAME, None, str(error))
        if message is None:
            return self._drop(reasons.MALFORMED_FRAME, None, str(unknown))
        return message

    def _on_event(self, message: EventMessage) -> Output:
        sub_id = message.subscription_id
        subscription = self._subscriptions.get(sub_id)
        if subscription is None:
            return self._drop(reasons.UNKNOWN_SUBSCRIPTION, sub_id)
        if subscription.state is SubscriptionState.CLOSED:
            return self._drop(reasons.CLOSED_SUBSCRIPTION, sub_id)
        try:
            parsed = parse_event(message.event)
        except Rejected:
            # Cannot be matched; the pipeline rejects it and records the reason.
            return self._accept(subscription, message)
        filters = subscription.filters
        if subscription.ledger is None:
            if not any(f.matches(parsed) for f in filters):
                return self._drop(reasons.FILTER_MISMATCH, sub_id)
            return self._accept(subscription, message, parsed)
        matching = frozenset(i for i, f in enumerate(filters) if f.matches(parsed))
        if not matching:
            return self._drop(reasons.FILTER_MISMATCH, sub_id)
        if not subscription.ledger.admit(matching):
            return self._drop(reasons.OVER_LIMIT, sub_id)
        return self._accept(subscription, message, parsed)

    def _on_eose(self, message: EoseMessage) -> list[Output]:
        sub_id = message.subscription_id
        subscription = self._subscriptions.get(sub_id)
        if subscription is None:
            return [self._drop(reasons.UNKNOWN_SUBSCRIPTION, sub_id)]
        if subscription.state is SubscriptionState.CLOSED:
            return []  # we closed it before the relay finished: nothing left to report
        if subscription.state is SubscriptionState.LIVE:
            return [self._drop(reasons.DUPLICATE_EOSE, sub_id)]
        subscription.state = SubscriptionState.LIVE
        self._release_ledger(subscription)
        return [message]

    def _on_closed(self, message: ClosedMessage) -> list[Output]:
        sub_id = message.subscription_id
        if sub_id in self._pending_counts:
            self._pending_counts.discard(sub_id)
            return [message]
        subscription = self._subscriptions.get(sub_id)
        if subscription is None:
            return [self._drop(reasons.UNKNOWN_SUBSCRIPTION, sub_id)]
        if subscription.state is SubscriptionState.CLOSED:
            return []  # many relays acknowledge our CLOSE with a CLOSED
        self._mark_closed(sub_id, subscription)
        return [message]

    def _on_ok(self, message: OkMessage) -> Output:
        if self._pending_publishes.pop(message.event_id, None) is None:
            return self._drop(reasons.UNEXPECTED_OK, None, message.event_id[:64])
        return message

    def _on_count(self, message: CountMessage) -> Output:
        sub_id = message.subscription_id
        if sub_id not in self._pending_counts:
            return self._drop(reasons.UNKNOWN_SUBSCRIPTION, sub_id)
        self._pending_counts.discard(sub_id)
        return message

    # -- state ------------------------------------------------------------------

    def subscription(self, sub_id: str) -> SubscriptionStatus | None:
        """A snapshot of one subscription (closed ones while still remembered)."""
        subscription = self._subscriptions.get(sub_id)
        if subscription is None:
            return None
        ledger = subscription.ledger
        return SubscriptionStatus(
            sub_id,
            subscription.filters,
            subscription.state,
            subscription.events_received,
            tuple(ledger.loads) if ledger is not None else subscription.stored_counts,
        )

    def subscription_ids(self) -> list[str]:
        """Ids of the subscriptions that are open or live."""
        return [
            sub_id
            for sub_id, subscription in self._subscriptions.items()
            if subscription.state is not SubscriptionState.CLOSED
        ]

    @property
    def pending_publishes(self) -> int:
        return len(self._pending_publishes)

    # -- helpers ----------------------------------------------------------------

    def _accept(
        self, subscription: _Subscription, message: EventMessage, parsed: Event | None = None
    ) -> Incoming:
        subscription.events_received += 1
        return Incoming(message.subscription_id, message.event, message.size, parsed)

    @staticmethod
    def _drop(reason: str, sub_id: str | None, detail: str = "") -> Dropped:
        # Counted by whoever receives the output (the relay's status), not here.
        return Dropped(reason, sub_id, detail)

    def _await_ok(self, event_id: str, now: float) -> None:
        # Re-inserting keeps the dict in send order, oldest first.
        self._pending_publishes.pop(event_id, None)
        self._pending_publishes[event_id] = now

    @staticmethod
    def _release_ledger(subscription: _Subscription) -> None:
        if subscription.ledger is not None:
            subscription.stored_counts = tuple(subscription.ledger.loads)
            subscription.ledger = None

    def _mark_closed(self, sub_id: str, subscription: _Subscription) -> None:
        subscription.state = SubscriptionState.CLOSED
        self._release_ledger(subscription)
        self._closed_order[sub_id] = None
        while len(self._closed_order) > self.closed_memory:
            forgotten, _ = self._closed_order.popitem(last=False)
            self._subscriptions.pop(forgotten, None)

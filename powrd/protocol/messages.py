"""NIP-01 messages in both directions: typed values, parsing, frame builders.

Parsing never trusts a frame: anything that is not a well-formed message raises
:class:`MalformedFrame` with a short machine-readable ``reason``. The payload of an
``EVENT`` is only checked to be a JSON object; validating the event is a later step.
Every message type can render itself back into a frame with ``to_frame()``, which the
test relays and the round-trip tests rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from powrd.protocol.event import dumps, loads
from powrd.protocol.filters import Filter, FilterError, parse_filter

MAX_SUBSCRIPTION_ID_CHARS = 64

# MalformedFrame.reason values.
NOT_JSON = "not json"
NOT_ARRAY = "not an array"
UNKNOWN_TYPE = "unknown message type"
WRONG_ARITY = "wrong number of elements"
WRONG_TYPE = "wrong element type"
BAD_FILTER = "bad filter"

_PREFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")


class MalformedFrame(ValueError):
    """A frame is not a well-formed message.

    Attributes:
        reason: one of the constants above (``not json``, ``wrong number of elements``…).
        detail: what exactly was wrong, for logs.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------- relay -> client


@dataclass(frozen=True, slots=True)
class EventMessage:
    """``["EVENT", <subscription id>, <event>]``.

    Attributes:
        event: the decoded event object, not validated yet.
        size: bytes of the event as received: exact for compact frames, an upper bound
            when the relay padded the frame with whitespace.
    """

    subscription_id: str
    event: dict[str, Any]
    size: int

    def to_frame(self) -> str:
        return event_frame(self.subscription_id, dumps(self.event))


@dataclass(frozen=True, slots=True)
class EoseMessage:
    """``["EOSE", <subscription id>]``: the stored events have all been sent."""

    subscription_id: str

    def to_frame(self) -> str:
        return eose_frame(self.subscription_id)


@dataclass(frozen=True, slots=True)
class OkMessage:
    """``["OK", <event id>, <accepted>, <message>]``: the verdict on a published event."""

    event_id: str
    accepted: bool
    message: str

    def to_frame(self) -> str:
        return ok_frame(self.event_id, self.accepted, self.message)


@dataclass(frozen=True, slots=True)
class ClosedMessage:
    """``["CLOSED", <subscription id>, <message>]``: the relay ended a subscription."""

    subscription_id: str
    message: str

    def to_frame(self) -> str:
        return closed_frame(self.subscription_id, self.message)


@dataclass(frozen=True, slots=True)
class NoticeMessage:
    """``["NOTICE", <message>]``: human-readable text from the relay."""

    message: str

    def to_frame(self) -> str:
        return notice_frame(self.message)


@dataclass(frozen=True, slots=True)
class AuthMessage:
    """``["AUTH", <challenge>]`` (NIP-42): the relay asks the client to authenticate."""

    challenge: str

    def to_frame(self) -> str:
        return auth_frame(self.challenge)


@dataclass(frozen=True, slots=True)
class CountMessage:
    """``["COUNT", <subscription id>, {"count": n}]`` (NIP-45)."""

    subscription_id: str
    count: int
    approximate: bool = False

    def to_frame(self) -> str:
        return count_frame(self.subscription_id, self.count, approximate=self.approximate)


RelayMessage = (
    EventMessage
    | EoseMessage
    | OkMessage
    | ClosedMessage
    | NoticeMessage
    | AuthMessage
    | CountMessage
)


# ---------------------------------------------------------------- client -> relay


@dataclass(frozen=True, slots=True)
class ClientReq:
    """``["REQ", <subscription id>, <filter>, …]``."""

    subscription_id: str
    filters: tuple[Filter, ...]

    def to_frame(self) -> str:
        return req(self.subscription_id, self.filters)


@dataclass(frozen=True, slots=True)
class ClientClose:
    """``["CLOSE", <subscription id>]``."""

    subscription_id: str

    def to_frame(self) -> str:
        return close(self.subscription_id)


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """``["EVENT", <event>]``: a publish; ``size`` as in :class:`EventMessage`."""

    event: dict[str, Any]
    size: int

    def to_frame(self) -> str:
        return event(dumps(self.event))


@dataclass(frozen=True, slots=True)
class ClientAuth:
    """``["AUTH", <signed kind 22242 event>]`` (NIP-42)."""

    event: dict[str, Any]
    size: int

    def to_frame(self) -> str:
        return auth(dumps(self.event))


@dataclass(frozen=True, slots=True)
class ClientCount:
    """``["COUNT", <subscription id>, <filter>, …]`` (NIP-45)."""

    subscription_id: str
    filters: tuple[Filter, ...]

    def to_frame(self) -> str:
        return count(self.subscription_id, self.filters)


ClientMessage = ClientReq | ClientClose | ClientEvent | ClientAuth | ClientCount


# ---------------------------------------------------------------- builders, relay -> client
# The local relay endpoint sends these; the relay messages above render themselves with
# them. Events are embedded as the JSON they were stored as, byte for byte.


def event_frame(sub_id: str, raw_event: str) -> str:
    """``["EVENT", sub, event]`` around an event already serialized (sent byte for byte)."""
    return f'["EVENT",{dumps(sub_id)},{raw_event}]'


def eose_frame(sub_id: str) -> str:
    return dumps(["EOSE", sub_id])


def ok_frame(event_id: str, accepted: bool, message: str) -> str:
    return dumps(["OK", event_id, accepted, message])


def closed_frame(sub_id: str, message: str) -> str:
    return dumps(["CLOSED", sub_id, message])


def notice_frame(message: str) -> str:
    return dumps(["NOTICE", message])


def auth_frame(challenge: str) -> str:
    return dumps(["AUTH", challenge])


def count_frame(sub_id: str, count: int, *, approximate: bool = False) -> str:
    body: dict[str, Any] = {"count": count}
    if approximate:
        body["approximate"] = True
    return dumps(["COUNT", sub_id, body])


# ---------------------------------------------------------------- builders, client -> relay


def req(sub_id: str, filters: Iterable[Filter]) -> str:
    """The REQ frame opening subscription ``sub_id``."""
    return _with_filters("REQ", sub_id, filters)


def close(sub_id: str) -> str:
    """The CLOSE frame ending subscription ``sub_id``."""
    return dumps(["CLOSE", _check_subscription_id(sub_id)])


def event(event_json: str) -> str:
    """The EVENT frame publishing an already serialized event, embedded byte for byte."""
    return f'["EVENT",{event_json}]'


def auth(event_json: str) -> str:
    """The AUTH frame answering a challenge with an already serialized kind 22242 event."""
    return f'["AUTH",{event_json}]'


def count(sub_id: str, filters: Iterable[Filter]) -> str:
    """The COUNT frame (NIP-45) asking how many events match ``filters``."""
    return _with_filters("COUNT", sub_id, filters)


def _with_filters(kind: str, sub_id: str, filters: Iterable[Filter]) -> str:
    wire = [f.to_json() for f in filters]
    if not wire:
        raise ValueError(f"a {kind} needs at least one filter")
    return dumps([kind, _check_subscription_id(sub_id), *wire])


def _check_subscription_id(sub_id: str) -> str:
    if not 0 < len(sub_id) <= MAX_SUBSCRIPTION_ID_CHARS:
        raise ValueError(f"subscription ids are 1 to 64 characters, got {len(sub_id)}")
    return sub_id


def machine_prefix(message: str) -> str | None:
    """The machine-readable prefix of an OK or CLOSED message, or None.

    NIP-01 messages read ``"<prefix>: <detail>"`` (``duplicate: already have this
    event``); a lone ``"blocked:"`` counts too, ``"https://…"`` does not.
    """
    head, colon, rest = message.partition(":")
    if not colon or not head or (rest and not rest.startswith(" ")):
        return None
    if not _PREFIX_CHARS.issuperset(head):
        return None
    return head


# ---------------------------------------------------------------- parsing


def byte_length(frame: str | bytes) -> int:
    """Size of a frame in UTF-8 bytes (lone surrogates count as the 3 bytes they take)."""
    if isinstance(frame, bytes):
        return len(frame)
    return len(frame.encode("utf-8", "surrogatepass"))


def parse_relay_message(frame: str | bytes) -> RelayMessage:
    """Parse a frame a relay sent.

    Raises:
        MalformedFrame: anything but a well-formed relay message.
    """
    items = _decode(frame)
    name = items[0]
    if name == "EVENT":
        expect_arity(items, 3)
        sub_id, obj = string_at(items, 1), _object(items, 2)
        return EventMessage(sub_id, obj, _embedded_size(frame, 11 + byte_length(dumps(sub_id))))
    if name == "EOSE":
        expect_arity(items, 2)
        return EoseMessage(string_at(items, 1))
    if name == "OK":
        expect_arity(items, 4)
        accepted = items[2]
        if not isinstance(accepted, bool):
            raise MalformedFrame(WRONG_TYPE, "OK element 2 is not a boolean")
        return OkMessage(string_at(items, 1), accepted, string_at(items, 3))
    if name == "CLOSED":
        expect_arity(items, 3)
        return ClosedMessage(string_at(items, 1), string_at(items, 2))
    if name == "NOTICE":
        expect_arity(items, 2)
        return NoticeMessage(string_at(items, 1))
    if name == "AUTH":
        expect_arity(items, 2)
        return AuthMessage(string_at(items, 1))
    if name == "COUNT":
        expect_arity(items, 3)
        return _count_message(string_at(items, 1), _object(items, 2))
    raise MalformedFrame(UNKNOWN_TYPE, _preview(name))


def parse_client_message(frame: str | bytes) -> ClientMessage:
    """Parse a frame a client sent (test relays and fuzzing use this).

    Raises:
        MalformedFrame: anything but a well-formed client message.
    """
    items = _decode(frame)
    name = items[0]
    if name in ("REQ", "COUNT"):
        if len(items) < 3:
            raise MalformedFrame(WRONG_ARITY, f"{name} without filters")
        build: Callable[[str, tuple[Filter, ...]], ClientMessage] = (
            ClientReq if name == "REQ" else ClientCount
        )
        return build(subscription_id_at(items), _filters(items[2:]))
    if name == "CLOSE":
        expect_arity(items, 2)
        return ClientClose(subscription_id_at(items))
    if name in ("EVENT", "AUTH"):
        expect_arity(items, 2)
        obj = _object(items, 1)
        # '["EVENT",' or '["AUTH",' before the event and ']' after it.
        size = _embedded_size(frame, len(name) + 5)
        return ClientEvent(obj, size) if name == "EVENT" else ClientAuth(obj, size)
    raise MalformedFrame(UNKNOWN_TYPE, _preview(name))


def _decode(frame: str | bytes) -> list[Any]:
    value = decode_array(frame)
    if not value:
        raise MalformedFrame(WRONG_ARITY, "empty array")
    if not isinstance(value[0], str):
        raise MalformedFrame(UNKNOWN_TYPE, "message type is not a string")
    return value


# decode_array, expect_arity, string_at, subscription_id_at and filter_from are shared
# with the NIP-77 parser (powrd.protocol.negentropy_messages), so both refuse frames
# with the same reasons.


def decode_array(frame: str | bytes) -> list[Any]:
    """The frame's JSON array, possibly empty."""
    try:
        value = loads(frame)
    except (ValueError, RecursionError):
        raise MalformedFrame(NOT_JSON) from None
    if not isinstance(value, list):
        raise MalformedFrame(NOT_ARRAY)
    return value


def expect_arity(items: list[Any], expected: int) -> None:
    if len(items) != expected:
        raise MalformedFrame(WRONG_ARITY, f"{items[0]} has {len(items)} elements, not {expected}")


def string_at(items: list[Any], index: int) -> str:
    value = items[index]
    if not isinstance(value, str):
        raise MalformedFrame(WRONG_TYPE, f"{items[0]} element {index} is not a string")
    return value


def _object(items: list[Any], index: int) -> dict[str, Any]:
    value = items[index]
    if not isinstance(value, dict):
        raise MalformedFrame(WRONG_TYPE, f"{items[0]} element {index} is not an object")
    return value


def subscription_id_at(items: list[Any]) -> str:
    sub_id = string_at(items, 1)
    if not 0 < len(sub_id) <= MAX_SUBSCRIPTION_ID_CHARS:
        raise MalformedFrame(WRONG_TYPE, f"{items[0]} subscription id is not 1 to 64 characters")
    return sub_id


def _filters(objs: list[Any]) -> tuple[Filter, ...]:
    return tuple(filter_from(obj, f"filters[{i}]") for i, obj in enumerate(objs))


def filter_from(obj: Any, where: str) -> Filter:
    """:func:`~powrd.protocol.filters.parse_filter`, failing as a malformed frame."""
    try:
        return parse_filter(obj, where=where)
    except FilterError as error:
        raise MalformedFrame(BAD_FILTER, str(error)) from None


def _count_message(sub_id: str, body: dict[str, Any]) -> CountMessage:
    number = body.get("count")
    if type(number) is not int or number < 0:
        raise MalformedFrame(WRONG_TYPE, "COUNT count is not a non-negative integer")
    approximate = body.get("approximate", False)
    if not isinstance(approximate, bool):
        raise MalformedFrame(WRONG_TYPE, "COUNT approximate is not a boolean")
    return CountMessage(sub_id, number, approximate)


def _embedded_size(frame: str | bytes, envelope_bytes: int) -> int:
    """Bytes of the object embedded last in ``frame``, given the compact envelope size.

    Subtracting the compact envelope never undercounts: whitespace or longer escapes
    in the relay's envelope only make the estimate larger.
    """
    return max(byte_length(frame) - envelope_bytes, 2)


def _preview(value: str) -> str:
    return value if len(value) <= 20 else value[:19] + "…"

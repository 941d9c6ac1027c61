"""NIP-77 frames: NEG-OPEN, NEG-MSG, NEG-CLOSE (client to relay), NEG-MSG, NEG-ERR back.

Payloads travel as lowercase hex of a negentropy message
(:mod:`powrd.protocol.negentropy`). Parsers return None for frames that are not
NIP-77 at all, so a caller can try these first and fall back to the NIP-01 parser,
and raise :class:`~powrd.protocol.messages.MalformedFrame` for NIP-77 frames that
are malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from powrd.protocol.event import dumps
from powrd.protocol.filters import Filter
from powrd.protocol.messages import (
    WRONG_TYPE,
    MalformedFrame,
    decode_array,
    expect_arity,
    filter_from,
    string_at,
    subscription_id_at,
)


@dataclass(frozen=True, slots=True)
class NegMsg:
    """``["NEG-MSG", <sub id>, <hex>]`` in either direction."""

    subscription_id: str
    payload: bytes

    def to_frame(self) -> str:
        return dumps(["NEG-MSG", self.subscription_id, self.payload.hex()])


@dataclass(frozen=True, slots=True)
class NegErr:
    """``["NEG-ERR", <sub id>, <reason>]``: the relay refused or ended the reconciliation."""

    subscription_id: str
    reason: str

    def to_frame(self) -> str:
        return dumps(["NEG-ERR", self.subscription_id, self.reason])


@dataclass(frozen=True, slots=True)
class NegOpen:
    """``["NEG-OPEN", <sub id>, <filter>, <hex>]``: a client starts a reconciliation."""

    subscription_id: str
    filter: Filter
    payload: bytes

    def to_frame(self) -> str:
        return dumps(["NEG-OPEN", self.subscription_id, self.filter.to_json(), self.payload.hex()])


@dataclass(frozen=True, slots=True)
class NegClose:
    """``["NEG-CLOSE", <sub id>]``: the client is done with the reconciliation."""

    subscription_id: str

    def to_frame(self) -> str:
        return dumps(["NEG-CLOSE", self.subscription_id])


def parse_negentropy_relay_message(frame: str | bytes) -> NegMsg | NegErr | None:
    """A NIP-77 frame a relay sent, or None when the frame is of another type.

    Raises:
        MalformedFrame: a NEG-MSG or NEG-ERR that is not well formed.
    """
    items = _decode(frame)
    if items is None or items[0] not in ("NEG-MSG", "NEG-ERR"):
        return None
    expect_arity(items, 3)
    sub_id = subscription_id_at(items)
    if items[0] == "NEG-ERR":
        return NegErr(sub_id, string_at(items, 2))
    return NegMsg(sub_id, _hex(items, 2))


def parse_negentropy_client_message(frame: str | bytes) -> NegOpen | NegMsg | NegClose | None:
    """A NIP-77 frame a client sent, or None when the frame is of another type.

    Raises:
        MalformedFrame: a NEG-OPEN, NEG-MSG or NEG-CLOSE that is not well formed.
    """
    items = _decode(frame)
    if items is None or items[0] not in ("NEG-OPEN", "NEG-MSG", "NEG-CLOSE"):
        return None
    if items[0] == "NEG-CLOSE":
        expect_arity(items, 2)
        return NegClose(subscription_id_at(items))
    if items[0] == "NEG-MSG":
        expect_arity(items, 3)
        return NegMsg(subscription_id_at(items), _hex(items, 2))
    expect_arity(items, 4)
    sub_id = subscription_id_at(items)
    if not isinstance(items[2], dict):
        raise MalformedFrame(WRONG_TYPE, "NEG-OPEN element 2 is not a filter object")
    return NegOpen(sub_id, filter_from(items[2], "NEG-OPEN filter"), _hex(items, 3))


def _decode(frame: str | bytes) -> list[Any] | None:
    value = decode_array(frame)
    if not value or not isinstance(value[0], str):
        return None
    return value


def _hex(items: list[Any], index: int) -> bytes:
    text = string_at(items, index)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise MalformedFrame(
            WRONG_TYPE, f"{items[0]} element {index} is not hex ({len(text)} characters)"
        ) from None

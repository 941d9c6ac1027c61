"""NIP-77 negentropy messages a client sends: ``NEG-OPEN``, ``NEG-MSG``, ``NEG-CLOSE``.

Parsing only; reconciling is the negentropy responder's job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from powrd.protocol.event import loads
from powrd.protocol.filters import Filter, FilterError, parse_filter
from powrd.protocol.messages import BAD_FILTER, MAX_SUBSCRIPTION_ID_CHARS, MalformedFrame

_HEX_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class NegOpen:
    """``["NEG-OPEN", <sub id>, <filter>, <initial message hex>]`` (NIP-77)."""

    sub_id: str
    filter: Filter
    message: str


@dataclass(frozen=True, slots=True)
class NegMsg:
    """``["NEG-MSG", <sub id>, <message hex>]``."""

    sub_id: str
    message: str


@dataclass(frozen=True, slots=True)
class NegClose:
    """``["NEG-CLOSE", <sub id>]``."""

    sub_id: str


NegentropyMessage = NegOpen | NegMsg | NegClose


def parse_negentropy(frame: str | bytes) -> NegentropyMessage:
    """Parse a NEG-* frame.

    Raises:
        MalformedFrame: anything but a well-formed NEG-OPEN, NEG-MSG or NEG-CLOSE.
    """
    try:
        items = loads(frame)
    except (ValueError, RecursionError):
        raise MalformedFrame("not json") from None
    if not isinstance(items, list) or not items or not isinstance(items[0], str):
        raise MalformedFrame("not an array")
    name = items[0]
    builders: dict[str, tuple[int, Callable[[list[Any]], NegentropyMessage]]] = {
        "NEG-OPEN": (4, lambda i: NegOpen(_neg_id(i), _neg_filter(i[2]), _neg_hex(i, 3))),
        "NEG-MSG": (3, lambda i: NegMsg(_neg_id(i), _neg_hex(i, 2))),
        "NEG-CLOSE": (2, lambda i: NegClose(_neg_id(i))),
    }
    if name not in builders:
        raise MalformedFrame("unknown message type", name[:20])
    arity, build = builders[name]
    if len(items) != arity:
        raise MalformedFrame("wrong number of elements", f"{name} has {len(items)}, not {arity}")
    return build(items)


def _neg_id(items: list[Any]) -> str:
    sub_id = items[1]
    if not isinstance(sub_id, str) or not 0 < len(sub_id) <= MAX_SUBSCRIPTION_ID_CHARS:
        raise MalformedFrame("wrong element type", f"{items[0]} subscription id")
    return sub_id


def _neg_filter(obj: Any) -> Filter:
    try:
        return parse_filter(obj)
    except FilterError as error:
        raise MalformedFrame(BAD_FILTER, str(error)) from None


def _neg_hex(items: list[Any], index: int) -> str:
    value = items[index]
    if not isinstance(value, str) or len(value) % 2 or not _HEX_CHARS.issuperset(value):
        raise MalformedFrame("wrong element type", f"{items[0]} message is not lowercase hex")
    return value

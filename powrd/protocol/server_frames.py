"""The frames a relay sends to its clients (the server side of NIP-01 and NIP-45).

NIP-77's NEG-MSG and NEG-ERR render themselves
(:mod:`powrd.protocol.negentropy_messages`).

Events are embedded as the JSON they were stored as, byte for byte.
"""

from __future__ import annotations

from powrd.protocol.event import dumps


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


def count_frame(sub_id: str, count: int) -> str:
    return dumps(["COUNT", sub_id, {"count": count}])


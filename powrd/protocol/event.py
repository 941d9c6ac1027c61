"""The NIP-01 event object: shape checks, canonical serialization, id.

An :class:`Event` is only ever built from a JSON object that passed :func:`parse_event`,
so every field has the right type and length. Whether its id and signature are
correct is a separate question answered by :mod:`powrd.protocol.verify`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from powrd.protocol.reasons import Rejected

HEX = frozenset("0123456789abcdef")
MAX_KIND = 65535
# JavaScript's Number.MAX_SAFE_INTEGER: relays and clients cannot round-trip larger timestamps.
MAX_TIMESTAMP = 2**53 - 1
EVENT_FIELDS = frozenset(("id", "pubkey", "created_at", "kind", "tags", "content", "sig"))


@dataclass(frozen=True, slots=True, eq=False)
class Event:
    """A well-formed NIP-01 event.

    ``tags`` is a list of lists of strings exactly as received; it must not be mutated.
    """

    id: str
    pubkey: str
    created_at: int
    kind: int
    tags: list[list[str]]
    content: str
    sig: str
    # The event's compact JSON when whoever built it already had it (nostr-sdk's output
    # when signing): to_json() hands it out instead of serializing the event again.
    serialized: str | None = field(default=None, repr=False)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and other.id == self.id and other.sig == self.sig

    def __hash__(self) -> int:
        return hash(self.id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pubkey": self.pubkey,
            "created_at": self.created_at,
            "kind": self.kind,
            "tags": self.tags,
            "content": self.content,
            "sig": self.sig,
        }

    def to_json(self) -> str:
        """Compact JSON of the whole event (the form powrd stores and sends)."""
        if self.serialized is not None:
            return self.serialized
        return dumps(self.to_dict())

    def first_tag(self, name: str) -> str | None:
        """Value of the first tag called ``name`` that has a value."""
        for tag in self.tags:
            if len(tag) > 1 and tag[0] == name:
                return tag[1]
        return None

    @property
    def d_tag(self) -> str:
        """The ``d`` identifier of an addressable event ("" when absent, as NIP-01 says)."""
        return self.first_tag("d") or ""

    @property
    def is_addressable(self) -> bool:
        return is_addressable(self.kind)

    @property
    def coordinate(self) -> str | None:
        """``<kind>:<pubkey>:<d>`` for addressable events, else None."""
        if not is_addressable(self.kind):
            return None
        return f"{self.kind}:{self.pubkey}:{self.d_tag}"


def is_addressable(kind: int) -> bool:
    return 30000 <= kind < 40000


def is_replaceable(kind: int) -> bool:
    return kind in (0, 3) or 10000 <= kind < 20000


def dumps(value: Any) -> str:
    """Compact JSON, UTF-8, no escaping beyond what RFC 8259 requires."""
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        # orjson refuses lone surrogates and integers beyond 64 bits; json.dumps does not.
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """Parse JSON; raises ``ValueError`` on bad input."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        # orjson rejects lone surrogate escapes that the JSON grammar allows.
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogatepass")
        return json.loads(text)


def canonical_serialization(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
) -> bytes:
    """The exact bytes NIP-01 hashes into the event id."""
    payload = [0, pubkey, created_at, kind, tags, content]
    try:
        return orjson.dumps(payload)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )


def compute_id(pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str) -> str:
    return hashlib.sha256(
        canonical_serialization(pubkey, created_at, kind, tags, content)
    ).hexdigest()


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and HEX.issuperset(value)


def _is_int(value: object) -> bool:
    return type(value) is int


def parse_event(obj: Any) -> Event:
    """Check the shape of a decoded JSON event object and build an :class:`Event`.

    Raises:
        Rejected: with an ``invalid: malformed event …`` reason naming the first problem.
    """
    if not isinstance(obj, dict):
        raise Rejected.malformed("not a JSON object")
    if obj.keys() != EVENT_FIELDS:
        missing = EVENT_FIELDS - obj.keys()
        if missing:
            raise Rejected.malformed(f"missing field {sorted(missing)[0]}")
        raise Rejected.malformed(f"unknown field {sorted(obj.keys() - EVENT_FIELDS)[0]}")
    event_id, pubkey, sig = obj["id"], obj["pubkey"], obj["sig"]
    if not _is_hex(event_id, 64):
        raise Rejected.malformed("id is not 64 lowercase hex characters")
    if not _is_hex(pubkey, 64):
        raise Rejected.malformed("pubkey is not 64 lowercase hex characters")
    if not _is_hex(sig, 128):
        raise Rejected.malformed("sig is not 128 lowercase hex characters")
    created_at, kind = obj["created_at"], obj["kind"]
    if not _is_int(created_at) or not 0 <= created_at <= MAX_TIMESTAMP:
        raise Rejected.malformed("created_at is not a non-negative integer")
    if not _is_int(kind) or not 0 <= kind <= MAX_KIND:
        raise Rejected.malformed("kind is not an integer from 0 to 65535")
    content = obj["content"]
    if not isinstance(content, str):
        raise Rejected.malformed("content is not a string")
    tags = obj["tags"]
    if not isinstance(tags, list):
        raise Rejected.malformed("tags is not a list")
    for tag in tags:
        if not isinstance(tag, list) or not tag:
            raise Rejected.malformed("a tag is not a non-empty list")
        for element in tag:
            if not isinstance(element, str):
                raise Rejected.malformed("a tag element is not a string")
    return Event(event_id, pubkey, created_at, kind, tags, content, sig)

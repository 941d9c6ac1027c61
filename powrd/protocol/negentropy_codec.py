"""Negentropy V1 wire primitives: varints, bounds, and a bounds-checked reader.

The wire format (protocol document ``negentropy-protocol-v1.md`` of the reference
project, used by NIP-77): a message is the version byte ``0x61`` followed by ranges,
each an upper bound, a mode varint and a payload. Varints are base-128, most
significant digit first. A bound is an encoded timestamp (0 = infinity, otherwise
1 + the offset from the previous bound's timestamp in the same message) followed by
a length-prefixed id prefix whose omitted tail counts as zero bytes.

Timestamp offsets are relative to the previous bound *of the same message and
direction*, so encoding and decoding are stateful: :class:`BoundEncoder` and
:class:`MessageReader` carry that state and are made afresh for every message.
"""

from __future__ import annotations

PROTOCOL_VERSION = 0x61
# The version byte range the protocol reserves (0x60 + version number).
_VERSION_BYTES = range(0x60, 0x70)
ID_SIZE = 32
FINGERPRINT_SIZE = 16
# The timestamp "infinity" (2**64 - 1); no item may use it.
MAX_TIMESTAMP = (1 << 64) - 1

MODE_SKIP = 0
MODE_FINGERPRINT = 1
MODE_ID_LIST = 2

# A bound: (timestamp, id prefix of 0..32 bytes). Items are (timestamp, 32-byte id).
Bound = tuple[int, bytes]
INFINITY_BOUND: Bound = (MAX_TIMESTAMP, b"")

# Every varint below 128 is one byte; precomputed because modes, prefix lengths and
# small counts are encoded thousands of times per message.
_SMALL_VARINTS = [bytes((n,)) for n in range(128)]


class NegentropyError(ValueError):
    """A negentropy message could not be decoded or used; the text says what and where."""


def encode_varint(value: int) -> bytes:
    """Encode a non-negative integer as a negentropy varint (big-endian base 128)."""
    if value < 128:
        if value < 0:
            raise NegentropyError(f"cannot encode negative varint {value}")
        return _SMALL_VARINTS[value]
    digits = [value & 0x7F]
    value >>= 7
    while value:
        digits.append((value & 0x7F) | 0x80)
        value >>= 7
    digits.reverse()
    return bytes(digits)


def bound_key(bound: Bound) -> tuple[int, bytes]:
    """The item-ordered key of a bound: its id prefix padded with zero bytes to 32."""
    timestamp, prefix = bound
    return (timestamp, prefix.ljust(ID_SIZE, b"\x00"))


class BoundEncoder:
    """Encodes the bounds of one outgoing message (timestamps are delta-coded)."""

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = 0

    def encode(self, timestamp: int, prefix: bytes) -> bytes:
        if timestamp == MAX_TIMESTAMP:
            self._last = MAX_TIMESTAMP
            head = b"\x00"
        else:
            # Wraps like the 64-bit reference would; offsets are never negative in
            # practice because bounds go out in ascending order.
            head = encode_varint(((timestamp - self._last) & MAX_TIMESTAMP) + 1)
            self._last = timestamp
        return head + _SMALL_VARINTS[len(prefix)] + prefix


class MessageReader:
    """Reads one incoming message, checking every length against what is left."""

    __slots__ = ("_data", "_last_timestamp", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0
        self._last_timestamp = 0

    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def version(self) -> int:
        """The protocol version byte; raises unless it is one the protocol reserves."""
        if not self._data:
            raise NegentropyError("empty negentropy message (no protocol version byte)")
        version = self._data[0]
        self._pos = 1
        if version not in _VERSION_BYTES:
            raise NegentropyError(
                f"invalid negentropy protocol version byte 0x{version:02x} (expected 0x60..0x6f)"
            )
        return version

    def varint(self) -> int:
        data = self._data
        pos = self._pos
        value = 0
        for _ in range(10):
            if pos >= len(data):
                raise NegentropyError(f"negentropy message truncated in a varint at byte {pos}")
            byte = data[pos]
            pos += 1
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                self._pos = pos
                if value > MAX_TIMESTAMP:
                    break
                return value
        raise NegentropyError(f"negentropy varint at byte {self._pos} exceeds 64 bits")

    def take(self, size: int) -> bytes:
        start = self._pos
        end = start + size
        if end > len(self._data):
            raise NegentropyError(
                f"negentropy message truncated: {size} bytes wanted at byte {start}, "
                f"{len(self._data) - start} left"
            )
        self._pos = end
        return self._data[start:end]

    def bound(self) -> Bound:
        encoded = self.varint()
        if encoded == 0:
            timestamp = MAX_TIMESTAMP
        else:
            # Saturates at infinity, as the 64-bit reference does on overflow.
            timestamp = min(self._last_timestamp + encoded - 1, MAX_TIMESTAMP)
        self._last_timestamp = timestamp
        length = self.varint()
        if length > ID_SIZE:
            raise NegentropyError(
                f"negentropy bound id prefix of {length} bytes (at most {ID_SIZE}) "
                f"before byte {self._pos}"
            )
        return (timestamp, self.take(length))

    def ids(self, count: int) -> list[bytes]:
        block = self.take(count * ID_SIZE)
        return [block[i : i + ID_SIZE] for i in range(0, len(block), ID_SIZE)]

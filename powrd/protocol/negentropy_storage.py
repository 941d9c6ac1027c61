"""The sealed, sorted set of (created_at, id) items one negentropy side reconciles.

Fingerprints are asked for thousands of ranges per message, so the storage keeps
prefix sums of the ids (as 256-bit little-endian integers, left unreduced: Python
integers do not overflow) and answers any range's sum with one subtraction.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate, pairwise

from powrd.protocol.negentropy_codec import (
    FINGERPRINT_SIZE,
    ID_SIZE,
    MAX_TIMESTAMP,
    Bound,
    NegentropyError,
    bound_key,
    encode_varint,
)

_MASK_256 = (1 << 256) - 1
Item = tuple[int, bytes]


def fingerprint_of(id_sum: int, count: int) -> bytes:
    """First 16 bytes of SHA-256 over (sum of ids mod 2**256, little-endian) + varint(count)."""
    digest = hashlib.sha256((id_sum & _MASK_256).to_bytes(ID_SIZE, "little"))
    digest.update(encode_varint(count))
    return digest.digest()[:FINGERPRINT_SIZE]


class StorageVector:
    """Items sorted by (created_at, id), sealed: build with :meth:`seal`.

    Indexes below are positions in that order; ranges are half-open ``[begin, end)``.
    """

    # Weak references let the relays reconciling one filter share its items meanwhile.
    __slots__ = ("__weakref__", "_ids", "_items", "_sums")

    def __init__(self, sorted_items: list[Item]) -> None:
        self._items = sorted_items
        self._ids = [item[1] for item in sorted_items]
        self._sums = list(
            accumulate((int.from_bytes(item_id, "little") for item_id in self._ids), initial=0)
        )

    @classmethod
    def seal(cls, items: Iterable[Item]) -> StorageVector:
        """Sort and check the items: ids of 32 bytes, timestamps below 2**64 - 1, no repeats.

        Raises:
            NegentropyError: an item is malformed or appears twice.
        """
        try:
            ordered = sorted(items)
        except TypeError as exc:
            raise NegentropyError(f"negentropy items must be (int, bytes) pairs: {exc}") from exc
        for position, (timestamp, item_id) in enumerate(ordered):
            if type(item_id) is not bytes or len(item_id) != ID_SIZE:
                raise NegentropyError(
                    f"negentropy item {position}: id must be {ID_SIZE} bytes, got {item_id!r}"
                )
            if not 0 <= timestamp < MAX_TIMESTAMP:
                raise NegentropyError(
                    f"negentropy item {item_id.hex()}: timestamp {timestamp} is outside "
                    f"0..{MAX_TIMESTAMP - 1}"
                )
        for earlier, later in pairwise(ordered):
            if earlier == later:
                raise NegentropyError(
                    f"negentropy item ({later[0]}, {later[1].hex()}) was inserted twice"
                )
        return cls(ordered)

    def __len__(self) -> int:
        return len(self._items)

    def item(self, index: int) -> Item:
        return self._items[index]

    def ids(self, begin: int, end: int) -> Sequence[bytes]:
        return self._ids[begin:end]

    def fingerprint(self, begin: int, end: int) -> bytes:
        return fingerprint_of(self._sums[end] - self._sums[begin], end - begin)

    def find_lower_bound(self, begin: int, end: int, bound: Bound) -> int:
        """The first index in ``[begin, end)`` whose item is not below ``bound``, else end."""
        if bound[0] == MAX_TIMESTAMP:
            return end
        return bisect_left(self._items, bound_key(bound), begin, end)

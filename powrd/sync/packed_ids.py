"""Event ids packed 32 bytes apiece, for the long lists a reconciliation finds.

A negentropy reconciliation against a relay can name hundreds of thousands of ids the
store lacks, and a backfill keeps them until each is asked for. As hex strings in a
list each id costs about 136 bytes (a 113-byte ``str`` in a 128-byte block, plus its
slot); packed into one ``bytearray`` it costs 32. The ids become hex only when a page
of them is asked for.

:class:`PackedIds` reads as a sequence of hex ids (what callers and logs expect) and is
filled and drained with raw 32-byte ids: appended at the back, taken from the front.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import overload

ID_BYTES = 32


class PackedIds(Sequence[str]):
    """Ids in order, 32 bytes each in one buffer; indexing and iteration give hex."""

    __slots__ = ("_buffer",)

    def __init__(self, ids: Iterable[bytes] = ()) -> None:
        self._buffer = bytearray()
        self.extend(ids)

    @classmethod
    def from_hex(cls, ids: Iterable[str]) -> PackedIds:
        """Pack hex ids (64 characters each).

        Raises:
            ValueError: an id is not 64 hex characters.
        """
        return cls(_id_from_hex(event_id) for event_id in ids)

    def append(self, event_id: bytes) -> None:
        """Add a raw id at the back.

        Raises:
            ValueError: ``event_id`` is not 32 bytes.
        """
        if len(event_id) != ID_BYTES:
            raise ValueError(f"an event id is {ID_BYTES} bytes, got {len(event_id)}")
        self._buffer += event_id

    def extend(self, ids: Iterable[bytes]) -> None:
        for event_id in ids:
            self.append(event_id)

    def take(self, count: int) -> list[bytes]:
        """Remove and return up to ``count`` raw ids from the front."""
        end = min(count, len(self)) * ID_BYTES
        buffer = self._buffer
        taken = [bytes(buffer[at : at + ID_BYTES]) for at in range(0, end, ID_BYTES)]
        # bytearray drops a prefix without moving the rest.
        del buffer[:end]
        return taken

    def raw(self) -> Iterator[bytes]:
        """The raw ids, front to back."""
        buffer = self._buffer
        for at in range(0, len(buffer), ID_BYTES):
            yield bytes(buffer[at : at + ID_BYTES])

    @property
    def nbytes(self) -> int:
        """The bytes the ids take."""
        return len(self._buffer)

    def __len__(self) -> int:
        return len(self._buffer) // ID_BYTES

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("PackedIds index out of range")
        at = index * ID_BYTES
        return self._buffer[at : at + ID_BYTES].hex()

    def __iter__(self) -> Iterator[str]:
        return (event_id.hex() for event_id in self.raw())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedIds):
            return self._buffer == other._buffer
        if isinstance(other, list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like list

    def __repr__(self) -> str:
        return f"PackedIds({len(self)} ids)"


def _id_from_hex(event_id: str) -> bytes:
    raw = bytes.fromhex(event_id)
    if len(raw) != ID_BYTES or len(event_id) != 2 * ID_BYTES:
        raise ValueError(f"an event id is {2 * ID_BYTES} hex characters: {event_id!r}")
    return raw

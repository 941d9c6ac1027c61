"""Packed ids round-trip: raw 32-byte ids in, the same ids out as bytes or as hex."""

from __future__ import annotations

import os

import pytest

from powrd.sync.packed_ids import ID_BYTES, PackedIds

RAW = [os.urandom(ID_BYTES) for _ in range(1201)]
HEX = [event_id.hex() for event_id in RAW]


def test_ids_read_back_as_hex_and_as_bytes_in_order() -> None:
    ids = PackedIds(RAW)
    assert len(ids) == len(RAW)
    assert list(ids) == HEX
    assert list(ids.raw()) == RAW
    assert (ids[0], ids[-1], ids[600]) == (HEX[0], HEX[-1], HEX[600])
    assert ids[10:20] == HEX[10:20]
    assert ids[::-100] == HEX[::-100]
    assert PackedIds.from_hex(HEX) == ids == HEX
    assert ids != HEX[:-1]
    with pytest.raises(IndexError):
        ids[len(RAW)]


def test_taken_from_the_front_appended_at_the_back() -> None:
    ids = PackedIds(RAW)
    first = ids.take(500)
    assert first == RAW[:500]
    ids.extend(first[:3])
    assert ids.take(10_000) == RAW[500:] + RAW[:3]
    assert len(ids) == 0 and not ids
    assert ids.take(5) == []


def test_one_id_costs_its_32_bytes() -> None:
    assert PackedIds(RAW).nbytes == ID_BYTES * len(RAW)


@pytest.mark.parametrize("bad", [b"\x00" * 31, b"\x00" * 33])
def test_a_raw_id_of_another_length_is_refused(bad: bytes) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        PackedIds([bad])


@pytest.mark.parametrize("bad", ["ab" * 31, "ab" * 33, "zz" * 32])
def test_a_hex_id_of_another_length_is_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        PackedIds.from_hex([bad])

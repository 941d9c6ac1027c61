"""How a stored event's JSON is kept: deflated, with a preset dictionary of NIP-101e text.

The raw event is most of the store (a workout record is ~1.5 KB of JSON, mostly tags
repeating the same coordinates). Deflate with a small window takes ~20 µs an event and
keeps about a third of it; the preset dictionary holds the keys and tags every NIP-101e
event repeats, which saves another seventh on small events.

A packed value is a BLOB whose first byte names its format, so the format can change
without rewriting old rows; rows written before packing are TEXT and read as they are
(SQLite keeps each value's own type whatever the column's affinity). Every read of a
raw event goes through :func:`unpack` (or the SQL function ``raw_json``).
"""

from __future__ import annotations

import zlib
from typing import Any

import apsw

DEFLATE_V1 = 1
# Frozen: rows packed with DEFLATE_V1 need exactly these bytes to be read back.
_DICTIONARY_V1 = (
    b'],["exercise","33401:","","normal"],["exercise","33401:","","warmup"],["template","33402:'
    b'"kind":1301,"tags":[["d","],["title","],["type","strength"],["start","],["end","],'
    b'["completed","true"]"kind":33402,"tags":[["d","],["title","],["type","strength"],'
    b'["exercise","33401:"kind":33401,"tags":[["d","],["title","],'
    b'["format","weight","reps","rpe","set_type"],'
    b'["format_units","kg","count","0-10","warmup|normal|drop|failure"],'
    b'["equipment","barbell"],["difficulty","intermediate"],["t","strength"]]'
    b',"content":"","sig":"'
)
# A 4 KiB window and memLevel 5: events are small, and a full-size deflate state
# (256 KiB) costs more to set up than compressing an event does.
_WBITS = -12
_MEM_LEVEL = 5
_LEVEL = 1


def pack(json_text: str) -> bytes:
    """The stored form of an event's compact JSON."""
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _WBITS, _MEM_LEVEL, zdict=_DICTIONARY_V1)
    # Lone surrogates are legal in JSON strings, and some events carry them.
    json_bytes = json_text.encode("utf-8", "surrogatepass")
    return bytes((DEFLATE_V1,)) + packer.compress(json_bytes) + packer.flush()


def unpack(stored: str | bytes) -> str:
    """An event's JSON from its stored form (TEXT rows predate packing)."""
    if isinstance(stored, str):
        return stored
    if not stored or stored[0] != DEFLATE_V1:
        raise ValueError(f"stored event in unknown format {stored[:1]!r}")
    unpacker = zlib.decompressobj(_WBITS, zdict=_DICTIONARY_V1)
    json_bytes = unpacker.decompress(memoryview(stored)[1:]) + unpacker.flush()
    return json_bytes.decode("utf-8", "surrogatepass")


def _raw_json(*values: Any) -> str:
    return unpack(values[0])


def register(conn: apsw.Connection) -> None:
    """Make ``raw_json(raw_event)`` available to this connection's SQL."""
    conn.create_scalar_function("raw_json", _raw_json, 1, deterministic=True)

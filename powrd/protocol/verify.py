"""NIP-01 id and BIP-340 signature verification.

The fast path hashes the canonical serialization with hashlib and checks the Schnorr
signature with libsecp256k1 (coincurve). The test suite checks that it always agrees
with nostr-sdk, the reference implementation (``tests/support/reference.py``).
"""

from __future__ import annotations

from functools import lru_cache

import coincurve

from powrd.protocol import reasons
from powrd.protocol.event import Event, compute_id


@lru_cache(maxsize=4096)
def _xonly_key(pubkey_hex: str) -> coincurve.PublicKeyXOnly | None:
    try:
        return coincurve.PublicKeyXOnly(bytes.fromhex(pubkey_hex))
    except ValueError:
        return None


def check_id(event: Event) -> bool:
    return (
        compute_id(event.pubkey, event.created_at, event.kind, event.tags, event.content)
        == event.id
    )


def check_signature(event: Event) -> bool:
    """BIP-340 check of ``sig`` over the 32-byte id (assumes the id was checked)."""
    key = _xonly_key(event.pubkey)
    if key is None:
        return False
    try:
        return bool(key.verify(bytes.fromhex(event.sig), bytes.fromhex(event.id)))
    except ValueError:
        return False


def verification_failure(event: Event) -> str | None:
    """The rejection reason for a bad id or signature, or None when both are valid."""
    if not check_id(event):
        return reasons.BAD_ID
    if not check_signature(event):
        return reasons.BAD_SIGNATURE
    return None

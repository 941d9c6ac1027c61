"""The NIP-11 relay information document and the plain page for browsers."""

from __future__ import annotations

from typing import Any

from powrd import __version__
from powrd.config import LocalRelayConfig

SUPPORTED_NIPS = [1, 9, 11, 40, 45]
SOFTWARE = "powrd"
NOSTR_JSON = "application/nostr+json"


def information_document(
    config: LocalRelayConfig, max_event_bytes: int, *, negentropy: bool = False
) -> dict[str, Any]:
    """What ``GET /`` with ``Accept: application/nostr+json`` returns."""
    nips = sorted([*SUPPORTED_NIPS, 77]) if negentropy else list(SUPPORTED_NIPS)
    return {
        "name": "powrd local relay",
        "description": "Your synced workout library (NIP-101e), served from this machine.",
        "software": SOFTWARE,
        "version": __version__,
        "supported_nips": nips,
        "limitation": {
            "max_message_length": config.max_message_bytes,
            "max_content_length": max_event_bytes,
            "max_event_bytes": max_event_bytes,
            "max_subscriptions": config.max_subscriptions_per_connection,
            "max_filters": config.max_filters_per_req,
            "max_limit": config.max_limit,
            "default_limit": config.default_limit,
            "max_subid_length": 64,
            "auth_required": False,
            "payment_required": False,
            "restricted_writes": False,
        },
    }


def text_page(url: str) -> str:
    """What a plain ``GET /`` (a browser) returns."""
    return (
        "powrd local relay\n\n"
        f"This is a Nostr relay (NIP-01) serving your synced workout library at {url}.\n"
        "Point a Nostr app at that URL; events it writes are stored here and sent on to\n"
        "your write relays. Ask with 'Accept: application/nostr+json' for the NIP-11\n"
        "document.\n"
    )

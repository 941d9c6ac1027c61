"""nostr-sdk's negentropy client as a test oracle: ``Relay.sync`` in dry-run mode.

``Relay.sync(filter, items, SyncOptions().dry_run())`` reconciles a local set of
(created_at, id) items against a relay and reports the ids only the local set holds
(``local``) and those only the relay holds (``remote``), without moving events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import nostr_sdk

Item = tuple[int, bytes]
SYNC_TIMEOUT = 20.0


@asynccontextmanager
async def sdk_relay(url: str) -> AsyncIterator[nostr_sdk.Relay]:
    """A connected nostr-sdk Relay for ``url``."""
    client = nostr_sdk.Client()
    relay_url = nostr_sdk.RelayUrl.parse(url)
    await client.add_relay(relay_url)
    relay = await client.relay(relay_url)
    assert relay is not None
    await relay.try_connect(timedelta(seconds=SYNC_TIMEOUT))
    try:
        yield relay
    finally:
        await client.disconnect()


async def sdk_reconcile(
    relay: nostr_sdk.Relay, filter_: nostr_sdk.Filter, items: list[Item]
) -> tuple[set[bytes], set[bytes]]:
    """nostr-sdk's dry-run sync of ``items``: (ids only local, ids only on the relay)."""
    negentropy_items = [
        nostr_sdk.NegentropyItem(
            id=nostr_sdk.EventId.from_bytes(item_id),
            timestamp=nostr_sdk.Timestamp.from_secs(created_at),
        )
        for created_at, item_id in items
    ]
    summary = await asyncio.wait_for(
        relay.sync(filter_, negentropy_items, nostr_sdk.SyncOptions().dry_run()),
        SYNC_TIMEOUT,
    )
    assert not summary.received and not summary.sent
    return {e.as_bytes() for e in summary.local}, {e.as_bytes() for e in summary.remote}

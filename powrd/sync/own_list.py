"""Publishing the identity's own NIP-65 relay list (``powrd ctl relays publish-list``).

The list is built from the configured relays and their read/write flags, signed by the
identity, and then takes the path every local event takes: the one ingest pipeline,
the outbox, each write relay's delivery. It is not a NIP-101e event, so the authoring
checks of :meth:`~powrd.sync.publisher.Publisher.publish` do not apply to it.
"""

from __future__ import annotations

import time

from powrd.config import Config
from powrd.protocol.relay_list import KIND_RELAY_LIST, relay_list_tags
from powrd.protocol.signing import sign_event
from powrd.sync.publisher import Publisher, PublishError


async def publish_relay_list(publisher: Publisher, config: Config) -> tuple[str, int]:
    """Sign, store and queue the relay list; returns (event id, relays named).

    Raises:
        PublishError: no identity, no relays configured, or the event was refused.
    """
    keys = publisher.signing_keys()
    tags = relay_list_tags((r.url, r.read, r.write) for r in config.relays)
    if not tags:
        raise PublishError("no [[relays]] configured: the list would be empty")
    now = int(time.time())
    event = sign_event(keys, KIND_RELAY_LIST, "", tags, now)
    await publisher.store_and_queue(event, now)
    return event.id, len(tags)

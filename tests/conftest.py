"""Shared fixtures: in-process relays and a small corpus (see tests/support/)."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import lru_cache
from typing import Any

import pytest
import pytest_asyncio

from tests.support.corpus import generate_corpus
from tests.support.relays import LocalRelayHandle, start_local_relay

RelayFactory = Callable[..., Awaitable[LocalRelayHandle]]

# Tests press Ctrl-C on children (`powrd ctl --watch`). A test run started in the
# background of a script inherits SIGINT ignored, and so would every child it starts
# (an ignored signal stays ignored across exec; a handled one is reset to the default).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest_asyncio.fixture
async def local_relay() -> AsyncIterator[LocalRelayHandle]:
    """A fresh, empty nostr-sdk relay on a free port, stopped after the test."""
    relay = await start_local_relay()
    try:
        yield relay
    finally:
        relay.stop()


@pytest_asyncio.fixture
async def relay_factory() -> AsyncIterator[RelayFactory]:
    """``await relay_factory(**start_local_relay kwargs)`` -> a new relay; all stopped after."""
    started: list[LocalRelayHandle] = []

    async def make(**options: Any) -> LocalRelayHandle:
        relay = await start_local_relay(**options)
        started.append(relay)
        return relay

    try:
        yield make
    finally:
        for relay in started:
            relay.stop()


@lru_cache(maxsize=1)
def _small_corpus() -> tuple[str, ...]:
    return tuple(generate_corpus(300, 5, seed=101))


@pytest.fixture
def corpus_small() -> list[str]:
    """300 events by 5 authors (``keys_for(101, 0..4)``), oldest first; a fresh list each test."""
    return list(_small_corpus())

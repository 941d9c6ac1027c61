"""Relays reconciling the same filter at once share one copy of the store's items."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from pathlib import Path

import nostr_sdk
import pytest

from powrd.protocol.event import loads
from powrd.protocol.filters import Filter
from powrd.protocol.validate import Policy
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.events import keys_for, make_event, pubkey_of

ALICE, BOB = keys_for("shared-items", 0), keys_for("shared-items", 1)
KIND = 1301


def of(author: nostr_sdk.Keys) -> Filter:
    return Filter(authors=frozenset({pubkey_of(author)}), kinds=frozenset({KIND}))


@pytest.fixture
def pipeline(tmp_path: Path) -> Iterator[Pipeline]:
    with Store(tmp_path / "powrd.db") as store:
        yield Pipeline(store, Policy())


def store_events(pipeline: Pipeline, author: nostr_sdk.Keys, count: int, start: int = 0) -> None:
    events = [make_event(author, KIND, f"w{n}", created_at=1_700_000_000 + n)
              for n in range(start, start + count)]
    result = pipeline.submit_blocking("test", [(loads(e), len(e)) for e in events])
    assert len(result.stored) == count


async def test_reconciliations_of_one_filter_at_once_share_one_read(pipeline: Pipeline) -> None:
    store_events(pipeline, ALICE, 30)
    store_events(pipeline, BOB, 5)
    shared = pipeline.reconcile_items
    first, second, bob = await asyncio.gather(
        shared.items_of(of(ALICE)), shared.items_of(of(ALICE)), shared.items_of(of(BOB))
    )
    assert first is second and (len(first), len(bob)) == (30, 5)
    assert shared.loads == 2
    # A reconciliation starting while another still holds the items gets them too.
    assert await shared.items_of(of(ALICE)) is first
    assert shared.loads == 2


async def test_items_no_reconciliation_holds_are_read_afresh(pipeline: Pipeline) -> None:
    store_events(pipeline, ALICE, 30)
    shared = pipeline.reconcile_items
    assert len(await shared.items_of(of(ALICE))) == 30
    await asyncio.sleep(0)  # the loop's callbacks of the finished read let go of it too
    gc.collect()
    store_events(pipeline, ALICE, 10, start=30)
    assert len(await shared.items_of(of(ALICE))) == 40
    assert shared.loads == 2


async def test_one_reconciliation_giving_up_does_not_stop_the_read_for_the_others(
    pipeline: Pipeline,
) -> None:
    store_events(pipeline, ALICE, 30)
    shared = pipeline.reconcile_items
    given_up = asyncio.create_task(shared.items_of(of(ALICE)))
    waiting = asyncio.create_task(shared.items_of(of(ALICE)))
    await asyncio.sleep(0)  # both are waiting for the one read
    given_up.cancel()
    assert len(await waiting) == 30
    assert given_up.cancelled() and shared.loads == 1

"""The shared byte budget of received events: readers wait in turn, bytes come back."""

from __future__ import annotations

import asyncio

import pytest

from powrd.sync.inflow import Inflow


async def settle() -> None:
    """Let every task that can run, run (nothing here waits on anything else)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_bytes_within_the_budget_are_taken_at_once() -> None:
    inflow = Inflow(100)
    await inflow.take(60)
    await inflow.take(39)
    assert inflow.used == 99
    inflow.give_back(99)
    assert inflow.used == 0


async def test_a_reader_waits_while_the_budget_is_spent_and_goes_on_when_bytes_come_back() -> None:
    inflow = Inflow(100)
    await inflow.take(100)
    reader = asyncio.create_task(inflow.take(10))
    await settle()
    assert not reader.done()
    inflow.give_back(50)
    await settle()
    assert reader.done() and inflow.used == 60


async def test_waiting_readers_go_in_arrival_order() -> None:
    inflow = Inflow(100)
    await inflow.take(100)
    order: list[str] = []

    async def reader(name: str, size: int) -> None:
        await inflow.take(size)
        order.append(name)

    tasks = [asyncio.create_task(reader(name, 30)) for name in "abcd"]
    await settle()
    inflow.give_back(40)  # room for a (60 + 30 = 90); b then fits too (120 >= 100 stops c)
    await settle()
    assert order == ["a", "b"]
    # Small enough to fit, but it must not overtake the readers already waiting.
    late = asyncio.create_task(reader("late", 1))
    await settle()
    assert order == ["a", "b"]
    inflow.give_back(120)
    await settle()
    assert order == ["a", "b", "c", "d", "late"]
    await asyncio.gather(*tasks, late)


async def test_an_event_larger_than_the_budget_still_gets_in() -> None:
    inflow = Inflow(100)
    await inflow.take(1000)
    assert inflow.used == 1000
    blocked = asyncio.create_task(inflow.take(1))
    await settle()
    assert not blocked.done()
    inflow.give_back(1000)
    await settle()
    assert blocked.done()


@pytest.mark.parametrize("woken", [False, True], ids=["while-waiting", "once-woken"])
async def test_a_cancelled_reader_passes_its_turn_on(woken: bool) -> None:
    inflow = Inflow(100)
    await inflow.take(100)
    first = asyncio.create_task(inflow.take(10))
    second = asyncio.create_task(inflow.take(10))
    await settle()
    if woken:
        inflow.give_back(100)  # wakes first ...
        first.cancel()  # ... which is cancelled before it takes its bytes
    else:
        first.cancel()
        await settle()
        inflow.give_back(100)
    await settle()
    assert first.cancelled() and second.done() and inflow.used == 10

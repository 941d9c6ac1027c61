"""The per-client frame queue: replies wait for room, live events never wait."""

from __future__ import annotations

import asyncio

from powrd.serve.connection import Outgoing


async def test_a_large_reply_does_not_count_against_live_events() -> None:
    queue = Outgoing(max_bytes=1000)
    await queue.put_all(["r" * 100] * 50)  # 5,000 bytes of stored events at once
    assert queue.offer("l" * 900)
    assert not queue.offer("l" * 200)  # live events over the bound: the client is too slow
    frames = [await queue.get() for _ in range(51)]
    assert frames[:50] == ["r" * 100] * 50 and frames[50] == "l" * 900  # order kept
    assert queue.bytes == queue.live_bytes == 0 and queue.offer("l" * 1000)


async def test_replies_wait_until_the_queue_is_half_empty() -> None:
    queue = Outgoing(max_bytes=1000)
    await queue.put_all(["r" * 600])
    waiting = asyncio.ensure_future(queue.put_all(["next"]))
    await asyncio.sleep(0)  # let it run up to its wait
    assert not waiting.done()
    assert await queue.get() == "r" * 600
    await asyncio.wait_for(waiting, 5)
    assert await queue.get() == "next"

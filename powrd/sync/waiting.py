"""Waiting for a wake-up with a deadline, without swallowing cancellation."""

from __future__ import annotations

import asyncio
import contextlib


async def wait_until_woken(event: asyncio.Event, within: float | None) -> None:
    """Return when ``event`` is set or after ``within`` seconds (None: no deadline).

    On Python 3.11 ``asyncio.wait_for`` can swallow a cancellation that arrives as the
    inner wait finishes, leaving a task that never stops; ``asyncio.timeout`` does not.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await event.wait()

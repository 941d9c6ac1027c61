"""How hard powrd tries relays it learned from events (hints, later NIP-65 lists).

A learned relay URL is chosen by whoever published the event, so each one costs the
daemon connections at that author's discretion. :class:`LearnedRelays` bounds that:

- at most ``max_concurrent`` connections to learned relays at a time;
- at most ``max_attempts_per_day`` connection attempts per URL in any 24 hours;
- after a failed connection, the URL is not tried again before the fetch backoff
  (exponential, ``retry_min_seconds`` doubling up to ``retry_max_seconds``) has passed.

The address check itself is :mod:`powrd.sync.address`; this module only counts.
Memory is bounded: at most :data:`MAX_TRACKED_URLS` URLs are remembered, the ones
with the oldest activity forgotten first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from powrd.sync import backoff

DAY_SECONDS = 86_400.0
DEFAULT_MAX_ATTEMPTS_PER_DAY = 24
MAX_TRACKED_URLS = 10_000


@dataclass(slots=True)
class _History:
    attempts: deque[float] = field(default_factory=deque)
    failures: int = 0
    not_before: float = 0.0


class LearnedRelays:
    """Admission control for connections to learned relay URLs.

    Args:
        max_concurrent: connections open at once (``[resolver] max_extra_relays``).
        retry_min_seconds: backoff after the first failure.
        retry_max_seconds: the backoff's cap.
        max_attempts_per_day: attempts per URL in any 24 hours.
        clock: unix time (tests inject one).
    """

    def __init__(
        self,
        max_concurrent: int,
        retry_min_seconds: float,
        retry_max_seconds: float,
        *,
        max_attempts_per_day: int = DEFAULT_MAX_ATTEMPTS_PER_DAY,
        clock: Callable[[], float],
    ) -> None:
        self.max_concurrent = max_concurrent
        self.retry_min_seconds = retry_min_seconds
        self.retry_max_seconds = retry_max_seconds
        self.max_attempts_per_day = max_attempts_per_day
        self.clock = clock
        self.open = 0
        self._slots = asyncio.Semaphore(max(1, max_concurrent))
        self._history: OrderedDict[str, _History] = OrderedDict()

    def deferred(self, url: str) -> str | None:
        """Why ``url`` may not be tried now, or None when it may."""
        if self.max_concurrent < 1:
            return "learned relays are disabled (max_extra_relays = 0)"
        history = self._history.get(url)
        if history is None:
            return None
        now = self.clock()
        while history.attempts and history.attempts[0] <= now - DAY_SECONDS:
            history.attempts.popleft()
        if now < history.not_before:
            return f"failed to connect; next try in {history.not_before - now:.0f} s"
        if len(history.attempts) >= self.max_attempts_per_day:
            return f"{self.max_attempts_per_day} attempts in the last 24 hours"
        return None

    @contextlib.asynccontextmanager
    async def attempt(self, url: str) -> AsyncIterator[None]:
        """Hold one of the ``max_concurrent`` slots while connecting to ``url``.

        The attempt is counted when the slot is granted. Call :meth:`failed` or
        :meth:`succeeded` inside the block.
        """
        async with self._slots:
            history = self._remember(url)
            history.attempts.append(self.clock())
            self.open += 1
            try:
                yield
            finally:
                self.open -= 1

    def failed(self, url: str) -> None:
        """A connection failed: hold ``url`` back for the next backoff delay."""
        history = self._remember(url)
        history.failures += 1
        delay = backoff.delay(history.failures, self.retry_min_seconds, self.retry_max_seconds)
        history.not_before = self.clock() + delay

    def succeeded(self, url: str) -> None:
        history = self._remember(url)
        history.failures = 0
        history.not_before = 0.0

    def _remember(self, url: str) -> _History:
        history = self._history.pop(url, None) or _History()
        self._history[url] = history  # most recent last
        while len(self._history) > MAX_TRACKED_URLS:
            self._history.popitem(last=False)
        return history

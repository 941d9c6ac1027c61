"""Backoff delays, computed by tenacity's exponential-with-jitter strategy.

Reconnects retry through tenacity directly; persistent retries (outbox deliveries, fetch
queue entries) store their next attempt time, computed here with the same strategy.
"""

from __future__ import annotations

from tenacity import RetryCallState, wait_exponential_jitter


def strategy(minimum: float, maximum: float) -> wait_exponential_jitter:
    """Exponential from ``minimum``, doubling per attempt, plus up to ``minimum`` of jitter."""
    return wait_exponential_jitter(multiplier=minimum, max=maximum, jitter=minimum)


def delay(attempt: int, minimum: float, maximum: float) -> float:
    """Seconds to wait after the ``attempt``-th consecutive failure (1-based)."""
    state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempt)
    return float(strategy(minimum, maximum)(state))

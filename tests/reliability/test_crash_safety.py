"""Crash safety: SIGKILL `powrd run` at random moments while it ingests and publishes.

See tests/reliability/crash_harness.py for what each round checks; the soak variant
is tests/soak/crash_soak.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.reliability.crash_harness import CrashHarness

ROUNDS = 20


async def test_random_kills_lose_nothing_and_leave_a_consistent_store(local_relay, tmp_path: Path) -> None:
    harness = CrashHarness(tmp_path, local_relay, rounds=ROUNDS, seed=9001)
    report = await harness.run()
    print(report.summary())
    assert len(report.rounds) == ROUNDS
    assert report.publishes_acked > 0
    assert report.phases["ingesting"] >= 1  # the kills did land in the middle of a backfill

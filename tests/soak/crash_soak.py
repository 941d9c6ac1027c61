"""Soak: hundreds of SIGKILL/restart rounds of `powrd run` (see crash_harness.py).

    python tests/soak/crash_soak.py --rounds 200

Prints the number of rounds survived and what each kill interrupted; exits non-zero
(with the failed check) on the first round that loses or corrupts anything.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.reliability.crash_harness import CrashHarness
from tests.support.relays import start_local_relay


async def soak(rounds: int, seed: int, events_per_round: int, max_kill_delay: float) -> int:
    relay = await start_local_relay()
    started = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="powrd-crash-soak-") as directory:
            harness = CrashHarness(
                Path(directory), relay, rounds=rounds, seed=seed,
                events_per_round=events_per_round, max_kill_delay=max_kill_delay,
            )
            report = await harness.run()
    finally:
        relay.stop()
    print(f"crash soak: {report.summary()}; {time.monotonic() - started:.0f} s")
    return len(report.rounds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--seed", type=int, default=4242)
    parser.add_argument("--events-per-round", type=int, default=60)
    parser.add_argument("--max-kill-delay", type=float, default=0.8)
    args = parser.parse_args()
    survived = asyncio.run(soak(args.rounds, args.seed, args.events_per_round, args.max_kill_delay))
    print(f"rounds survived: {survived}")
    return 0 if survived == args.rounds else 1


if __name__ == "__main__":
    sys.exit(main())

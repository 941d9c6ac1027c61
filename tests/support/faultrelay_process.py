"""A :class:`~tests.support.faultrelay.FaultRelay` in a process of its own.

A flooding relay must not share a CPU-bound interpreter with what measures the daemon:
run in the test process, its sends would hold the GIL while the test times ``status``.
As a separate process it competes for the machine the way a remote relay's traffic does.

Run as ``python -m tests.support.faultrelay_process EVENTS BEHAVIOUR [--compression]``
(EVENTS: a file of events, one JSON object a line; BEHAVIOUR: :class:`Behaviour` fields
as a JSON object). It prints its URL on one line and serves until its stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.daemon_process import REPO_ROOT, child_environment
from tests.support.faultrelay import Behaviour, FaultRelay


@contextmanager
def relay_process(
    events: Sequence[str], behaviour: Behaviour, tmp_path: Path, *, compression: bool = False
) -> Iterator[str]:
    """Start the relay process; yields its ``ws://`` URL; stops it on exit."""
    events_path = tmp_path / "relay-events.jsonl"
    events_path.write_text("".join(f"{event}\n" for event in events))
    command = [
        sys.executable, "-m", "tests.support.faultrelay_process",
        str(events_path), json.dumps(dataclasses.asdict(behaviour)),
    ]
    if compression:
        command.append("--compression")
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=child_environment(), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("ws://"):
            raise AssertionError(f"fault relay process did not start (exit {process.poll()})")
        yield url
    finally:
        assert process.stdin is not None
        process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def _serve(events: list[str], behaviour: Behaviour, compression: bool) -> None:
    async with FaultRelay(events, behaviour, compression=compression) as relay:
        print(relay.url, flush=True)
        # Serve until the parent closes our stdin (or dies, which closes it too).
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("events", type=Path)
    parser.add_argument("behaviour")
    parser.add_argument("--compression", action="store_true")
    args = parser.parse_args(argv)
    behaviour = Behaviour(**json.loads(args.behaviour))
    asyncio.run(_serve(args.events.read_text().splitlines(), behaviour, args.compression))


if __name__ == "__main__":
    main()

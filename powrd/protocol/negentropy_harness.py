"""The negentropy reference test suite's line protocol on stdin/stdout.

``python -m powrd.protocol.negentropy_harness`` lets the reference project's
cross-language fuzzer (``test/fuzz.pl``) drive powrd's implementation. Input lines:
``item,<created_at>,<64 hex id>`` (before ``seal``), ``seal``, ``initiate`` (this side
is the client), ``msg,<hex>``. Output lines: ``msg,<hex>``, and on the client side
``have,<hex id>``, ``need,<hex id>`` and ``done``. The environment variable
``FRAMESIZELIMIT`` sets the frame size limit (default 0, none).

This is a test adapter: it reads stdin and writes stdout, unlike the rest of
``powrd.protocol``, and nothing in the daemon imports it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TextIO

from powrd.protocol.negentropy import (
    NegentropyClient,
    NegentropyError,
    NegentropyServer,
    StorageVector,
)


class HarnessError(ValueError):
    """A line of harness input made no sense."""


class Harness:
    """The state the line protocol drives: items, then one client or server."""

    def __init__(self, frame_size_limit: int) -> None:
        self._frame_size_limit = frame_size_limit
        self._items: list[tuple[int, bytes]] = []
        self._storage: StorageVector | None = None
        self._client: NegentropyClient | None = None
        self._server: NegentropyServer | None = None

    def handle(self, line: str) -> list[str]:
        """The output lines for one input line."""
        command, _, rest = line.strip().partition(",")
        if command == "item":
            created_at, _, hex_id = rest.partition(",")
            if self._storage is not None:
                raise HarnessError("item after seal")
            self._items.append((int(created_at), bytes.fromhex(hex_id.strip())))
            return []
        if command == "seal":
            self._storage = StorageVector.seal(self._items)
            self._items = []
            return []
        storage = self._sealed()
        if command == "initiate":
            self._client = NegentropyClient(storage, self._frame_size_limit)
            return [f"msg,{self._checked(self._client.initiate()).hex()}"]
        if command == "msg":
            return self._message(bytes.fromhex(rest.strip()))
        raise HarnessError(f"unknown harness command {command!r}")

    def _message(self, message: bytes) -> list[str]:
        if self._client is None:
            if self._server is None:
                self._server = NegentropyServer(self._sealed(), self._frame_size_limit)
            return [f"msg,{self._checked(self._server.reconcile(message)).hex()}"]
        step = self._client.reconcile(message)
        lines = [f"have,{item_id.hex()}" for item_id in step.have]
        lines += [f"need,{item_id.hex()}" for item_id in step.need]
        if step.message is None:
            lines.append("done")
        else:
            lines.append(f"msg,{self._checked(step.message).hex()}")
        return lines

    def _sealed(self) -> StorageVector:
        if self._storage is None:
            raise HarnessError("seal before initiate or msg")
        return self._storage

    def _checked(self, message: bytes) -> bytes:
        limit = self._frame_size_limit
        if limit and len(message) > limit:
            raise HarnessError(f"message of {len(message)} bytes exceeds frame limit {limit}")
        return message


def run(lines: Iterable[str], out: TextIO, frame_size_limit: int) -> None:
    """Answer every input line, flushing after each so a driving process never waits."""
    harness = Harness(frame_size_limit)
    for line in lines:
        if not line.strip():
            continue
        replies = harness.handle(line)
        if replies:
            out.write("".join(reply + "\n" for reply in replies))
            out.flush()


def main() -> int:
    limit_text = os.environ.get("FRAMESIZELIMIT", "0") or "0"
    try:
        run(sys.stdin, sys.stdout, int(limit_text))
    except (HarnessError, NegentropyError, ValueError) as exc:
        print(f"negentropy harness: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

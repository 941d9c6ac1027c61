"""Running a real :class:`~powrd.service.daemon.Daemon` inside the test's event loop.

For tests of the sync engine, resolver and publisher: the same object `powrd run`
drives, with a config written for the test (real SQLite file, real Unix socket, real
relays). Subprocess-level behaviour (signals, exit codes, sd_notify) is tested with
`python -m powrd run` in tests/service/.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from powrd.config import load_config
from powrd.protocol.event import loads
from powrd.service.daemon import Daemon
from powrd.store import queries


def write_config(
    directory: Path,
    *,
    relays: Sequence[str | tuple[str, bool, bool]] = (),
    authors: Sequence[str] = (),
    kinds: Sequence[int] = (33401, 33402, 1301),
    extra: str = "",
    secret_key_file: Path | None = None,
    allow_private_relays: bool = True,
    outbox: bool = False,
) -> Path:
    """Write a fast-moving test config (short backoff and timeouts) and return its path.

    Relay hints may point at loopback relays (``allow_private_relays``) unless a test
    says otherwise: every relay in the tests is on 127.0.0.1. NIP-65 discovery is off
    unless asked for (``outbox``), so a test sees only the subscriptions it set up.
    """
    lines = [
        "[store]", 'path = "powrd.db"',
        "[control]", 'socket = "powrd.sock"',
        "[logging]", 'level = "warning"',
        "[sync]",
        f"authors = {list(authors)!r}".replace("'", '"'),
        f"kinds = {list(kinds)!r}",
        "reconnect_min_seconds = 0.2",
        "reconnect_max_seconds = 2.0",
        "min_reconnect_interval_seconds = 0.2",
        "eose_timeout_seconds = 5.0",
        f"allow_private_relays = {str(allow_private_relays).lower()}",
        f"outbox = {str(outbox).lower()}",
        "[resolver]", "retry_min_seconds = 0.2", "retry_max_seconds = 2.0", "fetch_timeout_seconds = 5.0",
        "[publisher]", "retry_min_seconds = 0.2", "retry_max_seconds = 2.0", "ok_timeout_seconds = 5.0",
    ]
    if "[local_relay]" not in extra:
        # Any free port: test daemons never take the default 4869 (or each other's).
        lines += ["[local_relay]", 'listen = "127.0.0.1:0"']
    if secret_key_file is not None:
        lines += ["[identity]", f'secret_key_file = "{secret_key_file}"']
    text = "\n".join(lines) + "\n" + extra + "\n"
    for relay in relays:
        url, read, write = (relay, True, True) if isinstance(relay, str) else relay
        text += f'[[relays]]\nurl = "{url}"\nread = {str(read).lower()}\nwrite = {str(write).lower()}\n'
    path = directory / "powrd.toml"
    path.write_text(text)
    return path


@asynccontextmanager
async def running_daemon(config_path: Path, environ: dict[str, str] | None = None) -> AsyncIterator[Daemon]:
    daemon = Daemon(load_config(config_path, environ or {}), environ or {})
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


async def wait_for(
    condition: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.02, what: str = ""  # noqa: ASYNC109
) -> Any:
    """Poll ``condition`` (a function or a coroutine function) until it returns something
    truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(interval)


def stored_ids(daemon: Daemon) -> set[str]:
    """Ids of the current events in the daemon's store."""
    assert daemon.store is not None
    return {loads(raw)["id"] for raw in queries.iter_raw_events(daemon.store.reader())}

"""sd_notify against real datagram sockets bound by the tests."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from powrd.service.notify import Notifier, watchdog_interval, watchdog_loop

TIMEOUT = 5.0


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket standing in for systemd, and the NOTIFY_SOCKET naming it."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(os.fspath(path))
        sock.settimeout(TIMEOUT)
        yield sock, os.fspath(path)


@pytest.fixture
def abstract_manager() -> Iterator[tuple[socket.socket, str]]:
    name = f"powrd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(TIMEOUT)
        yield sock, "@" + name


def test_state_messages(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": address})
    assert notifier.enabled
    assert notifier.ready()
    assert sock.recv(4096) == b"READY=1"
    assert notifier.status("syncing 3 relays\nsecond line")
    assert sock.recv(4096) == b"STATUS=syncing 3 relays second line"
    assert notifier.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert notifier.ready(status="ready")
    assert sock.recv(4096) == b"READY=1\nSTATUS=ready"
    assert notifier.notify(ERRNO=5, BUSERROR=True)
    assert sock.recv(4096) == b"ERRNO=5\nBUSERROR=1"
    notifier.close()


def test_reloading_carries_a_monotonic_timestamp(manager: tuple[socket.socket, str]) -> None:
    sock, address = manager
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier(address).reloading()
    fields = dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())
    assert fields["RELOADING"] == "1"
    assert before <= int(fields["MONOTONIC_USEC"]) <= before + 60_000_000


def test_abstract_socket_name(abstract_manager: tuple[socket.socket, str]) -> None:
    sock, address = abstract_manager
    assert address.startswith("@")
    assert Notifier.from_environ({"NOTIFY_SOCKET": address}).ready()
    assert sock.recv(4096) == b"READY=1"


def test_unset_notify_socket_is_a_no_op() -> None:
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert not notifier.watchdog()
    assert not Notifier.from_environ({"NOTIFY_SOCKET": ""}).enabled


def test_unsupported_address_disables_notifications() -> None:
    with capture_logs() as logs:
        notifier = Notifier("relative/path.sock")
    assert not notifier.enabled
    assert not notifier.ready()
    assert [entry["event"] for entry in logs] == ["notify socket unsupported"]


def test_send_failure_never_raises_and_is_logged_once(tmp_path: Path) -> None:
    notifier = Notifier(os.fspath(tmp_path / "nobody-listens.sock"))
    with capture_logs() as logs:
        assert not notifier.ready()
        assert not notifier.watchdog()
        assert not notifier.stopping()
    assert [entry["event"] for entry in logs] == ["notify failed"]


def test_manager_appearing_later_is_reached(tmp_path: Path) -> None:
    path = tmp_path / "late.sock"
    notifier = Notifier(os.fspath(path))
    assert not notifier.status("starting")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(os.fspath(path))
        sock.settimeout(TIMEOUT)
        assert notifier.ready()
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": ""}, 15.0),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "me"}, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert watchdog_interval(environ) == expected


class PingRecorder:
    """Receives datagrams in a thread and notes when each arrived."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.arrivals: list[float] = []
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        sock.settimeout(0.05)

    def __enter__(self) -> PingRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                payload = self.sock.recv(4096)
            except TimeoutError:
                continue
            if payload == b"WATCHDOG=1":
                with self.changed:
                    self.arrivals.append(time.monotonic())
                    self.changed.notify_all()

    def wait_for(self, count: int) -> list[float]:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self.arrivals) >= count, TIMEOUT), (
                f"only {len(self.arrivals)} pings arrived"
            )
            return list(self.arrivals)


async def test_watchdog_loop_pings_at_roughly_the_interval(
    manager: tuple[socket.socket, str],
) -> None:
    sock, address = manager
    interval = 0.05
    with PingRecorder(sock) as recorder:
        started = time.monotonic()
        task = asyncio.create_task(watchdog_loop(Notifier(address), interval))
        try:
            arrivals = await asyncio.to_thread(recorder.wait_for, 6)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    # Six pings are five intervals apart; sleeping never returns early, so the lower
    # bound is safe. The upper bound only has to catch a loop that does not sleep at
    # all or sleeps far too long, and is generous for a loaded machine.
    assert arrivals[5] - arrivals[0] >= 5 * interval * 0.9
    assert arrivals[5] - started < TIMEOUT


async def test_watchdog_pings_stop_while_the_event_loop_is_stuck(
    manager: tuple[socket.socket, str],
) -> None:
    sock, address = manager
    stuck_for = 0.4
    with PingRecorder(sock) as recorder:
        task = asyncio.create_task(watchdog_loop(Notifier(address), 0.02))
        try:
            await asyncio.to_thread(recorder.wait_for, 2)
            time.sleep(stuck_for)  # noqa: ASYNC251 -- deliberately hang the event loop
            count = len(recorder.arrivals)
            arrivals = await asyncio.to_thread(recorder.wait_for, count + 2)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    assert max(gaps) >= stuck_for * 0.9


async def test_watchdog_loop_rejects_a_non_positive_interval() -> None:
    with pytest.raises(ValueError):
        await watchdog_loop(Notifier(None), 0)

"""systemd service notification (``sd_notify``) without libsystemd.

The protocol is one datagram per notification on the ``AF_UNIX`` socket named by
``NOTIFY_SOCKET``, carrying newline-separated ``KEY=value`` assignments. A name starting
with ``@`` is in the abstract namespace. When ``NOTIFY_SOCKET`` is unset (not run by
systemd, or ``Type=`` is not ``notify``) every method is a no-op.

Notifications are best-effort: a failed send is logged once per :class:`Notifier` and
otherwise ignored, because the daemon's work must not depend on the service manager.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Mapping

import structlog

log = structlog.get_logger(__name__)


class Notifier:
    """Sends state notifications to the service manager.

    Args:
        address: The ``NOTIFY_SOCKET`` value (a path, or ``@name`` for an abstract
            socket), or None to disable notifications.
    """

    def __init__(self, address: str | None) -> None:
        self.address = address or None
        self._target = _socket_address(self.address) if self.address else None
        if self.address and self._target is None:
            log.warning("notify socket unsupported", address=self.address)
        self._sock: socket.socket | None = None
        self._failure_logged = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Notifier:
        """A notifier for the socket named by ``environ["NOTIFY_SOCKET"]``, if any."""
        return cls(environ.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """True when notifications are actually sent somewhere."""
        return self._target is not None

    def notify(self, **fields: str | int) -> bool:
        """Send one notification made of ``KEY=value`` fields, e.g. ``READY=1``.

        Newlines in values are replaced by spaces (they would split the assignment);
        booleans are sent as 1 or 0.

        Returns:
            True if the datagram was sent; False when disabled or on failure.
        """
        if self._target is None or not fields:
            return False
        payload = "\n".join(f"{key}={_field_value(value)}" for key, value in fields.items())
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never block the event loop on a manager that is not reading.
                self._sock.setblocking(False)
            self._sock.sendto(payload.encode(), self._target)
        except OSError as exc:
            if not self._failure_logged:
                self._failure_logged = True
                log.warning("notify failed", address=self.address, error=str(exc))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell the manager start-up is complete (``READY=1``), optionally with a status."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """Set the free-form status line shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def watchdog(self) -> bool:
        """Keep-alive ping for ``WatchdogSec=`` (``WATCHDOG=1``)."""
        return self.notify(WATCHDOG=1)

    def reloading(self) -> bool:
        """Announce a configuration reload; send :meth:`ready` when it is done."""
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING=1, MONOTONIC_USEC=monotonic_usec)

    def stopping(self) -> bool:
        """Announce that shutdown has begun (``STOPPING=1``)."""
        return self.notify(STOPPING=1)

    def close(self) -> None:
        """Release the socket (a later notification opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _field_value(value: str | int) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value).replace("\n", " ")


def _socket_address(address: str) -> str | bytes | None:
    if address.startswith("@"):
        return b"\0" + address[1:].encode()
    if address.startswith("/"):
        return address
    return None  # e.g. "vsock:…", which only VMs use


def watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between watchdog pings: half of ``WATCHDOG_USEC``, or None if not asked.

    ``WATCHDOG_PID``, when set, names the process the watchdog is meant for; any other
    process (a child that inherited the environment) must not ping.
    """
    raw_usec = environ.get("WATCHDOG_USEC")
    if not raw_usec:
        return None
    raw_pid = environ.get("WATCHDOG_PID")
    try:
        usec = int(raw_usec)
        if raw_pid and int(raw_pid) != os.getpid():
            return None
    except ValueError:
        log.warning("watchdog environment invalid", usec=raw_usec, pid=raw_pid)
        return None
    if usec <= 0:
        return None
    return usec / 2_000_000


async def watchdog_loop(notifier: Notifier, interval: float) -> None:
    """Ping the watchdog every ``interval`` seconds until cancelled.

    The pings come from the event loop itself, so a loop that is stuck stops them and
    systemd restarts the service, which is the point of the watchdog.
    """
    if interval <= 0:
        raise ValueError("watchdog interval must be positive")
    while True:
        notifier.watchdog()
        await asyncio.sleep(interval)

"""Process hardening done at start-up: no core dumps, no ptrace by same-user processes.

The daemon holds the user's secret key in memory. A core file of the process held the
raw 32-byte key (twice), readable by anyone who can read the dump directory, and
``/proc/<pid>/mem`` is open to every process of the same user. On Linux,
``prctl(PR_SET_DUMPABLE, 0)`` stops both: no core file is written, and only root can
attach to or read the process's memory. The soft and hard core-size limits go to 0 as
well, so a later ``setuid``-style change back to dumpable still writes nothing.
The systemd unit sets ``LimitCORE=0`` for the same reason.
"""

from __future__ import annotations

import ctypes
import resource
import sys

import structlog

log = structlog.get_logger("powrd.service")

PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4


def _prctl(option: int, value: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.restype = ctypes.c_int
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    result = int(prctl(option, value, 0, 0, 0))
    if result < 0:
        raise OSError(ctypes.get_errno(), "prctl failed")
    return result


def is_dumpable() -> bool | None:
    """Whether this process may dump core (None off Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    return _prctl(PR_GET_DUMPABLE, 0) != 0


def disable_core_dumps() -> None:
    """No core files, and no memory access by other processes of the same user."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError) as error:
        log.warning("cannot set the core file size limit to 0", reason=str(error))
    if not sys.platform.startswith("linux"):
        return
    try:
        _prctl(PR_SET_DUMPABLE, 0)
    except (OSError, AttributeError) as error:
        log.warning("cannot make the process non-dumpable", reason=str(error))

"""The daemon's memory: garbage-collector settings, and the figures ``status`` reports.

Garbage collection in a process that runs for days under load:

What is loaded at start-up (modules, config, keys) lives as long as the process, yet
CPython's full collections traverse all of it: about 50,000 objects, 30 ms a pass on a
small machine, during which the event loop and the control socket stand still. Under a
relay flood that came back every half second. Freezing the start-up heap takes it out
of every later collection; a larger first-generation threshold makes the young
collections, which cost the same per object, ten times rarer.
"""

from __future__ import annotations

import gc
import resource
import sys
from pathlib import Path
from typing import Any

from powrd.store.database import sqlite_memory

# Allocations (net of frees) between young collections; CPython's default is 700.
YOUNG_THRESHOLD = 5_000


def settle_after_startup() -> None:
    """Collect once, then keep everything alive now out of later collections."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)


def usage(seen_ids: int) -> dict[str, Any]:
    """Resident memory now and at its peak, SQLite's share, and the seen-id count."""
    rss, peak = _resident_bytes()
    sqlite_now, sqlite_peak = sqlite_memory()
    return {
        "rss_bytes": rss,
        "peak_rss_bytes": peak,
        "sqlite_bytes": sqlite_now,
        "sqlite_peak_bytes": sqlite_peak,
        "seen_ids": seen_ids,
    }


def _resident_bytes() -> tuple[int | None, int]:
    try:
        fields = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
        return _kib(fields["VmRSS"]), _kib(fields["VmHWM"])
    except (OSError, KeyError, ValueError):
        # No procfs: only the peak is known (ru_maxrss is KiB on Linux, bytes on macOS).
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return None, peak if sys.platform == "darwin" else peak * 1024


def _kib(field: str) -> int:
    return int(field.split(maxsplit=1)[0]) * 1024

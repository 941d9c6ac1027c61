"""The status view's backfill lines and the relays table's BACKFILL column."""

from __future__ import annotations

import re
import time
from typing import Any

from powrd.cli import render

RUNNING = {"state": "running", "scopes_done": 1, "scopes_total": 2, "pages": 14, "events": 6500,
           "oldest_created_at": 1_704_189_600, "events_per_s": 1210.4, "started_at": None,
           "finished_at": None}


def relay(url: str, backfill: dict[str, Any] | None, complete: bool = False) -> dict[str, Any]:
    return {"url": url, "state": "connected", "read": True, "write": True, "connects": 1,
            "events_received": 10, "events_stored": 9, "events_rejected": 1,
            "backfill_complete": complete, "backfill": backfill}


def test_status_shows_one_line_per_running_backfill() -> None:
    started = dict(RUNNING, started_at=time.time() - 5)
    done = dict(RUNNING, state="done")
    view = render.status({"version": "1", "state": "running", "uptime_s": 9, "health": [],
                          "relays": [relay("wss://a.example", started), relay("wss://b.example", done, True)],
                          "counts": {}})
    lines = [line for line in view.splitlines() if line.startswith("backfill")]
    assert len(lines) == 1
    assert re.fullmatch(r"backfill   wss://a\.example  1/2 scopes, 14 pages, 6,500 events, back to "
                        r"2024-01-02 10:00:00Z, 1,210 events/s, for [56]\.\ds", lines[0]), lines[0]


def test_no_backfill_lines_when_none_runs_or_the_daemon_is_older() -> None:
    view = render.status({"relays": [relay("wss://a.example", None, True),
                                     relay("wss://b.example", dict(RUNNING, state="idle"))]})
    assert "backfill " not in view


def test_relays_table_backfill_column() -> None:
    table = render.relays([relay("wss://a.example", RUNNING), relay("wss://b.example", None, True),
                           relay("wss://c.example", dict(RUNNING, state="idle")),
                           relay("wss://d.example", dict(RUNNING, state="done"), True)])
    cells = {line.split()[0]: line for line in table.splitlines()[1:]}
    assert "running 1/2" in cells["wss://a.example"]
    assert re.search(r"\s1\s+done\s", cells["wss://b.example"])
    assert re.search(r"\s1\s+idle\s", cells["wss://c.example"])
    assert re.search(r"\s1\s+done\s", cells["wss://d.example"])

"""`powrd reindex` on a store written before the dialects were read (schema version 2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import apsw

from powrd.library.service import records_with_sets, resolve_template
from powrd.protocol.event import loads
from powrd.store import lists
from powrd.store.schema import LATEST_VERSION, MIGRATIONS
from powrd.store.store import Store
from tests.support.dialects import BROKEN, GOBLET, HINT, ME, NOWHERE, RUNNER, TEMPLATE, corpus


def old_store(path: Path, events: list[str]) -> None:
    """A version 2 database holding the raw events, as older powrd versions stored them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = apsw.Connection(str(path))
    with conn:
        for migration in MIGRATIONS[:2]:
            conn.execute(migration)
        conn.execute("PRAGMA user_version = 2")
        for text in events:
            event = loads(text)
            d = next((t[1] for t in event["tags"] if t[0] == "d"), None)
            conn.execute(
                "INSERT INTO nostr_events (id, pubkey, kind, created_at, d_tag, raw_event,"
                " received_at, source) VALUES (?, ?, ?, ?, ?, ?, 0, 'import')",
                (event["id"], event["pubkey"], event["kind"], event["created_at"],
                 d if event["kind"] >= 30000 else None, text),
            )
    conn.close()


def test_reindex_migrates_and_reads_the_dialects(tmp_path: Path) -> None:
    database = tmp_path / "state" / "powrd.db"
    old_store(database, corpus())
    config = tmp_path / "powrd.toml"
    config.write_text('[store]\npath = "state/powrd.db"\n[logging]\nlevel = "warning"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWRD_")}
    result = subprocess.run(
        [sys.executable, "-m", "powrd", "--config", str(config), "reindex"],
        capture_output=True, env=env, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert "collections" in result.stdout.decode()
    with Store(database) as store:
        reader = store.reader()
        assert reader.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
        template = resolve_template(reader, TEMPLATE)
        assert template is not None and template["complete"] is True
        assert [e["set_number"] for e in template["exercises"]] == [None, 1]
        broken = resolve_template(reader, BROKEN)
        assert broken is not None and broken["complete"] is False
        assert len(broken["unreadable"]) == 2
        web = next(r for r in records_with_sets(reader, author=ME) if r["template"])
        assert (web["start"], web["rounds_completed"]) == (1736950800, 1.5)
        assert web["sets"][0]["coordinate"] == GOBLET
        runs = records_with_sets(reader, author=RUNNER)
        assert {r["activity"] for r in runs} == {"running"}
        assert all(r["metrics"]["duration_s"] == 1695 for r in runs)
        found = lists.collections(reader, ME)
        assert [c["d"] for c in found] == ["powr-exercise-list", "powr-workout-list"]
        # A member stored nowhere is missing and queued for fetching, with its hint.
        assert found[0]["missing"] == [NOWHERE]
        queued = dict(reader.execute("SELECT coordinate, relay_hints FROM fetch_queue"))
        assert loads(queued[NOWHERE]) == [HINT]

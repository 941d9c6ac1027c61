"""The store's files are owner-only (0600) whatever the umask of whoever starts powrd."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from tests.support.events import keys_for, make_exercise

ALICE = keys_for("file-modes", 0)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_database_wal_and_shm_are_created_0600(tmp_path: Path, umask_022: None) -> None:
    db = tmp_path / "state" / "powrd.db"
    with Store(db) as store:
        exercise = make_exercise(ALICE, "squat")
        Pipeline(store, Policy()).submit_blocking("test", [(loads(exercise), len(exercise))])
        files = [db, db.with_name("powrd.db-wal"), db.with_name("powrd.db-shm")]
        assert all(f.exists() for f in files)
        assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}


@pytest.mark.parametrize("command", [["import", "-"], ["reindex"]])
def test_offline_commands_create_a_private_store(tmp_path: Path, command: list[str]) -> None:
    config = tmp_path / "powrd.toml"
    config.write_text('[store]\npath = "powrd.db"\n[logging]\nlevel = "warning"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWRD_")}
    result = subprocess.run(
        [sys.executable, "-m", "powrd", "--config", str(config), *command],
        input=make_exercise(ALICE, "squat").encode() + b"\n", capture_output=True, env=env,
        timeout=120, check=False, preexec_fn=lambda: os.umask(0o022),
    )
    assert result.returncode == 0, result.stderr.decode()
    created = sorted(tmp_path.glob("powrd.db*"))
    assert created and {f.name: oct(mode(f)) for f in created} == {
        f.name: "0o600" for f in created
    }

"""`powrd import`, `export` and `reindex` as real subprocesses on a real database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from tests.support.corpus import current_ids, generate_corpus
from tests.support.events import keys_for, make_exercise


def powrd(config: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POWRD_")}
    return subprocess.run(
        [sys.executable, "-m", "powrd", "--config", str(config), *args],
        input=stdin, capture_output=True, env=env, timeout=240, check=False,
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "powrd.toml"
    path.write_text('[store]\npath = "state/powrd.db"\n[logging]\nlevel = "warning"\n')
    return path


def summary(output: bytes) -> dict[str, str]:
    lines = [line.split(":", 1) for line in output.decode().splitlines() if ":" in line]
    return {key.strip(): value.strip() for key, value in lines}


def test_import_corpus_then_export_and_reindex(config: Path, tmp_path: Path) -> None:
    corpus = generate_corpus(20_000, 8, seed=11)
    corpus_file = tmp_path / "corpus.ndjson"
    # Half as bare events, half as relay frames.
    corpus_file.write_text(
        "\n".join(e if i % 2 else f'["EVENT","s",{e}]' for i, e in enumerate(corpus)) + "\n"
    )
    result = powrd(config, "import", str(corpus_file))
    assert result.returncode == 0, result.stderr.decode()
    figures = summary(result.stdout)
    assert figures["stored"] == "20000"
    assert figures["rejected"] == "0"

    again = powrd(config, "import", "-", stdin=corpus_file.read_bytes())
    assert summary(again.stdout)["duplicate"] == "20000"

    exported = powrd(config, "export")
    assert exported.returncode == 0
    ids = {json.loads(line)["id"] for line in exported.stdout.decode().splitlines()}
    assert ids == current_ids(corpus)
    everything = powrd(config, "export", "--all")
    assert len(everything.stdout.decode().splitlines()) == 20_000

    unchanged = powrd(config, "reindex")
    assert unchanged.returncode == 0
    assert "already matched" in unchanged.stdout.decode()

    db = apsw.Connection(str(tmp_path / "state" / "powrd.db"))
    before = db.execute("SELECT count(*) FROM record_sets").fetchone()[0]
    db.execute("DELETE FROM record_sets WHERE position % 3 = 0")
    db.execute("DELETE FROM exercise_definitions WHERE rowid % 2 = 0")
    db.close()
    repaired = powrd(config, "reindex")
    assert "record_sets" in repaired.stdout.decode()
    db = apsw.Connection(str(tmp_path / "state" / "powrd.db"))
    assert db.execute("SELECT count(*) FROM record_sets").fetchone()[0] == before
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_import_reports_rejections_and_bad_lines(config: Path) -> None:
    good = make_exercise(keys_for("cli", 0), "squat")
    tampered = json.loads(good)
    tampered["content"] = "changed"
    tampered["id"] = "a" * 64  # a different id, so it is not deduplicated against `good`
    lines = [good, json.dumps(tampered), "not json at all", ""]
    result = powrd(config, "import", "-", stdin="\n".join(lines).encode())
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "stored: 1" in out
    assert "rejected: 2" in out
    assert "invalid: bad event id: 1" in out
    assert "invalid: malformed event: not valid JSON: 1" in out


def test_import_of_missing_file_is_a_usage_error(config: Path, tmp_path: Path) -> None:
    result = powrd(config, "import", str(tmp_path / "nope.ndjson"))
    assert result.returncode == 2
    assert b"cannot read" in result.stderr
    assert b"Traceback" not in result.stderr


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[store]\npth = 'x'\n")
    result = powrd(config, "export")
    assert result.returncode == 2
    assert result.stderr.decode().count("\n") == 1
    assert "store.pth" in result.stderr.decode()

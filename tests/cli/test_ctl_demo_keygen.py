"""`powrd ctl` against a running daemon subprocess (tables and --json), `powrd ctl`
without a daemon, `powrd demo` and `powrd keygen`, each as a real command."""

from __future__ import annotations

import json
import re
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from powrd.cli.ctl import exercise_tags
from powrd.cli.main import UsageError
from tests.support.daemon import write_config
from tests.support.daemon_process import DaemonProcess, daemon_process, poll, run_powrd
from tests.support.events import (
    coordinate,
    keys_for,
    make_exercise,
    make_record,
    make_template,
    pubkey_of,
)
from tests.support.relays import LocalRelayHandle, seeded_relay

ALICE = keys_for("ctl", 0)
OWN = keys_for("ctl", 1)
SQUAT = coordinate(33401, ALICE, "squat")
MISSING = coordinate(33401, ALICE, "deadlift")
TEMPLATE = coordinate(33402, ALICE, "leg-day")
T0 = 1_700_000_000
SEEDED = [
    make_exercise(ALICE, "squat", created_at=T0),
    make_exercise(ALICE, "curl", title="Biceps Curl", equipment="dumbbell", t="arms", created_at=T0 + 1),
    make_template(ALICE, "leg-day", [(SQUAT, "", "100", "5", "", "normal"), (MISSING, "", "80", "8")],
                  created_at=T0 + 2),
    make_record(ALICE, "leg-day-1", [(SQUAT, "", "100", "5", "8", "normal")],
                template=(TEMPLATE, ""), created_at=T0 + 100, start=T0 + 50, end=T0 + 90),
]


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelayHandle]:
    with seeded_relay(SEEDED) as handle:
        yield handle


@pytest.fixture(scope="module")
def daemon(relay: LocalRelayHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    directory = tmp_path_factory.mktemp("ctl")
    key = directory / "secret.key"
    key.write_text(OWN.secret_key().to_bech32() + "\n")
    key.chmod(0o600)
    config = write_config(directory, relays=[relay.url], authors=[pubkey_of(ALICE)], secret_key_file=key)

    def synced(process: DaemonProcess) -> bool:
        entries = process.call("fetch.list")["entries"]
        return process.call("status")["counts"]["events"] >= len(SEEDED) and any(
            e["state"] == "not_found" for e in entries)

    with daemon_process(config) as process:
        poll(lambda: synced(process), timeout=20, what="the seeded library to sync")
        yield process
        assert process.stop() == 0


def ctl(daemon: DaemonProcess, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """`powrd --config CONFIG ctl ARGS…`: (exit code, stdout, stderr)."""
    result = run_powrd("--config", str(daemon.config), "ctl", *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def ctl_json(daemon: DaemonProcess, *args: str) -> Any:
    code, out, err = ctl(daemon, *args, "--json")
    assert code == 0, err
    return json.loads(out)


# -- against a running daemon --------------------------------------------------------------


def test_status_table(daemon: DaemonProcess, relay: LocalRelayHandle) -> None:
    code, out, _ = ctl(daemon, "status")
    assert code == 0
    lines = out.splitlines()
    assert re.match(r"powrd \S+  running  up ", lines[0])
    assert lines[1] == "health: ok"
    assert re.search(rf"^{re.escape(relay.url)}\s+connected\s+\d+\s+0\s+-\s+-$", out, re.M)
    assert re.search(r"^events\s+4\s+\(1301: 1, 33401: 2, 33402: 1\)$", out, re.M)
    assert "2 exercises, 1 templates (1 incomplete), 1 records" in out
    assert re.search(r"^app relay  ws://127\.0\.0\.1:\d+ listening, 0 connections, 0 subscriptions,"
                     r" 0 events sent, 0 accepted, 0 refused$", out, re.M)
    assert re.search(r"^memory\s+\d+ MiB resident \(peak \d+ MiB\), SQLite \d+ MiB, 4 ids", out, re.M)


def test_status_json(daemon: DaemonProcess) -> None:
    status = ctl_json(daemon, "status")
    assert status["state"] == "running"
    assert status["counts"]["templates"] == 1
    memory = status["memory"]
    # The daemon's own figures, checked against what the kernel says of its process.
    kernel_peak = int(
        next(line for line in Path(f"/proc/{daemon.process.pid}/status").read_text().splitlines()
             if line.startswith("VmHWM:")).split()[1]
    ) * 1024
    assert 0 < memory["rss_bytes"] <= memory["peak_rss_bytes"] <= kernel_peak
    assert 0 < memory["sqlite_bytes"] <= memory["sqlite_peak_bytes"]
    assert memory["seen_ids"] == 4


def test_socket_from_env_config_or_option(daemon: DaemonProcess) -> None:
    by_env = run_powrd("ctl", "status", "--json", env={"POWRD_CONFIG": str(daemon.config)})
    assert by_env.returncode == 0, by_env.stderr
    by_option = run_powrd("ctl", "status", "--socket", str(daemon.socket), "--json")
    assert by_option.returncode == 0, by_option.stderr
    assert json.loads(by_env.stdout)["state"] == json.loads(by_option.stdout)["state"] == "running"


def test_raw_method_call(daemon: DaemonProcess) -> None:
    code, out, _ = ctl(daemon, "events.query", '{"filter": {"kinds": [33401]}}')
    assert code == 0
    titles = {next(t[1] for t in e["tags"] if t[0] == "title") for e in json.loads(out)["events"]}
    assert titles == {"Back Squat", "Biceps Curl"}
    code, out, _ = ctl(daemon, "relays.list")
    assert code == 0
    assert json.loads(out)["relays"][0]["state"] == "connected"


def test_raw_method_errors(daemon: DaemonProcess) -> None:
    code, out, err = ctl(daemon, "no.such.method")
    assert (code, out) == (1, "")
    assert "method not found" in err
    code, _, err = ctl(daemon, "events.query", "{not json")
    assert code == 2
    assert "PARAMS_JSON" in err
    code, _, err = ctl(daemon, "events.query", '{"filter": {"kinds": "x"}}')
    assert code == 1
    assert "invalid params" in err
    assert err.count("\n") == 1


def test_template_table_and_json(daemon: DaemonProcess) -> None:
    code, out, _ = ctl(daemon, "template", TEMPLATE)
    assert code == 0
    assert out.startswith("Leg Day  [strength]\n")
    assert "incomplete: 1 referenced exercise not stored yet" in out
    assert f"missing     {MISSING}" in out
    assert re.search(r"^1\s+Back Squat\s+barbell\s+weight=100 kg reps=5 rpe=\? set_type=normal\s", out, re.M)
    assert re.search(rf"^2\s+\(missing\)\s+-\s+80 8\s+{re.escape(MISSING)}$", out, re.M)
    resolved = ctl_json(daemon, "template", TEMPLATE)
    assert resolved["complete"] is False
    assert resolved["missing"] == [MISSING]


def test_template_not_found(daemon: DaemonProcess) -> None:
    code, out, err = ctl(daemon, "template", coordinate(33402, ALICE, "nope"))
    assert (code, out) == (1, "")
    assert "no current template" in err


def test_exercises_filters(daemon: DaemonProcess) -> None:
    code, out, _ = ctl(daemon, "exercises", "--equipment", "dumbbell")
    assert code == 0
    assert "Biceps Curl" in out and "Back Squat" not in out
    assert ctl_json(daemon, "exercises", "--tag", "legs", "--author", pubkey_of(ALICE))["exercises"][0]["coordinate"] == SQUAT
    assert [e["title"] for e in ctl_json(daemon, "exercises", "--search", "curl")["exercises"]] == ["Biceps Curl"]


def test_records_with_dates(daemon: DaemonProcess) -> None:
    code, out, _ = ctl(daemon, "records", "--since", "2023-11-14")
    assert code == 0
    assert "Leg Day  [strength]  completed  40s" in out
    assert re.search(r"^\s+1\s+Back Squat\s+weight=100 kg reps=5 rpe=8 set_type=normal$", out, re.M)
    assert ctl_json(daemon, "records", "--until", str(T0))["records"] == []
    assert len(ctl_json(daemon, "records", "--author", pubkey_of(ALICE))["records"]) == 1


def test_fetch_relays_query_and_sync(daemon: DaemonProcess, relay: LocalRelayHandle) -> None:
    code, out, _ = ctl(daemon, "fetch")
    assert code == 0
    assert re.search(rf"^{re.escape(MISSING)}\s+not_found\s+\d+\s+1\s", out, re.M)
    code, out, _ = ctl(daemon, "relays")
    assert re.search(rf"^{re.escape(relay.url)}\s+rw\s+connected\s+1\s", out, re.M)
    code, out, _ = ctl(daemon, "query", '{"kinds": [1301]}')
    assert code == 0
    assert re.search(r"\s1301\s+[0-9a-f]{64}\s+[0-9a-f]{16}\s+Leg Day$", out, re.M)
    code, out, _ = ctl(daemon, "sync")
    assert (code, out) == (0, "backfill requested on 1 relays\n")


def test_exercise_add_and_publish(daemon: DaemonProcess) -> None:
    code, out, err = ctl(daemon, "exercise", "add", "--title", "Goblet Squat", "--equipment", "dumbbell",
                         "--format", "weight:kg", "reps:count", "--tag", "legs", "--tag", "beginner-friendly",
                         "--difficulty", "beginner", "--d", "goblet", "--content", "Hold the bell at the chest.")
    assert code == 0, err
    goblet = coordinate(33401, OWN, "goblet")
    assert out.startswith(f"published exercise {goblet}\nevent id ")
    [found] = ctl_json(daemon, "exercises", "--search", "Goblet")["exercises"]
    assert found["coordinate"] == goblet
    assert found["format"] == ["weight", "reps"]
    assert found["format_units"] == ["kg", "count"]
    assert found["hashtags"] == ["legs", "beginner-friendly"]
    assert found["difficulty"] == "beginner"
    assert found["content"] == "Hold the bell at the chest."
    code, out, _ = ctl(daemon, "outbox")
    assert re.search(r"^[0-9a-f]{64}\s+33401\s", out, re.M)

    code, out, _ = ctl(daemon, "publish", "--kind", "5", "--tags", json.dumps([["a", goblet]]))
    assert code == 0
    deletion = re.fullmatch(r"published ([0-9a-f]{64})\n", out)
    assert deletion
    assert ctl_json(daemon, "exercises", "--search", "Goblet")["exercises"] == []
    assert deletion.group(1) in [e["event_id"] for e in ctl_json(daemon, "outbox")["entries"]]


def test_publish_refused_and_bad_arguments(daemon: DaemonProcess) -> None:
    code, out, err = ctl(daemon, "publish", "--kind", "33401", "--tags", '[["d","x"]]')
    assert (code, out) == (1, "")
    assert "publish: kind 33401 requires a 'title' tag" in err
    code, _, err = ctl(daemon, "exercise", "add", "--title", "X", "--equipment", "barbell", "--format", "weight")
    assert code == 2
    assert "name:unit" in err
    code, _, err = ctl(daemon, "publish", "--kind", "33401", "--tags", "[[")
    assert code == 2
    assert "--tags" in err


def test_exercise_tags_builder() -> None:
    tags = exercise_tags(title="Row", equipment="machine", formats=["weight:kg", "set_type:warmup|normal"])
    assert tags[0][0] == "d" and len(tags[0][1]) == 36  # a fresh UUID
    assert tags[1:] == [["title", "Row"], ["format", "weight", "set_type"],
                        ["format_units", "kg", "warmup|normal"], ["equipment", "machine"]]
    with pytest.raises(UsageError):
        exercise_tags(title="Row", equipment="machine", formats=[":kg"])


# -- without a daemon ----------------------------------------------------------------------


def test_ctl_without_a_daemon(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    result = run_powrd("--config", str(config), "ctl", "status")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (f"powrd ctl: powrd is not running (no socket at {tmp_path / 'powrd.sock'});"
                             " start it with `powrd run`\n")


def test_ctl_with_a_bad_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[control]\nsockett = 'x'\n")
    result = run_powrd("--config", str(config), "ctl", "status")
    assert result.returncode == 2
    assert "control.sockett" in result.stderr
    assert result.stderr.count("\n") == 1


# -- demo and keygen -----------------------------------------------------------------------


def test_demo_shows_an_incomplete_template_and_cleans_up() -> None:
    result = run_powrd("demo", timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "health: ok" in out
    assert "status      incomplete: 1 referenced exercise not stored yet" in out
    missing = re.search(r"^missing     (33401:[0-9a-f]{64}:romanian-deadlift)$", out, re.M)
    assert missing, out
    assert re.search(rf"^{re.escape(missing.group(1))}\s+not_found\s", out, re.M)
    store = re.search(r"^store\s+(\S+)$", out, re.M)
    assert store
    assert not Path(store.group(1)).parent.exists()


def test_demo_keep_leaves_the_store() -> None:
    result = run_powrd("demo", "--keep", timeout=60)
    assert result.returncode == 0, result.stderr
    kept = re.search(r"^kept (\S+) ", result.stdout, re.M)
    assert kept, result.stdout
    directory = Path(kept.group(1))
    try:
        assert (directory / "powrd.db").exists()
        exported = run_powrd("--config", str(directory / "powrd.toml"), "export")
        assert exported.returncode == 0, exported.stderr
        assert len(exported.stdout.splitlines()) == 5
    finally:
        shutil.rmtree(directory)


def test_keygen_writes_a_private_key_once(tmp_path: Path) -> None:
    key = tmp_path / "identity.key"
    result = run_powrd("keygen", "--out", str(key))
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"npub1[02-9ac-hj-np-z]{58}\n", result.stdout)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    content = key.read_text()
    assert content.startswith("nsec1")
    again = run_powrd("keygen", "--out", str(key))
    assert again.returncode == 2
    assert "already exists" in again.stderr
    assert key.read_text() == content

"""`powrd ctl collections` against a real daemon process that synced a POWR list."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.daemon import write_config
from tests.support.daemon_process import DaemonProcess, daemon_process, poll, run_powrd
from tests.support.events import coordinate, keys_for, make_event, make_exercise, pubkey_of
from tests.support.relays import LocalRelayHandle, seeded_relay

ALICE = keys_for("ctl-collections", 0)
SQUAT = coordinate(33401, ALICE, "squat")
GONE = coordinate(33401, ALICE, "gone")
SEEDED = [
    make_exercise(ALICE, "squat"),
    make_event(ALICE, 30003, "", [
        ["d", "powr-exercise-list"], ["title", "Saved \x1b[2J exercises"],
        ["a", SQUAT], ["a", "33401:gone"],  # POWR's short form: Alice's own exercise
    ]),
]


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelayHandle]:
    with seeded_relay(SEEDED) as handle:
        yield handle


@pytest.fixture(scope="module")
def daemon(relay: LocalRelayHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    directory = tmp_path_factory.mktemp("ctl-collections")
    config = write_config(directory, relays=[relay.url], authors=[pubkey_of(ALICE)],
                          kinds=(33401, 30003), extra="[media]\nenabled = false")

    def synced(process: DaemonProcess) -> bool:
        return any(e["state"] == "not_found" for e in process.call("fetch.list")["entries"])

    with daemon_process(config) as process:
        poll(lambda: synced(process), timeout=20, what="the list to sync and its member to be sought")
        yield process
        assert process.stop() == 0


def ctl(daemon: DaemonProcess, *args: str) -> tuple[int, str]:
    result = run_powrd("--config", str(daemon.config), "ctl", *args)
    return result.returncode, result.stdout


def test_collections_table_and_json(daemon: DaemonProcess) -> None:
    code, out = ctl(daemon, "collections")
    assert code == 0
    assert "powr-exercise-list" in out
    assert f"  {GONE}" in out.splitlines()[-1]
    code, out = ctl(daemon, "collections", "--json", "--author", pubkey_of(ALICE))
    assert code == 0
    (found,) = json.loads(out)["collections"]
    assert found["kind_counts"] == {"33401": 2}
    assert found["members"] == [
        {"coordinate": SQUAT, "present": True}, {"coordinate": GONE, "present": False}]
    assert found["missing"] == [GONE]
    assert found["title"] == "Saved \x1b[2J exercises"  # --json output is the data as stored


def test_collections_of_nobody(daemon: DaemonProcess) -> None:
    code, out = ctl(daemon, "collections", "--author", "b" * 64)
    assert (code, out.strip()) == (0, "no collections")

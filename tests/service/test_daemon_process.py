"""`python -m powrd run` as a real subprocess: every control method over the real socket,
every error path, socket permissions, SIGTERM, sd_notify, the watchdog and SIGHUP."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from powrd.control.client import RpcError
from powrd.protocol.event import loads
from tests.support.daemon import write_config
from tests.support.daemon_process import (
    DaemonProcess,
    NotifyListener,
    child_environment,
    daemon_process,
    poll,
)
from tests.support.events import (
    coordinate,
    keys_for,
    make_exercise,
    make_record,
    make_template,
    pubkey_of,
)
from tests.support.relays import LocalRelayHandle, start_local_relay

ALICE = keys_for("daemon-process", 0)
BOB = keys_for("daemon-process", 1)
OWN = keys_for("daemon-process", 2)  # the daemon's identity (publishes)
SQUAT = coordinate(33401, ALICE, "squat")
BENCH = coordinate(33401, ALICE, "bench")
PUSHUP = coordinate(33401, ALICE, "pushup")
MISSING = coordinate(33401, ALICE, "deadlift")  # referenced, never published
TEMPLATE = coordinate(33402, ALICE, "leg-day")
T0 = 1_700_000_000


def seeded_events() -> dict[str, str]:
    """The library on relay A, by name."""
    return {
        "squat": make_exercise(ALICE, "squat", created_at=T0),
        "bench": make_exercise(ALICE, "bench", title="Bench Press", created_at=T0 + 1, t="push"),
        "pushup": make_exercise(
            ALICE, "pushup", title="Push-up", equipment="bodyweight", created_at=T0 + 2, t="push",
            format=["reps", "set_type"], format_units=["count", "warmup|normal|drop|failure"],
        ),
        "template": make_template(
            ALICE, "leg-day",
            [(SQUAT, "", "100", "5", "8", "normal"), (MISSING, "", "80", "8", "", "normal")],
            created_at=T0 + 10,
        ),
        "record": make_record(
            ALICE, "leg-day-1",
            [(SQUAT, "", "100", "5", "8", "normal"), (PUSHUP, "", "20", "normal")],
            template=(TEMPLATE, ""), created_at=T0 + 100, start=T0 + 50, end=T0 + 90,
        ),
        "row": make_exercise(BOB, "row", title="Seated Row", equipment="machine", created_at=T0 + 3, t="back"),
        "bob_record": make_record(
            BOB, "row-day", [(coordinate(33401, BOB, "row"), "", "60", "10", "7", "normal")],
            created_at=T0 + 5000, start=T0 + 4000, end=T0 + 4900,
        ),
    }


EVENTS = seeded_events()
IDS = {name: loads(text)["id"] for name, text in EVENTS.items()}


def key_file(directory: Path) -> Path:
    path = directory / "secret.key"
    path.write_text(OWN.secret_key().to_bech32() + "\n")
    path.chmod(0o600)
    return path


def synced(daemon: DaemonProcess, count: int = len(EVENTS)) -> bool:
    queue = daemon.call("fetch.list")["entries"]
    return daemon.call("status")["counts"]["events"] >= count and any(
        e["coordinate"] == MISSING and e["state"] == "not_found" for e in queue
    )


@pytest.fixture(scope="module")
def relay_a() -> Iterator[LocalRelayHandle]:
    relay = asyncio.run(start_local_relay())
    asyncio.run(relay.publish(EVENTS.values()))
    yield relay
    relay.stop()


@pytest.fixture(scope="module")
def daemon(relay_a: LocalRelayHandle) -> Iterator[DaemonProcess]:
    """One daemon for the method and error tests; publishes only exercises (as OWN).

    Its directory is searchable by everyone (pytest's are not), so that a process with
    another uid can reach the socket file and be refused by the daemon itself.
    """
    directory = Path(tempfile.mkdtemp(prefix="powrd-test-"))
    directory.chmod(0o755)
    try:
        config = write_config(directory, relays=[relay_a.url],
                              authors=[pubkey_of(ALICE), pubkey_of(BOB)],
                              secret_key_file=key_file(directory))
        with daemon_process(config) as process:
            poll(lambda: synced(process), timeout=20, what="the seeded library to sync")
            yield process
            assert process.stop() == 0
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class RawConnection:
    """A bare control-socket connection: send lines, read answers."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(os.fspath(path))
        self.reader = self.sock.makefile("rb")

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def answer(self) -> dict[str, Any]:
        line = self.reader.readline()
        assert line.endswith(b"\n"), f"connection closed: {line!r}"
        return json.loads(line)

    def request(self, method: str, params: Any = None, request_id: Any = 1) -> dict[str, Any]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(json.dumps(message).encode() + b"\n")
        return self.answer()

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@pytest.fixture
def raw(daemon: DaemonProcess) -> Iterator[RawConnection]:
    connection = RawConnection(daemon.socket)
    yield connection
    connection.close()


# -- every method ------------------------------------------------------------------------


def test_status_shape_relays_and_counts(daemon: DaemonProcess, relay_a: LocalRelayHandle) -> None:
    status = daemon.call("status")
    assert status["state"] == "running"
    assert status["version"]
    assert status["uptime_s"] > 0
    assert status["health"] == []
    [relay] = status["relays"]
    assert relay["url"] == relay_a.url
    assert relay["state"] == "connected"
    assert relay["events_received"] >= len(EVENTS)
    assert relay["events_rejected"] == 0
    assert relay["last_error"] is None
    assert relay["next_retry_s"] is None
    counts = status["counts"]
    assert counts["by_kind"]["33402"] == 1
    assert counts["by_kind"]["1301"] == 2
    assert counts["templates"] == 1
    assert counts["records"] == 2
    assert counts["incomplete_templates"] == 1
    assert counts["exercises"] >= 4
    assert counts["rejected"] == 0
    assert set(counts) >= {"events", "fetch_pending", "outbox_pending"}


def test_relays_list(daemon: DaemonProcess, relay_a: LocalRelayHandle) -> None:
    [relay] = daemon.call("relays.list")["relays"]
    assert relay["url"] == relay_a.url
    assert relay["read"] is relay["write"] is True
    assert relay["backfill_complete"] is True
    assert relay["connects"] == 1


def test_events_query_filters(daemon: DaemonProcess) -> None:
    def query(**flt: Any) -> list[str]:
        return [e["id"] for e in daemon.call("events.query", {"filter": flt})["events"]]

    alice_exercises = query(kinds=[33401], authors=[pubkey_of(ALICE)])
    assert alice_exercises == [IDS["pushup"], IDS["bench"], IDS["squat"]]  # newest first
    assert query(kinds=[1301]) == [IDS["bob_record"], IDS["record"]]
    assert query(kinds=[1301], limit=1) == [IDS["bob_record"]]
    assert query(ids=[IDS["template"]]) == [IDS["template"]]
    assert query(**{"#d": ["row", "squat"]}) == [IDS["row"], IDS["squat"]]
    assert query(authors=[pubkey_of(ALICE)], since=T0 + 10, until=T0 + 100) == [IDS["record"], IDS["template"]]
    [event] = daemon.call("events.query", {"filter": {"ids": [IDS["squat"]]}})["events"]
    assert event == loads(EVENTS["squat"])


def test_library_exercises_filters(daemon: DaemonProcess) -> None:
    def titles(**params: Any) -> list[str]:
        return [e["title"] for e in daemon.call("library.exercises", params)["exercises"]]

    assert titles(author=pubkey_of(ALICE)) == ["Back Squat", "Bench Press", "Push-up"]
    assert titles(author=ALICE.public_key().to_bech32()) == ["Back Squat", "Bench Press", "Push-up"]
    assert titles(author=pubkey_of(BOB)) == ["Seated Row"]
    assert titles(search="squat", author=pubkey_of(ALICE)) == ["Back Squat"]
    assert titles(equipment="machine") == ["Seated Row"]
    assert titles(tag="push", author=pubkey_of(ALICE)) == ["Bench Press", "Push-up"]
    [squat] = daemon.call("library.exercises", {"search": "Back Squat"})["exercises"]
    assert squat["coordinate"] == SQUAT
    assert squat["format"] == ["weight", "reps", "rpe", "set_type"]
    assert squat["format_units"][0] == "kg"
    assert squat["equipment"] == "barbell"


def test_library_template_resolved_and_incomplete(daemon: DaemonProcess) -> None:
    template = daemon.call("library.template", {"coordinate": TEMPLATE})
    assert template["title"] == "Leg Day"
    assert template["complete"] is False
    assert template["missing"] == [MISSING]
    first, second = template["exercises"]
    assert first["coordinate"] == SQUAT
    assert first["exercise"]["title"] == "Back Squat"
    assert first["parameters"][:2] == [
        {"name": "weight", "unit": "kg", "value": "100"},
        {"name": "reps", "unit": "count", "value": "5"},
    ]
    assert second["coordinate"] == MISSING
    assert second["exercise"] is None
    assert [p["value"] for p in second["parameters"]] == ["80", "8", None, "normal"]


def test_library_records_with_sets_and_filters(daemon: DaemonProcess) -> None:
    records = daemon.call("library.records")["records"]
    assert [r["event_id"] for r in records] == [IDS["bob_record"], IDS["record"]]
    alice = daemon.call("library.records", {"author": pubkey_of(ALICE)})["records"]
    [record] = alice
    assert record["template"] == TEMPLATE
    assert record["completed"] is True
    assert (record["start"], record["end"]) == (T0 + 50, T0 + 90)
    assert [s["exercise_title"] for s in record["sets"]] == ["Back Squat", "Push-up"]
    assert record["sets"][1]["parameters"] == [
        {"name": "reps", "unit": "count", "value": "20"},
        {"name": "set_type", "unit": "warmup|normal|drop|failure", "value": "normal"},
    ]
    since = daemon.call("library.records", {"since": T0 + 1000})["records"]
    assert [r["event_id"] for r in since] == [IDS["bob_record"]]
    until = daemon.call("library.records", {"until": T0 + 1000})["records"]
    assert [r["event_id"] for r in until] == [IDS["record"]]


def test_fetch_list_holds_the_missing_exercise(daemon: DaemonProcess) -> None:
    [entry] = daemon.call("fetch.list")["entries"]
    assert entry["coordinate"] == MISSING
    assert entry["state"] == "not_found"
    assert entry["attempts"] >= 1
    assert entry["dependents"] == 1
    assert daemon.call("fetch.list", {"state": "pending"})["entries"] == []


def test_sync_now_backfills_again_without_duplicates(daemon: DaemonProcess) -> None:
    before = daemon.call("status")["counts"]["events"]
    assert daemon.call("sync.now") == {"relays": 1}
    poll(lambda: daemon.call("relays.list")["relays"][0]["backfill_complete"], timeout=10,
         what="the backfill to finish again")
    assert daemon.call("status")["counts"]["events"] == before


def test_publish_stores_queues_and_delivers(daemon: DaemonProcess, relay_a: LocalRelayHandle) -> None:
    tags = [["d", "lunge"], ["title", "Lunge"], ["format", "weight", "reps"],
            ["format_units", "kg", "count"], ["equipment", "dumbbell"]]
    event_id = daemon.call("publish", {"kind": 33401, "content": "Step forward.", "tags": tags,
                                       "created_at": T0 + 7})["id"]
    [stored] = daemon.call("events.query", {"filter": {"ids": [event_id]}})["events"]
    assert stored["pubkey"] == pubkey_of(OWN)
    assert stored["tags"] == tags
    assert stored["created_at"] == T0 + 7

    def delivered() -> bool:
        [entry] = [e for e in daemon.call("outbox.list")["entries"] if e["event_id"] == event_id]
        return entry["done"] and entry["deliveries"][0]["state"] == "accepted"

    poll(delivered, timeout=15, what="the relay to accept the published event")
    [entry] = [e for e in daemon.call("outbox.list")["entries"] if e["event_id"] == event_id]
    assert entry["kind"] == 33401
    assert entry["deliveries"][0]["relay"] == relay_a.url
    assert daemon.call("outbox.list", {"pending": True})["entries"] == []
    assert event_id in asyncio.run(relay_a.fetch_all_ids({"ids": [event_id]}))


# -- error paths -------------------------------------------------------------------------


def test_invalid_json_then_the_connection_still_works(raw: RawConnection) -> None:
    raw.send(b'{"jsonrpc": "2.0", "id": 1, "method": \n')
    answer = raw.answer()
    assert answer["id"] is None
    assert answer["error"]["code"] == -32700
    assert raw.request("status", request_id=2)["result"]["state"] == "running"


def test_invalid_requests(raw: RawConnection) -> None:
    raw.send(b'{"id": 3, "method": "status"}\n')
    assert raw.answer()["error"]["code"] == -32600
    raw.send(b'[{"jsonrpc": "2.0", "id": 4, "method": "status"}]\n')
    assert raw.answer()["error"]["code"] == -32600
    raw.send(b'{"jsonrpc": "2.0", "id": 5, "method": "status", "params": [1]}\n')
    assert raw.answer()["error"]["code"] == -32602


def test_unknown_method(raw: RawConnection) -> None:
    answer = raw.request("nope.nothing", request_id="x")
    assert answer["id"] == "x"
    assert answer["error"]["code"] == -32601
    assert "nope.nothing" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("method", "params", "mentions"),
    [
        ("status", {"verbose": True}, "verbose"),
        ("library.template", {}, "coordinate"),
        ("library.exercises", {"author": "not-a-key"}, "author"),
        ("library.records", {"since": "yesterday"}, "since"),
        ("events.query", {"filter": {"kinds": ["x"]}}, "kinds"),
        ("fetch.list", {"state": 3}, "state"),
    ],
)
def test_invalid_params(raw: RawConnection, method: str, params: dict[str, Any], mentions: str) -> None:
    error = raw.request(method, params)["error"]
    assert error["code"] == -32602
    assert mentions in error["message"]


def test_not_found_template(raw: RawConnection) -> None:
    error = raw.request("library.template", {"coordinate": coordinate(33402, ALICE, "nope")})["error"]
    assert error["code"] == -32001


def test_request_too_large_keeps_the_connection(raw: RawConnection) -> None:
    huge = b'{"jsonrpc":"2.0","id":9,"method":"status","params":{"pad":"' + b"x" * (1024 * 1024) + b'"}}\n'
    raw.send(huge)
    answer = raw.answer()
    assert answer["id"] is None
    assert answer["error"] == {"code": -32600, "message": "request too large"}
    assert raw.request("status", request_id=10)["id"] == 10


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        ({"kind": 1, "content": "hello", "tags": []}, "kind"),
        ({"kind": 33401, "content": "", "tags": [["d", "x"], ["title", "No format"]]}, "format"),
        ({"kind": 33401, "content": "", "tags": "not a list"}, "tags"),
        ({"kind": 33401, "content": 5, "tags": []}, "content"),
    ],
)
def test_invalid_publish_is_refused_and_nothing_is_stored(
    daemon: DaemonProcess, params: dict[str, Any], mentions: str
) -> None:
    events_before = daemon.call("status")["counts"]["events"]
    outbox_before = daemon.call("outbox.list")["entries"]
    with pytest.raises(RpcError) as refused:
        daemon.call("publish", params)
    assert refused.value.code == -32002
    assert mentions in refused.value.message
    assert daemon.call("status")["counts"]["events"] == events_before
    assert daemon.call("outbox.list")["entries"] == outbox_before


def test_socket_is_private(daemon: DaemonProcess) -> None:
    info = os.stat(daemon.socket)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()


NOBODY = 65534


def answer_as_uid(uid: int, path: Path) -> str:
    """Connect from a forked child running as ``uid``; its first answer line, or EACCES.

    A fork rather than a new interpreter: the test's interpreter may live where ``uid``
    cannot read it.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no pytest machinery from here on, always os._exit
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(5)
                try:
                    sock.connect(os.fspath(path))
                except PermissionError:
                    reply = b"EACCES"
                else:
                    # The daemon answers a refused peer at once and hangs up, maybe
                    # before this request is written; the answer is still there to read.
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        sock.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
                    reply = sock.makefile("rb").readline()
            os.write(write_end, reply)
        except BaseException as error:
            os.write(write_end, f"child failed: {error!r}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        reply = reader.read()
    os.waitpid(pid, 0)
    return reply.decode().strip()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a peer under another uid")
def test_a_peer_with_another_uid_is_refused(daemon: DaemonProcess) -> None:
    assert answer_as_uid(NOBODY, daemon.socket) == "EACCES"  # the file mode alone keeps it out
    os.chmod(daemon.socket, 0o666)  # past the file mode: SO_PEERCRED must refuse it
    try:
        answer = json.loads(answer_as_uid(NOBODY, daemon.socket))
    finally:
        os.chmod(daemon.socket, 0o600)
    assert answer["error"] == {"code": -32003, "message": "permission denied"}
    assert answer["id"] is None
    assert daemon.call("status")["state"] == "running"


# -- lifecycle, sd_notify, watchdog, SIGHUP -----------------------------------------------


def test_notify_watchdog_and_sigterm(relay_a: LocalRelayHandle, tmp_path: Path) -> None:
    config = write_config(tmp_path, relays=[relay_a.url], authors=[pubkey_of(ALICE), pubkey_of(BOB)])
    listener = NotifyListener(tmp_path / "notify.sock")
    watchdog_usec = 200_000  # a ping every 0.1 s
    daemon = DaemonProcess(config, {"NOTIFY_SOCKET": str(listener.path),
                                    "WATCHDOG_USEC": str(watchdog_usec)})
    try:
        listener.wait_for("READY")
        ready = next(fields for _, fields in listener.received if fields.get("READY") == "1")
        assert ready["STATUS"].startswith("running")
        # READY=1 promises the store is open and the socket listens: no waiting here.
        assert daemon.call("status")["state"] == "running"

        window = 1.5
        pings = [f for _, f in listener.collect(window) if f.get("WATCHDOG") == "1"]
        expected = window / (watchdog_usec / 2_000_000)
        assert expected * 0.4 <= len(pings) <= expected * 1.6, len(pings)

        poll(lambda: synced(daemon), timeout=20, what="the library to sync")
        stopping_from = time.monotonic()
        assert daemon.stop(timeout=5) == 0
        assert time.monotonic() - stopping_from < 5
        listener.wait_for("STOPPING", timeout=1)
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait()
        listener.close()
    assert not daemon.socket.exists()
    db = apsw.Connection(str(tmp_path / "powrd.db"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {row[0] for row in db.execute("SELECT id FROM nostr_events")}
    finally:
        db.close()
    assert stored == set(IDS.values())


def test_sighup_adds_a_relay_and_syncs_it(relay_a: LocalRelayHandle, tmp_path: Path) -> None:
    relay_b = asyncio.run(start_local_relay())
    try:
        only_on_b = make_exercise(ALICE, "lunge", title="Lunge", created_at=T0 + 20)
        asyncio.run(relay_b.publish([only_on_b]))
        authors = [pubkey_of(ALICE), pubkey_of(BOB)]
        config = write_config(tmp_path, relays=[relay_a.url], authors=authors)
        listener = NotifyListener(tmp_path / "notify.sock")
        with daemon_process(config, {"NOTIFY_SOCKET": str(listener.path)}) as daemon:
            poll(lambda: synced(daemon), timeout=20, what="relay A to sync")
            write_config(tmp_path, relays=[relay_a.url, relay_b.url], authors=authors)
            daemon.signal(signal.SIGHUP)
            assert_reload_announced(listener)

            def on_b() -> bool:
                urls = [r["url"] for r in daemon.call("relays.list")["relays"]]
                found = daemon.call("events.query", {"filter": {"ids": [loads(only_on_b)["id"]]}})
                return relay_b.url in urls and bool(found["events"])

            poll(on_b, timeout=20, what="relay B to appear and its event to be stored")
            relays = {r["url"]: r for r in daemon.call("relays.list")["relays"]}
            assert relays[relay_a.url]["connects"] == 1  # the unchanged relay kept its connection
            assert relays[relay_b.url]["state"] == "connected"
            assert daemon.process.poll() is None
            assert daemon.stop() == 0
    finally:
        relay_b.stop()
        listener.close()


def assert_reload_announced(listener: NotifyListener) -> None:
    """After the start-up READY=1: RELOADING=1 with MONOTONIC_USEC, then READY=1 again."""
    started = listener.wait_for("READY")
    reloading = listener.wait_for("RELOADING", timeout=10)
    assert reloading >= started
    announced = next(f for _, f in listener.received if f.get("RELOADING") == "1")
    assert int(announced["MONOTONIC_USEC"]) > 0

    def ready_again() -> dict[str, str] | None:
        listener.collect(0.05)
        later = [f for t, f in listener.received if t > reloading and f.get("READY") == "1"]
        return later[0] if later else None

    ready = poll(ready_again, timeout=10, what="READY=1 after RELOADING=1")
    assert ready["STATUS"].startswith("running")


def test_sighup_with_a_broken_file_keeps_running_and_tells_systemd(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    listener = NotifyListener(tmp_path / "notify.sock")
    try:
        with daemon_process(config, {"NOTIFY_SOCKET": str(listener.path)}) as daemon:
            listener.wait_for("READY")
            config.write_text("[sync]\nkinds = []\n")
            daemon.signal(signal.SIGHUP)
            assert_reload_announced(listener)
            assert daemon.call("status")["state"] == "running"
            assert daemon.stop() == 0
        assert "reload failed" in daemon.log_path.read_text()
    finally:
        listener.close()


def test_startup_error_is_one_line_and_exit_1(tmp_path: Path) -> None:
    key = tmp_path / "secret.key"
    key.write_text(OWN.secret_key().to_bech32() + "\n")
    key.chmod(0o644)  # readable by others: refused
    config = write_config(tmp_path, secret_key_file=key)
    result = subprocess.run([sys.executable, "-m", "powrd", "--config", str(config), "run"],
                            capture_output=True, text=True, timeout=30, check=False,
                            env=child_environment())
    assert result.returncode == 1
    assert "chmod 600" in result.stderr
    assert "Traceback" not in result.stderr

"""Bad local input: `powrd run` refuses with one clear line, a non-zero exit and no traceback.

Covers malformed config files, secret key files that cannot be used, a control socket
in a missing directory, and a second daemon on a database another one is using.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from powrd.control.client import ControlError, call_sync
from tests.reliability.powrd_process import one_line_error, run_powrd, spawn_daemon
from tests.support.daemon import write_config
from tests.support.events import keys_for

USER = keys_for("bad-local-input", 0)
SECRET = USER.secret_key().to_bech32()
EXIT_USAGE = 2  # the command line or config is unusable
EXIT_STARTUP = 1  # the config is fine but the daemon cannot start


def run_with(config: Path) -> tuple[int, str]:
    result = run_powrd("--config", str(config), "run", timeout=30)
    message = one_line_error(result)
    assert SECRET not in result.stderr and SECRET not in result.stdout
    return result.returncode, message


# -- config files ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b"[store\npath = 'x'\n", "invalid TOML"),
        (b"[store]\npaht = 'powrd.db'\n", "unknown key store.paht"),
        (b"[sync]\npage_limit = 'many'\n", "sync.page_limit: expected an integer"),
        (b"[[relays]]\nurl = 'http://relay.example'\n", "relays[0].url"),
        (b"\xff\xfe[store]\n", "not UTF-8"),
        (b"[identity]\nsecret_key_file = '" + SECRET.encode() + b"'\n", "looks like the key itself"),
    ],
    ids=["toml syntax", "unknown key", "wrong type", "bad relay url", "not utf-8", "key pasted inline"],
)
def test_malformed_config(tmp_path: Path, text: bytes, expected: str) -> None:
    config = tmp_path / "powrd.toml"
    config.write_bytes(text)
    code, message = run_with(config)
    assert code == EXIT_USAGE
    assert str(config) in message and expected in message


def test_missing_config_file_and_a_directory_as_config(tmp_path: Path) -> None:
    code, message = run_with(tmp_path / "absent.toml")
    assert code == EXIT_USAGE and "cannot read" in message
    code, message = run_with(tmp_path)
    assert code == EXIT_USAGE and "cannot read" in message


# -- secret key files -----------------------------------------------------------------


def make_key_file(path: Path, kind: str) -> None:
    if kind == "missing":
        return
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind == "symlink loop":
        path.symlink_to(path)
    else:
        content = {"garbage": "not a key at all", "public key": USER.public_key().to_bech32(),
                   "empty": "", "insecure mode": SECRET, "no permission": SECRET}[kind]
        path.write_text(content + "\n")
        path.chmod({"insecure mode": 0o644, "no permission": 0o000}.get(kind, 0o600))


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("missing", "No such file"),
        ("directory", "not a regular file"),
        ("fifo", "not a regular file"),
        ("symlink loop", "cannot read"),
        ("garbage", "not a valid"),
        ("public key", "public key"),
        ("empty", "is empty"),
        ("insecure mode", "chmod 600"),
        ("no permission", "Permission denied"),
    ],
)
def test_unusable_secret_key_file(tmp_path: Path, kind: str, expected: str) -> None:
    if kind == "no permission" and os.geteuid() == 0:
        pytest.skip("root reads any file whatever its mode")
    key = tmp_path / "user.nsec"
    make_key_file(key, kind)
    config = write_config(tmp_path, secret_key_file=key)
    code, message = run_with(config)
    assert code == EXIT_STARTUP
    assert str(key) in message and expected in message
    assert not (tmp_path / "powrd.sock").exists()


# -- the control socket -----------------------------------------------------------------


def test_socket_in_a_missing_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="")
    text = config.read_text().replace('socket = "powrd.sock"', 'socket = "no/such/dir/powrd.sock"')
    config.write_text(text)
    code, message = run_with(config)
    assert code == EXIT_STARTUP
    assert str(tmp_path / "no/such/dir/powrd.sock") in message
    assert "No such file or directory" in message


# -- two daemons, one database ----------------------------------------------------------


def answers(socket: Path) -> bool:
    try:
        return call_sync(socket, "status", None, timeout=5.0)["state"] == "running"
    except (ControlError, OSError):
        return False


def wait_until_answering(socket: Path, process) -> None:
    deadline = time.monotonic() + 20
    while not answers(socket):
        assert process.poll() is None, "the first daemon exited"
        assert time.monotonic() < deadline, "the first daemon never answered"
        time.sleep(0.02)


def test_a_second_daemon_on_the_same_database_is_refused(tmp_path: Path) -> None:
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    first_config = write_config(first_dir)
    database = first_dir / "powrd.db"
    other_socket = write_config(second_dir)
    other_socket.write_text(
        other_socket.read_text().replace('path = "powrd.db"', f'path = "{database}"')
    )
    first = spawn_daemon(first_config, tmp_path / "first.log")
    try:
        wait_until_answering(first_dir / "powrd.sock", first)
        for config in (other_socket, first_config):  # its own socket, then the same one
            code, message = run_with(config)
            assert code == EXIT_STARTUP
            assert str(database) in message and "another powrd process is using this database" in message
            assert answers(first_dir / "powrd.sock")  # the first one is untouched
        assert not (second_dir / "powrd.sock").exists()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()

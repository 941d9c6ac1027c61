"""`powrd init`: no questions with flags, prompts on a terminal, a commented config that
today's loader accepts, never an overwrite, and the next commands printed."""

from __future__ import annotations

from pathlib import Path

from powrd.config import Config
from tests.support.daemon_process import REPO_ROOT, child_environment, powrd_command, run_powrd
from tests.support.events import keys_for, pubkey_of
from tests.support.terminal import run_on_terminal

ME = keys_for("init", 0)
NPUB = ME.public_key().to_bech32()
FRIEND_HEX = pubkey_of(keys_for("init", 1))


def test_flags_write_a_config_that_loads(tmp_path: Path) -> None:
    out = tmp_path / "conf" / "powrd.toml"
    out.parent.mkdir()
    result = run_powrd("init", "--npub", NPUB, "--npub", FRIEND_HEX, "--relay", "ws://127.0.0.1:7777",
                       "--relay", "wss://relay.example/", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"wrote {out}", "next: start the daemon, then watch it sync:",
        f"  powrd --config {out} run", f"  powrd --config {out} ctl status --watch"]
    config = Config.from_toml(out, {})
    assert config.sync.authors == (pubkey_of(ME), FRIEND_HEX)
    assert config.relay_urls(read=True) == config.relay_urls(write=True) == (
        "ws://127.0.0.1:7777", "wss://relay.example")
    assert config.store.path == out.parent.resolve() / "powrd.db"
    assert config.control.socket == out.parent.resolve() / "powrd.sock"
    text = out.read_text()
    assert "\npublic_kinds = [33401, 33402]\n" in text
    assert config.sync.public_kinds == (33401, 33402)
    assert "\n# secret_key_file" in text and text.count("\n#") > 10  # commented for a reader
    assert [p.name for p in out.parent.iterdir()] == ["powrd.toml"]  # no temporary left


def test_defaults_and_paths(tmp_path: Path) -> None:
    out = tmp_path / "p.toml"
    result = run_powrd("init", "--npub", NPUB, "--out", str(out), "--store", "data/w.db", "--socket", "/run/x.sock")
    assert result.returncode == 0, result.stderr
    config = Config.from_toml(out, {})
    assert config.relay_urls() == ("wss://relay.damus.io", "wss://nos.lol")
    assert config.store.path == tmp_path.resolve() / "data" / "w.db"
    assert str(config.control.socket) == "/run/x.sock"


def test_never_overwrites(tmp_path: Path) -> None:
    out = tmp_path / "powrd.toml"
    out.write_text("# mine\n")
    result = run_powrd("init", "--npub", NPUB, "--out", str(out))
    assert result.returncode == 2
    assert result.stderr == f"powrd: {out}: already exists; not overwriting it (remove it or give --out)\n"
    assert out.read_text() == "# mine\n"


def test_bad_values_are_refused_and_nothing_is_written(tmp_path: Path) -> None:
    out = tmp_path / "powrd.toml"
    result = run_powrd("init", "--npub", "npub1nope", "--out", str(out))
    assert result.returncode == 2
    assert f"{out}: sync.authors[0]: expected an npub1" in result.stderr
    result = run_powrd("init", "--npub", NPUB, "--relay", "https://relay.example", "--out", str(out))
    assert result.returncode == 2
    assert "relays[0].url: expected a ws:// or wss:// URL" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_without_flags_and_without_a_terminal_it_says_what_to_give(tmp_path: Path) -> None:
    result = run_powrd("init", "--out", str(tmp_path / "powrd.toml"))
    assert result.returncode == 2
    assert result.stderr == "powrd: init: give --npub NPUB (no terminal to ask on)\n"


def test_on_a_terminal_it_asks(tmp_path: Path) -> None:
    out = tmp_path / "powrd.toml"
    run = run_on_terminal(
        powrd_command("init", "--out", str(out)), env=child_environment(), cwd=REPO_ROOT, timeout=60,
        replies=[("Your public key", "not-a-key"), ("Your public key", NPUB),
                 ("Relays", "http://bad"), ("Relays", "ws://127.0.0.1:7777")],
    )
    assert run.returncode == 0, run.terminal
    assert "not a public key" in run.terminal
    assert "not a ws:// or wss:// URL: http://bad" in run.terminal
    assert f"powrd --config {out} ctl status --watch" in run.terminal
    config = Config.from_toml(out, {})
    assert config.sync.authors == (pubkey_of(ME),)
    assert config.relay_urls() == ("ws://127.0.0.1:7777",)

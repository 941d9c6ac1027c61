"""systemd/powrd.service: verified and scored by systemd-analyze, and documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "powrd.service"
INSTALLED_BINARY = "/usr/local/bin/powrd"
MAX_EXPOSURE = 1.1
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze is not installed (apt-get install systemd)"
)


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists on this machine.

    verify rejects a unit whose ExecStart binary is missing, and powrd is not installed
    at its production path here; nothing else in the unit changes.
    """
    binary = tmp_path / "powrd"
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in text
    copy = tmp_path / "powrd.service"
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={binary} "))
    return copy


def run_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, *args], capture_output=True, text=True, timeout=120, check=False
    )


@needs_analyze
def test_verify_is_clean(unit_copy: Path) -> None:
    result = run_analyze("verify", str(unit_copy))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "powrd.service" not in output, output


@needs_analyze
def test_security_exposure_is_low(unit_copy: Path) -> None:
    result = run_analyze("security", "--offline=yes", str(unit_copy))
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for powrd\.service: (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
    # The exit-status check agrees (threshold is in tenths of the displayed level).
    threshold = str(int(MAX_EXPOSURE * 10))
    strict = run_analyze("security", "--offline=yes", f"--threshold={threshold}", str(unit_copy))
    assert strict.returncode == 0, strict.stdout


def service_directives() -> list[tuple[str, str, str | None]]:
    """(key, value, preceding comment or None) for each [Service] assignment."""
    directives = []
    section = None
    previous_comment: str | None = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line
            previous_comment = None
        elif line.startswith("#"):
            previous_comment = line
        elif "=" in line and section == "[Service]":
            key, value = line.split("=", 1)
            directives.append((key, value, previous_comment))
            previous_comment = None
        else:
            previous_comment = None
    return directives


def test_required_settings() -> None:
    settings = {key: value for key, value, _ in service_directives()}
    assert settings["Type"] == "notify"
    assert settings["ExecStart"] == f"{INSTALLED_BINARY} run --config /etc/powrd/powrd.toml"
    assert settings["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert settings["WatchdogSec"] == "30"
    assert settings["Restart"] == "on-failure"
    assert settings["StateDirectory"] == "powrd"
    assert settings["RuntimeDirectory"] == "powrd"
    assert settings["DynamicUser"] == "yes"
    assert settings["NotifyAccess"] == "main"
    # Outbound TCP to relays and Unix sockets only.
    assert settings["RestrictAddressFamilies"].split() == ["AF_UNIX", "AF_INET", "AF_INET6"]
    assert "PrivateNetwork" not in settings


def test_no_core_dumps_and_no_link_local_or_multicast() -> None:
    settings = {key: value for key, value, _ in service_directives()}
    assert settings["LimitCORE"] == "0"
    denied = settings["IPAddressDeny"].split()
    assert {"169.254.0.0/16", "fe80::/10", "224.0.0.0/4", "ff00::/8"} <= set(denied)
    # Loopback stays reachable: a local relay, and the resolver at 127.0.0.53.
    assert not {"any", "localhost", "127.0.0.0/8", "::1/128"} & set(denied)
    # The commented drop-in example that also denies private ranges.
    example = [line for line in UNIT.read_text().splitlines()
               if line.startswith("#   IPAddressDeny=")]
    assert len(example) == 1
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"} <= set(
        example[0].split("=", 1)[1].split())


def test_every_directive_says_why() -> None:
    undocumented = [key for key, _, comment in service_directives() if comment is None]
    assert undocumented == []

"""Process hardening of `powrd run`: no core dumps, and a clear word about a blocked socket."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import write_config
from tests.support.daemon_process import child_environment, daemon_process, run_powrd

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="procfs and prctl")


@linux_only
def test_disable_core_dumps_makes_the_process_non_dumpable() -> None:
    script = (
        "from powrd.service.hardening import disable_core_dumps, is_dumpable\n"
        "import resource\n"
        "before = is_dumpable()\n"
        "disable_core_dumps()\n"
        "print(before, is_dumpable(), resource.getrlimit(resource.RLIMIT_CORE))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=child_environment(), timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(None, 2) == ["True", "False", "(0, 0)\n"]


@linux_only
def test_a_running_daemon_writes_no_core_file(tmp_path: Path) -> None:
    with daemon_process(write_config(tmp_path)) as daemon:
        limits = Path(f"/proc/{daemon.process.pid}/limits").read_text().splitlines()
        (core,) = [line for line in limits if line.startswith("Max core file size")]
        assert core.split()[4:6] == ["0", "0"], core
        assert daemon.stop() == 0


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda path: path.write_text("notes\n"), "a regular file"),
        (lambda path: path.mkdir(), "a directory"),
        (lambda path: path.symlink_to("/etc/hostname"), "a symbolic link to /etc/hostname"),
    ],
)
def test_something_else_at_the_socket_path_is_named_with_what_to_do(
    tmp_path: Path, make, what: str
) -> None:
    config = write_config(tmp_path)
    make(tmp_path / "powrd.sock")
    result = run_powrd("--config", str(config), "run")
    assert result.returncode == 1
    assert "None" not in result.stderr
    assert f"powrd.sock: cannot listen: the path holds {what}, not a socket" in result.stderr
    assert "set [control] socket to another path" in result.stderr

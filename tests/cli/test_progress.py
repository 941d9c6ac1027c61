"""Progress lines of `powrd import`, `export` and `reindex`: on a terminal, frames with a
count, a percentage and a rate; piped, redirected or --quiet, not one byte of them."""

from __future__ import annotations

import io
import logging
import re
import subprocess
from pathlib import Path

import pytest

from powrd.cli.progress import Progress
from tests.support.corpus import generate_corpus
from tests.support.daemon_process import REPO_ROOT, child_environment, powrd_command
from tests.support.terminal import run_on_terminal

FRAME = re.compile(r"^(import|export|reindex): [\d,]+ events\s+\d+%\s+[\d,]+ events/s(\s+ETA \d+:\d\d)?$")


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("progress") / "corpus.ndjson"
    path.write_text("\n".join(generate_corpus(6000, 6, seed=19)) + "\n")
    return path


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "powrd.toml"
    path.write_text('[store]\npath = "powrd.db"\n[logging]\nlevel = "warning"\n')
    return path


def terminal(config: Path, *args: str, stdout_to: io.BufferedWriter | None = None) -> tuple[int, list[str], str]:
    run = run_on_terminal(powrd_command("--config", str(config), *args), env=child_environment(),
                          cwd=REPO_ROOT, stdout_to=stdout_to)
    return run.returncode, run.frames(), run.terminal


def test_import_on_a_terminal_shows_updating_progress(config: Path, corpus_file: Path) -> None:
    code, frames, raw = terminal(config, "import", str(corpus_file))
    assert code == 0, raw
    progress = [f for f in frames if FRAME.match(f)]
    assert len(progress) >= 2, frames
    assert any(re.search(r"\s([1-9]\d?)%\s", f) for f in progress), progress  # a percent between
    # The summary follows on a clean line, as without a terminal.
    assert "stored: 6000" in frames
    assert raw.rstrip().endswith("incomplete templates: 0")


def test_piped_output_has_no_progress_and_no_escapes(config: Path, corpus_file: Path) -> None:
    result = subprocess.run(powrd_command("--config", str(config), "import", str(corpus_file)),
                            capture_output=True, env=child_environment(), cwd=REPO_ROOT, check=False)
    assert result.returncode == 0
    for stream in (result.stdout, result.stderr):
        assert b"\r" not in stream and b"\x1b" not in stream
    assert result.stderr == b""


def test_quiet_on_a_terminal_prints_only_the_summary(config: Path, corpus_file: Path) -> None:
    code, _, raw = terminal(config, "import", "--quiet", str(corpus_file))
    assert code == 0
    assert "\x1b" not in raw
    assert raw.replace("\r\n", "\n").startswith("stored: 6000\n")


def test_export_and_reindex_show_progress_on_the_terminal(config: Path, corpus_file: Path, tmp_path: Path) -> None:
    subprocess.run(powrd_command("--config", str(config), "import", str(corpus_file)),
                   capture_output=True, env=child_environment(), cwd=REPO_ROOT, check=True)
    exported = tmp_path / "out.ndjson"
    with exported.open("wb") as out:
        code, frames, _ = terminal(config, "export", "--all", stdout_to=out)
    assert code == 0
    assert any(FRAME.match(f) and f.startswith("export") for f in frames), frames
    assert len(exported.read_bytes().splitlines()) == 6000
    assert b"\x1b" not in exported.read_bytes()  # progress never reaches the data
    code, frames, _ = terminal(config, "reindex")
    assert code == 0
    assert any(FRAME.match(f) and f.startswith("reindex") for f in frames), frames
    assert "reindex: processed tables already matched the raw events" in frames


def test_frame_text() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = Progress(stream, "import", total=1000, enabled=True, clock=lambda: now[0])
    now[0] = 2.0
    assert progress.line(400, 250, 2.0) == "import: 400 events   25%  200 events/s  ETA 0:06"
    progress.update(400, 250)
    now[0] = 2.05
    progress.update(500, 300)  # within the redraw interval: not drawn
    progress.close()
    assert stream.getvalue() == "\rimport: 400 events   25%  200 events/s  ETA 0:06\x1b[K\r\x1b[K"
    unknown = Progress(io.StringIO(), "import", total=None, enabled=True)
    assert unknown.line(10, 10, 1.0) == "import: 10 events  10 events/s"
    silent = io.StringIO()
    with Progress(silent, "import", total=10, enabled=False) as off:
        off.update(5)
    assert silent.getvalue() == ""


def test_a_log_line_never_lands_on_the_progress_line() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with Progress(stream, "import", total=100, enabled=True) as progress:
            progress.update(10)
            logging.getLogger("powrd.test").warning("store full")
            progress.update(20)  # drawn again at once, below the log line
        assert not handler.filters  # the progress line's eraser is gone with it
    finally:
        root.removeHandler(handler)
    shown = stream.getvalue()
    assert shown.startswith("\rimport: 10 events")
    assert "\x1b[K\r\x1b[Kstore full\n\rimport: 20 events" in shown

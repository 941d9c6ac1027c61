"""The control method table runs without a socket: another transport calls the same code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from powrd.control.rpc import NOT_FOUND, InvalidParams, MethodError
from powrd.protocol.event import loads
from powrd.service.methods import build_methods
from tests.support.daemon import running_daemon, write_config
from tests.support.events import coordinate, keys_for, make_exercise, pubkey_of

ALICE = keys_for("methods", 0)
PACKAGE = Path(__file__).resolve().parents[2] / "powrd"


async def test_handlers_answer_when_called_directly(tmp_path: Path) -> None:
    squat = make_exercise(ALICE, "squat", title="Back Squat")
    config = write_config(tmp_path, authors=[pubkey_of(ALICE)])
    async with running_daemon(config) as daemon:
        assert daemon.pipeline is not None
        await daemon.pipeline.submit("import", [(loads(squat), len(squat))])
        methods = build_methods(daemon)

        assert (await methods["status"]({}))["state"] == "running"
        found = await methods["events.query"]({"filter": {"kinds": [33401]}})
        assert [event["id"] for event in found["events"]] == [loads(squat)["id"]]
        exercises = await methods["library.exercises"]({"author": pubkey_of(ALICE)})
        assert [e["title"] for e in exercises["exercises"]] == ["Back Squat"]

        with pytest.raises(InvalidParams, match="unknown parameter 'bogus'"):
            await methods["events.query"]({"bogus": 1})
        with pytest.raises(MethodError) as caught:
            await methods["library.template"]({"coordinate": coordinate(33402, ALICE, "none")})
        assert caught.value.code == NOT_FOUND


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_control_is_a_transport_that_imports_nothing_from_service() -> None:
    offenders = {
        f"{path.relative_to(PACKAGE.parent)}: {module}"
        for path in (PACKAGE / "control").rglob("*.py")
        for module in imported_modules(path)
        if module == "powrd.service" or module.startswith(("powrd.service.", "powrd.cli"))
    }
    assert offenders == set()


async def test_a_retired_config_key_is_logged_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("[store]\n", "[store]\nbatch_max_events = 2000\n"))
    with capture_logs() as logs:
        async with running_daemon(config) as daemon:
            assert daemon.state == "running"
    ignored = [entry for entry in logs if entry["event"] == "config key ignored"]
    assert [entry["key"] for entry in ignored] == ["store.batch_max_events"]

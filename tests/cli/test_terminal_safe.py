"""`powrd ctl` never lets text from an event or a relay drive the terminal (issue 13
item 9): control characters and escape sequences are shown as visible escapes, absurd
timestamps print as numbers, and --json output is the daemon's answer unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powrd.cli import render
from powrd.cli.safe_text import safe, safe_json
from tests.support.daemon import write_config
from tests.support.daemon_process import DaemonProcess, daemon_process, poll, run_powrd
from tests.support.events import coordinate, keys_for, make_exercise, make_record, pubkey_of
from tests.support.relays import LocalRelayHandle, seeded_relay

# What must never reach the terminal raw: C0 but tab (newline is the renderer's own line
# break, checked separately), DEL, C1.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
HOSTILE_TITLE = "Squat\x1b[2J\x1b]0;owned\x07\x9b31m\x7f\u202eend"
HUGE = 9_223_372_036_854_775_807
AUTHOR = keys_for("terminal-safe", 0)


def test_escapes_are_visible() -> None:
    assert safe("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert safe("t\x1b]0;title\x07") == "t\\x1b]0;title\\x07"
    assert safe("\x9b1m\x7f\x00") == "\\x9b1m\\x7f\\x00"
    assert safe("left\u202eright") == "left\\u202eright"
    assert safe("tab\tkept, ünïcode kept ✓") == "tab\tkept, ünïcode kept ✓"


def test_timestamps_outside_the_printable_range_print_raw() -> None:
    assert render.timestamp(1_700_000_000) == "2023-11-14 22:13:20Z"
    assert render.timestamp(HUGE) == str(HUGE)
    assert render.timestamp(-5) == "-5"
    assert render.timestamp(253_402_300_800) == "253402300800"
    assert render.timestamp("\x1b[2J") == "\\x1b[2J"
    assert render.timestamp(None) == "-"


def _no_control_characters(output: str) -> None:
    for line in output.split("\n"):
        assert not UNSAFE.search(line), repr(line)


anything = st.text(max_size=40)
# Python's json reads Infinity and NaN, so a misbehaving daemon could send them.
values = st.one_of(anything, st.integers(), st.none(), st.booleans(), st.floats())


@settings(max_examples=400, deadline=None)
@given(words=st.lists(anything, min_size=12, max_size=12), numbers=st.lists(values, min_size=4, max_size=4))
def test_no_control_character_survives_rendering(words: list[str], numbers: list[Any]) -> None:
    w, n = words, numbers
    parameter = {"name": w[0], "unit": w[1], "value": w[2]}
    exercise = {"title": w[3], "equipment": w[4], "difficulty": w[5], "format": [w[6]],
                "format_units": [w[7]], "hashtags": [w[8]], "coordinate": w[9]}
    outputs = [
        render.exercises([exercise]),
        render.template({"title": w[0], "type": w[1], "coordinate": w[2], "complete": False,
                         "missing": [w[3]], "rounds": w[4], "content": w[5],
                         "exercises": [{"exercise": exercise, "parameters": [parameter],
                                        "coordinate": w[6]}]}),
        render.records([{"title": w[0], "type": w[1], "start": n[0], "end": n[1],
                         "created_at": n[2], "completed": n[3], "event_id": w[2],
                         "template": w[3], "sets": [{"exercise_title": w[4],
                                                     "parameters": [parameter]}]}]),
        render.events([{"created_at": n[0], "kind": n[1], "id": w[0], "pubkey": w[1],
                        "tags": [["title", w[2]]], "content": w[3]}]),
        render.status({"version": w[0], "state": w[1], "uptime_s": n[1], "health": [w[2]],
                       "relays": [{"url": w[3], "state": w[4], "last_error": w[5]}],
                       "counts": {"by_kind": {w[6]: 1}}}),
        render.relays([{"url": w[0], "state": w[1], "last_error": w[2],
                        "backfill": {"state": "running", "scopes_done": w[3], "scopes_total": n[0]}}]),
        render.status({"relays": [{"url": w[0], "backfill": {
            "state": "running", "scopes_done": n[0], "scopes_total": w[1], "pages": w[2],
            "events": n[1], "oldest_created_at": n[2], "events_per_s": n[3], "started_at": n[0]}}]}),
        render.fetch_queue([{"coordinate": w[0], "state": w[1], "next_attempt": n[0],
                             "last_error": w[2]}]),
        render.outbox([{"event_id": w[0], "kind": n[0], "queued_at": n[1],
                        "deliveries": [{"relay": w[1], "state": w[2]}]}]),
    ]
    for output in outputs:
        _no_control_characters(output)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_json_output_is_the_same_value_and_terminal_safe(value: Any) -> None:
    shown = safe_json(json.dumps(value, indent=2, ensure_ascii=False))
    assert json.loads(shown) == value
    assert not UNSAFE.search(shown.replace("\n", ""))
    assert not re.search("[\u2028-\u202e\u2066-\u2069]", shown)


# -- through a real daemon -------------------------------------------------------------

EXERCISE = make_exercise(AUTHOR, "hostile", title=HOSTILE_TITLE, t="legs\x1b[31m")
RECORD = make_record(AUTHOR, "far-future", [(coordinate(33401, AUTHOR, "hostile"), "", "100", "5")],
                     title="Far\x1b]52;c;Zm9v\x07", start=HUGE, end=HUGE, created_at=1_700_000_000)


@pytest.fixture(scope="module")
def relay() -> Iterator[LocalRelayHandle]:
    with seeded_relay([EXERCISE, RECORD]) as handle:
        yield handle


@pytest.fixture(scope="module")
def daemon(relay: LocalRelayHandle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    config = write_config(tmp_path_factory.mktemp("safe"), relays=[relay.url], authors=[pubkey_of(AUTHOR)])
    with daemon_process(config) as process:
        poll(lambda: process.call("status")["counts"]["events"] >= 2, timeout=20, what="the events to sync")
        yield process
        assert process.stop() == 0


def ctl(daemon: DaemonProcess, *args: str) -> str:
    result = run_powrd("ctl", *args, "--config", str(daemon.config))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_exercises_show_escapes_instead_of_obeying_them(daemon: DaemonProcess) -> None:
    out = ctl(daemon, "exercises")
    _no_control_characters(out)
    assert "Squat\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\\x7f\\u202eend" in out
    assert "legs\\x1b[31m" in out
    # --json is the method's answer: the title exactly as stored, written so that no
    # character of it acts on a terminal.
    shown = ctl(daemon, "exercises", "--json")
    _no_control_characters(shown)
    [exercise] = json.loads(shown)["exercises"]
    assert exercise["title"] == HOSTILE_TITLE


def test_records_with_an_absurd_start_print(daemon: DaemonProcess) -> None:
    out = ctl(daemon, "records")
    _no_control_characters(out)
    assert out.startswith(f"{HUGE}  Far\\x1b]52;c;Zm9v\\x07  ")
    [record] = json.loads(ctl(daemon, "records", "--json"))["records"]
    assert record["title"] == "Far\x1b]52;c;Zm9v\x07"


def test_events_query_table_is_safe(daemon: DaemonProcess) -> None:
    out = ctl(daemon, "query", '{"kinds": [33401]}')
    _no_control_characters(out)
    assert "Squat\\x1b[2J" in out

"""Tests for powrd.logs: JSON/console output, levels, stable keys and secret redaction."""

from __future__ import annotations

import io
import json
import logging
import os
import select
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from nostr_sdk import Keys

from powrd.logs import REDACTED, configure_logging, get_logger

NSEC = Keys.parse("5" * 64).secret_key().to_bech32()
SECRET_HEX = Keys.parse("5" * 64).secret_key().to_hex()


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    # Split on "\n" only: str.splitlines() would also split inside values at U+0085 etc.
    return [json.loads(line) for line in stream.getvalue().split("\n") if line]


def test_json_lines_have_the_standard_and_stable_keys() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    get_logger("powrd.sync.relay").info(
        "event rejected", relay="wss://r.example", event_id="ab" * 32, kind=1301,
        reason="invalid: bad signature",
    )
    [record] = lines(stream)
    assert list(record)[:4] == ["timestamp", "level", "logger", "event"]
    assert record["level"] == "info"
    assert record["logger"] == "powrd.sync.relay"
    assert record["event"] == "event rejected"
    assert record["relay"] == "wss://r.example"
    assert record["event_id"] == "ab" * 32
    assert record["kind"] == 1301
    assert record["reason"] == "invalid: bad signature"
    stamp = datetime.fromisoformat(record["timestamp"])
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0


def test_level_filters_lines() -> None:
    stream = io.StringIO()
    configure_logging("warning", stream=stream)
    log = get_logger("powrd.test")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [(r["level"], r["event"]) for r in lines(stream)] == [("warning", "w"), ("error", "e")]


def test_debug_level_shows_everything_and_level_names_are_case_insensitive() -> None:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream)
    get_logger("powrd.test").debug("d", n=1)
    assert lines(stream)[0]["event"] == "d"


def test_reconfiguring_replaces_the_previous_output() -> None:
    first, second = io.StringIO(), io.StringIO()
    log = get_logger("powrd.test")
    configure_logging("info", stream=first)
    log.info("one")
    configure_logging("error", stream=second)
    log.info("two")
    log.error("three")
    assert [r["event"] for r in lines(first)] == ["one"]
    assert [r["event"] for r in lines(second)] == ["three"]


def test_logger_made_before_configuration_follows_it() -> None:
    early = get_logger("powrd.early")
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    early.info("hello")
    assert lines(stream)[0]["logger"] == "powrd.early"


def test_standard_library_and_plain_structlog_records_share_the_format() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    logging.getLogger("websockets.client").warning("connection %s lost", "wss://r.example")
    structlog.get_logger("powrd.other").info("direct", kind=1)
    foreign, direct = lines(stream)
    assert foreign["event"] == "connection wss://r.example lost"
    assert foreign["logger"] == "websockets.client"
    assert foreign["level"] == "warning"
    assert "timestamp" in foreign
    assert direct["logger"] == "powrd.other"
    assert direct["kind"] == 1


def test_exceptions_are_rendered_as_text() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("powrd.test").exception("failed")
    [record] = lines(stream)
    assert record["level"] == "error"
    assert "RuntimeError: boom" in record["exception"]
    assert "Traceback" in record["exception"]


def test_values_json_cannot_hold_are_still_written() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    get_logger("powrd.test").info("odd", path=Path("/x/y"), huge=2**70, error=ValueError("v"))
    [record] = lines(stream)
    assert record["path"] == "/x/y"
    assert record["huge"] == 2**70
    assert record["error"] == "ValueError: v"


def test_console_format_on_a_plain_stream() -> None:
    stream = io.StringIO()
    configure_logging("info", "console", stream)
    get_logger("powrd.test").info("hello", relay="wss://r.example", secret_key=SECRET_HEX)
    text = stream.getvalue()
    assert "hello" in text and "relay=wss://r.example" in text
    assert "\x1b[" not in text
    assert SECRET_HEX not in text and REDACTED in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_auto_format_uses_the_console_on_a_terminal() -> None:
    stream = TerminalStream()
    configure_logging("info", "auto", stream)
    get_logger("powrd.test").info("hello")
    text = stream.getvalue()
    assert "hello" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_json_format_is_forced_even_on_a_terminal() -> None:
    stream = TerminalStream()
    configure_logging("info", "json", stream)
    get_logger("powrd.test").info("hello")
    assert lines(stream)[0]["event"] == "hello"


@pytest.mark.parametrize(("level", "fmt"), [("verbose", "auto"), ("info", "xml")])
def test_unknown_level_or_format_is_refused(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match="unknown log"):
        configure_logging(level, fmt, io.StringIO())


# --- redaction ---------------------------------------------------------------------


@pytest.mark.parametrize("key", ["secret", "secret_key", "nsec", "password", "Password"])
def test_values_under_secret_key_names_are_redacted(key: str) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    get_logger("powrd.test").info("loaded", **{key: SECRET_HEX})
    [record] = lines(stream)
    assert record[key] == REDACTED
    assert SECRET_HEX not in stream.getvalue()


def test_nsec_anywhere_is_redacted() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)

    class Holder:
        def __str__(self) -> str:
            return f"holder({NSEC})"

    log = get_logger("powrd.test")
    log.info(
        f"message with {NSEC} inside",
        note=f"key={NSEC};",
        upper=NSEC.upper(),
        nested={"list": [NSEC, (1, NSEC)], "password": "hunter2", NSEC: "as a key"},
        obj=Holder(),
        error=ValueError(f"bad key {NSEC}"),
    )
    try:
        raise ValueError(f"cannot use {NSEC}")
    except ValueError:
        log.exception("failed")
    logging.getLogger("foreign").warning("foreign %s", NSEC)
    output = stream.getvalue()
    assert "nsec1" not in output.lower()
    assert "hunter2" not in output
    first = lines(stream)[0]
    assert first["event"] == f"message with {REDACTED} inside"
    assert first["note"] == f"key={REDACTED};"
    assert first["nested"]["list"] == [REDACTED, [1, REDACTED]]
    assert first["nested"]["password"] == REDACTED
    assert first["obj"] == f"holder({REDACTED})"


def test_a_truncated_or_mistyped_nsec_is_hidden_whole() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    get_logger("powrd.test").info("x", value="nsec1abcIO_rest")
    assert lines(stream)[0]["value"] == f"{REDACTED}_rest"


@settings(max_examples=100, deadline=None)
@given(
    before=st.text(max_size=10),
    key=st.from_regex(r"n(crypt)?sec1[0-9a-z]{1,60}", fullmatch=True),
    after=st.text(alphabet=" .,;:!?()[]{}\"'/-_=+", max_size=10),
)
def test_no_nsec_survives_rendering(before: str, key: str, after: str) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    get_logger("powrd.test").info(before + key + after, field=[before + key])
    assert key not in stream.getvalue()
    [record] = lines(stream)
    assert record["event"].endswith(REDACTED + after)


def _terminal_file() -> tuple[Any, Any]:
    controller, child_side = os.openpty()
    return os.fdopen(controller, "rb", buffering=0), os.fdopen(child_side, "w", buffering=1)


def _read_available(reader: Any) -> str:
    chunks = []
    while select.select([reader], [], [], 0.2)[0]:
        chunks.append(reader.read(65536))
    return b"".join(chunks).decode()


def test_json_when_the_stream_is_journald_even_on_a_terminal() -> None:
    # The pty stands in for the journal socket: what matters is that device and inode
    # match $JOURNAL_STREAM; a terminal makes the choice visible (auto would be console).
    reader, writer = _terminal_file()
    with reader, writer:
        info = os.fstat(writer.fileno())
        configure_logging("info", "auto", writer, {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"})
        get_logger("powrd.test").info("to the journal")
        line = _read_available(reader).strip()
    assert json.loads(line)["event"] == "to the journal"


def test_an_inherited_journal_stream_variable_does_not_count() -> None:
    reader, writer = _terminal_file()
    with reader, writer:
        configure_logging("info", "auto", writer, {"JOURNAL_STREAM": "1:2"})
        get_logger("powrd.test").info("on my terminal")
        text = _read_available(reader)
    assert "on my terminal" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.strip())

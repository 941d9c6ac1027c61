"""Oversized limits and filters are refused with -32602 naming the parameter, never -32603."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from powrd.control.client import ControlClient, RpcError
from powrd.control.rpc import INVALID_PARAMS
from powrd.protocol.event import loads
from tests.support.daemon import running_daemon, write_config
from tests.support.events import keys_for, make_exercise, pubkey_of

ALICE = keys_for("request-limits", 0)
HUGE = 9223372036854775808  # 2**63: does not fit SQLite's integer

REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("library.exercises", {"limit": -1}, "limit"),
    ("library.exercises", {"limit": 0}, "limit"),
    ("library.exercises", {"limit": HUGE}, "limit"),
    ("library.exercises", {"limit": 10_001}, "limit"),
    ("library.exercises", {"limit": True}, "limit"),
    ("library.records", {"limit": -1}, "limit"),
    ("library.records", {"limit": HUGE}, "limit"),
    ("library.records", {"since": HUGE}, "since"),
    ("library.records", {"until": -5}, "until"),
    ("events.query", {"filter": {"kinds": list(range(65_536))}}, "filter.kinds"),
    ("events.query", {"filter": {"#t": [str(i) for i in range(60_000)]}}, "filter.#t"),
    ("events.query", {"filter": {"ids": ["0" * 64] * 10_001}}, "filter.ids"),
    ("events.query", {"filter": {"authors": ["0" * 64] * 10_001}}, "filter.authors"),
    ("events.query", {"filter": {"limit": HUGE}}, "filter.limit"),
    ("events.query", {"filter": {"limit": 0}}, "filter.limit"),
    ("publish", {"kind": 33401, "content": "", "tags": [], "created_at": 2**64}, "created_at"),
    ("publish", {"kind": 33401, "content": "", "tags": [], "created_at": -1}, "created_at"),
]


@pytest.fixture
async def client(tmp_path: Path):
    config = write_config(tmp_path)
    # Room for the largest requests below (a 65,536-kind filter is ~400 kB).
    text = config.read_text().replace('[control]\nsocket = "powrd.sock"',
                                      '[control]\nsocket = "powrd.sock"\nmax_request_bytes = 4194304')
    config.write_text(text)
    async with running_daemon(config) as daemon:
        assert daemon.pipeline is not None
        exercise = make_exercise(ALICE, "squat")
        await daemon.pipeline.submit("test", [(loads(exercise), len(exercise))])
        async with ControlClient(daemon.config.control.socket) as connected:
            yield connected


async def test_oversized_requests_are_invalid_params_naming_the_parameter(
    client: ControlClient,
) -> None:
    for method, params, name in REFUSED:
        with pytest.raises(RpcError) as refused:
            await client.call(method, params)
        assert refused.value.code == INVALID_PARAMS, (method, params.keys(), refused.value)
        assert refused.value.message.startswith(f"invalid params: {name}:"), refused.value.message


async def test_the_largest_allowed_requests_are_answered(client: ControlClient) -> None:
    tags = {f"#{letter}": [str(i) for i in range(10_000)] for letter in "tdep"}
    big = {"kinds": list(range(1_000)), "ids": ["0" * 64] * 10_000,
           "authors": [pubkey_of(ALICE)] + ["0" * 64] * 9_999, **tags, "limit": 5_000}
    assert (await client.call("events.query", {"filter": big}))["events"] == []
    found = await client.call("events.query", {"filter": {"kinds": [33401], "limit": 1}})
    assert len(found["events"]) == 1
    assert len((await client.call("library.exercises", {"limit": 10_000}))["exercises"]) == 1
    assert (await client.call("library.records", {"limit": 1, "since": 0,
                                                  "until": 2**53 - 1}))["records"] == []

"""Missing-exercise resolution: fetch queue, relay hints, batching, backoff, not_found."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from powrd.config import ResolverConfig
from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.service.methods import build_methods
from powrd.store import fetchqueue
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline
from powrd.sync.resolver import Resolver
from tests.support.daemon import running_daemon, write_config
from tests.support.events import (
    coordinate,
    keys_for,
    make_exercise,
    make_record,
    make_template,
    pubkey_of,
)
from tests.support.faultrelay import FaultRelay
from tests.support.proxy import proxy_in_front

ALICE = keys_for("resolver", 0)
FAST = ResolverConfig(retry_min_seconds=0.2, retry_max_seconds=2.0, fetch_timeout_seconds=5.0,
                        not_found_retry_seconds=3600)


@pytest.fixture
def store(tmp_path: Path):
    with Store(tmp_path / "powrd.db") as s:
        yield s


def submit(pipeline: Pipeline, *events: str):
    return pipeline.submit_blocking("test", [(loads(e), len(e)) for e in events])


def queue(store: Store) -> dict[str, dict]:
    return {e["coordinate"]: e for e in fetchqueue.entries(store.reader())}


async def test_template_resolution_with_hints_and_a_relay_that_is_not_configured(
    relay_factory, tmp_path: Path
) -> None:
    relay_a, relay_b = await relay_factory(), await relay_factory()
    on_a = coordinate(33401, ALICE, "squat")
    on_b = coordinate(33401, ALICE, "bench")
    nowhere = coordinate(33401, ALICE, "deadlift")
    template = make_template(ALICE, "push", [(on_a, ""), (on_b, relay_b.url), (nowhere, "")])
    await relay_a.publish([make_exercise(ALICE, "squat"), template])
    await relay_b.publish([make_exercise(ALICE, "bench", title="Bench Press")])
    config = write_config(tmp_path, relays=[relay_a.url], authors=[pubkey_of(ALICE)])
    async with running_daemon(config) as daemon:
        assert daemon.store is not None
        tpl = coordinate(33402, ALICE, "push")
        methods = build_methods(daemon)

        async def missing() -> list[str]:
            return (await methods["library.template"]({"coordinate": tpl}))["missing"]

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            entry = queue(daemon.store).get(nowhere)
            if entry and entry["state"] == "not_found" and await missing() == [nowhere]:
                break
            await asyncio.sleep(0.05)
        assert await missing() == [nowhere]
        assert set(queue(daemon.store)) == {nowhere}
        resolved = await methods["library.template"]({"coordinate": tpl})
        assert resolved["complete"] is False
        assert [e["exercise"]["title"] if e["exercise"] else None for e in resolved["exercises"]] == [
            "Back Squat", "Bench Press", None]
        # The missing exercise appears on A: the live subscription brings it, no restart.
        await relay_a.publish([make_exercise(ALICE, "deadlift", title="Deadlift")])

        async def complete() -> bool:
            return (await methods["library.template"]({"coordinate": tpl}))["complete"]

        deadline = time.monotonic() + 30
        while not await complete():
            assert time.monotonic() < deadline, "template never completed"
            await asyncio.sleep(0.05)
        assert queue(daemon.store) == {}


async def test_missing_exercises_of_one_author_cost_one_req_per_relay(store: Store) -> None:
    exercises = [make_exercise(ALICE, f"ex{i}", title=f"Exercise {i}") for i in range(30)]
    template = make_template(ALICE, "big", [(coordinate(33401, ALICE, f"ex{i}"), "") for i in range(30)])
    async with FaultRelay([loads(e) for e in exercises]) as relay:
        pipeline = Pipeline(store, Policy())
        resolver = Resolver(pipeline, lambda: [relay.url], FAST)
        pipeline.on_commit = resolver.on_commit
        submit(pipeline, template)
        assert len(queue(store)) == 30
        assert await resolver.run_once()
        reqs = [frame for frame in relay.received if frame[0] == "REQ"]
        assert len(reqs) == 1
        assert sorted(reqs[0][2]["#d"]) == sorted(f"ex{i}" for i in range(30))
        assert queue(store) == {}


async def test_unreachable_relay_backs_off_between_attempts(store: Store) -> None:
    async with proxy_in_front(None) as dead:  # bound, but refuses every connection
        pipeline = Pipeline(store, Policy())
        now = [time.time()]
        settings = ResolverConfig(retry_min_seconds=10, retry_max_seconds=1000, fetch_timeout_seconds=5)
        resolver = Resolver(pipeline, lambda: [dead.url], settings, clock=lambda: now[0])
        submit(pipeline, make_template(ALICE, "t", [(coordinate(33401, ALICE, "gone"), "")]))
        gaps = []
        for _ in range(4):
            before = int(now[0])
            assert await resolver.run_once()
            (entry,) = queue(store).values()
            assert entry["state"] == "pending" and "connect" in entry["last_error"]
            gaps.append(entry["next_attempt"] - before)
            assert not await resolver.run_once()  # nothing is due before the backoff ends
            now[0] = entry["next_attempt"]
        assert entry["attempts"] == 4
        assert gaps == sorted(gaps) and gaps[-1] >= 4 * gaps[0]
        assert dead.accepted == 4


async def test_not_found_after_every_relay_answered_then_retried_when_asked(store: Store) -> None:
    async with FaultRelay([]) as relay:
        pipeline = Pipeline(store, Policy())
        resolver = Resolver(pipeline, lambda: [relay.url], FAST)
        wanted = coordinate(33401, ALICE, "later")
        submit(pipeline, make_template(ALICE, "t", [(wanted, "")]))
        assert await resolver.run_once()
        entry = queue(store)[wanted]
        assert entry["state"] == "not_found"
        assert entry["next_attempt"] >= time.time() + 3000
        assert not await resolver.run_once()  # not due again soon
        await relay.add_event(loads(make_exercise(ALICE, "later")))
        await resolver.retry_not_found()  # e.g. a relay was added
        assert await resolver.run_once()
        assert queue(store) == {}


async def test_record_depends_on_template_and_hint_is_tried_first(store: Store) -> None:
    squat = coordinate(33401, ALICE, "squat")
    tpl = coordinate(33402, ALICE, "legs")
    async with FaultRelay([loads(make_template(ALICE, "legs", [(squat, "")])),
                           loads(make_exercise(ALICE, "squat"))]) as hinted, FaultRelay([]) as configured:
        pipeline = Pipeline(store, Policy())
        resolver = Resolver(pipeline, lambda: [configured.url], FAST, allow_private_relays=True)
        record = make_record(ALICE, "r1", [(squat, hinted.url, "100", "5", "8", "normal")],
                             template=(tpl, hinted.url))
        submit(pipeline, record)
        assert set(queue(store)) == {squat, tpl}
        assert await resolver.run_once()
        assert queue(store) == {}
        assert configured.received == []  # everything came from the hinted relay
        rows = store.reader().execute("SELECT count(*) FROM incomplete_templates").fetchone()
        assert rows == (0,)


async def test_pubkeyless_reference_is_fetched_from_the_author(store: Store) -> None:
    async with FaultRelay([loads(make_exercise(ALICE, "plank", title="Plank"))]) as relay:
        pipeline = Pipeline(store, Policy())
        resolver = Resolver(pipeline, lambda: [relay.url], FAST)
        submit(pipeline, make_template(ALICE, "core", [("33401:plank", "")]))
        assert await resolver.run_once()
        assert queue(store) == {}
        reqs = [f for f in relay.received if f[0] == "REQ"]
        assert reqs[0][2]["authors"] == [pubkey_of(ALICE)]


def test_non_websocket_hints_are_never_contacted(store: Store) -> None:
    pipeline = Pipeline(store, Policy())
    resolver = Resolver(pipeline, lambda: ["ws://configured.invalid"], FAST)
    from powrd.sync.resolver import Missing

    order = resolver._relay_order([Missing("33401:x:y", 33401, "x", "y",
                                           ("http://evil.example", "file:///etc/passwd", "wss://ok.example"))])
    assert order == ["wss://ok.example", "ws://configured.invalid"]

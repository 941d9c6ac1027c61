"""The dialects apps publish, read back through the control methods as the apps meant them.

Each event is built from a tag shape POWR (app and powr_web) or RUNSTR publishes, signed,
served by a real relay and synced by a real daemon; the expected processed result is
checked through ``library.*`` — not only that the event was stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from powrd.protocol.event import loads
from powrd.service.methods import build_methods
from powrd.store import queries
from tests.support.daemon import running_daemon, wait_for, write_config
from tests.support.dialects import (
    APP_ID,
    BROKEN,
    COACH_PRESS,
    GOBLET,
    HINT,
    KINDS,
    ME,
    NOWHERE,
    POWR,
    RUNNER,
    TEMPLATE,
    corpus,
)
from tests.support.events import coordinate


def loads_id(event: str) -> str:
    return str(loads(event)["id"])


def by_title(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {record["title"]: record for record in records}


async def test_dialects_read_as_their_apps_meant(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory()
    events = corpus()
    await relay.publish(events)
    # The coach is not a synced author: their exercise arrives only as a list's dependency.
    # Media stays off: the exercise's video is never downloaded, only its imeta read.
    config = write_config(
        tmp_path, relays=[relay.url], authors=[ME, RUNNER], kinds=KINDS,
        extra="[media]\nenabled = false",
    )
    async with running_daemon(config) as daemon:
        assert daemon.store is not None
        store = daemon.store
        methods = build_methods(daemon)
        await wait_for(
            lambda: queries.count(store.reader(), "SELECT count(*) FROM nostr_events")
            == len(events),
            what="every event synced, the coach's exercise fetched as a dependency",
        )

        # Every reading that interpreted something is noted on its event, once.
        expected_warnings = {
            0: ["holds (name, unit) pairs"],
            2: ["'33401:local:m5x2k1q-abc123def45' lacks the pubkey", "has no relay slot",
                "'33401::local:m5x2k1q-abc123def45' lacks the pubkey"],
            3: ["'junk' is not a coordinate", "is kind 33402, not 33401"],
            4: ["start 1736950800000 has 13 digits", "end 1736954400000 has 13 digits",
                "'33402::tpl-rn-2' lacks the pubkey"],
            5: ["has no relay slot"],
            6: ["9223372036854775807 is not a time", "-5 is not a time", "end is before"],
            9: ["'33401:local:m5x2k1q-abc123def45' lacks the pubkey"],
        }
        for index, text in enumerate(events):
            warnings = queries.processing_warnings(store.reader(), loads_id(text))
            wanted = expected_warnings.get(index, [])
            assert len(warnings) == len(wanted), (index, warnings)
            assert all(part in warning for part, warning in zip(wanted, warnings, strict=True))

        exercises = {
            e["coordinate"]: e
            for e in (await methods["library.exercises"]({}))["exercises"]
        }
        goblet = exercises[GOBLET]
        assert goblet["d"] == APP_ID
        assert goblet["format_units"] == ["kg", "count", "warmup|normal|drop|failure"]
        media = store.reader().execute(
            "SELECT url, media_type, extra FROM exercise_media WHERE exercise_coordinate = ?",
            (GOBLET,),
        ).fetchall()
        assert media == [("http://127.0.0.1:9/goblet.mp4", "video/mp4",
                          '{"duration":"45","purpose":"demonstration"}')]

        template = await methods["library.template"]({"coordinate": TEMPLATE})
        assert template["complete"] is True
        assert template["unreadable"] == []
        first, second = template["exercises"]
        assert (first["coordinate"], first["relay_hint"], first["params"]) == (
            GOBLET, None, ["3", "10", "normal"])
        assert first["set_number"] is None
        assert [p["value"] for p in first["parameters"]] == ["3", "10", "normal"]
        assert second["params"] == ["20", "8", "normal", "1"]
        assert second["set_number"] == 1
        assert [(p["name"], p["unit"], p["value"]) for p in second["parameters"]] == [
            ("weight", "kg", "20"), ("reps", "count", "8"),
            ("set_type", "warmup|normal|drop|failure", "normal")]

        broken = await methods["library.template"]({"coordinate": BROKEN})
        assert broken["complete"] is False
        assert broken["exercises"] == []
        assert [u["tag"] for u in broken["unreadable"]] == [
            ["exercise", "junk", "", "1"], ["exercise", f"33402:{ME}:not-an-exercise"]]
        assert "not a coordinate" in broken["unreadable"][0]["warning"]

        records = by_title((await methods["library.records"]({"author": ME}))["records"])
        web = records["powr_web session"]
        assert (web["start"], web["end"]) == (1736950800, 1736954400)
        assert (web["rounds_completed"], web["interval"]) == (1.5, 30.5)
        assert web["template"] == TEMPLATE
        assert (web["activity"], web["metrics"]) == (None, {})
        assert web["sets"][0]["set_number"] == 1
        assert [p["value"] for p in web["sets"][0]["parameters"]] == ["20", "8", "normal"]
        legacy = records["Legacy"]
        assert legacy["sets"][0]["relay_hint"] is None
        assert legacy["sets"][0]["params"] == ["50", "10", "8", "normal"]
        absurd = records["Absurd"]
        assert (absurd["start"], absurd["end"]) == (9223372036854775807, -5)
        # The millisecond record is found by a --since in seconds.
        since = await methods["library.records"]({"author": ME, "since": 1736950000})
        assert "powr_web session" in by_title(since["records"])

        runs = by_title((await methods["library.records"]({"author": RUNNER}))["records"])
        run = runs["Morning Run"]
        assert run["activity"] == "running"
        assert run["start"] == 1736950800
        assert run["sets"] == []
        assert run["metrics"] == {
            "distance_m": 5000, "duration_s": 1695, "calories": 285, "elevation_gain_m": 45,
            "avg_pace_s_per_km": 339,
            "splits": [{"n": 1, "time_s": 338}, {"n": 2, "time_s": 340}],
        }
        imperial = runs["Imperial Run"]["metrics"]
        assert imperial["distance_m"] == 4988.966
        assert imperial["elevation_gain_m"] == 30.48
        assert imperial["duration_s"] == 1695
        assert imperial["avg_pace_s_per_km"] == 338.647

        async def collections() -> list[dict[str, Any]]:
            return (await methods["library.collections"]({"author": ME}))["collections"]

        async def settled() -> bool:
            found = await collections()
            return bool(found) and found[0]["missing"] == [NOWHERE]

        await wait_for(settled, what="the coach's exercise resolved in the list")
        saved, workouts = await collections()
        assert (saved["d"], saved["title"], saved["kind_counts"]) == (
            "powr-exercise-list", "My exercises", {"33401": 3})
        assert saved["coordinate"] == coordinate(30003, POWR, "powr-exercise-list")
        assert saved["members"] == [
            {"coordinate": GOBLET, "present": True},
            {"coordinate": COACH_PRESS, "present": True},
            {"coordinate": NOWHERE, "present": False},
        ]
        assert (workouts["title"], workouts["members"], workouts["missing"]) == (
            "powr-workout-list", [{"coordinate": TEMPLATE, "present": True}], [])
        fetch = {e["coordinate"]: e for e in (await methods["fetch.list"]({}))["entries"]}
        assert NOWHERE in fetch
        assert HINT in fetch[NOWHERE]["relay_hints"]


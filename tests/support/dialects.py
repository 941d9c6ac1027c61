"""A corpus of the NIP-101e dialects apps publish (see spec/nip101e.md, "Dialects").

Each event is built from a tag shape that POWR (the app and powr_web) or RUNSTR writes,
signed with deterministic test keys. Tests read it back through the library and the
control methods and compare with what each app meant.
"""

from __future__ import annotations

import socket

from tests.support.events import coordinate, keys_for, make_event, pubkey_of

POWR = keys_for("dialects", 0)
RUNSTR = keys_for("dialects", 1)
COACH = keys_for("dialects", 2)
ME, RUNNER = pubkey_of(POWR), pubkey_of(RUNSTR)
APP_ID = "local:m5x2k1q-abc123def45"  # POWR app ids: local:<ts36>-<rand>
GOBLET = coordinate(33401, POWR, APP_ID)
TEMPLATE = coordinate(33402, POWR, "tpl-rn-2")
BROKEN = coordinate(33402, POWR, "all-unreadable")
COACH_PRESS = coordinate(33401, COACH, "press")
# Sorts after "press": the test relay answers a multi-value #d filter on an addressable
# kind from its first value only, and the resolver asks for both in one filter.
NOWHERE = coordinate(33401, COACH, "vanished")


def closed_port_url() -> str:
    """A loopback relay URL nothing listens on, for a hint the resolver cannot use."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


HINT = closed_port_url()
KINDS = (33401, 33402, 1301, 33403, 30003)


def corpus() -> list[str]:
    goblet = make_event(POWR, 33401, "Hold the bell at the chest.", [
        ["d", APP_ID], ["title", "Goblet Squat"], ["format", "weight", "reps", "set_type"],
        # POWR app ExerciseSheet: flattened (name, unit) pairs.
        ["format_units", "weight", "kg", "reps", "count", "set_type", "warmup|normal|drop|failure"],
        ["equipment", "dumbbell"], ["client", "POWR"], ["category", "Legs"],
        # powr_web: every imeta pair in one string.
        ["imeta", "url http://127.0.0.1:9/goblet.mp4 m video/mp4 duration 45 purpose demonstration"],
    ], created_at=1_736_000_000)
    press = make_event(COACH, 33401, "", [
        ["d", "press"], ["title", "Overhead Press"], ["format", "weight", "reps"],
        ["format_units", "kg", "count"], ["equipment", "barbell"],
    ], created_at=1_736_000_001)
    template = make_event(POWR, 33402, "", [
        ["d", "tpl-rn-2"], ["title", "Leg day"], ["type", "superset"],
        # POWR app templates: no relay slot (sets, reps, setType) and a short reference.
        ["exercise", f"33401:{APP_ID}", "3", "10", "normal"],
        # powr_web: the empty-pubkey form and a trailing set number.
        ["exercise", f"33401::{APP_ID}", "", "20", "8", "normal", "1"],
        ["rest_between_sets", "90"],
    ], created_at=1_736_000_002)
    broken = make_event(POWR, 33402, "", [
        ["d", "all-unreadable"], ["title", "Broken"], ["type", "strength"],
        ["exercise", "junk", "", "1"], ["exercise", f"33402:{ME}:not-an-exercise"],
    ], created_at=1_736_000_003)
    web_record = make_event(POWR, 1301, "", [
        ["d", "rec-web"], ["title", "powr_web session"], ["type", "strength"],
        ["exercise", GOBLET, "", "20", "8", "normal", "1"],
        ["start", "1736950800000"], ["end", "1736954400000"],  # milliseconds
        ["completed", "true"], ["rounds_completed", "1.5"], ["interval", "30.5"],
        ["template", "33402::tpl-rn-2", ""],
    ], created_at=1_736_960_000)
    legacy = make_event(POWR, 33403, "", [
        ["d", "legacy-1"], ["title", "Legacy"], ["type", "strength"],
        ["exercise", GOBLET, "50", "10", "8", "normal"],  # weight, reps, rpe, type
        ["start", "1736000000"], ["end", "1736003600"], ["completed", "true"],
    ], created_at=1_736_003_700)
    absurd = make_event(POWR, 1301, "", [
        ["d", "absurd"], ["title", "Absurd"], ["type", "strength"], ["exercise", GOBLET],
        ["start", "9223372036854775807"], ["end", "-5"], ["completed", "false"],
    ], created_at=1_736_000_010)
    run_km = make_event(RUNSTR, 1301, "Morning run", [
        ["d", "run-1"], ["title", "Morning Run"], ["exercise", "running"],
        ["distance", "5.0", "km"], ["duration", "00:28:15"], ["calories", "285"],
        ["elevation_gain", "45", "m"], ["split", "1", "00:05:38"], ["split", "2", "00:05:40"],
        ["avg_pace", "05:39", "min/km"], ["workout_start_time", "1736950800"],
        ["source", "RUNSTR"], ["client", "RUNSTR"], ["t", "running"],
    ], created_at=1_736_952_600)
    run_mi = make_event(RUNSTR, 1301, "", [
        ["d", "run-2"], ["title", "Imperial Run"], ["exercise", "running"],
        ["distance", "3.1", "mi"], ["duration", "1695"], ["elevation_gain", "100", "ft"],
        ["avg_pace", "09:05", "min/mi"], ["workout_start_time", "1736864400"],
    ], created_at=1_736_866_000)
    exercise_list = make_event(POWR, 30003, "", [
        ["d", "powr-exercise-list"], ["title", "My exercises"],
        ["a", f"33401:{APP_ID}"], ["a", COACH_PRESS], ["a", NOWHERE, HINT],
    ], created_at=1_736_000_020)
    workout_list = make_event(POWR, 30003, "", [
        ["d", "powr-workout-list"], ["a", TEMPLATE, ""],
    ], created_at=1_736_000_021)
    bookmarks = make_event(POWR, 30003, "", [["d", "bookmarks"], ["a", NOWHERE]],
                           created_at=1_736_000_022)
    return [goblet, press, template, broken, web_record, legacy, absurd, run_km, run_mi,
            exercise_list, workout_list, bookmarks]

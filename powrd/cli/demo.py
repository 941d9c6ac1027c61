"""``powrd demo``: the whole daemon at work in a few seconds, without network access.

An in-process relay (nostr-sdk's ``LocalRelay`` on 127.0.0.1) is seeded with a small
signed workout library: exercises, a workout template that references one exercise the
relay does not have, and a workout record. A daemon with a temporary store and control
socket syncs it; the demo then prints what ``powrd ctl status``, ``powrd ctl template``
and ``powrd ctl fetch`` would show, and stops everything.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import nostr_sdk

from powrd.cli import render
from powrd.config import load_config
from powrd.control.client import ControlClient
from powrd.logs import configure_logging
from powrd.protocol.event import Event
from powrd.protocol.signing import sign_event
from powrd.service.daemon import Daemon, StartupError
from powrd.sync.fetch import FetchFailed, publish_once

SYNC_TIMEOUT_SECONDS = 20.0
POLL_SECONDS = 0.05
SEED_TIMEOUT_SECONDS = 10.0
EXERCISE, TEMPLATE, RECORD = 33401, 33402, 1301
TEMPLATE_D = "leg-day"
MISSING_D = "romanian-deadlift"


class DemoFailed(Exception):
    """The demo could not show what it meant to; the message says what went wrong."""


@dataclass(frozen=True)
class SampleLibrary:
    """The signed events put on the relay, and the coordinates the demo shows."""

    events: tuple[Event, ...]
    template: str
    missing: str


def sample_library(keys: nostr_sdk.Keys, now: int) -> SampleLibrary:
    """Sign the demo's events: three exercises, a template, a record.

    The template also references a fourth exercise (a Romanian deadlift) that is never
    published, so it stays incomplete and its coordinate sits in the fetch queue.
    """
    author = keys.public_key().to_hex()

    def coordinate(kind: int, d: str) -> str:
        return f"{kind}:{author}:{d}"

    def exercise(
        d: str,
        title: str,
        equipment: str,
        fmt: Sequence[tuple[str, str]],
        *,
        hashtags: Sequence[str],
        content: str,
    ) -> Event:
        tags = [
            ["d", d],
            ["title", title],
            ["format", *(n for n, _ in fmt)],
            ["format_units", *(u for _, u in fmt)],
            ["equipment", equipment],
            ["difficulty", "intermediate"],
            *(["t", t] for t in hashtags),
        ]
        return sign_event(keys, EXERCISE, content, tags, now - 3000)

    strength = (
        ("weight", "kg"),
        ("reps", "count"),
        ("rpe", "0-10"),
        ("set_type", "warmup|normal|drop|failure"),
    )
    squat = exercise(
        "back-squat",
        "Back Squat",
        "barbell",
        strength,
        hashtags=("legs",),
        content="Bar on the upper back, squat below parallel, drive up.",
    )
    pushup = exercise(
        "push-up",
        "Push-up",
        "bodyweight",
        (("reps", "count"), ("set_type", "warmup|normal|drop|failure")),
        hashtags=("push",),
        content="Hands under the shoulders, body straight, chest to the floor.",
    )
    plank = exercise(
        "plank",
        "Plank",
        "bodyweight",
        (("duration", "s"),),
        hashtags=("core",),
        content="Forearms down, body in one line; hold.",
    )
    hint = ""
    template = sign_event(
        keys,
        TEMPLATE,
        "Squat heavy, then accessories.",
        [
            ["d", TEMPLATE_D],
            ["title", "Leg Day"],
            ["type", "strength"],
            ["exercise", squat.coordinate or "", hint, "100", "5", "8", "normal"],
            ["exercise", squat.coordinate or "", hint, "100", "5", "", "normal"],
            ["exercise", coordinate(EXERCISE, MISSING_D), hint, "80", "8", "", "normal"],
            ["exercise", plank.coordinate or "", hint, "60"],
            ["rounds", "1"],
            ["t", "legs"],
        ],
        now - 2400,
    )
    record = sign_event(
        keys,
        RECORD,
        "Felt strong.",
        [
            ["d", "leg-day-1"],
            ["title", "Leg Day"],
            ["type", "strength"],
            ["start", str(now - 2000)],
            ["end", str(now - 600)],
            ["completed", "true"],
            ["template", coordinate(TEMPLATE, TEMPLATE_D), hint],
            ["exercise", squat.coordinate or "", hint, "100", "5", "8", "normal"],
            ["exercise", squat.coordinate or "", hint, "100", "5", "9", "normal"],
            ["exercise", pushup.coordinate or "", hint, "20", "normal"],
            ["t", "legs"],
        ],
        now - 600,
    )
    return SampleLibrary(
        (squat, pushup, plank, template, record),
        coordinate(TEMPLATE, TEMPLATE_D),
        coordinate(EXERCISE, MISSING_D),
    )


async def seed(url: str, events: Sequence[Event]) -> None:
    """Publish ``events`` to the relay at ``url`` and wait for an accepting ``OK`` each.

    Raises:
        DemoFailed: The relay refused an event or did not answer in time.
    """
    try:
        replies = await publish_once(
            url, [e.to_json() for e in events], within=SEED_TIMEOUT_SECONDS
        )
    except FetchFailed as error:
        raise DemoFailed(f"cannot seed the demo relay: {error}") from None
    for event_id, (accepted, message) in replies.items():
        if not accepted:
            raise DemoFailed(f"the demo relay refused {event_id}: {message}")


def write_config(directory: Path, relay_url: str, author: str) -> Path:
    """A config for the demo daemon: store and socket in ``directory``, quick retries."""
    path = directory / "powrd.toml"
    path.write_text(
        "# Written by `powrd demo`.\n"
        '[store]\npath = "powrd.db"\n'
        '[control]\nsocket = "control.sock"\n'
        f'[sync]\nauthors = ["{author}"]\n'
        "reconnect_min_seconds = 0.2\nmin_reconnect_interval_seconds = 0.2\n"
        "eose_timeout_seconds = 5.0\n"
        "[resolver]\nretry_min_seconds = 0.5\nfetch_timeout_seconds = 5.0\n"
        "[media]\nenabled = false\n"
        # Any free port: a powrd already running here keeps 4869.
        '[local_relay]\nlisten = "127.0.0.1:0"\n'
        f'[[relays]]\nurl = "{relay_url}"\nread = true\nwrite = false\n'
    )
    return path


async def wait_until_synced(
    client: ControlClient, library: SampleLibrary, within: float = SYNC_TIMEOUT_SECONDS
) -> None:
    """Poll the daemon until every seeded event is stored and the resolver has looked for
    the missing exercise.

    Raises:
        DemoFailed: Not synced within ``within`` seconds (the message says how far it got).
    """
    deadline = time.monotonic() + within
    while True:
        status = await client.call("status")
        queue = (await client.call("fetch.list"))["entries"]
        stored = status["counts"]["events"] >= len(library.events)
        relays_done = all(r["backfill_complete"] for r in status["relays"])
        looked_for = any(
            e["coordinate"] == library.missing and e["state"] == "not_found" for e in queue
        )
        if stored and relays_done and looked_for:
            return
        if time.monotonic() > deadline:
            raise DemoFailed(
                f"not synced after {within:g} s: {status['counts']['events']} of "
                f"{len(library.events)} events stored; health: {status['health'] or 'ok'}"
            )
        await asyncio.sleep(POLL_SECONDS)


async def run_demo(directory: Path, out: TextIO) -> None:
    """Run the demonstration in ``directory``, printing to ``out``.

    Raises:
        DemoFailed: Something did not work as the demo expected.
    """
    started = time.monotonic()
    relay = (
        nostr_sdk.LocalRelayBuilder()
        .rate_limit(nostr_sdk.RateLimit(max_reqs=1000, notes_per_minute=100000))
        .build()
    )
    await relay.run()
    try:
        url = str(await relay.url())
        keys = nostr_sdk.Keys.generate()
        library = sample_library(keys, int(time.time()))
        await seed(url, library.events)
        print(
            f"demo relay  {url}  ({len(library.events)} events signed by "
            f"{keys.public_key().to_bech32()})",
            file=out,
        )
        config = load_config(write_config(directory, url, keys.public_key().to_hex()), {})
        print(f"store       {config.store.path}", file=out)
        print(f"socket      {config.control.socket}", file=out)
        daemon = Daemon(config, environ={})
        try:
            await daemon.start()
        except StartupError as error:
            raise DemoFailed(str(error)) from None
        try:
            async with ControlClient(config.control.socket) as client:
                await wait_until_synced(client, library)
                sections: list[tuple[str, Any]] = [
                    ("powrd ctl status", render.status(await client.call("status"))),
                    (
                        f"powrd ctl template {library.template}",
                        render.template(
                            await client.call("library.template", {"coordinate": library.template})
                        ),
                    ),
                    (
                        "powrd ctl fetch",
                        render.fetch_queue((await client.call("fetch.list"))["entries"]),
                    ),
                    (
                        "powrd ctl records",
                        render.records((await client.call("library.records"))["records"]),
                    ),
                ]
        finally:
            await daemon.stop()
    finally:
        relay.shutdown()
    for title, text in sections:
        print(f"\n$ {title}\n{text}", file=out)
    print(f"\ndemo finished in {time.monotonic() - started:.1f} s", file=out)


def main(keep: bool = False, out: TextIO | None = None) -> int:
    """``powrd demo``: returns the exit code (0 when everything was shown).

    Args:
        keep: Keep the temporary directory (store, config) and print its path.
        out: Where to print (standard output when None).
    """
    stream = sys.stdout if out is None else out
    configure_logging("error", "console")
    directory = Path(tempfile.mkdtemp(prefix="powrd-demo-"))
    try:
        asyncio.run(run_demo(directory, stream))
    except DemoFailed as error:
        print(f"powrd demo: {error}", file=sys.stderr)
        return 1
    finally:
        if keep:
            print(
                f"kept {directory} (inspect it with `powrd --config "
                f"{directory / 'powrd.toml'} export`)",
                file=stream,
            )
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 0

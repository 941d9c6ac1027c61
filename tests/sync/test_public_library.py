"""The public library: everyone's exercises and templates, never strangers' records."""

from __future__ import annotations

from pathlib import Path

from powrd.protocol.event import loads
from powrd.service.methods import build_methods
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import (
    coordinate,
    keys_for,
    make_exercise,
    make_record,
    make_template,
    pubkey_of,
)

STRANGER = keys_for("public-library", 0)
FRIEND = keys_for("public-library", 1)


async def test_public_kinds_store_strangers_library_but_not_their_records(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory()
    exercise = make_exercise(STRANGER, "squat")
    template = make_template(STRANGER, "legs", [[coordinate(33401, STRANGER, "squat"), relay.url, "100", "5"]])
    record = make_record(STRANGER, "monday", [[coordinate(33401, STRANGER, "squat"), relay.url, "100", "5", "8", "normal"]])
    await relay.publish([exercise, template, record])
    config = write_config(tmp_path, relays=[relay.url], authors=[], extra="")
    text = config.read_text().replace("[sync]\n", "[sync]\npublic_kinds = [33401, 33402]\n", 1)
    config.write_text(text)
    wanted = {loads(exercise)["id"], loads(template)["id"]}
    async with running_daemon(config) as daemon:
        await wait_for(lambda: wanted <= stored_ids(daemon), what="the public exercise and template")
        await wait_for(lambda: all(w.status.backfill_complete for w, _ in daemon.workers.values()), what="backfill")
        assert loads(record)["id"] not in stored_ids(daemon)
        exercises = build_methods(daemon)["library.exercises"]
        assert [e["pubkey"] for e in (await exercises({"scope": "public"}))["exercises"]] == [pubkey_of(STRANGER)]
        assert (await exercises({"scope": "mine"}))["exercises"] == []
        assert len((await exercises({}))["exercises"]) == 1


async def test_configured_authors_keep_their_records_alongside_the_public_library(relay_factory, tmp_path: Path) -> None:
    relay = await relay_factory()
    mine = make_exercise(FRIEND, "press")
    record = make_record(FRIEND, "tuesday", [[coordinate(33401, FRIEND, "press"), relay.url, "40", "5", "8", "normal"]])
    strangers = make_exercise(STRANGER, "row")
    await relay.publish([mine, record, strangers])
    config = write_config(tmp_path, relays=[relay.url], authors=[pubkey_of(FRIEND)])
    config.write_text(config.read_text().replace("[sync]\n", "[sync]\npublic_kinds = [33401]\n", 1))
    wanted = {loads(e)["id"] for e in (mine, record, strangers)}
    async with running_daemon(config) as daemon:
        await wait_for(lambda: wanted <= stored_ids(daemon), what="own records and the public exercise")
        exercises = build_methods(daemon)["library.exercises"]
        assert [e["d"] for e in (await exercises({"scope": "mine"}))["exercises"]] == ["press"]
        assert [e["d"] for e in (await exercises({"scope": "public"}))["exercises"]] == ["row"]

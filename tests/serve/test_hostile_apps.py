"""Bad input, floods and clients that never read, against the local relay endpoint."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from powrd.protocol.event import dumps, loads
from powrd.service import memory
from tests.serve.conftest import app, publish, reply, stored_events
from tests.support.corpus import generate_corpus
from tests.support.daemon import running_daemon, stored_ids, wait_for, write_config
from tests.support.events import keys_for, make_exercise

STRANGER = keys_for("hostile-app", 0)
MiB = 1024 * 1024


async def test_bad_frames_get_the_right_answer_and_store_nothing(tmp_path: Path) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon, app(daemon, max_size=None) as websocket:
        cases = [
            ("nope", ["NOTICE", "invalid: not json"]),
            ('["HELLO",1]', ["NOTICE", "invalid: unknown message type: HELLO"]),
            ('["REQ","s"]', None),  # no filter: a NOTICE naming the arity
            ('["REQ","s",{"kinds":["x"]}]', None),
            ('["EVENT",{"id":"nope"}]', None),
            ('["NEG-OPEN","n",{},"6"]', ["NEG-ERR", "n", "invalid: wrong element type: NEG-OPEN element 3 is not hex (1 characters)"]),
            ('["NEG-MSG","n","61"]', ["NEG-ERR", "n", "closed: no such negentropy subscription"]),
            ('["NEG-FOO","n"]', ["NOTICE", "invalid: unknown message type 'NEG-FOO'"]),
        ]
        for frame, expected in cases:
            await websocket.send(frame)
            message = await reply(websocket)
            if expected is not None:
                assert message == expected, frame
            else:
                assert message[0] in ("NOTICE", "CLOSED") and message[-1].startswith("invalid: "), frame
        await websocket.send(json.dumps(["REQ", "many", *[{} for _ in range(17)]]))
        assert (await reply(websocket))[:2] == ["CLOSED", "many"]
        for number in range(32):
            await stored_events(websocket, f"s{number}", {"ids": ["0" * 64]})
        await websocket.send('["REQ","s32",{}]')
        closed = await reply(websocket)
        assert closed[:2] == ["CLOSED", "s32"] and closed[2].startswith("blocked: 32 subscriptions")
        now = int(time.time())
        good = loads(make_exercise(STRANGER, "x", created_at=now))
        forged = {**good, "sig": ("0" if good["sig"][0] != "0" else "1") + good["sig"][1:]}
        assert await publish(websocket, dumps(forged)) == ["OK", good["id"], False, "invalid: bad signature"]
        future = make_exercise(STRANGER, "future", created_at=now + 3600)
        reason = (await publish(websocket, future))[3]
        assert reason == "invalid: created_at too far in future"
        await websocket.send('["EVENT",' + json.dumps({**good, "content": "x" * 300_000}) + "]")
        notice = await reply(websocket)
        assert notice[0] == "NOTICE" and notice[1].startswith("invalid: message too large")
        assert stored_ids(daemon) == set()
        # The connection still works, and so does ingest.
        assert (await publish(websocket, dumps(good)))[2] is True
        assert stored_ids(daemon) == {good["id"]}
        status = daemon.status()["local_relay"]
        assert status["events_refused"] == 3 and status["events_accepted"] == 1


async def test_a_frame_beyond_twice_the_limit_closes_the_connection(tmp_path: Path) -> None:
    async with running_daemon(write_config(tmp_path)) as daemon:
        async with app(daemon, max_size=None) as websocket:
            await websocket.send('["NOTICE","' + "x" * 600_000 + '"]')
            with pytest.raises(ConnectionClosed) as closed:
                await reply(websocket)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        async with app(daemon) as websocket:
            assert await stored_events(websocket, "ok", {"limit": 1}) == []


async def test_a_flood_is_rate_limited_per_connection(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="[local_relay]\nlisten = \"127.0.0.1:0\"\nevents_per_minute = 20")
    corpus = generate_corpus(60, 1, seed=515)
    async with running_daemon(config) as daemon:
        async with app(daemon) as flooder:
            verdicts = [await publish(flooder, text) for text in corpus[:30]]
        accepted = [v for v in verdicts if v[2]]
        limited = [v for v in verdicts if not v[2]]
        # A full bucket of 20, then refusals (one refills every 3 s, so a slow run may see more).
        assert all(v[2] for v in verdicts[:20]) and len(limited) >= 5
        assert all(v[3].startswith("rate-limited: more than 20 events a minute") for v in limited)
        assert len(stored_ids(daemon)) == len(accepted)
        async with app(daemon) as other:  # another app has its own budget
            assert (await publish(other, corpus[40]))[2] is True


async def test_a_client_that_never_reads_is_cut_off_with_bounded_memory(tmp_path: Path) -> None:
    warm_up, corpus = generate_corpus(12_000, 40, seed=517), generate_corpus(12_000, 40, seed=516)
    async with running_daemon(write_config(tmp_path)) as daemon:
        daemon.local_relay.queue_bytes = 256 * 1024
        # The same import without the sleeper first, so what grows later is the sleeper's.
        for start in range(0, len(warm_up), 1000):
            chunk = warm_up[start : start + 1000]
            await daemon.pipeline.submit("import", [(loads(e), len(e)) for e in chunk])
        async with app(daemon, max_queue=1) as sleeper, app(daemon) as bystander:
            await stored_events(sleeper, "all", {"limit": 0})  # live from here on; never read again
            await stored_events(bystander, "none", {"kinds": [1]})
            before = memory.usage(0)["rss_bytes"]
            for start in range(0, len(corpus), 1000):
                chunk = corpus[start : start + 1000]
                await daemon.pipeline.submit("import", [(loads(e), len(e)) for e in chunk])
            await wait_for(lambda: daemon.status()["local_relay"]["cut_off"] == 1, what="slow client cut off")
            grown = memory.usage(0)["rss_bytes"] - before
            print(f"RSS grew {grown / MiB:.1f} MiB while importing {len(corpus)} events to a sleeping client")
            assert grown < 24 * MiB
            await wait_for(lambda: daemon.status()["local_relay"]["connections"] == 1, what="sleeper gone")
            # The bystander and ingest carried on.
            assert await stored_events(bystander, "after", {"ids": ["0" * 64]}) == []
        assert len(stored_ids(daemon)) > 20_000

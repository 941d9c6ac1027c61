"""`media.get` streams an exercise's stored media over the real control socket."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from powrd.control.client import ControlClient, RpcError
from powrd.protocol.event import loads
from powrd.store import media
from tests.support.daemon import running_daemon, write_config
from tests.support.events import coordinate, keys_for, make_exercise

ALICE = keys_for("media-get", 0)
URL = "https://media.example/squat.png"


async def test_media_get_streams_content_and_thumbnail_in_chunks(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="[media]\nenabled = false\n")
    content = bytes(range(256)) * 1000  # 256 kB: several 48 KiB chunks
    thumbnail = b"\x89PNG small"
    async with running_daemon(config) as daemon:
        assert daemon.pipeline is not None and daemon.store is not None
        exercise = make_exercise(ALICE, "squat", extra_tags=[["imeta", f"url {URL}", "m image/png"]])
        await daemon.pipeline.submit("test", [(loads(exercise), len(exercise))])
        coord = coordinate(33401, ALICE, "squat")
        (job,) = media.due(daemon.store.reader(), int(time.time()), 10)
        download = media.Download(content, "image/png", thumbnail, "image/png")
        await daemon.store.writer.run(lambda c: media.record_success(c, job, download, int(time.time())))
        async with ControlClient(daemon.config.control.socket) as client:
            chunks = [base64.b64decode(c) async for c in client.stream("media.get", {"exercise": coord})]
            assert len(chunks) > 1 and b"".join(chunks) == content
            thumb = [base64.b64decode(c) async for c in client.stream(
                "media.get", {"exercise": coord, "thumbnail": True})]
            assert b"".join(thumb) == thumbnail
            with pytest.raises(RpcError) as missing:
                async for _ in client.stream("media.get", {"exercise": coordinate(33401, ALICE, "none")}):
                    pass
            assert missing.value.code == -32001
            status = await client.call("status")
            assert status["cache"]

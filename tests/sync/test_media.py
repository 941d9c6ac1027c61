"""The media task against a real HTTP server on 127.0.0.1 and a real store."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import io
import ipaddress
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from powrd.protocol.event import loads
from powrd.protocol.validate import Policy
from powrd.store import media
from powrd.store.store import Store
from powrd.sync.address import UnresolvableHost, system_resolve
from powrd.sync.media import (
    MediaFetcher,
    MediaNotFound,
    MediaSettings,
    make_thumbnail,
    media_chunks,
    normalized_type,
)
from powrd.sync.pipeline import Pipeline
from tests.support.events import coordinate, keys_for, make_exercise, pubkey_of

NOW = 1_800_000_000
ALICE = keys_for("media-sync", 0)
BOB = keys_for("media-sync", 1)


# --- a small scripted HTTP server -------------------------------------------------------


@dataclass
class Route:
    body: bytes
    content_type: str | None = "image/png"
    status: int = 200
    send_length: bool = True
    location: str | None = None
    stall: bool = False  # send headers, then nothing until the test ends
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class MediaServer:
    """Bound to a free port from construction; refuses connections until :meth:`start`.

    The port is never released and bound again (another test could take it meanwhile):
    a socket that is bound but not listening is what refuses connections while "down".
    """

    routes: dict[str, Route] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    hosts: list[str] = field(default_factory=list)  # the Host header of each request
    released: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None
    tls: ssl.SSLContext | None = None  # serve https with this context
    port: int = 0
    _serving: bool = False

    def __post_init__(self) -> None:
        self.server = ThreadingHTTPServer(
            ("127.0.0.1", 0), self._handler(), bind_and_activate=False
        )
        self.server.daemon_threads = True
        self.server.server_bind()
        self.port = int(self.server.server_address[1])

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        assert self.server is not None
        self.server.server_activate()
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self._serving = True
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                owner.hits[self.path] += 1
                owner.hosts.append(self.headers.get("Host", ""))
                route = owner.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                self.send_response(route.status)
                if route.content_type is not None:
                    self.send_header("Content-Type", route.content_type)
                if route.location is not None:
                    self.send_header("Location", route.location)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                if route.send_length:
                    self.send_header("Content-Length", str(len(route.body)))
                else:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()
                if route.stall:
                    self.wfile.flush()
                    owner.released.wait(10)
                    return
                self.wfile.write(route.body)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def stop(self) -> None:
        self.released.set()
        if self.server is not None:
            if self._serving:
                self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def server() -> Iterator[MediaServer]:
    started = MediaServer()
    started.start()
    yield started
    started.stop()


# --- store, pipeline, fetcher ---------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "powrd.db") as opened:
        yield opened


@pytest.fixture
def pipeline(store: Store) -> Pipeline:
    return Pipeline(store, Policy(), clock=lambda: NOW)


class Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


TEST_SETTINGS = MediaSettings(
    allow_private_addresses=True, retry_min_seconds=2, retry_max_seconds=60, timeout_seconds=5
)


@pytest.fixture
def make_fetcher(store: Store, clock: Clock) -> Callable[..., MediaFetcher]:
    def make(*, transport: Any = None, resolve: Any = system_resolve,
             **changes: Any) -> MediaFetcher:
        return MediaFetcher(store, dataclasses.replace(TEST_SETTINGS, **changes),
                            lambda: {pubkey_of(ALICE)}, clock=clock, transport=transport,
                            resolve=resolve)

    return make


def add_exercise(pipeline: Pipeline, url: str, *, keys: Any = ALICE, d: str = "squat",
                 m: str | None = "image/png", x: str | None = None) -> str:
    tag = ["imeta", f"url {url}"] + ([f"m {m}"] if m else []) + ([f"x {x}"] if x else [])
    event = make_exercise(keys, d, extra_tags=[tag])
    result = pipeline.submit_blocking("test", [(loads(event), len(event))])
    assert not result.rejected
    return coordinate(33401, keys, d)


def image_bytes(size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    color: Any = (200, 30, 30, 128) if mode == "RGBA" else (200, 30, 30)
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, fmt)
    return out.getvalue()


def entry(store: Store, coord: str) -> dict[str, Any]:
    (row,) = media.entries(store.reader(), coord)
    return row


async def settle(fetcher: MediaFetcher) -> None:
    try:
        assert await fetcher.run_once()
    finally:
        await fetcher.aclose()


def thumbnail_size(store: Store, coord: str) -> tuple[int, int]:
    data = b"".join(media_chunks(store.reader(), coord, thumbnail=True))
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# --- downloads ------------------------------------------------------------------------


async def test_png_is_stored_with_a_png_thumbnail(server: MediaServer, store: Store,
                                                  pipeline: Pipeline, make_fetcher: Any) -> None:
    png = image_bytes((600, 300), "PNG", "RGBA")
    server.routes["/a.png"] = Route(png)
    coord = add_exercise(pipeline, server.url("/a.png"), x=hashlib.sha256(png).hexdigest())
    await settle(make_fetcher())
    row = entry(store, coord)
    assert (row["state"], row["content_type"], row["thumbnail_type"]) == (
        "stored", "image/png", "image/png")
    assert b"".join(media_chunks(store.reader(), coord, chunk_size=1000)) == png
    assert thumbnail_size(store, coord) == (256, 128)


async def test_jpeg_is_stored_with_a_jpeg_thumbnail(server: MediaServer, store: Store,
                                                    pipeline: Pipeline, make_fetcher: Any) -> None:
    jpeg = image_bytes((400, 1000), "JPEG")
    server.routes["/b.jpg"] = Route(jpeg, "image/jpeg")
    coord = add_exercise(pipeline, server.url("/b.jpg"), m="image/jpeg")
    await settle(make_fetcher(thumbnail_max_px=100))
    row = entry(store, coord)
    assert (row["state"], row["thumbnail_type"], row["content_size"]) == (
        "stored", "image/jpeg", len(jpeg))
    width, height = thumbnail_size(store, coord)
    assert height == 100 and width == 40


async def test_small_images_are_not_enlarged(server: MediaServer, store: Store,
                                             pipeline: Pipeline, make_fetcher: Any) -> None:
    server.routes["/s.png"] = Route(image_bytes((30, 20), "PNG"))
    coord = add_exercise(pipeline, server.url("/s.png"), m=None)
    await settle(make_fetcher())
    assert thumbnail_size(store, coord) == (30, 20)


async def test_video_is_stored_without_thumbnail(server: MediaServer, store: Store,
                                                 pipeline: Pipeline, make_fetcher: Any) -> None:
    server.routes["/v.mp4"] = Route(b"\x00\x00\x00\x18ftypmp42" * 10, "video/mp4")
    coord = add_exercise(pipeline, server.url("/v.mp4"), m="video/mp4")
    await settle(make_fetcher())
    assert entry(store, coord)["state"] == "stored"
    with pytest.raises(MediaNotFound):
        media_chunks(store.reader(), coord, thumbnail=True)


async def test_undecodable_image_is_stored_without_thumbnail(
    server: MediaServer, store: Store, pipeline: Pipeline, make_fetcher: Any
) -> None:
    server.routes["/bad.png"] = Route(b"not really a png")
    coord = add_exercise(pipeline, server.url("/bad.png"))
    await settle(make_fetcher())
    row = entry(store, coord)
    assert row["state"] == "stored" and row["thumbnail_size"] == 0
    assert row["last_error"].startswith("no thumbnail: cannot decode image")


async def test_redirects_are_followed(server: MediaServer, store: Store, pipeline: Pipeline,
                                      make_fetcher: Any) -> None:
    server.routes["/old"] = Route(b"", None, status=302, location="/new.png")
    server.routes["/new.png"] = Route(image_bytes((10, 10), "PNG"))
    coord = add_exercise(pipeline, server.url("/old"))
    await settle(make_fetcher())
    assert entry(store, coord)["state"] == "stored"


# --- refusals -----------------------------------------------------------------------------


async def test_hash_mismatch_is_refused(server: MediaServer, store: Store, pipeline: Pipeline,
                                        make_fetcher: Any) -> None:
    server.routes["/a.png"] = Route(image_bytes((10, 10), "PNG"))
    coord = add_exercise(pipeline, server.url("/a.png"), x="0" * 64)
    await settle(make_fetcher())
    row = entry(store, coord)
    assert row["state"] == "hash_mismatch"
    assert row["last_error"].endswith("tag says " + "0" * 64)
    assert media.stored_bytes(store.reader()) == 0


@pytest.mark.parametrize("send_length", [True, False])
async def test_oversize_is_refused(server: MediaServer, store: Store, pipeline: Pipeline,
                                   make_fetcher: Any, send_length: bool) -> None:
    server.routes["/big.png"] = Route(b"x" * 5000, send_length=send_length)
    coord = add_exercise(pipeline, server.url("/big.png"))
    fetcher = make_fetcher(max_bytes=4096)
    await settle(fetcher)
    assert entry(store, coord)["state"] == "too_large"
    assert fetcher.stats.rejections == Counter({"too_large": 1})


async def test_wrong_content_type_is_refused(server: MediaServer, store: Store,
                                             pipeline: Pipeline, make_fetcher: Any) -> None:
    server.routes["/page"] = Route(b"<html></html>", "text/html; charset=utf-8")
    server.routes["/jpeg"] = Route(b"\xff\xd8", "image/jpeg")
    mismatched = add_exercise(pipeline, server.url("/jpeg"), d="a")  # tag says image/png
    html = add_exercise(pipeline, server.url("/page"), d="b", m=None)
    pdf = add_exercise(pipeline, server.url("/doc.pdf"), d="c", m="application/pdf")
    await settle(make_fetcher())
    assert entry(store, mismatched)["last_error"] == "served as image/jpeg, tag says image/png"
    assert entry(store, html)["last_error"] == "served type text/html is not allowed"
    assert entry(store, pdf)["state"] == "wrong_type"
    assert server.hits["/doc.pdf"] == 0  # refused from the tag alone


async def test_only_http_and_https_are_fetched(server: MediaServer, store: Store,
                                               pipeline: Pipeline, make_fetcher: Any) -> None:
    server.routes["/hop"] = Route(b"", None, status=301, location="file:///etc/passwd")
    ftp = add_exercise(pipeline, "ftp://127.0.0.1/a.png", d="a")
    hop = add_exercise(pipeline, server.url("/hop"), d="b")
    await settle(make_fetcher())
    assert entry(store, ftp)["state"] == "bad_url"
    assert entry(store, hop)["state"] == "bad_url"


async def test_private_addresses_are_refused_by_default(server: MediaServer, store: Store,
                                                        pipeline: Pipeline,
                                                        make_fetcher: Any) -> None:
    server.routes["/a.png"] = Route(image_bytes((10, 10), "PNG"))
    coord = add_exercise(pipeline, server.url("/a.png"))
    await settle(make_fetcher(allow_private_addresses=False))
    assert entry(store, coord)["state"] == "bad_url"
    assert server.hits["/a.png"] == 0


class StubResolver:
    """Answers names from a table, one answer per question in turn; records questions."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        answers = self.answers.get(host)
        if not answers:
            raise UnresolvableHost(f"cannot resolve {host}")
        return answers.pop(0) if len(answers) > 1 else answers[0]


class LoopbackOnly(httpx.AsyncBaseTransport):
    """A real transport that refuses, before connecting, any host but a loopback IP."""

    def __init__(self, verify: ssl.SSLContext | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=verify or True)
        self.refused: list[tuple[str, str]] = []  # (host connected to, Host header)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            loopback = ipaddress.ip_address(request.url.host).is_loopback
        except ValueError:
            loopback = False  # a name: the client would resolve it again
        if not loopback:
            self.refused.append((request.url.host, request.headers.get("host", "")))
            raise httpx.ConnectError("test guard: only loopback addresses", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_compressed_bodies_are_refused_before_inflating(
    server: MediaServer, store: Store, pipeline: Pipeline, make_fetcher: Any
) -> None:
    bomb = gzip.compress(b"\0" * (32 * 1024 * 1024), compresslevel=9)  # ~32 KiB on the wire
    server.routes["/bomb.png"] = Route(bomb, headers={"Content-Encoding": "gzip"})
    server.routes["/plain.png"] = Route(image_bytes((10, 10), "PNG"),
                                        headers={"Content-Encoding": "identity"})
    bombed = add_exercise(pipeline, server.url("/bomb.png"), d="a")
    plain = add_exercise(pipeline, server.url("/plain.png"), d="b")
    fetcher = make_fetcher(max_bytes=1024 * 1024)
    await settle(fetcher)
    row = entry(store, bombed)
    assert row["state"] == "wrong_type"
    assert row["last_error"] == "served with Content-Encoding gzip, not identity"
    assert entry(store, plain)["state"] == "stored"
    assert fetcher.stats.bytes_downloaded < 1024  # the bomb's body was never read


async def test_user_names_in_media_urls_are_refused(
    server: MediaServer, store: Store, pipeline: Pipeline, make_fetcher: Any
) -> None:
    server.routes["/a.png"] = Route(image_bytes((10, 10), "PNG"))
    coord = add_exercise(pipeline, f"http://admin:secret@127.0.0.1:{server.port}/a.png")
    await settle(make_fetcher())
    assert entry(store, coord)["state"] == "bad_url"
    assert server.hits["/a.png"] == 0


async def test_the_idna_2008_host_is_the_one_checked(
    server: MediaServer, store: Store, pipeline: Pipeline, make_fetcher: Any
) -> None:
    # The name httpx sends for ß.example is xn--zca.example; IDNA 2003 would say ss.example.
    stub = StubResolver({"xn--zca.example": [["127.0.0.1"]], "ss.example": [["8.8.8.8"]]})
    guard = LoopbackOnly()
    server.routes["/a.png"] = Route(image_bytes((10, 10), "PNG"))
    coord = add_exercise(pipeline, f"http://ß.example:{server.port}/a.png")
    await settle(make_fetcher(allow_private_addresses=False, resolve=stub, transport=guard))
    row = entry(store, coord)
    assert row["state"] == "bad_url" and "non-public" in row["last_error"]
    assert stub.asked == ["xn--zca.example"]
    assert server.hits["/a.png"] == 0 and guard.refused == []


async def test_a_rebinding_name_is_fetched_from_the_address_that_was_checked(
    server: MediaServer, store: Store, pipeline: Pipeline, make_fetcher: Any
) -> None:
    # Public when checked, loopback a moment later (TTL 0). The guard refuses the
    # connection to the public address before any packet is sent.
    stub = StubResolver({"media.example": [["8.8.8.8"], ["127.0.0.1"]]})
    guard = LoopbackOnly()
    server.routes["/a.png"] = Route(image_bytes((10, 10), "PNG"))
    coord = add_exercise(pipeline, f"http://media.example:{server.port}/a.png")
    await settle(make_fetcher(allow_private_addresses=False, resolve=stub, transport=guard))
    assert entry(store, coord)["state"] == "failed"
    assert guard.refused == [("8.8.8.8", f"media.example:{server.port}")]
    assert stub.asked == ["media.example"]
    assert server.hits["/a.png"] == 0


async def test_a_pinned_fetch_keeps_the_host_name_across_redirects(
    server: MediaServer, store: Store, pipeline: Pipeline, make_fetcher: Any
) -> None:
    stub = StubResolver({"media.example": [["127.0.0.1"]]})
    server.routes["/old"] = Route(b"", None, status=302, location="/new.png")
    server.routes["/new.png"] = Route(image_bytes((10, 10), "PNG"))
    coord = add_exercise(pipeline, f"http://media.example:{server.port}/old")
    await settle(make_fetcher(resolve=stub, transport=LoopbackOnly()))
    assert entry(store, coord)["state"] == "stored"
    assert server.hosts == [f"media.example:{server.port}"] * 2
    # Each hop is checked (and pinned) again.
    assert stub.asked == ["media.example", "media.example"]


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[MediaServer, ssl.SSLContext]]:
    """An https media server on 127.0.0.1 whose certificate names only media.example."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=media.example", "-addext", "subjectAltName=DNS:media.example"],
        check=True, capture_output=True, timeout=60,
    )
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(cert, key)
    started = MediaServer(tls=serving)
    started.start()
    yield started, ssl.create_default_context(cafile=str(cert))
    started.stop()


async def test_https_to_a_pinned_address_verifies_the_url_host_name(
    tls_server: tuple[MediaServer, ssl.SSLContext], store: Store, pipeline: Pipeline,
    make_fetcher: Any,
) -> None:
    server, trusted = tls_server
    stub = StubResolver({"media.example": [["127.0.0.1"]], "other.example": [["127.0.0.1"]]})
    server.routes["/a.png"] = Route(image_bytes((10, 10), "PNG"))
    good = add_exercise(pipeline, f"https://media.example:{server.port}/a.png", d="a")
    wrong = add_exercise(pipeline, f"https://other.example:{server.port}/a.png", d="b")
    await settle(make_fetcher(resolve=stub, transport=LoopbackOnly(verify=trusted)))
    assert entry(store, good)["state"] == "stored"
    assert server.hosts == [f"media.example:{server.port}"]
    # Same address, but the certificate does not name other.example: not the IP's name,
    # the URL's host is what TLS verifies.
    row = entry(store, wrong)
    assert row["state"] == "failed" and "CERTIFICATE_VERIFY_FAILED" in row["last_error"]


# --- retries ------------------------------------------------------------------------------


async def test_server_down_then_up(store: Store, pipeline: Pipeline, make_fetcher: Any,
                                   clock: Clock) -> None:
    down = MediaServer()
    png = image_bytes((64, 64), "PNG")
    down.routes["/a.png"] = Route(png)
    coord = add_exercise(pipeline, down.url("/a.png"))
    fetcher = make_fetcher()
    try:
        assert await fetcher.run_once()
        row = entry(store, coord)
        assert (row["state"], row["attempts"]) == ("failed", 1)
        assert row["next_attempt"] > NOW
        assert not await fetcher.run_once()  # not due yet
        down.start()
        clock.now = row["next_attempt"]
        assert await fetcher.run_once()
    finally:
        down.stop()
        await fetcher.aclose()
    assert entry(store, coord)["state"] == "stored"
    assert (fetcher.stats.failures, fetcher.stats.downloads) == (1, 1)


async def test_http_errors_and_timeouts_are_retried(server: MediaServer, store: Store,
                                                    pipeline: Pipeline, make_fetcher: Any) -> None:
    server.routes["/err"] = Route(b"oops", "text/plain", status=503)
    server.routes["/slow"] = Route(b"x" * 100, stall=True)
    err = add_exercise(pipeline, server.url("/err"), d="a")
    slow = add_exercise(pipeline, server.url("/slow"), d="b")
    started = time.monotonic()
    await settle(make_fetcher(timeout_seconds=0.5))
    assert time.monotonic() - started < 5
    assert (entry(store, err)["state"], entry(store, err)["last_error"]) == ("failed", "HTTP 503")
    assert entry(store, slow)["last_error"] == "timed out after 0.5 s"


# --- budget ---------------------------------------------------------------------------------


async def test_budget_evicts_lowest_priority_then_least_recent(
    server: MediaServer, store: Store, pipeline: Pipeline, make_fetcher: Any, clock: Clock
) -> None:
    for name in ("own", "old", "new"):
        server.routes[f"/{name}"] = Route(bytes(1000), "video/mp4")
    own = add_exercise(pipeline, server.url("/own"), d="own", m="video/mp4")
    fetcher = make_fetcher(budget_bytes=2500, max_bytes=2000)
    await settle(fetcher)
    old = add_exercise(pipeline, server.url("/old"), keys=BOB, d="old", m="video/mp4")
    clock.now += 10
    await settle(fetcher)
    new = add_exercise(pipeline, server.url("/new"), keys=BOB, d="new", m="video/mp4")
    clock.now += 10
    await settle(fetcher)
    assert [entry(store, c)["state"] for c in (own, old, new)] == ["stored", "evicted", "stored"]
    assert media.stored_bytes(store.reader()) == 2000
    assert fetcher.stats.evictions == 1
    assert fetcher.status()["by_state"] == {"evicted": 1, "stored": 2}
    assert await fetcher.request(old) == 1
    clock.now += 10
    await settle(fetcher)  # fetched again on request; now `new` is the older of Bob's two
    assert [entry(store, c)["state"] for c in (own, old, new)] == ["stored", "stored", "evicted"]


# --- the task -------------------------------------------------------------------------------


async def test_disabled_fetches_nothing(server: MediaServer, store: Store, pipeline: Pipeline,
                                        make_fetcher: Any) -> None:
    server.routes["/a.png"] = Route(image_bytes((10, 10), "PNG"))
    coord = add_exercise(pipeline, server.url("/a.png"))
    fetcher = make_fetcher(enabled=False)
    assert not await fetcher.run_once()
    await asyncio.wait_for(fetcher.run(), 1)  # returns at once
    assert entry(store, coord)["state"] == "pending"
    assert server.hits["/a.png"] == 0


async def wait_until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(10):
        # Polling: the store has no change notification a test could wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_task_wakes_on_new_exercises(server: MediaServer, store: Store,
                                           make_fetcher: Any) -> None:
    fetcher = make_fetcher()
    wired = Pipeline(store, Policy(), clock=lambda: NOW, on_commit=fetcher.on_commit)
    task = asyncio.create_task(fetcher.run())
    try:
        server.routes["/a.png"] = Route(image_bytes((10, 10), "PNG"))
        coord = add_exercise(wired, server.url("/a.png"))
        await wait_until(lambda: media.entries(store.reader(), coord)[0]["state"] == "stored")
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert fetcher._client is None  # closed on the way out


# --- pure helpers ---------------------------------------------------------------------------


def test_normalized_type() -> None:
    assert normalized_type("Image/JPG; q=1") == "image/jpeg"
    assert normalized_type(None) == ""
    assert normalized_type(" video/MP4 ") == "video/mp4"


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=40))
def test_normalized_type_never_fails(header: str) -> None:
    value = normalized_type(header)
    assert ";" not in value
    assert normalized_type(value) == value


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]))
def test_thumbnail_of_arbitrary_bytes_is_an_image_or_value_error(body: bytes, magic: bytes) -> None:
    try:
        data, kind = make_thumbnail(magic + body, 32)
    except ValueError:
        return
    with Image.open(io.BytesIO(data)) as image:
        assert max(image.size) <= 32
        assert kind in ("image/png", "image/jpeg")

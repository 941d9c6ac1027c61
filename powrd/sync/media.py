"""The media task: downloads the images and videos that exercises link (NIP-92 ``imeta``).

For each due ``exercise_media`` row (see :mod:`powrd.store.media`) it fetches ``url``
over http or https only. Every URL, and every redirect hop, goes through the address
policy (:mod:`powrd.sync.address`): no userinfo, resolved once, refused unless every
address is public, and the connection goes to the address that was checked (the
``Host`` header and TLS server name keep the name), so DNS rebinding cannot turn a
checked name into a loopback connection. The body must arrive uncompressed (any
``Content-Encoding`` but identity is refused: a few kilobytes of gzip can inflate to
gigabytes) and is streamed under a size cap counted on the bytes as received; the
served content type must be allowed and match the tag's ``m``; the SHA-256 must match
the tag's ``x`` when there is one. Images get a thumbnail that fits in a square of
``thumbnail_max_px`` (aspect ratio kept), made in a worker thread so decoding never
blocks the event loop. Content and thumbnail are stored by one writer
operation that also evicts other media, lowest priority and least recently used
first, until the total fits the budget. Transient failures are retried with backoff.

httpx is the HTTP client (typed, streaming, explicit timeouts); Pillow makes thumbnails.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import math
import time
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import apsw
import httpx
import structlog
from PIL import Image, ImageOps

from powrd import __version__
from powrd.config import MediaConfig
from powrd.store import media
from powrd.store.ingest import BatchResult
from powrd.store.media import Download, MediaJob, MediaNotFound, media_chunks, media_info
from powrd.store.store import Store
from powrd.sync import backoff
from powrd.sync.address import (
    AddressPolicy,
    AddressRefused,
    Resolve,
    UnresolvableHost,
    system_resolve,
)
from powrd.sync.waiting import wait_until_woken

__all__ = [
    "MediaFailed",
    "MediaFetcher",
    "MediaNotFound",
    "MediaRejected",
    "MediaSettings",
    "make_thumbnail",
    "media_chunks",
    "media_info",
]

log = structlog.get_logger("powrd.sync.media")

# Larger images are stored without a thumbnail rather than decoded (decompression bombs).
MAX_THUMBNAIL_SOURCE_PIXELS = 50_000_000
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "image/x-png": "image/png"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True, slots=True)
class MediaSettings(MediaConfig):
    """How the media task works: ``[media]`` in the config, plus knobs it does not set.

    Attributes:
        allow_private_addresses: fetch from loopback/private/link-local addresses too;
            for tests only: the daemon never sets it, so a published URL cannot make it
            probe the local network.
    """

    batch_size: int = 16
    concurrency: int = 2
    max_redirects: int = 5
    allow_private_addresses: bool = False


class MediaRejected(Exception):
    """The media is refused for good (until its tag changes)."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(reason)
        self.state = state
        self.reason = reason


class MediaFailed(Exception):
    """A transient problem: try again later."""


@dataclass(slots=True)
class MediaStats:
    downloads: int = 0
    bytes_downloaded: int = 0
    failures: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    evictions: int = 0
    last_error: str | None = None


def normalized_type(header: str | None) -> str:
    """``"Image/JPG; q=1"`` -> ``"image/jpeg"``; empty when absent."""
    base = (header or "").split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def _allowed(media_type: str, allowed: tuple[str, ...]) -> bool:
    return any(media_type.startswith(prefix) for prefix in allowed)


def check_declared(job: MediaJob, settings: MediaSettings) -> None:
    """Refuse before any network traffic what the tag alone rules out."""
    scheme = urlsplit(job.url).scheme.lower()
    if scheme not in ("http", "https"):
        raise MediaRejected(media.BAD_URL, f"only http and https URLs are fetched, not {scheme!r}")
    declared = normalized_type(job.media_type)
    if declared and not _allowed(declared, settings.allowed_types):
        raise MediaRejected(media.WRONG_TYPE, f"media type {declared} is not allowed")


def check_served(served: str, declared: str | None, settings: MediaSettings) -> None:
    """The served type must be allowed and, when the tag has ``m``, be that type."""
    wanted = normalized_type(declared)
    if not served:
        raise MediaRejected(media.WRONG_TYPE, "the server sent no content type")
    if wanted and served != wanted:
        raise MediaRejected(media.WRONG_TYPE, f"served as {served}, tag says {wanted}")
    if not _allowed(served, settings.allowed_types):
        raise MediaRejected(media.WRONG_TYPE, f"served type {served} is not allowed")


def media_policy(settings: MediaSettings, resolve: Resolve = system_resolve) -> AddressPolicy:
    """The address policy for media URLs: http(s), query strings allowed, never private."""
    return AddressPolicy(
        ("http", "https"),
        allow_private=settings.allow_private_addresses,
        resolve=resolve,
        allow_query=True,
    )


def _identity_only(response: httpx.Response) -> None:
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        # httpx would inflate it: the size cap would then apply after the damage.
        raise MediaRejected(
            media.WRONG_TYPE, f"served with Content-Encoding {encoding[:40]}, not identity"
        )


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    declared: str | None,
    settings: MediaSettings,
    policy: AddressPolicy | None = None,
) -> tuple[bytes, str]:
    """Download ``url`` under the settings' limits; returns (body, served media type).

    Each hop is checked and pinned by ``policy`` (:func:`media_policy` by default).

    Raises:
        MediaRejected: wrong scheme or address, wrong type or encoding, or larger than
            ``max_bytes``.
        MediaFailed: network trouble, an HTTP error status, too many redirects.
    """
    policy = policy or media_policy(settings)
    for _ in range(settings.max_redirects + 1):
        try:
            pinned = await policy.pin(url)
        except AddressRefused as refusal:
            raise MediaRejected(media.BAD_URL, f"{refusal}: {url[:200]}") from None
        except UnresolvableHost as error:
            raise MediaFailed(str(error)) from None
        headers = {"Host": pinned.host_header}
        extensions = {"sni_hostname": pinned.host} if pinned.scheme == "https" else {}
        async with client.stream(
            "GET", pinned.address_url, headers=headers, extensions=extensions
        ) as response:
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                url = urljoin(pinned.url, location)
                continue
            if response.status_code != 200:
                raise MediaFailed(f"HTTP {response.status_code}")
            served = normalized_type(response.headers.get("content-type"))
            check_served(served, declared, settings)
            _identity_only(response)
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > settings.max_bytes:
                raise MediaRejected(media.TOO_LARGE, f"{length} bytes > {settings.max_bytes}")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > settings.max_bytes:
                    raise MediaRejected(media.TOO_LARGE, f"more than {settings.max_bytes} bytes")
            return bytes(body), served
    raise MediaFailed(f"more than {settings.max_redirects} redirects")


def make_thumbnail(body: bytes, max_px: int) -> tuple[bytes, str]:
    """A thumbnail fitting in ``max_px`` square, aspect ratio kept, never enlarged.

    Images with transparency become PNG, others JPEG. Blocking: call it in a thread.

    Raises:
        ValueError: not a decodable image, or too many pixels to decode safely.
    """
    try:
        with Image.open(io.BytesIO(body)) as source:
            pixels = source.width * source.height
            if pixels > MAX_THUMBNAIL_SOURCE_PIXELS:
                raise ValueError(f"{source.width}x{source.height} is too large to decode")
            source.draft("RGB", (max_px, max_px))  # JPEG decodes at a reduced scale
            image = ImageOps.exif_transpose(source)
            image.thumbnail((max_px, max_px))
    except ValueError:
        raise
    except Exception as error:
        # Downloaded bytes are untrusted: a broken file may fail deep inside a decoder.
        raise ValueError(f"cannot decode image: {type(error).__name__}: {error}") from None
    transparent = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    out = io.BytesIO()
    if transparent:
        image.convert("RGBA").save(out, "PNG", optimize=True)
        return out.getvalue(), "image/png"
    image.convert("RGB").save(out, "JPEG", quality=80)
    return out.getvalue(), "image/jpeg"


class MediaFetcher:
    """Run :meth:`run` as a task; it sleeps until media is due or :meth:`wake` is called.

    Args:
        store: the open store.
        settings: limits and backoff.
        own_pubkeys: the user's public keys now, for eviction priority.
        clock: unix time (tests inject one).
        transport: an httpx transport (tests may inject one).
        resolve: the name resolver for media hosts (tests inject a stub).
    """

    def __init__(
        self,
        store: Store,
        settings: MediaSettings,
        own_pubkeys: Callable[[], Collection[str]] = tuple,
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
        resolve: Resolve = system_resolve,
    ) -> None:
        self.store = store
        self.settings = settings
        self.own_pubkeys = own_pubkeys
        self.clock = clock
        self.stats = MediaStats()
        self._transport = transport
        self.policy = media_policy(settings, resolve)
        self._client: httpx.AsyncClient | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def on_commit(self, batch: BatchResult) -> None:
        """Wake for new exercises (their media rows are new) and deletions (orphans)."""
        if batch.deleted or any(c.startswith("33401:") for c in batch.arrived):
            self._wake.set()

    async def request(self, coordinate: str) -> int:
        """Fetch an exercise's evicted or failed media again soon; returns how many rows."""
        now = int(self.clock())
        count = await self.store.writer.run(lambda conn: media.request(conn, coordinate, now))
        if count:
            self._wake.set()
        return count

    async def run(self) -> None:
        if not self.settings.enabled:
            log.info("media downloads are disabled")
            return
        try:
            while True:
                self._wake.clear()
                if await self.run_once():
                    continue
                next_due = media.next_due(self.store.reader())
                timeout = None if next_due is None else max(0.05, next_due - self.clock())
                await wait_until_woken(self._wake, timeout)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def run_once(self) -> bool:
        """Settle every due row (one batch); False when nothing was due or disabled."""
        if not self.settings.enabled:
            return False
        await self.store.writer.run(media.prune_orphans)
        jobs = media.due(self.store.reader(), int(self.clock()), self.settings.batch_size)
        if not jobs:
            return False
        slots = asyncio.Semaphore(self.settings.concurrency)

        async def settle(job: MediaJob) -> None:
            async with slots:
                await self._settle(job)

        await asyncio.gather(*(settle(job) for job in jobs))
        return True

    def status(self) -> dict[str, Any]:
        """For the daemon's ``status``."""
        reader = self.store.reader()
        return {
            "enabled": self.settings.enabled,
            "downloads": self.stats.downloads,
            "bytes_downloaded": self.stats.bytes_downloaded,
            "failures": self.stats.failures,
            "rejections": dict(self.stats.rejections),
            "evictions": self.stats.evictions,
            "last_error": self.stats.last_error,
            "stored_bytes": media.stored_bytes(reader),
            "budget_bytes": self.settings.budget_bytes,
            "by_state": media.counts(reader),
        }

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.settings.timeout_seconds),
                follow_redirects=False,  # each hop is checked by fetch()
                trust_env=False,
                headers={"User-Agent": f"powrd/{__version__}", "Accept-Encoding": "identity"},
                # No connection reuse: the pool matches on the pinned address alone, so
                # a TLS connection made for one host name could carry another's request.
                limits=httpx.Limits(
                    max_connections=max(1, self.settings.concurrency),
                    max_keepalive_connections=0,
                ),
                transport=self._transport,
            )
        return self._client

    async def _download(self, job: MediaJob) -> Download:
        s = self.settings
        check_declared(job, s)
        try:
            async with asyncio.timeout(s.timeout_seconds):
                body, served = await fetch(
                    self._http(), job.url, job.media_type, s, self.policy
                )
        except TimeoutError:
            raise MediaFailed(f"timed out after {s.timeout_seconds:g} s") from None
        except httpx.UnsupportedProtocol as error:
            raise MediaRejected(media.BAD_URL, str(error)) from None
        except httpx.InvalidURL as error:
            raise MediaRejected(media.BAD_URL, str(error)) from None
        except httpx.HTTPError as error:
            raise MediaFailed(f"{type(error).__name__}: {error}"[:300]) from None
        self.stats.bytes_downloaded += len(body)
        if job.sha256 is not None:
            actual = hashlib.sha256(body).hexdigest()
            if actual != job.sha256:
                reason = f"sha256 is {actual}, tag says {job.sha256}"
                raise MediaRejected(media.HASH_MISMATCH, reason)
        if not served.startswith("image/"):
            return Download(body, served)
        try:
            thumbnail, thumbnail_type = await asyncio.to_thread(
                make_thumbnail, body, s.thumbnail_max_px
            )
        except ValueError as error:
            return Download(body, served, note=f"no thumbnail: {error}"[:300])
        return Download(body, served, thumbnail, thumbnail_type)

    async def _settle(self, job: MediaJob) -> None:
        try:
            download = await self._download(job)
        except MediaRejected as rejection:
            state, reason = rejection.state, rejection.reason
            self.stats.rejections[state] += 1
            self.stats.last_error = reason
            log.info("media refused", exercise=job.coordinate, url=job.url, state=state,
                     reason=reason)
            await self.store.writer.run(
                lambda conn: media.record_rejection(conn, job, state, reason)
            )
            return
        except (MediaFailed, OSError) as error:
            await self._retry_later(job, str(error) or type(error).__name__)
            return
        except Exception as error:
            # A bug must not stop the task: log it and treat it as a transient failure.
            log.exception("media download crashed", exercise=job.coordinate, url=job.url)
            await self._retry_later(job, f"internal error: {type(error).__name__}")
            return
        own = tuple(self.own_pubkeys())
        now = int(self.clock())
        budget = self.settings.budget_bytes

        def store_it(conn: apsw.Connection) -> list[media.Evicted]:
            if not media.record_success(conn, job, download, now):
                return []  # the exercise went away meanwhile
            return media.evict_to_budget(conn, budget, own)

        evicted = await self.store.writer.run(store_it)
        self.stats.downloads += 1
        self.stats.evictions += len(evicted)
        log.info("media stored", exercise=job.coordinate, url=job.url, bytes=len(download.content),
                 thumbnail=download.thumbnail is not None, evicted=len(evicted))

    async def _retry_later(self, job: MediaJob, reason: str) -> None:
        s = self.settings
        delay = backoff.delay(job.attempts + 1, s.retry_min_seconds, s.retry_max_seconds)
        next_attempt = int(self.clock()) + max(1, math.ceil(delay))
        self.stats.failures += 1
        self.stats.last_error = reason
        log.info("media download failed", exercise=job.coordinate, url=job.url, reason=reason,
                 attempts=job.attempts + 1, retry_in=round(delay, 1))
        await self.store.writer.run(
            lambda conn: media.record_failure(conn, job, reason, next_attempt)
        )

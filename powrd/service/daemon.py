"""The daemon: start-up order, the running tasks, signals, and shutdown order.

Start-up: logging → identity → store (migrated, writer running) → pipeline → control
socket → READY=1 → relay workers and background tasks. Shutdown (SIGTERM/SIGINT):
STOPPING=1 → relay workers cancelled → control socket closed → writer drains and
commits → exit 0. SIGHUP: RELOADING=1 → the relay list and authors re-read → READY=1.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, replace
from typing import Any

import nostr_sdk
import structlog

from powrd import __version__
from powrd.config import RETIRED_KEYS, Config, ConfigError, load_config
from powrd.control.server import AlreadyRunning, ControlServer
from powrd.identity import IdentityError, load_secret_key
from powrd.library.cache import QueryCache, run_access_flusher
from powrd.protocol.validate import Policy
from powrd.serve import backend as relay_backend
from powrd.serve.server import LocalRelayServer
from powrd.service import hardening, memory
from powrd.service.methods import build_methods
from powrd.service.notify import Notifier, watchdog_interval, watchdog_loop
from powrd.store import fetchqueue, outbox, queries
from powrd.store import ingest as store_ingest
from powrd.store.database import StoreError
from powrd.store.ingest import BatchResult
from powrd.store.store import Store
from powrd.sync.address import AddressPolicy, AddressRefused, Pinned
from powrd.sync.discovery import Discovery, Target, target_fields
from powrd.sync.media import MediaFetcher, MediaSettings
from powrd.sync.pipeline import Pipeline
from powrd.sync.publisher import Publisher, RelayDelivery
from powrd.sync.relay import RelayWorker
from powrd.sync.resolver import Resolver

log = structlog.get_logger("powrd.service")

EXPIRY_SWEEP_SECONDS = 60.0
STATUS_SECONDS = 10.0


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


def media_settings(config: Config) -> MediaSettings:
    """The media task's settings: ``[media]`` as written, the test-only knobs at defaults."""
    return MediaSettings(**asdict(config.media))


class Daemon:
    """Owns every long-lived object of a running powrd."""

    def __init__(self, config: Config, environ: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.environ = dict(os.environ if environ is None else environ)
        self.state = "starting"
        self.started_at = time.monotonic()
        self.keys: nostr_sdk.Keys | None = None
        self.store: Store | None = None
        self.pipeline: Pipeline | None = None
        self.resolver: Resolver | None = None
        self.publisher: Publisher | None = None
        self.cache = QueryCache(config.cache.max_entries, config.cache.max_bytes)
        self.media: MediaFetcher | None = None
        self.workers: dict[str, tuple[RelayWorker, asyncio.Task[None]]] = {}
        self.control: ControlServer | None = None
        self.local_relay: LocalRelayServer | None = None
        self.notifier = Notifier.from_environ(self.environ)
        self._stop = asyncio.Event()
        self._background: list[asyncio.Task[Any]] = []
        self.commit_listeners: list[Any] = []
        self.discovery = Discovery(
            AddressPolicy(("ws", "wss"), allow_private=config.sync.allow_private_relays)
        )
        self.relay_targets: dict[str, Target] = {}
        self._lists_changed = asyncio.Event()

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        for key in self.config.ignored_keys:
            log.warning("config key ignored", key=key, reason=RETIRED_KEYS[key])
        try:
            self.keys = load_secret_key(self.config.identity, self.environ)
        except IdentityError as error:
            raise StartupError(str(error)) from None
        try:
            self.store = Store(self.config.store.path)
        except StoreError as error:
            raise StartupError(str(error)) from None
        limits = self.config.limits
        self.pipeline = Pipeline(
            self.store,
            Policy(limits.max_event_bytes, limits.max_future_seconds),
            rejected_log_max=self.config.store.rejected_log_max,
            on_commit=self._on_commit,
        )
        self.commit_listeners.append(lambda batch: self.cache.invalidate(batch.changed))
        self.media = MediaFetcher(self.store, media_settings(self.config), self.own_pubkeys)
        self.commit_listeners.append(self.media.on_commit)
        await self.store.writer.run(outbox.release_sent)
        await self.store.writer.run(fetchqueue.release_in_flight)
        self.publisher = Publisher(
            self.pipeline, self.keys, lambda: [u for u, t in self.relay_targets.items() if t.write]
        )
        self.commit_listeners.append(self._maybe_lists_changed)
        if self.config.resolver.enabled:
            self.resolver = Resolver(
                self.pipeline,
                lambda: list(self.config.relay_urls(read=True)),
                self.config.resolver,
                max_frame_bytes=self.config.sync.max_frame_bytes,
                backfilling=self._backfilling,
                allow_private_relays=self.config.sync.allow_private_relays,
            )
            self.commit_listeners.append(self.resolver.on_commit)
        self.control = ControlServer(
            self.config.control.socket,
            build_methods(self),
            max_request_bytes=self.config.control.max_request_bytes,
        )
        try:
            await self.control.start()
        except AlreadyRunning:
            raise StartupError(
                f"{self.config.control.socket}: another powrd is already answering there"
            ) from None
        except OSError as error:
            raise StartupError(
                f"{self.config.control.socket}: cannot listen: {error.strerror or error}"
            ) from None
        # No await between the control socket opening and the workers existing: a
        # status asked at once already lists every configured relay.
        self._read_relay_lists()
        self._apply_relays(self.config)
        await self._start_local_relay()
        self.state = "running"
        self.notifier.ready(self.status_line())
        interval = watchdog_interval(self.environ)
        if interval:
            self._spawn(watchdog_loop(self.notifier, interval), "watchdog")
        self._spawn(self._sweep_expired(), "expiry")
        if self.resolver is not None:
            self._spawn(self.resolver.run(), "resolver")
        self._spawn(run_access_flusher(self.cache, self.store.writer), "cache metadata")
        if self.config.media.enabled:
            self._spawn(self.media.run(), "media")
        self._spawn(self._report_status(), "status")
        self._spawn(
            self.discovery.follow(
                self._lists_changed,
                self._read_relay_lists,
                lambda: {u: w.status for u, (w, _) in self.workers.items() if self._learned(u)},
                lambda: self._apply_relays(self.config),
            ),
            "discovery",
        )
        log.info(
            "powrd running",
            version=__version__,
            relays=len(self.workers),
            store=str(self.config.store.path),
            socket=str(self.config.control.socket),
        )

    async def stop(self) -> None:
        if self.state == "stopped":
            return
        started = self.state != "starting"
        self.state = "stopping"
        self.notifier.stopping()
        if started:
            log.info("powrd stopping")
        tasks = [task for _, task in self.workers.values()] + self._background
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.workers.clear()
        if self.control is not None:
            await self.control.close()
        if self.local_relay is not None:
            await self.local_relay.close()
        if self.store is not None:
            await asyncio.to_thread(self.store.close)
        self.state = "stopped"
        if started:
            log.info("powrd stopped")

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self.start()
            memory.settle_after_startup()
            await self._stop.wait()
        finally:
            await self.stop()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._background.append(task)
        return task

    async def _start_local_relay(self) -> None:
        """The app endpoint; a taken port is a health problem, not a start-up failure."""
        if not self.config.local_relay.enabled:
            return
        assert self.store is not None and self.pipeline is not None
        keys = self.keys
        own = keys.public_key().to_hex() if keys is not None else None
        self.local_relay = LocalRelayServer(
            self.config.local_relay,
            relay_backend.store_backend(self.store, self.pipeline, self.publisher, lambda: own),
            relay_backend.committed_after(self.store),
            relay_backend.latest_seq(self.store),
            max_event_bytes=self.config.limits.max_event_bytes,
        )
        self.commit_listeners.append(self.local_relay.on_commit)
        await self.local_relay.start()

    # -- relays ------------------------------------------------------------------

    def _apply_relays(self, config: Config) -> None:
        """Start, stop or restart relay workers so they match ``config``."""
        assert self.pipeline is not None
        settings = config.sync
        wanted = self.discovery.targets(config, self.identity_pubkey())
        old_write = {url for url, target in self.relay_targets.items() if target.write}
        self.relay_targets = wanted
        for url in list(self.workers):
            worker, task = self.workers[url]
            relay = wanted.get(url)
            if (
                relay is None
                or (relay.read, relay.write) != (worker.status.read, worker.status.write)
                or (relay.read and worker.scopes != list(relay.scopes))
                or worker.settings != settings
            ):
                task.cancel()
                del self.workers[url]
        assert self.publisher is not None
        deliveries = self.publisher.deliveries
        for url in list(deliveries):
            if url not in self.workers:
                del deliveries[url]
        publishing = config.publisher.enabled
        for url, relay in wanted.items():
            if url in self.workers:
                continue
            delivery = None
            if relay.write and publishing:
                delivery = RelayDelivery(url, self.pipeline.store, config.publisher)
                deliveries[url] = delivery
            worker = RelayWorker(
                url,
                list(relay.scopes),
                self.pipeline,
                settings,
                keys=self.keys,
                read=relay.read,
                write=relay.write,
                delivery=delivery,
                on_backfill_complete=self._backfill_complete,
                pin=self._pin_learned if relay.source == "nip65" else None,
            )
            self.workers[url] = (worker, asyncio.create_task(worker.run(), name=f"relay {url}"))
        # A write relay learned from the identity's own list is owed what is still unsent.
        added_write = [u for u, t in wanted.items() if t.write and t.source != "config"]
        added_write = [u for u in added_write if u not in old_write]
        if added_write and self.store is not None:
            self.store.writer.submit(lambda c: [outbox.add_relay(c, u) for u in added_write])

    def _read_relay_lists(self) -> bool:
        """Read the stored relay lists of the authors and the identity; True on a change."""
        if self.store is None or not self.config.sync.outbox:
            return False
        identity = self.identity_pubkey()
        authors = set(self.config.sync.authors) | ({identity} if identity else set())
        return self.discovery.read_lists(self.store.reader(), authors)

    def _learned(self, url: str) -> bool:
        target = self.relay_targets.get(url)
        return target is not None and target.source == "nip65"

    async def _pin_learned(self, url: str) -> Pinned:
        """The address policy for a relay learned from a list; a refusal re-plans at once."""
        try:
            return await self.discovery.policy.pin(url)
        except AddressRefused as error:
            self.discovery.refuse(url, str(error))
            self._lists_changed.set()
            raise

    def _maybe_lists_changed(self, batch: BatchResult) -> None:
        if batch.stored:
            self._lists_changed.set()

    def identity_pubkey(self) -> str | None:
        return self.keys.public_key().to_hex() if self.keys is not None else None

    def relay_entries(self) -> list[dict[str, Any]]:
        """Every connection's status with its source (and authors, when discovered)."""
        return [
            {**worker.status.as_dict(), **target_fields(self.relay_targets.get(url))}
            for url, (worker, _) in self.workers.items()
        ]

    def relays_report(self) -> dict[str, Any]:
        """``relays.list``: every connection with its source, and what discovery decided."""
        relays = self.relay_entries()
        authors = list(self.config.sync.authors)
        identity = self.identity_pubkey()
        if identity is not None and identity not in authors:
            authors.append(identity)
        return {"relays": relays, "discovery": self.discovery.report(self.relay_targets, authors)}

    def reload(self) -> None:
        """SIGHUP: re-read the config file; relays and authors change without a restart.

        systemd hears ``RELOADING=1`` first and ``READY=1`` once done, whether the new
        file was applied or refused (``Type=notify-reload`` waits for both).
        """
        self.notifier.reloading()
        try:
            self._reload()
        finally:
            self.notifier.ready(self.status_line())

    def _reload(self) -> None:
        source = self.config.source
        try:
            fresh = load_config(source, self.environ)
        except ConfigError as error:
            log.error("reload failed; keeping the running config", reason=str(error))
            return
        kept = replace(
            self.config,
            relays=fresh.relays,
            sync=fresh.sync,
            resolver=fresh.resolver,
            publisher=fresh.publisher,
        )
        old_read = set(self.config.relay_urls(read=True))
        old_write = set(self.config.relay_urls(write=True))
        self.config = kept
        if self.resolver is not None:
            self.resolver.policy.allow_private = kept.sync.allow_private_relays
        self.discovery.policy.allow_private = kept.sync.allow_private_relays
        self.discovery.refused.clear()
        self._read_relay_lists()
        self._apply_relays(kept)
        added_write = [u for u in kept.relay_urls(write=True) if u not in old_write]
        if added_write and self.store is not None:
            self.store.writer.submit(lambda c: [outbox.add_relay(c, u) for u in added_write])
        if self.resolver is not None and set(kept.relay_urls(read=True)) - old_read:
            self._spawn(self.resolver.retry_not_found(), "retry not found")
        log.info("config reloaded", relays=len(self.workers), authors=len(kept.sync.authors))

    def _backfilling(self) -> bool:
        """True while a connected read relay has not finished its backfill."""
        return any(
            w.status.read and w.status.state.value == "connected" and not w.status.backfill_complete
            for w, _ in self.workers.values()
        )

    def _backfill_complete(self) -> None:
        if self.resolver is not None:
            self.resolver.wake()

    def resync(self) -> None:
        for worker, _ in self.workers.values():
            worker.request_resync()

    # -- background --------------------------------------------------------------

    def _on_commit(self, batch: BatchResult) -> None:
        for listener in self.commit_listeners:
            listener(batch)

    async def _sweep_expired(self) -> None:
        assert self.store is not None
        writer = self.store.writer
        while True:
            removed = await writer.run(lambda conn: store_ingest.expire(conn, int(time.time())))
            if removed:
                self.cache.clear()
                log.info("expired events removed", count=removed)
            await asyncio.sleep(EXPIRY_SWEEP_SECONDS)

    async def _report_status(self) -> None:
        while True:
            await asyncio.sleep(STATUS_SECONDS)
            self.notifier.status(self.status_line())

    # -- inspection --------------------------------------------------------------

    def own_pubkeys(self) -> frozenset[str]:
        """The user's own authors: their content ranks highest in the cache and media budget."""
        own = set(self.config.sync.authors)
        if self.keys is not None:
            own.add(self.keys.public_key().to_hex())
        return frozenset(own)

    def health(self) -> list[str]:
        problems: list[str] = []
        if not self.config.relays:
            problems.append("no relays configured")
        if not self.config.sync.authors and not self.config.sync.public_kinds:
            problems.append("no authors configured: nothing to sync")
        for worker, _ in self.workers.values():
            status = worker.status
            if status.state.value != "connected":
                reason = f": {status.last_error}" if status.last_error else ""
                problems.append(f"relay {status.url} is {status.state.value}{reason}")
        if self.local_relay is not None:
            problems.extend(self.local_relay.health())
        if self.store is not None and self.store.writer.stats.last_error:
            problems.append(f"store: {self.store.writer.stats.last_error}")
        return problems

    def status_line(self) -> str:
        connected = sum(1 for w, _ in self.workers.values() if w.status.state.value == "connected")
        stored = sum(w.status.events_stored for w, _ in self.workers.values())
        relays = f"relays {connected}/{len(self.workers)} connected"
        return f"{self.state}; {relays}; {stored} events stored"

    def status(self) -> dict[str, Any]:
        assert self.store is not None
        return {
            "version": __version__,
            "state": self.state,
            "uptime_s": round(time.monotonic() - self.started_at, 3),
            "health": self.health(),
            "relays": self.relay_entries(),
            "counts": queries.counts(self.store.reader()),
            "cache": self.cache.stats().as_dict(),
            "media": self.media.status() if self.media is not None else {"enabled": False},
            "memory": memory.usage(len(self.pipeline.seen) if self.pipeline is not None else 0),
            "local_relay": (
                self.local_relay.status() if self.local_relay is not None else {"enabled": False}
            ),
            "events_verified": self.pipeline.verified if self.pipeline is not None else 0,
        }


def run_daemon(config: Config) -> int:
    """``powrd run``: returns the process exit code."""
    hardening.disable_core_dumps()  # before the secret key is read
    daemon = Daemon(config)
    try:
        asyncio.run(daemon.run())
    except StartupError as error:
        print(f"powrd: {error}", file=sys.stderr)
        return 1
    return 0


__all__ = ["Daemon", "StartupError", "run_daemon"]

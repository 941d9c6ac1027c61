"""One connection's read subscriptions: live streams, backfill pages, timeouts, retries.

Per scope a connection holds one *live* subscription and, while a backfill runs, one
*page* in flight. The first page of the first run is also the live subscription: it
stays open after its EOSE. Later pages are separate subscriptions, closed at their
EOSE. A page has ``eose_timeout_seconds`` of silence to finish; when it does not, the
run is abandoned (what arrived is kept, the checkpoint stays where it was) and a new
run from the checkpoint is scheduled with backoff. If the page that timed out was the
live subscription, it is replaced by one without ``limit``: a relay that never sends
EOSE would otherwise have its live events refused as over the first page's limit.

``rate-limited:`` answers slow every REQ of the connection down: requests are spaced
by a :class:`Throttle` that doubles on each such answer and halves on each completed page.
Nothing here sleeps: delayed requests and retries are timers the connection's driver
fires (:meth:`Subscriptions.next_timer`, :meth:`Subscriptions.fire_timers`), so a
throttled or stalled subscription never holds up events already received.

:class:`Subscriptions` is a client of the :class:`~powrd.sync.relay_connection.RelayConnection`:
it opens its subscriptions there and receives their events, EOSEs and CLOSEDs. Events go
to the connection's :class:`~powrd.sync.commits.CommitQueue`; ``auth-required:`` answers
go to the :class:`~powrd.sync.auth.Authenticator`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog

from powrd.protocol import messages
from powrd.protocol.filters import Filter
from powrd.protocol.paging import Backfill
from powrd.protocol.session import EndOfStored, Incoming, Output, SubscriptionClosed
from powrd.sync import backoff
from powrd.sync.id_fetch import IdFetch
from powrd.sync.negentropy import ReconcileResult, Verdict
from powrd.sync.negentropy_backfill import OFF, ONLY, NegentropyBackfill
from powrd.sync.plan import Scope
from powrd.sync.status import RelayStatus

if TYPE_CHECKING:
    from powrd.config import SyncConfig
    from powrd.sync.auth import Authenticator
    from powrd.sync.commits import CommitQueue
    from powrd.sync.relay_connection import RelayConnection

log = structlog.get_logger("powrd.sync.backfill")

# The most a rate-limited relay spaces our requests, whatever the reconnect cap.
MAX_THROTTLE_SECONDS = 60.0
# A run whose live stream outlasts this shows the relay content: the backoff starts over.
STABLE_RUN_SECONDS = 30.0

LoadCheckpoint = Callable[[str], int | None]
SaveCheckpoint = Callable[[str, int], Awaitable[None]]


@dataclass(slots=True)
class ScopeSync:
    """The state of one scope on one connection.

    Attributes:
        run: the backfill in progress, or None between runs.
        live_sub: the subscription streaming new events, once opened.
        page_sub: the subscription of the page in flight.
        newest_committed: the newest ``created_at`` stored from this scope.
        complete: a run has completed on this connection and the live stream has not
            broken since, so no stored event lies in a gap: the checkpoint may follow
            new commits.
        failures: runs abandoned in quick succession; sets the retry backoff.
        retry_at: when (on the monotonic clock) the next run starts.
        completed_at: when (on the monotonic clock) a run last completed.
        reconciling: the negentropy reconciliation that starts the run, while it runs.
        reconcile_at: when (on the monotonic clock) the periodic reconcile is due.
        awaiting_reconcile: the run waits for another scope's reconciliation to end.
        live_before_reconcile: the live stream was opened (with limit 0) for the
            reconciliation in progress; REQ paging replaces it if the relay refuses.
    """

    scope: Scope
    run: Backfill | IdFetch | None = None
    live_sub: str | None = None
    page_sub: str | None = None
    newest_committed: int | None = None
    complete: bool = False
    failures: int = 0
    retry_at: float | None = None
    completed_at: float | None = None
    reconciling: asyncio.Task[ReconcileResult] | None = None
    reconcile_at: float | None = None
    awaiting_reconcile: bool = False
    live_before_reconcile: bool = False

    @property
    def idle(self) -> bool:
        """No run (nor the reconciliation starting one, nor a wait for it) in progress."""
        return self.run is None and self.reconciling is None and not self.awaiting_reconcile


@dataclass(slots=True)
class _Pending:
    due: float
    filters: list[Filter]


@dataclass(slots=True)
class Throttle:
    """The spacing between a connection's REQs, set by the relay's ``rate-limited:`` answers.

    Attributes:
        floor: the smallest spacing once slowed (below it, none at all).
        cap: the largest spacing.
        seconds: the current spacing (reported as the relay's ``throttle_s``).
        slowed_at: when (on the monotonic clock) the relay last asked to slow down.
    """

    floor: float
    cap: float
    seconds: float = 0.0
    slowed_at: float = float("-inf")

    @classmethod
    def for_settings(cls, settings: SyncConfig) -> Throttle:
        """Between the reconnect minimum and the reconnect cap (60 s at most)."""
        cap = min(MAX_THROTTLE_SECONDS, settings.reconnect_max_seconds)
        return cls(settings.reconnect_min_seconds, cap)

    def slow_down(self, now: float) -> None:
        self.slowed_at = now
        self.seconds = min(self.cap, max(self.floor, self.seconds * 2))

    def ease(self, sent_at: float) -> None:
        """A request sent at ``sent_at`` completed: halve the spacing."""
        # Only a page asked at the slower pace shows the relay is content with it.
        if sent_at < self.slowed_at:
            return
        eased = self.seconds / 2
        self.seconds = eased if eased >= self.floor else 0.0


@dataclass(slots=True)
class Subscriptions:
    """Drives the read subscriptions of one connection; see the module docstring.

    Args:
        connection: the connection the subscriptions live on.
        commits: where received events go.
        auth: answers ``auth-required:``.
        scopes: what to backfill and stream.
        settings: paging, timeouts and backoff.
        status: the relay's status; errors and ``backfill_complete`` are set here.
        load_checkpoint: the stored ``since`` of a scope key.
        save_checkpoint: advances a scope's checkpoint (a committed write).
        throttle: the relay's request throttle (it outlives a connection).
        on_complete: called whenever every scope has completed a run.
        negentropy: reconciles a scope before its run (None: REQ paging only).
        clock: unix time, for the ``since`` of replacement live subscriptions.
        monotonic: the clock of timeouts, retries and the throttle.
    """

    connection: RelayConnection
    commits: CommitQueue
    auth: Authenticator
    scopes: list[Scope]
    settings: SyncConfig
    status: RelayStatus
    load_checkpoint: LoadCheckpoint
    save_checkpoint: SaveCheckpoint
    throttle: Throttle
    on_complete: Callable[[], None] | None = None
    negentropy: NegentropyBackfill | None = None
    clock: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    syncs: list[ScopeSync] = field(default_factory=list)
    _by_sub: dict[str, ScopeSync] = field(default_factory=dict)
    _filters: dict[str, list[Filter]] = field(default_factory=dict)
    _deadlines: dict[str, float] = field(default_factory=dict)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _sent_at: dict[str, float] = field(default_factory=dict)
    _last_req: float = float("-inf")
    _next_sub: int = 0

    @property
    def url(self) -> str:
        return self.connection.url

    # -- what the relay says ----------------------------------------------------

    async def on_message(self, output: Output) -> None:
        """A message for one of these subscriptions (routed here by the connection)."""
        if isinstance(output, Incoming):
            event = output.event
            sync = self.observe(output.subscription_id, event.get("created_at"), event.get("id"))
            self.commits.add(output, sync)
        elif isinstance(output, EndOfStored):
            # The next page is asked for before this one is committed: the relay
            # works on it meanwhile. A finished run waits for its events.
            if await self.on_eose(output.subscription_id):
                await self.commits.settle()
                await self.runs_committed()
        elif isinstance(output, SubscriptionClosed):
            await self._on_closed_message(output.subscription_id, output.message)

    async def _on_closed_message(self, sub_id: str, message: str) -> None:
        prefix = messages.machine_prefix(message)
        # Some relays end an ids-only subscription after its EOSE, when it is no longer ours.
        report = log.info if sub_id in self._by_sub else log.debug
        report("subscription closed by relay", relay=self.url, sub=sub_id, reason=message[:200])
        if prefix != "auth-required":
            await self.on_closed(sub_id, prefix == "rate-limited", message)
            return
        self.hold(sub_id)

        async def resend() -> None:
            await self.resend(sub_id)

        await self.auth.request(
            f"sub {sub_id}",
            resend,
            no_identity="relay requires NIP-42 AUTH but no identity is configured",
        )

    # -- starting ---------------------------------------------------------------

    async def start(self) -> None:
        """Open every scope's first page (which becomes its live subscription)."""
        self.syncs = [ScopeSync(scope) for scope in self.scopes]
        self._report_progress()
        for sync in self.syncs:
            await self._start_run(sync)

    async def resync(self) -> None:
        """Run the backfill of every scope again (``sync.now``); live streams stay."""
        for sync in self.syncs:
            if sync.idle:
                await self._start_run(sync)

    def cancel(self) -> None:
        """The connection ended: stop the reconciliations in progress, free the pages' ids."""
        for sync in self.syncs:
            if isinstance(sync.run, IdFetch):
                sync.run.release()
            task = sync.reconciling
            if task is not None:
                task.cancel()
                if task.done() and not task.cancelled():
                    task.exception()  # ended with the connection; nothing to report
                sync.reconciling = None

    async def _start_run(self, sync: ScopeSync) -> None:
        sync.retry_at = sync.reconcile_at = None
        self.status.backfill.scope_started(sync.scope.key, len(self.syncs))
        self._report_progress()
        if self.negentropy is not None and self.negentropy.should_try():
            if any(s.reconciling is not None for s in self.syncs):
                # One reconciliation at a time: the first verdict decides for the rest,
                # and only one scope's items are in memory.
                sync.awaiting_reconcile = True
                return
            await self._start_reconcile(sync, self.negentropy)
            return
        await self._start_paging(sync)

    async def _start_paging(self, sync: ScopeSync) -> None:
        since = self.load_checkpoint(sync.scope.key)
        if since is not None:
            since = max(0, since - self.settings.overlap_seconds)
        sync.run = Backfill([sync.scope.filter], since, self.settings.page_limit)
        if await self._next_page(sync):
            await self._run_done(sync)

    async def _start_reconcile(self, sync: ScopeSync, negentropy: NegentropyBackfill) -> None:
        """Open the live stream, then reconcile the scope in a task of its own."""
        if sync.live_sub is None:
            # New events only: what the relay stored is the reconciliation's business.
            # limit 0 rather than since=now, so a new event with an old created_at still
            # streams; a relay that ignores the limit has its stored events dropped as
            # over the limit by the session.
            sync.live_sub = self._new_sub_id("live")
            sync.live_before_reconcile = True
            self._by_sub[sync.live_sub] = sync
            await self._request(sync.live_sub, [sync.scope.filter.with_bounds(limit=0)])
        sync.reconciling = asyncio.create_task(
            negentropy.reconcile(self.connection, sync.scope.filter, self._new_sub_id("neg")),
            name=f"negentropy {self.url}",
        )
        sync.reconciling.add_done_callback(lambda _: self.connection.wake())

    async def _reconciled(self, sync: ScopeSync, task: asyncio.Task[ReconcileResult]) -> None:
        """A scope's reconciliation ended: fetch what it found missing, or fall back."""
        sync.reconciling = None
        try:
            result = task.result()
        except (asyncio.CancelledError, Exception) as error:  # the run retries; say why
            result = ReconcileResult(Verdict.FAILED, reason=f"negentropy failed: {error!r}")
        assert self.negentropy is not None
        opened_live, sync.live_before_reconcile = sync.live_before_reconcile, False
        if result.verdict is Verdict.RECONCILED:
            sync.run = self.negentropy.id_fetch(result.need)
            if await self._next_page(sync):
                await self._run_done(sync)
        elif self.negentropy.mode == ONLY:
            await self._abandon(sync, f"{result.reason} (negentropy = \"only\": no REQ paging)")
        else:
            log.info("negentropy refused; REQ paging", relay=self.url, reason=result.reason)
            if opened_live and sync.live_sub is not None:
                # Paging as without negentropy: its first page becomes the live stream.
                await self._close(sync.live_sub)
                sync.live_sub = None
            await self._start_paging(sync)
        waiting = next((s for s in self.syncs if s.awaiting_reconcile), None)
        if waiting is not None:
            waiting.awaiting_reconcile = False
            await self._start_run(waiting)

    async def _next_page(self, sync: ScopeSync) -> bool:
        """Ask for the run's next page; True when it has asked for everything."""
        assert sync.run is not None
        filters = sync.run.next_request()
        if filters is None:
            sync.page_sub = None
            return True
        if not filters:
            # Every id left is another relay's to fetch at the moment: wait for its claims.
            assert isinstance(sync.run, IdFetch)
            sync.page_sub = None
            wait = self.settings.eose_timeout_seconds
            sync.run.wait(self.connection.wake, self.monotonic() + wait)
            return False
        live = sync.live_sub is None
        sub_id = self._new_sub_id("live" if live else "page")
        if live:
            sync.live_sub = sub_id
        sync.page_sub = sub_id
        self._by_sub[sub_id] = sync
        await self._request(sub_id, filters)
        return False

    async def runs_committed(self) -> None:
        """Everything received so far is committed: finish the runs that have all pages."""
        for sync in self.syncs:
            if sync.run is not None and sync.run.done:
                await self._run_done(sync)

    async def _run_done(self, sync: ScopeSync) -> None:
        assert sync.run is not None
        if isinstance(sync.run, IdFetch):
            sync.run.release()
        for warning in sync.run.warnings:
            log.warning("backfill", relay=self.url, scope=sync.scope.key, reason=warning)
        sync.run, sync.page_sub = None, None
        sync.complete, sync.completed_at = True, self.monotonic()
        if self.negentropy is not None and self.negentropy.mode != OFF:
            # Events a relay stored late, with an old created_at, only a reconcile finds.
            sync.reconcile_at = sync.completed_at + self.settings.reconcile_interval_seconds
        await self._save(sync)
        self.status.backfill.scope_done(sync.scope.key)
        if self._report_progress():
            self.status.backfill.finished()
            log.info("backfill complete", relay=self.url)
            if self.on_complete is not None:
                self.on_complete()

    def _report_progress(self) -> bool:
        """Set ``status.backfill_complete``; True when it just became true."""
        done = all(s.complete and s.idle and s.retry_at is None for s in self.syncs)
        became = done and not self.status.backfill_complete
        self.status.backfill_complete = done
        return became

    # -- requests ---------------------------------------------------------------

    def _new_sub_id(self, prefix: str) -> str:
        self._next_sub += 1
        return f"{prefix}{self._next_sub}"

    async def _request(self, sub_id: str, filters: list[Filter], *, delay: float = 0.0) -> None:
        """Send a REQ now, or later when the throttle or ``delay`` says so."""
        now = self.monotonic()
        due = max(now + delay, self._last_req + self.throttle.seconds)
        self._filters[sub_id] = filters
        if due > now:
            self._pending[sub_id] = _Pending(due, filters)
            return
        await self._send_req(sub_id, filters)

    async def _send_req(self, sub_id: str, filters: list[Filter]) -> None:
        self._pending.pop(sub_id, None)
        self._last_req = self._sent_at[sub_id] = self.monotonic()
        sync = self._by_sub.get(sub_id)
        if sync is not None and sync.page_sub == sub_id:
            # Only pages are timed: a live stream without a page may never see EOSE.
            self._deadlines[sub_id] = self._last_req + self.settings.eose_timeout_seconds
        await self.connection.open_subscription(sub_id, filters, self)

    async def _close(self, sub_id: str) -> None:
        self._forget(sub_id)
        await self.connection.close_subscription(sub_id)

    def _forget(self, sub_id: str) -> None:
        self._by_sub.pop(sub_id, None)
        self._filters.pop(sub_id, None)
        self._deadlines.pop(sub_id, None)
        self._pending.pop(sub_id, None)
        self._sent_at.pop(sub_id, None)

    def observe(self, sub_id: str, created_at: object, event_id: object) -> ScopeSync | None:
        """An event passed the session checks: count it for paging, extend the page's time.

        Returns:
            The scope the event belongs to (its page may be closed by the time the
            event is committed), or None for a subscription no scope owns.
        """
        sync = self._by_sub.get(sub_id)
        if sync is None or sync.run is None or sync.page_sub != sub_id:
            return sync
        self._deadlines[sub_id] = self.monotonic() + self.settings.eose_timeout_seconds
        if type(created_at) is int and isinstance(event_id, str):
            sync.run.observe(created_at, event_id)
            self.status.backfill.event(created_at, event_id)
        return sync

    async def on_eose(self, sub_id: str) -> bool:
        """A page ended: ask for the next one at once.

        Returns:
            True when a run has received its last page: once the events received so
            far are committed, call :meth:`runs_committed` to complete it (the
            checkpoint and ``backfill_complete`` must not run ahead of the store).
        """
        self._deadlines.pop(sub_id, None)
        sync = self._by_sub.get(sub_id)
        if sync is None or sync.run is None or sync.page_sub != sub_id:
            return False
        self.throttle.ease(self._sent_at.get(sub_id, float("-inf")))
        if sub_id != sync.live_sub:
            await self._close(sub_id)
        sync.run.page_done()
        self.status.backfill.page_done()
        return await self._next_page(sync)

    async def on_closed(self, sub_id: str, rate_limited: bool, message: str) -> None:
        """The relay ended a subscription (other than to ask for AUTH)."""
        sync = self._by_sub.get(sub_id)
        filters = self._filters.get(sub_id)
        if sync is None or filters is None:
            return
        self._deadlines.pop(sub_id, None)
        if rate_limited:
            self.slow_down()
            await self._request(sub_id, filters, delay=self.throttle.seconds)
            return
        if sub_id == sync.live_sub:
            self._forget(sub_id)
            sync.live_sub = None
            sync.complete = False  # events may have been missed before a new live stream
        await self._abandon(sync, f"subscription closed by relay: {message[:200]}")

    def hold(self, sub_id: str) -> None:
        """Stop timing a subscription that waits for something else (NIP-42 AUTH)."""
        self._deadlines.pop(sub_id, None)
        self._pending.pop(sub_id, None)

    async def resend(self, sub_id: str) -> None:
        """Send a held subscription's REQ again."""
        filters = self._filters.get(sub_id)
        if filters is not None:
            await self._request(sub_id, filters)

    def slow_down(self) -> None:
        """The relay asked to slow down (``rate-limited:``): space the REQs further."""
        self.throttle.slow_down(self.monotonic())

    async def committed(self, sync: ScopeSync, newest_created_at: int) -> None:
        """Events of ``sync`` up to ``newest_created_at`` are committed."""
        # Only after a complete run and with the live stream unbroken since: otherwise
        # a gap may lie behind the newest event, and the checkpoint must not pass it.
        if sync.newest_committed is None or newest_created_at > sync.newest_committed:
            sync.newest_committed = newest_created_at
            await self._save(sync)

    async def _save(self, sync: ScopeSync) -> None:
        if sync.complete and sync.newest_committed is not None:
            await self.save_checkpoint(sync.scope.key, sync.newest_committed)

    # -- timers -----------------------------------------------------------------

    def next_timer(self) -> float | None:
        """Seconds until :meth:`fire_timers` has something to do, or None."""
        times = list(self._deadlines.values()) + [p.due for p in self._pending.values()]
        times += [s.retry_at for s in self.syncs if s.retry_at is not None]
        times += [s.reconcile_at for s in self.syncs if s.reconcile_at is not None and s.idle]
        waits = [s.run for s in self.syncs if isinstance(s.run, IdFetch) and s.run.waiting]
        times += [run.wait_until for run in waits]
        if any(s.reconciling is not None and s.reconciling.done() for s in self.syncs):
            return 0.0
        if any(run.may_go_on(self.monotonic()) for run in waits):
            return 0.0
        if not times:
            return None
        return max(0.0, min(times) - self.monotonic())

    async def fire_timers(self) -> None:
        now = self.monotonic()
        for sub_id, deadline in list(self._deadlines.items()):
            sync = self._by_sub.get(sub_id)
            if deadline <= now and sync is not None:
                timeout = self.settings.eose_timeout_seconds
                await self._abandon(sync, f"subscription {sub_id}: no EOSE within {timeout:g} s")
        for sub_id, pending in sorted(self._pending.items(), key=lambda item: item[1].due):
            if pending.due <= now:
                await self._send_req(sub_id, pending.filters)
        for sync in self.syncs:
            if sync.reconciling is not None and sync.reconciling.done():
                await self._reconciled(sync, sync.reconciling)
                continue
            run = sync.run
            if isinstance(run, IdFetch) and run.waiting and run.may_go_on(now):
                if await self._next_page(sync):
                    await self.commits.settle()
                    await self.runs_committed()
                continue
            retry_due = sync.retry_at is not None and sync.retry_at <= now
            reconcile_due = sync.reconcile_at is not None and sync.reconcile_at <= now
            if retry_due or (reconcile_due and sync.idle):
                await self._start_run(sync)

    async def _abandon(self, sync: ScopeSync, reason: str) -> None:
        """Give up the run in progress: keep what arrived, retry later from the checkpoint."""
        if sync.reconciling is not None:
            sync.reconciling.cancel()
            sync.reconciling = None
        page = sync.page_sub
        if page is not None and page == sync.live_sub:
            # The live stream must not stay under a page's limit with no EOSE to lift it.
            await self._close(page)
            sync.complete = False
            sync.live_sub = self._new_sub_id("live")
            self._by_sub[sync.live_sub] = sync
            since = int(self.clock())
            await self._request(sync.live_sub, [sync.scope.filter.with_bounds(since=since)])
        elif page is not None:
            await self._close(page)
        if isinstance(sync.run, IdFetch):
            sync.run.release()
        sync.run, sync.page_sub = None, None
        # A relay that ends each live stream right after a completed run must still be
        # backed off from: only a run that stayed unbroken for a while clears the count.
        completed_at = sync.completed_at
        now = self.monotonic()
        if completed_at is not None and now - completed_at >= STABLE_RUN_SECONDS:
            sync.failures = 0
        sync.failures += 1
        delay = backoff.delay(
            sync.failures, self.settings.reconnect_min_seconds, self.settings.reconnect_max_seconds
        )
        sync.retry_at = now + delay
        self._report_progress()
        self.status.last_error = f"{reason}; backfill retry in {delay:.1f} s"
        log.warning("backfill abandoned", relay=self.url, scope=sync.scope.key, reason=reason,
                    retry_s=round(delay, 2))

"""Crash-safety harness: SIGKILL a real ``powrd run`` at random moments, restart, check.

Each round adds a fresh slice of a signed corpus to an in-process relay, starts the
daemon as a subprocess, publishes workout records over the control socket from a
thread (recording which publishes were acknowledged), and kills the daemon with
SIGKILL after a seeded random delay: sometimes before it is ready, often while it
backfills, sometimes while it only publishes. After every kill the database must pass
``PRAGMA integrity_check``, hold every acknowledged publish, have lost nothing it held
before, never hold two events for one publish request, and agree with ``powrd
reindex`` (run on a copy). A last clean run must converge: every event the relay
serves stored once, and the relay holding exactly the user's stored events, one per
request, the acknowledged ones with the acknowledged id.

Used by ``tests/reliability/test_crash_safety.py`` (20+ rounds) and
``tests/soak/crash_soak.py`` (hundreds).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apsw

from powrd.control.client import ConnectionLost, DaemonNotRunning, RpcError, call_sync
from powrd.library.reindex import reindex
from powrd.protocol.event import loads
from powrd.store.database import open_writer_connection
from powrd.store.raw_events import unpack
from powrd.store.writer import run_inline
from tests.reliability.powrd_process import run_powrd, spawn_daemon
from tests.support.corpus import current_ids, generate_corpus, keys_for, pubkey_of
from tests.support.daemon import write_config
from tests.support.relays import LocalRelayHandle

USER = keys_for("crash-harness", 0)
READY_TIMEOUT = 20.0
CONVERGE_TIMEOUT = 60.0
PUBLISH_PACE_SECONDS = 0.01
REINDEX_UNCHANGED = "reindex: processed tables already matched the raw events"


@dataclass
class Ledger:
    """What the publishing thread asked for and what the daemon answered, per ``d`` tag."""

    acked: dict[str, str] = field(default_factory=dict)  # d -> acknowledged event id
    in_doubt: set[str] = field(default_factory=set)  # sent, no answer (killed meanwhile)
    refused: dict[str, str] = field(default_factory=dict)  # d -> error message
    not_sent: set[str] = field(default_factory=set)  # nobody listened on the socket


@dataclass
class RoundOutcome:
    index: int
    delay: float
    phase: str  # "starting", "ingesting" or "publishing"
    acked: int
    in_doubt: int


@dataclass
class HarnessReport:
    rounds: list[RoundOutcome]
    events_served: int
    publishes_acked: int
    publishes_in_doubt: int
    in_doubt_delivered: int

    @property
    def phases(self) -> Counter[str]:
        return Counter(r.phase for r in self.rounds)

    def summary(self) -> str:
        phases = ", ".join(f"{name} {count}" for name, count in sorted(self.phases.items()))
        return (
            f"{len(self.rounds)} rounds survived (killed while {phases}); "
            f"{self.events_served} relay events stored once; {self.publishes_acked} "
            f"acknowledged publishes delivered once; {self.publishes_in_doubt} in doubt at a "
            f"kill ({self.in_doubt_delivered} of them had been committed and were delivered)"
        )


class PublishingThread(threading.Thread):
    """Publishes records over the control socket until stopped, writing the ledger."""

    def __init__(self, socket_path: Path, round_index: int, exercise: str, ledger: Ledger) -> None:
        super().__init__(name=f"crash-publisher-{round_index}", daemon=True)
        self.socket_path = socket_path
        self.round_index = round_index
        self.exercise = exercise
        self.ledger = ledger
        self.stop_event = threading.Event()
        self.answered = threading.Event()  # the daemon answered at least once

    def run(self) -> None:
        number = 0
        while not self.stop_event.is_set():
            d = f"crash-{self.round_index}-{number}"
            number += 1
            try:
                reply = call_sync(self.socket_path, "publish", record_params(d, self.exercise), timeout=5.0)
            except DaemonNotRunning:
                self.ledger.not_sent.add(d)
            except RpcError as error:
                self.ledger.refused[d] = error.message
                self.answered.set()
            except (ConnectionLost, OSError):  # includes TimeoutError
                self.ledger.in_doubt.add(d)
            else:
                self.ledger.acked[d] = reply["id"]
                self.answered.set()
            self.stop_event.wait(PUBLISH_PACE_SECONDS)


def record_params(d: str, exercise: str) -> dict[str, Any]:
    """A kind-1301 record: regular, so a relay keeps every copy and a double would show."""
    return {
        "kind": 1301,
        "content": "",
        "tags": [
            ["d", d], ["title", "Crash test"], ["type", "strength"],
            ["exercise", exercise, "", "100", "5", "8", "normal"],
            ["start", "1700000000"], ["end", "1700003600"], ["completed", "true"],
        ],
    }


def open_readonly(path: Path) -> apsw.Connection:
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    # The daemon may be checkpointing or recovering the WAL: wait rather than fail.
    conn.setbusytimeout(5000)
    return conn


def integrity(path: Path) -> list[str]:
    conn = open_readonly(path)
    try:
        return [row[0] for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def stored_ids(path: Path) -> set[str]:
    conn = open_readonly(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM nostr_events")}
    finally:
        conn.close()


def user_events(path: Path, pubkey: str) -> list[dict[str, Any]]:
    conn = open_readonly(path)
    try:
        return [loads(unpack(row[0])) for row in conn.execute(
            "SELECT raw_event FROM nostr_events WHERE pubkey = ?", (pubkey,)
        )]
    finally:
        conn.close()


def d_of(event: dict[str, Any]) -> str:
    return next(tag[1] for tag in event["tags"] if tag[0] == "d")


def copy_database(source: Path, target_dir: Path) -> Path:
    """Copy a database that no process has open (with its WAL) into ``target_dir``."""
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / "powrd.db"
    shutil.copyfile(source, target)
    wal = source.with_name(source.name + "-wal")
    if wal.exists():
        shutil.copyfile(wal, target.with_name(target.name + "-wal"))
    return target


def reindex_changes(path: Path, scratch: Path) -> dict[str, Any]:
    """What ``powrd reindex`` would change, computed on a copy (the same library call)."""
    copy = copy_database(path, scratch)
    conn = open_writer_connection(copy)
    try:
        report = run_inline(conn, reindex)
    finally:
        conn.close()
        shutil.rmtree(scratch)
    return report.changed


def check_user_events(events: list[dict[str, Any]], ledger: Ledger, where: str) -> None:
    """One event per request at most; acknowledged ones with their acknowledged id."""
    by_d = Counter(d_of(e) for e in events)
    doubled = [d for d, n in by_d.items() if n > 1]
    assert not doubled, f"{where}: publish requests stored as several events: {doubled[:5]}"
    for event in events:
        d = d_of(event)
        assert d not in ledger.refused and d not in ledger.not_sent, (
            f"{where}: {d} was refused or never sent, yet {event['id']} exists"
        )
        if d in ledger.acked:
            assert event["id"] == ledger.acked[d], f"{where}: {d} acknowledged as another event"
        else:
            assert d in ledger.in_doubt, f"{where}: {event['id']} answers no publish request"
    present = {d_of(e) for e in events}
    lost = sorted(set(ledger.acked) - present)
    assert not lost, f"{where}: acknowledged publishes missing: {lost[:5]}"


class CrashHarness:
    """Runs kill/restart rounds against one relay and one database directory.

    Args:
        workdir: an empty directory for the config, key, database and logs.
        relay: a running relay (the daemon reads from it and publishes to it).
        rounds: how many kill/restart rounds.
        seed: seeds the kill delays (and names the corpus).
        events_per_round: fresh relay events added before each round.
        max_kill_delay: the longest random delay before a kill, in seconds.
    """

    def __init__(
        self, workdir: Path, relay: LocalRelayHandle, *, rounds: int, seed: int,
        events_per_round: int = 300, max_kill_delay: float = 0.8,
    ) -> None:
        self.workdir = workdir
        self.relay = relay
        self.rounds = rounds
        self.rng = random.Random(f"crash-harness:{seed}")
        self.events_per_round = events_per_round
        self.max_kill_delay = max_kill_delay
        n_authors = 5
        self.corpus = generate_corpus(rounds * events_per_round, n_authors, seed=seed)
        self.authors = [pubkey_of(keys_for(seed, i)) for i in range(n_authors)]
        first_exercise = next(loads(e) for e in self.corpus if loads(e)["kind"] == 33401)
        self.exercise = f"33401:{first_exercise['pubkey']}:{d_of(first_exercise)}"
        self.user = pubkey_of(USER)
        key_file = workdir / "user.nsec"
        key_file.write_text(USER.secret_key().to_bech32() + "\n")
        key_file.chmod(0o600)
        self.config = write_config(
            workdir, relays=[relay.url], authors=[*self.authors, self.user], secret_key_file=key_file
        )
        self.db = workdir / "powrd.db"
        self.socket = workdir / "powrd.sock"
        self.log = workdir / "daemon.log"
        self.ledger = Ledger()
        self.served_texts: dict[str, str] = {}  # what the relay serves now: id -> JSON
        self.outcomes: list[RoundOutcome] = []

    async def run(self) -> HarnessReport:
        for index in range(self.rounds):
            await self._round(index)
        return await self._converge()

    # -- one round ---------------------------------------------------------------

    async def _round(self, index: int) -> None:
        start = index * self.events_per_round
        fresh = self.corpus[start : start + self.events_per_round]
        await self.relay.publish(fresh)
        # What the relay serves now: the newest version of each address, every record.
        candidates = [*self.served_texts.values(), *fresh]
        served = current_ids(candidates)
        by_id = {loads(text)["id"]: text for text in candidates}
        self.served_texts = {event_id: by_id[event_id] for event_id in served}
        before = stored_ids(self.db) if self.db.exists() else set()
        ledger = Ledger()
        process = spawn_daemon(self.config, self.log)
        publisher = PublishingThread(self.socket, index, self.exercise, ledger)
        publisher.start()
        try:
            delay = await self._kill_moment(process, publisher)
            assert process.poll() is None, f"round {index}: powrd exited by itself: {self._log_tail()}"
            process.send_signal(signal.SIGKILL)
            await asyncio.to_thread(process.wait)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            publisher.stop_event.set()
            await asyncio.to_thread(publisher.join)
        self._merge(ledger)
        self.outcomes.append(self._check_round(index, delay, before, ledger, publisher.answered.is_set()))

    async def _kill_moment(self, process: subprocess.Popen[bytes], publisher: PublishingThread) -> float:
        """Wait for this round's random moment, counted from the start or from readiness.

        A third of the rounds kill at any moment after the start (often before the
        daemon is ready), a third in the first 100 ms after it first answers (while it
        backfills the fresh relay events) and a third later (while it publishes).
        """
        mode = self.rng.randrange(3)
        if mode == 0:
            delay = self.rng.uniform(0.0, self.max_kill_delay)
            await asyncio.sleep(delay)
            return delay
        delay = self.rng.uniform(0.0, 0.1) if mode == 1 else self.rng.uniform(0.1, self.max_kill_delay)
        deadline = time.monotonic() + READY_TIMEOUT
        while not publisher.answered.is_set():
            assert process.poll() is None, f"powrd exited by itself: {self._log_tail()}"
            assert time.monotonic() < deadline, "powrd did not answer on its control socket"
            await asyncio.sleep(0.005)
        await asyncio.sleep(delay)
        return delay

    def _check_round(
        self, index: int, delay: float, before: set[str], ledger: Ledger, answered: bool
    ) -> RoundOutcome:
        where = f"round {index} (killed after {delay:.3f} s)"
        if not self.db.exists():
            assert not ledger.acked, f"{where}: publishes acknowledged without a database"
            return RoundOutcome(index, delay, "starting", 0, len(ledger.in_doubt))
        problems = integrity(self.db)
        assert problems == ["ok"], f"{where}: integrity_check: {problems[:5]}"
        now = stored_ids(self.db)
        lost = before - now
        assert not lost, f"{where}: {len(lost)} committed events vanished, e.g. {sorted(lost)[:3]}"
        check_user_events(user_events(self.db, self.user), self.ledger, where)
        changed = reindex_changes(self.db, self.workdir / "reindex-copy")
        assert not changed, f"{where}: reindex would change {changed}"
        if not answered:
            phase = "starting"
        elif set(self.served_texts) - now:
            phase = "ingesting"
        else:
            phase = "publishing"
        return RoundOutcome(index, delay, phase, len(ledger.acked), len(ledger.in_doubt))

    def _merge(self, ledger: Ledger) -> None:
        self.ledger.acked.update(ledger.acked)
        self.ledger.in_doubt |= ledger.in_doubt
        self.ledger.refused.update(ledger.refused)
        self.ledger.not_sent |= ledger.not_sent

    # -- the end -----------------------------------------------------------------

    async def _converge(self) -> HarnessReport:
        """A clean run until everything is stored and delivered, then a clean stop."""
        process = spawn_daemon(self.config, self.log)
        try:
            served = await self.relay.fetch_all_ids({"authors": self.authors})
            assert served == set(self.served_texts)
            deadline = time.monotonic() + CONVERGE_TIMEOUT
            while True:
                assert process.poll() is None, f"powrd exited by itself: {self._log_tail()}"
                done, why = await self._converged(served)
                if done:
                    break
                assert time.monotonic() < deadline, f"no convergence after the rounds: {why}"
                await asyncio.sleep(0.1)
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, 30)
            assert code == 0, f"powrd exited {code} on SIGTERM: {self._log_tail()}"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert integrity(self.db) == ["ok"]
        assert served <= stored_ids(self.db)
        mine = user_events(self.db, self.user)
        check_user_events(mine, self.ledger, "after the rounds")
        on_relay = await self.relay.fetch_all({"authors": [self.user]})
        assert sorted(e["id"] for e in on_relay) == sorted(e["id"] for e in mine), (
            "the relay does not hold exactly the user's stored events"
        )
        check_user_events(on_relay, self.ledger, "on the relay")
        self._cli_reindex_unchanged()
        in_doubt_delivered = sum(1 for e in mine if d_of(e) in self.ledger.in_doubt)
        return HarnessReport(
            self.outcomes, len(served), len(self.ledger.acked), len(self.ledger.in_doubt),
            in_doubt_delivered,
        )

    async def _converged(self, served: set[str]) -> tuple[bool, str]:
        missing = served - stored_ids(self.db)
        if missing:
            return False, f"{len(missing)} relay events not stored"
        try:
            status = await asyncio.to_thread(call_sync, self.socket, "status", None, 5.0)
        except (DaemonNotRunning, ConnectionLost, OSError):
            return False, "daemon not answering"
        pending = status["counts"]["outbox_pending"]
        if pending:
            return False, f"{pending} publishes not delivered"
        on_relay = await self.relay.fetch_all_ids({"authors": [self.user]})
        mine = {e["id"] for e in user_events(self.db, self.user)}
        if on_relay != mine:
            return False, f"relay has {len(on_relay)} of the user's {len(mine)} events"
        return True, ""

    def _cli_reindex_unchanged(self) -> None:
        copy_dir = self.workdir / "cli-reindex"
        copy_database(self.db, copy_dir)
        config = write_config(copy_dir)
        result = run_powrd("--config", str(config), "reindex", timeout=120)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == REINDEX_UNCHANGED, result.stdout

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

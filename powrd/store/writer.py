"""The single writer: one thread, one connection, group commit.

Every write in the daemon is an *operation* (a callable taking the connection). The
writer thread takes whatever operations are queued, runs them in one transaction and
commits once; should one of them fail, the batch runs again with a savepoint around
each operation, so that one failing operation does not undo the others. Callers await
the result; a result is only delivered after COMMIT, so "acknowledged" always means
"durable".

A full disk (SQLite's ``SQLITE_FULL``: no space left, or the database's page limit)
does not fail anyone: the whole batch is rolled back and kept, the problem is shown in
:attr:`WriterStats.last_error` (the daemon's ``health``), and the same batch runs
again with backoff until it commits. Its callers simply wait, which is the
back-pressure that pauses ingest at the relays. Only at shutdown is a batch that still
cannot be written given up; its callers get the error, and since none of them had
been answered, nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import apsw
import structlog

log = structlog.get_logger("powrd.store.writer")

T = TypeVar("T")
Operation = Callable[[apsw.Connection], T]

_STOP = object()
FULL_RETRY_MIN_SECONDS = 0.05
FULL_RETRY_MAX_SECONDS = 1.0


@dataclass(slots=True)
class _Job:
    operation: Operation[Any]
    future: concurrent.futures.Future[Any]
    # What the operation returned or raised in the transaction being committed.
    value: Any = None
    error: BaseException | None = None


_Outcome = tuple[_Job, Any, BaseException | None]


@dataclass(slots=True)
class WriterStats:
    """What the writer has done, and what currently stops it (``last_error``).

    Attributes:
        transactions: committed transactions.
        operations: committed operations.
        failed_commits: transactions whose COMMIT failed (their callers got the error).
        last_error: the current problem, None once a transaction commits again.
        full_since: unix time the disk (or page limit) became full; None when not full.
        full_retries: retries of batches held back by a full disk, ever.
        full_episodes: how many times the disk became full, ever.
    """

    transactions: int = 0
    operations: int = 0
    failed_commits: int = 0
    last_error: str | None = None
    full_since: float | None = None
    full_retries: int = 0
    full_episodes: int = 0


class Writer:
    """Runs write operations on one connection in a dedicated thread.

    Args:
        conn: the read-write connection (owned by the writer from now on).
        max_batch: the most operations committed in one transaction.
        max_queue: operations waiting at most; ``submit`` blocks beyond that, and
            ``run`` waits (back-pressure rather than unbounded memory).
        full_retry_min_seconds: first wait before retrying a batch refused for lack
            of space; doubled on each retry up to ``full_retry_max_seconds``.
        full_retry_max_seconds: the longest wait between retries, so writing resumes
            at most this long after space returns.
    """

    def __init__(
        self,
        conn: apsw.Connection,
        *,
        max_batch: int = 256,
        max_queue: int = 1024,
        full_retry_min_seconds: float = FULL_RETRY_MIN_SECONDS,
        full_retry_max_seconds: float = FULL_RETRY_MAX_SECONDS,
    ) -> None:
        self.conn = conn
        self.max_batch = max_batch
        self.full_retry_min_seconds = full_retry_min_seconds
        self.full_retry_max_seconds = full_retry_max_seconds
        self.stats = WriterStats()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="powrd-writer", daemon=True)
        self._started = False
        # Set once stop() begins: no new operations, and a full disk is not waited out.
        self._closing = threading.Event()
        self._submitting = threading.Lock()

    @property
    def full(self) -> bool:
        """True while writes are held back because the disk (or page limit) is full."""
        return self.stats.full_since is not None

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self) -> None:
        """Finish every queued operation, then stop the thread and close the connection.

        A batch that a full disk still holds back is given up at once (its callers get
        the error) instead of keeping shutdown waiting for space.
        """
        if self._started:
            # Set before taking the lock: a submitter blocked on a full queue holds it,
            # and the writer must stop waiting for space to make room for it.
            self._closing.set()
            with self._submitting:
                self._queue.put(_STOP)
            self._thread.join()
            self._started = False
        self.conn.close()

    def submit(self, operation: Operation[T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._submitting:
            if not self._started or self._closing.is_set():
                future.set_exception(RuntimeError("store writer is not running"))
                return future
            self._queue.put(_Job(operation, future))
        return future

    async def run(self, operation: Operation[T]) -> T:
        """Run ``operation`` in the next transaction and return its result once committed."""
        if self._queue.full():
            # Waiting for room in a thread keeps the event loop free.
            return await asyncio.to_thread(lambda: self.submit(operation).result())
        return await asyncio.wrap_future(self.submit(operation))

    def call(self, operation: Operation[T]) -> T:
        """Blocking form of :meth:`run`, for threads other than the event loop's."""
        return self.submit(operation).result()

    # -- the writer thread -------------------------------------------------------

    def _loop(self) -> None:
        while True:
            jobs, stop_after = self._take_batch()
            if jobs:
                self._commit(jobs)
            if stop_after:
                return

    def _take_batch(self) -> tuple[list[_Job], bool]:
        """The next operations to commit together, and whether the writer stops after them."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        jobs: list[_Job] = [first]
        while len(jobs) < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _commit(self, jobs: list[_Job]) -> None:
        # A job whose caller stopped waiting (cancelled at shutdown) still runs: the open
        # batch is finished, only its result has nobody to go to.
        for job in jobs:
            job.future.set_running_or_notify_cancel()
        retries = 0
        while True:
            try:
                outcomes = self._attempt(jobs)
            except apsw.FullError as error:
                self._rollback()
                self._checkpoint()
                if self._closing.is_set():
                    self._fail(jobs, error)
                    return
                self._note_full(error, len(jobs), retries)
                delay = min(
                    self.full_retry_max_seconds,
                    self.full_retry_min_seconds * 2.0 ** min(retries, 32),
                )
                # stop() sets the event, so shutdown never waits out a full disk.
                self._closing.wait(delay)
                retries += 1
                continue
            except Exception as error:  # the writer thread must outlive any one batch
                self._rollback()
                self.stats.last_error = f"writer: {error}"
                self._fail(jobs, error)
                return
            self._committed(jobs, outcomes)
            return

    def _attempt(self, jobs: list[_Job]) -> list[_Outcome]:
        """Run the batch in one transaction; raises if the batch as a whole failed.

        The operations first run one after the other with nothing between them. Only if
        one fails is the transaction rolled back and the batch run again with a savepoint
        around each operation, so that the failure undoes nothing but itself (a batch is
        already run again after a full disk: operations do nothing but write). Savepoints
        on every batch cost: each statement that fires a trigger (the kept counts) then
        copies every page it changes into a statement journal, which made batches of
        several operations twice as slow.
        """
        failure = self._run(jobs, isolated=False)
        if failure is None:
            return self._commit_outcomes(jobs)
        if len(jobs) == 1:
            return [failure]
        self._run(jobs, isolated=True)
        return self._commit_outcomes(jobs)

    def _run(self, jobs: list[_Job], *, isolated: bool) -> _Outcome | None:
        """Run the operations inside BEGIN, keeping their values for the commit.

        Returns None when every operation ran (isolated: every one that did not fail)
        and the transaction is open; otherwise the failure, with the transaction rolled
        back.
        """
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        for job in jobs:
            if isolated:
                conn.execute("SAVEPOINT op")
            try:
                job.value, job.error = job.operation(conn), None
            except apsw.FullError:
                raise  # not this operation's fault: the whole batch waits for space
            except BaseException as error:  # delivered to the caller, never lost
                if conn.getautocommit():
                    # SQLite already rolled the whole transaction back (I/O error,
                    # corruption): no operation of this batch can be committed.
                    raise
                job.value, job.error = None, error
                if not isolated:
                    conn.execute("ROLLBACK")
                    return (job, None, error)
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            else:
                if isolated:
                    conn.execute("RELEASE op")
        return None

    def _commit_outcomes(self, jobs: list[_Job]) -> list[_Outcome]:
        try:
            self.conn.execute("COMMIT")
        except apsw.Error:
            self.stats.failed_commits += 1
            raise
        return [(job, job.value, job.error) for job in jobs]

    def _checkpoint(self) -> None:
        """Copy the write-ahead log into the database and truncate it: on a full disk
        the log's committed pages are space the retry may need (best effort)."""
        # Still full, or a reader holds the log: the retry waits as before.
        with contextlib.suppress(apsw.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _rollback(self) -> None:
        if not self.conn.getautocommit():
            self.conn.execute("ROLLBACK")

    def _note_full(self, error: apsw.Error, waiting: int, retries: int) -> None:
        stats = self.stats
        if retries:
            stats.full_retries += 1
        if stats.full_since is None:
            stats.full_since = time.time()
            stats.full_episodes += 1
            log.warning("store full: writes paused until space returns", reason=str(error),
                        operations=waiting)
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(stats.full_since))
        held = waiting + self._queue.qsize()
        stats.last_error = (
            f"disk full ({error}): writing paused since {since} with {held} write"
            f"{'' if held == 1 else 's'} waiting, retried until space returns"
        )

    def _committed(self, jobs: list[_Job], outcomes: list[_Outcome]) -> None:
        stats = self.stats
        stats.transactions += 1
        stats.operations += len(jobs)
        if stats.full_since is not None:
            log.info("store writable again: writes resumed",
                     paused_s=round(time.time() - stats.full_since, 3))
            stats.full_since = None
        stats.last_error = None
        for job, value, failure in outcomes:
            _deliver(job.future, value, failure)

    def _fail(self, jobs: list[_Job], error: BaseException) -> None:
        for job in jobs:
            if not job.future.done():
                _deliver(job.future, None, error)


def _deliver(
    future: concurrent.futures.Future[Any], value: Any, failure: BaseException | None
) -> None:
    if future.cancelled():
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(value)


def run_inline(conn: apsw.Connection, operation: Operation[T]) -> T:
    """Run one operation in its own transaction on the caller's thread (CLI tools)."""
    with conn:
        result = operation(conn)
    return result

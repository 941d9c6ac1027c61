"""The single writer: one thread, one connection, group commit.

Every write in the daemon is an *operation* (a callable taking the connection). The
writer thread takes whatever operations are queued, runs them in one transaction (each
inside its own savepoint, so one failing operation does not undo the others) and
commits once. Callers await the result; a result is only delivered after COMMIT, so
"acknowledged" always means "durable".
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import apsw

T = TypeVar("T")
Operation = Callable[[apsw.Connection], T]

_STOP = object()


@dataclass(slots=True)
class _Job:
    operation: Operation[Any]
    future: concurrent.futures.Future[Any]


@dataclass(slots=True)
class WriterStats:
    transactions: int = 0
    operations: int = 0
    failed_commits: int = 0
    last_error: str | None = None


class Writer:
    """Runs write operations on one connection in a dedicated thread.

    Args:
        conn: the read-write connection (owned by the writer from now on).
        max_batch: the most operations committed in one transaction.
        max_queue: operations waiting at most; ``submit`` blocks beyond that, and
            ``run`` waits (back-pressure rather than unbounded memory).
    """

    def __init__(self, conn: apsw.Connection, *, max_batch: int = 256, max_queue: int = 1024) -> None:
        self.conn = conn
        self.max_batch = max_batch
        self.stats = WriterStats()
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max_queue)
        self._thread = threading.Thread(target=self._loop, name="powrd-writer", daemon=True)
        self._started = False

    def start(self) -> None:
        self._started = True
        self._thread.start()

    def stop(self) -> None:
        """Finish every queued operation, then stop the thread and close the connection."""
        if self._started:
            self._queue.put(_STOP)
            self._thread.join()
            self._started = False
        self.conn.close()

    def submit(self, operation: Operation[T]) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if not self._started:
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

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            jobs: list[_Job] = [first]
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queue.Empty:
                    break
                if job is _STOP:
                    stopping = True
                    break
                jobs.append(job)
            try:
                self._run_batch(jobs)
            except Exception as error:  # the writer thread must outlive any one batch
                self.stats.last_error = f"writer: {error}"
                for job in jobs:
                    if not job.future.done():
                        _deliver(job.future, None, error)

    def _run_batch(self, jobs: list[_Job]) -> None:
        # A job whose caller stopped waiting (cancelled at shutdown) still runs: the open
        # batch is finished, only its result has nobody to go to.
        for job in jobs:
            job.future.set_running_or_notify_cancel()
        conn = self.conn
        results: list[tuple[_Job, Any, BaseException | None]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as error:
            for job in jobs:
                _deliver(job.future, None, error)
            self.stats.last_error = str(error)
            return
        for job in jobs:
            conn.execute("SAVEPOINT op")
            try:
                value = job.operation(conn)
            except BaseException as error:  # delivered to the caller, never lost
                conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
                results.append((job, None, error))
            else:
                conn.execute("RELEASE op")
                results.append((job, value, None))
        try:
            conn.execute("COMMIT")
        except apsw.Error as error:
            self.stats.failed_commits += 1
            self.stats.last_error = str(error)
            if not conn.getautocommit():
                conn.execute("ROLLBACK")
            for job in jobs:
                _deliver(job.future, None, error)
            return
        self.stats.transactions += 1
        self.stats.operations += len(jobs)
        self.stats.last_error = None
        for job, value, failure in results:
            _deliver(job.future, value, failure)


def _deliver(future: concurrent.futures.Future[Any], value: Any, failure: BaseException | None) -> None:
    if future.cancelled():
        return
    if failure is not None:
        future.set_exception(failure)
    else:
        future.set_result(value)


def run_inline(conn: apsw.Connection, operation: Operation[T]) -> T:
    """Run one operation in its own transaction on the caller's thread (CLI tools)."""
    with conn:
        return operation(conn)

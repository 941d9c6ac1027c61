"""One app's websocket: the asyncio driver of a :class:`ClientSession`.

The connection reads frames in order and does the work the session asks for (store
reads on a thread, publishes through the ingest pipeline, NIP-77 reconciliations
through :class:`~powrd.serve.negentropy.ConnectionNegentropy`), so replies keep the
order of the requests. Frames to send go through :class:`Outgoing`, a byte-bounded
queue drained by a writer task: replies wait for room (the client is waiting for them
anyway), while live events never wait — a client too far behind to take one is
disconnected, so a slow app cannot slow ingest or hold unbounded memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from powrd.protocol.client_session import (
    ClientSession,
    CountStored,
    Negentropy,
    Output,
    Publish,
    QueryStored,
    Send,
)
from powrd.protocol.event import Event
from powrd.protocol.filters import Filter
from powrd.protocol.negentropy_messages import NegClose
from powrd.serve.negentropy import ConnectionNegentropy, ReadItems

log = structlog.get_logger("powrd.serve")

# Close code for a client that fell behind its live events (1008: policy violation).
TOO_SLOW_CODE = 1008
TOO_SLOW_REASON = "too far behind on live events; reconnect"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the pipeline made of an EVENT: the OK's ``accepted`` and message."""

    accepted: bool
    message: str


class Backend:
    """What a connection needs from the daemon; every call is one store or pipeline step.

    Args:
        read_stored: filters -> (raw events newest first, highest seq seen); blocking.
        count: filters -> number of matching events; blocking.
        publish: an event and its size -> the verdict, once committed.
        negentropy_items: (filter, limit) -> at most ``limit`` (created_at, 32-byte id)
            items of the events matching the filter, for NIP-77; blocking. None
            answers ``NEG-ERR "blocked: negentropy not enabled"``.
    """

    def __init__(
        self,
        read_stored: Callable[[tuple[Filter, ...]], tuple[list[str], int]],
        count: Callable[[tuple[Filter, ...]], int],
        publish: Callable[[Event, int], Awaitable[Verdict]],
        negentropy_items: ReadItems | None = None,
    ) -> None:
        self.read_stored = read_stored
        self.count = count
        self.publish = publish
        self.negentropy_items = negentropy_items


class Outgoing:
    """Frames waiting for the writer, bounded in bytes.

    Live events and replies are bounded apart: a large REQ answer queued at once must
    not make the live events that follow it look like a client falling behind.

    Args:
        max_bytes: live events queued beyond this mean the client is too slow; replies
            wait until the queue is below half of it (then a batch may overshoot it).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.live_bytes = 0
        self._frames: deque[tuple[str, bool]] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def offer(self, frame: str) -> bool:
        """Queue a live frame without waiting; False when the live bound is reached."""
        if self.live_bytes + len(frame) > self.max_bytes:
            return False
        self.live_bytes += len(frame)
        self._append(frame, live=True)
        return True

    async def put_all(self, frames: list[str]) -> None:
        """Queue replies once the queue is below half full, in order and together."""
        while self.bytes > self.max_bytes // 2:
            self._room.clear()
            await self._room.wait()
        for frame in frames:
            self._append(frame, live=False)

    def _append(self, frame: str, *, live: bool) -> None:
        self._frames.append((frame, live))
        self.bytes += len(frame)
        self._ready.set()

    def clear(self) -> None:
        """Drop every queued frame (the client is being disconnected)."""
        self._frames.clear()
        self.bytes = self.live_bytes = 0

    async def get(self) -> str:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        frame, live = self._frames.popleft()
        self.bytes -= len(frame)
        if live:
            self.live_bytes -= len(frame)
        if self.bytes <= self.max_bytes // 2:
            self._room.set()
        return frame


class ClientConnection:
    """Drives one client's session over its websocket.

    Args:
        websocket: the accepted connection.
        session: its protocol state.
        backend: the daemon's store and pipeline.
        max_queue_bytes: bound of :class:`Outgoing`.
        clock: monotonic seconds for the session's rate limit.
        negentropy: this connection's NIP-77 state, made by ``start_negentropy`` (from
            the backend's item reader) when the first NEG-OPEN arrives.
    """

    def __init__(
        self,
        websocket: ServerConnection,
        session: ClientSession,
        backend: Backend,
        *,
        max_queue_bytes: int,
        clock: Callable[[], float],
        start_negentropy: Callable[[ReadItems], ConnectionNegentropy] | None = None,
    ) -> None:
        self.websocket = websocket
        self.session = session
        self.backend = backend
        self.outgoing = Outgoing(max_queue_bytes)
        self.clock = clock
        self.cut_off = False
        self.start_negentropy = start_negentropy
        self.negentropy: ConnectionNegentropy | None = None

    async def run(self) -> None:
        writer = asyncio.create_task(self._write(), name="local relay writer")
        try:
            async for frame in self.websocket:
                for output in self.session.receive(frame, self.clock()):
                    await self._do(output)
        except ConnectionClosed:
            pass
        finally:
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
            if self.negentropy is not None:
                self.negentropy.release_all()  # its sealed item sets go with the connection
                self.negentropy = None

    async def _do(self, output: Output) -> None:
        match output:
            case Send():
                await self.outgoing.put_all([output.frame])
            case QueryStored():
                raws, seen = await asyncio.to_thread(self.backend.read_stored, output.filters)
                frames = self.session.stored(output.sub_id, output.token, raws, seen)
                await self.outgoing.put_all(frames)
            case CountStored():
                number = await asyncio.to_thread(self.backend.count, output.filters)
                await self.outgoing.put_all([self.session.counted(output.sub_id, number)])
            case Publish():
                verdict = await self.backend.publish(output.event, output.size)
                frame = self.session.published(output.event.id, verdict.accepted, verdict.message)
                await self.outgoing.put_all([frame])
            case Negentropy():
                # The session hands NEG-* over only when the backend reads items.
                read = self.backend.negentropy_items
                if self.negentropy is None and read is not None:
                    if isinstance(output.message, NegClose) or self.start_negentropy is None:
                        return
                    self.negentropy = self.start_negentropy(read)
                if self.negentropy is not None:
                    answer = await self.negentropy.handle(output.message)
                    if answer is not None:
                        await self.outgoing.put_all([answer])

    def deliver(self, event: Event, raw: str, seq: int) -> None:
        """Queue a committed event for the subscriptions it matches; never waits."""
        if self.cut_off:
            return
        for frame in self.session.live(event, raw, seq):
            if not self.outgoing.offer(frame):
                self._cut_off()
                return

    def _cut_off(self) -> None:
        self.cut_off = True
        self.outgoing.clear()
        log.warning("local relay client too slow; disconnecting", peer=str(self.peer))
        asyncio.create_task(  # noqa: RUF006 - the close ends the connection's own task
            self.websocket.close(TOO_SLOW_CODE, TOO_SLOW_REASON), name="local relay cut-off"
        )

    @property
    def peer(self) -> object:
        return self.websocket.remote_address

    async def _write(self) -> None:
        try:
            while True:
                await self.websocket.send(await self.outgoing.get())
        except ConnectionClosed:
            pass

"""NIP-77 for one app connection: store reads, the responder, and a relay-wide budget.

Each open reconciliation holds its sealed items (about 250 bytes a record), so besides
the per-connection bound (the responder's ``max_sessions``) the records held by all
connections together are bounded by one :class:`RecordBudget`: a NEG-OPEN that would
exceed it is refused with ``blocked:`` and may be retried when others are done.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

from powrd.protocol.filters import Filter
from powrd.protocol.negentropy_messages import NegClose, NegErr, NegMsg, NegOpen
from powrd.protocol.negentropy_responder import NegentropyResponder

# (filter, limit) -> at most ``limit`` (created_at, 32-byte id) items; blocking.
ReadItems = Callable[[Filter, int], list[tuple[int, bytes]]]
BUSY = "blocked: too many negentropy records open on this relay; try again later"


class RecordBudget:
    """Records held by open reconciliations across all connections (thread-safe)."""

    def __init__(self, max_records: int) -> None:
        self.max_records = max_records
        self.held = 0
        self._lock = threading.Lock()

    def reserve(self, records: int) -> bool:
        with self._lock:
            if self.held + records > self.max_records:
                return False
            self.held += records
            return True

    def release(self, records: int) -> None:
        with self._lock:
            self.held -= records


class ConnectionNegentropy:
    """One connection's reconciliations; messages are handled one at a time, in order.

    Args:
        responder: the connection's :class:`NegentropyResponder`.
        read_items: the store read behind a NEG-OPEN (run on a thread).
        budget: shared by every connection of the relay.
    """

    def __init__(
        self, responder: NegentropyResponder, read_items: ReadItems, budget: RecordBudget
    ) -> None:
        self.responder = responder
        self.read_items = read_items
        self.budget = budget
        self._held: dict[str, int] = {}  # sub id -> records reserved for it

    async def handle(self, message: NegOpen | NegMsg | NegClose) -> str | None:
        """The frame answering ``message`` (None for NEG-CLOSE)."""
        responder = self.responder
        answer: str | None = None
        match message:
            case NegOpen():
                if responder.full(message.subscription_id):
                    return responder.open(message, [])  # refused without reading the store
                return await asyncio.to_thread(self._open, message)
            case NegMsg():
                # Bounded work: the message is at most max_message_bytes and the answer
                # stops at the responder's frame size limit.
                answer = responder.message(message)
            case NegClose():
                responder.close(message)
        self._settle()
        return answer

    def _open(self, message: NegOpen) -> str:
        # One more than accepted: an oversized set is refused without being read whole.
        # Sealing (a sort) runs on this thread as well.
        sub_id = message.subscription_id
        items = self.read_items(message.filter, self.responder.max_records + 1)
        if len(items) <= self.responder.max_records:
            self.responder.close(NegClose(sub_id))  # a reopened id gives its share back
            self._settle()
            if not self.budget.reserve(len(items)):
                return NegErr(sub_id, BUSY).to_frame()
            self._held[sub_id] = len(items)
        answer = self.responder.open(message, items)
        self._settle()
        return answer

    def _settle(self) -> None:
        """Give back the share of every reconciliation the responder no longer holds."""
        for sub_id in [s for s in self._held if not self.responder.is_open(s)]:
            self.budget.release(self._held.pop(sub_id))

    def release_all(self) -> None:
        """The connection ended: its reconciliations go with it."""
        for records in self._held.values():
            self.budget.release(records)
        self._held.clear()

"""The relay side of NIP-77 for one client connection, without I/O.

A transport (the local relay endpoint) parses a client's frames with
:func:`~powrd.protocol.negentropy_messages.parse_negentropy_client_message` and
hands them here; every call returns the frame to send back, if any. For a NEG-OPEN
the transport first reads the filter's items from the store — at most
``max_records + 1`` of them (``negentropy_items(conn, flt, limit=...)``), so that an
oversized set is refused without being read whole.

Refusals follow NIP-77: ``NEG-ERR`` with ``blocked:`` when the query is too big (or
the connection has too many reconciliations open), ``closed:`` for a subscription
that is not open; a malformed negentropy message ends its subscription with an
``error:`` reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from powrd.protocol.negentropy import NegentropyError, NegentropyServer, StorageVector
from powrd.protocol.negentropy_messages import NegClose, NegErr, NegMsg, NegOpen

DEFAULT_MAX_RECORDS = 500_000
# Each open reconciliation holds its sealed items (roughly 25 MB per 100,000).
DEFAULT_MAX_SESSIONS = 2
TOO_MANY_RECORDS = "blocked: too many records"
TOO_MANY_SESSIONS = "blocked: too many negentropy sessions open on this connection"
NOT_OPEN = "closed: no such negentropy subscription"


class NegentropyResponder:
    """Open reconciliations of one connection, by subscription id.

    Args:
        max_records: the largest item set reconciled; larger ones are refused.
        max_sessions: reconciliations one connection may have open at once.
        frame_size_limit: 0, or the largest negentropy message sent (>= 4096).
    """

    def __init__(
        self,
        *,
        max_records: int = DEFAULT_MAX_RECORDS,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        frame_size_limit: int = 0,
    ) -> None:
        self.max_records = max_records
        self.max_sessions = max_sessions
        self._frame_size_limit = frame_size_limit
        self._sessions: dict[str, NegentropyServer] = {}

    @property
    def open_subscriptions(self) -> int:
        return len(self._sessions)

    def is_open(self, sub_id: str) -> bool:
        return sub_id in self._sessions

    def full(self, sub_id: str) -> bool:
        """Whether a NEG-OPEN for ``sub_id`` would be refused for too many sessions
        (so a transport can skip reading the store for it)."""
        return sub_id not in self._sessions and len(self._sessions) >= self.max_sessions

    def open(self, message: NegOpen, items: Sequence[tuple[int, bytes]]) -> str:
        """Start a reconciliation over ``items`` (the filter's) and answer its first message.

        A NEG-OPEN for a subscription id already open replaces that reconciliation.
        """
        sub_id = message.subscription_id
        self._sessions.pop(sub_id, None)
        if len(items) > self.max_records:
            return NegErr(sub_id, TOO_MANY_RECORDS).to_frame()
        if len(self._sessions) >= self.max_sessions:
            return NegErr(sub_id, TOO_MANY_SESSIONS).to_frame()
        try:
            session = NegentropyServer(StorageVector.seal(items), self._frame_size_limit)
        except NegentropyError as error:
            return NegErr(sub_id, f"error: {error}").to_frame()
        self._sessions[sub_id] = session
        return self._answer(sub_id, session, message.payload)

    def message(self, message: NegMsg) -> str:
        """Answer a NEG-MSG of an open reconciliation."""
        session = self._sessions.get(message.subscription_id)
        if session is None:
            return NegErr(message.subscription_id, NOT_OPEN).to_frame()
        return self._answer(message.subscription_id, session, message.payload)

    def close(self, message: NegClose) -> None:
        """Forget a reconciliation (NEG-CLOSE needs no answer)."""
        self._sessions.pop(message.subscription_id, None)

    def _answer(self, sub_id: str, session: NegentropyServer, payload: bytes) -> str:
        try:
            return NegMsg(sub_id, session.reconcile(payload)).to_frame()
        except NegentropyError as error:
            del self._sessions[sub_id]
            return NegErr(sub_id, f"error: {error}").to_frame()

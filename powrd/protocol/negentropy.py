"""NIP-77 negentropy: range-based set reconciliation, protocol V1, without I/O.

Two sides each hold a :class:`StorageVector` of (created_at, id) items. The client
(:class:`NegentropyClient`) sends :meth:`~NegentropyClient.initiate`'s message; the
server (:class:`NegentropyServer`) answers each message with one of its own; the
client's :meth:`~NegentropyClient.reconcile` turns each answer into the ids it has
and the server lacks (``have``), the ids the server has and it lacks (``need``), and
the next message to send, or None once both sets are known.

Each message lists adjacent ranges of the (timestamp, id) space. A side compares the
other's fingerprint of a range with its own; ranges that match are skipped, ranges
that differ are split into 16 buckets, or listed id by id once they hold fewer than
32 items. The output of both sides is byte-for-byte what the reference
implementations produce for the same inputs, so the reference test suite can
compare them.

A frame size limit (0 = none, otherwise at least 4096 bytes) caps each outgoing
message: when the next range would cross it (less 200 bytes of headroom), the side
stops and sends one fingerprint covering everything left, which the peer answers in
the next round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from powrd.protocol.negentropy_codec import (
    FINGERPRINT_SIZE,
    ID_SIZE,
    INFINITY_BOUND,
    MODE_FINGERPRINT,
    MODE_ID_LIST,
    MODE_SKIP,
    PROTOCOL_VERSION,
    Bound,
    BoundEncoder,
    MessageReader,
    NegentropyError,
    encode_varint,
)
from powrd.protocol.negentropy_storage import StorageVector

__all__ = [
    "MIN_FRAME_SIZE_LIMIT",
    "PROTOCOL_VERSION",
    "NegentropyClient",
    "NegentropyError",
    "NegentropyServer",
    "ReconcileStep",
    "StorageVector",
]

MIN_FRAME_SIZE_LIMIT = 4096
# Ranges holding fewer than BUCKETS * 2 items are sent as id lists.
_BUCKETS = 16
# Room kept free under the frame limit for the closing fingerprint range.
_FRAME_HEADROOM = 200
_SKIP = encode_varint(MODE_SKIP)
_FINGERPRINT = encode_varint(MODE_FINGERPRINT)
_ID_LIST = encode_varint(MODE_ID_LIST)
_VERSION = bytes((PROTOCOL_VERSION,))


@dataclass(frozen=True, slots=True)
class ReconcileStep:
    """What the client learned from one server message.

    Attributes:
        message: the next message to send, or None: reconciliation is complete.
        have: ids the client holds and the server lacks (32 bytes each).
        need: ids the server holds and the client lacks (32 bytes each).
    """

    message: bytes | None
    have: list[bytes]
    need: list[bytes]


class _Reconciler:
    """The range processing both sides share; one message in, one message out."""

    def __init__(self, storage: StorageVector, frame_size_limit: int) -> None:
        if frame_size_limit != 0 and frame_size_limit < MIN_FRAME_SIZE_LIMIT:
            raise NegentropyError(
                f"negentropy frame size limit {frame_size_limit} is too small: use 0 (no "
                f"limit) or at least {MIN_FRAME_SIZE_LIMIT} bytes"
            )
        self._storage = storage
        self._frame_size_limit = frame_size_limit

    def _exceeds_frame(self, size: int) -> bool:
        limit = self._frame_size_limit
        return limit != 0 and size > limit - _FRAME_HEADROOM

    def _split_range(self, encoder: BoundEncoder, lower: int, upper: int, bound: Bound) -> bytes:
        """Describe ``[lower, upper)`` ending at ``bound``: all ids, or 16 fingerprints."""
        storage = self._storage
        count = upper - lower
        if count < _BUCKETS * 2:
            return b"".join(
                (
                    encoder.encode(*bound),
                    _ID_LIST,
                    encode_varint(count),
                    *storage.ids(lower, upper),
                )
            )
        per_bucket, with_extra = divmod(count, _BUCKETS)
        parts: list[bytes] = []
        current = lower
        for bucket in range(_BUCKETS):
            size = per_bucket + (1 if bucket < with_extra else 0)
            fingerprint = storage.fingerprint(current, current + size)
            current += size
            if current == upper:
                parts.append(encoder.encode(*bound))
            else:
                parts.append(encoder.encode(*_minimal_bound(storage, current)))
            parts.append(_FINGERPRINT)
            parts.append(fingerprint)
        return b"".join(parts)

    @staticmethod
    def _skip_to(encoder: BoundEncoder, bound: Bound) -> bytes:
        """The Skip range standing for the matched ranges that ended at ``bound``."""
        return encoder.encode(*bound) + _SKIP

    def _process(self, message: bytes, have: list[bytes] | None, need: list[bytes]) -> bytes:
        """Answer ``message``; ``have`` is None on the server, which collects nothing."""
        reader = MessageReader(message)
        version = reader.version()
        if version != PROTOCOL_VERSION:
            if have is not None:
                raise NegentropyError(
                    f"the server asks for negentropy protocol version {version - 0x60}; "
                    "only version 1 is supported"
                )
            # A server names the version it speaks; the client may retry with it.
            return _VERSION
        storage = self._storage
        size = len(storage)
        encoder = BoundEncoder()
        output = bytearray(_VERSION)
        previous_bound: Bound = (0, b"")
        previous_index = 0
        skipping = False

        while not reader.at_end():
            pending = b""
            bound = reader.bound()
            mode = reader.varint()
            lower = previous_index
            upper = storage.find_lower_bound(previous_index, size, bound)

            if mode == MODE_SKIP:
                skipping = True
            elif mode == MODE_FINGERPRINT:
                theirs = reader.take(FINGERPRINT_SIZE)
                if theirs == storage.fingerprint(lower, upper):
                    skipping = True
                else:
                    pending = self._skip_to(encoder, previous_bound) if skipping else b""
                    skipping = False
                    pending += self._split_range(encoder, lower, upper, bound)
            elif mode == MODE_ID_LIST:
                count = reader.varint()
                if have is not None:
                    skipping = True
                    _compare_ids(storage.ids(lower, upper), reader.ids(count), have, need)
                else:
                    reader.take(count * ID_SIZE)  # the server answers with all of its own
                    pending = self._skip_to(encoder, previous_bound) if skipping else b""
                    skipping = False
                    upper = self._list_ids(encoder, output, pending, lower, upper, bound=bound)
                    pending = b""
            else:
                raise NegentropyError(f"unknown negentropy range mode {mode}")

            if self._exceeds_frame(len(output) + len(pending)):
                # Stop here; one fingerprint stands for everything not yet answered.
                output += encoder.encode(*INFINITY_BOUND)
                output += _FINGERPRINT
                output += storage.fingerprint(upper, size)
                break
            output += pending
            previous_index = upper
            previous_bound = bound
        return bytes(output)

    def _list_ids(
        self,
        encoder: BoundEncoder,
        output: bytearray,
        pending: bytes,
        lower: int,
        upper: int,
        *,
        bound: Bound,
    ) -> int:
        """Append the server's id list for ``[lower, upper)`` (after ``pending``) to output.

        Lists as many ids as fit the frame; when they do not all fit, the list ends
        at the first unlisted item instead of ``bound``. Returns the index after the
        last id listed.
        """
        storage = self._storage
        end_bound = bound
        if self._frame_size_limit != 0:
            # Measured without ``pending``, as the reference does: an id is added while
            # the output so far is within the limit.
            room = self._frame_size_limit - _FRAME_HEADROOM - len(output)
            fitting = room // ID_SIZE + 1 if room >= 0 else 0
            if fitting < upper - lower:
                upper = lower + fitting
                end_bound = storage.item(upper)
        output += pending
        output += encoder.encode(*end_bound)
        output += _ID_LIST
        output += encode_varint(upper - lower)
        output += b"".join(storage.ids(lower, upper))
        return upper


def _minimal_bound(storage: StorageVector, index: int) -> Bound:
    """The shortest bound separating item ``index - 1`` from item ``index``."""
    previous_timestamp, previous_id = storage.item(index - 1)
    timestamp, item_id = storage.item(index)
    if timestamp != previous_timestamp:
        return (timestamp, b"")
    shared = 0
    while shared < ID_SIZE and item_id[shared] == previous_id[shared]:
        shared += 1
    return (timestamp, item_id[: shared + 1])


def _compare_ids(
    ours: Sequence[bytes], theirs: list[bytes], have: list[bytes], need: list[bytes]
) -> None:
    """Add to ``have`` our ids they did not list, and to ``need`` theirs we lack."""
    their_set = set(theirs)
    for our_id in ours:
        if our_id in their_set:
            their_set.discard(our_id)
        else:
            have.append(our_id)
    # In the order the server listed them (a set's order would vary per run).
    for their_id in theirs:
        if their_id in their_set:
            their_set.discard(their_id)
            need.append(their_id)


class NegentropyServer:
    """The answering side: one instance per NEG-OPEN.

    Args:
        storage: the server's items matching the subscription's filter.
        frame_size_limit: 0, or the largest message to send (at least 4096 bytes).
    """

    def __init__(self, storage: StorageVector, frame_size_limit: int = 0) -> None:
        self._reconciler = _Reconciler(storage, frame_size_limit)

    def reconcile(self, message: bytes) -> bytes:
        """The answer to one client message (``b"\\x61"`` alone for an unknown version).

        Raises:
            NegentropyError: the message is malformed.
        """
        return self._reconciler._process(message, None, [])


class NegentropyClient:
    """The initiating side: one instance per reconciliation.

    Args:
        storage: the client's items matching the filter it will send.
        frame_size_limit: 0, or the largest message to send (at least 4096 bytes).
    """

    def __init__(self, storage: StorageVector, frame_size_limit: int = 0) -> None:
        self._reconciler = _Reconciler(storage, frame_size_limit)
        self._initiated = False
        # Ids already reported, so that each is reported once (see reconcile). Both
        # grow only as far as the differences found: have ids are our own items.
        self._reported_have: set[bytes] = set()
        self._reported_need: set[bytes] = set()

    def initiate(self) -> bytes:
        """The first message (the NEG-OPEN payload); callable once."""
        if self._initiated:
            raise NegentropyError("negentropy client already initiated")
        self._initiated = True
        reconciler = self._reconciler
        storage = reconciler._storage
        return _VERSION + reconciler._split_range(BoundEncoder(), 0, len(storage), INFINITY_BOUND)

    def reconcile(self, message: bytes) -> ReconcileStep:
        """Read one server message (a NEG-MSG payload).

        Each id is reported once per reconciliation, in the first step that finds it.
        A side at its frame size limit stops early and sends one fingerprint for
        everything after, dropping the Skip ranges the other side had already settled;
        while any difference remains past that point the fingerprints differ, the
        client splits the whole rest again, and the server lists settled ranges anew
        (the reference implementations behave the same), so an id can arrive twice.

        Raises:
            NegentropyError: the message is malformed, the server wants another
                protocol version, or :meth:`initiate` was not called.
        """
        if not self._initiated:
            raise NegentropyError("negentropy client must initiate before reconciling")
        have: list[bytes] = []
        need: list[bytes] = []
        output = self._reconciler._process(message, have, need)
        return ReconcileStep(
            None if output == _VERSION else output,
            _first_reports(have, self._reported_have),
            _first_reports(need, self._reported_need),
        )


def _first_reports(ids: list[bytes], reported: set[bytes]) -> list[bytes]:
    """The ids not in ``reported``, in order, each once; adds them to ``reported``."""
    fresh: list[bytes] = []
    for item_id in ids:
        if item_id not in reported:
            reported.add(item_id)
            fresh.append(item_id)
    return fresh

"""Run one NIP-77 reconciliation with a relay and say whether negentropy can be used.

The driver owns no socket. The relay connection's owner gives it a
:class:`NegentropyChannel`: a way to send a frame, and the stream of frames routed to
this reconciliation's subscription id (NEG-MSG, NEG-ERR) plus the relay's NOTICEs.
The driver sends NEG-OPEN with the local items' first message, answers every NEG-MSG
until the client side is satisfied, sends NEG-CLOSE, and returns the ids the relay
lacks (``have``) and the ids it holds that we lack (``need``).

Many relays advertise NIP-77 and refuse it. The verdict tells the caller what to
remember about the relay:

* ``RECONCILED``: have/need are exact; negentropy works there.
* ``UNSUPPORTED``: refused before any NEG-MSG — a NEG-ERR, a NOTICE (relays that do
  not know the verb answer "could not parse command" and the like, with no
  subscription id), or silence until the timeout. Fall back to REQ paging and
  remember it.
* ``FAILED``: it started and then broke (NEG-ERR, timeout or a malformed message
  mid-way, the stream ended). Fall back this time; the relay may be fine later.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol

from powrd.protocol.filters import Filter
from powrd.protocol.messages import NoticeMessage
from powrd.protocol.negentropy import NegentropyClient, NegentropyError, StorageVector
from powrd.protocol.negentropy_messages import NegClose, NegErr, NegMsg, NegOpen
from powrd.sync.packed_ids import PackedIds

DEFAULT_TIMEOUT_SECONDS = 10.0
# Negentropy bytes per message we send: hex doubles it, so a NEG-MSG frame stays under
# 128 KiB, the websocket message cap of common relays (nostr-rs-relay's default).
DEFAULT_FRAME_SIZE_LIMIT = 60_000
# A relay could keep a reconciliation going forever; real ones finish in a handful.
DEFAULT_MAX_ROUNDS = 1000

Reply = NegMsg | NegErr | NoticeMessage


class NegentropyChannel(Protocol):
    """What the relay connection's owner provides for one reconciliation."""

    async def send(self, frame: str) -> None:
        """Send one text frame to the relay."""

    def replies(self) -> AsyncIterator[Reply]:
        """NEG-MSG/NEG-ERR for this subscription id, and the relay's NOTICEs, in order.

        Ends when the connection does.
        """
        ...


class Verdict(enum.Enum):
    RECONCILED = "reconciled"
    UNSUPPORTED = "unsupported"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReconcileResult:
    """The outcome of :func:`reconcile_with_relay`.

    Attributes:
        verdict: see the module docstring.
        have: ids we hold and the relay lacks (complete only when RECONCILED), kept
            like ``need``: a relay that holds a small part of the store lacks the rest.
        need: ids the relay holds and we lack (complete only when RECONCILED): they
            read as hex, and are kept packed, since they can number a million.
        reason: why it was not RECONCILED (the relay's text, or what went wrong).
        rounds: NEG-MSG answers received.
        bytes_sent: negentropy payload bytes sent (before hex encoding).
        bytes_received: negentropy payload bytes received (before hex decoding).
        seconds: time from NEG-OPEN to the verdict, by the injected clock.
    """

    verdict: Verdict
    have: PackedIds = field(default_factory=PackedIds)
    need: PackedIds = field(default_factory=PackedIds)
    reason: str = ""
    rounds: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    seconds: float = 0.0


async def reconcile_with_relay(
    channel: NegentropyChannel,
    storage: StorageVector,
    flt: Filter,
    sub_id: str,
    *,
    answer_timeout: float = DEFAULT_TIMEOUT_SECONDS,
    frame_size_limit: int = DEFAULT_FRAME_SIZE_LIMIT,
    max_rounds: int = DEFAULT_MAX_ROUNDS,
    clock: Callable[[], float] = time.monotonic,
) -> ReconcileResult:
    """Reconcile ``storage`` (our items matching ``flt``) with the relay behind ``channel``.

    Args:
        channel: the relay connection's view for subscription ``sub_id``.
        storage: our (created_at, id) items for ``flt``, sealed.
        flt: the filter sent in NEG-OPEN; the relay reconciles its events matching it.
        sub_id: a subscription id not otherwise in use on the connection.
        answer_timeout: seconds to wait for each relay answer (per answer, not in total).
        frame_size_limit: 0 (none), or the largest negentropy message to send
            (>= 4096 bytes; sent as twice as many hex characters).
        max_rounds: answers after which the reconciliation counts as FAILED.
        clock: monotonic seconds, for ``seconds`` in the result.
    """
    started = clock()
    client = NegentropyClient(storage, frame_size_limit)
    have = PackedIds()
    need = PackedIds()
    rounds = 0
    opening = client.initiate()
    sent = len(opening)
    received = 0

    def result(verdict: Verdict, reason: str = "") -> ReconcileResult:
        return ReconcileResult(
            verdict, have, need, reason, rounds, sent, received, clock() - started
        )

    await channel.send(NegOpen(sub_id, flt, opening).to_frame())
    replies = aiter(channel.replies())
    while True:
        refused = Verdict.UNSUPPORTED if rounds == 0 else Verdict.FAILED
        try:
            async with asyncio.timeout(answer_timeout):
                reply = await anext(replies)
        except TimeoutError:
            await _close(channel, sub_id)
            return result(refused, f"no negentropy answer within {answer_timeout:g} s")
        except StopAsyncIteration:
            return result(Verdict.FAILED, "the connection ended during negentropy")
        if isinstance(reply, NoticeMessage):
            if rounds == 0:
                await _close(channel, sub_id)
                return result(Verdict.UNSUPPORTED, f"NOTICE: {reply.message}")
            continue  # a NOTICE mid-way is about something else
        if reply.subscription_id != sub_id:
            continue
        if isinstance(reply, NegErr):
            # NIP-77: after NEG-ERR the subscription is closed; nothing to send.
            return result(refused, f"NEG-ERR: {reply.reason}")
        rounds += 1
        received += len(reply.payload)
        try:
            step = client.reconcile(reply.payload)
        except NegentropyError as error:
            await _close(channel, sub_id)
            return result(refused, f"bad negentropy message from the relay: {error}")
        have.extend(step.have)
        need.extend(step.need)
        if step.message is None:
            await _close(channel, sub_id)
            return result(Verdict.RECONCILED)
        if rounds >= max_rounds:
            await _close(channel, sub_id)
            return result(Verdict.FAILED, f"negentropy did not finish in {max_rounds} rounds")
        sent += len(step.message)
        await channel.send(NegMsg(sub_id, step.message).to_frame())


async def _close(channel: NegentropyChannel, sub_id: str) -> None:
    await channel.send(NegClose(sub_id).to_frame())


VERDICT_MEMORY_SECONDS = 24 * 3600


class NegentropySupport:
    """What each relay answered to negentropy lately: supported, unsupported or unknown.

    An UNSUPPORTED verdict is remembered for ``memory_seconds`` (24 h), so a relay that
    refuses is not asked on every backfill; a RECONCILED one marks it supported. A
    FAILED reconciliation changes nothing: it says little about the relay.

    Args:
        clock: monotonic seconds.
        memory_seconds: how long a verdict counts.
        max_relays: relays remembered at most; the oldest verdict is forgotten first.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        memory_seconds: float = VERDICT_MEMORY_SECONDS,
        max_relays: int = 10_000,
    ) -> None:
        self._clock = clock
        self._memory_seconds = memory_seconds
        self._max_relays = max_relays
        self._verdicts: dict[str, tuple[Verdict, float]] = {}

    def record(self, relay: str, verdict: Verdict) -> None:
        if verdict is Verdict.FAILED:
            return
        self._verdicts.pop(relay, None)
        self._verdicts[relay] = (verdict, self._clock())
        while len(self._verdicts) > self._max_relays:
            del self._verdicts[next(iter(self._verdicts))]

    def status(self, relay: str) -> str:
        """``supported``, ``unsupported`` or ``unknown`` (never asked, or long ago)."""
        entry = self._verdicts.get(relay)
        if entry is None or self._clock() - entry[1] >= self._memory_seconds:
            return "unknown"
        return "supported" if entry[0] is Verdict.RECONCILED else "unsupported"

    def should_try(self, relay: str) -> bool:
        """Whether to try NEG-OPEN before REQ paging (not while "unsupported")."""
        return self.status(relay) != "unsupported"

"""NIP-42 AUTH on one connection: a client of the :class:`RelayConnection`.

Other clients that the relay turned away with ``auth-required:`` (a subscription's
``CLOSED``, a delivery's ``OK false``) call :meth:`Authenticator.request` with what to do
once authenticated. The relay's challenge may come before or after that; AUTH is sent
when both are there, and every waiting client is called back when the relay accepts it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import nostr_sdk
import structlog

from powrd.protocol.session import AuthRequested, Output, PublishResult
from powrd.protocol.signing import auth_event
from powrd.sync.relay_connection import RelayConnection
from powrd.sync.status import RelayStatus

log = structlog.get_logger("powrd.sync.auth")

Then = Callable[[], Awaitable[None]]


@dataclass(eq=False)
class Authenticator:
    """Answers the relay's AUTH challenge for the clients that need it.

    Args:
        connection: the connection to authenticate.
        keys: the identity to sign with, or None (then requests only set an error).
        status: the relay's status (``last_error`` when AUTH is refused or impossible).
        clock: unix time, for the AUTH event's ``created_at``.
    """

    connection: RelayConnection
    keys: nostr_sdk.Keys | None
    status: RelayStatus
    clock: Callable[[], float] = time.time
    _challenge: str | None = None
    _waiting: dict[str, Then] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.connection.route_type(AuthRequested, self)

    async def request(self, key: str, then: Then, *, no_identity: str) -> None:
        """Authenticate, then call ``then``; one pending request per ``key``.

        Args:
            key: names the request (a later one with the same key replaces it).
            then: what to do once the relay has accepted the AUTH.
            no_identity: the relay's ``last_error`` when no identity is configured.
        """
        if self.keys is None:
            self.status.last_error = no_identity
            return
        self._waiting[key] = then
        await self._authenticate()

    async def on_message(self, output: Output) -> None:
        if isinstance(output, AuthRequested):
            self._challenge = output.challenge
            if self._waiting:
                await self._authenticate()
        elif isinstance(output, PublishResult):
            await self._on_ok(output)

    async def _authenticate(self) -> None:
        if self.keys is None or self._challenge is None:
            return
        event = auth_event(self.keys, self.connection.url, self._challenge, int(self.clock()))
        await self.connection.authenticate(event.id, event.to_json(), self)

    async def _on_ok(self, result: PublishResult) -> None:
        if not result.accepted:
            self.status.last_error = f"AUTH refused: {result.message[:200]}"
            return
        log.info("authenticated", relay=self.connection.url)
        waiting, self._waiting = self._waiting, {}
        for key in sorted(waiting):
            await waiting[key]()

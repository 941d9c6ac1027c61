"""The control method table: what each JSON-RPC method does with the daemon's parts.

It lives in ``service/`` because it reaches into the daemon (relay workers, the writer,
the cache, media, the publisher); ``powrd/control/`` is only the transport that serves
it. Every handler is a plain coroutine taking the params object and returning JSON-ready
data (or a :class:`~powrd.control.rpc.Stream`), so it runs without a socket:
``await build_methods(daemon)["events.query"]({"filter": {...}})``. The queries
themselves are store and library functions; another transport calls those, or these
handlers, directly. Argument checking raises :class:`InvalidParams` with a message
naming the parameter.

Adding a method: write ``async def name(params)`` in one of the groups below (check
its params with :func:`_only` and :func:`_optional`), add it to that group's dict, and
document it in the README's control socket table.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from powrd.control.rpc import (
    NOT_FOUND,
    NOT_READY,
    PUBLISH_FAILED,
    Handler,
    InvalidParams,
    MethodError,
    Stream,
)
from powrd.identity import parse_public_key
from powrd.library.cache import cached_template, priority_for
from powrd.library.service import records_with_sets
from powrd.protocol.coordinates import author_of
from powrd.protocol.event import loads
from powrd.protocol.filters import FilterError, parse_filter
from powrd.service import request_limits
from powrd.service.request_limits import MAX_LIBRARY_LIMIT
from powrd.store import fetchqueue, library_queries, lists, outbox, queries
from powrd.sync.media import MediaNotFound, media_chunks
from powrd.sync.own_list import publish_relay_list
from powrd.sync.publisher import PublishError

if TYPE_CHECKING:
    from powrd.service.daemon import Daemon

# library.exercises: the configured authors' (and identity's) own, everyone else's, or both.
LIBRARY_SCOPES = ("all", "mine", "public")


def _optional(params: dict[str, Any], name: str, kind: type) -> Any:
    value = params.get(name)
    if value is not None and (
        not isinstance(value, kind) or (isinstance(value, bool) and kind is int)
    ):
        raise InvalidParams(f"{name}: expected {kind.__name__}, found {type(value).__name__}")
    return value


def _only(params: dict[str, Any], *allowed: str) -> None:
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise InvalidParams(f"unknown parameter {unknown[0]!r}; expected one of {sorted(allowed)}")


def _author(params: dict[str, Any]) -> str | None:
    author = _optional(params, "author", str)
    if author is None:
        return None
    try:
        return parse_public_key(author)
    except ValueError as error:  # parse_public_key raises ValueError, not IdentityError
        raise InvalidParams(f"author: {error}") from None


def _state_methods(daemon: Daemon, reader: Callable[[], Any]) -> dict[str, Handler]:
    """Status, relays, raw events and the two queues."""

    async def status(params: dict[str, Any]) -> Any:
        _only(params)
        return daemon.status()

    async def relays_list(params: dict[str, Any]) -> Any:
        _only(params)
        return daemon.relays_report()

    async def relays_publish_list(params: dict[str, Any]) -> Any:
        _only(params)
        if daemon.publisher is None:
            raise MethodError(NOT_READY, "the daemon is still starting")
        try:
            event_id, count = await publish_relay_list(daemon.publisher, daemon.config)
        except PublishError as error:
            raise MethodError(PUBLISH_FAILED, str(error)) from None
        return {"id": event_id, "relays": count}

    async def sync_now(params: dict[str, Any]) -> Any:
        _only(params)
        daemon.resync()
        return {"relays": len(daemon.workers)}

    async def events_query(params: dict[str, Any]) -> Any:
        _only(params, "filter")
        request_limits.check_query_filter(params.get("filter"))
        try:
            flt = parse_filter(params.get("filter", {}))
        except FilterError as error:
            raise InvalidParams(str(error)) from None
        return {"events": [loads(raw) for raw in queries.query_events(reader(), flt)]}

    async def fetch_list(params: dict[str, Any]) -> Any:
        _only(params, "state")
        return {"entries": fetchqueue.entries(reader(), _optional(params, "state", str))}

    async def outbox_list(params: dict[str, Any]) -> Any:
        _only(params, "pending")
        return {"entries": outbox.entries(reader(), pending_only=bool(params.get("pending")))}

    return {
        "status": status,
        "relays.list": relays_list,
        "relays.publish_list": relays_publish_list,
        "sync.now": sync_now,
        "events.query": events_query,
        "fetch.list": fetch_list,
        "outbox.list": outbox_list,
    }


def _library_methods(daemon: Daemon, reader: Callable[[], Any]) -> dict[str, Handler]:
    """The NIP-101e library, publishing and media."""

    async def library_exercises(params: dict[str, Any]) -> Any:
        _only(params, "author", "search", "equipment", "tag", "limit", "scope")
        scope = _optional(params, "scope", str) or "all"
        if scope not in LIBRARY_SCOPES:
            raise InvalidParams(f"scope: expected one of {list(LIBRARY_SCOPES)}, found {scope!r}")
        own = daemon.own_pubkeys()
        return {
            "exercises": library_queries.exercises(
                reader(),
                author=_author(params),
                search=_optional(params, "search", str),
                equipment=_optional(params, "equipment", str),
                tag=_optional(params, "tag", str),
                limit=request_limits.limit(params, default=1000, maximum=MAX_LIBRARY_LIMIT),
                among=own if scope == "mine" else None,
                except_=own if scope == "public" else None,
            )
        }

    async def library_template(params: dict[str, Any]) -> Any:
        _only(params, "coordinate")
        coordinate = _optional(params, "coordinate", str)
        if not coordinate:
            raise InvalidParams("coordinate: required, e.g. 33402:<pubkey hex>:<d>")
        found = cached_template(daemon.cache, reader(), coordinate, daemon.own_pubkeys())
        if found is None:
            raise MethodError(NOT_FOUND, f"no current template {coordinate}")
        return found

    async def library_records(params: dict[str, Any]) -> Any:
        _only(params, "author", "since", "until", "limit")
        return {
            "records": records_with_sets(
                reader(),
                author=_author(params),
                since=request_limits.timestamp(params, "since"),
                until=request_limits.timestamp(params, "until"),
                limit=request_limits.limit(params, default=500, maximum=MAX_LIBRARY_LIMIT),
            )
        }

    async def library_collections(params: dict[str, Any]) -> Any:
        _only(params, "author")
        return {"collections": lists.collections(reader(), _author(params))}

    async def publish(params: dict[str, Any]) -> Any:
        _only(params, "kind", "content", "tags", "created_at")
        created_at = request_limits.timestamp(params, "created_at")
        if daemon.publisher is None:
            raise MethodError(NOT_READY, "the daemon is still starting")
        if daemon.store is not None and daemon.store.writer.full:
            # Refuse at once rather than leave the client unsure whether it was stored.
            raise MethodError(PUBLISH_FAILED, "the disk is full; nothing was stored (see status)")
        try:
            event_id = await daemon.publisher.publish(
                params.get("kind"),
                params.get("content", ""),
                params.get("tags", []),
                created_at,
            )
        except PublishError as error:
            raise MethodError(PUBLISH_FAILED, str(error)) from None
        return {"id": event_id}

    async def media_get(params: dict[str, Any]) -> Any:
        _only(params, "exercise", "thumbnail", "url")
        exercise = _optional(params, "exercise", str)
        if not exercise:
            raise InvalidParams("exercise: required, e.g. 33401:<pubkey hex>:<d>")
        try:
            chunks = media_chunks(
                reader(),
                exercise,
                bool(_optional(params, "thumbnail", bool)),
                48 * 1024,
                url=_optional(params, "url", str),
            )
        except MediaNotFound as error:
            if daemon.media is not None:
                await daemon.media.request(exercise)  # evicted or failed: fetch it again
            raise MethodError(NOT_FOUND, str(error)) from None
        author = author_of(exercise)
        daemon.cache.touch(exercise, priority_for(author, daemon.own_pubkeys()))

        async def encoded() -> AsyncIterator[str]:
            for chunk in chunks:
                yield base64.b64encode(chunk).decode()

        return Stream(encoded())

    return {
        "library.exercises": library_exercises,
        "library.template": library_template,
        "library.records": library_records,
        "library.collections": library_collections,
        "publish": publish,
        "media.get": media_get,
    }


def build_methods(daemon: Daemon) -> dict[str, Handler]:
    """The method table served on the control socket."""

    def reader() -> Any:
        assert daemon.store is not None
        return daemon.store.reader()

    return {**_state_methods(daemon, reader), **_library_methods(daemon, reader)}

"""``powrd ctl``: talk to the running daemon over its control socket.

Two forms::

    powrd ctl METHOD [PARAMS_JSON]      raw JSON-RPC; prints the result as JSON
    powrd ctl SUBCOMMAND [OPTIONS]      friendly: status, template COORD, exercise add, …

Friendly subcommands print tables; ``--json`` prints the method's result instead, for
scripts. Exit status: 0 on success, 1 when the daemon is not running or answers with an
error, 2 for unusable arguments or configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from powrd.cli import render
from powrd.cli.errors import UsageError

# powrd's config and control client are imported when a command runs, not when the
# argument tree is built: `powrd --help` and every other command start faster.

DEFAULT_TIMEOUT_SECONDS = 10.0
EXERCISE_KIND = 33401
DEFAULT_WATCH_SECONDS = 2.0


class CtlFailure(Exception):
    """The daemon could not be reached or refused the request: message on stderr, exit 1."""


@dataclass(frozen=True)
class Connection:
    """Where and how to reach the daemon."""

    socket: Path
    timeout: float

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """Call ``method``; failures become :class:`CtlFailure` with a one-line message."""
        from powrd.control.client import ControlError, DaemonNotRunning, RpcError, call_sync

        try:
            return call_sync(self.socket, method, params, timeout=self.timeout)
        except DaemonNotRunning:
            where = "no socket at" if not self.socket.exists() else "nothing answers at"
            raise CtlFailure(
                f"powrd is not running ({where} {self.socket}); start it with `powrd run`"
            ) from None
        except RpcError as error:
            detail = f" ({json.dumps(error.data)})" if error.data is not None else ""
            raise CtlFailure(f"{method}: {error.message}{detail}") from None
        except TimeoutError:
            raise CtlFailure(f"{method}: no answer from powrd within {self.timeout:g} s") from None
        except ControlError as error:
            raise CtlFailure(f"{method}: {error}") from None
        except OSError as error:
            reason = error.strerror or error
            raise CtlFailure(f"cannot connect to {self.socket}: {reason}") from None


def main(argv: Sequence[str]) -> int:
    """``powrd ctl ARGV…``; returns the exit code."""
    from powrd.cli.main import main as powrd_main

    return powrd_main(["ctl", *argv])


def run(args: argparse.Namespace) -> int:
    """Run the parsed ``powrd ctl`` command; returns the exit code."""
    handler = getattr(args, "handler", None)
    if handler is None:
        args.ctl_parser.print_usage(sys.stderr)
        return 2
    try:
        connection = Connection(_socket_path(args), getattr(args, "timeout", None)
                                or DEFAULT_TIMEOUT_SECONDS)
        interval = getattr(args, "watch", None)
        if interval is not None:
            from powrd.cli.watch import watch

            return watch(lambda: handler(connection, args), title=f"powrd ctl {args.ctl_command}",
                         interval=interval, failure=CtlFailure)
        output = handler(connection, args)
    except UsageError as error:
        print(f"powrd ctl: {render.safe(str(error))}", file=sys.stderr)
        return 2
    except CtlFailure as error:
        print(f"powrd ctl: {render.safe(str(error))}", file=sys.stderr)
        return 1
    if output:
        print(output)
    return 0


def _socket_path(args: argparse.Namespace) -> Path:
    socket = getattr(args, "socket", None)
    if socket:
        return Path(socket)
    from powrd.config import ConfigError, load_config

    named = getattr(args, "config", None)
    try:
        config = load_config(Path(named) if named else None, os.environ)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    return config.control.socket


def _json(value: Any) -> str:
    # The same JSON value as the daemon's answer, with nothing a terminal would obey.
    return render.safe_json(json.dumps(value, indent=2, ensure_ascii=False))


def _params_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UsageError(f"{what}: not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what}: expected a JSON object, found {type(value).__name__}")
    return value


def _unix_seconds(text: str) -> int:
    """Unix seconds, or a UTC date / date-time such as ``2024-05-01`` or ``2024-05-01T18:30``."""
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected unix seconds or a date like 2024-05-01, found {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


# -- handlers: each returns the text to print -----------------------------------------

Handler = Callable[[Connection, argparse.Namespace], str]


def _shown(args: argparse.Namespace, result: Any, human: Callable[[Any], str]) -> str:
    return _json(result) if getattr(args, "json", False) else render.safe_lines(human(result))


def _call(conn: Connection, args: argparse.Namespace) -> str:
    params = _params_object(args.params, "PARAMS_JSON") if args.params is not None else None
    return _json(conn.call(args.method, params))


def _status(conn: Connection, args: argparse.Namespace) -> str:
    return _shown(args, conn.call("status"), render.status)


def _relays(conn: Connection, args: argparse.Namespace) -> str:
    if args.action == "publish-list":
        result = conn.call("relays.publish_list")
        return _shown(
            args, result, lambda r: f"published relay list {r['id']} naming {r['relays']} relays"
        )
    return _shown(args, conn.call("relays.list"), lambda r: render.relays(r["relays"]))


def _template(conn: Connection, args: argparse.Namespace) -> str:
    result = conn.call("library.template", {"coordinate": args.coordinate})
    return _shown(args, result, render.template)


def _filters(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _exercises(conn: Connection, args: argparse.Namespace) -> str:
    params = _filters(args, "author", "search", "equipment", "tag", "limit", "scope")
    result = conn.call("library.exercises", params)
    return _shown(args, result, lambda r: render.exercises(r["exercises"]))


def _records(conn: Connection, args: argparse.Namespace) -> str:
    result = conn.call("library.records", _filters(args, "author", "since", "until", "limit"))
    return _shown(args, result, lambda r: render.records(r["records"]))


def _collections(conn: Connection, args: argparse.Namespace) -> str:
    result = conn.call("library.collections", _filters(args, "author"))
    return _shown(args, result, lambda r: _collections_text(r["collections"]))


def _collections_text(found: Sequence[Mapping[str, Any]]) -> str:
    """One row per POWR list, then the members that are not stored yet."""
    if not found:
        return "no collections"
    rows = [
        (c["title"], c["d"], len(c["members"]), len(c["missing"]),
         " ".join(f"{kind}:{count}" for kind, count in sorted(c["kind_counts"].items())))
        for c in found
    ]
    text = render.table(("TITLE", "D", "MEMBERS", "MISSING", "KINDS"), rows)
    missing = sorted({m for c in found for m in c["missing"]})
    if missing:
        text += "\n\nmissing (being fetched):\n" + "\n".join(f"  {m}" for m in missing)
    return text


def _fetch(conn: Connection, args: argparse.Namespace) -> str:
    result = conn.call("fetch.list", _filters(args, "state"))
    return _shown(args, result, lambda r: render.fetch_queue(r["entries"]))


def _outbox(conn: Connection, args: argparse.Namespace) -> str:
    result = conn.call("outbox.list", {"pending": True} if args.pending else {})
    return _shown(args, result, lambda r: render.outbox(r["entries"]))


def _query(conn: Connection, args: argparse.Namespace) -> str:
    result = conn.call("events.query", {"filter": _params_object(args.filter, "FILTER_JSON")})
    return _shown(args, result, lambda r: render.events(r["events"]))


def _sync(conn: Connection, args: argparse.Namespace) -> str:
    result = conn.call("sync.now")
    return _shown(args, result, lambda r: f"backfill requested on {r['relays']} relays")


def _publish(conn: Connection, args: argparse.Namespace) -> str:
    try:
        tags = json.loads(args.tags)
    except ValueError as error:
        raise UsageError(f"--tags: not valid JSON: {error}") from None
    params: dict[str, Any] = {"kind": args.kind, "content": args.content, "tags": tags}
    if args.created_at is not None:
        params["created_at"] = args.created_at
    result = conn.call("publish", params)
    return _shown(args, result, lambda r: f"published {r['id']}")


def exercise_tags(
    *,
    title: str,
    equipment: str,
    formats: Sequence[str],
    d: str | None = None,
    difficulty: str | None = None,
    hashtags: Sequence[str] = (),
) -> list[list[str]]:
    """The tags of a kind 33401 exercise.

    Args:
        title: The exercise's name.
        equipment: ``barbell``, ``dumbbell``, ``bodyweight``, ``machine`` or ``cardio``.
        formats: ``name:unit`` pairs in order, e.g. ``["weight:kg", "reps:count"]``.
        d: The identifier; a new UUID when None.
        difficulty: ``beginner``, ``intermediate`` or ``advanced``, or None.
        hashtags: ``t`` tags.

    Raises:
        UsageError: A format entry is not ``name:unit``.
    """
    names, units = [], []
    for entry in formats:
        name, _, unit = entry.partition(":")
        if not name or not unit:
            raise UsageError(f"--format: expected name:unit such as weight:kg, found {entry!r}")
        names.append(name)
        units.append(unit)
    tags = [
        ["d", d if d is not None else str(uuid.uuid4())],
        ["title", title],
        ["format", *names],
        ["format_units", *units],
        ["equipment", equipment],
    ]
    if difficulty:
        tags.append(["difficulty", difficulty])
    tags += [["t", tag] for tag in hashtags]
    return tags


def _exercise_add(conn: Connection, args: argparse.Namespace) -> str:
    tags = exercise_tags(title=args.title, equipment=args.equipment, formats=args.format,
                         d=args.d, difficulty=args.difficulty, hashtags=args.tag or ())
    published = conn.call("publish", {"kind": EXERCISE_KIND, "content": args.content, "tags": tags})
    event_id = published["id"]
    found = conn.call("events.query", {"filter": {"ids": [event_id]}})["events"]
    pubkey = found[0]["pubkey"] if found else None
    coordinate = f"{EXERCISE_KIND}:{pubkey}:{tags[0][1]}" if pubkey else None
    result = {"id": event_id, "coordinate": coordinate}
    return _shown(args, result,
                  lambda r: f"published exercise {r['coordinate']}\nevent id {r['id']}")


# -- argument parsing ------------------------------------------------------------------


def _common(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: an option given before the subcommand is not reset by the subparser.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the method's JSON result instead of a table")
    parser.add_argument("--socket", default=argparse.SUPPRESS,
                        help="control socket (default: [control].socket from the config)")
    parser.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds to wait for an answer (default {DEFAULT_TIMEOUT_SECONDS:g})")


def _watch(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--watch", nargs="?", type=_interval, const=DEFAULT_WATCH_SECONDS,
                        metavar="SECONDS",
                        help="redraw every SECONDS (default %(const)g) until Ctrl-C")
    return parser


def _interval(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0.1 <= seconds <= 86400:
        raise argparse.ArgumentTypeError(f"expected seconds from 0.1 to 86400, found {text!r}")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``ctl``'s options and subcommands to ``parser`` (``powrd ctl``'s parser).

    Args:
        parser: The ``ctl`` subcommand's parser, already holding powrd's global options.
    """
    from powrd.cli.main import FallbackSubParsers, global_options

    parser.description = ("Talk to the running daemon. `powrd ctl METHOD [PARAMS_JSON]` calls"
                          " any control method and prints its JSON result.")
    parser.set_defaults(ctl_parser=parser)
    _common(parser)
    commands = parser.add_subparsers(dest="ctl_command", metavar="SUBCOMMAND",
                                     action=FallbackSubParsers)
    # An unknown subcommand is a method name: `powrd ctl status.x {}` = `… call status.x {}`.
    cast(FallbackSubParsers, commands).fallback = "call"

    def add(name: str, handler: Handler, help_text: str,
            under: Any = commands) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = under.add_parser(name, help=help_text,
                                                        description=help_text)
        global_options(sub)
        _common(sub)
        sub.set_defaults(handler=handler)
        return sub

    call = add("call", _call, "call a method by name and print its JSON result")
    call.add_argument("method", help="e.g. status, events.query, library.template")
    call.add_argument("params", nargs="?", help='named params as a JSON object, e.g. {"filter":{}}')
    _watch(add("status", _status, "version, state, health, relays and counts"))
    _watch(add("relays", _relays, "each relay's connection state and counters")).add_argument(
        "action", nargs="?", choices=("publish-list",),
        help="publish-list: sign and publish your NIP-65 relay list from [[relays]]",
    )
    template = add("template", _template, "a workout template with its exercises resolved")
    template.add_argument("coordinate", help="33402:<pubkey hex>:<d>")
    _library_commands(add)
    fetch = add("fetch", _fetch, "referenced events powrd is looking for")
    fetch.add_argument("--state", choices=["pending", "in_flight", "not_found"])
    outbox = add("outbox", _outbox, "your events and their delivery to each relay")
    outbox.add_argument("--pending", action="store_true", help="only undelivered events")
    query = add("query", _query, "stored events matching a NIP-01 filter, newest first")
    query.add_argument("filter", help='e.g. {"kinds":[33401],"limit":10}')
    add("sync", _sync, "run the backfill again on every relay")
    publish = add("publish", _publish, "sign, store and send an event")
    publish.add_argument("--kind", type=int, required=True)
    publish.add_argument("--content", default="")
    publish.add_argument("--tags", default="[]", help='JSON list of tags, e.g. [["d","x"]]')
    publish.add_argument("--created-at", type=int, help="unix seconds (default: now)")
    exercise = add("exercise", _missing_action, "author exercise definitions")
    actions = exercise.add_subparsers(dest="action", metavar="ACTION")
    new = add("add", _exercise_add, "publish a new exercise (kind 33401)", under=actions)
    new.add_argument("--title", required=True)
    new.add_argument("--equipment", required=True,
                     help="barbell, dumbbell, bodyweight, machine or cardio")
    new.add_argument("--format", nargs="+", required=True, metavar="NAME:UNIT",
                     help="parameters in order, e.g. weight:kg reps:count rpe:0-10")
    new.add_argument("--difficulty", choices=["beginner", "intermediate", "advanced"])
    new.add_argument("--tag", action="append", help="hashtag; repeat for more")
    new.add_argument("--d", help="identifier (default: a new UUID)")
    new.add_argument("--content", default="", help="instructions")


def _library_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    exercises = add("exercises", _exercises, "stored exercise definitions")
    exercises.add_argument("--author", help="npub or hex public key")
    exercises.add_argument("--search", help="words in the title")
    exercises.add_argument("--equipment", help="barbell, dumbbell, bodyweight, machine, cardio")
    exercises.add_argument("--tag", help="a hashtag (t tag)")
    exercises.add_argument("--limit", type=int)
    exercises.add_argument(
        "--scope", choices=("all", "mine", "public"), help="your authors', others', or both"
    )
    records = add("records", _records, "workout records with their sets, newest first")
    records.add_argument("--author", help="npub or hex public key")
    records.add_argument("--since", type=_unix_seconds, help="unix seconds or a UTC date")
    records.add_argument("--until", type=_unix_seconds, help="unix seconds or a UTC date")
    records.add_argument("--limit", type=int)
    add("collections", _collections, "POWR lists: saved exercises and templates").add_argument(
        "--author", help="npub or hex public key")


def _missing_action(conn: Connection, args: argparse.Namespace) -> str:
    raise UsageError("exercise: expected an action: add")

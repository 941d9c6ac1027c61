"""Plain-text rendering of control-socket results, for ``powrd ctl`` and ``powrd demo``.

Every function takes a method's JSON result (or part of it) and returns text without a
trailing newline. Absent values are shown as ``-``; times are UTC. Every value that
came from an event or a relay passes :func:`safe` (through :func:`table`, :func:`clip`
or :func:`text`), so control characters and escape sequences are shown, never obeyed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from powrd.cli.safe_text import (
    EARLIEST_PRINTABLE_SECONDS,
    LATEST_PRINTABLE_SECONDS,
    safe,
    safe_json,
)

__all__ = ["safe", "safe_json"]

MAX_CELL = 60
# Units worth printing after a value; "count", "0-10" or "warmup|normal|…" say nothing.
_SHOWN_UNIT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz/")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Left-aligned columns separated by two spaces; ``None`` and empty cells become ``-``."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for index, text in enumerate(row):
            widths[index] = max(widths[index], len(text))
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def safe_lines(rendered: str) -> str:
    """``rendered`` with every line passed through :func:`safe`: the last line of defence
    for a value a renderer printed without :func:`text`."""
    return "\n".join(safe(line) for line in rendered.split("\n"))


def _cell(value: object) -> str:
    if value is None or value == "":
        return "-"
    return text(value)


def text(value: object) -> str:
    """``value`` as one terminal-safe line: whitespace runs become one space."""
    return safe(" ".join(str(value).split()))


def clip(value: object) -> str | None:
    """Free text (errors, notes) cut to one short line; ids and coordinates are never cut."""
    if value is None:
        return None
    line = " ".join(str(value).split())
    return safe(line if len(line) <= MAX_CELL else line[: MAX_CELL - 1] + "…")


def timestamp(seconds: object) -> str:
    """``2023-11-14 22:13:20Z`` for unix seconds; ``-`` for None.

    A value outside years 1970 to 9999 (or not a number) prints as it is: an event may
    carry any integer, and the reader should see what it says rather than a crash.
    """
    if seconds is None:
        return "-"
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return text(seconds)
    if not EARLIEST_PRINTABLE_SECONDS <= seconds <= LATEST_PRINTABLE_SECONDS:
        return str(seconds)
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


def duration(seconds: float | None) -> str:
    """``1h 2m 3s`` style; ``-`` for None; a value that is not a finite number as it is."""
    if seconds is None:
        return "-"
    if not _finite_number(seconds):
        return text(seconds)
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    days, hours = divmod(hours, 24)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{n}{unit}" for n, unit in parts if n]
    return " ".join(shown[:3])


def _finite_number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def parameters(laid_out: Sequence[Mapping[str, Any]]) -> str:
    """A set's parameters: ``weight=100 kg reps=5 rpe=? …`` (``?`` = to be filled in)."""
    shown: list[str] = []
    for param in laid_out:
        name, unit, value = param.get("name"), param.get("unit"), param.get("value")
        if name is None:
            shown.append(str(value) if value is not None else "?")
            continue
        text = f"{name}={'?' if value is None else value}"
        if value is not None and unit and set(unit) <= _SHOWN_UNIT_CHARS and unit != "count":
            text += f" {unit}"
        shown.append(text)
    return " ".join(shown) if shown else "-"


# -- status and relays ---------------------------------------------------------------


def status(result: Mapping[str, Any]) -> str:
    """The ``status`` result: header, health, one row per relay, counts."""
    lines = [
        f"powrd {text(result.get('version', '?'))}  {text(result.get('state', '?'))}"
        f"  up {duration(result.get('uptime_s'))}"
    ]
    problems = list(result.get("health") or [])
    if problems:
        lines.append(f"health: {len(problems)} problem{'s' if len(problems) != 1 else ''}")
        lines.extend(f"  - {text(problem)}" for problem in problems)
    else:
        lines.append("health: ok")
    lines.append("")
    relay_rows = [
        (r.get("url"), r.get("state"), r.get("events_received"), r.get("events_rejected"),
         clip(r.get("last_error")), _retry(r.get("next_retry_s")))
        for r in result.get("relays") or []
    ]
    if relay_rows:
        headers = ("RELAY", "STATE", "RECEIVED", "REJECTED", "LAST ERROR", "NEXT RETRY")
        lines.append(table(headers, relay_rows))
    else:
        lines.append("no relays")
    backfills = [backfill_line(r) for r in result.get("relays") or []]
    if any(backfills):
        lines.append("")
        lines.extend(line for line in backfills if line)
    lines.append("")
    lines.append(counts(result.get("counts") or {}))
    cache, media = result.get("cache"), result.get("media")
    if isinstance(cache, Mapping):
        lines.append(f"cache      {cache.get('entries', 0)} entries, {cache.get('hits', 0)} hits,"
                     f" {cache.get('misses', 0)} misses")
    if isinstance(media, Mapping):
        state = "on" if media.get("enabled") else "off"
        lines.append(f"media      {state}, {media.get('downloads', 0)} downloads,"
                     f" {media.get('failures', 0)} failures,"
                     f" {media.get('stored_bytes', 0)} bytes stored")
    endpoint = result.get("local_relay")
    if isinstance(endpoint, Mapping) and endpoint.get("enabled"):
        state = "listening"
        if not endpoint.get("listening"):
            state = f"not listening ({endpoint.get('error')})"
        lines.append(f"app relay  {endpoint.get('url')} {state}, {endpoint.get('connections', 0)}"
                     f" connections, {endpoint.get('subscriptions', 0)} subscriptions,"
                     f" {endpoint.get('events_sent', 0)} events sent,"
                     f" {endpoint.get('events_accepted', 0)} accepted,"
                     f" {endpoint.get('events_refused', 0)} refused")
    memory = result.get("memory")
    if isinstance(memory, Mapping):
        lines.append(f"memory     {_mib(memory.get('rss_bytes'))} resident"
                     f" (peak {_mib(memory.get('peak_rss_bytes'))}),"
                     f" SQLite {_mib(memory.get('sqlite_bytes'))},"
                     f" {memory.get('seen_ids', 0)} ids remembered")
    return "\n".join(lines)


def backfill_line(relay: Mapping[str, Any]) -> str | None:
    """One line of a running backfill's progress, or None when none runs.

    ``backfill  wss://r  1/2 scopes, 14 pages, 6,500 events, back to 2024-01-02 10:00:00Z,
    1,210 events/s, for 5s``
    """
    progress = relay.get("backfill")
    if not isinstance(progress, Mapping) or progress.get("state") != "running":
        return None
    started, rate = progress.get("started_at"), progress.get("events_per_s")
    parts = [f"{_number(progress.get('scopes_done'))}/{_number(progress.get('scopes_total'))}"
             " scopes", f"{_number(progress.get('pages'))} pages",
             f"{_number(progress.get('events'))} events"]
    if progress.get("oldest_created_at") is not None:
        parts.append(f"back to {timestamp(progress['oldest_created_at'])}")
    if isinstance(rate, int | float):
        parts.append(f"{rate:,.0f} events/s")
    if isinstance(started, int | float):
        parts.append(f"for {duration(max(0.0, time.time() - started))}")
    return f"backfill   {text(relay.get('url'))}  " + ", ".join(parts)


def _number(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else text(value)


def _backfill_cell(relay: Mapping[str, Any]) -> str:
    progress = relay.get("backfill")
    if isinstance(progress, Mapping) and progress.get("state") == "running":
        return f"running {_number(progress.get('scopes_done'))}/" \
               f"{_number(progress.get('scopes_total'))}"
    if isinstance(progress, Mapping) and progress.get("state") == "idle":
        return "idle"
    return "done" if relay.get("backfill_complete") else "no"


def _mib(size: object) -> str:
    return f"{size / 2**20:.0f} MiB" if isinstance(size, int) else "?"


def _retry(seconds: float | None) -> str | None:
    return None if seconds is None else f"in {duration(seconds)}"


def counts(figures: Mapping[str, Any]) -> str:
    """The ``counts`` part of ``status`` as a few labelled lines."""
    by_kind = figures.get("by_kind") or {}
    kinds = ", ".join(f"{text(kind)}: {text(n)}"
                      for kind, n in sorted(by_kind.items(), key=_kind_order))
    return "\n".join([
        f"events     {figures.get('events', 0)}" + (f"  ({kinds})" if kinds else ""),
        f"library    {figures.get('exercises', 0)} exercises, {figures.get('templates', 0)}"
        f" templates ({figures.get('incomplete_templates', 0)} incomplete),"
        f" {figures.get('records', 0)} records",
        f"queues     fetch {figures.get('fetch_pending', 0)} pending,"
        f" outbox {figures.get('outbox_pending', 0)} pending",
        f"rejected   {figures.get('rejected', 0)}",
    ])


def _kind_order(item: tuple[str, Any]) -> tuple[int, str]:
    kind = item[0]
    return (int(kind), kind) if kind.isascii() and kind.isdigit() else (1 << 30, kind)


def relays(entries: Sequence[Mapping[str, Any]]) -> str:
    """The ``relays.list`` entries, one row each."""
    if not entries:
        return "no relays"
    rows = [
        (r.get("url"), _read_write(r), r.get("state"), r.get("connects"), r.get("events_received"),
         r.get("events_stored"), r.get("events_rejected"),
         _backfill_cell(r), clip(r.get("last_error")),
         _retry(r.get("next_retry_s")), _source(r))
        for r in entries
    ]
    headers = ("RELAY", "MODE", "STATE", "CONNECTS", "RECEIVED", "STORED", "REJECTED",
               "BACKFILL", "LAST ERROR", "NEXT RETRY", "SOURCE")
    return table(headers, rows)


def _source(relay: Mapping[str, Any]) -> str:
    """config, index, or nip65 with the number of authors the relay is read for."""
    source = str(relay.get("source") or "config")
    count = relay.get("author_count")
    return f"{source} ({count} authors)" if count else source


def _read_write(relay: Mapping[str, Any]) -> str:
    return ("r" if relay.get("read") else "-") + ("w" if relay.get("write") else "-")


# -- library -------------------------------------------------------------------------


def template(resolved: Mapping[str, Any]) -> str:
    """A ``library.template`` result: summary, missing coordinates, one row per exercise."""
    exercises = list(resolved.get("exercises") or [])
    missing = list(resolved.get("missing") or [])
    lines = [
        f"{text(resolved.get('title') or '(untitled)')}  [{text(resolved.get('type') or '-')}]",
        f"coordinate  {text(resolved.get('coordinate'))}",
    ]
    if resolved.get("complete"):
        lines.append(f"status      complete: all {len(exercises)} exercise references resolved")
    else:
        lines.append(f"status      incomplete: {len(missing)} referenced exercise"
                     f"{'s' if len(missing) != 1 else ''} not stored yet")
        lines.extend(f"missing     {text(coordinate)}" for coordinate in missing)
    shape = [
        f"{label} {text(resolved[key])}" for key, label in (
            ("rounds", "rounds"), ("duration", "duration s"), ("interval", "interval s"),
            ("rest_between_rounds", "rest between rounds s"))
        if resolved.get(key) is not None
    ]
    if shape:
        lines.append("shape       " + ", ".join(shape))
    if resolved.get("content"):
        lines.append(f"notes       {text(resolved['content'])}")
    lines.append("")
    rows = []
    for index, ref in enumerate(exercises, start=1):
        exercise = ref.get("exercise")
        title = exercise.get("title") if exercise else "(missing)"
        equipment = exercise.get("equipment") if exercise else None
        rows.append((index, title, equipment, parameters(ref.get("parameters") or []),
                     ref.get("coordinate")))
    lines.append(table(("#", "EXERCISE", "EQUIPMENT", "PARAMETERS", "COORDINATE"), rows))
    return "\n".join(lines)


def exercises(entries: Sequence[Mapping[str, Any]]) -> str:
    """``library.exercises`` results, one row each."""
    if not entries:
        return "no exercises"
    rows = [
        (e.get("title"), e.get("equipment"), e.get("difficulty"),
         " ".join(_formats(e)), ",".join(e.get("hashtags") or []), e.get("coordinate"))
        for e in entries
    ]
    return table(("TITLE", "EQUIPMENT", "DIFFICULTY", "FORMAT", "TAGS", "COORDINATE"), rows)


def _formats(exercise: Mapping[str, Any]) -> list[str]:
    names = list(exercise.get("format") or [])
    units = list(exercise.get("format_units") or [])
    return [f"{name}:{units[i]}" if i < len(units) else name for i, name in enumerate(names)]


_COMPLETED: dict[object, str] = {True: "completed", False: "not completed"}


def records(entries: Sequence[Mapping[str, Any]]) -> str:
    """``library.records`` results: a heading line per record, then its sets."""
    if not entries:
        return "no records"
    blocks = []
    for record in entries:
        start, end = record.get("start"), record.get("end")
        took = duration(end - start) if isinstance(start, int) and isinstance(end, int) else "-"
        completed = _COMPLETED.get(record.get("completed"), "-")
        head = (f"{timestamp(start if start is not None else record.get('created_at'))}"
                f"  {text(record.get('title') or '(untitled)')}"
                f"  [{text(record.get('type') or '-')}]  {completed}  {took}")
        lines = [head, f"  event     {text(record.get('event_id'))}"]
        if record.get("template"):
            lines.append(f"  template  {text(record['template'])}")
        rows = [
            (number, s.get("exercise_title") or "(missing)", parameters(s.get("parameters") or []))
            for number, s in enumerate(record.get("sets") or [], start=1)
        ]
        if rows:
            lines.append(_indent(table(("SET", "EXERCISE", "PARAMETERS"), rows)))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# -- queues and events ---------------------------------------------------------------


def fetch_queue(entries: Sequence[Mapping[str, Any]]) -> str:
    """``fetch.list`` entries: the coordinates powrd is looking for."""
    if not entries:
        return "fetch queue empty"
    rows = [
        (e.get("coordinate"), e.get("state"), e.get("attempts"), e.get("dependents"),
         timestamp(e.get("next_attempt")), clip(e.get("last_error")))
        for e in entries
    ]
    headers = ("COORDINATE", "STATE", "ATTEMPTS", "NEEDED BY", "NEXT ATTEMPT", "LAST ERROR")
    return table(headers, rows)


def outbox(entries: Sequence[Mapping[str, Any]]) -> str:
    """``outbox.list`` entries with each relay's delivery state."""
    if not entries:
        return "outbox empty"
    rows = [
        (e.get("event_id"), e.get("kind"), timestamp(e.get("queued_at")),
         "yes" if e.get("done") else "no",
         ", ".join(f"{d.get('relay')} {d.get('state')}" for d in e.get("deliveries") or []))
        for e in entries
    ]
    return table(("EVENT", "KIND", "QUEUED", "DONE", "DELIVERIES"), rows)


def events(found: Sequence[Mapping[str, Any]]) -> str:
    """``events.query`` results, newest first as served."""
    if not found:
        return "no events"
    rows = [
        (timestamp(e.get("created_at")), e.get("kind"), e.get("id"),
         str(e.get("pubkey", ""))[:16], _summary(e))
        for e in found
    ]
    return table(("CREATED", "KIND", "ID", "AUTHOR", "SUMMARY"), rows)


def _summary(event: Mapping[str, Any]) -> str:
    tags = event.get("tags") or []
    title = next((t[1] for t in tags if len(t) > 1 and t[0] == "title"), None)
    return clip(title if title else event.get("content")) or ""

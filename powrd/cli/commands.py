"""The offline commands: import, export, reindex, keygen (no daemon needed)."""

from __future__ import annotations

import os
import stat
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from powrd.cli.errors import UsageError
from powrd.cli.progress import Progress, on_terminal
from powrd.config import Config, ConfigError, load_config
from powrd.logs import configure_logging
from powrd.protocol.event import loads
from powrd.protocol.reasons import Rejected
from powrd.protocol.validate import Policy
from powrd.store import queries
from powrd.store.database import StoreError, open_reader_connection
from powrd.store.store import Store
from powrd.sync.pipeline import Pipeline

IMPORT_BATCH = 1000


def load(
    path: str | None,
    environ: Mapping[str, str],
    log_level: str | None,
    log_format: str | None = None,
) -> Config:
    """The config named on the command line (or found), with logging set up from it.

    ``--log-level`` and ``--log-format`` override ``[logging]``.
    """
    try:
        config = load_config(Path(path) if path else None, environ)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    configure_logging(log_level or config.logging.level, log_format or config.logging.format)
    return config


def open_store(config: Config) -> Store:
    try:
        return Store(config.store.path)
    except StoreError as error:
        raise UsageError(str(error)) from None


def policy(config: Config) -> Policy:
    return Policy(config.limits.max_event_bytes, config.limits.max_future_seconds)


class _CountedLines:
    """The lines of a binary stream, counting the bytes read so far."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self.bytes_read = 0

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self.bytes_read += len(line)
            yield line


def _bytes_left(stream: IO[bytes]) -> int | None:
    """Bytes a regular file still holds from its position; None for pipes and terminals."""
    try:
        info = os.fstat(stream.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return max(0, info.st_size - os.lseek(stream.fileno(), 0, os.SEEK_CUR))
    except (OSError, ValueError):
        return None


def _shows_progress(quiet: bool) -> bool:
    return not quiet and on_terminal(sys.stderr)


def _progress(label: str, total: int | None, quiet: bool, unit: str = "events") -> Progress:
    return Progress(sys.stderr, label, total=total, unit=unit, enabled=_shows_progress(quiet))


def _event_lines(stream: Iterable[bytes]) -> Iterator[tuple[Any, int]]:
    """Decoded events from NDJSON lines: bare objects or ``["EVENT", sub, event]`` frames."""
    for raw_line in stream:
        line = raw_line.strip()
        if not line:
            continue
        try:
            value = loads(line)
        except ValueError:
            yield None, len(line)
            continue
        if isinstance(value, list) and len(value) == 3 and value[0] == "EVENT":
            # The size limit applies to the event, not to the frame around it.
            yield value[2], _size(value[2])
        else:
            yield value, len(line)


def _size(value: Any) -> int:
    from powrd.protocol.event import dumps

    return len(dumps(value).encode())


def import_events(config: Config, source: str, *, quiet: bool = False) -> int:
    """``powrd import FILE|-``: prints a summary; exit 0 even when some events were rejected."""
    try:
        stream: IO[bytes] = sys.stdin.buffer if source == "-" else Path(source).open("rb")  # noqa: SIM115
    except OSError as error:
        raise UsageError(f"{source}: cannot read: {error.strerror}") from None
    stored = duplicates = read = 0
    rejected: Counter[str] = Counter()
    lines = _CountedLines(stream)
    progress = _progress("import", _bytes_left(stream), quiet)
    with open_store(config) as store, stream, progress:
        pipeline = Pipeline(store, policy(config), rejected_log_max=config.store.rejected_log_max)
        batch: list[tuple[Any, int]] = []

        def flush() -> None:
            nonlocal stored, duplicates
            result = pipeline.submit_blocking("import", batch)
            stored += len(result.stored)
            duplicates += result.duplicates
            rejected.update(reason for _, reason in result.rejected)
            batch.clear()

        for item in _event_lines(lines):
            read += 1
            progress.update(read, lines.bytes_read)
            if item[0] is None:
                rejected[Rejected.malformed("not valid JSON").reason] += 1
                continue
            batch.append(item)
            if len(batch) >= IMPORT_BATCH:
                flush()
        if batch:
            flush()
        incomplete = queries.counts(store.reader())["incomplete_templates"]
    print(f"stored: {stored}")
    print(f"duplicate: {duplicates}")
    print(f"rejected: {sum(rejected.values())}")
    for reason, count in sorted(rejected.items()):
        print(f"  {reason}: {count}")
    print(f"incomplete templates: {incomplete}")
    return 0


def export_events(config: Config, *, include_superseded: bool, quiet: bool = False) -> int:
    """``powrd export``: current events (or all versions) as NDJSON; works beside a daemon."""
    if not config.store.path.exists():
        raise UsageError(f"{config.store.path}: no such database (set store.path in the config)")
    try:
        conn = open_reader_connection(config.store.path)
    except Exception as error:
        raise UsageError(f"{config.store.path}: cannot open: {error}") from None
    out = sys.stdout
    try:
        total = None
        if _shows_progress(quiet):  # counting is a scan: only for a progress line
            figures = queries.counts(conn)
            total = figures["events"] if include_superseded else sum(figures["by_kind"].values())
        with _progress("export", total, quiet) as progress:
            for written, raw in enumerate(
                queries.iter_raw_events(conn, include_superseded=include_superseded), start=1
            ):
                out.write(raw)
                out.write("\n")
                progress.update(written)
    finally:
        conn.close()
    out.flush()
    return 0


def reindex(config: Config, *, quiet: bool = False) -> int:
    """``powrd reindex``: rebuild processed tables; prints what changed."""
    from powrd.library.reindex import reindex as rebuild

    with open_store(config) as store:
        total = None
        if _shows_progress(quiet):
            total = sum(queries.counts(store.reader())["by_kind"].values())
        with _progress("reindex", total, quiet) as progress:
            report = store.writer.call(lambda conn: rebuild(conn, progress=progress.update))
    changed = report.changed
    if not changed:
        print("reindex: processed tables already matched the raw events")
    for key, (before, after) in sorted(changed.items()):
        if key == "incomplete":
            print(f"incomplete: {len(before)} -> {len(after)}")  # type: ignore[arg-type]
        else:
            print(f"{key}: {before} -> {after}")
    return 0


def keygen(out: str) -> int:
    from powrd.identity import IdentityError, write_new_key

    try:
        keys = write_new_key(Path(out))
    except IdentityError as error:
        raise UsageError(str(error)) from None
    print(keys.public_key().to_bech32())
    return 0

"""Structured logging: one structlog pipeline for powrd and the libraries it uses.

powrd code logs through :func:`get_logger` with an event name and key/value pairs,
using these stable keys wherever they apply so log queries keep working::

    log = get_logger(__name__)
    log.info("event rejected", relay=url, event_id=event.id, kind=event.kind, reason=reason)

Records from the standard :mod:`logging` module (websockets, asyncio) go through the
same formatter, so every line has ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``
and ``event``. Output is one JSON object per line when the stream is not a terminal
(files, pipes) or is journald's (``$JOURNAL_STREAM`` names it), and a human-readable
line on a terminal; ``--log-format`` / ``[logging].format`` force either.

Every line passes :func:`redact_secrets` last before rendering: values under keys such as
``secret_key`` or ``password`` and anything that looks like an ``nsec1…`` key are
replaced, including inside nested values and exception text, so a secret cannot reach
the log even by mistake. (A secret in bare hex under an innocent key name cannot be
recognized; never log key material at all.)
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("auto", "json", "console")
REDACTED = "[REDACTED]"
SECRET_KEY_NAMES = frozenset(
    ("secret", "secret_key", "nsec", "password", "private_key", "privkey", "seckey")
)
# "nsec1" (or NIP-49's "ncryptsec1") and the whole word after it: a full or partial key.
# Wider than the bech32 alphabet on purpose, so a mistyped key is hidden entirely too.
_NSEC = re.compile(r"n(?:crypt)?sec1[0-9a-z]*", re.IGNORECASE)
_LEADING_KEYS = ("timestamp", "level", "logger", "event")

_TIMESTAMPER = structlog.processors.TimeStamper(fmt="iso", utc=True)
# Runs in the caller, for powrd's own loggers: cheap level filter first.
_STRUCTLOG_CHAIN: list[Processor] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    _TIMESTAMPER,
    structlog.processors.StackInfoRenderer(),
    structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
]
# Runs in the handler, for records that come from plain `logging` calls.
_FOREIGN_CHAIN: list[Processor] = [
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    _TIMESTAMPER,
]


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named ``name`` (usually ``__name__``).

    Works before :func:`configure_logging` is called (for module-level loggers) and
    follows later reconfiguration, because level and output live in the standard
    library's logging tree rather than in the logger.
    """
    logger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_STRUCTLOG_CHAIN,
        wrapper_class=structlog.stdlib.BoundLogger,
        # Safe to cache: the processors never change, only the logging tree behind them.
        cache_logger_on_first_use=True,
    )
    return cast(structlog.stdlib.BoundLogger, logger)


def configure_logging(
    level: str,
    fmt: str = "auto",
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> None:
    """Route all logging to ``stream`` at ``level``; safe to call again (SIGHUP).

    Args:
        level: ``debug``, ``info``, ``warning`` or ``error`` (any case).
        fmt: ``json``, ``console``, or ``auto`` (console on a terminal, JSON otherwise
            and whenever the stream is journald's).
        stream: Where lines go; ``sys.stderr`` when omitted.
        environ: Where ``JOURNAL_STREAM`` is looked up; ``os.environ`` when omitted.

    Raises:
        ValueError: Unknown level or format.
    """
    level = level.lower()
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")
    out = sys.stderr if stream is None else stream
    on_terminal = _is_terminal(out)
    to_journal = is_journal_stream(out, os.environ if environ is None else environ)
    renderer: Processor
    if fmt == "json" or (fmt == "auto" and (to_journal or not on_terminal)):
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=on_terminal)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_FOREIGN_CHAIN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before redaction so their messages are redacted too.
            structlog.processors.format_exc_info,
            redact_secrets,
            _leading_keys_first,
            renderer,
        ],
    )
    handler = _PowrdHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _PowrdHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # Code that calls structlog.get_logger() directly gets the same pipeline.
    structlog.configure(
        processors=_STRUCTLOG_CHAIN,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Processor: replace anything that could be a secret key with ``[REDACTED]``.

    Objects other than plain JSON values are turned into text first, so a secret inside
    an object's string form is caught as well.
    """
    return {key: _redact_value(key, value) for key, value in event_dict.items()}


class _PowrdHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler :func:`configure_logging` installs, so a reconfigure can replace it."""


def _redact_value(key: object, value: Any) -> Any:
    if isinstance(key, str) and key.lower() in SECRET_KEY_NAMES:
        return REDACTED
    if isinstance(value, str):
        return _NSEC.sub(REDACTED, value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {
            _redact_value(None, item_key): _redact_value(item_key, item)
            for item_key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_value(None, item) for item in value]
    if isinstance(value, BaseException):
        return _NSEC.sub(REDACTED, f"{type(value).__name__}: {value}")
    return _NSEC.sub(REDACTED, str(value))


def _leading_keys_first(
    logger: WrappedLogger, method_name: str, event_dict: EventDict
) -> EventDict:
    ordered = {key: event_dict[key] for key in _LEADING_KEYS if key in event_dict}
    ordered.update(event_dict)
    return ordered


def _json_line(event_dict: EventDict, **_: Any) -> str:
    try:
        return orjson.dumps(event_dict, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        # orjson refuses integers beyond 64 bits; the standard library does not.
        return json.dumps(event_dict, default=str, ensure_ascii=False)


def is_journal_stream(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """True when ``stream`` is the journald connection systemd gave this process.

    systemd sets ``JOURNAL_STREAM=<device>:<inode>`` for a service whose output goes to
    the journal; a child process may inherit the variable with other output, so the
    stream's own device and inode must match.
    """
    named = environ.get("JOURNAL_STREAM", "")
    device, _, inode = named.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (info.st_dev, info.st_ino) == (int(device), int(inode))


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False

"""The daemon's settings: one TOML file read into frozen dataclasses.

Every key is optional; a missing key takes the default shown in ``config/powrd.toml``.
Relative paths in the file are resolved against the file's own directory, so a config
means the same thing whatever the working directory. Without a file (or with the
``[store].path`` / ``[control].socket`` keys left out) the database and the control
socket go to systemd's ``$STATE_DIRECTORY`` / ``$RUNTIME_DIRECTORY`` when those are set,
else to ``powrd.db`` / ``powrd.sock`` relative to the working directory.

Every problem is reported as a :class:`ConfigError` whose message is a single line
naming the file, the key, what was expected and what was found, for example
``powrd.toml: sync.kinds[1]: expected an integer from 0 to 65535, found "abc"``.
Values that look like secret keys are never repeated in those messages.

The dataclasses are the only list of keys: the checks, the known keys named in
"unknown key" hints and the list of sections are all read from their fields.

* **A new key** is one field with a default in its section's dataclass. A ``bool``,
  ``str``, ``Path``, ``int`` (>= 0) or ``float`` (>= 0) field needs nothing more; a
  tighter range is one of the ``Annotated`` types defined with the checks (``Positive``,
  ``NonNegative``, ``Seconds``, ``SecondsOrZero``), and anything else names its check as
  ``Annotated[T, _check]``. Then document it, with its default, in
  ``config/powrd.toml`` (tests fail if the file lacks it or if no code reads it). A
  ``<x>_min_<unit>`` key with a ``<x>_max_<unit>`` sibling is checked as a range.
* **A new section** ``[name]`` is a frozen dataclass of such fields plus one field
  ``name: NameConfig = NameConfig()`` on :class:`Config`.

The sections are immutable and compare by value, and ``dataclasses.replace`` works on
every level.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import os
import re
import tomllib
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from powrd.control import MAX_SOCKET_PATH_BYTES
from powrd.identity import parse_public_key

CONFIG_ENV = "POWRD_CONFIG"
DEFAULT_CONFIG_FILE = Path("powrd.toml")
DEFAULT_DATABASE_NAME = "powrd.db"
DEFAULT_SOCKET_NAME = "powrd.sock"
SYSTEMD_SOCKET_NAME = "control.sock"
DEFAULT_KINDS = (33401, 33402, 1301, 30003)
RECORD_KINDS = (1301, 33403)
MAX_KIND = 65535
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"^(?P<what>.*) \(at line (?P<line>\d+), column (?P<column>\d+)\)$")
_TOML_END = re.compile(r"^(?P<what>.*) \(at end of document\)$")
_HEX_DIGITS = frozenset("0123456789abcdef")
_MEDIA_TYPE_PREFIX = re.compile(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9.+-]*")
MIB = 1024 * 1024
# Keys that were once documented: a file that still has one keeps loading (an upgrade
# must not stop the daemon), and the daemon logs that the key does nothing.
RETIRED_KEYS = {
    "store.batch_max_events": "nothing ever read it; delete the line",
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message is one line saying why and where."""


# Field types such as Positive or Seconds carry each key's check; they are defined with
# the checks further down (annotations are read only after the module has loaded).


@dataclass(frozen=True)
class StoreConfig:
    """``[store]``: the SQLite database."""

    path: Path = Path(DEFAULT_DATABASE_NAME)
    rejected_log_max: NonNegative = 10000


@dataclass(frozen=True)
class ControlConfig:
    """``[control]``: the local JSON-RPC socket."""

    socket: Path = Path(DEFAULT_SOCKET_NAME)
    max_request_bytes: Positive = 1048576


@dataclass(frozen=True)
class IdentityConfig:
    """``[identity]``: where the daemon's own secret key lives (``None``: read-only)."""

    secret_key_file: Annotated[Path | None, _secret_key_file] = None


@dataclass(frozen=True)
class SyncConfig:
    """``[sync]``: what to fetch from relays and how hard to try."""

    authors: Annotated[tuple[str, ...], _authors] = ()
    kinds: Annotated[tuple[int, ...], _kinds] = DEFAULT_KINDS
    overlap_seconds: NonNegative = 600
    page_limit: Positive = 500
    max_authors_per_filter: Positive = 200
    max_frame_bytes: Positive = 1048576
    reconnect_min_seconds: Seconds = 1.0
    reconnect_max_seconds: Seconds = 300.0
    min_reconnect_interval_seconds: SecondsOrZero = 2.0
    eose_timeout_seconds: Seconds = 30.0
    queue_max_events: Positive = 10000
    compression: bool = False
    allow_private_relays: bool = False
    public_kinds: Annotated[tuple[int, ...], _public_kinds] = ()
    outbox: bool = True
    index_relays: Annotated[tuple[str, ...], _relay_urls] = ()
    outbox_relays_per_author: Positive = 3
    max_discovered_relays: NonNegative = 50
    negentropy: Annotated[str, _choice("auto", "off", "only")] = "auto"
    negentropy_timeout_seconds: Seconds = 10.0
    reconcile_interval_seconds: Seconds = 21600.0
    repair_max_events: NonNegative = 500


@dataclass(frozen=True)
class LimitsConfig:
    """``[limits]``: what an incoming event may be."""

    max_event_bytes: Positive = 131072
    max_future_seconds: NonNegative = 900


@dataclass(frozen=True)
class ResolverConfig:
    """``[resolver]``: fetching the exercises that templates and records reference."""

    enabled: bool = True
    max_extra_relays: NonNegative = 8
    batch_max_coordinates: Positive = 200
    retry_min_seconds: Seconds = 5.0
    retry_max_seconds: Seconds = 3600.0
    not_found_retry_seconds: Positive = 21600
    fetch_timeout_seconds: Seconds = 15.0


@dataclass(frozen=True)
class PublisherConfig:
    """``[publisher]``: sending the user's own events to write relays."""

    enabled: bool = True
    retry_min_seconds: Seconds = 2.0
    retry_max_seconds: Seconds = 600.0
    ok_timeout_seconds: Seconds = 15.0


@dataclass(frozen=True)
class CacheConfig:
    """``[cache]``: the in-memory cache of resolved templates and exercise lookups."""

    max_entries: NonNegative = 2000
    max_bytes: NonNegative = 16 * MIB


@dataclass(frozen=True)
class MediaConfig:
    """``[media]``: downloading the images and videos that exercises link (NIP-92 imeta)."""

    enabled: bool = True
    max_bytes: Positive = 10 * MIB
    budget_bytes: Positive = 256 * MIB
    thumbnail_max_px: Annotated[int, _integer(1, 4096)] = 256
    retry_min_seconds: Seconds = 5.0
    retry_max_seconds: Seconds = 3600.0
    timeout_seconds: Seconds = 30.0
    allowed_types: Annotated[tuple[str, ...], _media_types] = ("image/", "video/")


@dataclass(frozen=True)
class LocalRelayConfig:
    """``[local_relay]``: the NIP-01 relay endpoint apps use (``listen`` is host:port)."""

    enabled: bool = True
    listen: Annotated[str, _listen] = "127.0.0.1:4869"
    allow_remote: bool = False
    max_connections: Positive = 64
    max_subscriptions_per_connection: Positive = 32
    max_filters_per_req: Positive = 16
    max_limit: Positive = 5000
    default_limit: Positive = 500
    max_message_bytes: Annotated[int, _integer(1024)] = 256 * 1024
    events_per_minute: Positive = 600
    max_negentropy_records: Positive = 500_000

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of ``listen``; IPv6 hosts without their brackets."""
        return split_listen(self.listen)


@dataclass(frozen=True)
class LoggingConfig:
    """``[logging]``: level and output format (``auto``: JSON unless on a terminal)."""

    level: Annotated[str, _choice(*LOG_LEVELS)] = "info"
    format: Annotated[str, _choice(*LOG_FORMATS)] = "auto"


@dataclass(frozen=True)
class RelayConfig:
    """One ``[[relays]]`` entry; ``url`` is normalized (lowercase host, no trailing slash)."""

    url: Annotated[str, _relay_url]
    read: bool = True
    write: bool = True


@dataclass(frozen=True)
class Config:
    """The whole configuration; ``source`` is the file it came from, if any."""

    store: StoreConfig = StoreConfig()
    control: ControlConfig = ControlConfig()
    identity: IdentityConfig = IdentityConfig()
    sync: SyncConfig = SyncConfig()
    limits: LimitsConfig = LimitsConfig()
    resolver: ResolverConfig = ResolverConfig()
    publisher: PublisherConfig = PublisherConfig()
    cache: CacheConfig = CacheConfig()
    media: MediaConfig = MediaConfig()
    local_relay: LocalRelayConfig = LocalRelayConfig()
    logging: LoggingConfig = LoggingConfig()
    relays: tuple[RelayConfig, ...] = ()
    source: Path | None = None
    ignored_keys: tuple[str, ...] = ()
    """Keys of :data:`RETIRED_KEYS` found in the file: accepted, without effect."""

    @classmethod
    def defaults(cls, environ: Mapping[str, str] | None = None) -> Config:
        """All defaults, with the systemd state and runtime directories applied.

        Args:
            environ: The process environment (``os.environ`` when omitted).
        """
        config = _environment_defaults(os.environ if environ is None else environ)
        _check_consistency(_Source("built-in defaults", Path.cwd()), config)
        return config

    @classmethod
    def from_toml(
        cls, path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
    ) -> Config:
        """Read and validate a TOML config file.

        Args:
            path: The file; relative paths inside it are resolved against its directory.
            environ: The process environment (``os.environ`` when omitted), used for the
                systemd directory defaults.

        Raises:
            ConfigError: The file cannot be read, is not TOML, or holds a bad value.
        """
        file = Path(path)
        name = os.fspath(path)
        try:
            data = file.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
        document = _parse_toml(name, data)
        # The real directory (symlinks and ".." resolved) that the file was named in;
        # the file itself may be a symlink and is not followed.
        directory = file.absolute().parent.resolve()
        source = _Source(name, directory)
        defaults = _environment_defaults(os.environ if environ is None else environ)
        config = _build(source, document, defaults)
        config = dataclasses.replace(
            config, source=directory / file.name, ignored_keys=tuple(source.ignored)
        )
        _check_consistency(source, config)
        return config

    def relay_urls(self, *, read: bool | None = None, write: bool | None = None) -> tuple[str, ...]:
        """URLs of the configured relays, in file order.

        Args:
            read: When given, keep only relays whose ``read`` flag equals it.
            write: When given, keep only relays whose ``write`` flag equals it.
        """
        return tuple(
            relay.url
            for relay in self.relays
            if (read is None or relay.read == read) and (write is None or relay.write == write)
        )


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Find and load the config: ``path``, else ``$POWRD_CONFIG``, else ``./powrd.toml``.

    Args:
        path: An explicit file (``powrd run --config``).
        environ: The process environment (``os.environ`` when omitted).

    Returns:
        The config; all defaults when no file is named and ``./powrd.toml`` does not exist.

    Raises:
        ConfigError: The chosen file is unusable.
    """
    env = os.environ if environ is None else environ
    if path is not None:
        return Config.from_toml(path, env)
    named = env.get(CONFIG_ENV, "")
    if named:
        try:
            return Config.from_toml(named, env)
        except ConfigError as exc:
            raise ConfigError(f"{exc} (file named by ${CONFIG_ENV})") from None
    if DEFAULT_CONFIG_FILE.exists():
        return Config.from_toml(DEFAULT_CONFIG_FILE, env)
    return Config.defaults(env)


class _Source:
    """The file being read: names it in errors and anchors its relative paths."""

    def __init__(self, name: str, base_dir: Path) -> None:
        self.name = name
        self.base_dir = base_dir
        self.ignored: list[str] = []

    def fail(self, message: str) -> NoReturn:
        raise ConfigError(f"{self.name}: {message}")

    def expected(self, key: str, what: str, value: object) -> NoReturn:
        self.fail(f"{key}: expected {what}, found {_describe(value)}")

    def unknown_key(
        self, prefix: str, key: str, known: list[str], elsewhere: list[str]
    ) -> NoReturn:
        close = difflib.get_close_matches(key, known, n=1)
        if close:
            hint = f" (did you mean {prefix}{close[0]}?)"
        else:
            moved = [full for full in elsewhere if full.rsplit(".", 1)[-1] == key]
            hint = f" (did you mean {moved[0]}?)" if moved else f" (known: {', '.join(known)})"
        self.fail(f"unknown key {prefix}{_show_key(key)}{hint}")


Check = Callable[[_Source, str, Any], Any]


def _integer(minimum: int, maximum: int | None = None) -> Check:
    if maximum is None:
        what = f"an integer >= {minimum}"
    else:
        what = f"an integer from {minimum} to {maximum}"

    def check(source: _Source, key: str, value: Any) -> int:
        # type() rather than isinstance(): TOML's true/false must not pass as 1/0.
        if type(value) is not int or value < minimum or (maximum is not None and value > maximum):
            source.expected(key, what, value)
        return value

    return check


def _seconds(*, zero_allowed: bool) -> Check:
    what = "a number of seconds >= 0" if zero_allowed else "a number of seconds > 0"

    def check(source: _Source, key: str, value: Any) -> float:
        if type(value) not in (int, float) or not math.isfinite(value):
            source.expected(key, what, value)
        if value < 0 or (value == 0 and not zero_allowed):
            source.expected(key, what, value)
        return float(value)

    return check


def _boolean(source: _Source, key: str, value: Any) -> bool:
    if type(value) is not bool:
        source.expected(key, "true or false", value)
    return value


def _choice(*options: str) -> Check:
    what = "one of " + ", ".join(f'"{option}"' for option in options)

    def check(source: _Source, key: str, value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in options:
            source.expected(key, what, value)
        return value.lower()

    return check


def _path(source: _Source, key: str, value: Any) -> Path:
    if not isinstance(value, str) or not value.strip():
        source.expected(key, "a non-empty path", value)
    if "\0" in value:
        source.fail(f"{key}: a path cannot contain a NUL character")
    if value.startswith("~"):
        source.fail(f"{key}: '~' is not expanded in paths; write the full path instead")
    return source.base_dir / value


def _secret_key_file(source: _Source, key: str, value: Any) -> Path:
    if isinstance(value, str):
        text = value.strip().lower()
        if _is_hex_key(text) or text.startswith(("nsec1", "ncryptsec1")):
            source.fail(
                f"{key}: expected the path of a file holding the secret key, found what looks "
                "like the key itself; put the key in a file only you can read (chmod 600) "
                "and name that file here"
            )
    return _path(source, key, value)


def _kinds(source: _Source, key: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        source.expected(key, "a non-empty array of event kinds", value)
    return _distinct(source, key, value, _integer(0, MAX_KIND))


def _distinct(source: _Source, key: str, value: list[Any], check: Check) -> tuple[Any, ...]:
    """Each item of an array through ``check``; a repeated (checked) value is refused."""
    items: list[Any] = []
    for index, item in enumerate(value):
        checked = check(source, f"{key}[{index}]", item)
        if checked in items:
            source.fail(f"{key}[{index}]: duplicate of {key}[{items.index(checked)}] ({checked})")
        items.append(checked)
    return tuple(items)


def _public_kinds(source: _Source, key: str, value: Any) -> tuple[int, ...]:
    if value == []:
        return ()
    kinds = _kinds(source, key, value)
    for index, kind in enumerate(kinds):
        if kind in RECORD_KINDS:
            source.fail(
                f"{key}[{index}]: {kind} is a workout record kind; strangers' records are never "
                "synced: list the people whose records you want in sync.authors"
            )
    return kinds


def _relay_urls(source: _Source, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        source.expected(key, "an array of ws:// or wss:// URLs", value)
    return _distinct(source, key, value, _relay_url)


def _media_types(source: _Source, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        source.expected(key, 'a non-empty array of media types or prefixes ("image/")', value)
    return _distinct(source, key, value, _media_type)


def _media_type(source: _Source, key: str, value: Any) -> str:
    if not isinstance(value, str) or not _MEDIA_TYPE_PREFIX.fullmatch(value.lower()):
        source.expected(key, 'a media type or prefix such as "image/" or "video/mp4"', value)
    return value.lower()


def _authors(source: _Source, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        source.expected(key, "an array of public keys (npub1… or hex)", value)
    authors: list[str] = []
    for index, item in enumerate(value):
        item_key = f"{key}[{index}]"
        what = "an npub1… or 64-character hex public key"
        if not isinstance(item, str):
            source.expected(item_key, what, item)
        try:
            author = parse_public_key(item)
        except ValueError as exc:
            if _looks_secret(item):
                source.fail(
                    f"{item_key}: expected {what}, found a secret key (not shown); "
                    "list its npub here and keep the nsec private"
                )
            detail = f" ({exc})" if str(exc).startswith("invalid npub") else ""
            source.fail(f"{item_key}: expected {what}, found {_describe(item)}{detail}")
        if author in authors:
            earlier = f"{key}[{authors.index(author)}]"
            source.fail(f"{item_key}: duplicate of {earlier} (the same public key); remove one")
        authors.append(author)
    return tuple(authors)


def _relay_url(source: _Source, key: str, value: Any) -> str:
    what = "a ws:// or wss:// URL"
    if not isinstance(value, str) or any(char.isspace() for char in value):
        source.expected(key, what, value)
    try:
        parts = urlsplit(value)
        _ = parts.port  # parsing the port is what raises on a bad one
    except ValueError:
        source.expected(key, what, value)
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
        source.expected(key, what, value)
    if parts.fragment or value.endswith("#"):
        source.expected(key, f"{what} without a #fragment", value)
    # Host names are case-insensitive and "wss://h/" is "wss://h": one relay, one spelling.
    netloc = parts.netloc if "@" in parts.netloc else parts.netloc.lower()
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), parts.query, ""))


def split_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:4869"`` or ``"[::1]:4869"`` -> (host, port); ValueError if neither."""
    host, colon, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 host is written in brackets")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError("not host:port")
    return host, int(port)


def _listen(source: _Source, key: str, value: Any) -> str:
    what = 'host:port such as "127.0.0.1:4869" or "[::1]:4869" (port 0: any free port)'
    if not isinstance(value, str):
        source.expected(key, what, value)
    try:
        host, _ = split_listen(value)
        ipaddress.ip_address(host)
    except ValueError:
        source.expected(key, what, value)
    return value


def _number(source: _Source, key: str, value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value) or value < 0:
        source.expected(key, "a number >= 0", value)
    return float(value)


def _string(source: _Source, key: str, value: Any) -> str:
    if not isinstance(value, str):
        source.expected(key, "a string", value)
    return value


# The ranges a numeric field can declare (see the module docstring).
Positive = Annotated[int, _integer(1)]
NonNegative = Annotated[int, _integer(0)]
Seconds = Annotated[float, _seconds(zero_allowed=False)]
SecondsOrZero = Annotated[float, _seconds(zero_allowed=True)]

# The check of a field declared with a plain type (no Annotated check of its own).
_PLAIN_CHECKS: dict[object, Check] = {
    bool: _boolean,
    int: _integer(0),
    float: _number,
    str: _string,
    Path: _path,
}


def _checks_of(section: type) -> dict[str, Check]:
    """Key name to check, read off a section dataclass's fields in declaration order."""
    hints = typing.get_type_hints(section, include_extras=True)
    checks: dict[str, Check] = {}
    for key in dataclasses.fields(section):
        hint = hints[key.name]
        if typing.get_origin(hint) is Annotated:
            check = hint.__metadata__[0]
        else:
            check = _PLAIN_CHECKS.get(hint)
        if check is None:
            raise TypeError(
                f"{section.__name__}.{key.name}: no config check for {hint}; declare it as "
                "Annotated[<type>, <check>] (see the powrd.config docstring)"
            )
        checks[key.name] = check
    return checks


_SECTION_TYPES = typing.get_type_hints(Config)
_SECTIONS: dict[str, dict[str, Check]] = {
    key.name: _checks_of(_SECTION_TYPES[key.name])
    for key in dataclasses.fields(Config)
    if dataclasses.is_dataclass(_SECTION_TYPES[key.name])
}
_RELAY_KEYS = _checks_of(RelayConfig)
_ALL_KEYS = [f"{section}.{key}" for section, keys in _SECTIONS.items() for key in keys]


def _environment_defaults(environ: Mapping[str, str]) -> Config:
    config = Config()
    state_dir = _first_directory(environ.get("STATE_DIRECTORY", ""))
    if state_dir is not None:
        store = dataclasses.replace(config.store, path=state_dir / DEFAULT_DATABASE_NAME)
        config = dataclasses.replace(config, store=store)
    runtime_dir = _first_directory(environ.get("RUNTIME_DIRECTORY", ""))
    if runtime_dir is not None:
        control = dataclasses.replace(config.control, socket=runtime_dir / SYSTEMD_SOCKET_NAME)
        config = dataclasses.replace(config, control=control)
    return config


def _build(source: _Source, document: dict[str, Any], defaults: Config) -> Config:
    sections: dict[str, Any] = {}
    for name, raw in document.items():
        if name == "relays":
            sections[name] = _read_relays(source, raw)
        elif name in _SECTIONS:
            sections[name] = _read_section(source, name, raw, getattr(defaults, name))
        else:
            known = [*_SECTIONS, "relays"]
            source.unknown_key("", name, known, [])
    return dataclasses.replace(defaults, **sections)


def _read_section(source: _Source, name: str, raw: Any, default: Any) -> Any:
    if not isinstance(raw, dict):
        source.expected(name, f"a table ([{name}])", raw)
    checks = _SECTIONS[name]
    values = {}
    for key, value in raw.items():
        if f"{name}.{key}" in RETIRED_KEYS:
            source.ignored.append(f"{name}.{key}")
            continue
        check = checks.get(key)
        if check is None:
            elsewhere = [full for full in _ALL_KEYS if not full.startswith(f"{name}.")]
            source.unknown_key(f"{name}.", key, list(checks), elsewhere)
        values[key] = check(source, f"{name}.{key}", value)
    return dataclasses.replace(default, **values)


def _read_relays(source: _Source, raw: Any) -> tuple[RelayConfig, ...]:
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        source.expected("relays", "an array of tables ([[relays]] sections)", raw)
    relays: list[RelayConfig] = []
    for index, item in enumerate(raw):
        prefix = f"relays[{index}]"
        values = {}
        for key, value in item.items():
            check = _RELAY_KEYS.get(key)
            if check is None:
                source.unknown_key(f"{prefix}.", key, list(_RELAY_KEYS), [])
            values[key] = check(source, f"{prefix}.{key}", value)
        if "url" not in values:
            source.fail(f"{prefix}: missing required key url (e.g. url = \"wss://relay.example\")")
        relay = RelayConfig(**values)
        for earlier, other in enumerate(relays):
            if other.url == relay.url:
                source.fail(f"{prefix}.url: duplicate of relays[{earlier}].url ({relay.url})")
        relays.append(relay)
    return tuple(relays)


def _check_consistency(source: _Source, config: Config) -> None:
    """Checks that involve more than one key, run on the final values.

    Every ``<x>_min_<unit>`` key whose section also has ``<x>_max_<unit>`` is one such
    pair without being listed (a new backoff range is checked by being named so).
    """
    pairs = [
        (f"{section}.{key}", f"{section}.{key.replace('_min_', '_max_', 1)}")
        for section, keys in _SECTIONS.items()
        for key in keys
        if "_min_" in key and key.replace("_min_", "_max_", 1) in keys
    ]
    pairs += [
        ("media.max_bytes", "media.budget_bytes"),
        ("limits.max_event_bytes", "sync.max_frame_bytes"),
        ("local_relay.default_limit", "local_relay.max_limit"),
    ]
    for lower_key, upper_key in pairs:
        lower, upper = _lookup(config, lower_key), _lookup(config, upper_key)
        if upper < lower:
            what = f"a value >= {lower_key} ({lower})"
            source.expected(upper_key, what, upper)
    relay = config.local_relay
    if relay.enabled and not relay.allow_remote:
        host = ipaddress.ip_address(relay.address[0])
        if not host.is_loopback:
            source.fail(
                f"local_relay.listen: {relay.listen} is not a loopback address; use "
                '"127.0.0.1:4869", or set local_relay.allow_remote = true to expose your library'
            )
    socket_bytes = len(os.fsencode(config.control.socket))
    if socket_bytes > MAX_SOCKET_PATH_BYTES:
        source.fail(
            f"control.socket: path is {socket_bytes} bytes long but a Unix socket path can "
            f"have at most {MAX_SOCKET_PATH_BYTES}; choose a shorter path"
        )


def _lookup(config: Config, dotted: str) -> Any:
    section, key = dotted.split(".")
    return getattr(getattr(config, section), key)


def _parse_toml(name: str, data: bytes) -> dict[str, Any]:
    try:
        # utf-8-sig: tolerate the byte-order mark some editors add.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: invalid TOML: not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
    if match := _TOML_POSITION.match(message):
        where, message = f"line {match['line']}", f"{match['what']} (column {match['column']})"
        raise ConfigError(f"{name}: {where}: invalid TOML: {message}")
    if match := _TOML_END.match(message):
        raise ConfigError(f"{name}: end of file: invalid TOML: {match['what']}")
    raise ConfigError(f"{name}: invalid TOML: {message}")


def _first_directory(value: str) -> Path | None:
    # systemd joins several StateDirectory=/RuntimeDirectory= entries with ':'.
    first = value.split(":", 1)[0]
    return Path(first) if first else None


def _looks_secret(text: str) -> bool:
    lowered = text.lower()
    return "nsec1" in lowered or "ncryptsec1" in lowered


def _is_hex_key(text: str) -> bool:
    return len(text) == 64 and _HEX_DIGITS.issuperset(text.lower())


def _describe(value: object) -> str:
    """How a found value is shown in an error: TOML-like, short, never a secret."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if _looks_secret(value):
            return "a secret key (not shown)"
        if _is_hex_key(value):
            # A hex secret key looks exactly like a hex public key: show neither.
            return "a 64-character hex key (not shown)"
        # Long enough for a whole npub or relay URL, short enough for one line.
        shown = value if len(value) <= 80 else value[:77] + "..."
        return json.dumps(shown, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a table" if value else "an empty table"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, datetime | date | time):
        return f"a date/time ({value.isoformat()})"
    return type(value).__name__


def _show_key(key: str) -> str:
    if _looks_secret(key) or _is_hex_key(key):
        return "<a secret key, not shown>"
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)

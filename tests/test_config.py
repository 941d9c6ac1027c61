"""Tests for powrd.config: defaults, file discovery, paths, and every error message."""

from __future__ import annotations

import dataclasses
import inspect
import math
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nostr_sdk import Keys

from powrd import config as config_module
from powrd.config import (
    CacheConfig,
    Config,
    ConfigError,
    ControlConfig,
    IdentityConfig,
    LimitsConfig,
    LocalRelayConfig,
    LoggingConfig,
    MediaConfig,
    PublisherConfig,
    RelayConfig,
    ResolverConfig,
    StoreConfig,
    SyncConfig,
    load_config,
)

SHIPPED = Path(__file__).resolve().parents[1] / "config" / "powrd.toml"
KEYS = Keys.parse("1" * 64)
HEX = KEYS.public_key().to_hex()
NPUB = KEYS.public_key().to_bech32()
NSEC = KEYS.secret_key().to_bech32()
OTHER_HEX = Keys.parse("2" * 64).public_key().to_hex()
SECTIONS = {
    "store": StoreConfig,
    "control": ControlConfig,
    "identity": IdentityConfig,
    "sync": SyncConfig,
    "limits": LimitsConfig,
    "resolver": ResolverConfig,
    "publisher": PublisherConfig,
    "cache": CacheConfig,
    "media": MediaConfig,
    "local_relay": LocalRelayConfig,
    "logging": LoggingConfig,
}


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in an empty directory so error messages start with plain ``powrd.toml:``."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load_text(text: str, environ: dict[str, str] | None = None) -> Config:
    path = Path("powrd.toml")
    path.write_text(text, encoding="utf-8")
    return Config.from_toml(path, environ or {})


def error_for(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load_text(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- defaults and discovery -------------------------------------------------------


def test_defaults_without_systemd_directories() -> None:
    config = Config.defaults({})
    assert config.store.path == Path("powrd.db")
    assert config.control.socket == Path("powrd.sock")
    assert config.identity.secret_key_file is None
    assert config.sync.authors == ()
    assert config.sync.kinds == (33401, 33402, 1301, 30003)
    assert config.sync.reconnect_max_seconds == 300.0
    assert config.resolver.not_found_retry_seconds == 21600
    assert config.publisher.ok_timeout_seconds == 15.0
    assert config.logging == LoggingConfig("info", "auto")
    assert config.relays == ()
    assert config.source is None


def test_defaults_use_systemd_directories() -> None:
    environ = {"STATE_DIRECTORY": "/var/lib/powrd", "RUNTIME_DIRECTORY": "/run/powrd"}
    config = Config.defaults(environ)
    assert config.store.path == Path("/var/lib/powrd/powrd.db")
    assert config.control.socket == Path("/run/powrd/control.sock")


def test_defaults_take_first_of_several_systemd_directories() -> None:
    environ = {"STATE_DIRECTORY": "/var/lib/a:/var/lib/b", "RUNTIME_DIRECTORY": ""}
    config = Config.defaults(environ)
    assert config.store.path == Path("/var/lib/a/powrd.db")
    assert config.control.socket == Path("powrd.sock")


def test_file_without_paths_keeps_systemd_defaults(in_tmp: Path) -> None:
    environ = {"STATE_DIRECTORY": "/var/lib/powrd", "RUNTIME_DIRECTORY": "/run/powrd"}
    config = load_text("[store]\nrejected_log_max = 7\n", environ)
    assert config.store == StoreConfig(Path("/var/lib/powrd/powrd.db"), 7)
    assert config.control.socket == Path("/run/powrd/control.sock")


def test_file_paths_override_systemd_defaults(in_tmp: Path) -> None:
    environ = {"STATE_DIRECTORY": "/var/lib/powrd", "RUNTIME_DIRECTORY": "/run/powrd"}
    config = load_text('[store]\npath = "/srv/p.db"\n[control]\nsocket = "/srv/p.sock"\n', environ)
    assert config.store.path == Path("/srv/p.db")
    assert config.control.socket == Path("/srv/p.sock")


def test_load_config_without_anything_gives_defaults(in_tmp: Path) -> None:
    assert load_config(None, {}) == Config.defaults({})


def test_load_config_finds_powrd_toml_in_working_directory(in_tmp: Path) -> None:
    (in_tmp / "powrd.toml").write_text("[store]\nrejected_log_max = 3\n")
    config = load_config(None, {})
    assert config.store.rejected_log_max == 3
    assert config.source == in_tmp.resolve() / "powrd.toml"


def test_load_config_uses_powrd_config_variable(in_tmp: Path) -> None:
    (in_tmp / "powrd.toml").write_text("[store]\nrejected_log_max = 3\n")
    named = in_tmp / "elsewhere.toml"
    named.write_text("[store]\nrejected_log_max = 4\n")
    assert load_config(None, {"POWRD_CONFIG": str(named)}).store.rejected_log_max == 4


def test_load_config_explicit_path_beats_powrd_config(in_tmp: Path) -> None:
    explicit = in_tmp / "explicit.toml"
    explicit.write_text("[store]\nrejected_log_max = 5\n")
    environ = {"POWRD_CONFIG": str(in_tmp / "missing.toml")}
    assert load_config(explicit, environ).store.rejected_log_max == 5


def test_load_config_missing_powrd_config_file_says_where_the_name_came_from(
    in_tmp: Path,
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, {"POWRD_CONFIG": "missing.toml"})
    assert str(caught.value) == (
        "missing.toml: cannot read: No such file or directory (file named by $POWRD_CONFIG)"
    )


def test_shipped_config_loads_and_lists_every_key_with_its_default() -> None:
    config = Config.from_toml(SHIPPED, {})
    assert config.relay_urls(read=True) == ("wss://relay.damus.io", "wss://nos.lol")
    assert config.relay_urls(write=True) == ("wss://relay.damus.io", "wss://nos.lol")
    defaults = Config.defaults({})
    # The one deliberate difference: the shipped file turns the public library on.
    assert config.sync.public_kinds == (33401, 33402)
    assert defaults.sync.public_kinds == ()
    config = dataclasses.replace(
        config, sync=dataclasses.replace(config.sync, public_kinds=defaults.sync.public_kinds)
    )
    for name in SECTIONS:
        assert getattr(config, name) == getattr(defaults, name), name
    document = tomllib.loads(SHIPPED.read_text())
    commented_out = {("store", "path"), ("control", "socket"), ("identity", "secret_key_file")}
    text = SHIPPED.read_text()
    for name, section_class in SECTIONS.items():
        for field in dataclasses.fields(section_class):
            if (name, field.name) in commented_out:
                assert f"# {field.name} = " in text
            else:
                assert field.name in document[name], f"{name}.{field.name} missing"


# --- relative paths ----------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_files_directory(
    in_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = in_tmp / "etc"
    conf_dir.mkdir()
    (conf_dir / "powrd.toml").write_text(
        '[store]\npath = "data/powrd.db"\n'
        '[control]\nsocket = "../run/ctl.sock"\n'
        '[identity]\nsecret_key_file = "secret.key"\n'
    )
    elsewhere = in_tmp / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = Config.from_toml(Path("../etc/powrd.toml"), {})
    real_dir = conf_dir.resolve()
    assert config.store.path == real_dir / "data/powrd.db"
    assert config.control.socket == real_dir / "../run/ctl.sock"
    assert config.identity.secret_key_file == real_dir / "secret.key"
    assert config.source == real_dir / "powrd.toml"


def test_absolute_paths_are_kept(in_tmp: Path) -> None:
    config = load_text('[store]\npath = "/var/lib/x/p.db"\n')
    assert config.store.path == Path("/var/lib/x/p.db")


# --- accepted values and normalization -------------------------------------------------


def test_values_are_read_and_normalized(in_tmp: Path) -> None:
    config = load_text(
        f'[sync]\nauthors = ["{NPUB}", "{OTHER_HEX.upper()}"]\nkinds = [1301, 33403]\n'
        "reconnect_min_seconds = 3\n"
        '[logging]\nlevel = "DEBUG"\nformat = "json"\n'
        '[resolver]\nenabled = false\n'
        '[[relays]]\nurl = "WSS://Relay.Example.COM/"\nwrite = false\n'
        '[[relays]]\nurl = "ws://localhost:7777/path/"\nread = false\n'
    )
    assert config.sync.authors == (HEX, OTHER_HEX)
    assert config.sync.kinds == (1301, 33403)
    assert config.sync.reconnect_min_seconds == 3.0
    assert isinstance(config.sync.reconnect_min_seconds, float)
    assert config.logging == LoggingConfig("debug", "json")
    assert config.resolver.enabled is False
    assert config.relays == (
        RelayConfig("wss://relay.example.com", read=True, write=False),
        RelayConfig("ws://localhost:7777/path", read=False, write=True),
    )
    assert config.relay_urls() == ("wss://relay.example.com", "ws://localhost:7777/path")
    assert config.relay_urls(read=True) == ("wss://relay.example.com",)
    assert config.relay_urls(write=True) == ("ws://localhost:7777/path",)
    assert config.relay_urls(read=False, write=False) == ()


def test_empty_file_is_all_defaults(in_tmp: Path) -> None:
    config = load_text("")
    assert dataclasses.replace(config, source=None) == Config.defaults({})


def test_configs_compare_by_value(in_tmp: Path) -> None:
    first = load_text('[sync]\nkinds = [1301]\n[[relays]]\nurl = "wss://a.example"\n')
    again = load_text('[sync]\nkinds = [1301]\n[[relays]]\nurl = "wss://a.example"\n')
    assert first == again
    assert hash(first) == hash(again)
    changed = load_text('[sync]\nkinds = [1]\n[logging]\nlevel = "error"\n')
    assert first != changed
    tweaked = dataclasses.replace(first, store=dataclasses.replace(first.store, path=Path("x")))
    assert first != tweaked


def test_cache_and_media_values_are_read_and_normalized(in_tmp: Path) -> None:
    config = load_text(
        "[cache]\nmax_entries = 0\nmax_bytes = 1024\n"
        '[media]\nenabled = false\nmax_bytes = 100\nbudget_bytes = 100\nthumbnail_max_px = 64\n'
        'retry_min_seconds = 1\ntimeout_seconds = 2\nallowed_types = ["Image/PNG", "video/"]\n'
    )
    assert config.cache == CacheConfig(max_entries=0, max_bytes=1024)
    assert config.media == MediaConfig(
        enabled=False, max_bytes=100, budget_bytes=100, thumbnail_max_px=64,
        retry_min_seconds=1.0, timeout_seconds=2.0, allowed_types=("image/png", "video/"),
    )
    assert isinstance(config.media.timeout_seconds, float)


def test_config_is_frozen() -> None:
    config = Config.defaults({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.sync = SyncConfig()  # type: ignore[misc]


# --- every error -------------------------------------------------------------------

ERRORS = [
    # bad TOML
    ("x = \n", "powrd.toml: line 1: invalid TOML: Invalid value (column 5)"),
    ("[store]\npath = 'a'\npath = 'b'\n", "powrd.toml: line 3: invalid TOML: "),
    ("[store", "powrd.toml: end of file: invalid TOML: "),
    # unknown keys at each level
    ("[stor]\n", "powrd.toml: unknown key stor (did you mean store?)"),
    (
        "[nonsense]\n",
        "powrd.toml: unknown key nonsense (known: store, control, identity, sync, limits, "
        "resolver, publisher, cache, media, local_relay, logging, relays)",
    ),
    ('"a b" = 1\n', 'powrd.toml: unknown key "a b" (known: '),
    ('[store]\npth = "x"\n', "powrd.toml: unknown key store.pth (did you mean store.path?)"),
    (
        '[store]\nsocket = "x"\n',
        "powrd.toml: unknown key store.socket (did you mean control.socket?)",
    ),
    (
        "[store]\nzzz = 1\n",
        "powrd.toml: unknown key store.zzz (known: path, rejected_log_max)",
    ),
    (f"[identity]\n{NSEC} = 1\n", "powrd.toml: unknown key identity.<a secret key, not shown>"),
    # A hex secret key cannot be told from a hex public key: neither is repeated.
    (
        f'[media]\nallowed_types = ["{"ab" * 32}"]\n',
        "powrd.toml: media.allowed_types[0]: expected a media type or prefix such as "
        '"image/" or "video/mp4", found a 64-character hex key (not shown)',
    ),
    (
        '[[relays]]\nurl = "wss://a"\nwrit = true\n',
        "powrd.toml: unknown key relays[0].writ (did you mean relays[0].write?)",
    ),
    # sections of the wrong type
    ("store = 5\n", "powrd.toml: store: expected a table ([store]), found 5"),
    ('sync = "x"\n', 'powrd.toml: sync: expected a table ([sync]), found "x"'),
    ("logging = []\n", "powrd.toml: logging: expected a table ([logging]), found an empty array"),
    # integers
    (
        '[sync]\npage_limit = "10"\n',
        'powrd.toml: sync.page_limit: expected an integer >= 1, found "10"',
    ),
    (
        "[sync]\npage_limit = 10.0\n",
        "powrd.toml: sync.page_limit: expected an integer >= 1, found 10.0",
    ),
    (
        "[sync]\npage_limit = true\n",
        "powrd.toml: sync.page_limit: expected an integer >= 1, found true",
    ),
    (
        "[sync]\npage_limit = 0\n",
        "powrd.toml: sync.page_limit: expected an integer >= 1, found 0",
    ),
    (
        "[store]\nrejected_log_max = -1\n",
        "powrd.toml: store.rejected_log_max: expected an integer >= 0, found -1",
    ),
    (
        "[control]\nmax_request_bytes = [1]\n",
        "powrd.toml: control.max_request_bytes: expected an integer >= 1, found an array",
    ),
    (
        "[limits]\nmax_future_seconds = {}\n",
        "powrd.toml: limits.max_future_seconds: expected an integer >= 0, found an empty table",
    ),
    (
        "[resolver]\nnot_found_retry_seconds = 1979-05-27\n",
        "powrd.toml: resolver.not_found_retry_seconds: expected an integer >= 1, "
        "found a date/time (1979-05-27)",
    ),
    # seconds (floats)
    (
        '[sync]\nreconnect_min_seconds = "1"\n',
        'powrd.toml: sync.reconnect_min_seconds: expected a number of seconds > 0, found "1"',
    ),
    (
        "[sync]\neose_timeout_seconds = true\n",
        "powrd.toml: sync.eose_timeout_seconds: expected a number of seconds > 0, found true",
    ),
    (
        "[sync]\neose_timeout_seconds = 0\n",
        "powrd.toml: sync.eose_timeout_seconds: expected a number of seconds > 0, found 0",
    ),
    (
        "[publisher]\nok_timeout_seconds = -2.5\n",
        "powrd.toml: publisher.ok_timeout_seconds: expected a number of seconds > 0, found -2.5",
    ),
    (
        "[sync]\nmin_reconnect_interval_seconds = -1.0\n",
        "powrd.toml: sync.min_reconnect_interval_seconds: expected a number of seconds >= 0, "
        "found -1.0",
    ),
    (
        "[resolver]\nfetch_timeout_seconds = nan\n",
        "powrd.toml: resolver.fetch_timeout_seconds: expected a number of seconds > 0, found nan",
    ),
    (
        "[resolver]\nretry_max_seconds = inf\n",
        "powrd.toml: resolver.retry_max_seconds: expected a number of seconds > 0, found inf",
    ),
    # booleans
    ("[resolver]\nenabled = 1\n", "powrd.toml: resolver.enabled: expected true or false, found 1"),
    (
        '[publisher]\nenabled = "yes"\n',
        'powrd.toml: publisher.enabled: expected true or false, found "yes"',
    ),
    # choices
    (
        '[logging]\nlevel = "verbose"\n',
        'powrd.toml: logging.level: expected one of "debug", "info", "warning", "error", '
        'found "verbose"',
    ),
    (
        "[logging]\nlevel = 3\n",
        'powrd.toml: logging.level: expected one of "debug", "info", "warning", "error", found 3',
    ),
    (
        '[logging]\nformat = "xml"\n',
        'powrd.toml: logging.format: expected one of "auto", "json", "console", found "xml"',
    ),
    (
        '[sync]\nnegentropy = "always"\n',
        'powrd.toml: sync.negentropy: expected one of "auto", "off", "only", found "always"',
    ),
    (
        "[sync]\nnegentropy_timeout_seconds = 0\n",
        "powrd.toml: sync.negentropy_timeout_seconds: expected a number of seconds > 0, found 0",
    ),
    # paths
    ("[store]\npath = 5\n", "powrd.toml: store.path: expected a non-empty path, found 5"),
    ('[store]\npath = ""\n', 'powrd.toml: store.path: expected a non-empty path, found ""'),
    (
        "[control]\nsocket = []\n",
        "powrd.toml: control.socket: expected a non-empty path, found an empty array",
    ),
    (
        '[store]\npath = "~/powrd.db"\n',
        "powrd.toml: store.path: '~' is not expanded in paths; write the full path instead",
    ),
    (
        '[store]\npath = "a\\u0000b"\n',
        "powrd.toml: store.path: a path cannot contain a NUL character",
    ),
    (
        "[identity]\nsecret_key_file = false\n",
        "powrd.toml: identity.secret_key_file: expected a non-empty path, found false",
    ),
    (
        f'[identity]\nsecret_key_file = "{NSEC}"\n',
        "powrd.toml: identity.secret_key_file: expected the path of a file holding the secret "
        "key, found what looks like the key itself; put the key in a file only you can read "
        "(chmod 600) and name that file here",
    ),
    (
        f'[identity]\nsecret_key_file = "{"ab" * 32}"\n',
        "powrd.toml: identity.secret_key_file: expected the path of a file holding the secret "
        "key, found what looks like the key itself;",
    ),
    # kinds
    (
        '[sync]\nkinds = [1, "abc"]\n',
        'powrd.toml: sync.kinds[1]: expected an integer from 0 to 65535, found "abc"',
    ),
    (
        "[sync]\nkinds = [65536]\n",
        "powrd.toml: sync.kinds[0]: expected an integer from 0 to 65535, found 65536",
    ),
    (
        "[sync]\nkinds = [-1]\n",
        "powrd.toml: sync.kinds[0]: expected an integer from 0 to 65535, found -1",
    ),
    (
        "[sync]\nkinds = [true]\n",
        "powrd.toml: sync.kinds[0]: expected an integer from 0 to 65535, found true",
    ),
    (
        "[sync]\nkinds = 1301\n",
        "powrd.toml: sync.kinds: expected a non-empty array of event kinds, found 1301",
    ),
    (
        "[sync]\nkinds = []\n",
        "powrd.toml: sync.kinds: expected a non-empty array of event kinds, found an empty array",
    ),
    (
        "[sync]\nkinds = [1301, 1, 1301]\n",
        "powrd.toml: sync.kinds[2]: duplicate of sync.kinds[0] (1301)",
    ),
    # authors
    (
        f'[sync]\nauthors = "{NPUB}"\n',
        "powrd.toml: sync.authors: expected an array of public keys (npub1… or hex), "
        f'found "{NPUB}"',
    ),
    (
        "[sync]\nauthors = [1]\n",
        "powrd.toml: sync.authors[0]: expected an npub1… or 64-character hex public key, found 1",
    ),
    (
        '[sync]\nauthors = ["npub1abc"]\n',
        "powrd.toml: sync.authors[0]: expected an npub1… or 64-character hex public key, "
        'found "npub1abc" (invalid npub: ',
    ),
    (
        f'[sync]\nauthors = ["{NPUB[:-1]}{"q" if NPUB[-1] != "q" else "p"}"]\n',
        "powrd.toml: sync.authors[0]: expected an npub1… or 64-character hex public key, "
        'found "npub1',
    ),
    (
        f'[sync]\nauthors = ["{"g" * 64}"]\n',
        "powrd.toml: sync.authors[0]: expected an npub1… or 64-character hex public key, "
        f'found "{"g" * 64}"',
    ),
    (
        f'[sync]\nkinds = ["{"x" * 100}"]\n',
        "powrd.toml: sync.kinds[0]: expected an integer from 0 to 65535, "
        f'found "{"x" * 77}..."',
    ),
    (
        '[sync]\nauthors = ["alice"]\n',
        "powrd.toml: sync.authors[0]: expected an npub1… or 64-character hex public key, "
        'found "alice"',
    ),
    (
        f'[sync]\nauthors = ["{NSEC}"]\n',
        "powrd.toml: sync.authors[0]: expected an npub1… or 64-character hex public key, found "
        "a secret key (not shown); list its npub here and keep the nsec private",
    ),
    (
        f'[sync]\nauthors = ["{HEX}", "{OTHER_HEX}", "{NPUB}"]\n',
        "powrd.toml: sync.authors[2]: duplicate of sync.authors[0] (the same public key); "
        "remove one",
    ),
    # cache
    (
        "[cache]\nmax_entries = -1\n",
        "powrd.toml: cache.max_entries: expected an integer >= 0, found -1",
    ),
    (
        '[cache]\nmax_entries = "2000"\n',
        'powrd.toml: cache.max_entries: expected an integer >= 0, found "2000"',
    ),
    (
        "[cache]\nmax_bytes = -5\n",
        "powrd.toml: cache.max_bytes: expected an integer >= 0, found -5",
    ),
    (
        "[cache]\nmax_bytes = 1.5\n",
        "powrd.toml: cache.max_bytes: expected an integer >= 0, found 1.5",
    ),
    # media
    ('[media]\nenabled = "no"\n', 'powrd.toml: media.enabled: expected true or false, found "no"'),
    (
        "[media]\nmax_bytes = 0\n",
        "powrd.toml: media.max_bytes: expected an integer >= 1, found 0",
    ),
    (
        "[media]\nbudget_bytes = false\n",
        "powrd.toml: media.budget_bytes: expected an integer >= 1, found false",
    ),
    (
        "[media]\nthumbnail_max_px = 0\n",
        "powrd.toml: media.thumbnail_max_px: expected an integer from 1 to 4096, found 0",
    ),
    (
        "[media]\nthumbnail_max_px = 5000\n",
        "powrd.toml: media.thumbnail_max_px: expected an integer from 1 to 4096, found 5000",
    ),
    (
        "[media]\nretry_min_seconds = 0\n",
        "powrd.toml: media.retry_min_seconds: expected a number of seconds > 0, found 0",
    ),
    (
        '[media]\nretry_max_seconds = "1h"\n',
        'powrd.toml: media.retry_max_seconds: expected a number of seconds > 0, found "1h"',
    ),
    (
        "[media]\ntimeout_seconds = -1\n",
        "powrd.toml: media.timeout_seconds: expected a number of seconds > 0, found -1",
    ),
    (
        '[media]\nallowed_types = "image/"\n',
        "powrd.toml: media.allowed_types: expected a non-empty array of media types or prefixes "
        '("image/"), found "image/"',
    ),
    (
        "[media]\nallowed_types = []\n",
        "powrd.toml: media.allowed_types: expected a non-empty array of media types or prefixes "
        '("image/"), found an empty array',
    ),
    (
        '[media]\nallowed_types = ["image/", 3]\n',
        "powrd.toml: media.allowed_types[1]: expected a media type or prefix such as "
        '"image/" or "video/mp4", found 3',
    ),
    (
        '[media]\nallowed_types = ["image"]\n',
        "powrd.toml: media.allowed_types[0]: expected a media type or prefix such as "
        '"image/" or "video/mp4", found "image"',
    ),
    (
        '[media]\nallowed_types = ["image/ png"]\n',
        "powrd.toml: media.allowed_types[0]: expected a media type or prefix such as "
        '"image/" or "video/mp4", found "image/ png"',
    ),
    (
        '[media]\nallowed_types = ["image/", "video/", "IMAGE/"]\n',
        "powrd.toml: media.allowed_types[2]: duplicate of media.allowed_types[0] (image/)",
    ),
    # relays
    (
        'relays = "wss://x"\n',
        'powrd.toml: relays: expected an array of tables ([[relays]] sections), found "wss://x"',
    ),
    (
        '[relays]\nurl = "wss://x"\n',
        "powrd.toml: relays: expected an array of tables ([[relays]] sections), found a table",
    ),
    (
        "relays = [1]\n",
        "powrd.toml: relays: expected an array of tables ([[relays]] sections), found an array",
    ),
    (
        "[[relays]]\nread = true\n",
        'powrd.toml: relays[0]: missing required key url (e.g. url = "wss://relay.example")',
    ),
    (
        '[[relays]]\nurl = "http://x"\n',
        'powrd.toml: relays[0].url: expected a ws:// or wss:// URL, found "http://x"',
    ),
    (
        "[[relays]]\nurl = 5\n",
        "powrd.toml: relays[0].url: expected a ws:// or wss:// URL, found 5",
    ),
    (
        '[[relays]]\nurl = "wss://"\n',
        'powrd.toml: relays[0].url: expected a ws:// or wss:// URL, found "wss://"',
    ),
    (
        '[[relays]]\nurl = "wss:relay.example"\n',
        'powrd.toml: relays[0].url: expected a ws:// or wss:// URL, found "wss:relay.example"',
    ),
    (
        '[[relays]]\nurl = "relay.example"\n',
        'powrd.toml: relays[0].url: expected a ws:// or wss:// URL, found "relay.example"',
    ),
    (
        '[[relays]]\nurl = "wss://relay.example:99999"\n',
        "powrd.toml: relays[0].url: expected a ws:// or wss:// URL, "
        'found "wss://relay.example:99999"',
    ),
    (
        '[[relays]]\nurl = "wss://relay .example"\n',
        'powrd.toml: relays[0].url: expected a ws:// or wss:// URL, found "wss://relay .example"',
    ),
    (
        '[[relays]]\nurl = "wss://relay.example/#top"\n',
        "powrd.toml: relays[0].url: expected a ws:// or wss:// URL without a #fragment, "
        'found "wss://relay.example/#top"',
    ),
    (
        '[[relays]]\nurl = "wss://a"\nread = "yes"\n',
        'powrd.toml: relays[0].read: expected true or false, found "yes"',
    ),
    (
        '[[relays]]\nurl = "wss://a"\nwrite = 0\n',
        "powrd.toml: relays[0].write: expected true or false, found 0",
    ),
    (
        '[[relays]]\nurl = "wss://Relay.Example/"\n[[relays]]\nurl = "wss://b"\n'
        '[[relays]]\nurl = "wss://relay.example"\n',
        "powrd.toml: relays[2].url: duplicate of relays[0].url (wss://relay.example)",
    ),
    # values that only make sense together
    (
        "[sync]\nreconnect_min_seconds = 10.0\nreconnect_max_seconds = 5.0\n",
        "powrd.toml: sync.reconnect_max_seconds: expected a value >= "
        "sync.reconnect_min_seconds (10.0), found 5.0",
    ),
    (
        "[resolver]\nretry_min_seconds = 7200\n",
        "powrd.toml: resolver.retry_max_seconds: expected a value >= "
        "resolver.retry_min_seconds (7200.0), found 3600.0",
    ),
    (
        "[publisher]\nretry_max_seconds = 1\n",
        "powrd.toml: publisher.retry_max_seconds: expected a value >= "
        "publisher.retry_min_seconds (2.0), found 1.0",
    ),
    (
        "[sync]\nmax_frame_bytes = 1000\n",
        "powrd.toml: sync.max_frame_bytes: expected a value >= limits.max_event_bytes (131072), "
        "found 1000",
    ),
    (
        "[media]\nretry_min_seconds = 10.0\nretry_max_seconds = 5.0\n",
        "powrd.toml: media.retry_max_seconds: expected a value >= "
        "media.retry_min_seconds (10.0), found 5.0",
    ),
    (
        "[media]\nmax_bytes = 1000\nbudget_bytes = 999\n",
        "powrd.toml: media.budget_bytes: expected a value >= media.max_bytes (1000), found 999",
    ),
    (
        "[media]\nmax_bytes = 300000000\n",
        "powrd.toml: media.budget_bytes: expected a value >= media.max_bytes (300000000), "
        "found 268435456",
    ),
    (
        f'[control]\nsocket = "/{"s" * 200}"\n',
        "powrd.toml: control.socket: path is 201 bytes long but a Unix socket path can have at "
        "most 107; choose a shorter path",
    ),
    (
        '[local_relay]\nlisten = "0.0.0.0:4869"\n',
        "powrd.toml: local_relay.listen: 0.0.0.0:4869 is not a loopback address; use "
        '"127.0.0.1:4869", or set local_relay.allow_remote = true',
    ),
    (
        '[local_relay]\nlisten = "localhost"\n',
        'powrd.toml: local_relay.listen: expected host:port such as "127.0.0.1:4869"',
    ),
    (
        '[local_relay]\nlisten = "::1:4869"\n',
        'powrd.toml: local_relay.listen: expected host:port',
    ),
    (
        "[local_relay]\nmax_limit = 100\n",
        "powrd.toml: local_relay.max_limit: expected a value >= local_relay.default_limit (500)",
    ),
]


def test_local_relay_listen_forms(in_tmp: Path) -> None:
    assert load_text('[local_relay]\nlisten = "[::1]:4870"\n').local_relay.address == ("::1", 4870)
    remote = load_text('[local_relay]\nlisten = "0.0.0.0:1"\nallow_remote = true\n')
    assert remote.local_relay.address == ("0.0.0.0", 1)


@pytest.mark.parametrize(("text", "expected"), ERRORS)
def test_error_message(in_tmp: Path, text: str, expected: str) -> None:
    assert error_for(text).startswith(expected)


@pytest.mark.parametrize("section", list(SECTIONS))
def test_unknown_key_in_every_section(in_tmp: Path, section: str) -> None:
    known = ", ".join(field.name for field in dataclasses.fields(SECTIONS[section]))
    message = error_for(f"[{section}]\nbogus_setting_xyz = 1\n")
    assert message == f"powrd.toml: unknown key {section}.bogus_setting_xyz (known: {known})"


@pytest.mark.parametrize(
    ("section", "key"),
    [(name, field.name) for name, cls in SECTIONS.items() for field in dataclasses.fields(cls)],
)
def test_every_key_rejects_a_wrong_type(in_tmp: Path, section: str, key: str) -> None:
    # A table fits no key, so this reaches every key's type check.
    message = error_for(f"[{section}]\n{key} = {{ x = 1 }}\n")
    assert message.startswith(f"powrd.toml: {section}.{key}: expected ")
    assert message.endswith(", found a table")


def test_secret_values_never_appear_in_errors(in_tmp: Path) -> None:
    secret_hex = KEYS.secret_key().to_hex()
    texts = [
        f'[sync]\nauthors = ["{NSEC}"]\n',
        f'[store]\npath = 5\n[sync]\nauthors = ["{NSEC.upper()}"]\n',
        f'[identity]\nsecret_key_file = "{NSEC}"\n',
        f'[identity]\nsecret_key_file = "{secret_hex}"\n',
        f'[logging]\nlevel = "{NSEC}"\n',
        f'[[relays]]\nurl = "{NSEC}"\n',
        f"[identity]\n{NSEC} = 1\n",
    ]
    for text in texts:
        message = error_for(text)
        assert NSEC[5:20] not in message.lower(), text
        assert secret_hex not in message


def test_bad_utf8(in_tmp: Path) -> None:
    Path("powrd.toml").write_bytes(b"[store]\npath = \"\xff\"\n")
    with pytest.raises(ConfigError) as caught:
        Config.from_toml("powrd.toml", {})
    assert str(caught.value) == "powrd.toml: invalid TOML: not UTF-8 text (byte 16)"


def test_byte_order_mark_is_tolerated(in_tmp: Path) -> None:
    Path("powrd.toml").write_bytes(b"\xef\xbb\xbf[store]\nrejected_log_max = 9\n")
    assert Config.from_toml("powrd.toml", {}).store.rejected_log_max == 9


def test_missing_file(in_tmp: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_toml("nope.toml", {})
    assert str(caught.value) == "nope.toml: cannot read: No such file or directory"


def test_directory_instead_of_file(in_tmp: Path) -> None:
    (in_tmp / "conf.d").mkdir()
    with pytest.raises(ConfigError) as caught:
        Config.from_toml("conf.d", {})
    assert str(caught.value) == "conf.d: cannot read: Is a directory"


def test_error_names_the_file_as_given(tmp_path: Path) -> None:
    path = tmp_path / "custom.toml"
    path.write_text("[sync]\nkinds = [1, 1]\n")
    with pytest.raises(ConfigError) as caught:
        Config.from_toml(path, {})
    assert str(caught.value) == f"{path}: sync.kinds[1]: duplicate of sync.kinds[0] (1)"


def test_too_long_default_socket_from_runtime_directory_is_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        Config.defaults({"RUNTIME_DIRECTORY": "/" + "r" * 120})
    assert str(caught.value).startswith("built-in defaults: control.socket: path is 134 bytes")


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# --- properties --------------------------------------------------------------------

_SCALARS = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.text(max_size=20),
)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        escaped = "".join(
            f"\\u{ord(char):04x}" if char in '"\\' or ord(char) < 32 or ord(char) == 127 else char
            for char in value
        )
        return f'"{escaped}"'
    assert isinstance(value, list)
    return "[" + ", ".join(_toml_value(item) for item in value) + "]"


# The fixture only provides a working directory; each example overwrites the same file.
FIXTURE_OK = [HealthCheck.function_scoped_fixture]
_KEYS = st.sampled_from(
    [f"{name}.{field.name}" for name, cls in SECTIONS.items() for field in dataclasses.fields(cls)]
    + ["store.bogus", "sync.author"]
)


@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    assignments=st.dictionaries(
        _KEYS, st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3)), max_size=4
    )
)
def test_any_document_loads_or_fails_with_config_error(
    in_tmp: Path, assignments: dict[str, object]
) -> None:
    lines = []
    for dotted, value in sorted(assignments.items()):
        section, key = dotted.split(".")
        lines.append(f"[{section}]\n{key} = {_toml_value(value)}\n")
    try:
        config = load_text("".join(lines))
    except ConfigError as error:
        assert "\n" not in str(error)
        assert str(error).startswith("powrd.toml: ")
    else:
        assert isinstance(config, Config)


@settings(max_examples=200, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    url=st.one_of(
        st.text(max_size=30),
        st.builds(
            "{}://{}{}".format,
            st.sampled_from(["ws", "wss", "WSS", "http"]),
            st.text(max_size=15),
            st.sampled_from(["", "/", "//", "/p/"]),
        ),
    )
)
def test_relay_urls_are_validated_and_normalization_is_stable(in_tmp: Path, url: str) -> None:
    try:
        config = load_text(f"[[relays]]\nurl = {_toml_value(url)}\n")
    except ConfigError as error:
        assert str(error).startswith("powrd.toml: relays[0].url: expected a ws:// or wss:// URL")
        return
    normalized = config.relays[0].url
    assert normalized.startswith(("ws://", "wss://"))
    assert not urlsplit(normalized).path.endswith("/")
    assert urlsplit(normalized).hostname
    assert load_text(f"[[relays]]\nurl = {_toml_value(normalized)}\n").relays[0].url == normalized


# --- the dataclasses are the one list of keys -------------------------------------------


def test_every_key_is_read_by_the_code() -> None:
    """A key that nothing reads is a promise the daemon does not keep: delete it."""
    package = Path(__file__).resolve().parents[1] / "powrd"
    code = "\n".join(
        path.read_text() for path in package.rglob("*.py") if path.name != "config.py"
    ) + inspect.getsource(config_module._check_consistency)  # start-up checks read keys too
    unread = [
        f"{name}.{field.name}"
        for name, section_class in SECTIONS.items()
        for field in dataclasses.fields(section_class)
        if f".{field.name}" not in code and f"{field.name}=" not in code
    ]
    assert unread == []


def test_sections_and_checks_come_from_the_dataclasses() -> None:
    not_sections = {"relays", "source", "ignored_keys"}
    config_fields = {f.name for f in dataclasses.fields(Config)} - not_sections
    assert set(SECTIONS) == config_fields  # this test's table is complete, too
    assert list(config_module._SECTIONS) == list(SECTIONS)
    for name, section_class in SECTIONS.items():
        assert list(config_module._SECTIONS[name]) == [
            f.name for f in dataclasses.fields(section_class)
        ]


def test_a_field_of_a_type_without_a_check_is_refused_at_once() -> None:
    @dataclasses.dataclass(frozen=True)
    class Odd:
        weights: dict[str, int] = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match=r"Odd.weights: no config check for .*Annotated"):
        config_module._checks_of(Odd)


def test_a_plain_field_gets_the_check_of_its_type(in_tmp: Path) -> None:
    @dataclasses.dataclass(frozen=True)
    class Plain:
        name: str = "x"
        count: int = 1
        ratio: float = 0.5
        on: bool = False

    checks = config_module._checks_of(Plain)
    source = config_module._Source("powrd.toml", in_tmp)
    assert checks["name"](source, "p.name", "y") == "y"
    assert checks["ratio"](source, "p.ratio", 2) == 2.0
    for key, bad, message in (
        ("name", 5, "p.name: expected a string, found 5"),
        ("count", -1, "p.count: expected an integer >= 0, found -1"),
        ("ratio", "1", 'p.ratio: expected a number >= 0, found "1"'),
        ("on", 1, "p.on: expected true or false, found 1"),
    ):
        with pytest.raises(ConfigError) as caught:
            checks[key](source, f"p.{key}", bad)
        assert str(caught.value) == f"powrd.toml: {message}"


def test_a_retired_key_is_accepted_and_reported(in_tmp: Path) -> None:
    config = load_text("[store]\nbatch_max_events = 2000\nrejected_log_max = 5\n")
    assert config.ignored_keys == ("store.batch_max_events",)
    assert config.store == StoreConfig(rejected_log_max=5)
    assert load_text("[store]\nrejected_log_max = 5\n").ignored_keys == ()


def test_public_library_and_outbox_keys(in_tmp: Path) -> None:
    config = load_text(
        '[sync]\npublic_kinds = []\noutbox = false\nindex_relays = ["wss://Index.Example/"]\n'
        "outbox_relays_per_author = 2\nmax_discovered_relays = 0\n"
    )
    sync = config.sync
    assert (sync.public_kinds, sync.outbox, sync.index_relays) == ((), False, ("wss://index.example",))
    assert (sync.outbox_relays_per_author, sync.max_discovered_relays) == (2, 0)
    assert error_for("[sync]\npublic_kinds = [33401, 1301]\n").startswith(
        "powrd.toml: sync.public_kinds[1]: 1301 is a workout record kind; strangers' records are never synced"
    )
    assert error_for('[sync]\nindex_relays = ["wss://a.example", "wss://A.example/"]\n') == (
        "powrd.toml: sync.index_relays[1]: duplicate of sync.index_relays[0] (wss://a.example)"
    )
    assert "sync.index_relays[0]: expected a ws:// or wss:// URL" in error_for('[sync]\nindex_relays = ["https://x"]\n')
    assert "sync.outbox_relays_per_author: expected an integer >= 1" in error_for(
        "[sync]\noutbox_relays_per_author = 0\n"
    )

"""Fuzzing whole config files: ``load_config`` either succeeds or raises ConfigError.

The documents are built from the real section and key names (read off the ``Config``
dataclasses) with values that are sometimes plausible for the key, sometimes any TOML
value at all: nested arrays and inline tables, dates, infinities, huge integers,
secret-looking strings, repeated sections and keys, arrays of relay tables. A second
property feeds raw bytes. Whatever happens, the only exception allowed is
:class:`ConfigError`, its message is one line starting with the file name, and a
secret key in the document never appears in it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from powrd.config import Config, ConfigError, load_config
from tests.support.events import keys_for

KEYS = keys_for("config-fuzz", 0)
SECRET_NSEC = KEYS.secret_key().to_bech32()
SECRET_HEX = KEYS.secret_key().to_hex()
PUBLIC_HEX = KEYS.public_key().to_hex()
PUBLIC_NPUB = KEYS.public_key().to_bech32()
SECTIONS = {
    field.name: getattr(Config(), field.name)
    for field in dataclasses.fields(Config)
    if dataclasses.is_dataclass(getattr(Config(), field.name))
}
STRUCTURED_EXAMPLES = 1000
RAW_EXAMPLES = 400
CASES = {"structured": 0, "raw": 0}

# -- TOML text ---------------------------------------------------------------------


def toml_key(key: str) -> str:
    bare = key and all(c.isascii() and (c.isalnum() or c in "-_") for c in key)
    return key if bare else json.dumps(key)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


# -- values ---------------------------------------------------------------------------

SCALARS = st.one_of(
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from([SECRET_NSEC, SECRET_HEX, PUBLIC_HEX, PUBLIC_NPUB, "", " ", "~/x", "a\0b"]),
    st.dates(),
    st.datetimes(),
    st.times(),
)
ANY_VALUE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=8), inner, max_size=3),
    ),
    max_leaves=8,
)
PATHS = st.sampled_from(["powrd.db", "sub/dir/x.sock", "/tmp/x", "", "~/p", "..", "a" * 120, "p\0q"])
PUBKEYS = st.sampled_from([PUBLIC_HEX, PUBLIC_NPUB, PUBLIC_HEX.upper(), SECRET_NSEC, SECRET_HEX,
                           "npub1xyz", "nostr:" + PUBLIC_NPUB, PUBLIC_HEX[:-1]])
RELAY_URLS = st.one_of(
    st.sampled_from(["wss://relay.example", "ws://127.0.0.1:7777/", "WSS://Relay.Example/path/",
                     "http://relay.example", "wss://", "wss://h:99999", "wss://h#frag", "wss://u@H"]),
    st.text(max_size=30),
)


def plausible(default: object) -> st.SearchStrategy[object]:
    """Values of the kind the key expects, with edge cases."""
    if isinstance(default, bool):
        return st.booleans()
    if isinstance(default, int):
        return st.one_of(st.integers(-5, 10**7), st.sampled_from([0, 1, 65535, 65536, 2**63, -(2**63)]))
    if isinstance(default, float):
        return st.one_of(st.floats(-10, 10**6), st.integers(-5, 10**6), st.sampled_from([0.0, math.inf]))
    if isinstance(default, Path) or default is None:
        return PATHS
    if isinstance(default, str):
        return st.one_of(st.sampled_from(["debug", "info", "WARNING", "error", "auto", "json",
                                          "console", "verbose"]), st.text(max_size=10))
    assert isinstance(default, tuple)
    return st.lists(
        st.one_of(st.integers(-1, 70000), PUBKEYS, st.sampled_from(["image/", "video/mp4", "IMAGE/", "x"])),
        max_size=5,
    )


def key_values(section: str) -> st.SearchStrategy[list[tuple[str, object]]]:
    defaults = SECTIONS[section]
    pairs = [
        st.tuples(st.just(field.name),
                  st.one_of(plausible(getattr(defaults, field.name)), plausible(getattr(defaults, field.name)),
                            ANY_VALUE))
        for field in dataclasses.fields(defaults)
    ]
    typo = st.tuples(st.sampled_from(["pathh", "socket", "author", "kind", "url", "enabled "]), ANY_VALUE)
    return st.lists(st.one_of(*pairs, typo), max_size=6)


RELAY_TABLE = st.lists(
    st.one_of(
        st.tuples(st.just("url"), RELAY_URLS),
        st.tuples(st.sampled_from(["read", "write"]), st.one_of(st.booleans(), ANY_VALUE)),
        st.tuples(st.just("mode"), ANY_VALUE),
    ),
    max_size=4,
)


@st.composite
def documents(draw: st.DrawFn) -> str:
    """A TOML document over the real sections, in random order and with repeats."""
    parts: list[str] = []
    if draw(st.integers(0, 9)) == 0:  # a section given as a plain value
        parts.append(f"{draw(st.sampled_from([*SECTIONS, 'relays', 'other']))} = {toml_value(draw(ANY_VALUE))}\n")
    for _ in range(draw(st.integers(0, 6))):
        if draw(st.integers(0, 4)) == 0:
            lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in draw(RELAY_TABLE)]
            parts.append("[[relays]]\n" + "\n".join(lines) + "\n")
            continue
        section = draw(st.sampled_from([*SECTIONS, "unknown", "relays"]))
        pairs = draw(key_values(section)) if section in SECTIONS else draw(
            st.lists(st.tuples(st.text(max_size=6), ANY_VALUE), max_size=3))
        lines = [f"{toml_key(k)} = {toml_value(v)}" for k, v in pairs]
        parts.append(f"[{section}]\n" + "\n".join(lines) + "\n")
    return "".join(parts)


# -- properties -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("config-fuzz") / "powrd.toml"
    yield path
    print(f"config fuzz: {CASES['structured']} structured and {CASES['raw']} raw documents")


def check_loads_or_config_error(path: Path, document: bytes) -> None:
    path.write_bytes(document)
    try:
        config = load_config(path, {})
    except ConfigError as error:
        message = str(error)
        assert "\n" not in message and message.startswith(f"{path}: "), message
        assert SECRET_NSEC not in message and SECRET_HEX not in message.lower(), message
    else:
        assert isinstance(config, Config)
        assert config.source == path.resolve()
        assert config == dataclasses.replace(config)


SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]


@settings(max_examples=STRUCTURED_EXAMPLES, deadline=None, suppress_health_check=SUPPRESS)
@given(document=documents())
def test_structured_documents(config_file: Path, document: str) -> None:
    CASES["structured"] += 1
    check_loads_or_config_error(config_file, document.encode("utf-8", "surrogatepass"))


@settings(max_examples=RAW_EXAMPLES, deadline=None, suppress_health_check=SUPPRESS)
@given(document=st.one_of(
    st.binary(max_size=300),
    st.builds(lambda doc, cut: doc.encode("utf-8", "surrogatepass")[:cut], documents(), st.integers(0, 400)),
))
def test_raw_and_truncated_documents(config_file: Path, document: bytes) -> None:
    CASES["raw"] += 1
    check_loads_or_config_error(config_file, document)


def test_enough_cases_ran() -> None:
    # Run after the two properties (file order): the counts are reported at teardown.
    if CASES["structured"] and CASES["raw"]:
        assert CASES["structured"] + CASES["raw"] >= 0.9 * (STRUCTURED_EXAMPLES + RAW_EXAMPLES)

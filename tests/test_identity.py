"""Tests for powrd.identity: key parsing, key files and their permissions, keygen."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nostr_sdk import Keys

from powrd.config import IdentityConfig
from powrd.identity import (
    IdentityError,
    load_secret_key,
    parse_public_key,
    parse_secret_key,
    read_secret_key_file,
    write_new_key,
)

KEYS = Keys.parse("3" * 64)
SECRET_HEX = KEYS.secret_key().to_hex()
NSEC = KEYS.secret_key().to_bech32()
PUBLIC_HEX = KEYS.public_key().to_hex()
NPUB = KEYS.public_key().to_bech32()
OTHER = Keys.parse("4" * 64)


def key_file(directory: Path, content: str, mode: int = 0o600, name: str = "secret.key") -> Path:
    path = directory / name
    path.write_text(content)
    path.chmod(mode)
    return path


def assert_no_secret(message: str) -> None:
    lowered = message.lower()
    assert SECRET_HEX not in lowered
    assert NSEC[5:] not in lowered
    assert "nsec1" not in lowered.replace("nsec1…", "")


# --- public keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [PUBLIC_HEX, PUBLIC_HEX.upper(), NPUB, NPUB.upper(), f"  {NPUB}\n", f"nostr:{NPUB}"],
)
def test_parse_public_key_accepts_npub_and_hex(text: str) -> None:
    assert parse_public_key(text) == PUBLIC_HEX


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected an npub1… or 64-character hex public key"),
        ("alice", "expected an npub1… or 64-character hex public key"),
        (PUBLIC_HEX[:-1], "expected an npub1… or 64-character hex public key"),
        ("g" * 64, "expected an npub1… or 64-character hex public key"),
        ("npub1abc", "invalid npub: "),
        (NPUB[:-1] + ("q" if NPUB[-1] != "q" else "p"), "invalid npub: "),
        (NSEC, "a secret key (nsec1…), not a public key; use its npub instead"),
    ],
)
def test_parse_public_key_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_public_key(text)
    assert str(caught.value).startswith(message)
    assert_no_secret(str(caught.value))


@given(raw=st.binary(min_size=32, max_size=32), upper=st.booleans())
def test_parse_public_key_hex_round_trip(raw: bytes, upper: bool) -> None:
    text = raw.hex().upper() if upper else raw.hex()
    assert parse_public_key(text) == raw.hex()


@given(text=st.text(max_size=80))
def test_parse_public_key_only_raises_value_error(text: str) -> None:
    try:
        result = parse_public_key(text)
    except ValueError:
        return
    assert len(result) == 64
    assert result == result.lower()
    int(result, 16)


# --- secret keys -------------------------------------------------------------------


@pytest.mark.parametrize("text", [SECRET_HEX, SECRET_HEX.upper(), NSEC, f"\n  {NSEC}  \n"])
def test_parse_secret_key_accepts_nsec_and_hex(text: str) -> None:
    assert parse_secret_key(text).public_key().to_hex() == PUBLIC_HEX


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("   \n", "is empty"),
        ("zz", "is not a valid nsec1… or 64-character hex secret key"),
        ("0" * 64, "is not a valid nsec1… or 64-character hex secret key"),
        (SECRET_HEX[:-2], "is not a valid nsec1… or 64-character hex secret key"),
        (NSEC[:-1] + ("q" if NSEC[-1] != "q" else "p"), "is not a valid nsec1…"),
        (NPUB, "holds a public key (npub1…), not a secret key (nsec1…)"),
        ("ncryptsec1qqqq", "holds a password-encrypted key (ncryptsec1…)"),
    ],
)
def test_parse_secret_key_rejects_without_echo(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_secret_key(text)
    assert str(caught.value).startswith(message)
    assert_no_secret(str(caught.value))
    if len(text.strip()) >= 8:
        assert text.strip()[:-2] not in str(caught.value)


@given(text=st.text(max_size=80))
def test_parse_secret_key_only_raises_value_error(text: str) -> None:
    try:
        keys = parse_secret_key(text)
    except ValueError as error:
        # Short texts can occur in the fixed message by chance; longer ones must not.
        assert len(text.strip()) < 8 or text.strip() not in str(error)
        return
    assert len(keys.public_key().to_hex()) == 64


# --- key files ---------------------------------------------------------------------


@pytest.mark.parametrize("content", [SECRET_HEX, NSEC, f"{NSEC}\n", f"  {SECRET_HEX}\r\n\n"])
def test_key_file_with_mode_0600_is_read(tmp_path: Path, content: str) -> None:
    path = key_file(tmp_path, content)
    assert read_secret_key_file(path).public_key().to_hex() == PUBLIC_HEX


@pytest.mark.parametrize("mode", [0o400, 0o700])
def test_key_file_owner_only_modes_are_accepted(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, NSEC, mode)
    assert read_secret_key_file(path).public_key().to_hex() == PUBLIC_HEX


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o666])
def test_key_file_open_to_group_or_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = key_file(tmp_path, NSEC, mode)
    with pytest.raises(IdentityError) as caught:
        read_secret_key_file(path)
    assert str(caught.value) == (
        f"{path}: secret key file is readable or writable by group or others "
        f"(mode {mode:04o}); fix with: chmod 600 {path}"
    )


def test_fix_hint_quotes_awkward_paths(tmp_path: Path) -> None:
    path = key_file(tmp_path, NSEC, 0o644, name="my key")
    with pytest.raises(IdentityError) as caught:
        read_secret_key_file(path)
    assert str(caught.value).endswith(f"fix with: chmod 600 '{path}'")


def test_key_file_mode_is_checked_through_a_symlink(tmp_path: Path) -> None:
    target = key_file(tmp_path, NSEC, 0o644)
    link = tmp_path / "link.key"
    link.symlink_to(target)
    with pytest.raises(IdentityError, match="readable or writable by group or others"):
        read_secret_key_file(link)


def test_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(IdentityError) as caught:
        read_secret_key_file(path)
    assert str(caught.value) == (
        f"{path}: cannot read secret key file: No such file or directory"
    )


def test_key_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(IdentityError) as caught:
        read_secret_key_file(tmp_path)
    assert str(caught.value) == f"{tmp_path}: secret key file is not a regular file"


def test_key_file_that_is_a_fifo_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "fifo.key"
    os.mkfifo(path, 0o600)
    with pytest.raises(IdentityError, match="not a regular file"):
        read_secret_key_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "secret key file is empty"),
        ("not a key", "secret key file is not a valid nsec1… or 64-character hex secret key"),
        (SECRET_HEX + "00", "secret key file is not a valid nsec1…"),
        (f"{NSEC}\n{NSEC}\n", "secret key file is not a valid nsec1…"),
        (NPUB, "secret key file holds a public key (npub1…), not a secret key (nsec1…)"),
        ("x" * 5000, "secret key file is too large to hold a single key"),
    ],
)
def test_invalid_key_file_content_is_never_echoed(
    tmp_path: Path, content: str, message: str
) -> None:
    path = key_file(tmp_path, content)
    with pytest.raises(IdentityError) as caught:
        read_secret_key_file(path)
    assert str(caught.value).startswith(f"{path}: {message}")
    assert_no_secret(str(caught.value))
    if content:
        assert content.strip()[:20] not in str(caught.value)


def test_key_file_that_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "binary.key"
    path.write_bytes(b"\xff\xfe" + os.urandom(30))
    path.chmod(0o600)
    with pytest.raises(IdentityError) as caught:
        read_secret_key_file(path)
    assert str(caught.value) == f"{path}: secret key file is not text"


# --- choosing the source -------------------------------------------------------------


def test_no_key_configured_means_read_only() -> None:
    assert load_secret_key(IdentityConfig(), {}) is None
    assert load_secret_key(IdentityConfig(), {"POWRD_SECRET_KEY": "  "}) is None


def test_key_from_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, NSEC)
    keys = load_secret_key(IdentityConfig(secret_key_file=path), {})
    assert keys is not None and keys.public_key().to_hex() == PUBLIC_HEX


def test_key_from_environment(tmp_path: Path) -> None:
    keys = load_secret_key(IdentityConfig(), {"POWRD_SECRET_KEY": f"{SECRET_HEX}\n"})
    assert keys is not None and keys.public_key().to_hex() == PUBLIC_HEX


def test_environment_wins_over_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, OTHER.secret_key().to_bech32())
    keys = load_secret_key(IdentityConfig(secret_key_file=path), {"POWRD_SECRET_KEY": NSEC})
    assert keys is not None and keys.public_key().to_hex() == PUBLIC_HEX


def test_environment_wins_so_an_insecure_file_is_not_opened(tmp_path: Path) -> None:
    path = key_file(tmp_path, "garbage", 0o644)
    keys = load_secret_key(IdentityConfig(secret_key_file=path), {"POWRD_SECRET_KEY": NSEC})
    assert keys is not None and keys.public_key().to_hex() == PUBLIC_HEX


def test_blank_environment_falls_back_to_file(tmp_path: Path) -> None:
    path = key_file(tmp_path, NSEC)
    keys = load_secret_key(IdentityConfig(secret_key_file=path), {"POWRD_SECRET_KEY": ""})
    assert keys is not None and keys.public_key().to_hex() == PUBLIC_HEX


def test_invalid_environment_key_is_named_but_not_echoed() -> None:
    bad = SECRET_HEX[:-1] + "x"
    with pytest.raises(IdentityError) as caught:
        load_secret_key(IdentityConfig(), {"POWRD_SECRET_KEY": bad})
    message = str(caught.value)
    assert message == (
        "POWRD_SECRET_KEY is not a valid nsec1… or 64-character hex secret key"
    )
    assert bad[:20] not in message


def test_insecure_configured_file_is_refused(tmp_path: Path) -> None:
    path = key_file(tmp_path, NSEC, 0o644)
    with pytest.raises(IdentityError, match=r"chmod 600"):
        load_secret_key(IdentityConfig(secret_key_file=path), {})


def test_identity_error_is_a_value_error() -> None:
    assert issubclass(IdentityError, ValueError)


# --- keygen ------------------------------------------------------------------------


def test_write_new_key_creates_a_0600_file_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    keys = write_new_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    content = path.read_text()
    assert content.startswith("nsec1") and content.endswith("\n")
    assert read_secret_key_file(path).public_key().to_hex() == keys.public_key().to_hex()


def test_write_new_key_is_0600_even_under_a_restrictive_umask(tmp_path: Path) -> None:
    path = tmp_path / "new.key"
    previous = os.umask(0o477)
    try:
        write_new_key(path)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_write_new_key_makes_a_different_key_each_time(tmp_path: Path) -> None:
    first = write_new_key(tmp_path / "a.key")
    second = write_new_key(tmp_path / "b.key")
    assert first.public_key().to_hex() != second.public_key().to_hex()


def test_write_new_key_refuses_to_overwrite(tmp_path: Path) -> None:
    path = key_file(tmp_path, NSEC)
    with pytest.raises(IdentityError) as caught:
        write_new_key(path)
    assert str(caught.value).startswith(f"{path}: already exists; refusing to overwrite")
    assert path.read_text() == NSEC


def test_write_new_key_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    link = tmp_path / "link.key"
    target = tmp_path / "target.key"
    link.symlink_to(target)
    with pytest.raises(IdentityError, match="already exists"):
        write_new_key(link)
    assert not target.exists()


def test_write_new_key_in_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "new.key"
    with pytest.raises(IdentityError) as caught:
        write_new_key(path)
    assert str(caught.value) == f"{path}: cannot create key file: No such file or directory"

"""The daemon's own Nostr identity: reading, creating and parsing keys.

A secret key reaches powrd in one of two ways:

* the ``POWRD_SECRET_KEY`` environment variable (hex or ``nsec1…``), or
* the file named by ``[identity].secret_key_file`` (hex or ``nsec1…``, surrounding
  whitespace ignored), which must not be readable or writable by group or others.

When both are present **the environment variable wins** and the file is not opened.
That follows the usual precedence (environment over config file): the environment is
the per-invocation override — a one-off shell, a systemd ``Environment=`` drop-in —
so it must be able to replace whatever the shared config file names. The file remains
the recommended place: a process's environment is visible to the same user through
``/proc/<pid>/environ``. An empty or blank ``POWRD_SECRET_KEY`` counts as not set, so
``Environment=POWRD_SECRET_KEY=`` clears an inherited value.

No message raised from here ever contains key material: errors name the file or the
variable, say what is wrong and how to fix it, and never echo what was read.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from nostr_sdk import Keys, NostrSdkError, PublicKey

if TYPE_CHECKING:
    from powrd.config import IdentityConfig

SECRET_KEY_ENV = "POWRD_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
# Group and other read/write bits: any of them lets someone else read or swap the key.
INSECURE_MODE_BITS = 0o066
# A key is 64 hex characters or a 63-character nsec; anything far longer is not a key file.
MAX_KEY_FILE_BYTES = 4096
NEW_KEY_FILE_MODE = 0o600
_HEX_DIGITS = frozenset("0123456789abcdef")
PUBLIC_KEY_EXPECTED = "expected an npub1… or 64-character hex public key"


class IdentityError(ValueError):
    """A secret key could not be loaded or created; the message is one safe line."""


def parse_public_key(text: str) -> str:
    """Decode a public key written as ``npub1…`` or 64 hex characters.

    A ``nostr:`` URI prefix and surrounding whitespace are accepted.

    Args:
        text: The key as a user wrote it.

    Returns:
        The key as 64 lowercase hex characters.

    Raises:
        ValueError: The text is not a public key. The message never repeats a secret
            key pasted by mistake.
    """
    candidate = text.strip()
    lowered = candidate.lower().removeprefix("nostr:")
    if lowered.startswith("nsec1"):
        raise ValueError("a secret key (nsec1…), not a public key; use its npub instead")
    if lowered.startswith("npub1"):
        try:
            return str(PublicKey.parse(lowered).to_hex())
        except NostrSdkError as exc:
            raise ValueError(f"invalid npub: {exc}") from None
    if len(lowered) == 64 and _HEX_DIGITS.issuperset(lowered):
        return lowered
    raise ValueError(PUBLIC_KEY_EXPECTED)


def parse_secret_key(text: str) -> Keys:
    """Decode a secret key written as ``nsec1…`` or 64 hex characters.

    Args:
        text: The key; surrounding whitespace is ignored.

    Returns:
        The key pair.

    Raises:
        ValueError: The text is not a valid secret key (the message never contains it).
    """
    candidate = text.strip().lower()
    if candidate.startswith("ncryptsec1"):
        raise ValueError(
            "holds a password-encrypted key (ncryptsec1…), which powrd cannot use; "
            "store the plain nsec1… instead"
        )
    if candidate.startswith("npub1"):
        raise ValueError("holds a public key (npub1…), not a secret key (nsec1…)")
    if not candidate:
        raise ValueError("is empty; expected an nsec1… or 64-character hex secret key")
    try:
        return Keys.parse(candidate)
    except NostrSdkError:
        raise ValueError("is not a valid nsec1… or 64-character hex secret key") from None


def load_secret_key(identity: IdentityConfig, environ: Mapping[str, str]) -> Keys | None:
    """Load the daemon's secret key from the environment or the configured file.

    ``POWRD_SECRET_KEY`` wins over ``[identity].secret_key_file`` (see the module
    docstring for why).

    Args:
        identity: The ``[identity]`` section of the config.
        environ: The process environment.

    Returns:
        The key pair, or ``None`` when neither source is configured (read-only mode).

    Raises:
        IdentityError: A configured key is unreadable, insecure or invalid.
    """
    from_env = environ.get(SECRET_KEY_ENV, "")
    if from_env.strip():
        try:
            return parse_secret_key(from_env)
        except ValueError as exc:
            raise IdentityError(f"{SECRET_KEY_ENV} {exc}") from None
    if identity.secret_key_file is None:
        return None
    return read_secret_key_file(identity.secret_key_file)


def read_secret_key_file(path: Path) -> Keys:
    """Read a secret key file, refusing one that others could read or change.

    The permissions are checked on the opened file descriptor, so the file checked is
    the file read even if the path is swapped meanwhile.

    Args:
        path: The key file (hex or ``nsec1…``).

    Returns:
        The key pair.

    Raises:
        IdentityError: The file cannot be read, is not a regular file, has group/other
            permissions, or does not hold a valid key.
    """
    # O_NONBLOCK: opening a FIFO planted at the path must not hang the daemon.
    flags = os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read secret key file: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise IdentityError(f"{path}: secret key file is not a regular file")
        if info.st_mode & INSECURE_MODE_BITS:
            mode = stat.S_IMODE(info.st_mode)
            raise IdentityError(
                f"{path}: secret key file is readable or writable by group or others "
                f"(mode {mode:04o}); fix with: chmod 600 {shlex.quote(str(path))}"
            )
        data = _read_at_most(fd, MAX_KEY_FILE_BYTES + 1)
    except OSError as exc:
        raise IdentityError(f"{path}: cannot read secret key file: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise IdentityError(f"{path}: secret key file is too large to hold a single key")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise IdentityError(f"{path}: secret key file is not text") from None
    try:
        return parse_secret_key(text)
    except ValueError as exc:
        raise IdentityError(f"{path}: secret key file {exc}") from None


def write_new_key(path: Path) -> Keys:
    """Generate a key pair and write its ``nsec1…`` to a new file with mode 0600.

    The file is created with ``O_CREAT | O_EXCL`` and its final mode in one step, so it
    is never visible with wider permissions and an existing file (or symlink) is never
    overwritten.

    Args:
        path: Where to create the key file.

    Returns:
        The new key pair.

    Raises:
        IdentityError: The path exists or the file cannot be created and written.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, NEW_KEY_FILE_MODE)
    except FileExistsError:
        raise IdentityError(
            f"{path}: already exists; refusing to overwrite a key file "
            "(move it away first if you really mean to replace that identity)"
        ) from None
    except OSError as exc:
        raise IdentityError(f"{path}: cannot create key file: {exc.strerror}") from None
    keys = Keys.generate()
    payload = (keys.secret_key().to_bech32() + "\n").encode("ascii")
    try:
        # A restrictive umask may have cleared the owner's own read bit; set it exactly.
        os.fchmod(fd, NEW_KEY_FILE_MODE)
        _write_all(fd, payload)
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise IdentityError(f"{path}: cannot write key file: {exc.strerror}") from None
    os.close(fd)
    _sync_directory(path.parent)
    return keys


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _sync_directory(directory: Path) -> None:
    # Makes the new directory entry durable; best effort, as some filesystems refuse it.
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)

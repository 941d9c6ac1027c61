"""``powrd init``: write a first, commented config file.

With ``--npub`` (and optionally ``--relay``) it asks nothing; otherwise, on a terminal,
it asks for what is missing. The file is written next to nothing it could replace: an
existing file is never overwritten (the new file is linked into place, which fails if the
name is taken). Before it is put in place the text is loaded with the same loader
``powrd run`` uses, so a written config always starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from powrd.cli.errors import UsageError
from powrd.cli.progress import on_terminal

DEFAULT_OUT = "powrd.toml"
DEFAULT_RELAYS = ("wss://relay.damus.io", "wss://nos.lol")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--npub", action="append", metavar="NPUB",
                        help="whose workout data to keep (npub1… or hex); repeat for more")
    parser.add_argument("--relay", action="append", metavar="URL",
                        help=f"relay to sync with; repeat for more (default: "
                        f"{', '.join(DEFAULT_RELAYS)})")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help=f"file to create (default: ./{DEFAULT_OUT}); never overwritten")
    parser.add_argument("--store", default="powrd.db",
                        help="database path, relative to the config file (default: powrd.db)")
    parser.add_argument("--socket", default="powrd.sock",
                        help="control socket path, relative to the config file"
                        " (default: powrd.sock)")


def run(args: argparse.Namespace, ask: Callable[[str], str] = input) -> int:
    """``powrd init``: writes the file, prints the next commands; exit 0 or 2."""
    out = Path(args.out)
    if out.exists():
        raise UsageError(f"{out}: already exists; not overwriting it (remove it or give --out)")
    interactive = on_terminal(sys.stdin) and on_terminal(sys.stdout)
    authors = list(args.npub or [])
    relays = list(args.relay or [])
    if not authors:
        if not interactive:
            raise UsageError("init: give --npub NPUB (no terminal to ask on)")
        authors = _ask_authors(ask)
        if not args.relay:
            relays = _ask_relays(ask)
    if not relays:
        relays = list(DEFAULT_RELAYS)
    text = config_text(authors=authors, relays=relays, store=args.store, socket=args.socket)
    write_new(out, text)
    print(f"wrote {out}")
    print("next: start the daemon, then watch it sync:")
    print(f"  powrd --config {out} run")
    print(f"  powrd --config {out} ctl status --watch")
    return 0


def _ask_authors(ask: Callable[[str], str]) -> list[str]:
    from powrd.identity import parse_public_key

    while True:
        answer = ask("Your public key (npub1… or hex; several separated by spaces): ").split()
        try:
            for key in answer:
                parse_public_key(key)
        except ValueError as error:
            print(f"  not a public key: {error}", file=sys.stderr)
            continue
        if answer:
            return answer


def _ask_relays(ask: Callable[[str], str]) -> list[str]:
    while True:
        answer = ask(f"Relays (ws:// or wss:// URLs separated by spaces; Enter for "
                     f"{' '.join(DEFAULT_RELAYS)}): ").split()
        bad = [url for url in answer if not url.lower().startswith(("ws://", "wss://"))]
        if not bad:
            return answer or list(DEFAULT_RELAYS)
        print(f"  not a ws:// or wss:// URL: {bad[0]}", file=sys.stderr)


def _toml(value: object) -> str:
    # JSON strings and arrays of strings/integers are valid TOML.
    return json.dumps(value, ensure_ascii=False)


def config_text(*, authors: Sequence[str], relays: Sequence[str], store: str, socket: str) -> str:
    """The commented TOML ``powrd init`` writes."""
    from powrd.config import SyncConfig

    kinds = list(SyncConfig().kinds)
    lines = [
        f"# powrd configuration, written by `powrd init` on {time.strftime('%Y-%m-%d')}.",
        "#",
        "# Keys left out take their default; config/powrd.toml in powrd's source lists every",
        "# key with a comment. Relative paths resolve against this file's directory.",
        "# Send the daemon SIGHUP to re-read relays and [sync] without a restart.",
        "",
        "[store]",
        "# The SQLite database powrd keeps your workout data in.",
        f"path = {_toml(store)}",
        "",
        "[control]",
        "# The Unix socket `powrd ctl` talks to the daemon through.",
        f"socket = {_toml(socket)}",
        "",
        "[identity]",
        "# Needed only to publish: a file with your secret key, mode 0600. Create one with",
        "# `powrd keygen --out secret.key`, then uncomment:",
        '# secret_key_file = "secret.key"',
        "",
        "[sync]",
        "# Whose workout data to keep: npub1… or 64-character hex public keys.",
        f"authors = {_toml(list(authors))}",
        "# Event kinds: 33401 exercises, 33402 workout templates, 1301 workout records,",
        "# 30003 POWR lists (add 33403 for records under the legacy kind).",
        f"kinds = {_toml(kinds)}",
        "# The public library: exercises and templates from every author, not only yours",
        "# (records are never fetched from strangers). [] turns it off.",
        "public_kinds = [33401, 33402]",
        "",
        "# Relays to sync with, one [[relays]] section each. read: fetch events from it;",
        "# write: publish your events to it.",
    ]
    for url in relays:
        lines += ["[[relays]]", f"url = {_toml(url)}", "read = true", "write = true", ""]
    return "\n".join(lines).rstrip("\n") + "\n"



def write_new(out: Path, text: str) -> None:
    """Check ``text`` loads as a config, then create ``out`` with it (never replacing a file).

    Raises:
        UsageError: The text does not load (bad npub or URL), or ``out`` exists or
            cannot be written.
    """
    from powrd.config import Config, ConfigError

    directory = out.absolute().parent
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - linked into place below
            "w", dir=directory, prefix=".powrd-init-", suffix=".toml", delete=False,
            encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{out}: cannot write in {directory}: {error.strerror}") from None
    temporary = Path(handle.name)
    try:
        with handle:
            handle.write(text)
        try:
            Config.from_toml(temporary, {})
        except ConfigError as error:
            message = str(error).replace(str(temporary), str(out))
            raise UsageError(f"{message} (fix the --npub or --relay value)") from None
        try:
            os.link(temporary, out)
        except FileExistsError:
            raise UsageError(f"{out}: already exists; not overwriting it") from None
        except OSError as error:
            raise UsageError(f"{out}: cannot write: {error.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            temporary.unlink()

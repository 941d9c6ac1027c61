"""``powrd`` command line: argument parsing and dispatch to the command modules."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from powrd import __version__


class UsageError(Exception):
    """Unusable input or configuration: one line on stderr, exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="powrd", description="Keeps Nostr workout data (NIP-101e) in sync in a local store."
    )
    parser.add_argument("--version", action="version", version=f"powrd {__version__}")
    parser.add_argument("--config", help="config file (default: $POWRD_CONFIG, else ./powrd.toml)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("run", help="run the daemon")

    imp = commands.add_parser("import", help="validate and store newline-delimited JSON events")
    imp.add_argument("file", help="file of events, one per line, or - for standard input")

    exp = commands.add_parser("export", help="write stored events as newline-delimited JSON")
    exp.add_argument("--all", action="store_true", help="include superseded versions")

    commands.add_parser("reindex", help="rebuild processed tables from the raw events")

    keygen = commands.add_parser("keygen", help="write a new secret key (mode 0600)")
    keygen.add_argument("--out", required=True, help="file to create")

    # Everything after `ctl` belongs to powrd.cli.ctl, which has its own parser and --help.
    commands.add_parser(
        "ctl", help="talk to the running daemon (see `powrd ctl --help`)", add_help=False
    )

    demo = commands.add_parser("demo", help="run a self-contained demonstration (no network)")
    demo.add_argument("--keep", action="store_true", help="keep the demo's temporary directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "ctl" in argv:
        split = argv.index("ctl")
        args = _parser().parse_args([*argv[:split], "ctl"])
        args.ctl_args = argv[split + 1 :]
    else:
        args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UsageError as error:
        print(f"powrd: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    from powrd.cli import commands

    if args.command == "ctl":
        from powrd.cli import ctl

        return ctl.main(args.ctl_args, config_path=args.config)
    if args.command == "keygen":
        return commands.keygen(args.out)
    if args.command == "demo":
        from powrd.cli import demo

        return demo.main(keep=args.keep)
    config = commands.load(args.config, os.environ, args.log_level)
    if args.command == "run":
        from powrd.service.daemon import run_daemon

        return run_daemon(config)
    if args.command == "import":
        return commands.import_events(config, args.file)
    if args.command == "export":
        return commands.export_events(config, include_superseded=args.all)
    if args.command == "reindex":
        return commands.reindex(config)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())

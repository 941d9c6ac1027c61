"""``powrd`` command line: one argparse tree for every command, and dispatch.

Options that apply to every command (``--config``, ``--log-level``, ``--log-format``)
are declared on the top-level parser and again on each subcommand, with
``argparse.SUPPRESS`` defaults on the subcommands so a value given before the command is
not reset by the subcommand's parser. ``powrd --config FILE run`` and
``powrd run --config FILE`` therefore mean the same, and no word of the argument list is
looked at before argparse sees it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from powrd import __version__
from powrd.cli.errors import UsageError

__all__ = ["UsageError", "main"]

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("console", "json")


class Parser(argparse.ArgumentParser):
    """An argument parser whose subcommand lists may accept names they do not list.

    A subparsers action with ``fallback`` set (``powrd ctl``'s) routes an unknown name to
    that fallback subcommand instead of refusing it, so ``powrd ctl events.query {…}``
    is ``powrd ctl call events.query {…}``.
    """

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if getattr(action, "fallback", None) is not None:
            return
        super()._check_value(action, value)


class FallbackSubParsers(argparse._SubParsersAction):  # type: ignore[type-arg]
    """Subcommands where an unknown name is the first argument of ``fallback``."""

    fallback: str | None = None

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if self.fallback is not None and values and values[0] not in self._name_parser_map:
            values = [self.fallback, *values]
        super().__call__(parser, namespace, values, option_string)


def global_options(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    """``--config``, ``--log-level``, ``--log-format`` on ``parser``.

    Args:
        parser: The top-level parser or a subcommand's.
        top: True for the top-level parser, which holds the defaults (None).
    """
    default: Any = None if top else argparse.SUPPRESS
    parser.add_argument("--config", default=default,
                        help="config file (default: $POWRD_CONFIG, else ./powrd.toml)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, default=default,
                        help="overrides [logging].level")
    parser.add_argument("--log-format", choices=LOG_FORMATS, default=default,
                        help="overrides [logging].format (default: console on a terminal,"
                        " JSON otherwise)")


def build_parser() -> Parser:
    """The whole ``powrd`` argument tree, ``ctl`` included."""
    from powrd.cli import ctl

    parser = Parser(
        prog="powrd", description="Keeps Nostr workout data (NIP-101e) in sync in a local store."
    )
    parser.add_argument("--version", action="version", version=f"powrd {__version__}")
    global_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                     parser_class=Parser)

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        global_options(sub)
        return sub

    add("run", "run the daemon")

    imp = add("import", "validate and store newline-delimited JSON events")
    imp.add_argument("file", help="file of events, one per line, or - for standard input")
    _quiet(imp)

    exp = add("export", "write stored events as newline-delimited JSON")
    exp.add_argument("--all", action="store_true", help="include superseded versions")
    _quiet(exp)

    _quiet(add("reindex", "rebuild processed tables from the raw events"))

    keygen = add("keygen", "write a new secret key (mode 0600)")
    keygen.add_argument("--out", required=True, help="file to create")

    from powrd.cli import init

    init.add_arguments(add("init", "write a first config file (asks on a terminal)"))

    ctl.add_arguments(add("ctl", "talk to the running daemon (see `powrd ctl --help`)"))

    demo = add("demo", "run a self-contained demonstration (no network)")
    demo.add_argument("--keep", action="store_true", help="keep the demo's temporary directory")
    return parser


def _quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress line, even on a terminal")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
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

        return ctl.run(args)
    if args.command == "keygen":
        return commands.keygen(args.out)
    if args.command == "init":
        from powrd.cli import init

        return init.run(args)
    if args.command == "demo":
        from powrd.cli import demo

        return demo.main(keep=args.keep)
    config = commands.load(args.config, os.environ, args.log_level, args.log_format)
    if args.command == "run":
        from powrd.service.daemon import run_daemon

        return run_daemon(config)
    if args.command == "import":
        return commands.import_events(config, args.file, quiet=args.quiet)
    if args.command == "export":
        return commands.export_events(config, include_superseded=args.all, quiet=args.quiet)
    if args.command == "reindex":
        return commands.reindex(config, quiet=args.quiet)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())

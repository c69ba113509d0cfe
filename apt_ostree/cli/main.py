"""The apt-ostree command: argument parsing and the one place that prints errors and exits."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from apt_ostree import __version__, interrupt
from apt_ostree.cli import compose, daemon, db, status, table
from apt_ostree.errors import EXIT_CANCELLED, AptOstreeError, Cancelled, LayeringError


class Parser(argparse.ArgumentParser):
    """argparse, with its usage errors in the form every other error has (one line starting
    ``error:``, naming the command), exit code 2 as before."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="apt-ostree",
        description="Image-based, atomic Debian systems: compose, deploy and layer with OSTree.",
    )
    parser.add_argument("--version", action="version", version=f"apt-ostree {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="show subprocess output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    status.register(sub)
    table.register(sub)
    compose.register(sub)
    db.register(sub)
    daemon.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    interrupt.install()
    try:
        return int(args.func(args))
    except Cancelled as e:
        print(f"error: {e.message}", file=sys.stderr)
        return EXIT_CANCELLED
    except AptOstreeError as e:
        if interrupt.requested():  # e.g. dpkg stopped by the cancel's SIGINT: the cause is the cancel
            print("error: cancelled", file=sys.stderr)
            return EXIT_CANCELLED
        if args.debug:
            raise
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint and "\n" not in e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        elif e.hint and (args.verbose or isinstance(e, LayeringError)):
            print("".join(f"  | {line}\n" for line in e.hint.splitlines()[-25:]), end="", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
    except BrokenPipeError:
        return 1


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()

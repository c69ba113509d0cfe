"""apt-ostreed: ``python3 -m apt_ostree.daemon``, what systemd and D-Bus activation start
(``apt-ostree start-daemon`` runs it too). It imports no CLI code: start-up stays short."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apt-ostreed", description="apt-ostree's daemon on the system bus")
    parser.add_argument("--sysroot", type=Path, default=Path("/"), metavar="PATH", help="sysroot to serve")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="settings file (default: the merge deployment's /etc/apt-ostreed.conf)")
    parser.add_argument("--debug", action="store_true", help="debug logs and tracebacks")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO, format="%(levelname)s: %(message)s",
                        stream=sys.stderr)
    from apt_ostree import interrupt
    from apt_ostree.daemon import service
    from apt_ostree.errors import AptOstreeError

    interrupt.install()
    try:
        return service.serve(args.sysroot, args.config)
    except AptOstreeError as e:
        if args.debug:
            raise
        print(f"error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())

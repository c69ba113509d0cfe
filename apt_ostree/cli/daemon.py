"""Daemon verbs: start-daemon (apt-ostreed itself), cancel, reload."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import apt_ostree
from apt_ostree.cli import client
from apt_ostree.cli.common import add_sysroot_arg, out
from apt_ostree.dbus_names import BUS_NAME, SYSROOT_IFACE, SYSROOT_PATH, TRANSACTION_IFACE


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sd = sub.add_parser("start-daemon", help="run apt-ostreed (started by D-Bus activation / systemd)")
    add_sysroot_arg(sd)
    sd.add_argument("--config", type=Path, metavar="FILE",
                    help="settings file (default: the merge deployment's /etc/apt-ostreed.conf)")
    sd.set_defaults(func=run_start_daemon)

    ca = sub.add_parser("cancel", help="cancel the active transaction")
    add_sysroot_arg(ca)
    ca.set_defaults(func=run_cancel)

    rl = sub.add_parser("reload", help="make apt-ostreed read its configuration and the sysroot again")
    add_sysroot_arg(rl)
    rl.set_defaults(func=run_reload)


def run_start_daemon(args: argparse.Namespace) -> int:
    """apt-ostreed is its own program (``python3 -m apt_ostree.daemon``): become it, with this
    apt_ostree package (a checkout's too) on its path."""
    package_root = str(Path(apt_ostree.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": package_root + (f":{path}" if path else "")}
    argv = [sys.executable, "-m", "apt_ostree.daemon", "--sysroot", str(args.sysroot),
            *(["--config", str(args.config)] if args.config else []), *(["--debug"] if args.debug else [])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)  # (not a subprocess: this process becomes the daemon)


def _connected(sysroot: Path) -> Any:
    if not client.daemon_serves(sysroot):
        return None
    try:
        return client.system_bus()
    except Exception:  # no bus: no daemon
        return None


def run_cancel(args: argparse.Namespace) -> int:
    from gi.repository import GLib

    bus = _connected(args.sysroot)
    if bus is None or not client.daemon_running():
        out("No active transaction.")
        return 0
    try:
        path = client.get_property(bus, SYSROOT_PATH, SYSROOT_IFACE, "ActiveTransactionPath")
        if not path:
            out("No active transaction.")
            return 0
        title = client.get_property(bus, path, TRANSACTION_IFACE, "Title")
        bus.call_sync(BUS_NAME, path, TRANSACTION_IFACE, "Cancel", None, None, 0, -1, None)
    except GLib.Error as e:
        raise client.daemon_error(e) from None
    out(f"Cancelled: {title}")
    return 0


def run_reload(args: argparse.Namespace) -> int:
    from gi.repository import GLib

    bus = _connected(args.sysroot)
    if bus is None or not client.daemon_running():
        out("apt-ostreed is not running: nothing to reload.")
        return 0
    try:
        bus.call_sync(BUS_NAME, SYSROOT_PATH, SYSROOT_IFACE, "Reload", None, None, 0, -1, None)
    except GLib.Error as e:
        raise client.daemon_error(e) from None
    out("apt-ostreed reloaded.")
    return 0

"""The CLI as a client of apt-ostreed.

On the booted system (and for a ``--sysroot`` that a running daemon serves) every command that
changes something is sent to the daemon as a transaction: the daemon checks polkit, queues it
behind the running one, runs the same engine in a worker and sends progress signals, which are
drawn here with the terminal renderer; the command's stdout, stderr and exit code come back
as they would have been in-process. Ctrl-C cancels the transaction. Without a bus, in a container,
or with $APT_OSTREE_NO_DAEMON set, the engine runs in-process.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from apt_ostree import verbs
from apt_ostree.cli.common import check_finalize_args
from apt_ostree.dbus_names import (
    BUS_NAME,
    ERROR_BUSY,
    ERROR_DENIED,
    ERROR_INVALID,
    NO_DAEMON_ENV,
    OS_IFACE,
    SYSROOT_IFACE,
    SYSROOT_PATH,
    TRANSACTION_IFACE,
)
from apt_ostree.errors import AptOstreeError, DaemonError, UsageError
from apt_ostree.progress import TerminalProgress

BOOTED_MARKER = Path("/run/ostree-booted")
SYSTEM_BUS_SOCKET = Path("/run/dbus/system_bus_socket")
ACTIVATION_WAIT = 300.0  # seconds to wait for a daemon that is still starting
ACTIVATION_TIMEOUTS = ("org.freedesktop.DBus.Error.TimedOut", "org.freedesktop.DBus.Error.NoReply",
                       "org.freedesktop.DBus.Error.TimeoutExpired")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-queue", action="store_true",
                   help="fail if another transaction runs, instead of waiting for it")


def _kargs_change(args: argparse.Namespace) -> bool:
    return bool(args.append or args.append_if_missing or args.delete or args.delete_if_present or args.replace
                or args.editor or args.import_proc_cmdline)


def system_bus() -> Any:
    from gi.repository import Gio

    return Gio.bus_get_sync(Gio.BusType.SYSTEM, None)


def _has_bus() -> bool:
    return bool(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")) or SYSTEM_BUS_SOCKET.exists()


def wants_daemon(args: argparse.Namespace) -> bool:
    """Whether this command goes through apt-ostreed."""
    if os.environ.get(NO_DAEMON_ENV) or args.command not in verbs.MUTATING or not _has_bus():
        return False
    if args.command == "kargs" and not _kargs_change(args):
        return False  # showing the arguments reads the sysroot
    return daemon_serves(Path(args.sysroot))


def daemon_serves(sysroot: Path) -> bool:
    """The booted system (the daemon is activated on demand), or a sysroot a running daemon serves."""
    from gi.repository import GLib

    path = sysroot.resolve()
    if path == Path("/") and BOOTED_MARKER.exists():
        return True
    if not daemon_running():
        return False
    try:
        served = get_property(system_bus(), SYSROOT_PATH, SYSROOT_IFACE, "Path")
    except GLib.Error:
        return False
    return Path(served).resolve() == path


def daemon_running() -> bool:
    """Whether apt-ostreed owns its name now (asking does not activate it)."""
    from gi.repository import GLib

    try:
        reply = system_bus().call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
                                       "NameHasOwner", GLib.Variant("(s)", (BUS_NAME,)), None, 0, -1, None)
    except GLib.Error:
        return False
    return bool(reply.unpack()[0])


def active_transaction(sysroot: Path) -> list[str] | None:
    """rpm-ostree's status ``transaction``: [title, initiator, path] of the daemon's active one.
    On the booted system this activates the daemon (as rpm-ostree status does)."""
    from gi.repository import GLib

    if os.environ.get(NO_DAEMON_ENV) or not _has_bus() or not daemon_serves(Path(sysroot)):
        return None
    try:
        bus = system_bus()
        register(bus)
        title, initiator, path = get_property(bus, SYSROOT_PATH, SYSROOT_IFACE, "ActiveTransaction")
    except GLib.Error:
        return None
    return [title, initiator, path] if title else None


def get_property(bus: Any, path: str, iface: str, name: str) -> Any:
    from gi.repository import GLib

    reply = bus.call_sync(BUS_NAME, path, "org.freedesktop.DBus.Properties", "Get", GLib.Variant("(ss)", (iface, name)),
                          None, 0, -1, None)
    return reply.unpack()[0]


def _options(verb: str, args: argparse.Namespace, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The method's options from the parsed flags, by the daemon's own table."""
    from gi.repository import GLib

    opts: dict[str, Any] = {}
    for key in verbs.ALLOWED[verb]:
        if key in skip:
            continue
        if key in verbs.FLAGS:
            if getattr(args, verbs.FLAGS[key].lstrip("-").replace("-", "_"), False):
                opts[key] = GLib.Variant("b", True)
        elif key in verbs.LISTS:
            values = getattr(args, key.replace("-", "_"), None) or []
            if values:
                opts[key] = GLib.Variant("as", list(values))
        elif key == "deploy-index" and getattr(args, "deploy_index", None) is not None:
            opts[key] = GLib.Variant("i", args.deploy_index)
    opts["initiating-command-line"] = GLib.Variant("s", "apt-ostree " + " ".join(sys.argv[1:]))
    if getattr(args, "no_queue", False):
        opts["no-queue"] = GLib.Variant("b", True)
    return opts


def _local(items: list[str]) -> list[str]:
    """Paths of local .debs made absolute: the daemon does not share our working directory."""
    from apt_ostree.core.packages import is_local

    return [str(Path(i).resolve()) if is_local(i) else i for i in items]


def _as(items: list[str]) -> Any:
    from gi.repository import GLib

    return GLib.Variant("as", list(items))


def build_call(args: argparse.Namespace) -> tuple[str, str, Any]:
    """(method, signature, arguments) of the OS method for the parsed command."""
    from gi.repository import GLib

    c = args.command
    v: Any = GLib.Variant
    if c == "upgrade":
        if args.trigger_automatic_update_policy:
            return "AutomaticUpdateTrigger", "(a{sv})", ({"mode": v("s", "auto")},)
        if args.install or args.uninstall:
            mods = {"install-packages": _as(_local(args.install)), "uninstall-packages": _as(args.uninstall)}
            return "UpdateDeployment", "(a{sv}a{sv})", (mods, _options("upgrade", args))
        return "Upgrade", "(a{sv})", (_options("upgrade", args),)
    if c in ("deploy", "rebase"):
        key, value = ("set-revision", args.revision) if c == "deploy" else ("set-refspec", args.refspec)
        mods = {key: v("s", value), "install-packages": _as(_local(args.install)),
                "uninstall-packages": _as(args.uninstall)}
        return "UpdateDeployment", "(a{sv}a{sv})", (mods, _options(c, args))
    if c == "rollback":
        return "Rollback", "(a{sv})", (_options("rollback", args),)
    if c == "cleanup":
        elements = [e for e, flag in verbs.CLEANUP_ELEMENTS.items() if getattr(args, flag.lstrip("-"))]
        if not elements:
            raise UsageError("cleanup: say what to remove: -p/--pending, -r/--rollback, -b/--base")
        return "Cleanup", "(as)", (elements,)
    if c == "refresh-md":
        return "RefreshMd", "(a{sv})", (_options("refresh-md", args),)
    if c == "finalize-deployment":
        check_finalize_args(args)
        opts = _options("finalize-deployment", args, skip=("checksum",))
        if args.checksum is not None:
            opts["checksum"] = v("s", args.checksum)
        return "FinalizeDeployment", "(a{sv})", (opts,)
    if c == "kargs":
        return _kargs_call(args)
    no_pull = {"no-pull-base": v("b", True)}
    if c == "install":
        return "PkgChange", "(a{sv}asas)", (_options("install", args), _local(args.packages), list(args.uninstall))
    if c in ("uninstall", "remove"):
        if not args.packages and not args.all:
            raise UsageError("uninstall: name the packages to remove, or --all")
        if args.all:
            mods = {"uninstall-all": v("b", True), "install-packages": _as(_local(args.install))}
            return "UpdateDeployment", "(a{sv}a{sv})", (mods, {**_options("uninstall", args), **no_pull})
        return "PkgChange", "(a{sv}asas)", (_options("uninstall", args), _local(args.install), list(args.packages))
    if c == "override":
        if args.action == "remove":
            mods = {"override-remove-packages": _as(args.packages),
                    "override-replace-local-packages": _as(_local(args.replace))}
        elif args.action == "replace":
            mods = {"override-replace-local-packages": _as(_local(args.packages)),
                    "override-remove-packages": _as(args.remove)}
        else:
            if not args.packages and not args.all:
                raise UsageError("override reset: name the packages, or --all")
            mods = {"override-reset-packages": _as(args.packages), "override-reset-all": v("b", bool(args.all))}
        mods = {k: x for k, x in mods.items() if x.unpack()}
        return "UpdateDeployment", "(a{sv}a{sv})", (mods, {**_options("override", args), **no_pull})
    if c == "reset":
        both = not (args.overlays or args.overrides)
        mods = {"no-layering": v("b", both or args.overlays), "no-overrides": v("b", both or args.overrides)}
        return "UpdateDeployment", "(a{sv}a{sv})", (mods, {**_options("reset", args), **no_pull})
    raise UsageError(f"{c}: not a daemon command")


def _kargs_call(args: argparse.Namespace) -> tuple[str, str, Any]:
    """kargs: --editor runs here, in the user's terminal; the edit is sent as deletions and additions."""
    opts = _options("kargs", args)
    append, delete = list(args.append), list(args.delete)
    if args.editor:
        from apt_ostree.cli.deployments import _edit, kargs_base
        from apt_ostree.core import deploy

        current = kargs_base(args)
        edited = deploy.edit_kargs(current, append=args.append, append_if_missing=args.append_if_missing,
                                   delete=args.delete, delete_if_present=args.delete_if_present,
                                   replace=args.replace)
        new = _edit(edited)
        from gi.repository import GLib

        opts["delete-if-present"] = GLib.Variant("as", [a for a in current if a not in new])
        opts["append-if-missing"] = GLib.Variant("as", [a for a in new if a not in current])
        append, delete = [], []
        return "KernelArgs", "(sasasasa{sv})", ("", append, [], delete, opts)
    return "KernelArgs", "(sasasasa{sv})", ("", append, list(args.replace), delete, opts)


def _pkttyagent() -> subprocess.Popen[bytes] | None:
    """A polkit agent on our terminal, so that a non-root user can authenticate (like rpm-ostree)."""
    if os.geteuid() == 0 or not sys.stdin.isatty() or shutil.which("pkttyagent") is None:
        return None
    # (interactive: the user's terminal, so not through run())
    return subprocess.Popen(["pkttyagent", "--process", str(os.getpid()), "--fallback"])


def _still_starting(e: Any) -> bool:
    """An error that means the daemon is being activated but is not ready yet: D-Bus's activation
    timeout (25 s by default), or our own call's timeout while it starts."""
    from gi.repository import Gio

    return (Gio.DBusError.get_remote_error(e) in ACTIVATION_TIMEOUTS
            or e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.TIMED_OUT))


def register(bus: Any) -> None:
    """RegisterClient: activates the daemon, and keeps it from exiting while we talk to it. A daemon
    that takes longer to start than D-Bus waits (a busy or emulated machine) is waited for: systemd
    goes on starting it, and the request has not been sent yet."""
    from gi.repository import GLib

    deadline = time.monotonic() + ACTIVATION_WAIT
    waiting = False
    while True:
        try:
            bus.call_sync(BUS_NAME, SYSROOT_PATH, SYSROOT_IFACE, "RegisterClient",
                          GLib.Variant("(a{sv})", ({"id": GLib.Variant("s", "cli")},)), None, 0, -1, None)
            return
        except GLib.Error as e:
            if not _still_starting(e) or time.monotonic() > deadline:
                raise
        if not waiting:
            sys.stderr.write(f"Waiting for apt-ostreed to start (D-Bus activation of {BUS_NAME} is taking "
                             "longer than D-Bus waits)...\n")
            sys.stderr.flush()
            waiting = True
        time.sleep(1)


def run(args: argparse.Namespace) -> int:
    """Run the parsed command as a daemon transaction; print its output; return its exit code."""
    from gi.repository import Gio, GLib

    method, signature, values = build_call(args)
    agent = _pkttyagent()
    try:
        try:
            bus = system_bus()
            register(bus)
            os_path = bus.call_sync(BUS_NAME, SYSROOT_PATH, SYSROOT_IFACE, "GetOS", GLib.Variant("(s)", ("",)),
                                    None, 0, -1, None).unpack()[0]
            reply = bus.call_sync(BUS_NAME, os_path, OS_IFACE, method, GLib.Variant(signature, values),
                                  None, Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION, 0x7FFFFFFF, None)
        except GLib.Error as e:
            raise daemon_error(e) from None
    finally:
        if agent is not None:
            agent.terminate()
    if method == "AutomaticUpdateTrigger":
        enabled, address = reply.unpack()
        if not enabled:
            sys.stdout.write("Automatic updates are not enabled.\n")
            return 0
    else:
        (address,) = reply.unpack()
    return follow(bus, address, TerminalProgress(verbose=bool(getattr(args, "verbose", False))))


def daemon_error(e: Any) -> AptOstreeError:
    from gi.repository import Gio

    name = Gio.DBusError.get_remote_error(e) or ""
    message = str(e.message).removeprefix(f"GDBus.Error:{name}: ")
    if name == ERROR_INVALID:
        return UsageError(message)
    if name == ERROR_BUSY:
        return DaemonError(message, hint="wait for it, or run without --no-queue to queue behind it")
    if name == ERROR_DENIED:
        return DaemonError(message, hint="run as root, or as a user polkit allows (an administrator)")
    return DaemonError(f"apt-ostreed: {message}")


def follow(bus: Any, address: str, progress: TerminalProgress) -> int:
    """Subscribe to the transaction at ``address``, start it, render its signals until it finishes."""
    from gi.repository import Gio, GLib

    loop = GLib.MainLoop()
    state: dict[str, Any] = {"result": None, "finished": False, "vanished": False, "cancelled": False}

    def on_signal(conn: Any, sender: str, path: str, iface: str, name: str, params: Any) -> None:
        a = params.unpack()
        if name == "TaskBegin":
            progress.step(a[0])
        elif name == "Message":
            progress.message(a[0])
        elif name == "Output":
            progress.output(a[0])
        elif name == "DownloadProgress":
            progress.download(int(a[0]), int(a[1]))
        elif name == "ProgressEnd":
            progress.done()
        elif name == "CommandResult":
            state["result"] = a
        elif name == "Finished":
            state["finished"] = True
            loop.quit()

    def vanished(*_: Any) -> None:
        state["vanished"] = True
        loop.quit()

    def interrupt() -> bool:
        if not state["cancelled"]:
            state["cancelled"] = True
            bus.call(BUS_NAME, address, TRANSACTION_IFACE, "Cancel", None, None, 0, -1, None, None)
        return True

    sub = bus.signal_subscribe(BUS_NAME, TRANSACTION_IFACE, None, address, None, Gio.DBusSignalFlags.NONE, on_signal)
    watch = Gio.bus_watch_name_on_connection(bus, BUS_NAME, Gio.BusNameWatcherFlags.NONE, None, vanished)
    sigint = GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, 2, interrupt)
    try:
        try:
            bus.call_sync(BUS_NAME, address, TRANSACTION_IFACE, "Start", None, GLib.VariantType("(b)"), 0, -1, None)
        except GLib.Error as e:
            raise daemon_error(e) from None
        loop.run()
    finally:
        GLib.source_remove(sigint)
        Gio.bus_unwatch_name(watch)
        bus.signal_unsubscribe(sub)
    if state["result"] is None:
        if state["vanished"]:
            raise DaemonError("apt-ostreed exited during the transaction",
                              hint="its worker stops with it: the new deployment was either written in full or "
                                   "not at all (see apt-ostree status)")
        raise DaemonError("the transaction finished without a result")
    code, out, err = state["result"]
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    return int(code)

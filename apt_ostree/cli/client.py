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
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, cast

from apt_ostree import verbs
from apt_ostree.core import ops
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
    error_class_name,
)
from apt_ostree.errors import AptOstreeError, DaemonError, UsageError
from apt_ostree.progress import TerminalProgress
from apt_ostree.verbs import ELEMENTS, MODIFIERS, OPTIONS, Verb

BOOTED_MARKER = Path("/run/ostree-booted")
SYSTEM_BUS_SOCKET = Path("/run/dbus/system_bus_socket")
ACTIVATION_WAIT = 300.0  # seconds to wait for a daemon that is still starting
ACTIVATION_TIMEOUTS = ("org.freedesktop.DBus.Error.TimedOut", "org.freedesktop.DBus.Error.NoReply",
                       "org.freedesktop.DBus.Error.TimeoutExpired")


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-queue", action="store_true",
                   help="fail if another transaction runs, instead of waiting for it")


def system_bus() -> Any:
    from gi.repository import Gio

    return Gio.bus_get_sync(Gio.BusType.SYSTEM, None)


def _has_bus() -> bool:
    return bool(os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")) or SYSTEM_BUS_SOCKET.exists()


def wants_daemon(args: argparse.Namespace) -> bool:
    """Whether this command goes through apt-ostreed."""
    if os.environ.get(NO_DAEMON_ENV) or not _has_bus():
        return False
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


def _variant(kind: str, value: Any) -> Any:
    from gi.repository import GLib

    return GLib.Variant(verbs.SIGNATURES[kind], list(value) if kind in ("list", "args") else value)


def _keyed(verb: Verb, op: ops.Op, into: str) -> dict[str, Any]:
    """The row's options that travel in the a{sv} ``into`` and are set in ``op``."""
    set_ = {o: ops.value(op, o.dest) for o in verb.opts if o.into == into}
    values = {o.dbus_key: _variant(o.kind, v) for o, v in set_.items() if v not in (None, False, "", ())}
    values.update({key: _variant({bool: "bool", str: "str", int: "int"}[type(v)], v)
                   for where, key, v in verb.send if where == into})
    if into == OPTIONS:
        values["initiating-command-line"] = _variant("str", "apt-ostree " + " ".join(sys.argv[1:]))
    return values


def build_call(verb: Verb, op: ops.Op, automatic: bool = False) -> tuple[str, str, list[Any]]:
    """(method, signature, arguments) of the call that makes apt-ostreed run ``op``, the request
    of the row ``verb``: its method's arguments are the row's ``call`` (daemon/requests.py makes
    the same request of it: tests/unit/test_verbs.py)."""
    from gi.repository import GLib

    if automatic:
        return "AutomaticUpdateTrigger", "(a{sv})", [{"mode": GLib.Variant("s", "auto")}]
    values: list[Any] = []
    for arg in verb.call:
        if arg in (OPTIONS, MODIFIERS):
            values.append(_keyed(verb, op, arg))
        elif arg == ELEMENTS:
            values.append([o.dbus_key for o in verb.opts if o.into == ELEMENTS and ops.value(op, o.dest)])
        else:
            value = ops.value(op, arg)
            kind = verb.kind(arg)
            values.append(list(value) if kind in ("list", "args") else value if kind == "bool" else value or "")
    return verb.method, f"({verb.signature()})", values


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


def run(args: argparse.Namespace, verb: Verb, op: ops.Op,
        automatic: bool = False) -> tuple[ops.Op, ops.Result] | None:
    """Run ``op`` (``automatic``: what apt-ostreed's AutomaticUpdatePolicy says) as a daemon transaction,
    drawing its progress: the request it ran and its typed result (None: the policy is none), or its
    typed error raised."""
    from gi.repository import Gio, GLib

    method, signature, values = build_call(verb, op, automatic)
    if getattr(args, "no_queue", False) and verbs.options_position(method) >= 0:
        values[verbs.options_position(method)]["no-queue"] = GLib.Variant("b", True)
    agent = _pkttyagent()
    try:
        try:
            bus = system_bus()
            register(bus)
            os_path = bus.call_sync(BUS_NAME, SYSROOT_PATH, SYSROOT_IFACE, "GetOS", GLib.Variant("(s)", ("",)),
                                    None, 0, -1, None).unpack()[0]
            reply = bus.call_sync(BUS_NAME, os_path, OS_IFACE, method, GLib.Variant(signature, tuple(values)),
                                  None, Gio.DBusCallFlags.ALLOW_INTERACTIVE_AUTHORIZATION, 0x7FFFFFFF, None)
        except GLib.Error as e:
            raise daemon_error(e) from None
    finally:
        if agent is not None:
            agent.terminate()
    if method == "AutomaticUpdateTrigger":
        enabled, address = reply.unpack()
        if not enabled:
            return None
    else:
        (address,) = reply.unpack()
    return follow(bus, address, TerminalProgress(verbose=bool(getattr(args, "verbose", False))))


def daemon_error(e: Any) -> AptOstreeError:
    """The error of a failed call: a transaction's typed error as its own class, the daemon's refusals
    with a hint."""
    from gi.repository import Gio

    from apt_ostree.core import wire

    name = Gio.DBusError.get_remote_error(e) or ""
    message = str(e.message).removeprefix(f"GDBus.Error:{name}: ")
    if name == ERROR_INVALID:
        return UsageError(message)
    if name == ERROR_BUSY:
        return DaemonError(message, hint="wait for it, or run without --no-queue to queue behind it")
    if name == ERROR_DENIED:
        return DaemonError(message, hint="run as root, or as a user polkit allows (an administrator)")
    typed = error_class_name(name)
    if typed is not None:
        text, _, hint = message.partition("\n")
        return wire.decode_error(typed, text, hint or None)
    return DaemonError(f"apt-ostreed: {message}")


def follow(bus: Any, address: str, progress: TerminalProgress) -> tuple[ops.Op, ops.Result]:
    """Subscribe to the transaction at ``address``, start it, render its signals until it finishes;
    then its result (GetResult)."""
    from gi.repository import Gio, GLib

    from apt_ostree.core import wire

    loop = GLib.MainLoop()
    state: dict[str, Any] = {"finished": False, "vanished": False, "cancelled": False}

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
    if not state["finished"]:
        raise DaemonError("apt-ostreed exited during the transaction",
                          hint="its worker stops with it: the new deployment was either written in full or "
                               "not at all (see apt-ostree status)")
    try:
        reply = bus.call_sync(BUS_NAME, address, TRANSACTION_IFACE, "GetResult", None, GLib.VariantType("(a{sv})"),
                              0, -1, None)
    except GLib.Error as e:
        raise daemon_error(e) from None
    values = reply.unpack()[0]
    op, result = wire.decode(json.loads(values["request"])), wire.decode(json.loads(values["json"]))
    if not isinstance(result, ops.Result) or not isinstance(op, ops.OPS):
        raise DaemonError("the transaction finished without a result")
    return cast("ops.Op", op), result

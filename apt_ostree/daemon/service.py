"""apt-ostreed: org.projectatomic.aptostree1 on the system bus.

The objects are exactly data/org.projectatomic.aptostree1.xml: a Sysroot object, one OS object per
stateroot, and a Transaction object per change. This module only translates: D-Bus arguments to
a :class:`~apt_ostree.daemon.requests.Command` (checked before anything is queued), polkit's
answer to a transaction or an error, the engine's state to properties. The engine runs in the
transactions' worker processes (:mod:`apt_ostree.daemon.transaction`).
"""

from __future__ import annotations

import json
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, GLib  # noqa: E402

from apt_ostree.core import config, wire  # noqa: E402
from apt_ostree.core.pkgdb import commit_packages, diff_packages  # noqa: E402
from apt_ostree.core.status import cached_update, deployment_json, status_json  # noqa: E402
from apt_ostree.core.sysroot import Deployment, Sysroot  # noqa: E402
from apt_ostree.daemon import polkit, requests  # noqa: E402
from apt_ostree.daemon.requests import Command  # noqa: E402
from apt_ostree.daemon.transaction import Transaction, TransactionQueue  # noqa: E402
from apt_ostree.daemon.variants import unpack_options, vardict  # noqa: E402
from apt_ostree.dbus_names import (  # noqa: E402
    BUS_NAME,
    ERROR_BUSY,
    ERROR_DENIED,
    ERROR_FAILED,
    ERROR_INVALID,
    OS_IFACE,
    SYSROOT_IFACE,
    SYSROOT_PATH,
    TRANSACTION_IFACE,
    error_name,
    introspection_xml,
    os_object_path,
)
from apt_ostree.errors import AptOstreeError  # noqa: E402

log = logging.getLogger(__name__)

TRANSACTION_METHODS = requests.transaction_methods()
IDLE_CHECK_SECONDS = 1


class Daemon:
    def __init__(self, connection: Gio.DBusConnection, sysroot: Path, config_file: Path | None = None) -> None:
        self.connection = connection
        self.sysroot_path = Path(sysroot)
        self.config_file = config_file
        self.loop = GLib.MainLoop()
        self.exit_code = 0
        self.stopping = False
        self.node = Gio.DBusNodeInfo.new_for_xml(introspection_xml())
        self.clients: dict[str, tuple[str, int]] = {}  # sender → (id, name watch)
        self.os_objects: dict[str, int] = {}  # osname → registration id
        self.last_activity = time.monotonic()
        self.config = self._load_config()
        self.queue = TransactionQueue(connection, self.node.lookup_interface(TRANSACTION_IFACE), self.sysroot_path,
                                      self._transactions_changed)
        self.queue.authorize_cancel = self._authorize_cancel

    # ------------------------------------------------------------ set-up
    def _sysroot(self) -> Sysroot:
        return Sysroot.open(self.sysroot_path)

    def _load_config(self) -> config.DaemonConfig:
        path = self.config_file
        if path is None:
            path = config.config_path(self._sysroot().merge_deployment().path)
        return config.load(path)

    def _export(self) -> None:
        self.connection.register_object(SYSROOT_PATH, self.node.lookup_interface(SYSROOT_IFACE),
                                        self._sysroot_call, self._sysroot_property, None)
        self._export_os()

    def _export_os(self) -> None:
        names = {d.osname for d in self._sysroot().deployments()}
        for name in set(self.os_objects) - names:
            self.connection.unregister_object(self.os_objects.pop(name))
        for name in sorted(names - set(self.os_objects)):
            self.os_objects[name] = self.connection.register_object(
                os_object_path(name), self.node.lookup_interface(OS_IFACE),
                self._os_call(name), self._os_property(name), None)

    def run(self) -> int:
        self._export()
        Gio.bus_own_name_on_connection(self.connection, BUS_NAME, Gio.BusNameOwnerFlags.DO_NOT_QUEUE,
                                       self._name_acquired, self._name_lost)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, self._terminate)
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGINT, self._terminate)
        GLib.timeout_add_seconds(IDLE_CHECK_SECONDS, self._idle_check)
        self.loop.run()
        return self.exit_code

    def _name_acquired(self, connection: Gio.DBusConnection, name: str) -> None:
        log.info("apt-ostreed ready on %s for sysroot %s", name, self.sysroot_path)

    def _name_lost(self, connection: Gio.DBusConnection, name: str) -> None:
        log.error("cannot own %s on the bus (another apt-ostreed, or not allowed by the bus policy)", name)
        self.exit_code = 1
        self.loop.quit()

    def _terminate(self) -> bool:
        log.info("stopping: cancelling transactions")
        self.stopping = True
        self.queue.cancel_all()
        if self.queue.running is None:
            self.loop.quit()
        return True

    def _idle_check(self) -> bool:
        if self.queue.busy or self.clients:
            self.last_activity = time.monotonic()
            return True
        timeout = self.config.idle_exit_timeout
        if timeout and time.monotonic() - self.last_activity >= timeout:
            log.info("idle for %d s: exiting", timeout)
            self.loop.quit()
            return False
        return True

    def _transactions_changed(self) -> None:
        self.last_activity = time.monotonic()
        if self.stopping and self.queue.running is None:
            self.loop.quit()
            return
        if self.queue.running is None:
            self._export_os()  # a transaction may have added a stateroot (rebase to another OS)
        changed = {"ActiveTransaction": self._active(), "ActiveTransactionPath": GLib.Variant("s", self._active_path()),
                   "QueuedTransactions": self._queued()}
        self.connection.emit_signal(None, SYSROOT_PATH, "org.freedesktop.DBus.Properties", "PropertiesChanged",
                                    GLib.Variant("(sa{sv}as)", (SYSROOT_IFACE, changed, ["Deployments"])))

    # ----------------------------------------------------- helpers
    def _active(self) -> GLib.Variant:
        t = self.queue.running or next(iter(self.queue.pending), None)
        return GLib.Variant("(sss)", t.summary if t else ("", "", ""))

    def _active_path(self) -> str:
        t = self.queue.running or next(iter(self.queue.pending), None)
        return t.path if t else ""

    def _queued(self) -> GLib.Variant:
        return GLib.Variant("a(sss)", [t.summary for t in self.queue.pending if t.state == "queued"])

    def _describe(self, sender: str) -> str:
        client = self.clients.get(sender, ("client", 0))[0]
        try:
            uid, pid = polkit.caller(self.connection, sender)
        except GLib.Error:
            return f"{client} ({sender})"
        return f"{client} (uid {uid}, pid {pid}, {sender})"

    @staticmethod
    def _error(invocation: Gio.DBusMethodInvocation, name: str, message: str) -> None:
        invocation.return_dbus_error(name, message)

    def _submit(self, sender: str, invocation: Gio.DBusMethodInvocation, build: Callable[[], Command | None],
                options: dict[str, Any], reply: Callable[[str], GLib.Variant]) -> None:
        """Check the request, authorize it, queue it, reply with the transaction's address."""
        self.last_activity = time.monotonic()
        try:
            built = build()
            if built is not None:
                built.op.validate()
        except AptOstreeError as e:
            self._error(invocation, ERROR_INVALID, e.message + (f" ({e.hint})" if e.hint else ""))
            return
        if built is None:  # AutomaticUpdateTrigger with the policy none
            invocation.return_value(GLib.Variant("(bs)", (False, "")))
            return
        command = built.with_title(options)

        def authorized(allowed: bool, reason: str) -> None:
            if not allowed:
                self._error(invocation, ERROR_DENIED, reason)
                return
            if self.stopping:
                self._error(invocation, ERROR_FAILED, "apt-ostreed is stopping")
                return
            if command.no_queue and self.queue.busy:
                running = self.queue.running or self.queue.pending[0]
                self._error(invocation, ERROR_BUSY, f"Transaction in progress: {running.command.title} "
                            f"(initiated by {running.description})")
                return
            t = self.queue.create(command, sender, self._describe(sender))
            invocation.return_value(reply(t.path))

        polkit.authorize(self.connection, sender, command.action, authorized)

    def _authorize_cancel(self, sender: str, invocation: Gio.DBusMethodInvocation, t: Transaction) -> None:
        def authorized(allowed: bool, reason: str) -> None:
            if not allowed:
                self._error(invocation, ERROR_DENIED, reason)
                return
            self.queue.cancel(t)
            invocation.return_value(None)

        polkit.authorize(self.connection, sender, "cancel", authorized)

    # ------------------------------------------------------- Sysroot
    def _sysroot_property(self, connection: Gio.DBusConnection, sender: str, path: str, iface: str,
                          name: str) -> GLib.Variant:
        self.last_activity = time.monotonic()
        if name == "Path":
            return GLib.Variant("s", str(self.sysroot_path))
        if name == "Booted":
            booted = next((d for d in self._sysroot().deployments() if d.booted), None)
            return GLib.Variant("o", os_object_path(booted.osname) if booted else "/")
        if name == "Deployments":
            return GLib.Variant("aa{sv}", [vardict(d) for d in status_json(self._sysroot())["deployments"]])
        if name == "ActiveTransaction":
            return self._active()
        if name == "ActiveTransactionPath":
            return GLib.Variant("s", self._active_path())
        if name == "QueuedTransactions":
            return self._queued()
        return GLib.Variant("s", self.config.automatic_update_policy)  # AutomaticUpdatePolicy

    def _sysroot_call(self, connection: Gio.DBusConnection, sender: str, path: str, iface: str, method: str,
                      params: GLib.Variant, invocation: Gio.DBusMethodInvocation) -> None:
        self.last_activity = time.monotonic()
        self._guarded(invocation, method, ERROR_FAILED,
                      lambda: self._sysroot_method(connection, sender, method, params.unpack(), invocation))

    def _guarded(self, invocation: Gio.DBusMethodInvocation, method: str, error: str, call: Callable[[], None]) -> None:
        """Run a method's handler; its error becomes the D-Bus error ``error`` (a bug: Failed)."""
        try:
            call()
        except AptOstreeError as e:
            self._error(invocation, error, e.message)
        except Exception as e:  # a bug must not take the daemon down with the other clients
            log.exception("%s failed", method)
            self._error(invocation, ERROR_FAILED, f"{method}: {e}")

    def _sysroot_method(self, connection: Gio.DBusConnection, sender: str, method: str, args: tuple[Any, ...],
                        invocation: Gio.DBusMethodInvocation) -> None:
        if method == "RegisterClient":
            if sender not in self.clients:
                watch = Gio.bus_watch_name_on_connection(connection, sender, Gio.BusNameWatcherFlags.NONE, None,
                                                         lambda *_: self._unregister(sender))
                self.clients[sender] = (str(args[0].get("id", "client")), watch)
            invocation.return_value(None)
        elif method == "UnregisterClient":
            self._unregister(sender)
            invocation.return_value(None)
        elif method in ("Reload", "ReloadConfig"):
            def authorized(allowed: bool, reason: str) -> None:
                if not allowed:
                    self._error(invocation, ERROR_DENIED, reason)
                    return
                try:
                    self.config = self._load_config()
                    if method == "Reload":
                        self._export_os()
                except AptOstreeError as e:
                    self._error(invocation, ERROR_FAILED, e.message)
                    return
                invocation.return_value(None)
            polkit.authorize(connection, sender, "reload-daemon", authorized)
        elif method == "GetOS":
            name = args[0] or self._sysroot().merge_deployment().osname
            if name not in self.os_objects:
                self._error(invocation, ERROR_INVALID, f"no stateroot {name!r}")
            else:
                invocation.return_value(GLib.Variant("(o)", (os_object_path(name),)))

    def _unregister(self, sender: str) -> None:
        entry = self.clients.pop(sender, None)
        if entry is not None:
            Gio.bus_unwatch_name(entry[1])
            self.last_activity = time.monotonic()

    # ------------------------------------------------------------ OS
    def _os_deployments(self, osname: str) -> tuple[Sysroot, list[Deployment]]:
        sysroot = self._sysroot()
        return sysroot, [d for d in sysroot.deployments() if d.osname == osname]

    def _os_property(self, osname: str) -> Callable[..., GLib.Variant]:
        def get(connection: Gio.DBusConnection, sender: str, path: str, iface: str, name: str) -> GLib.Variant:
            self.last_activity = time.monotonic()
            if name == "Name":
                return GLib.Variant("s", osname)
            sysroot, deployments = self._os_deployments(osname)
            repo = sysroot.repo()
            chosen: Deployment | None = None
            if name == "BootedDeployment":
                chosen = next((d for d in deployments if d.booted), None)
            elif name == "DefaultDeployment":
                chosen = deployments[0] if deployments else None
            elif name == "RollbackDeployment":
                chosen = sysroot.rollback_deployment(osname, deployments)
            elif name == "CachedUpdate":
                return GLib.Variant("a{sv}", vardict(cached_update(sysroot, deployments) or {}))
            return GLib.Variant("a{sv}", vardict(deployment_json(repo, chosen)) if chosen else {})
        return get

    def _os_call(self, osname: str) -> Callable[..., None]:
        def call(connection: Gio.DBusConnection, sender: str, path: str, iface: str, method: str,
                 params: GLib.Variant, invocation: Gio.DBusMethodInvocation) -> None:
            self._guarded(invocation, method, ERROR_INVALID,
                          lambda: self._os_method(osname, sender, method, params.unpack(), invocation))
        return call

    def _os_method(self, osname: str, sender: str, method: str, args: tuple[Any, ...],
                   invocation: Gio.DBusMethodInvocation) -> None:
        address: Callable[[str], GLib.Variant] = lambda p: GLib.Variant("(s)", (p,))  # noqa: E731
        position = TRANSACTION_METHODS.get(method)
        if position is not None:
            options = unpack_options(args[position]) if position >= 0 else {}
            policy = self.config.automatic_update_policy
            reply = address if method != "AutomaticUpdateTrigger" else lambda p: GLib.Variant("(bs)", (True, p))
            self._submit(sender, invocation, lambda: requests.from_call(method, args, policy), options,
                         reply)
        elif method == "Search":
            self._search(list(args[0]), invocation)
        elif method == "GetPackages":
            invocation.return_value(GLib.Variant("(aa{sv})", (self._packages(osname, args[0], args[1]),)))
        elif method == "GetDeploymentsPackageDiff":
            invocation.return_value(GLib.Variant("(aa{sv})", (self._diff(osname, args[0], args[1]),)))

    def _find(self, osname: str, deployment_id: str) -> Deployment:
        sysroot, deployments = self._os_deployments(osname)
        if not deployment_id:
            booted = next((d for d in deployments if d.booted), None)
            if booted is not None:
                return booted
            if deployments:
                return deployments[0]
        found = next((d for d in deployments if d.id == deployment_id), None)
        if found is None:
            raise AptOstreeError(f"no deployment {deployment_id!r} in stateroot {osname}")
        return found

    def _packages(self, osname: str, deployment_id: str, names: list[str]) -> list[dict[str, GLib.Variant]]:
        d = self._find(osname, deployment_id)
        pkgs = commit_packages(self._sysroot().repo(), d.checksum)
        return [vardict({"name": p.name, "version": p.version, "arch": p.arch})
                for p in pkgs if not names or p.name in names]

    def _diff(self, osname: str, id0: str, id1: str) -> list[dict[str, GLib.Variant]]:
        a, b = self._find(osname, id0), self._find(osname, id1)
        repo = self._sysroot().repo()
        diff = diff_packages(commit_packages(repo, a.checksum), commit_packages(repo, b.checksum))
        out = [{"name": p.name, "change": "added", "new-version": p.version} for p in diff.added]
        out += [{"name": p.name, "change": "removed", "old-version": p.version} for p in diff.removed]
        out += [{"name": c.name, "change": kind, "old-version": c.old, "new-version": c.new}
                for kind, changes in (("upgraded", diff.upgraded), ("downgraded", diff.downgraded)) for c in changes]
        return [vardict(x) for x in out]

    def _search(self, queries: list[str], invocation: Gio.DBusMethodInvocation) -> None:
        """Search runs in a worker (python-apt, the cached lists): the loop keeps serving."""
        try:
            op = requests.search(queries)
        except AptOstreeError as e:
            self._error(invocation, ERROR_INVALID, e.message)
            return
        launcher = Gio.SubprocessLauncher.new(Gio.SubprocessFlags.STDOUT_PIPE | Gio.SubprocessFlags.STDERR_PIPE)
        proc = launcher.spawnv(["/usr/bin/python3", "-m", "apt_ostree.daemon.worker", str(self.sysroot_path),
                                json.dumps(wire.encode(op))])

        def done(p: Gio.Subprocess, result: Gio.AsyncResult) -> None:
            try:
                _, out, err = p.communicate_utf8_finish(result)
            except GLib.Error as e:
                self._error(invocation, ERROR_FAILED, f"search failed: {e.message}")
                return
            events = [json.loads(line) for line in (out or "").splitlines() if line.startswith("{")]
            end = next((e for e in reversed(events) if "result" in e or "error" in e), None)
            if end is None or "error" in end:
                self._error(invocation, error_name(str(end["error"])) if end else ERROR_FAILED,
                            str(end["message"]) if end else f"search failed: {(err or '').strip()[-500:]}")
                return
            found = [{"name": n, "version": v, "summary": s} for n, v, s in end["result"]["found"]]
            invocation.return_value(GLib.Variant("(aa{sv})", ([vardict(x) for x in found],)))

        proc.communicate_utf8_async(None, None, done)


def serve(sysroot: Path, config_file: Path | None = None) -> int:
    """Run apt-ostreed on the system bus ($DBUS_SYSTEM_BUS_ADDRESS for a private bus) until idle."""
    try:
        connection = Gio.bus_get_sync(Gio.BusType.SYSTEM, None)
    except GLib.Error as e:
        raise AptOstreeError(f"cannot connect to the system bus: {e.message}") from None
    return Daemon(connection, sysroot, config_file).run()

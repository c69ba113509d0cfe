"""Transactions: a queue of requests, one running at a time, each in a worker process.

A transaction is created by a method call (after polkit said yes), exported on the bus at
``/org/projectatomic/aptostree1/Transaction/N`` and returned to the caller, who subscribes to its
signals and calls ``Start``. It runs when it has been started and every earlier transaction has
finished; until then it tells its client whom it waits for (rpm-ostree fails with "Transaction in
progress" instead); one nobody starts within 30 s is dropped. ``Cancel`` drops a waiting
transaction, or signals the running worker and its process group (it unwinds and changes
nothing, unless the final deployment write has already begun: apt_ostree/interrupt.py).
When it has finished, ``GetResult`` returns its typed result as ``a{sv}``, or fails with the
D-Bus error named after the error's class (``org.projectatomic.aptostree1.Error.UnknownPackage``).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gi.repository import Gio, GLib

from apt_ostree import interrupt
from apt_ostree.core import wire
from apt_ostree.daemon.requests import Command
from apt_ostree.daemon.results import result_vardict
from apt_ostree.dbus_names import ERROR_BUSY, TRANSACTION_IFACE, error_name, transaction_path
from apt_ostree.errors import EXIT_CANCELLED
from apt_ostree.run import spawn

log = logging.getLogger(__name__)

KEEP_FINISHED_SECONDS = 60  # a finished transaction stays on the bus for late readers
START_TIMEOUT_SECONDS = 30  # a transaction nobody starts within this time is dropped


@dataclass
class Transaction:
    serial: int
    command: Command
    sender: str
    description: str
    state: str = "queued"  # queued → running → finished
    start_requested: bool = False
    cancel_requested: bool = False
    proc: Any = None
    stdout: list[bytes] = field(default_factory=list)
    stderr: list[bytes] = field(default_factory=list)
    events: bytes = b""
    result: dict[str, Any] | None = None  # the worker's {"result": ...} (apt_ostree.core.wire)
    error: dict[str, Any] | None = None  # the worker's {"error": CLASS, "message": ..., "hint": ...}
    registration: int = 0
    io_watches: list[int] = field(default_factory=list)
    events_fd: int = -1
    task: str | None = None  # the step running now (TaskBegin sent, TaskEnd not yet)
    exit_code: int | None = None

    @property
    def path(self) -> str:
        return transaction_path(self.serial)

    @property
    def summary(self) -> tuple[str, str, str]:
        """rpm-ostree's ActiveTransaction triple: (title, initiating client, object path)."""
        return (self.command.title, self.description, self.path)


class TransactionQueue:
    """The daemon's transactions; emits their signals on ``connection``."""

    def __init__(self, connection: Gio.DBusConnection, interface: Gio.DBusInterfaceInfo, sysroot: Path,
                 on_change: Callable[[], None]) -> None:
        self.connection = connection
        self.interface = interface
        self.sysroot = sysroot
        self.on_change = on_change
        self.transactions: list[Transaction] = []
        self._serial = 0

    # ------------------------------------------------------------ state
    @property
    def running(self) -> Transaction | None:
        return next((t for t in self.transactions if t.state == "running"), None)

    @property
    def pending(self) -> list[Transaction]:
        return [t for t in self.transactions if t.state != "finished"]

    @property
    def busy(self) -> bool:
        return bool(self.pending)

    def create(self, command: Command, sender: str, description: str) -> Transaction:
        self._serial += 1
        t = Transaction(self._serial, command, sender, description)
        t.registration = self.connection.register_object(
            t.path, self.interface, self._method_closure(t), self._property_closure(t), None)
        GLib.timeout_add_seconds(START_TIMEOUT_SECONDS, self._expire, t)
        self.transactions.append(t)
        log.info("transaction %d created by %s: %s", t.serial, description, command.title)
        self.on_change()
        return t

    # ---------------------------------------------------------- D-Bus
    def _method_closure(self, t: Transaction) -> Callable[..., None]:
        def call(connection: Gio.DBusConnection, sender: str, path: str, iface: str, method: str,
                 params: GLib.Variant, invocation: Gio.DBusMethodInvocation) -> None:
            if method == "Start":
                invocation.return_value(GLib.Variant("(b)", (self.start(t),)))
            elif method == "GetResult":
                self._return_result(t, invocation)
            elif method == "Cancel":
                self.authorize_cancel(sender, invocation, t)
        return call

    def _property_closure(self, t: Transaction) -> Callable[..., GLib.Variant]:
        def get(connection: Gio.DBusConnection, sender: str, path: str, iface: str, name: str) -> GLib.Variant:
            if name == "Title":
                return GLib.Variant("s", t.command.title)
            return GLib.Variant("s", t.description)
        return get

    # set by the daemon: authorizes the sender for "cancel", then calls cancel()
    authorize_cancel: Callable[[str, Gio.DBusMethodInvocation, Transaction], None]

    def emit(self, t: Transaction, name: str, args: GLib.Variant | None = None) -> None:
        self.connection.emit_signal(None, t.path, TRANSACTION_IFACE, name, args)

    # --------------------------------------------------------- running
    def start(self, t: Transaction) -> bool:
        """The client is listening: run now if nothing runs before it, else say whom it waits for."""
        if t.state != "queued":
            return t.state == "running"
        t.start_requested = True
        self._advance()
        if t.state == "queued":
            ahead = next(x for x in self.transactions if x.state != "finished")
            self.emit(t, "Message", GLib.Variant("(s)", (
                f"Waiting for transaction {ahead.serial} ({ahead.command.title}, initiated by {ahead.description})",)))
            return False
        return True

    def _advance(self) -> None:
        """Start the first queued transaction if it has been started and nothing runs."""
        if self.running is not None:
            return
        for t in self.transactions:
            if t.state == "queued":
                if t.start_requested:
                    self._launch(t)
                return

    def _launch(self, t: Transaction) -> None:
        events_r, events_w = os.pipe()
        argv = [sys.executable if sys.executable.startswith("/usr/bin/") else "/usr/bin/python3",
                "-m", "apt_ostree.daemon.worker", str(self.sysroot), json.dumps(wire.encode(t.command.op))]
        env = {"APT_OSTREE_EVENTS_FD": str(events_w), "APT_OSTREE_DAEMON_PID": str(os.getpid())}
        if "PYTHONPATH" in os.environ:
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        try:
            t.proc = spawn(argv, env=env, pass_fds=(events_w,))
        except OSError as e:
            os.close(events_r)
            os.close(events_w)
            t.state = "running"
            t.error = {"error": "DaemonError", "message": f"cannot start the worker: {e}", "hint": None}
            self._finish(t, 1, "", "")
            return
        os.close(events_w)
        t.events_fd = events_r
        t.state = "running"
        log.info("transaction %d running (pid %d): %s", t.serial, t.proc.pid, t.command.title)
        assert t.proc.stdout is not None and t.proc.stderr is not None
        for fd, sink in ((events_r, None), (t.proc.stdout.fileno(), t.stdout), (t.proc.stderr.fileno(), t.stderr)):
            os.set_blocking(fd, False)
            t.io_watches.append(GLib.io_add_watch(fd, GLib.PRIORITY_DEFAULT, GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR,
                                                  self._readable, t, sink))
        GLib.child_watch_add(GLib.PRIORITY_DEFAULT, t.proc.pid, self._exited, t)
        self.on_change()

    def _readable(self, fd: int, condition: int, t: Transaction, sink: list[bytes] | None) -> bool:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""
        if not data:
            if sink is None:
                self._events(t, b"\n")
            return False
        if sink is not None:
            sink.append(data)
        else:
            self._events(t, data)
        return True

    def _events(self, t: Transaction, data: bytes) -> None:
        t.events += data
        *lines, t.events = t.events.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._signal(t, event)

    def _signal(self, t: Transaction, event: dict[str, Any]) -> None:
        if "error" in event:  # (before "message": an error has one too)
            t.error = event
        elif "result" in event:
            t.result = event["result"]
        elif "step" in event:
            self._end_task(t)
            t.task = str(event["step"])
            self.emit(t, "TaskBegin", GLib.Variant("(s)", (t.task,)))
        elif "message" in event:
            self.emit(t, "Message", GLib.Variant("(s)", (str(event["message"]),)))
        elif "output" in event:
            self.emit(t, "Output", GLib.Variant("(s)", (str(event["output"]),)))
        elif "download" in event:
            done, total = (int(x) for x in event["download"])
            self.emit(t, "DownloadProgress", GLib.Variant("(tt)", (done, total)))
            if total:
                self.emit(t, "PercentProgress", GLib.Variant("(su)", ("Downloading", min(100, done * 100 // total))))
        elif "done" in event:
            self._end_task(t)
            self.emit(t, "ProgressEnd")

    def _end_task(self, t: Transaction) -> None:
        if t.task is not None:
            self.emit(t, "TaskEnd", GLib.Variant("(s)", (t.task,)))
            t.task = None

    def _exited(self, pid: int, status: int, t: Transaction) -> None:
        try:
            code = os.waitstatus_to_exitcode(status)
        except ValueError:
            code = 1
        t.proc.returncode = code  # reaped by GLib: keep subprocess from waiting for it again
        for watch in t.io_watches:  # read what is left, then stop watching
            if GLib.main_context_default().find_source_by_id(watch) is not None:
                GLib.source_remove(watch)
        t.io_watches = []
        for fd, sink in ((t.events_fd, None), (t.proc.stdout.fileno(), t.stdout), (t.proc.stderr.fileno(), t.stderr)):
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                self._events(t, chunk) if sink is None else sink.append(chunk)
        self._events(t, b"\n")
        os.close(t.events_fd)
        out = b"".join(t.stdout).decode(errors="replace")
        err = b"".join(t.stderr).decode(errors="replace")
        if code < 0:
            t.error = {"error": "DaemonError", "message": f"the transaction's worker was killed by signal {-code}",
                       "hint": None}
            code = 1
        elif t.result is None and t.error is None:
            t.error = {"error": "DaemonError", "message": f"the transaction's worker exited {code} without a result",
                       "hint": "the daemon's journal has its output: journalctl -u apt-ostreed"}
        self._finish(t, code, out, err)

    def _finish(self, t: Transaction, code: int, out: str, err: str) -> None:
        t.state, t.exit_code = "finished", code
        if t.proc is not None:
            for stream in (t.proc.stdout, t.proc.stderr):
                stream.close()
        message = str(t.error.get("message") or "") if t.error else ""
        log.info("transaction %d finished: exit %d %s", t.serial, code, message)
        if out.strip() or err.strip():
            log.info("transaction %d worker output: %s", t.serial, (out + err)[-3000:].strip())
        self.emit(t, "Finished", GLib.Variant("(bs)", (t.error is None, message)))
        GLib.timeout_add_seconds(KEEP_FINISHED_SECONDS, self._forget, t)
        self._advance()
        self.on_change()

    def _return_result(self, t: Transaction, invocation: Gio.DBusMethodInvocation) -> None:
        if t.state != "finished":
            invocation.return_dbus_error(ERROR_BUSY, f"transaction {t.serial} has not finished")
        elif t.error is not None:
            hint = t.error.get("hint")
            invocation.return_dbus_error(error_name(str(t.error.get("error"))),
                                         str(t.error.get("message")) + (f"\n{hint}" if hint else ""))
        else:
            result = result_vardict(t.result or {})
            result["request"] = GLib.Variant("s", json.dumps(wire.encode(t.command.op)))
            invocation.return_value(GLib.Variant("(a{sv})", (result,)))

    def _forget(self, t: Transaction) -> bool:
        self.connection.unregister_object(t.registration)
        self.transactions.remove(t)
        return False

    # ------------------------------------------------------ cancelling
    def cancel(self, t: Transaction) -> None:
        if t.state == "queued":
            log.info("transaction %d cancelled before it ran", t.serial)
            t.error = {"error": "Cancelled", "message": "cancelled", "hint": None}
            self._finish(t, EXIT_CANCELLED, "", "")
        elif t.state == "running" and not t.cancel_requested:
            t.cancel_requested = True
            self.emit(t, "Message", GLib.Variant("(s)", ("Cancelling...",)))
            try:
                os.kill(t.proc.pid, interrupt.CANCEL_SIGNAL)  # the worker: raises Cancelled
                os.killpg(t.proc.pid, signal.SIGINT)  # dpkg and its scripts (the worker leads its group)
            except ProcessLookupError:
                pass

    def _expire(self, t: Transaction) -> bool:
        if t.state == "queued" and not t.start_requested:  # nobody started it: do not block the queue
            log.info("transaction %d was never started: dropped", t.serial)
            self.cancel(t)
        return False

    def cancel_all(self) -> None:
        """The daemon stops: queued transactions are dropped, the running one is cancelled."""
        for t in list(self.transactions):
            self.cancel(t)

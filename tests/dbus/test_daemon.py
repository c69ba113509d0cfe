"""apt-ostreed on a private system-like bus, serving a sysroot directory: its interface against the
committed XML, the CLI through it (same output as in-process), busctl and Gio as clients, progress
signals in order, the queue, --no-queue, cancel, a daemon killed mid-transaction, idle exit."""

from __future__ import annotations

import json
import re
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from tests.cleanup import mounts_below
from tests.conftest import Composed, error_lines
from tests.dbus.conftest import Bus, Daemon, cli, cli_background, gone, layer_sysroot, start_daemon, wait_for_process
from tests.debrepo import SignedRepo
from tests.root.test_deployments import derive
from tests.root.test_layering import fsck

pytestmark = pytest.mark.dbus

TOP = Path(__file__).resolve().parent.parent.parent
NAME = "org.projectatomic.aptostree1"
SYSROOT = "/org/projectatomic/aptostree1/Sysroot"
OS = "/org/projectatomic/aptostree1/debian"


def busctl(bus: Bus, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["busctl", f"--address={bus.address}", *args], capture_output=True, text=True)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def deployments(root: Path) -> list[dict[str, Any]]:
    data = json.loads(subprocess.run(
        ["/usr/bin/python3", "-m", "apt_ostree.cli.main", "status", "--json", "--sysroot", str(root)],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "APT_OSTREE_NO_DAEMON": "1"},
        check=True, capture_output=True, text=True).stdout)
    return list(data["deployments"])


def ids(root: Path) -> list[str]:
    return [str(d["id"]) for d in deployments(root)]


def interfaces(xml: str) -> dict[str, list[tuple[str, ...]]]:
    """Each apt-ostree interface as a sorted list of its members and their signatures."""
    out = {}
    for iface in ET.fromstring(xml).iter("interface"):
        name = iface.get("name", "")
        if not name.startswith(NAME):
            continue
        members = []
        for m in iface:
            args = tuple(f"{a.get('direction', 'out' if m.tag == 'method' else '')}:{a.get('type')}"
                         for a in m.iter("arg"))
            members.append((m.tag, m.get("name", ""), m.get("type", ""), m.get("access", ""), *args))
        out[name] = sorted(members)
    return out


def test_interface_matches_committed_xml(daemon_root: Daemon) -> None:
    bus = daemon_root.bus
    expected = interfaces((TOP / "data/org.projectatomic.aptostree1.xml").read_text())
    seen = interfaces(busctl(bus, "introspect", "--xml-interface", NAME, SYSROOT).stdout)
    seen.update(interfaces(busctl(bus, "introspect", "--xml-interface", NAME, OS).stdout))
    # a transaction: a rollback nobody starts
    path = busctl(bus, "call", NAME, OS, f"{NAME}.OS", "Rollback", "a{sv}", "0").stdout.split('"')[1]
    seen.update(interfaces(busctl(bus, "introspect", "--xml-interface", NAME, path).stdout))
    assert seen == expected
    # queued (busctl left the bus; a transaction waits 30 s to be started), then cancelled with busctl
    assert busctl(bus, "get-property", NAME, SYSROOT, f"{NAME}.Sysroot", "ActiveTransactionPath").stdout.strip() \
        == f's "{path}"'
    busctl(bus, "call", NAME, path, f"{NAME}.Transaction", "Cancel")
    time.sleep(0.5)
    assert busctl(bus, "get-property", NAME, SYSROOT, f"{NAME}.Sysroot", "ActiveTransactionPath").stdout.strip() \
        == 's ""'
    assert busctl(bus, "get-property", NAME, SYSROOT, f"{NAME}.Sysroot", "Path").stdout.strip() \
        == f's "{daemon_root.sysroot}"'
    assert len(ids(daemon_root.sysroot)) == 1  # the cancelled rollback never ran


def _masked(text: str) -> str:
    return re.sub(r"\b[0-9a-f]{12,64}\b", "CSUM", text)


def test_cli_through_the_daemon_prints_what_in_process_prints(
        daemon_root: Daemon, updates_template: Path, minimal: Composed, dbus_repo: SignedRepo,
        tmp_path: Path) -> None:
    bus = daemon_root.bus
    other = layer_sysroot(tmp_path / "in-process", daemon_root.sysroot.parent / "updates", minimal, dbus_repo)
    steps = [
        ("install", "aot-hello", "--dry-run"),
        ("install", "aot-hello"),
        ("install", "aot-hello"),  # already requested: an error
        ("install", "aot-fail"),  # a failing postinst: an error with the script's output
        ("uninstall", "--idempotent", "aot-nothere", "--unchanged-exit-77"),
        ("kargs", "--append", "aot.test=1"),
        ("rollback",),
        ("cleanup", "-r"),
        ("override", "remove", "aot-nothere"),
        ("uninstall", "--all"),
        ("initramfs", "--disable", "--unchanged-exit-77"),  # SetInitramfsState: already disabled
        ("initramfs-etc", "--untrack-all"),  # InitramfsEtc: nothing tracked
        ("apply-live",),  # LiveFs: not the booted system (the vm tier applies live)
        ("install", "-A", "aot-hello"),  # nothing deployed: -A needs the booted system
        ("uninstall", "-A", "aot-hello"),  # a live removal asks for --allow-replacement
    ]
    for step in steps:
        via = cli(bus, *step, "--sysroot", daemon_root.sysroot, check=False)
        local = cli(bus, *step, "--sysroot", other, check=False, daemon=False)
        what = " ".join(step)
        assert via.returncode == local.returncode, (what, via.stderr, local.stderr)
        assert _masked(via.stdout) == _masked(local.stdout), what
        assert error_lines(via) == error_lines(local), what
        assert [_masked(ln) for ln in via.stderr.splitlines() if ln.startswith("==> ")] == \
            [_masked(ln) for ln in local.stderr.splitlines() if ln.startswith("==> ")], what
    assert "post-installation script subprocess returned error exit status 3" in "".join(
        error_lines(cli(bus, "install", "aot-fail", "--sysroot", daemon_root.sysroot, check=False)))
    assert [d["requested-packages"] for d in deployments(daemon_root.sysroot)] == \
        [d["requested-packages"] for d in deployments(other)]
    assert "transaction 1 running" in daemon_root.log.read_text()
    fsck(daemon_root.sysroot)


def _connect(bus: Bus) -> Any:
    from gi.repository import Gio

    return Gio.DBusConnection.new_for_address_sync(
        bus.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)


def _result(bus: Bus, path: str) -> dict[str, Any]:
    """A transaction's typed result, read by a client of its own (GetResult); GLib.Error if it failed."""
    conn = _connect(bus)
    try:
        return dict(conn.call_sync(NAME, path, f"{NAME}.Transaction", "GetResult", None, None, 0, -1,
                                   None).unpack()[0])
    finally:
        conn.close_sync(None)


def _call(bus: Bus, method: str, signature: str, args: tuple[Any, ...]) -> tuple[str, list[tuple[str, Any]]]:
    """Call an OS method with Gio, start the transaction, collect its signals until Finished."""
    from gi.repository import GLib

    conn = _connect(bus)
    (path,) = conn.call_sync(NAME, OS, f"{NAME}.OS", method, GLib.Variant(signature, args), None, 0, -1,
                             None).unpack()
    seen: list[tuple[str, Any]] = []
    loop = GLib.MainLoop()

    def on_signal(_c: Any, _s: str, _p: str, _i: str, name: str, params: Any) -> None:
        seen.append((name, params.unpack()))
        if name == "Finished":
            loop.quit()

    conn.signal_subscribe(NAME, f"{NAME}.Transaction", None, path, None, 0, on_signal)
    GLib.timeout_add_seconds(600, loop.quit)
    conn.call_sync(NAME, path, f"{NAME}.Transaction", "Start", None, None, 0, -1, None)
    loop.run()
    conn.close_sync(None)
    return path, seen


def test_progress_signals_in_order_and_busctl_upgrade_rollback(daemon_root: Daemon) -> None:
    from gi.repository import GLib

    bus, root = daemon_root.bus, daemon_root.sysroot
    from gi.repository import Gio

    # an unknown package: Finished(false, message), and GetResult fails with the error's own name
    path, seen = _call(bus, "PkgChange", "(a{sv}asas)", ({}, ["aot-no-such-package"], []))
    assert seen[-1][0] == "Finished" and seen[-1][1][0] is False and "aot-no-such-package" in seen[-1][1][1]
    try:
        _result(bus, path)
        raise AssertionError("GetResult of a failed transaction returned a result")
    except GLib.Error as e:
        assert Gio.DBusError.get_remote_error(e) == f"{NAME}.Error.UnknownPackage", e.message
        assert "aot-no-such-package" in e.message
    # a successful change: its signals in order, then the typed result (for another client too)
    path, seen = _call(bus, "PkgChange", "(a{sv}asas)", ({}, ["aot-hello"], []))
    names = [n for n, _ in seen]
    assert names[0] == "TaskBegin" and names[-3:] == ["TaskEnd", "ProgressEnd", "Finished"], names
    tasks = [(n, a[0]) for n, a in seen if n in ("TaskBegin", "TaskEnd")]
    assert tasks == [(n, title) for _, title in tasks[::2] for n in ("TaskBegin", "TaskEnd")], tasks
    assert [a[0] for n, a in seen if n == "TaskBegin"][-1].startswith("Deploying")
    assert seen[-1][1] == (True, "")
    result = _result(bus, path)
    new = deployments(root)[0]
    assert new["requested-packages"] == ["aot-hello"]
    assert result["changed"] is True and result["deployment"] == new["id"] and result["staged"] is False
    assert result["checksum"] == new["checksum"] and result["previous"] == deployments(root)[1]["checksum"]
    assert ("aot-hello", "1.0") in result["packages-added"] and result["packages-removed"] == []
    # a refused request: an error from the method itself, nothing queued
    try:
        _call(bus, "Upgrade", "(a{sv})", ({"no-such-option": GLib.Variant("b", True)},))
        raise AssertionError("an unknown option was accepted")
    except GLib.Error as e:
        assert "unknown option 'no-such-option' for Upgrade" in e.message
    # busctl drives an upgrade (a new commit on the remote) and a rollback
    updates = root.parent / "updates"
    derive(updates, "test/os", "12.dbus-upgrade", {"usr/share/aot-upgrade/README": "x\n"}, root.parent)
    for method, signature, args in (("Upgrade", "a{sv}", ["0"]), ("Rollback", "a{sv}", ["0"])):
        before = ids(root)
        path = busctl(bus, "call", NAME, OS, f"{NAME}.OS", method, signature, *args).stdout.split('"')[1]
        busctl(bus, "call", NAME, path, f"{NAME}.Transaction", "Start")
        for _ in range(600):
            if ids(root) != before and busctl(bus, "get-property", NAME, SYSROOT, f"{NAME}.Sysroot",
                                              "ActiveTransactionPath").stdout.strip() == 's ""':
                break
            time.sleep(0.5)
        if method == "Upgrade":
            new = deployments(root)[0]
            assert new["version"] == "12.dbus-upgrade" and new["requested-packages"] == ["aot-hello"]
        else:
            assert ids(root) == [before[1], before[0]]
    fsck(root)


def test_queue_no_queue_and_cancel(daemon_root: Daemon) -> None:
    bus, root = daemon_root.bus, daemon_root.sysroot
    before = ids(root)
    slow = cli_background(bus, "install", "aot-slow", "--sysroot", root)
    wait_for_process("aot-slow.postinst")
    refused = cli(bus, "install", "aot-opt", "--no-queue", "--sysroot", root, check=False)
    assert refused.returncode == 1
    assert error_lines(refused)[0].startswith("error: Transaction in progress: apt-ostree install aot-slow"), \
        refused.stderr
    queued = cli_background(bus, "install", "aot-opt", "--sysroot", root)
    time.sleep(3)
    assert queued.poll() is None  # waiting behind aot-slow
    cancel = cli(bus, "cancel", "--sysroot", root)
    assert cancel.stdout.startswith("Cancelled: apt-ostree install aot-slow")
    _, err = slow.communicate(timeout=120)
    assert slow.returncode == 130 and "error: cancelled" in err, err
    out, err = queued.communicate(timeout=600)
    assert queued.returncode == 0, err
    assert "Waiting for transaction" in err and "aot-slow" in err
    assert gone("aot-slow.postinst")
    new = deployments(root)
    assert [d["requested-packages"] for d in new] == [["aot-opt"], []]  # aot-slow left no trace
    assert [d["id"] for d in new][1:] == before
    assert mounts_below(root) == []
    fsck(root)


def test_two_concurrent_installs_both_succeed(daemon_root: Daemon) -> None:
    bus, root = daemon_root.bus, daemon_root.sysroot
    first = cli_background(bus, "install", "aot-conffile", "--sysroot", root)
    second = cli_background(bus, "install", "aot-var", "--sysroot", root)
    results = [p.communicate(timeout=600) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, results
    assert any("Waiting for transaction" in err for _, err in results)
    assert sorted(deployments(root)[0]["requested-packages"]) == ["aot-conffile", "aot-var"]
    fsck(root)


def test_daemon_killed_mid_transaction_changes_nothing(daemon_root: Daemon) -> None:
    bus, root = daemon_root.bus, daemon_root.sysroot
    before = ids(root)
    slow = cli_background(bus, "install", "aot-slow", "--sysroot", root)
    wait_for_process("aot-slow.postinst")
    daemon_root.proc.kill()
    _, err = slow.communicate(timeout=120)
    assert slow.returncode == 1 and "error: apt-ostreed exited during the transaction" in err, err
    for _ in range(240):
        if gone("apt_ostree.daemon.worker") and gone("aot-slow.postinst"):
            break
        time.sleep(0.5)
    assert gone("apt_ostree.daemon.worker") and gone("aot-slow.postinst")
    assert ids(root) == before
    assert mounts_below(root) == []
    fsck(root)
    # the lock was released: the next daemon can change the system
    again = start_daemon(bus, root)
    try:
        cli(bus, "install", "aot-hello", "--sysroot", root)
    finally:
        again.stop()


def test_idle_daemon_exits_and_automatic_policy(daemon_root: Daemon) -> None:
    bus, root = daemon_root.bus, daemon_root.sysroot
    daemon_root.stop()
    idle = start_daemon(bus, root, "[Daemon]\nIdleExitTimeout=2\nAutomaticUpdatePolicy=check\n")
    assert busctl(bus, "get-property", NAME, SYSROOT, f"{NAME}.Sysroot", "AutomaticUpdatePolicy").stdout.strip() \
        == 's "check"'
    check = cli(bus, "upgrade", "--trigger-automatic-update-policy", "--sysroot", root)
    assert check.stdout.startswith("No upgrade available."), check.stdout
    idle.proc.wait(timeout=30)
    assert idle.proc.returncode == 0
    assert "idle for 2 s: exiting" in idle.log.read_text()


def test_unprivileged_caller_is_refused_without_polkit(daemon_root: Daemon) -> None:
    """No polkit on the private bus: a non-root caller's change is refused (fails closed)."""
    bus, root = daemon_root.bus, daemon_root.sysroot
    proc = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "busctl",
                           f"--address={bus.address}", "call", NAME, OS, f"{NAME}.OS", "PkgChange", "a{sv}asas",
                           "0", "1", "aot-hello", "0"], capture_output=True, text=True)
    assert proc.returncode != 0 and "org.projectatomic.aptostree1.install-uninstall-packages" in proc.stderr, \
        proc.stderr
    assert len(ids(root)) == 1


def _bus_call(bus: Bus, path: str, iface: str, method: str, signature: str | None, args: tuple[Any, ...]) -> Any:
    from gi.repository import Gio, GLib

    conn = Gio.DBusConnection.new_for_address_sync(
        bus.address, Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION,
        None, None)
    try:
        reply = conn.call_sync(NAME, path, iface, method, GLib.Variant(signature, args) if signature else None,
                               None, 0, -1, None)
    finally:
        conn.close_sync(None)
    return reply.unpack() if reply is not None else None


def _prop(bus: Bus, path: str, iface: str, name: str) -> Any:
    return _bus_call(bus, path, "org.freedesktop.DBus.Properties", "Get", "(ss)", (iface, name))[0]


def test_read_only_methods_and_properties(daemon_root: Daemon) -> None:
    """Search, GetPackages, the package diff, GetOS, the deployment properties and CachedUpdate."""
    from gi.repository import GLib

    bus, root = daemon_root.bus, daemon_root.sysroot
    cli(bus, "install", "aot-hello", "--sysroot", root)
    new, old = deployments(root)
    os_iface, sysroot_iface = f"{NAME}.OS", f"{NAME}.Sysroot"
    (found,) = _bus_call(bus, OS, os_iface, "Search", "(as)", (["aot-hel"],))
    assert [(p["name"], p["version"]) for p in found] == [("aot-hello", "1.0")]
    (pkgs,) = _bus_call(bus, OS, os_iface, "GetPackages", "(sas)", ("", ["aot-hello", "aot-lib"]))
    assert sorted(p["name"] for p in pkgs) == ["aot-hello", "aot-lib"]
    (pkgs,) = _bus_call(bus, OS, os_iface, "GetPackages", "(sas)", (old["id"], ["aot-hello"]))
    assert pkgs == []
    (changes,) = _bus_call(bus, OS, os_iface, "GetDeploymentsPackageDiff", "(ss)", (old["id"], new["id"]))
    assert sorted((c["name"], c["change"]) for c in changes) == [
        ("aot-base-lib", "added"), ("aot-hello", "added"), ("aot-lib", "added")]
    assert _prop(bus, OS, os_iface, "Name") == "debian"
    assert _prop(bus, OS, os_iface, "DefaultDeployment")["id"] == new["id"]
    assert _prop(bus, OS, os_iface, "RollbackDeployment")["id"] == old["id"]
    assert _prop(bus, OS, os_iface, "BootedDeployment") == {}
    assert _prop(bus, SYSROOT, sysroot_iface, "Booted") == "/"
    listed = _prop(bus, SYSROOT, sysroot_iface, "Deployments")
    assert [d["id"] for d in listed] == [new["id"], old["id"]] and listed[0]["requested-packages"] == ["aot-hello"]
    assert _bus_call(bus, SYSROOT, sysroot_iface, "GetOS", "(s)", ("debian",)) == (OS,)
    try:
        _bus_call(bus, SYSROOT, sysroot_iface, "GetOS", "(s)", ("fedora",))
        raise AssertionError("GetOS of an unknown stateroot succeeded")
    except GLib.Error as e:
        assert "no stateroot 'fedora'" in e.message
    _bus_call(bus, SYSROOT, sysroot_iface, "ReloadConfig", None, ())
    # CachedUpdate: a newer commit of the origin fetched by `upgrade --check`
    assert _prop(bus, OS, os_iface, "CachedUpdate") == {}
    head = derive(root.parent / "updates", "test/os", "12.cached", {"usr/share/aot-cached": "x\n"}, root.parent)
    assert "Available commit: " + head in cli(bus, "upgrade", "--check", "--sysroot", root).stdout
    cached = _prop(bus, OS, os_iface, "CachedUpdate")
    assert cached["checksum"] == head and cached["version"] == "12.cached"
    human = cli(bus, "status", "--sysroot", root).stdout
    assert "AvailableUpdate:" in human and head in human, human

"""Crafted D-Bus calls to apt-ostreed: options of the wrong type, unknown and empty keys, bad package
names, refspecs and revisions, deployments that do not exist, argument signatures that do not match.

Each call is sent with Gio, its variants built with exactly the crafted type, so the wrong inner types
really reach the daemon (a client library would have converted them). A call must come back as a
D-Bus error, never a transaction, whose one-line message names the culprit, with no traceback (in the
message or in the daemon's log). A value only the engine can judge (a package name, a deployment
index, a ref: the worker checks them) is accepted by the call; its transaction, once started, must
fail in the same way: Finished(false, a message naming it) and GetResult's typed error. Either way
nothing changes: the daemon runs and answers, the deployments and the repository's refs are the
same, no transaction is active or queued. One daemon serves every case of the module.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cleanup import remove_tree
from tests.conftest import Composed
from tests.dbus.conftest import Bus, Daemon, layer_sysroot, start_daemon
from tests.dbus.test_daemon import NAME, OS, SYSROOT, _bus_call, _call, _prop, _result, busctl, ids
from tests.debrepo import SignedRepo

pytestmark = pytest.mark.dbus

OS_IFACE, SYSROOT_IFACE, TRANSACTION_IFACE = f"{NAME}.OS", f"{NAME}.Sysroot", f"{NAME}.Transaction"
TRANSACTIONS = "/org/projectatomic/aptostree1/Transaction/"
REFUSED = f"{NAME}.Error.InvalidArgs"  # apt-ostreed's refusal of a call
BAD_SIGNATURE = "org.freedesktop.DBus.Error.InvalidArgs"  # GDBus's, before apt-ostreed's handler runs
USAGE = f"{NAME}.Error.UsageError"  # a transaction's typed error (GetResult)
LONG = "a" * 3000
KARGS = "(sasasasa{sv})"  # KernelArgs: existing, append, replace, delete, options


@dataclass(frozen=True)
class V:
    """A GLib.Variant of exactly ``type``, made when the call is sent (gi is imported lazily, as in
    test_daemon: collecting the other tiers needs no gi)."""

    type: str
    value: Any


@dataclass(frozen=True)
class Crafted:
    method: str
    signature: str  # the call's own: the method's, or (BAD_SIGNATURE) another
    args: tuple[Any, ...]
    culprit: tuple[str, ...]  # what the error's message names
    error: str = REFUSED  # the D-Bus error's name (started: GetResult's)
    started: bool = False  # accepted by the call, refused by its transaction when started
    path: str = OS
    iface: str = OS_IFACE


def _variants(value: Any) -> Any:
    """``value`` with every :class:`V` in it made a GLib.Variant."""
    from gi.repository import GLib

    if isinstance(value, V):
        return GLib.Variant(value.type, _variants(value.value))
    if isinstance(value, dict):
        return {k: _variants(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_variants(v) for v in value)
    return value


def _refs(root: Path) -> list[str]:
    return sorted(subprocess.run(["ostree", "refs", f"--repo={root / 'ostree/repo'}"], check=True,
                                 capture_output=True, text=True).stdout.split())


@dataclass
class Served:
    daemon: Daemon
    ids: list[str]  # as the cases found them: the same after each
    refs: list[str]

    @property
    def bus(self) -> Bus:
        return self.daemon.bus


@pytest.fixture(scope="module")
def served(updates_template: Path, minimal: Composed, dbus_repo: SignedRepo, bus: Bus,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """daemon_root's sysroot and apt-ostreed, once for the module (starting it costs seconds)."""
    top = tmp_path_factory.mktemp("crafted")
    updates = top / "updates"
    subprocess.run(["cp", "-al", str(updates_template), str(updates)], check=True)
    daemon = start_daemon(bus, layer_sysroot(top / "sysroot", updates, minimal, dbus_repo))
    try:
        yield Served(daemon, ids(daemon.sysroot), _refs(daemon.sysroot))
    finally:
        daemon.stop()
    remove_tree(top)


def _remote_error(e: Any) -> tuple[str, str]:
    """A GLib.Error's D-Bus error name and its message without GDBus's prefix."""
    from gi.repository import Gio

    name = str(Gio.DBusError.get_remote_error(e) or "")
    return name, str(e.message).removeprefix(f"GDBus.Error:{name}: ")


def _cancel(served: Served, path: str) -> str:
    """Cancel a transaction the call should not have queued (the next cases start from nothing); its title."""
    title = str(_prop(served.bus, path, TRANSACTION_IFACE, "Title"))
    _bus_call(served.bus, path, TRANSACTION_IFACE, "Cancel", None, ())
    for _ in range(50):
        if _prop(served.bus, SYSROOT, SYSROOT_IFACE, "ActiveTransactionPath") == "":
            break
        time.sleep(0.1)
    return title


def _refused_call(served: Served, case: Crafted) -> tuple[str, str]:
    """The call's D-Bus error (name, message); a reply fails the case."""
    from gi.repository import GLib

    try:
        reply = _bus_call(served.bus, case.path, case.iface, case.method, case.signature, _variants(case.args))
    except GLib.Error as e:
        return _remote_error(e)
    queued = [_cancel(served, item) for item in reply or () if isinstance(item, str) and item.startswith(TRANSACTIONS)]
    raise AssertionError(f"{case.method} was not refused: it replied {reply!r} (queued: {queued})")


def _refused_start(served: Served, case: Crafted) -> tuple[str, str]:
    """The call queues a transaction; started, it finishes failed: (GetResult's error name, Finished's message,
    which is the first line of GetResult's)."""
    from gi.repository import GLib

    path, seen = _call(served.bus, case.method, case.signature, _variants(case.args))
    assert seen and seen[-1][0] == "Finished", seen
    success, message = seen[-1][1]
    assert success is False, seen
    try:
        result = _result(served.bus, path)
    except GLib.Error as e:
        name, text = _remote_error(e)
        assert text.splitlines()[0] == message, (text, message)  # (then the error's hint, if it has one)
        assert "Traceback" not in text and 'File "' not in text, text
        return name, str(message)
    raise AssertionError(f"GetResult of the failed {case.method} returned {result!r}")


def _unchanged(served: Served) -> None:
    """The daemon runs and answers, nothing is queued, the deployments and refs are as they were."""
    daemon = served.daemon
    assert daemon.proc.poll() is None, f"apt-ostreed exited {daemon.proc.returncode}"
    assert _prop(served.bus, SYSROOT, SYSROOT_IFACE, "Path") == str(daemon.sysroot)
    assert _prop(served.bus, SYSROOT, SYSROOT_IFACE, "ActiveTransactionPath") == ""
    assert _prop(served.bus, SYSROOT, SYSROOT_IFACE, "QueuedTransactions") == []
    (packages,) = _bus_call(served.bus, OS, OS_IFACE, "GetPackages", "(sas)", ("", ["base-files"]))
    assert [p["name"] for p in packages] == ["base-files"]
    assert ids(daemon.sysroot) == served.ids
    assert _refs(daemon.sysroot) == served.refs


CASES = [
    # options of the wrong type
    pytest.param(Crafted("Upgrade", "(a{sv})", ({"reboot": V("s", "yes")},), ("option 'reboot'", "boolean")),
                 id="string-for-boolean"),
    pytest.param(Crafted("Upgrade", "(a{sv})", ({"install-packages": V("ai", [1, 2])},),
                         ("option 'install-packages'", "list of strings")), id="int-array-for-string-list"),
    pytest.param(Crafted("PkgChange", "(a{sv}asas)", ({"dry-run": V("a{sv}", {"x": V("b", True)})}, ["aot-hello"], []),
                         ("option 'dry-run'", "boolean")), id="nested-dict-for-boolean"),
    pytest.param(Crafted("KernelArgs", KARGS, ("", ["aot.crafted=1"], [], [], {"deploy-index": V("b", True)}),
                         ("option 'deploy-index'", "integer")), id="boolean-for-integer"),
    pytest.param(Crafted("Rollback", "(a{sv})", ({"no-queue": V("s", "yes")},),
                         ("option 'no-queue' has the wrong type: it must be a boolean",)),
                 id="daemon-option-string-for-boolean"),
    pytest.param(Crafted("AutomaticUpdateTrigger", "(a{sv})", ({"mode": V("s", "check"), "no-queue": V("s", "yes")},),
                         ("option 'no-queue' has the wrong type: it must be a boolean",)),
                 id="automatic-string-for-boolean"),
    pytest.param(Crafted("AutomaticUpdateTrigger", "(a{sv})",
                         ({"mode": V("s", "check"), "initiating-command-line": V("ai", [1])},),
                         ("option 'initiating-command-line' has the wrong type: it must be a string",)),
                 id="automatic-int-array-for-string"),
    # keys
    pytest.param(Crafted("Rollback", "(a{sv})", ({"no-such-option": V("b", True)},),
                         ("unknown option 'no-such-option' for Rollback",)), id="unknown-option"),
    pytest.param(Crafted("Upgrade", "(a{sv})", ({"": V("b", True)},), ("unknown option '' for Upgrade",)),
                 id="empty-key"),
    pytest.param(Crafted("Deploy", "(sa{sv})", ("0" * 64, {"x" + LONG: V("b", True)}),
                         (f"unknown option 'x{LONG}' for Deploy",)),
                 id="3000-character-key"),
    pytest.param(Crafted("UpdateDeployment", "(a{sv}a{sv})", ({"no-such-modifier": V("b", True)}, {}),
                         ("unknown modifier 'no-such-modifier'",)), id="unknown-modifier"),
    # package lists, elements, kernel arguments, queries
    pytest.param(Crafted("PkgChange", "(a{sv}asas)", ({}, [""], []), ("install: '' is not a valid argument",)),
                 id="empty-package"),
    pytest.param(Crafted("PkgChange", "(a{sv}asas)", ({}, ["aot-hello", "-rf"], []), ("install: '-rf'",)),
                 id="dash-package"),
    pytest.param(Crafted("PkgChange", "(a{sv}asas)", ({}, ["../x"], []), ("not a Debian package name: '../x'",),
                         USAGE, started=True), id="dotdot-package"),
    pytest.param(Crafted("PkgChange", "(a{sv}asas)", ({}, [], [LONG]), (f"package {LONG} is not layered",),
                         f"{NAME}.Error.LayeringError", started=True), id="3000-character-package"),
    pytest.param(Crafted("Cleanup", "(as)", (["rollback-deploy", "bogus"],), ("unknown cleanup element 'bogus'",)),
                 id="unknown-element"),
    pytest.param(Crafted("Search", "(as)", (["-rf"],), ("queries: '-rf'",)), id="dash-query"),
    # refspecs and revisions
    pytest.param(Crafted("UpdateDeployment", "(a{sv}a{sv})", ({"set-refspec": V("as", ["updates:test/os"])}, {}),
                         ("modifier 'set-refspec'", "string")), id="string-array-for-refspec"),
    pytest.param(Crafted("UpdateDeployment", "(a{sv}a{sv})", ({"set-revision": V("t", 42)}, {}),
                         ("modifier 'set-revision'", "string")), id="integer-for-revision"),
    pytest.param(Crafted("Deploy", "(sa{sv})", ("-rf", {}), ("revision: '-rf'",)), id="dash-revision"),
    pytest.param(Crafted("Rebase", "(a{sv}sas)", ({}, "updates:../x", []), ("../x", "Invalid ref name"),
                         f"{NAME}.Error.RepoError", started=True), id="dotdot-ref"),
    # deployments that do not exist
    pytest.param(Crafted("GetPackages", "(sas)", ("debian-crafted.0", []), ("no deployment 'debian-crafted.0'",)),
                 id="no-such-deployment"),
    pytest.param(Crafted("GetDeploymentsPackageDiff", "(ss)", ("", "../x"), ("no deployment '../x'",)),
                 id="diff-no-such-deployment"),
    pytest.param(Crafted("KernelArgs", KARGS, ("", ["aot.crafted=1"], [], [], {"deploy-index": V("i", 99)}),
                         ("--deploy-index=99",), USAGE, started=True), id="no-such-deploy-index"),
    # signatures that are not the method's: GDBus refuses them against the introspection data
    pytest.param(Crafted("PkgChange", "(as)", (["aot-hello"],), ("“(as)”", "“(a{sv}asas)”"), BAD_SIGNATURE),
                 id="signature-missing-arguments"),
    pytest.param(Crafted("Rebase", "(a{sv}ias)", ({}, 7, []), ("“(a{sv}ias)”", "“(a{sv}sas)”"), BAD_SIGNATURE),
                 id="signature-integer-refspec"),
    pytest.param(Crafted("Upgrade", "(a{ss})", ({"reboot": "yes"},), ("“(a{ss})”", "“(a{sv})”"), BAD_SIGNATURE),
                 id="signature-string-dict"),
]


@pytest.mark.parametrize("case", CASES)
def test_crafted_call_is_refused_and_changes_nothing(served: Served, case: Crafted) -> None:
    log_size = served.daemon.log.stat().st_size
    try:
        name, message = (_refused_start if case.started else _refused_call)(served, case)
        assert name == case.error, (name, message)
        assert message.strip() and "\n" not in message.strip(), message
        assert "Traceback" not in message and 'File "' not in message, message
        for culprit in case.culprit:
            assert culprit in message, (culprit, message)
        with served.daemon.log.open() as f:
            f.seek(log_size)
            logged = f.read()
        assert "Traceback" not in logged, logged
    finally:
        _unchanged(served)


def test_busctl_wrong_signature_is_refused(served: Served) -> None:
    """busctl sends what it is told: GDBus refuses the call naming both signatures."""
    proc = busctl(served.bus, "call", NAME, OS, OS_IFACE, "PkgChange", "s", "aot-hello", check=False)
    assert proc.returncode != 0
    assert proc.stderr.strip() == "Call failed: Type of message, “(s)”, does not match expected type “(a{sv}asas)”", \
        proc.stderr
    _unchanged(served)

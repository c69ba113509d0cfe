"""apt-ostreed in the booted guest (real systemd, system bus and polkit; after the layering test,
no reboot of its own): activation by `apt-ostree status`, the interface, polkit refusing a non-root
install, root going through the daemon, the automatic-update timer's check and stage policies,
idle exit."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import TOP, Composed
from tests.root.test_deployments import derive
from tests.vm.qemu import Guest

pytestmark = pytest.mark.vm

NAME = "org.projectatomic.aptostree1"


def _status(g: Guest) -> dict[str, object]:
    return dict(json.loads(g.run("apt-ostree status --json").stdout))


def _ids(g: Guest) -> list[str]:
    return [str(d["id"]) for d in _status(g)["deployments"]]  # type: ignore[union-attr,attr-defined]


def _members(xml: str, interface: str) -> list[tuple[str, str]]:
    iface = next(i for i in ET.fromstring(xml).iter("interface") if i.get("name") == interface)
    return sorted((m.tag, m.get("name", "")) for m in iface)


def _active(g: Guest) -> str:
    return g.run("systemctl is-active apt-ostreed", check=False).stdout.strip()


def test_daemon_in_guest(guest: Guest, minimal: Composed, updates: Path, tmp_path: Path) -> None:
    g = guest
    g.run("printf '[Daemon]\\nIdleExitTimeout=20\\n' > /etc/apt-ostreed.conf")
    g.run("systemctl stop apt-ostreed", check=False)  # earlier tests' commands activated it
    assert _active(g) != "active"
    assert "Deployments:" in g.run("apt-ostree status").stdout
    assert _active(g) == "active"  # activated through D-Bus by status
    assert g.run("systemctl is-enabled apt-ostreed-automatic.timer").stdout.strip() == "enabled"

    xml = g.run(f"busctl introspect --xml-interface {NAME} /org/projectatomic/aptostree1/Sysroot").stdout
    committed = (TOP / "data/org.projectatomic.aptostree1.xml").read_text()
    assert _members(xml, f"{NAME}.Sysroot") == _members(committed, f"{NAME}.Sysroot")
    assert "RegisterClient" in g.run(f"busctl introspect {NAME} /org/projectatomic/aptostree1/Sysroot").stdout

    # a non-root user reads the status; polkit refuses their install; nothing changes
    g.run("id bob >/dev/null 2>&1 || useradd --create-home bob")
    before = _ids(g)
    assert "Deployments:" in g.run("runuser -u bob -- apt-ostree status").stdout
    denied = g.run("runuser -u bob -- apt-ostree install nano", check=False, timeout=300)
    assert denied.returncode != 0
    assert f"Not authorized: {NAME}.install-uninstall-packages" in denied.stderr, denied.stderr
    assert _ids(g) == before

    # (root's installs as daemon transactions: test_updates_via_daemon_pending.py)
    # the automatic-update timer's service, with the check policy, then with stage
    new = derive(updates, minimal.ref, "13.auto", {"usr/share/apt-ostree-test/auto": "auto\n"}, tmp_path)
    g.run("printf '[Daemon]\\nAutomaticUpdatePolicy=check\\nIdleExitTimeout=20\\n' > /etc/apt-ostreed.conf")
    g.run("apt-ostree reload")
    g.run("systemctl start apt-ostreed-automatic.service", timeout=900)
    human = g.run("apt-ostree status").stdout
    assert "AutomaticUpdates: check" in human and "AvailableUpdate:" in human and new in human, human
    assert _ids(g) == before
    g.run("sed -i s/=check/=stage/ /etc/apt-ostreed.conf && apt-ostree reload")
    g.run("systemctl start apt-ostreed-automatic.service", timeout=900)
    staged = [d for d in _status(g)["deployments"] if d["staged"]]  # type: ignore[union-attr,attr-defined]
    assert len(staged) == 1 and staged[0]["base-checksum"] == new, staged
    assert "AutomaticUpdates: stage" in g.run("apt-ostree status").stdout
    g.run("apt-ostree cleanup -p")

    # with no clients and no transaction, the daemon exits after IdleExitTimeout
    deadline = time.monotonic() + 90
    while _active(g) == "active" and time.monotonic() < deadline:
        time.sleep(2)
    assert _active(g) != "active"
    assert g.run("systemctl show -p Result --value apt-ostreed").stdout.strip() == "success"

"""Layering in the booted guest (after test_updates.py, which expects an unlayered system):
install real packages (with a kernel argument deleted before the same reboot), reboot into them,
keep them across a base upgrade that also uninstalls one (rollback: test_updates.py and the
Debian 12 guest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Composed
from tests.root.test_deployments import derive
from tests.vm.qemu import Guest
from tests.vm.test_updates import booted, reboot

pytestmark = pytest.mark.vm


def test_install_upgrade_uninstall(guest: Guest, minimal: Composed, updates: Path, tmp_path: Path) -> None:
    g = guest
    # An admin edit of /etc/passwd: the 3-way merge keeps this file, yet _chrony must exist after the reboot.
    g.run("useradd --create-home alice")
    quiet = "quiet" in g.run("cat /proc/cmdline").stdout.split()  # test_updates.py appended it
    if quiet:
        g.run("apt-ostree kargs --delete=quiet")  # staged; the install below builds on it
    g.run("apt-ostree install htop chrony", timeout=900)
    staged = [d for d in json.loads(g.run("apt-ostree status --json").stdout)["deployments"] if d["staged"]]
    assert len(staged) == 1 and staged[0]["requested-packages"] == ["chrony", "htop"]
    reboot(g)
    d = booted(g)
    assert d["packages"] == ["chrony", "htop"] and d["base-checksum"] == minimal.checksum
    assert "quiet" not in g.run("cat /proc/cmdline").stdout.split()
    assert "htop " in g.run("htop --version").stdout
    assert g.run("getent passwd _chrony").stdout.startswith("_chrony:")
    assert g.run("getent passwd alice").stdout.startswith("alice:")
    assert g.run("systemctl is-active chrony", check=False).stdout.strip() == "active"
    status = g.run("dpkg-query -W -f='${db:Status-Abbrev} ${Package}\\n' htop chrony").stdout.split("\n")
    assert [ln.split() for ln in status if ln] == [["ii", "chrony"], ["ii", "htop"]]
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""
    assert "LayeredPackages: chrony htop" in g.run("apt-ostree status").stdout
    # apt and dpkg point to apt-ostree instead of failing on the read-only /usr
    refused = g.run("apt-get install -y nano", check=False)
    assert refused.returncode != 0 and "apt-ostree install nano" in refused.stderr
    assert g.run("dpkg -l htop", check=False).returncode == 0

    # (test_updates.py left minimal_extra, which has htop, on the ref: derive from minimal itself)
    new_base = derive(updates, minimal.ref, "13.99", {"usr/share/apt-ostree-test/new-base": "v2\n"}, tmp_path,
                      base=minimal.checksum)
    # one upgrade that keeps htop and drops chrony (the later tests rebuild with what stays layered:
    # htop alone is cheap to re-apply under TCG, chrony's maintainer scripts are not)
    g.run("apt-ostree upgrade --uninstall=chrony", timeout=900)
    reboot(g)
    d = booted(g)
    assert d["base-checksum"] == new_base and d["packages"] == ["htop"]
    assert g.run("cat /usr/share/apt-ostree-test/new-base").stdout == "v2\n"
    assert "htop " in g.run("htop --version").stdout
    assert g.run("dpkg-query -W -f='${db:Status-Abbrev}' htop").stdout.strip() == "ii"
    assert g.run("dpkg-query -W -f='${db:Status-Abbrev}' chrony", check=False).stdout.strip() in ("", "un")
    assert g.run("systemctl is-active chrony", check=False).stdout.strip() != "active"
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""

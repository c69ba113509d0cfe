"""The booted guest is the truth: a composed commit, turned into a disk image, boots to multi-user."""

from __future__ import annotations

import pytest

from tests.conftest import Composed, apt_ostree
from tests.vm.qemu import Guest

pytestmark = pytest.mark.vm


def test_boots_to_multi_user(guest: Guest) -> None:
    assert guest.run("systemctl is-system-running --wait", check=False).stdout.strip() == "running"
    assert guest.run("systemctl --failed --no-legend").stdout.strip() == ""
    assert guest.run("hostname").stdout.strip() == "aotest"


def test_root_is_the_deployment(guest: Guest, minimal: Composed) -> None:
    cmdline = guest.run("cat /proc/cmdline").stdout
    assert "ostree=/ostree/boot." in cmdline
    deploy = f"/sysroot/ostree/deploy/debian/deploy/{minimal.checksum}.0"
    assert guest.run(f"stat -c %d:%i / {deploy}").stdout.split()[0] == \
        guest.run(f"stat -c %d:%i {deploy}").stdout.strip()
    assert "ro" in guest.run("findmnt -no OPTIONS /usr").stdout.split(",")
    assert guest.run("findmnt -no SOURCE /var").stdout.strip().endswith("/ostree/deploy/debian/var]")
    assert guest.run("test -w /usr/bin || echo readonly", check=False).stdout.strip() == "readonly"


def test_packages_in_the_guest(guest: Guest, minimal: Composed) -> None:
    installed = [ln.split()[1] for ln in guest.run("dpkg -l").stdout.splitlines() if ln.startswith("ii ")]
    listed = apt_ostree("db", "list", "--repo", minimal.repo, minimal.ref).stdout.splitlines()[1:]
    assert sorted(n.split(":")[0] for n in installed) == sorted(ln.split()[0] for ln in listed)
    assert guest.run("apt-ostree --version").stdout.strip() == "apt-ostree 0.1.0"
    assert "/usr/share/dpkg/database" in guest.run("readlink -f /var/lib/dpkg").stdout
    status = guest.run("ostree admin status").stdout
    assert f"* debian {minimal.checksum}.0" in status

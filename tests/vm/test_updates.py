"""Updates made inside the booted guest: upgrade (staged, /etc merge), rollback, kargs with a
finalization lock — each proven by rebooting and looking at what booted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Composed
from tests.vm.conftest import mount_updates, publish
from tests.vm.qemu import Guest

pytestmark = pytest.mark.vm


def booted(g: Guest) -> dict[str, object]:
    data = json.loads(g.run("apt-ostree status --json").stdout)
    return next(d for d in data["deployments"] if d["booted"])


def reboot(g: Guest, command: str = "systemctl reboot") -> None:
    g.reboot(timeout=600, command=command)
    mount_updates(g)


def test_status_in_guest(guest: Guest, minimal: Composed) -> None:
    data = json.loads(guest.run("apt-ostree status --json").stdout)
    assert len(data["deployments"]) == 1
    assert booted(guest)["checksum"] == minimal.checksum
    assert "●" in guest.run("apt-ostree status").stdout


def test_upgrade_etc_merge_rollback_kargs_locked(guest: Guest, minimal: Composed, minimal_extra: Composed,
                                                 updates: Path) -> None:
    g = guest
    assert g.run("apt-ostree upgrade --unchanged-exit-77", check=False).returncode == 77
    publish(updates, minimal_extra.repo, minimal.ref, minimal_extra.checksum)

    g.run("apt-ostree upgrade")
    staged = [d for d in json.loads(g.run("apt-ostree status --json").stdout)["deployments"] if d["staged"]]
    assert [d["checksum"] for d in staged] == [minimal_extra.checksum]
    assert g.run("apt-ostree status --pending-exit-77", check=False).returncode == 77
    g.run("echo edited-after-staging > /etc/apt-ostree-test-edit")   # merged at finalization
    reboot(g)
    assert booted(g)["checksum"] == minimal_extra.checksum
    assert g.run("cat /usr/share/apt-ostree-test/extra-file").stdout == "hello from the second commit\n"
    assert g.run("dpkg-query -W -f='${Status}' htop").stdout == "install ok installed"
    assert g.run("cat /etc/apt-ostree-test-edit").stdout.strip() == "edited-after-staging"
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""
    assert g.run("apt-ostree upgrade --unchanged-exit-77", check=False).returncode == 77

    # rollback, and kernel arguments staged on top of it with a finalization lock: the reboot boots
    # the rollback target and leaves the locked deployment unapplied; finalize-deployment unlocks it
    # and reboots into it (test_updates_layering.py deletes the argument). Debian 13's libostree
    # (2025.2) keeps the lock in its own state: `ostree admin` sees ours, we see its.
    g.run("apt-ostree rollback")
    g.run("apt-ostree kargs --append=quiet --lock-finalization")
    staged = [d for d in json.loads(g.run("apt-ostree status --json").stdout)["deployments"] if d["staged"]]
    assert len(staged) == 1 and staged[0]["finalization-locked"] is True
    assert staged[0]["checksum"] == minimal.checksum  # (built on the rollback target)
    assert "(finalization locked)" in g.run("ostree admin status").stdout
    reboot(g)
    assert booted(g)["checksum"] == minimal.checksum
    assert g.run("test -e /usr/share/apt-ostree-test/extra-file", check=False).returncode == 1
    assert "quiet" not in g.run("cat /proc/cmdline").stdout.split()
    g.run("apt-ostree kargs --append=quiet")
    g.run("ostree admin lock-finalization")
    staged = [d for d in json.loads(g.run("apt-ostree status --json").stdout)["deployments"] if d["staged"]]
    assert len(staged) == 1 and staged[0]["finalization-locked"] is True
    refused = g.run("apt-ostree finalize-deployment", check=False)
    assert refused.returncode == 2 and "--allow-missing-checksum" in refused.stderr, refused.stderr
    reboot(g, command="apt-ostree finalize-deployment --allow-missing-checksum")
    assert "quiet" in g.run("cat /proc/cmdline").stdout.split()
    assert booted(g)["checksum"] == minimal.checksum

"""Boots that go wrong, in a guest of its own (Debian 13, BIOS): power cuts while a staged deployment is
finalized at shutdown, a finalization that fails, and a new deployment that panics.

- Power cut (SIGKILL of QEMU) at three points of the shutdown that finalizes a staged kernel-argument
  change: before `ostree admin finalize-staged` starts, while libostree writes the boot loader's menu
  (grub-mkconfig, after the new deployment and its boot links are written, before /boot/loader is
  swapped), and after it finished. Test hooks hold each point for a minute and say so on the serial
  console (a drop-in for ostree-finalize-staged.service, a script in /etc/grub.d), armed by a file in
  /run. Each time the next boot comes up by itself on a complete deployment: the old one for the
  first two points, the new one for the last; no failed unit; `ostree fsck` clean.
- A finalization that fails (the /etc/grub.d hook exits 1): the old deployment boots, `status` says
  the staged deployment did not finalize, with libostree's reason and the lost request's arguments.
- `kargs --append=init=/bin/false --append=panic=5`: the new deployment's kernel panics, reboots, and
  GRUB's automatic fallback (apt_ostree/core/boot_trial.py) boots the previous deployment without
  anyone at the console; `status` marks the new one as failed to boot; `rollback` ends it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Composed
from tests.vm.conftest import booted_guest
from tests.vm.qemu import Guest

pytestmark = pytest.mark.vm

HOLD = "if [ -e /run/aot-hook-{0} ]; then echo \"<2>aot-hook: finalization {1}\" > /dev/kmsg; sleep 60; fi"
DROP_IN = f"""\
[Service]
ExecStop=
ExecStop=/bin/sh -c '{HOLD.format("start", "starts")}'
ExecStop=/usr/bin/ostree admin finalize-staged
ExecStop=/bin/sh -c '{HOLD.format("end", "done")}'
"""
GRUB_HOOK = """\
#!/bin/sh
# apt-ostree's test hook (tests/vm/test_boot_faults.py): grub-mkconfig runs it while libostree finalizes
if [ -e /run/aot-hook-menu ]; then
  echo "<2>aot-hook: the boot menu is being written" > /dev/kmsg
  sleep 60
fi
if [ -e /run/aot-hook-fail ]; then
  echo "aot-hook: this menu fails on purpose" >&2
  exit 1
fi
"""


@pytest.fixture(scope="module")
def faults_guest(minimal: Composed, updates: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    with booted_guest(minimal, updates, tmp_path_factory.mktemp("vm-faults"), "aotfaults") as g:
        g.run("mkdir -p /etc/systemd/system/ostree-finalize-staged.service.d && cat > "
              "/etc/systemd/system/ostree-finalize-staged.service.d/aot-test-hooks.conf", input=DROP_IN)
        g.run("cat > /etc/grub.d/16_aot_test_hook && chmod 755 /etc/grub.d/16_aot_test_hook", input=GRUB_HOOK)
        g.run("systemctl daemon-reload")
        yield g


def status(g: Guest) -> dict[str, Any]:
    return dict(json.loads(g.run("apt-ostree status --json").stdout))


def booted(g: Guest) -> dict[str, Any]:
    return next(d for d in status(g)["deployments"] if d["booted"])


def cmdline(g: Guest) -> list[str]:
    return g.run("cat /proc/cmdline").stdout.split()


def healthy(g: Guest) -> None:
    """The boot came up whole: no failed unit, the booted deployment is listed and its /etc is there."""
    assert g.run("systemctl is-system-running --wait", check=False).stdout.strip() in ("running", "degraded")
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""
    assert g.run("test -s /etc/os-release && test -x /usr/bin/apt-ostree", check=False).returncode == 0
    assert booted(g)


def cut_at(g: Guest, hook: str, marker: str, work: Path, name: str) -> None:
    """Stage a kernel argument, reboot with the hook armed, cut the power when it says it holds, boot again."""
    g.run(f"apt-ostree kargs --append=aot.cut={name}", timeout=300)
    g.run(f"touch /run/{hook}")
    since = len(g.serial_log())
    g.send_reboot()
    g.wait_for_serial(marker, timeout=300, since=since)
    time.sleep(1)
    g.power_cut(keep_log=work / f"serial-cut-{name}.log")
    g.start()
    g.wait_for_ssh(timeout=420)


def test_power_cuts_during_finalization(faults_guest: Guest, tmp_path: Path) -> None:
    g = faults_guest
    old = booted(g)["checksum"]
    for hook, marker, name, lands_on_new in (
            ("aot-hook-start", "aot-hook: finalization starts", "start", False),
            ("aot-hook-menu", "aot-hook: the boot menu is being written", "menu", False),
            ("aot-hook-end", "aot-hook: finalization done", "end", True)):
        cut_at(g, hook, marker, tmp_path, name)
        healthy(g)
        args = cmdline(g)
        assert (f"aot.cut={name}" in args) is lands_on_new, (name, args)
        assert booted(g)["checksum"] == old
        if lands_on_new:
            assert status(g)["deployments"][0]["booted"]
        assert not any(d["staged"] for d in status(g)["deployments"])
        if not lands_on_new:  # back where it was: the argument is dropped again (its staged change is lost)
            assert all(f"aot.cut={name}" not in d["kernel-arguments"] for d in status(g)["deployments"])
        g.run("ostree fsck", timeout=900)  # (~30 s under TCG)
        assert g.run("ostree admin status").returncode == 0


def test_failed_finalization_is_reported(faults_guest: Guest) -> None:
    g = faults_guest
    before = [d["id"] for d in status(g)["deployments"]]
    g.run("apt-ostree kargs --append=aot.fail=1", timeout=300)
    g.run("touch /run/aot-hook-fail")
    g.reboot(timeout=600)
    assert "aot.fail=1" not in cmdline(g)
    data = status(g)
    assert [d["id"] for d in data["deployments"]] == before
    failure = data["finalization-failure"]
    assert failure is not None and "grub-mkconfig" in failure["reason"], failure
    assert failure["staged"] is not None and "aot.fail=1" in failure["staged"]["kernel-arguments"]
    text = g.run("apt-ostree status").stdout
    assert "Warning: the staged deployment" in text and "did not finalize at the last shutdown" in text
    assert "aot.fail=1" in text


def test_a_deployment_that_panics_falls_back_by_itself(faults_guest: Guest) -> None:
    g = faults_guest
    previous = booted(g)["id"]
    g.run("apt-ostree kargs --append=init=/bin/false --append=panic=5", timeout=300)
    assert g.run("grub-editenv /boot/grubenv list").stdout.strip() == "aot_trial=new"
    since = len(g.serial_log())
    g.reboot(timeout=900)  # shutdown, the new deployment's boot and panic, GRUB's fallback, a boot
    log = g.serial_log()[since:]
    assert "Kernel panic" in log and "init=/bin/false" in log, log[-3000:]
    assert "init=/bin/false" not in cmdline(g)
    data = status(g)
    [failed, running] = data["deployments"][:2]
    assert failed["boot-failed"] and "init=/bin/false" in failed["kernel-arguments"]
    assert running["booted"] and running["id"] == previous and not running["boot-failed"]
    assert "BootFailed: yes" in g.run("apt-ostree status").stdout
    assert g.run("grub-editenv /boot/grubenv list").stdout.strip() == "aot_trial=failed"
    assert g.run("systemctl --failed --no-legend").stdout.strip() == ""
    # rollback makes the running system the default again: the trial ends
    g.run("apt-ostree rollback")
    data = status(g)
    assert data["deployments"][0]["booted"] and not any(d["boot-failed"] for d in data["deployments"])
    assert g.run("grub-editenv /boot/grubenv list").stdout.strip() == ""

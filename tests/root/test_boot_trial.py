"""The automatic fallback's state (apt_ostree/core/boot_trial.py) on a booted sysroot directory
(tests/booted.py): what a change, GRUB's static menu and apt-ostree-boot-complete.service write in
/boot/grubenv, and what status says. GRUB's own half (grub.cfg reading and saving the block) and a
deployment that really panics are proven in a guest (tests/vm/test_boot_faults.py); here GRUB's
two steps are played by grub-editenv, the tool that writes the same block."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.core import boot_trial
from apt_ostree.core.sysroot import Sysroot
from tests.booted import BootedSysroot

pytestmark = pytest.mark.root


def grubenv(sysroot: Path) -> dict[str, str]:
    out = subprocess.run(["grub-editenv", str(sysroot / "boot/grubenv"), "list"], check=True,
                         capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def grub_boots(sysroot: Path) -> None:
    """What /boot/grub/grub.cfg does at boot: new -> tried (boot the default), tried -> failed (boot entry 1)."""
    trial = grubenv(sysroot).get("aot_trial")
    step = {"new": "tried", "tried": "failed"}.get(trial or "")
    if step:
        subprocess.run(["grub-editenv", str(sysroot / "boot/grubenv"), "set", f"aot_trial={step}"], check=True)


def status(host: BootedSysroot) -> dict[str, Any]:
    return dict(json.loads(host.apt_ostree("status", "--json").stdout))


def confirm(host: BootedSysroot) -> str:
    return host.run("/usr/bin/python3", "-m", "apt_ostree.cli.boot_complete").stdout.strip()


def test_a_default_that_never_confirms_is_abandoned_until_rollback(sysroot: Path) -> None:
    boot_trial.create(sysroot / "boot/grubenv")
    subprocess.run(["grub-editenv", str(sysroot / "boot/grubenv"), "set", "other=kept"], check=True)
    host = BootedSysroot(sysroot)
    assert confirm(host) == "no trial"

    # a staged change: the next default gets one boot; it boots and confirms
    host.apt_ostree("kargs", "--append=aot.first=1")
    assert grubenv(sysroot) == {"other": "kept", "aot_trial": "new"}
    host.reboot()
    grub_boots(sysroot)
    assert "confirmed" in confirm(host)
    assert grubenv(sysroot) == {"other": "kept"}
    assert not any(d["boot-failed"] for d in status(host)["deployments"])

    # the next one never gets to boot-complete.target: GRUB boots entry 1 (the previous deployment)
    host.apt_ostree("kargs", "--append=aot.second=1")
    host.run("ostree", "admin", "finalize-staged")
    grub_boots(sysroot)  # (its boot: tried; it dies)
    grub_boots(sysroot)  # (the next: failed, entry 1)
    host.boot()
    host.deployment = Sysroot.open(sysroot).deployments()[1]  # (what GRUB's default=1 boots)
    data = status(host)
    [failed, previous] = data["deployments"][:2]
    assert failed["boot-failed"] and not failed["booted"] and "aot.second=1" in failed["kernel-arguments"]
    assert previous["booted"] and not previous["boot-failed"]
    assert "BootFailed: yes: it did not reach boot-complete.target" in host.apt_ostree("status").stdout
    assert "failed to boot" in confirm(host) and grubenv(sysroot)["aot_trial"] == "failed"  # (it stays)

    # rollback: the running system becomes the default, the trial ends
    host.apt_ostree("rollback")
    assert grubenv(sysroot) == {"other": "kept"}
    data = status(host)
    assert data["deployments"][0]["booted"] and not any(d["boot-failed"] for d in data["deployments"])

"""A UEFI disk (GPT, EFI system partition with GRUB on the removable path) boots with OVMF."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Composed, apt_ostree
from tests.vm.qemu import Guest, make_ssh_key

pytestmark = pytest.mark.vm

OVMF = Path("/usr/share/ovmf/OVMF.fd")


def test_uefi_boot(minimal: Composed, tmp_path: Path) -> None:
    key, pub = make_ssh_key(tmp_path)
    disk = tmp_path / "uefi.qcow2"
    apt_ostree("compose", "disk-image", "--repo", minimal.repo, "--ref", minimal.ref, "--bootloader", "uefi",
               "--format", "qcow2", "--root-ssh-key", pub, disk)
    with Guest(disk, ssh_key=key, serial_log=tmp_path / "serial.log", firmware=OVMF) as g:
        g.wait_for_ssh(timeout=600)
        assert g.run("test -d /sys/firmware/efi && echo efi").stdout.strip() == "efi"
        assert g.run("systemctl is-system-running --wait", check=False).stdout.strip() == "running"
        assert "ostree=/ostree/boot." in g.run("cat /proc/cmdline").stdout
        assert g.run("lsblk -no PARTTYPE /dev/vda1").stdout.strip().lower() == "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
        g.shutdown()

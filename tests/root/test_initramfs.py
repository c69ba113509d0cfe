"""initramfs and initramfs-etc on a sysroot directory and on a sysroot booted in a mount namespace
(tests/booted.py: real staging, real finalization): the regenerated initramfs is read back with the
image's own lsinitrd, the overlay initrd with its cpio, both run in the deployment."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from apt_ostree.core import grub
from apt_ostree.core.sysroot import Sysroot
from tests.booted import BootedSysroot
from tests.conftest import Composed, apt_ostree, error_lines
from tests.root.test_deployments import derive
from tests.root.test_layering import fsck, tree_diff

pytestmark = pytest.mark.root


def deployments(root: Path) -> list[dict[str, Any]]:
    return list(json.loads(apt_ostree("status", "--sysroot", root, "--json").stdout)["deployments"])


def in_deployment(deployment: Path, command: str, share: Path) -> str:
    """``command`` run by the deployment's own programs (bwrap), with ``share`` at /tmp/share."""
    return subprocess.run(["bwrap", "--ro-bind", deployment, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs",
                           "/tmp", "--ro-bind", share, "/tmp/share", "sh", "-c", command],
                          check=True, capture_output=True, text=True).stdout


def default_entry(root: Path) -> dict[str, str]:
    confs = [grub.parse_bls(c.read_text()) for c in (root / "boot/loader/entries").glob("*.conf")]
    return max(confs, key=lambda e: int(e["version"]))


def overlay_listing(root: Path, entry: dict[str, str], deployment: Path) -> str:
    initramfs, *overlays = entry["initrd"].split()
    assert len(overlays) == 1, entry
    image = root / "boot" / overlays[0].lstrip("/")
    assert image.name == f"{hashlib.sha256(image.read_bytes()).hexdigest()}.img"
    return in_deployment(deployment, f"zcat /tmp/share/{image.name} | cpio -it --quiet", image.parent)


def test_initramfs_etc_offline_then_staged(sysroot: Path) -> None:
    etc = Sysroot.open(sysroot).deployments()[0].path / "etc"
    (etc / "aot-tracked.conf").write_text("one\n")
    (etc / "aot-dir").mkdir()
    (etc / "aot-dir/inner.conf").write_text("inner\n")
    for bad, message in (("--track=/usr/lib/os-release", "not a canonical path below /etc"),
                         ("--track=/etc/../etc/passwd", "not a canonical path below /etc"),
                         ("--track=/etc/no-such-file", "/etc/no-such-file does not exist"),
                         ("--untrack=/etc/hostname", "/etc/hostname is not tracked")):
        cli = apt_ostree("initramfs-etc", "--sysroot", sysroot, bad, check=False)
        assert cli.returncode != 0 and len(deployments(sysroot)) == 1, cli.stderr
        assert message in error_lines(cli)[0], cli.stderr

    apt_ostree("initramfs-etc", "--sysroot", sysroot, "--track=/etc/aot-tracked.conf", "--track=/etc/aot-dir")
    new, old = deployments(sysroot)
    assert new["initramfs-etc"] == ["/etc/aot-dir", "/etc/aot-tracked.conf"] and old["initramfs-etc"] == []
    assert new["checksum"] == old["checksum"]  # no new commit: only the boot entry changes
    assert "InitramfsEtc: /etc/aot-dir /etc/aot-tracked.conf" in apt_ostree("status", "--sysroot", sysroot).stdout
    deployment = Sysroot.open(sysroot).deployments()[0].path
    entry = default_entry(sysroot)
    assert overlay_listing(sysroot, entry, deployment).split() == [
        "etc", "etc/aot-dir", "etc/aot-dir/inner.conf", "etc/aot-tracked.conf"]
    menu = grub.menu(sysroot / "boot", int(Path(sysroot / "boot/loader").readlink().name.split(".")[1]), "U")
    assert f"initrd {entry['initrd']}\n" in menu and len(entry["initrd"].split()) == 2
    again = apt_ostree("initramfs-etc", "--sysroot", sysroot, "--track=/etc/aot-tracked.conf",
                       "--unchanged-exit-77", check=False)
    assert again.returncode == 77 and len(deployments(sysroot)) == 2
    apt_ostree("initramfs-etc", "--sysroot", sysroot, "--untrack-all")
    assert deployments(sysroot)[0]["initramfs-etc"] == [] and len(default_entry(sysroot)["initrd"].split()) == 1
    apt_ostree("initramfs-etc", "--sysroot", sysroot, "--track=/etc/aot-tracked.conf", "--track=/etc/aot-dir")

    # booted: staged with libostree's own copy in /run, applied at "shutdown"
    host = BootedSysroot(sysroot)
    (host.deployment.path / "etc/aot-tracked.conf").write_text("two\n")
    host.apt_ostree("initramfs-etc", "--untrack=/etc/aot-dir", "--force-sync")
    staged = next(d for d in json.loads(host.apt_ostree("status", "--json").stdout)["deployments"] if d["staged"])
    assert staged["initramfs-etc"] == ["/etc/aot-tracked.conf"]
    assert len(list((host.run_dir / "ostree/staged-initrds").iterdir())) == 1
    host.reboot()
    entry = default_entry(sysroot)
    assert overlay_listing(sysroot, entry, host.deployment.path).split() == ["etc", "etc/aot-tracked.conf"]
    image = sysroot / "boot" / entry["initrd"].split()[1].lstrip("/")
    text = in_deployment(host.deployment.path, f"zcat /tmp/share/{image.name} | cpio -i --quiet --to-stdout "
                         "etc/aot-tracked.conf", image.parent)
    assert text == "two\n"  # the file as it was when the deployment was made

    host.apt_ostree("reset", "-i")  # (reset's initramfs part: no tracked files either)
    host.reboot()
    assert len(default_entry(sysroot)["initrd"].split()) == 1
    # only the rollback's overlay is left: the older ones were removed with their deployments
    assert [p.name for p in (sysroot / "boot/ostree/initramfs-overlays").iterdir()] == [image.name]
    fsck(sysroot)


def test_initramfs_regenerated_on_the_client(sysroot: Path, updates: Path, minimal: Composed, tmp_path: Path) -> None:
    refused = apt_ostree("initramfs", "--sysroot", sysroot, "--arg=-I", check=False)
    assert refused.returncode == 2 and "--arg needs --enable" in error_lines(refused)[0]
    assert "Initramfs regeneration: disabled" in apt_ostree("initramfs", "--sysroot", sysroot).stdout
    assert apt_ostree("initramfs", "--sysroot", sysroot, "--disable", "--unchanged-exit-77",
                      check=False).returncode == 77
    etc = Sysroot.open(sysroot).deployments()[0].path / "etc"
    (etc / "aot-initramfs.conf").write_text("from the system's /etc\n")

    apt_ostree("initramfs", "--sysroot", sysroot, "--enable", "--arg=-I", "--arg=/etc/aot-initramfs.conf")
    new, old = deployments(sysroot)
    assert new["regenerate-initramfs"] and new["initramfs-args"] == ["-I", "/etc/aot-initramfs.conf"]
    assert new["base-checksum"] == minimal.checksum and new["checksum"] != minimal.checksum
    assert tree_diff(sysroot, minimal.checksum, new["checksum"]) == [
        "M /usr/lib/modules/" + minimal_kver(sysroot, minimal) + "/initramfs.img"]
    assert "Initramfs: regenerate -I /etc/aot-initramfs.conf" in apt_ostree("status", "--sysroot", sysroot).stdout

    def initramfs_has_file(d: dict[str, Any]) -> bool:
        root = next(x.path for x in Sysroot.open(sysroot).deployments() if x.id == d["id"])
        img = f"/usr/lib/modules/{minimal_kver(sysroot, minimal)}/initramfs.img"
        listing = in_deployment(root, f"lsinitrd {img}", root / "usr/lib/modules")
        return "etc/aot-initramfs.conf" in listing and "-I '/etc/aot-initramfs.conf'" in listing

    assert initramfs_has_file(new)
    # every later change is regenerated too: an upgrade to a new base
    v2 = derive(updates, "test/os", "13.1", {"usr/share/aot-v2": "2\n"}, tmp_path)
    apt_ostree("upgrade", "--sysroot", sysroot)
    upgraded = deployments(sysroot)[0]
    assert upgraded["base-checksum"] == v2 and upgraded["regenerate-initramfs"] and initramfs_has_file(upgraded)

    # reset -i: the base's initramfs again (initramfs --disable does the same: the vm tier)
    apt_ostree("reset", "--sysroot", sysroot, "-i")
    reset = deployments(sysroot)[0]
    assert reset["checksum"] == v2 and not reset["regenerate-initramfs"] and reset["initramfs-args"] == []
    assert apt_ostree("initramfs", "--sysroot", sysroot, "--disable", "--unchanged-exit-77",
                      check=False).returncode == 77
    fsck(sysroot)


def minimal_kver(sysroot: Path, minimal: Composed) -> str:
    return next(p.name for p in (Sysroot.open(sysroot).deployments()[-1].path / "usr/lib/modules").iterdir())

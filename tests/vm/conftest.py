"""The vm tier's shared guest: examples/trixie.yaml (Debian 13) as a BIOS disk, booted once per session (TCG),
with an update repository shared read-only over 9p. The guest reaches the network through QEMU's
user NAT (layering downloads .debs from the machine's configured APT mirror)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Composed, apt_ostree
from tests.vm.qemu import Guest, make_ssh_key

GUEST_UPDATES = "/var/updates"
GUEST_IMAGES = "/var/images"  # (a second read-only share, when a test gives one: OCI image layouts)


@pytest.fixture(scope="session")
def updates(minimal: Composed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The update server's repository (archive mode); its ref starts at the minimal commit."""
    repo = tmp_path_factory.mktemp("updates") / "repo"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=archive"], check=True)
    publish(repo, minimal.repo, minimal.ref, minimal.checksum)
    return repo


def publish(updates: Path, source: Path, ref: str, checksum: str) -> None:
    """Make ``checksum`` (from ``source``) the newest commit of ``ref`` on the update server."""
    subprocess.run(["ostree", "pull-local", f"--repo={updates}", str(source), checksum], check=True,
                   capture_output=True)
    subprocess.run(["ostree", "refs", f"--repo={updates}", "--force", f"--create={ref}", checksum], check=True)


@contextlib.contextmanager
def booted_guest(image: Composed, updates: Path, work: Path, hostname: str,
                 images: Path | None = None) -> Iterator[Guest]:
    """A BIOS disk of ``image`` booted, with the update server as its remote ``updates``. The guest
    reboots by itself after a kernel panic (``panic=10``): under TCG with two vCPUs a boot has been
    seen to die in PID 1 on an int3 left at a code site the kernel had just patched (QEMU's
    cross-vCPU code coherency, 2026-12-03), and a test that waits for a reboot then sees the
    next boot instead of timing out."""
    key, pub = make_ssh_key(work)
    disk = work / "disk.img"
    apt_ostree("compose", "disk-image", "--repo", image.repo, "--ref", image.ref, "--root-ssh-key", pub,
               "--hostname", hostname, "--remote", f"updates=file://{GUEST_UPDATES}", "--karg", "panic=10", disk)
    share: tuple[str, ...] = ("-virtfs", f"local,path={updates},mount_tag=updates,security_model=none,readonly=on")
    if images is not None:
        share += ("-virtfs", f"local,path={images},mount_tag=images,security_model=none,readonly=on")
    with Guest(disk, ssh_key=key, serial_log=work / "serial.log", qemu_args=share, network=True) as g:
        g.wait_for_ssh(timeout=420)
        mount_updates(g)
        yield g


@pytest.fixture(scope="session")
def guest(minimal: Composed, updates: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    with booted_guest(minimal, updates, tmp_path_factory.mktemp("vm"), "aotest") as g:
        yield g


def mount_updates(g: Guest) -> None:
    g.run(f"mkdir -p {GUEST_UPDATES} && (mountpoint -q {GUEST_UPDATES} || "
          f"mount -t 9p -o trans=virtio,version=9p2000.L,ro updates {GUEST_UPDATES})")
    g.run(f"! grep -qw images /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null || "
          f"(mkdir -p {GUEST_IMAGES} && (mountpoint -q {GUEST_IMAGES} || "
          f"mount -t 9p -o trans=virtio,version=9p2000.L,ro images {GUEST_IMAGES}))")
    # the image has no resolver configured; QEMU's user network answers DNS at 10.0.2.3
    g.run("test -s /etc/resolv.conf || echo 'nameserver 10.0.2.3' > /etc/resolv.conf")

"""Room in /boot for a new deployment's kernel and initramfs, checked before it is written.

libostree copies a deployment's kernel and initramfs into /boot/ostree/OS-BOOTCSUM unless a
deployment with the same ones is there already; for a staged deployment it does so at shutdown,
where a full /boot fails silently and the update is lost (rpm-ostree's and Fedora users'
most-reported finalization failure). The old files are removed only after the new ones are
written, so the new ones must fit beside them. Whether they are there already is told by the
content objects of the deployments' commits: the same objects, the same files, nothing read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from apt_ostree.core.ostree import Repo
from apt_ostree.errors import RepoError

MARGIN = 1 << 20  # (the BLS entries, the bootloader configuration, the file system's own blocks)


def _boot_files(repo: Repo, commit: str) -> list[tuple[str, int]] | None:
    kver = repo.commit(commit).metadata.get("ostree.linux")
    if not isinstance(kver, str):
        return None
    files = [repo.file_object(commit, f"usr/lib/modules/{kver}/{name}") for name in ("vmlinuz", "initramfs.img")]
    return None if any(f is None for f in files) else [f for f in files if f is not None]


def check_boot_space(boot: Path, repo: Repo, checksum: str, deployed: Sequence[str], overlay_size: int = 0) -> None:
    """RepoError with the sizes when ``boot`` cannot hold the kernel and initramfs of ``checksum``
    (nothing needed for them when one of the ``deployed`` commits has the same ones)."""
    new = _boot_files(repo, checksum)
    if new is None or not boot.is_dir():
        return
    present = any(_boot_files(repo, d) == new for d in deployed)
    need = overlay_size + (0 if present else sum(size for _, size in new))
    if not need:
        return
    st = os.statvfs(boot)
    free = st.f_bavail * st.f_frsize
    if need + MARGIN > free:
        raise RepoError(f"{boot} has {free / 1e6:.1f} MB free; the new deployment's kernel and initramfs need "
                        f"{(need + MARGIN) / 1e6:.1f} MB: nothing changed",
                        hint="apt-ostree cleanup -r (or -p) removes older deployments and their boot files")

"""Kernel and initramfs in the OSTree place: ``/usr/lib/modules/$kver/{vmlinuz,initramfs.img}``.

The initramfs is built by dracut with ostree-boot's ``ostree`` module (it runs
``ostree-prepare-root`` in a systemd initramfs). Why dracut and not
initramfs-tools: it needs no hook of ours, ``--reproducible`` gives
byte-identical images, and rpm-ostree builds its initramfs the same way. See
docs/architecture.md.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from apt_ostree.errors import ComposeError
from apt_ostree.progress import Progress
from apt_ostree.run import run
from apt_ostree.sandbox import Bind, Sandbox

DRACUT_ARGS = ("--no-hostonly", "--reproducible", "--add", "ostree", "--compress", "zstd", "--force")
# commit metadata: the treefile's initramfs-args, which a client-side regeneration starts from
KEY_INITRAMFS_ARGS = "apt-ostree.initramfs-args"


def find_kernel(root: Path) -> str | None:
    """The one kernel version in the tree (from /boot or /usr/lib/modules); None if there is none."""
    kvers = {p.name.removeprefix("vmlinuz-") for p in (root / "boot").glob("vmlinuz-*")}
    kvers |= {p.parent.name for p in (root / "usr/lib/modules").glob("*/vmlinuz")}
    if len(kvers) > 1:
        raise ComposeError(f"the tree has {len(kvers)} kernels ({', '.join(sorted(kvers))}); exactly one is supported",
                           hint="install a single linux-image package")
    return kvers.pop() if kvers else None


def place_kernel(root: Path, kver: str) -> Path:
    """Move vmlinuz, config and System.map from /boot into /usr/lib/modules/$kver; empty /boot."""
    moddir = root / "usr/lib/modules" / kver
    if not moddir.is_dir():
        raise ComposeError(f"kernel {kver} has no modules directory {moddir.relative_to(root)}")
    boot = root / "boot"
    for name, dest in (("vmlinuz", "vmlinuz"), ("config", "config"), ("System.map", "System.map")):
        src = boot / f"{name}-{kver}"
        if src.exists():
            shutil.move(str(src), moddir / dest)
    if not (moddir / "vmlinuz").is_file():
        raise ComposeError(f"kernel {kver}: no vmlinuz found")
    for entry in boot.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for link in ("vmlinuz", "vmlinuz.old", "initrd.img", "initrd.img.old"):
        p = root / link
        if p.is_symlink() or p.exists():
            p.unlink()
    return moddir


def build_initramfs(root: Path, kver: str, extra_args: Sequence[str], progress: Progress,
                    env: dict[str, str] | None = None, etc: Path | None = None) -> Path:
    """Run the tree's own dracut in a sandbox; write /usr/lib/modules/$kver/initramfs.img.
    ``etc``: the /etc dracut sees (read-only; a client-side regeneration's: the system's own)."""
    if not (root / "usr/bin/dracut").exists():
        raise ComposeError("the tree has no dracut, which builds the initramfs",
                           hint="add dracut to packages (it replaces initramfs-tools)")
    if not (root / "usr/lib/dracut/modules.d/98ostree").is_dir():
        raise ComposeError("the tree has no dracut ostree module", hint="add ostree-boot to packages")
    out = f"/usr/lib/modules/{kver}/initramfs.img"
    binds = (Bind(etc, "/etc", readonly=True),) if etc is not None else ()
    sandbox = Sandbox(rootfs=root, binds=binds, capabilities=("ALL",), host_sys=True, env=env or {})
    argv = ["dracut", *DRACUT_ARGS, *extra_args, out, kver]
    run(sandbox.argv(argv), progress=progress, what="dracut")
    # dracut may leave its tmp and a /var/tmp dir behind; the caller's /var pass handles /var.
    img = root / out.lstrip("/")
    if not img.is_file() or img.stat().st_size == 0:
        raise ComposeError(f"dracut did not write {out}")
    img.chmod(0o644)
    return img

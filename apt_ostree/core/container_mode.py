"""Package changes inside a container build of an apt-ostree image (rpm-ostree's container mode).

In a container made from our image (``buildah from``, a Containerfile's ``RUN``) there is no
sysroot and no daemon: the container's own root *is* the tree of the next image. There,
``apt-ostree install PKG`` and ``uninstall PKG`` run the real APT on ``/`` (the dpkg database under
/usr, as on the image; the /var links to it made as tmpfiles.d makes them at boot), then leave
no package lists or archives behind. Whoever deploys the derived image finds the packages in the
image's own database: they are part of the image, not layered.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from apt_ostree.core.layout import DPKG_DATABASE, make_state_links
from apt_ostree.core.ops import PackageChange, Result
from apt_ostree.errors import UsageError
from apt_ostree.progress import Progress
from apt_ostree.run import run

CONTAINER_MARKERS = ("run/.containerenv", ".dockerenv")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
SUPPORTED = "install and uninstall"


def applies(root: Path = Path("/")) -> bool:
    """``root`` is a container of an apt-ostree image: a container marker (or $container), our
    dpkg database under /usr, and not a booted OSTree system."""
    if (root / "run/ostree-booted").exists() or not (root / DPKG_DATABASE / "status").is_file():
        return False
    marked = any((root / m).exists() for m in CONTAINER_MARKERS)
    return marked or bool(os.environ.get("container"))  # noqa: SIM112 (systemd's lower-case name)


def change(op: PackageChange, progress: Progress, root: Path = Path("/")) -> Result:
    r = op.request
    others = (r.uninstall_all or r.override_remove or r.override_replace or r.override_reset
              or r.override_reset_all or r.reset_layers or r.reset_initramfs)
    if others or op.apply_live:
        raise UsageError(f"in a container build, apt-ostree does {SUPPORTED} only",
                         hint="the container's root is the next image: its packages are the image's own")
    local = [i for i in r.install if i.endswith(".deb")]
    if local and any(not Path(i).is_file() for i in local):
        raise UsageError(f"{next(i for i in local if not Path(i).is_file())}: no such file")
    make_state_links(root)
    for d in ("var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/log/apt"):
        (root / d).mkdir(parents=True, exist_ok=True)
    apt = ["apt-get", "-y", "-q", "-o", "APT::Sandbox::User=root"]
    if op.dry_run:
        apt.append("--simulate")
    try:
        if r.install:
            progress.step("Downloading package lists")
            run(["apt-get", "-q", "update"], env=APT_ENV, progress=progress, what="apt-get update")
            progress.step(f"Installing {', '.join(r.install)}")
            run([*apt, "install", *[str(Path(i).absolute()) if i in local else i for i in r.install]],
                env=APT_ENV, progress=progress, what="apt-get install")
        if r.uninstall:
            progress.step(f"Removing {', '.join(r.uninstall)}")
            run([*apt, "remove", "--purge", *r.uninstall], env=APT_ENV, progress=progress, what="apt-get remove")
    finally:
        run(["apt-get", "clean"], env=APT_ENV, check=False)
        lists = root / "var/lib/apt/lists"
        for entry in lists.iterdir() if lists.is_dir() else ():
            if entry.is_file():
                entry.unlink()
        shutil.rmtree(lists / "auxfiles", ignore_errors=True)
        shutil.rmtree(root / "var/cache/debconf/tmp.ci", ignore_errors=True)  # (debconf's, left by the scripts)
    progress.done()
    return Result(changed=not op.dry_run, container_root=True)

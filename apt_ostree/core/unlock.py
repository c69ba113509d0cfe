"""usroverlay: libostree's unlock of the booted deployment's /usr (``ostree admin unlock``).

development (the default): a writable overlay on /usr until the reboot; hotfix: the same,
kept across reboots of this deployment (libostree first clones it as the rollback); transient:
the overlay read-only, writable only in a private mount namespace (what apply-live uses). It runs
``ostree admin unlock`` in the caller's own mount namespace, where libostree mounts the overlay
(as rpm-ostree's usroverlay does): apt-ostreed, in a namespace of its own, does not run it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from apt_ostree.core.ops import Usroverlay
from apt_ostree.core.ostree import libostree_at_least
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import CommandError, RepoError, UsageError
from apt_ostree.progress import Progress
from apt_ostree.run import run

LOW_SPACE = 1024**3  # below this, the overlay's backing store gets a warning


def backing_store(sysroot: Sysroot, mode: str, osname: str) -> Path:
    """Where the overlay's changes are written: hotfix in the deployment (the root file system);
    development and transient in /var/tmp up to libostree 2025.2, in the stateroot since 2025.3."""
    if mode == "hotfix":
        return sysroot.path / "ostree/deploy"
    if libostree_at_least(2025, 3):
        return sysroot.path / "ostree/deploy" / osname
    return Path("/var/tmp")


def usroverlay(sysroot: Sysroot, op: Usroverlay, progress: Progress) -> str:
    """Unlock the booted deployment; its unlock state afterwards."""
    booted = next((d for d in sysroot.deployments() if d.booted), None)
    if booted is None:
        raise UsageError("usroverlay: only on the booted system", hint="boot the deployment to unlock it")
    if booted.unlocked != "none":
        raise UsageError(f"usroverlay: /usr is already unlocked ({booted.unlocked})",
                         hint="a reboot locks it again" if booted.unlocked != "hotfix" else
                         "a hotfix stays until another deployment boots: apt-ostree rollback, or a new deployment")
    store = backing_store(sysroot, op.mode, booted.osname)
    free = shutil.disk_usage(store).free
    if free < LOW_SPACE:
        progress.message(f"warning: the overlay's changes are stored in {store}, which has only "
                         f"{free // 2**20} MB free: a large install into /usr can fill it")
    flags = {"hotfix": ["--hotfix"], "transient": ["--transient"]}.get(op.mode, [])
    try:
        run(["ostree", "admin", "unlock", *flags], progress=progress, what="ostree admin unlock")
    except CommandError as e:
        raise RepoError(f"cannot unlock /usr: {e.message}", hint=e.hint) from None
    sysroot.load()
    booted = next(d for d in sysroot.deployments() if d.booted)
    return booted.unlocked

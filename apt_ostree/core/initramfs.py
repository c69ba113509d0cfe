"""initramfs and initramfs-etc: the initramfs a deployment boots with, owned by the system.

``initramfs --enable`` records rpm-ostree's origin keys ``regenerate-initramfs`` and
``initramfs-args``; every deployment made while they are set gets a layered commit whose
``/usr/lib/modules/$kver/initramfs.img`` the image's own dracut built on the new tree, with the
system's /etc (apt_ostree.core.layering). ``initramfs-etc`` records ``initramfs-etc``: every
deployment made while it is set boots with an overlay initrd of those files, taken from /etc when
the deployment is made (apt_ostree.core.initramfs_etc, apt_ostree.core.sysroot). Both build on
the pending deployment when there is one, like every change.
"""

from __future__ import annotations

import dataclasses

from apt_ostree.core import layering
from apt_ostree.core.deploy import Change, LayerOptions, Start, origin_of, redeploy
from apt_ostree.core.ops import Initramfs, InitramfsEtc
from apt_ostree.core.origin import Origin
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.errors import UsageError
from apt_ostree.progress import Progress


def _redeploy(sysroot: Sysroot, start: Start, origin: Origin, progress: Progress, lock_finalization: bool,
              force: bool = False) -> Change:
    """``origin`` on the start's base. Layered packages are resolved from the package lists
    layering used last (no refresh: this changes the initramfs, not the packages)."""
    repo = sysroot.repo()
    base = layering.base_of(repo, start.origin.checksum)
    cache_only = True
    if origin.packages_layered:
        cache_only = layering.open_apt(sysroot.path, start.merge.osname, start.merge.path).has_lists()
    return redeploy(sysroot, start, base, origin, progress,
                    LayerOptions(cache_only=cache_only, allow_inactive=True, lock_finalization=lock_finalization),
                    version=repo.commit(base).metadata.get("version"), force=force)


def set_state(sysroot: Sysroot, op: Initramfs, progress: Progress) -> Change:
    """--enable: a new deployment with a regenerated initramfs (again, with the /etc of now, when it
    is enabled already); --disable: the base's initramfs again."""
    start = Start.of(sysroot)
    origin = origin_of(start.origin)
    if not op.regenerate and not origin.regenerate_initramfs:
        return Change(False, start.origin.checksum, start.origin.checksum)
    new = dataclasses.replace(origin, regenerate_initramfs=op.regenerate,
                              initramfs_args=op.args if op.regenerate else ())
    return _redeploy(sysroot, start, new, progress, op.lock_finalization, force=op.regenerate)


def etc(sysroot: Sysroot, op: InitramfsEtc, progress: Progress) -> Change:
    """Track and untrack files; a new deployment whose overlay initrd holds the tracked files."""
    start = Start.of(sysroot)
    origin = origin_of(start.origin)
    tracked = set(origin.initramfs_etc)
    for path in op.untrack:
        if path not in tracked and not op.untrack_all:
            raise UsageError(f"initramfs-etc: {path} is not tracked",
                             hint="apt-ostree status shows the tracked files (InitramfsEtc:)")
    tracked = set() if op.untrack_all else tracked - set(op.untrack)
    tracked |= set(op.track)
    for path in sorted(set(op.track)):
        if not (start.merge.path / path.lstrip("/")).exists():
            raise UsageError(f"initramfs-etc: {path} does not exist")
    new = dataclasses.replace(origin, initramfs_etc=tuple(sorted(tracked)))
    if new.initramfs_etc == origin.initramfs_etc and not (op.force_sync and tracked):
        return Change(False, start.origin.checksum, start.origin.checksum)
    return _redeploy(sysroot, start, new, progress, op.lock_finalization, force=op.force_sync)

"""Running a request (apt_ostree.core.ops): the sysroot's lock, the operation, the reboot decision.

The CLI calls :func:`execute` in-process; apt-ostreed's worker calls it for a transaction.
Both render the :class:`~apt_ostree.core.ops.Result` it returns with the CLI's one renderer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from contextlib import AbstractContextManager
from pathlib import Path

from apt_ostree.core import config, deploy, initramfs, layering, packages
from apt_ostree.core.ops import (
    ApplyLive,
    Cleanup,
    Deploy,
    FinalizeDeployment,
    Initramfs,
    InitramfsEtc,
    Kargs,
    NewDeployment,
    Op,
    PackageChange,
    Rebase,
    RefreshMd,
    Request,
    Result,
    Rollback,
    Search,
    Upgrade,
    Usroverlay,
    automatic_mode,
)
from apt_ostree.core.origin import Origin
from apt_ostree.core.pkgdb import commit_packages
from apt_ostree.core.sysroot import Deployment, Sysroot
from apt_ostree.errors import RepoError, SysrootBusy, UsageError
from apt_ostree.progress import Progress
from apt_ostree.run import run


def automatic_upgrade(sysroot_path: Path) -> Upgrade | None:
    """What AutomaticUpdatePolicy in the merge deployment's apt-ostreed.conf asks for (None: nothing)."""
    sysroot = Sysroot.open(sysroot_path)
    return automatic_mode(config.of_deployment(sysroot.merge_deployment().path).automatic_update_policy)


def execute(op: Op, sysroot_path: Path, progress: Progress) -> Result:
    """Run ``op`` on the sysroot at ``sysroot_path``; a typed error when it cannot be done."""
    op.validate()
    if isinstance(op, PackageChange) and Path(sysroot_path) == Path("/"):
        from apt_ostree.core import container_mode

        if container_mode.applies():  # (a container build of our image: no sysroot, the root is the tree)
            return container_mode.change(op, progress)
    sysroot = Sysroot.open(sysroot_path)
    reboot = bool(getattr(op, "reboot", False))
    if reboot and not sysroot.is_booted:
        raise UsageError("--reboot: the sysroot is not the booted system")
    if getattr(op, "apply_live", False) and not sysroot.is_booted:
        raise UsageError("--apply-live: the sysroot is not the booted system")
    result = _run(op, sysroot, progress)
    if isinstance(op, PackageChange) and op.apply_live and result.changed and result.deployment is not None:
        from apt_ostree.core import live

        applied = live.apply(sysroot, ApplyLive(target=result.checksum, allow_replacement=op.allow_replacement,
                                                restart_services=op.restart_services), progress)
        result = dataclasses.replace(result, live=applied.live)
    result = dataclasses.replace(result, booted=sysroot.is_booted)
    if result.rebooting or (reboot and result.changed and (result.deployment is not None or result.moved)):
        run(["systemctl", "reboot"], what="systemctl reboot")
        result = dataclasses.replace(result, rebooting=True)
    return result


def _run(op: Op, sysroot: Sysroot, progress: Progress) -> Result:
    if isinstance(op, FinalizeDeployment):
        return _finalize(op, sysroot)
    if isinstance(op, Usroverlay):  # (ostree admin unlock takes the sysroot's lock itself)
        from apt_ostree.core import unlock

        return Result(unlocked=unlock.usroverlay(sysroot, op, progress))
    if isinstance(op, ApplyLive):  # (it unlocks /usr first, then takes the lock)
        from apt_ostree.core import live

        return live.apply(sysroot, op, progress)
    if isinstance(op, Search):
        try:
            with sysroot.locked():  # (it refreshes the package lists an install reads)
                return _search(op, sysroot, progress)
        except SysrootBusy:
            return _search_snapshot(op, sysroot, progress)
    with sysroot.locked():  # (refresh-md too: it writes the package lists an install reads)
        if isinstance(op, RefreshMd):
            return _refresh(op, sysroot, progress)
        if sysroot.is_booted:
            from apt_ostree.core import live

            live.sync_refs(sysroot)  # (an earlier boot's live state: the plain deployment runs now)
        if isinstance(op, Upgrade):
            origin, keeping = _changed_origin(sysroot, op.install, op.uninstall)
            with keeping:
                return _change(deploy.upgrade(
                    sysroot, progress, check=op.check, preview=op.preview, download_only=op.download_only,
                    cache_only=op.cache_only, allow_downgrade=op.allow_downgrade,
                    lock_finalization=op.lock_finalization, origin=origin))
        if isinstance(op, Deploy):
            origin, keeping = _changed_origin(sysroot, op.install, op.uninstall)
            with keeping:
                return _change(deploy.deploy_revision(
                    sysroot, op.revision, progress, cache_only=op.cache_only,
                    lock_finalization=op.lock_finalization, origin=origin))
        if isinstance(op, Rebase):
            origin, keeping = _changed_origin(sysroot, op.install, op.uninstall)
            with keeping:
                return _change(deploy.rebase(
                    sysroot, op.refspec, progress, cache_only=op.cache_only, preview=op.preview,
                    lock_finalization=op.lock_finalization, origin=origin))
        if isinstance(op, Rollback):
            return Result(moved=deploy.rollback(sysroot).id)
        if isinstance(op, Cleanup):
            removed = deploy.cleanup(sysroot, pending=op.pending, rollback_=op.rollback, base=op.base)
            return Result(changed=bool(removed), removed=tuple(d.id for d in removed))
        if isinstance(op, Kargs):
            return _kargs(op, sysroot, progress)
        if isinstance(op, Initramfs):
            return _change(initramfs.set_state(sysroot, op, progress))
        if isinstance(op, InitramfsEtc):
            return _change(initramfs.etc(sysroot, op, progress))
        change = packages.change(sysroot, op.request, progress, deploy.LayerOptions(
            cache_only=op.cache_only, allow_inactive=op.allow_inactive, dry_run=op.dry_run,
            download_only=op.download_only, lock_finalization=op.lock_finalization))
        progress.done()
        return _change(change)


def _change(change: deploy.Change) -> Result:
    d = change.deployment
    return Result(change.changed, change.checksum, change.previous, change.version, change.diff, change.plan,
                  NewDeployment(d.id, d.staged) if d is not None else None, image=change.image)


def _changed_origin(sysroot: Sysroot, install: tuple[str, ...], uninstall: tuple[str, ...]
                    ) -> tuple[Origin | None, AbstractContextManager[None]]:
    """The origin with upgrade/deploy/rebase's --install/--uninstall applied (None: unchanged), and
    the context the change runs in (the local .debs it names kept, and removed again if it fails)."""
    if not (install or uninstall):
        return None, contextlib.nullcontext()
    current, merge = sysroot.origin_deployment(), sysroot.merge_deployment()
    repo = sysroot.repo()
    base_names = {p.name for p in commit_packages(repo, layering.base_of(repo, current.checksum))}
    origin, debs = packages.new_origin(current, base_names, Request(install=install, uninstall=uninstall))
    return origin, packages.keeping_local(sysroot, merge, debs)


def kargs_start(sysroot: Sysroot, deploy_index: int | None, import_proc_cmdline: bool) -> list[str]:
    """The kernel arguments an edit starts from: the deployment's (``deploy_index``, else the one
    changes build on), or /proc/cmdline's."""
    current = deploy.kargs_source(sysroot, deploy_index).kargs.split()
    if import_proc_cmdline:
        with open("/proc/cmdline") as f:
            current = [a for a in f.read().split() if not a.startswith(("BOOT_IMAGE=", "ostree="))]
    return current


def _kargs(op: Kargs, sysroot: Sysroot, progress: Progress) -> Result:
    current = kargs_start(sysroot, op.deploy_index, op.import_proc_cmdline)
    if op.existing and op.existing.split() != current:
        raise UsageError("the kernel arguments changed since they were read", hint="read them again and retry")
    new = deploy.edit_kargs(current, append=op.append, append_if_missing=op.append_if_missing, delete=op.delete,
                            delete_if_present=op.delete_if_present, replace=op.replace)
    start = sysroot.origin_deployment()
    if new == start.kargs.split():
        return Result(changed=False, checksum=start.checksum, previous=start.checksum)
    d = deploy.set_kargs(sysroot, new, progress, op.lock_finalization)
    return Result(checksum=d.checksum, previous=start.checksum, deployment=NewDeployment(d.id, d.staged))


def _refresh(op: RefreshMd, sysroot: Sysroot, progress: Progress) -> Result:
    merge = sysroot.merge_deployment()
    apt = layering.open_apt(sysroot.path, merge.osname, merge.path)
    if op.force:  # download everything again, not only what changed
        shutil.rmtree(apt.lists, ignore_errors=True)
    apt.configure()
    apt.refresh(progress)
    return Result()


def _search(op: Search, sysroot: Sysroot, progress: Progress) -> Result:
    merge = sysroot.merge_deployment()
    apt = layering.open_apt(sysroot.path, merge.osname, merge.path)
    apt.configure()
    if not op.cache_only or not apt.has_lists():
        apt.refresh(progress)
    found = tuple(apt.search(list(op.queries)))
    return Result(changed=bool(found), found=found)


def _search_snapshot(op: Search, sysroot: Sysroot, progress: Progress) -> Result:
    """Search while another command holds the sysroot (an install, an upgrade): the package lists as
    they are, without a refresh, read from hard links in a directory of this search's own (APT
    replaces a list by renaming a new file over it: a link keeps the old one whole) and an APT
    configuration and cache there too, so nothing the other command reads or writes is touched."""
    merge = sysroot.merge_deployment()
    state, _ = layering.state_dirs(sysroot.path, merge.osname)
    lists = sorted((state / "lists").glob("*_Packages*")) if (state / "lists").is_dir() else []
    if not lists:
        raise SysrootBusy(f"sysroot {sysroot.path} is locked by another operation and has no package lists yet",
                          hint="search again when it is done (or after: apt-ostree refresh-md)")
    progress.message("another operation holds the sysroot: searching the package lists as they are")
    with tempfile.TemporaryDirectory(prefix="search-", dir=state) as tmp:
        (Path(tmp) / "lists").mkdir()
        for path in [*lists, *(state / "lists").glob("*Release*")]:
            with contextlib.suppress(FileNotFoundError):  # (replaced or removed meanwhile)
                os.link(path, Path(tmp) / "lists" / path.name)
        from apt_ostree.core.layer_apt import LayerApt

        apt = LayerApt(merge.path, Path(tmp), Path(tmp) / "cache")
        apt.configure()
        found = tuple(apt.search(list(op.queries)))
    return Result(changed=bool(found), found=found)


def _finalize(op: FinalizeDeployment, sysroot: Sysroot) -> Result:
    if not sysroot.is_booted:
        raise UsageError("finalize-deployment: only on the booted system")
    staged: Deployment | None = next((d for d in sysroot.deployments() if d.staged), None)
    if staged is None:
        raise RepoError("no staged deployment to finalize")
    if op.checksum and not staged.checksum.startswith(op.checksum):
        raise UsageError(f"the staged deployment is {staged.checksum}, not {op.checksum}")
    with sysroot.locked():
        sysroot.unlock_finalization(staged)
    return Result(checksum=staged.checksum, finalized=staged.id, rebooting=True)

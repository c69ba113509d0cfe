"""Package requests: install, uninstall, override remove/replace/reset, reset.

Each operation edits the origin of the deployment a change builds on (the pending
one when there is one, else the booted one: :class:`apt_ostree.core.deploy.Start`),
checked before anything is touched, then builds the deployment from scratch: base +
the whole request set (:func:`apt_ostree.core.deploy.build_target`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from apt_ostree.core import config, layering
from apt_ostree.core.deb_check import check_new_deb
from apt_ostree.core.deploy import Change, LayerOptions, Start, origin_of, redeploy
from apt_ostree.core.layer_apt import LocalDeb
from apt_ostree.core.ops import Request
from apt_ostree.core.origin import LocalPackage, Origin, check_package_name
from apt_ostree.core.pkgdb import commit_packages
from apt_ostree.core.sysroot import Deployment, Sysroot
from apt_ostree.errors import LayeringError, UsageError
from apt_ostree.progress import Progress


def is_local(item: str) -> bool:
    return item.endswith(".deb") and ("/" in item or Path(item).exists())


def _local(path: str) -> tuple[LocalPackage, LocalDeb]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such file")
    deb = check_new_deb(p)
    return LocalPackage(deb.sha256, deb.name), deb


@contextmanager
def keeping_local(sysroot: Sysroot, merge: Deployment, debs: Sequence[LocalDeb]) -> Iterator[None]:
    """The named .debs kept by hash for the change in the block (later upgrades re-apply them). A
    change that fails leaves none of them behind, nor what indexing them wrote (the local package
    list, APT's copies): the next command starts as this one did."""
    if not debs:
        yield
        return
    apt = layering.open_apt(sysroot.path, merge.osname, merge.path)
    before = apt.local_files()
    try:
        apt.keep_local(debs)
        yield
    except BaseException:
        sysroot.load()  # (a failure after the deployment was written: what it names stays)
        named = {p.sha256 for d in sysroot.deployments() if d.origin is not None
                 for p in (*d.origin.requested_local, *d.origin.override_replace_local)}
        apt.restore_local_files(before, [deb for deb in debs if deb.sha256 not in named])
        raise


def new_origin(current: Deployment, base_names: set[str], req: Request) -> tuple[Origin, list[LocalDeb]]:
    """The origin of ``current`` changed by ``req``; UsageError/LayeringError for a bad request.
    Returns the new origin and the local .debs it names (to be kept by hash: :func:`keeping_local`)."""
    origin = origin_of(current)
    files: list[LocalDeb] = []
    install, install_local = [], []
    for item in req.install:
        if is_local(item):
            pkg, deb = _local(item)
            files.append(deb)
            if pkg in origin.requested_local and not req.idempotent:
                raise LayeringError(f"{item}: {pkg.name} is already requested")
            install_local.append(pkg)
            continue
        check_package_name(item)
        name = item.partition("=")[0]
        if (item in origin.requested or (name in origin.requested_names and "=" not in item)) and not req.idempotent:
            raise LayeringError(f"package {name} is already requested", hint="pass --idempotent to ignore this")
        install.append(item)
    layered = set(origin.requested_names) | {p.name for p in origin.requested_local}
    uninstall = list(layered) if req.uninstall_all else []
    for name in req.uninstall:
        if name in layered:
            uninstall.append(name)
        elif req.idempotent:
            continue
        elif name in base_names:
            raise LayeringError(f"package {name} is part of the base, not a layered package",
                                hint=f"to remove it from this deployment: apt-ostree override remove {name}")
        else:
            raise LayeringError(f"package {name} is not layered",
                                hint="layered packages are listed by apt-ostree status")
    for name in req.override_remove:
        check_package_name(name)
        if name not in base_names:
            raise LayeringError(f"override remove {name}: not a package of the base")
        if name in origin.override_remove and not req.idempotent:
            raise LayeringError(f"override remove {name}: already removed")
    replace = []
    for item in req.override_replace:
        pkg, deb = _local(item)
        if pkg.name not in base_names:
            raise LayeringError(f"override replace {item}: {pkg.name} is not a package of the base",
                                hint=f"to add it: apt-ostree install {item}")
        files.append(deb)
        replace.append(pkg)
    overridden = set(origin.override_remove) | {p.name for p in origin.override_replace_local}
    reset = list(overridden) if req.override_reset_all else []
    for name in req.override_reset:
        if name not in overridden:
            raise LayeringError(f"override reset {name}: no override for {name}")
        reset.append(name)
    if req.reset_layers:
        uninstall = list(layered)
    changed = origin.with_changes(install=install, uninstall=uninstall, install_local=install_local,
                                  remove=req.override_remove, reset=reset, replace_local=replace,
                                  debconf=req.debconf)
    if req.reset_initramfs:
        changed = dataclasses.replace(changed, regenerate_initramfs=False, initramfs_args=(), initramfs_etc=())
    return changed, files


def change(sysroot: Sysroot, req: Request, progress: Progress, opts: LayerOptions) -> Change:
    """Apply ``req`` to the deployment a change builds on: a new deployment (or, with
    ``opts.dry_run``, a plan)."""
    start = Start.of(sysroot)
    current, merge = start.origin, start.merge
    path = config.config_path(merge.path)
    if config.load(path).lock_layering:
        raise LayeringError("package changes are locked on this system", hint=f"LockLayering=true in {path}")
    repo = sysroot.repo()
    base = layering.base_of(repo, current.checksum)
    base_names = {p.name for p in commit_packages(repo, base)}
    origin, files = new_origin(current, base_names, req)
    if origin == origin_of(current):
        return Change(False, current.checksum, current.checksum)
    with keeping_local(sysroot, merge, files):
        return redeploy(sysroot, start, base, origin, progress, opts,
                        version=repo.commit(base).metadata.get("version"))


"""Build a layered commit: base commit + the origin's package requests, from scratch.

1. Resolve with python-apt against the base commit's own dpkg database (read from
   the repository) and the deployment's APT sources; base packages never change
   unless an override says so (:mod:`apt_ostree.core.layer_apt`).
2. Lower = a hardlink checkout of the base, cached per base checksum and never
   written; overlayfs upper/work on the repository's file system.
3. dpkg, ordered by APT, runs inside bubblewrap on the merged tree: /usr/etc on
   /etc, no network, policy-rc.d, noninteractive debconf, a reduced capability set.
   (Running dpkg directly in a hardlink checkout corrupts repository objects.)
4. The merged tree is post-processed like a compose (/var to tmpfiles.d, /opt to
   /usr/lib/opt, system users to sysusers.d, no ssh host keys), unmounted, and
   only the upper dir is committed onto the base's MutableTree.
"""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from gi.repository import GLib

from apt_ostree.core import kernel, layout
from apt_ostree.core.apt import Package, parse_dpkg_status
from apt_ostree.core.base_files import check_no_base_file_replaced
from apt_ostree.core.layer_apt import LayerApt, LocalDeb
from apt_ostree.core.layer_keys import (
    KEY_BASE,
    KEY_CLIENTLAYER,
    KEY_FINGERPRINT,
    KEY_INACTIVE,
    KEY_LAYERED,
    KEY_REMOVED,
    KEY_REPLACED,
    KEY_REQUESTED,
)
from apt_ostree.core.mountns import private_mounts
from apt_ostree.core.origin import Origin
from apt_ostree.core.ostree import Repo, variant_metadata
from apt_ostree.core.ostree_overlay import commit_delta
from apt_ostree.core.pkgdb import KEY_PACKAGES, STATUS_PATHS, packages_variant
from apt_ostree.core.plan import Plan
from apt_ostree.errors import CommandError, ComposeError, LayeringError, RepoError
from apt_ostree.progress import Progress
from apt_ostree.run import run, unmount_below
from apt_ostree.sandbox import Bind, Sandbox

COPIED_BASE_KEYS = ("version", "ostree.bootable", "ostree.linux", "apt-ostree.inputhash")

# What dpkg and maintainer scripts need as root (rpm-ostree's list): no sys_admin, no sys_module.
DPKG_CAPS = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
             "SYS_CHROOT", "SETFCAP")
DPKG_ENV = {"DEBIAN_FRONTEND": "noninteractive", "DEBCONF_NONINTERACTIVE_SEEN": "true",
            "DEBCONF_NOWARNINGS": "yes", "APT_LISTCHANGES_FRONTEND": "none", "SYSTEMD_OFFLINE": "1"}
POLICY_RC_D = "usr/sbin/policy-rc.d"
SANDBOX_DEBS = "/run/apt-ostree/archives"
LAYER_TMPFILES = "usr/lib/tmpfiles.d/apt-ostree-layer.conf"


@dataclass(frozen=True)
class LayerResult:
    plan: Plan
    fingerprint: str
    checksum: str | None  # None: dry run or download only


def state_dirs(sysroot_path: Path, osname: str) -> tuple[Path, Path]:
    """apt-ostree's APT state and cache, in the stateroot's /var (the booted /var on a booted system)."""
    var = sysroot_path / "ostree/deploy" / osname / "var"
    return var / "lib/apt-ostree", var / "cache/apt-ostree"


def base_of(repo: Repo, checksum: str) -> str:
    """The base commit of a deployment's commit (itself unless it is a client layer)."""
    meta = repo.commit(checksum).metadata
    return str(meta[KEY_BASE]) if meta.get(KEY_CLIENTLAYER) and KEY_BASE in meta else checksum


BASE_REF_PREFIX = "apt-ostree/base/"


def protect_bases(repo: Repo, commits: Sequence[str]) -> None:
    """Refs ``apt-ostree/base/N`` on the base commits of the layered ``commits``, so that pruning
    keeps them (a later change to that deployment rebuilds from its base); stale ones go."""
    bases = sorted({base_of(repo, c) for c in commits if c and base_of(repo, c) != c})
    for i, base in enumerate(bases):
        repo.set_ref(None, f"{BASE_REF_PREFIX}{i}", base)
    for ref in repo.refs():
        if ref.startswith(BASE_REF_PREFIX) and not ref.removeprefix(BASE_REF_PREFIX).isdigit():
            continue
        if ref.startswith(BASE_REF_PREFIX) and int(ref.removeprefix(BASE_REF_PREFIX)) >= len(bases):
            repo.set_ref(None, ref, None)


def open_apt(sysroot_path: Path, osname: str, deploy_root: Path, sources_name: str | None = None) -> LayerApt:
    state, cache = state_dirs(sysroot_path, osname)
    return LayerApt(deploy_root, state, cache, sources_name)


def _local_debs(apt: LayerApt, origin: Origin) -> tuple[list[LocalDeb], list[LocalDeb]]:
    local = [apt.local_deb(p.sha256, p.name) for p in origin.requested_local]
    replace = [apt.local_deb(p.sha256, p.name) for p in origin.override_replace_local]
    return local, replace


def plan(repo: Repo, apt: LayerApt, base: str, origin: Origin, progress: Progress, *,
         cache_only: bool = False, allow_inactive: bool = False) -> Plan:
    """Resolve the origin's requests on ``base``; refreshes the package lists unless ``cache_only``."""
    status = None
    for rel in STATUS_PATHS:
        data = repo.read_file(base, rel)
        if data is not None:
            apt.work.mkdir(parents=True, exist_ok=True)
            status = apt.work / "base-status"
            if not status.exists() or status.read_bytes() != data:  # unchanged: APT's cache stays valid
                status.write_bytes(data)
            break
    if status is None:
        raise RepoError(f"commit {base[:12]} has no dpkg database", hint=f"expected /{STATUS_PATHS[0]}")
    local, replace = _local_debs(apt, origin)
    apt.configure(status, [*local, *replace])
    if not cache_only:
        apt.refresh(progress)
    elif local or replace:
        apt.refresh(progress, local_only=True)
    if not apt.has_lists():
        if not cache_only:
            raise LayeringError(f"no package lists: no APT source is enabled in {apt.sources_name}",
                                hint="add one to /etc/apt/sources.list or sources.list.d/")
        raise LayeringError("no package lists yet", hint="run without -C/--cache-only, or: apt-ostree refresh-md")
    progress.step("Resolving dependencies")
    return apt.resolve(origin.requested, local, origin.override_remove, replace, allow_inactive=allow_inactive)


def build(repo: Repo, apt: LayerApt | None, base: str, origin: Origin, progress: Progress, *,
          cache_only: bool = False, allow_inactive: bool = False, dry_run: bool = False,
          download_only: bool = False, reuse: Mapping[str, str] | None = None,
          etc: Path | None = None) -> LayerResult:
    """Resolve, download and (unless ``dry_run``/``download_only``) commit the layered tree.
    ``reuse`` maps fingerprints to existing layered commits: the same inputs give that commit
    (never with a regenerated initramfs, whose input is also the system's /etc: ``etc``)."""
    if origin.packages_layered:
        assert apt is not None
        p = plan(repo, apt, base, origin, progress, cache_only=cache_only, allow_inactive=allow_inactive)
    else:  # only the initramfs is regenerated: no APT
        p = Plan()
    fingerprint = p.fingerprint(base, origin.debconf, initramfs_args(repo, base, origin))
    if dry_run:
        return LayerResult(p, fingerprint, None)
    if reuse and fingerprint in reuse and not download_only and not origin.regenerate_initramfs:
        return LayerResult(p, fingerprint, reuse[fingerprint])
    if apt is not None and origin.packages_layered:
        apt.download(progress)
    if download_only:
        return LayerResult(p, fingerprint, None)
    if p.empty and not origin.regenerate_initramfs:  # every request inactive: the base itself
        return LayerResult(p, fingerprint, base)
    checksum = _commit_layer(repo, apt, base, origin, p, fingerprint, progress, etc)
    return LayerResult(p, fingerprint, checksum)


def initramfs_args(repo: Repo, base: str, origin: Origin) -> tuple[str, ...] | None:
    """The dracut arguments of a client-side regeneration (None: no regeneration): the compose's
    (the base's commit metadata), then the origin's (rpm-ostree's rule)."""
    if not origin.regenerate_initramfs:
        return None
    composed = repo.commit(base).metadata.get(kernel.KEY_INITRAMFS_ARGS) or []
    return (*(str(a) for a in composed), *origin.initramfs_args)


# ---------------------------------------------------------------- the tree


def lower_cache(repo: Repo) -> Path:
    """Where lower checkouts are cached: in the repository's tmp dir (same file system, which
    hardlinks need). libostree's cleanup deletes tmp entries untouched for a day, and a checkout's
    own mtime is 0, so the checkouts live in a directory whose mtime we keep current."""
    return repo.path / "tmp" / "apt-ostree-cache"


def _lower(repo: Repo, base: str) -> Path:
    """A hardlink checkout of ``base`` (read-only by use), cached per base commit."""
    cache = lower_cache(repo)
    cache.mkdir(parents=True, exist_ok=True)
    lower = cache / f"lower-{base}"
    for old in cache.glob("lower-*"):
        if old != lower:
            shutil.rmtree(old, ignore_errors=True)
    if not lower.is_dir():
        partial = cache / f"lower-{base}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        repo.checkout_hardlinks(base, partial)
        partial.rename(lower)
    os.utime(cache)
    return lower


@contextmanager
def _overlay(repo: Repo, lower: Path) -> Iterator[tuple[Path, Path]]:
    """(merged, upper) of an overlay mount over ``lower``; unmounted and deleted afterwards."""
    tmp = repo.path / "tmp"
    for stale in tmp.glob("apt-ostree-layer-*"):  # left by a killed run
        unmount_below(stale)
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix="apt-ostree-layer-", dir=tmp))
    upper, ovl_work, merged = work / "upper", work / "work", work / "merged"
    for d in (upper, ovl_work, merged):
        d.mkdir()
    options = (f"lowerdir={lower},upperdir={upper},workdir={ovl_work},"
               "redirect_dir=off,metacopy=off,index=off,xino=off")
    try:
        run(["mount", "-t", "overlay", "overlay", "-o", options, merged], what="mount overlay")
        try:
            yield merged, upper
        finally:
            unmount_below(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _dpkg_wrapper(path: Path, merged: Path, apt: LayerApt, log: Path) -> Path:
    """The program APT runs as dpkg: the tree's dpkg in the sandbox, .deb paths mapped into it."""
    sandbox = Sandbox(
        rootfs=merged,
        binds=(Bind(merged / "usr/etc", "/etc"), Bind(apt.archives, SANDBOX_DEBS, readonly=True)),
        capabilities=DPKG_CAPS, env=DPKG_ENV)
    archives = str(apt.archives)
    script = f"""#!/bin/sh
# apt-ostree: APT's dpkg, run inside the layering sandbox. APT 3.0 passes the directory of its
# status file as --admindir, a host path: in the sandbox dpkg uses the tree's own database.
n=$#
skip=
while [ "$n" -gt 0 ]; do
    a=$1; shift; n=$((n - 1))
    if [ -n "$skip" ]; then skip=; continue; fi
    case $a in
        --admindir) skip=1; continue ;;
        --admindir=*) continue ;;
        {shlex.quote(archives)}/*) a={SANDBOX_DEBS}/${{a#{shlex.quote(archives)}/}} ;;
    esac
    set -- "$@" "$a"
done
exec >>{shlex.quote(str(log))} 2>&1
exec {shlex.join(sandbox.argv(['dpkg']))} "$@"
"""
    path.write_text(script)
    path.chmod(0o700)
    return path


def _commit_layer(repo: Repo, apt: LayerApt | None, base: str, origin: Origin, p: Plan, fingerprint: str,
                  progress: Progress, etc: Path | None) -> str:
    progress.step("Checking out the base")
    lower = _lower(repo, base)
    with private_mounts(), _overlay(repo, lower) as (merged, upper):
        (merged / "etc").mkdir()  # the mount point of /usr/etc in the sandbox
        policy = merged / POLICY_RC_D
        policy.write_text("#!/bin/sh\n# apt-ostree: no service starts while layering\nexit 101\n")
        policy.chmod(0o755)
        _create_var(merged, progress)
        if origin.debconf:
            _preseed(merged, origin.debconf, progress)
        if apt is not None and not p.empty:
            log = apt.work / "dpkg.log"
            log.unlink(missing_ok=True)
            progress.step(f"Installing {len(p.install) + len(p.replace)} packages"
                          + (f", removing {len(p.remove)}" if p.remove else ""))
            wrapper = _dpkg_wrapper(apt.work / "dpkg-in-sandbox", merged, apt, log)
            apt.install(wrapper, log, progress)
            check_no_base_file_replaced(lower, merged, [x.name for x in p.install], [x.name for x in p.remove])
        policy.unlink()
        args = initramfs_args(repo, base, origin)
        if args is not None:
            _regenerate_initramfs(merged, args, etc, progress)
        try:
            (merged / "etc").rmdir()
        except OSError as e:
            raise LayeringError(f"a package wrote into the tree's /etc mount point: {e}") from None
        progress.step("Post-processing the layered tree")
        packages = _postprocess(merged, upper, lower, progress)
        unmount_below(merged.parent)
        return _commit(repo, base, origin, p, fingerprint, packages, upper, progress)


def _commit(repo: Repo, base: str, origin: Origin, p: Plan, fingerprint: str, packages: list[Package],
            upper: Path, progress: Progress) -> str:
    progress.step("Committing the layer")
    info = repo.commit(base)
    meta: dict[str, object] = {k: info.metadata[k] for k in COPIED_BASE_KEYS if k in info.metadata}
    meta.update({
        KEY_CLIENTLAYER: True,
        KEY_BASE: base,
        KEY_FINGERPRINT: fingerprint,
        KEY_REQUESTED: list(origin.requested) + [str(x) for x in origin.requested_local],
        KEY_INACTIVE: list(p.inactive),
    })
    variants = variant_metadata(meta)
    variants[KEY_PACKAGES] = packages_variant(packages)
    variants[KEY_LAYERED] = GLib.Variant("a(sss)", [(x.name, x.version, x.arch) for x in p.install])
    variants[KEY_REMOVED] = GLib.Variant("a(sss)", [(x.name, x.version, x.arch) for x in p.remove])
    variants[KEY_REPLACED] = GLib.Variant("a(ssss)", [(n, old, x.version, x.arch) for n, old, x in p.replace])
    return commit_delta(repo, base, upper, metadata=variants, timestamp=int(time.time()),
                             subject=f"apt-ostree layer on {base[:12]}")


def _regenerate_initramfs(merged: Path, args: Sequence[str], etc: Path | None, progress: Progress) -> None:
    """initramfs --enable: the tree's dracut, with the system's /etc (``etc``; the tree's own without)."""
    kver = kernel.find_kernel(merged)
    if kver is None:
        raise LayeringError("initramfs: the deployment has no kernel in /usr/lib/modules")
    progress.step(f"Generating the initramfs for {kver}")
    try:
        kernel.build_initramfs(merged, kver, args, progress, etc=etc if etc is not None else merged / "usr/etc")
    except ComposeError as e:
        raise LayeringError(f"initramfs: {e.message}", hint=e.hint) from None
    except CommandError as e:
        raise LayeringError(f"initramfs: dracut failed: {e.message}", hint=e.hint) from None


def _preseed(merged: Path, answers: Sequence[str], progress: Progress) -> None:
    """The origin's debconf answers, in the tree's debconf database before any script asks."""
    sandbox = Sandbox(rootfs=merged, binds=(Bind(merged / "usr/etc", "/etc"),), capabilities=DPKG_CAPS, env=DPKG_ENV)
    try:
        run(sandbox.argv(["debconf-set-selections"]), stdin_text="".join(f"{a}\n" for a in answers),
            progress=progress, what="debconf-set-selections")
    except CommandError as e:
        raise LayeringError(f"cannot record the debconf answers: {e.message}", hint=e.hint) from None


def _create_var(merged: Path, progress: Progress) -> None:
    """The base's /var (emptied by compose) as tmpfiles.d describes it: maintainer scripts expect it,
    and dpkg its database (/var/lib/dpkg, a link into /usr)."""
    layout.make_state_links(merged)
    if not (merged / "usr/bin/systemd-tmpfiles").exists():
        return
    sandbox = Sandbox(rootfs=merged, binds=(Bind(merged / "usr/etc", "/etc"),), capabilities=DPKG_CAPS)
    # exit status 65 (some lines not applicable in a sandbox) is fine: the directories exist.
    run(sandbox.argv(["systemd-tmpfiles", "--create", "--prefix=/var", "--prefix=/opt", "--prefix=/srv",
                      "--prefix=/usr/local"]), check=False, progress=progress, what="systemd-tmpfiles")


def _backups_as_base(root: Path, upper: Path, lower: Path) -> None:
    """dpkg's status-old and debconf's *.dat-old hold the database before its last write: an
    intermediate state of this layer, each a new object as big as the database (debconf's
    templates.dat is ~800 KB). Before the layer is what they mean here: the base's file, the
    same object as the base's, so they cost nothing. Only backups the layer wrote (in the
    overlay's upper dir) are touched."""
    for database in (layout.DPKG_DATABASE, layout.DEBCONF_DATABASE):
        for written in (upper / database).glob("*-old"):
            backup = root / database / written.name
            before = lower / database / written.name.removesuffix("-old")
            if written.is_file() and not written.is_symlink() and before.is_file() and not before.is_symlink():
                shutil.copyfile(before, backup)


def _postprocess(root: Path, upper: Path, lower: Path, progress: Progress) -> list[Package]:
    """Make the merged tree OSTree-ready again; return its package list."""
    _backups_as_base(root, upper, lower)
    for key in (root / "usr/etc/ssh").glob("ssh_host_*"):
        key.unlink()
    layout.add_ssh_keygen(root)
    state_lines = layout.move_package_state(root)
    opt_lines = layout.move_opt(root)
    var_lines, dropped = layout.convert_var(root, factory=True)
    if dropped:
        progress.message(f"dropped {len(dropped)} files from /var (logs and caches)")
    known_layout = set((root / layout.TMPFILES_LAYOUT).read_text().splitlines()) \
        if (root / layout.TMPFILES_LAYOUT).exists() else set()
    lines = [ln for ln in var_lines + state_lines + opt_lines if ln not in known_layout]
    if lines:
        layout.write_tmpfiles(root, LAYER_TMPFILES, lines, "/var content of the layered packages")
    layout.write_sysusers(root, etc="usr/etc")
    for name in layout.API_DIRS:
        d = root / name
        if d.is_dir() and any(d.iterdir()):
            raise LayeringError(f"a package left files in /{name}: {', '.join(sorted(os.listdir(d))[:5])}")
    if (root / "boot").is_dir() and any((root / "boot").iterdir()):
        raise LayeringError("a layered package installs into /boot (a kernel?)",
                            hint="kernels come with the base: rebase or override the base instead")
    try:
        layout.check_layout(root, container=not (root / "usr/lib/modules").is_dir())
    except ComposeError as e:
        raise LayeringError(e.message.replace("composed tree", "layered tree"), hint=e.hint) from None
    status = root / layout.DPKG_DATABASE / "status"
    packages = parse_dpkg_status(status.read_text(errors="replace"))
    return packages


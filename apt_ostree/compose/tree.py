"""``compose tree``: treefile -> Debian root fs -> OSTree-ready tree -> commit.

Validation (treefile, APT sources, package names) happens before anything is
written; the repository and its ref are touched only by the final commit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apt_ostree.compose import metadata as md
from apt_ostree.compose.rootfs import build_rootfs, plan_rootfs
from apt_ostree.core import grub, guard, kernel, layout
from apt_ostree.core.apt import AptIndex, Package, host_architecture, host_sources, parse_dpkg_status, sources_list_text
from apt_ostree.core.deb_check import check_new_deb
from apt_ostree.core.ostree import Repo, variant_metadata
from apt_ostree.core.pkgdb import KEY_PACKAGES, packages_variant
from apt_ostree.core.sources import AptRepo, host_release, map_release
from apt_ostree.core.treefile import Treefile
from apt_ostree.errors import AptError, CommandError, ComposeError, RepoError, TreefileError
from apt_ostree.progress import Progress
from apt_ostree.run import run, unmount_below
from apt_ostree.sandbox import Bind, Sandbox


@dataclass(frozen=True)
class ComposeOptions:
    repo: Path
    cachedir: Path | None = None
    dry_run: bool = False
    source_date_epoch: int | None = None
    metadata_strings: Mapping[str, str] = field(default_factory=dict)
    parent: str | None = None
    no_parent: bool = False
    force_nocache: bool = False
    cache_only: bool = False
    workdir: Path | None = None


@dataclass(frozen=True)
class ComposeResult:
    ref: str
    checksum: str | None
    changed: bool
    packages: tuple[Package, ...] = ()
    version: str | None = None
    transaction: tuple[str, ...] = ()


class _Collect(Progress):
    """Forwards to another progress and keeps subprocess output lines."""

    def __init__(self, inner: Progress) -> None:
        super().__init__()
        self.inner = inner
        self.lines: list[str] = []

    def output(self, line: str) -> None:
        self.lines.append(line)
        self.inner.output(line)

    @property
    def cancelled(self) -> bool:
        return self.inner.cancelled


def release_sources(releasever: str | None) -> tuple[AptRepo, ...]:
    """The host's configured sources, for ``releasever`` when it is another release than the host's
    (a Debian 12 host composing trixie: trixie, trixie-updates, trixie-security from its mirrors)."""
    repos = host_sources()
    if releasever is None:
        return repos
    host = host_release()
    if host is None:
        raise AptError(f"releasever {releasever}: cannot tell this host's release (no VERSION_CODENAME "
                       "in /etc/os-release)", hint="add a repos: list to the treefile")
    return map_release(repos, host, releasever)


def compose_tree(treefile: Treefile, opts: ComposeOptions, progress: Progress) -> ComposeResult:
    arch = host_architecture()
    for deb in treefile.packages_local:  # before any download: a bad one named now, not after mmdebstrap
        try:
            check_new_deb(deb)
        except AptError as e:
            raise TreefileError(f"packages-local: {e.message}", hint=e.hint) from None
    repos = treefile.repos if treefile.repos is not None else release_sources(treefile.releasever)
    cache_tmp = None
    if opts.cachedir is None:
        cache_tmp = tempfile.TemporaryDirectory(prefix="apt-ostree-cache-", dir=opts.workdir)
    cachedir = Path(cache_tmp.name) if cache_tmp else opts.cachedir
    assert cachedir is not None
    cachedir = cachedir.resolve()
    try:
        return _compose(treefile, opts, progress, arch, repos, cachedir)
    finally:
        if cache_tmp is not None:
            cache_tmp.cleanup()


def _compose(treefile: Treefile, opts: ComposeOptions, progress: Progress, arch: str,
             repos: tuple[Any, ...], cachedir: Path) -> ComposeResult:
    cachedir.mkdir(parents=True, exist_ok=True)
    index = AptIndex(cachedir, repos, arch)
    if opts.cache_only:
        if not index.has_lists():
            raise AptError(f"--cache-only: no package lists cached in {cachedir}",
                           hint="compose once without --cache-only to fill the cache")
    else:
        progress.step("Updating package lists")
        index.update(progress)
    requested = treefile.packages_for(arch)
    missing = set(index.missing(requested + treefile.exclude_packages))
    for i, name in enumerate(treefile.packages):
        if name in missing:
            raise AptError(f"treefile {treefile.path}: packages[{i}]: package {name!r} not found in the APT sources",
                           hint=sources_list_text(repos).strip())
    for name in sorted(missing & set(requested)):
        raise AptError(f"treefile {treefile.path}: packages-{arch}: package {name!r} not found in the APT sources")
    sources = sources_list_text(repos)
    inputhash = md.input_hash(treefile, arch=arch, sources=sources, release_digest=index.release_digest(),
                              extra_metadata=opts.metadata_strings)
    progress.check_cancelled()

    repo = _open_repo(opts.repo)
    previous = repo.resolve_ref(treefile.ref) if repo else None
    prev_info = repo.commit(previous) if repo and previous else None
    unchanged = prev_info is not None and prev_info.metadata.get(md.KEY_INPUTHASH) == inputhash
    if prev_info and unchanged and not opts.force_nocache and not opts.dry_run:
        return ComposeResult(treefile.ref, previous, changed=False,
                             version=prev_info.metadata.get(md.KEY_VERSION))
    if opts.no_parent:
        parent = None
    elif opts.parent:
        if repo is None:
            raise RepoError(f"--parent {opts.parent}: repository {opts.repo} does not exist")
        parent = repo.resolve(opts.parent)
    else:
        parent = previous

    plan = plan_rootfs(treefile, repos, arch, index.fetch_options, opts.cache_only)
    env = {"SOURCE_DATE_EPOCH": str(opts.source_date_epoch)} if opts.source_date_epoch is not None else {}
    workroot = Path(tempfile.mkdtemp(prefix="apt-ostree-compose-", dir=opts.workdir or _default_workdir()))
    try:
        rootfs = workroot / "rootfs"
        if opts.dry_run:
            progress.step("Resolving packages (dry run)")
            collect = _Collect(progress)
            build_rootfs(plan, rootfs, workroot, cachedir, env, collect, simulate=True)
            inst = tuple(sorted({" ".join(ln.split()[1:3]).replace("(", "") for ln in collect.lines
                                 if ln.startswith("Inst ")}))
            return ComposeResult(treefile.ref, None, changed=True, transaction=inst)
        progress.step(f"Building root file system ({treefile.variant}, {len(plan.include)} packages requested)")
        build_rootfs(plan, rootfs, workroot, cachedir, env, progress)
        progress.check_cancelled()
        kver = postprocess_tree(treefile, rootfs, env, progress)
        packages = tuple(parse_dpkg_status((rootfs / layout.DPKG_DATABASE / "status").read_text()))

        version = opts.metadata_strings.get("version") or treefile.add_commit_metadata.get("version")
        if version is None and treefile.automatic_version_prefix:
            prev_version = prev_info.metadata.get(md.KEY_VERSION) if prev_info else None
            version = md.next_version(treefile.automatic_version_prefix, prev_version)
        meta: dict[str, Any] = dict(treefile.add_commit_metadata)
        meta.update(opts.metadata_strings)
        meta.update({md.KEY_INPUTHASH: inputhash, md.KEY_SOURCES: sources,
                     KEY_PACKAGES: packages_variant(packages)})
        if version is not None:
            meta[md.KEY_VERSION] = str(version)
        if kver:
            meta["ostree.bootable"] = True
            meta["ostree.linux"] = kver
            if treefile.initramfs_args:
                meta[kernel.KEY_INITRAMFS_ARGS] = list(treefile.initramfs_args)
        progress.step(f"Committing {treefile.ref} to {opts.repo}")
        if repo is None:  # created only now, so that a failed compose leaves nothing behind
            repo = Repo.open_or_create(opts.repo, "bare")
        timestamp = opts.source_date_epoch if opts.source_date_epoch is not None else int(time.time())
        checksum = repo.commit_tree(rootfs, ref=treefile.ref, parent=parent, metadata=variant_metadata(meta),
                                    timestamp=timestamp)
        progress.done()
        return ComposeResult(treefile.ref, checksum, changed=True, packages=packages,
                             version=str(version) if version is not None else None)
    finally:
        unmount_below(workroot)  # never delete through a bind mount left by a failed build
        shutil.rmtree(workroot, ignore_errors=True)


def _default_workdir() -> str:
    return os.environ.get("TMPDIR", "/var/tmp")


def _open_repo(path: Path) -> Repo | None:
    """The repository if it exists; None if it is to be created by the commit."""
    if (path / "config").is_file():
        return Repo.open(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise RepoError(f"not an OSTree repository: {path}")
    return None


def postprocess_tree(treefile: Treefile, root: Path, env: dict[str, str], progress: Progress) -> str | None:
    """Apply the treefile's changes and the OSTree layout to ``root``; return the kernel version."""
    progress.step("Post-processing the tree")
    for src, dest in treefile.add_files:
        target = root / dest.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, target)
    sandbox = Sandbox(rootfs=root, capabilities=("ALL",), env=env)
    for unit in treefile.units:
        _in_tree(sandbox, ["systemctl", "enable", unit], progress, f"units: enabling {unit}")
    if treefile.default_target:
        _in_tree(sandbox, ["systemctl", "set-default", treefile.default_target], progress,
                 f"default-target: {treefile.default_target}")
    scripts = [(f"postprocess[{i}]", s) for i, s in enumerate(treefile.postprocess)]
    if treefile.postprocess_script:
        scripts.append(("postprocess-script", treefile.postprocess_script.read_text()))
    for name, text in scripts:
        script_dir = Path(tempfile.mkdtemp(prefix="apt-ostree-script-"))
        try:
            (script_dir / "script").write_text(text)
            (script_dir / "script").chmod(0o755)
            sb = Sandbox(rootfs=root, capabilities=("ALL",), env=env,
                         binds=(Bind(script_dir, "/run/apt-ostree", readonly=True),))
            interp = [] if text.startswith("#!") else ["/bin/sh", "-e"]
            _in_tree(sb, [*interp, "/run/apt-ostree/script"], progress, f"treefile {treefile.path}: {name}")
        finally:
            shutil.rmtree(script_dir)
    _install_package_guard(sandbox, root, progress)
    for rel in treefile.remove_files:
        target = root / rel.lstrip("/")
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.is_symlink() or target.exists():
            target.unlink()

    kver = kernel.find_kernel(root)
    if treefile.container:
        if kver:
            raise ComposeError(f"treefile {treefile.path}: container: true, but the tree has kernel {kver}",
                               hint="drop the linux-image package or set container: false")
    else:
        if kver is None:
            raise ComposeError(f"treefile {treefile.path}: packages: the tree has no kernel",
                               hint="add linux-image-amd64 (or set container: true)")
        progress.step(f"Building the initramfs for {kver}")
        kernel.place_kernel(root, kver)
        kernel.build_initramfs(root, kver, treefile.initramfs_args, progress, env)

    progress.step("Converting to the OSTree layout")
    layout.clean_host_leftovers(root, treefile.machineid_compat)
    layout.add_ssh_keygen(root)
    layout.write_sysusers(root)
    state_lines = layout.move_package_state(root)
    var_lines, dropped = layout.convert_var(root)
    if dropped:
        progress.message(f"dropped {len(dropped)} files from /var (logs and caches), e.g. {', '.join(dropped[:3])}")
    top_lines = layout.make_toplevel_links(root)
    layout.empty_api_dirs(root)
    layout.write_tmpfiles(root, layout.TMPFILES_VAR, var_lines + state_lines, "/var content of the composed tree")
    layout.write_tmpfiles(root, layout.TMPFILES_LAYOUT, top_lines, "targets of the OSTree top-level symlinks")
    layout.move_etc(root)
    layout.check_layout(root, treefile.container)
    return kver


def _install_package_guard(sandbox: Sandbox, root: Path, progress: Progress) -> None:
    """apt/apt-get/dpkg on the booted image point to apt-ostree (see core/guard.py)."""
    guard.write_guard(root)
    for rel in guard.GUARDED:
        if (root / rel).exists() and not (root / (rel + guard.REAL_SUFFIX)).exists():
            _in_tree(sandbox, ["dpkg-divert", "--quiet", "--local", "--rename", "--divert",
                               f"/{rel}{guard.REAL_SUFFIX}", "--add", f"/{rel}"], progress, f"diverting /{rel}")
    guard.link_guards(root)
    # the boot menu: apt-ostree's 15_apt-ostree (every initrd of an entry) instead of ostree's 15_ostree,
    # which is diverted out of /etc/grub.d (it is a symlink to libostree's script: never chmod it, and
    # never follow its absolute target from here, which is the host's file system)
    ours, theirs = root / grub.OURS, root / grub.THEIRS
    if ours.is_file() and os.path.lexists(theirs):
        (root / grub.THEIRS_DIVERTED).parent.mkdir(parents=True, exist_ok=True)
        _in_tree(sandbox, ["dpkg-divert", "--quiet", "--local", "--rename", "--divert", f"/{grub.THEIRS_DIVERTED}",
                           "--add", f"/{grub.THEIRS}"], progress, f"diverting /{grub.THEIRS}")


def _in_tree(sandbox: Sandbox, argv: list[str], progress: Progress, what: str) -> None:
    try:
        run(sandbox.argv(argv), progress=progress, what=what)
    except CommandError as e:
        raise ComposeError(e.message, hint=e.hint) from None

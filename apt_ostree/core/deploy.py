"""Deployment operations: upgrade, deploy, rebase, rollback, kargs, cleanup.

Each takes a loaded :class:`Sysroot` (the caller holds its lock) and a
:class:`Progress`, returns a result, and raises typed errors; nothing here
prints. The rules follow rpm-ostree's: a change builds on the pending deployment
when there is one (staged, or a default not yet booted), else on the booted one
(:class:`Start`), so that changes made before a reboot add up; /etc is merged from
the booted deployment; the new deployment is staged when booted.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass

from apt_ostree import interrupt
from apt_ostree.core import initramfs_etc, layering
from apt_ostree.core.boot_space import check_boot_space
from apt_ostree.core.imgref import OstreeImageRef, image_ref_name, is_image_reference
from apt_ostree.core.layer_keys import KEY_FINGERPRINT
from apt_ostree.core.next_apt import apt_config_root
from apt_ostree.core.oci import VERSION
from apt_ostree.core.ops import ImagePull
from apt_ostree.core.origin import Origin
from apt_ostree.core.ostree import CommitInfo, Repo
from apt_ostree.core.pkgdb import PackageDiff, commit_packages, diff_packages
from apt_ostree.core.plan import Plan
from apt_ostree.core.sysroot import Deployment, Sysroot
from apt_ostree.errors import AptOstreeError, RepoError, UnknownPackage, UsageError
from apt_ostree.progress import Progress

CHECKSUM_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Refspec:
    remote: str | None
    ref: str

    @classmethod
    def parse(cls, text: str) -> Refspec:
        remote, sep, ref = text.partition(":")
        if not sep:
            return cls(None, text)
        if not remote or not ref:
            raise UsageError(f"not a refspec: {text!r}", hint="expected REMOTE:REF or REF")
        return cls(remote, ref)

    def __str__(self) -> str:
        return f"{self.remote}:{self.ref}" if self.remote else self.ref


@dataclass(frozen=True)
class Change:
    """What an operation did or would do."""

    changed: bool
    checksum: str
    previous: str
    version: str | None = None
    diff: PackageDiff | None = None
    deployment: Deployment | None = None
    plan: Plan | None = None
    image: ImagePull | None = None


@dataclass(frozen=True)
class LayerOptions:
    """How layered packages are (re)applied when a deployment is made."""

    cache_only: bool = False
    allow_inactive: bool = False
    dry_run: bool = False
    download_only: bool = False
    lock_finalization: bool = False


@dataclass(frozen=True)
class Start:
    """What a change starts from: ``origin``, the deployment whose origin, base and kernel
    arguments it changes (pending, else booted/default), and ``merge``, the /etc merge source."""

    origin: Deployment
    merge: Deployment

    @classmethod
    def of(cls, sysroot: Sysroot) -> Start:
        return cls(sysroot.origin_deployment(), sysroot.merge_deployment())

    @property
    def on_pending(self) -> bool:
        return self.origin.id != self.merge.id

    def kargs(self, kargs: Sequence[str] | None) -> list[str] | None:
        """The kernel arguments of the new deployment: ``kargs``, else the origin deployment's
        (None lets libostree take the merge deployment's, which are the same)."""
        if kargs is not None:
            return list(kargs)
        return self.origin.kargs.split() if self.on_pending else None


Source = Refspec | OstreeImageRef  # what a base follows: an OSTree ref, or a bootable container image


def _source(deployment: Deployment) -> Source:
    if deployment.origin is not None and deployment.origin.container_image:
        return OstreeImageRef.parse(deployment.origin.container_image)
    return _origin(deployment)


def parse_source(text: str) -> Source:
    return OstreeImageRef.parse(text) if is_image_reference(text) else Refspec.parse(text)


def _origin(deployment: Deployment) -> Refspec:
    if deployment.origin is not None and deployment.origin.container_image:
        raise UsageError(f"deployment {deployment.id} follows the image {deployment.origin.container_image}",
                         hint="an image-based deployment has no OSTree history to deploy from; "
                              "rebase to another image, or upgrade")
    if not deployment.origin_refspec:
        raise RepoError(f"deployment {deployment.id} has no origin refspec", hint="use rebase REMOTE:REF")
    return Refspec.parse(deployment.origin_refspec)


def origin_of(deployment: Deployment) -> Origin:
    if deployment.origin is None:
        raise RepoError(f"deployment {deployment.id} has no valid origin file", hint="use rebase REMOTE:REF")
    return deployment.origin


def _existing_layers(sysroot: Sysroot, repo: Repo) -> dict[str, str]:
    """fingerprint -> commit of the layered commits deployed now (an unchanged rebuild reuses them)."""
    out = {}
    for d in sysroot.deployments():
        try:
            meta = repo.commit(d.checksum).metadata
        except RepoError:
            continue
        if KEY_FINGERPRINT in meta:
            out[str(meta[KEY_FINGERPRINT])] = d.checksum
    return out


def build_target(sysroot: Sysroot, merge: Deployment, base: str, origin: Origin, progress: Progress,
                 opts: LayerOptions, layered_before: Sequence[str] = ()) -> tuple[str | None, Plan | None]:
    """The commit to deploy for ``origin`` on ``base``: the base itself, or a layered commit
    (None with a plan for dry runs and downloads). APT's state is ``merge``'s stateroot's; its
    sources are those the new deployment will have: ``merge``'s /etc/apt (the booted deployment's,
    which the new /etc is merged from) merged onto ``base``'s /usr/etc/apt when that differs.
    ``layered_before``: the requests carried over from the current deployment (a new base that
    lacks one of them is named, with the --uninstall= that drops it)."""
    if not origin.layered:
        return base, None
    repo = sysroot.repo()
    apt = None
    if origin.packages_layered:
        state, _ = layering.state_dirs(sysroot.path, merge.osname)
        root = apt_config_root(repo, merge, base, state / "work")
        apt = layering.open_apt(sysroot.path, merge.osname, root, None if root == merge.path else
                                f"the new base's /usr/etc/apt merged with /etc/apt of {merge.id}")
    try:
        result = layering.build(repo, apt, base, origin, progress, cache_only=opts.cache_only,
                                allow_inactive=opts.allow_inactive, dry_run=opts.dry_run,
                                download_only=opts.download_only, reuse=_existing_layers(sysroot, repo),
                                etc=merge.path / "etc")
    except UnknownPackage as e:
        if e.name not in {r.partition("=")[0] for r in layered_before}:
            raise
        version = repo.commit(base).metadata.get("version")
        raise UnknownPackage(e.name, f"layered package {e.name} is not available for the new base {base[:12]}"
                             + (f" (version {version})" if version else "") + ": none of its APT sources has it",
                             hint=f"to go on without it, add --uninstall={e.name}") from None
    return result.checksum, result.plan


def deploy_new(sysroot: Sysroot, start: Start, checksum: str, origin: Origin, kargs: Sequence[str] | None = None,
               lock_finalization: bool = False) -> Deployment:
    """Sysroot.deploy of ``checksum`` (replacing a staged deployment, whose changes ``origin``
    already holds), with the base commits of layered deployments protected from its prune."""
    repo = sysroot.repo()
    # initramfs-etc: the tracked files as they are now in the /etc the new one is merged from
    overlay = None
    if origin.initramfs_etc:
        kver = repo.commit(checksum).metadata.get("ostree.linux")
        if not kver or not repo.is_file(checksum, f"usr/lib/modules/{kver}/initramfs.img"):
            raise RepoError(f"initramfs-etc: commit {checksum[:12]} has no initramfs to overlay")
        overlay = initramfs_etc.overlay_initrd(start.merge.path / "etc", origin.initramfs_etc)
    check_boot_space(sysroot.path / "boot", repo, checksum, [d.checksum for d in sysroot.deployments()],
                     len(overlay) if overlay is not None else 0)
    with interrupt.committing():
        layering.protect_bases(repo, [d.checksum for d in sysroot.deployments()] + [checksum])
        deployment = sysroot.deploy(start.origin.osname, checksum, origin, start.kargs(kargs), start.merge,
                                    lock_finalization, overlay_initrd=overlay)
        layering.protect_bases(repo, [d.checksum for d in sysroot.deployments()])
    return deployment


def redeploy(sysroot: Sysroot, start: Start, base: str, origin: Origin, progress: Progress, opts: LayerOptions, *,
             version: str | None = None, layered_before: Sequence[str] = (), title: str | None = None,
             force: bool = False) -> Change:
    """The one way a change becomes a deployment: the commit for ``origin`` on ``base`` (layered
    when it has requests), its package diff against the deployment the change builds on, and the
    new deployment. A dry run or a download gives the plan and the base's diff; nothing deployed.
    ``force``: a new deployment even when nothing changed (initramfs-etc --force-sync)."""
    repo = sysroot.repo()
    current = start.origin
    target, plan = build_target(sysroot, start.merge, base, origin, progress, opts, layered_before=layered_before)
    if target is None:
        return Change(True, base, current.checksum, version,
                      _package_diff(repo, layering.base_of(repo, current.checksum), base), plan=plan)
    if origin == origin_of(current) and target == current.checksum and not force:
        return Change(False, target, current.checksum, plan=plan)
    diff = _package_diff(repo, current.checksum, target)
    progress.step(f"{title} ({target[:12]})" if title else f"Deploying {target[:12]}")
    deployment = deploy_new(sysroot, start, target, origin, lock_finalization=opts.lock_finalization)
    return Change(True, target, current.checksum, version, diff, deployment, plan)


def fetch_image(repo: Repo, ref: OstreeImageRef, progress: Progress, *, cache_only: bool = False) \
        -> tuple[str, ImagePull]:
    """The commit of the image ``ref`` (pulled, only the layers not here; ``cache_only``: as last pulled)."""
    from apt_ostree.core import image

    if cache_only:
        held = repo.resolve_ref(image_ref_name(ref))
        if held is None:
            raise RepoError(f"image {ref} has not been pulled", hint="run without --cache-only")
        state = image.state_of(repo, held)
        return held, ImagePull(str(ref), state.digest if state else "")
    progress.step(f"Pulling {ref}")
    pulled = image.pull(repo, ref, progress)
    if pulled.fetched_layers:
        progress.step(f"Fetched {pulled.fetched_layers}/{pulled.layers} layers "
                      f"({pulled.fetched_bytes / 1e6:.1f} of {pulled.total_bytes / 1e6:.1f} MB)")
    return pulled.commit, ImagePull(str(ref), pulled.digest, pulled.layers, pulled.fetched_layers,
                                    pulled.fetched_bytes, pulled.total_bytes)


def fetch(repo: Repo, refspec: Refspec, progress: Progress, *, cache_only: bool = False,
          commit_only: bool = False) -> str:
    """The newest commit of ``refspec``, pulled from its remote unless ``cache_only``."""
    if refspec.remote is not None and refspec.remote not in repo.remotes():
        raise RepoError(f"unknown remote {refspec.remote!r} in {refspec}",
                        hint=f"known remotes: {', '.join(repo.remotes()) or 'none'}")
    if refspec.remote is not None and not cache_only:
        progress.step(f"Pulling {refspec}" + (" (metadata only)" if commit_only else ""))
        repo.pull(refspec.remote, [refspec.ref], commit_only=commit_only)
    checksum = repo.resolve_ref(str(refspec))
    if checksum is None:
        raise RepoError(f"unknown refspec {refspec}" + (" in the local cache" if cache_only else ""))
    return checksum


def _package_diff(repo: Repo, old: str, new: str) -> PackageDiff | None:
    try:
        return diff_packages(commit_packages(repo, old), commit_packages(repo, new))
    except AptOstreeError:
        return None


def upgrade(sysroot: Sysroot, progress: Progress, *, check: bool = False, preview: bool = False,
            download_only: bool = False, cache_only: bool = False, allow_downgrade: bool = False,
            lock_finalization: bool = False, origin: Origin | None = None) -> Change:
    """Pull the origin's newest base and re-apply the layered packages on it (``origin``: the
    origin deployment's, or a changed one for ``upgrade --install``)."""
    start = Start.of(sysroot)
    current = start.origin
    source = _source(current)
    origin = origin or origin_of(current)
    repo = sysroot.repo()
    pulled: ImagePull | None = None
    if isinstance(source, OstreeImageRef):
        if check or preview:
            return _check_image(repo, source, current)
        new_base, pulled = fetch_image(repo, source, progress, cache_only=cache_only)
    else:
        new_base = fetch(repo, source, progress, cache_only=cache_only, commit_only=check or preview)
    refspec = source
    old_base = layering.base_of(repo, current.checksum)
    if not origin.layered and origin == origin_of(current) and new_base == current.checksum:
        return Change(False, new_base, current.checksum, image=pulled)
    new_info = repo.commit(new_base)
    old_info = repo.commit(old_base)
    if new_info.timestamp < old_info.timestamp and not allow_downgrade:
        raise RepoError(f"{refspec} points to {new_base[:12]}, which is older than the deployed {old_base[:12]}",
                        hint="pass --allow-downgrade to deploy it anyway")
    version = new_info.metadata.get("version")
    if check or preview:
        changed = new_base != old_base
        return Change(changed, new_base, current.checksum, version, _package_diff(repo, old_base, new_base))
    if download_only and not origin.layered:  # (nothing to layer: the pull was the download)
        return Change(True, new_base, current.checksum, version, _package_diff(repo, old_base, new_base), image=pulled)
    change = redeploy(sysroot, start, new_base, origin, progress,
                      LayerOptions(cache_only=cache_only, allow_inactive=True, download_only=download_only,
                                   lock_finalization=lock_finalization),
                      version=version, layered_before=origin_of(current).requested)
    return dataclasses.replace(change, image=pulled)


def _check_image(repo: Repo, ref: OstreeImageRef, current: Deployment) -> Change:
    """upgrade --check/--preview of an image: its manifest and config fetched, compared by digest."""
    from apt_ostree.core import image

    fetched = image.check(ref)
    state = image.state_of(repo, layering.base_of(repo, current.checksum))
    changed = state is None or state.digest != fetched.manifest_digest
    labels = fetched.config.labels
    return Change(changed, labels.get("ostree.commit", ""), current.checksum,
                  labels.get(VERSION),
                  image=ImagePull(str(ref), fetched.manifest_digest, len(fetched.manifest.layers),
                                  total_bytes=sum(layer.size for layer in fetched.manifest.layers)))


def resolve_revision(repo: Repo, refspec: Refspec, revision: str, progress: Progress, cache_only: bool) -> str:
    """A checksum (full or unique prefix) or ``version=V``, searched in the ref's history."""
    if revision.startswith("version="):
        wanted = revision.removeprefix("version=")
        if refspec.remote is not None and not cache_only:
            progress.step(f"Pulling the history of {refspec}")
            repo.pull(refspec.remote, [refspec.ref], commit_only=True, depth=-1)
        head = repo.resolve_ref(str(refspec))
        history: list[CommitInfo] = repo.history(head) if head else []
        for info in history:
            if info.metadata.get("version") == wanted:
                return info.checksum
        raise RepoError(f"no commit with version {wanted!r} in the history of {refspec}")
    if CHECKSUM_RE.match(revision):
        return revision
    if re.match(r"^[0-9a-f]{4,63}$", revision):
        return repo.resolve(revision)
    raise UsageError(f"not a revision: {revision!r}", hint="expected a commit checksum or version=VERSION")


def deploy_revision(sysroot: Sysroot, revision: str, progress: Progress, *, cache_only: bool = False,
                    lock_finalization: bool = False, origin: Origin | None = None) -> Change:
    start = Start.of(sysroot)
    current = start.origin
    refspec = _origin(current)
    repo = sysroot.repo()
    checksum = resolve_revision(repo, refspec, revision, progress, cache_only)
    if checksum == layering.base_of(repo, current.checksum) and (origin is None or origin == origin_of(current)):
        return Change(False, checksum, current.checksum)
    if refspec.remote is not None and not cache_only:
        progress.step(f"Pulling {checksum[:12]}")
        repo.pull(refspec.remote, [checksum])
    try:
        info = repo.commit(checksum)
    except RepoError:
        raise RepoError(f"unknown revision {revision!r} for {refspec}") from None
    return redeploy(sysroot, start, checksum, origin or origin_of(current), progress,
                    LayerOptions(cache_only=cache_only, allow_inactive=True, lock_finalization=lock_finalization),
                    version=info.metadata.get("version"), layered_before=origin_of(current).requested)


def rebase(sysroot: Sysroot, target: str, progress: Progress, *, cache_only: bool = False, preview: bool = False,
           lock_finalization: bool = False, origin: Origin | None = None) -> Change:
    """Deploy the newest commit of another refspec, the layered packages re-resolved on it
    from the sources the new deployment will have. ``preview``: pull it and resolve, deploy
    nothing; the Change's diff is then the base's package diff and its plan the layered one."""
    start = Start.of(sysroot)
    current = start.origin
    old = _source(current)
    new_spec = parse_source(target)
    if isinstance(new_spec, Refspec) and isinstance(old, Refspec) and new_spec.remote is None \
            and ":" not in target and old.remote is not None and sysroot.repo().resolve_ref(target) is None:
        new_spec = Refspec(old.remote, target)  # rpm-ostree: a bare REF keeps the current remote
    repo = sysroot.repo()
    pulled: ImagePull | None = None
    if isinstance(new_spec, OstreeImageRef):
        checksum, pulled = fetch_image(repo, new_spec, progress, cache_only=cache_only)
    else:
        checksum = fetch(repo, new_spec, progress, cache_only=cache_only)
    if checksum == layering.base_of(repo, current.checksum) and str(new_spec) == str(old) and (
            origin is None or origin == origin_of(current)):
        return Change(False, checksum, current.checksum, image=pulled)
    base_origin = origin or origin_of(current)
    new_origin = base_origin.with_changes(container_image=str(new_spec)) if isinstance(new_spec, OstreeImageRef) \
        else base_origin.with_changes(refspec=str(new_spec))
    version = repo.commit(checksum).metadata.get("version")
    if preview and not new_origin.layered:
        return Change(True, checksum, current.checksum, version,
                      _package_diff(repo, layering.base_of(repo, current.checksum), checksum), image=pulled)
    change = redeploy(sysroot, start, checksum, new_origin, progress,
                      LayerOptions(cache_only=cache_only, allow_inactive=True, dry_run=preview,
                                   lock_finalization=lock_finalization),
                      version=version, layered_before=origin_of(current).requested, title=f"Deploying {new_spec}")
    return dataclasses.replace(change, image=pulled)


def rollback(sysroot: Sysroot) -> Deployment:
    """Make the previous deployment the default; return it."""
    deployments = [d for d in sysroot.deployments() if not d.staged]
    current = next((d for d in deployments if d.booted), None) or (deployments[0] if deployments else None)
    if current is None:
        raise RepoError("no deployments to roll back")
    others = [d for d in deployments if d is not current]
    if current.index == 0:
        if not others:
            raise RepoError("no rollback deployment found", hint="there is only one deployment")
        target, rest = others[0], others[1:]
        order = [target, current, *rest]
    else:  # booted is not the default: rolling back means booting it again
        target = current
        order = [current, *others]
    sysroot.write_order(order)
    return target


def cleanup(sysroot: Sysroot, *, pending: bool, rollback_: bool, base: bool) -> list[Deployment]:
    """Remove the pending and/or rollback deployments; prune the repository. Returns what was removed."""
    deployments = sysroot.deployments()
    anchor = next((d for d in deployments if d.booted), None) or (deployments[0] if deployments else None)
    if anchor is None:
        return []
    removed = []
    keep = []
    for d in deployments:
        is_pending = d.index < anchor.index or d.staged
        is_rollback = d.index > anchor.index and not d.staged
        if (pending and is_pending) or ((rollback_ and is_rollback) and not d.pinned):
            removed.append(d)
        else:
            keep.append(d)
    if removed:
        sysroot.write_order(keep)
    if removed or base:
        layering.protect_bases(sysroot.repo(), [d.checksum for d in keep])
        sysroot.cleanup()
    if base:  # the cached lower checkouts of layering
        shutil.rmtree(layering.lower_cache(sysroot.repo()), ignore_errors=True)
    return removed


def edit_kargs(current: Sequence[str], *, append: Sequence[str] = (), append_if_missing: Sequence[str] = (),
               delete: Sequence[str] = (), delete_if_present: Sequence[str] = (),
               replace: Sequence[str] = ()) -> list[str]:
    """rpm-ostree's kargs editing rules, as a pure function; raises UsageError naming the bad argument."""
    args = list(current)
    for a in append:
        _check_karg(a)
        args.append(a)
    for a in append_if_missing:
        _check_karg(a)
        if a not in args:
            args.append(a)
    for a in [*delete, *delete_if_present]:
        _check_karg(a)
        matches = [x for x in args if x == a or ("=" not in a and x.split("=", 1)[0] == a)]
        if not matches:
            if a in delete:
                raise UsageError(f"--delete={a}: no such kernel argument")
            continue
        if len(matches) > 1 and "=" not in a:
            raise UsageError(f"--delete={a}: several values ({', '.join(matches)}); name one as KEY=VALUE")
        args.remove(matches[0])
    for r in replace:
        _check_karg(r)
        key, _, rest = r.partition("=")
        if "=" in rest:  # KEY=OLD=NEW
            old, _, new = rest.partition("=")
            target = f"{key}={old}"
            if target not in args:
                raise UsageError(f"--replace={r}: {target} is not set")
            args[args.index(target)] = f"{key}={new}"
        else:
            positions = [i for i, x in enumerate(args) if x.split("=", 1)[0] == key]
            if len(positions) != 1:
                raise UsageError(f"--replace={r}: {key} is set {len(positions)} times; use KEY=OLD=NEW")
            args[positions[0]] = r
    check_kargs(args)
    return args


# x86's COMMAND_LINE_SIZE, less what the boot entry adds (BOOT_IMAGE=..., ostree=/ostree/boot.N/OS/CSUM/N)
KARGS_MAX = 2048 - 256
OWNED_KARGS = ("ostree", "BOOT_IMAGE")  # (set by libostree and GRUB, not by kargs)


def check_kargs(args: Sequence[str]) -> None:
    """A whole kernel command line as the boot entry will carry it; UsageError naming what is wrong."""
    for a in args:
        _check_karg(a)
    length = len(" ".join(args))
    if length > KARGS_MAX:
        raise UsageError(f"the kernel arguments would be {length} bytes long, more than the {KARGS_MAX} that fit",
                         hint="the kernel's command line holds 2048 bytes, the boot entry's own arguments included")


def _check_karg(arg: str) -> None:
    if not arg or any(c.isspace() for c in arg) or arg.startswith("="):
        raise UsageError(f"not a kernel argument: {arg!r}")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in arg):
        raise UsageError(f"a control character in kernel argument {arg!r}")
    if arg.count('"') % 2:
        raise UsageError(f"unbalanced quote in kernel argument {arg!r}",
                         hint="the kernel would read the arguments after it as part of its value")
    if arg.split("=", 1)[0] in OWNED_KARGS:
        raise UsageError(f"kernel argument {arg!r}: {arg.split('=', 1)[0]}= is set by libostree and the boot loader")


def kargs_source(sysroot: Sysroot, deploy_index: int | None) -> Deployment:
    """The deployment whose kernel arguments an edit starts from: deployment ``deploy_index``,
    else the one the change builds on (the pending deployment, else the booted one)."""
    deployments = sysroot.deployments()
    if deploy_index is None:
        return sysroot.origin_deployment()
    if not 0 <= deploy_index < len(deployments):
        raise UsageError(f"--deploy-index={deploy_index}: there are {len(deployments)} deployments")
    return deployments[deploy_index]


def set_kargs(sysroot: Sysroot, new: Sequence[str], progress: Progress, lock_finalization: bool = False) -> Deployment:
    """A new deployment of the origin deployment's commit and origin with the kernel arguments ``new``."""
    start = Start.of(sysroot)
    progress.step("Deploying with the new kernel arguments")
    return deploy_new(sysroot, start, start.origin.checksum, origin_of(start.origin), list(new), lock_finalization)

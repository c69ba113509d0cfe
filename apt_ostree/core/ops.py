"""The operations that change a system, as typed requests, and what they return.

A request is a frozen dataclass: the CLI makes it from its arguments, apt-ostreed from a D-Bus
call, and the two make the same one for the same command (tests/unit/test_ops.py).
``validate()`` is its usage check, made before anything is queued or touched.
apt_ostree.core.execute runs a request and returns a :class:`Result`: data (what changed, the
new deployment, the package diff, the plan), never text; errors are the typed classes of
apt_ostree.errors. Requests and results reach and leave apt-ostreed's worker as JSON
(apt_ostree.core.wire). This module is light: apt-ostreed imports it at start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from apt_ostree.core.imgref import OstreeImageRef, is_image_reference
from apt_ostree.errors import UsageError

if TYPE_CHECKING:
    from apt_ostree.core.pkgdb import PackageDiff
    from apt_ostree.core.plan import Plan


@dataclass(frozen=True)
class Request:
    """A package change: what install, uninstall, override and reset ask for."""

    install: tuple[str, ...] = ()  # names, name=version, or paths of .debs
    uninstall: tuple[str, ...] = ()
    uninstall_all: bool = False
    override_remove: tuple[str, ...] = ()
    override_replace: tuple[str, ...] = ()  # paths of .debs
    override_reset: tuple[str, ...] = ()
    override_reset_all: bool = False
    reset_layers: bool = False
    reset_initramfs: bool = False  # reset -i: no regeneration, no tracked /etc files
    idempotent: bool = False
    debconf: tuple[str, ...] = ()  # debconf-set-selections lines


@dataclass(frozen=True, kw_only=True)
class Deploying:
    """What upgrade, deploy and rebase share: a new deployment of a (new) base."""

    cache_only: bool = False
    lock_finalization: bool = False
    reboot: bool = False
    unchanged_exit_77: bool = False
    install: tuple[str, ...] = ()  # (--install: also layered on the new deployment)
    uninstall: tuple[str, ...] = ()

    def validate(self) -> None:
        _arguments(self.install + self.uninstall, "package")


@dataclass(frozen=True)
class Upgrade(Deploying):
    check: bool = False
    preview: bool = False
    download_only: bool = False
    allow_downgrade: bool = False

    def validate(self) -> None:
        super().validate()
        chosen = [flag for flag, on in (("--check", self.check), ("--preview", self.preview),
                                        ("--download-only", self.download_only)) if on]
        if len(chosen) > 1:
            raise UsageError(f"upgrade: {' and '.join(chosen)} ask for different things: choose one")


@dataclass(frozen=True)
class Deploy(Deploying):
    revision: str

    def validate(self) -> None:
        _arguments([self.revision], "revision")
        super().validate()


@dataclass(frozen=True)
class Rebase(Deploying):
    refspec: str
    preview: bool = False

    def validate(self) -> None:
        _arguments([self.refspec], "refspec")
        super().validate()
        if is_image_reference(self.refspec):
            OstreeImageRef.parse(self.refspec)
            return
        remote, sep, ref = self.refspec.partition(":")
        if sep and not (remote and ref):
            raise UsageError(f"not a refspec: {self.refspec!r}", hint="expected REMOTE:REF or REF")


@dataclass(frozen=True)
class Rollback:
    reboot: bool = False

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class Cleanup:
    pending: bool = False
    rollback: bool = False
    base: bool = False

    def validate(self) -> None:
        if not (self.pending or self.rollback or self.base):
            raise UsageError("cleanup: say what to remove: -p/--pending, -r/--rollback, -b/--base")


@dataclass(frozen=True)
class Kargs:
    append: tuple[str, ...] = ()
    append_if_missing: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    delete_if_present: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    existing: str = ""  # the arguments the change was made against ("": any); changed since: an error
    deploy_index: int | None = None
    import_proc_cmdline: bool = False
    lock_finalization: bool = False
    reboot: bool = False
    unchanged_exit_77: bool = False

    def validate(self) -> None:
        if not (self.append or self.append_if_missing or self.delete or self.delete_if_present or self.replace
                or self.import_proc_cmdline):
            raise UsageError("kargs: no kernel arguments to change")
        for arg in (*self.append, *self.append_if_missing, *self.delete, *self.delete_if_present, *self.replace):
            if not arg or arg.startswith(("-", "=")) or any(c.isspace() for c in arg):
                raise UsageError(f"not a kernel argument: {arg!r}")


@dataclass(frozen=True)
class PackageChange:
    """install, uninstall, override remove/replace/reset, reset."""

    request: Request
    dry_run: bool = False
    cache_only: bool = False
    download_only: bool = False
    allow_inactive: bool = False
    lock_finalization: bool = False
    reboot: bool = False
    unchanged_exit_77: bool = False
    apply_live: bool = False  # -A: also apply the new deployment to the running system
    allow_replacement: bool = False  # (with -A) changed or removed packages may be applied live
    restart_services: bool = False  # (with -A) restart the services the change touched

    def validate(self) -> None:
        r = self.request
        if self.apply_live:
            if self.reboot:
                raise UsageError("--apply-live and --reboot: choose one")
            if self.dry_run or self.download_only:
                raise UsageError("--apply-live: nothing to apply with --dry-run or --download-only")
            if (r.uninstall or r.uninstall_all or r.override_remove or r.override_replace) \
                    and not self.allow_replacement:
                raise UsageError("--apply-live: removing or replacing packages on the running system needs "
                                 "--allow-replacement", hint="programs of the removed packages may be running")
        elif self.allow_replacement or self.restart_services:
            raise UsageError("--allow-replacement and --restart-services go with --apply-live")
        if self.dry_run and self.download_only:
            raise UsageError("--dry-run downloads nothing: not with --download-only")
        for items, what in ((r.install, "package"), (r.uninstall, "package"), (r.override_remove, "package"),
                            (r.override_replace, "package"), (r.override_reset, "package")):
            _arguments(items, what)
        if not (r.install or r.uninstall or r.uninstall_all or r.override_remove or r.override_replace
                or r.override_reset or r.override_reset_all or r.reset_layers or r.reset_initramfs):
            raise UsageError("no packages to change")


@dataclass(frozen=True)
class Initramfs:
    """initramfs --enable/--disable: dracut on the client, in every deployment made while enabled."""

    regenerate: bool = False
    args: tuple[str, ...] = ()  # dracut arguments after the base's
    lock_finalization: bool = False
    reboot: bool = False
    unchanged_exit_77: bool = False

    @property
    def state(self) -> str:
        return "enabled" if self.regenerate else "disabled"

    def validate(self) -> None:
        from apt_ostree.core.origin import check_initramfs_arg

        if self.args and not self.regenerate:
            raise UsageError("initramfs: --arg needs --enable")
        for arg in self.args:
            check_initramfs_arg(arg)


@dataclass(frozen=True)
class InitramfsEtc:
    """initramfs-etc: files of /etc carried into the initramfs by an overlay initrd."""

    track: tuple[str, ...] = ()
    untrack: tuple[str, ...] = ()
    untrack_all: bool = False
    force_sync: bool = False
    lock_finalization: bool = False
    reboot: bool = False
    unchanged_exit_77: bool = False

    def validate(self) -> None:
        from apt_ostree.core.origin import check_etc_path

        if not (self.track or self.untrack or self.untrack_all or self.force_sync):
            raise UsageError("initramfs-etc: give --track, --untrack, --untrack-all or --force-sync")
        for path in (*self.track, *self.untrack):
            check_etc_path(path)


@dataclass(frozen=True)
class Usroverlay:
    """usroverlay: libostree's unlock of the booted /usr (a writable overlay)."""

    hotfix: bool = False
    transient: bool = False

    @property
    def mode(self) -> str:
        return "hotfix" if self.hotfix else "transient" if self.transient else "development"

    @property
    def notice(self) -> str:
        return {"development": "A writable overlay is mounted on /usr; its changes are lost at the reboot.",
                "hotfix": "A writable overlay is mounted on /usr; its changes stay across reboots of this "
                          "deployment (the rollback deployment has none).",
                "transient": "/usr has a read-only overlay: remount it read-write in a private mount namespace "
                             "(unshare -m) to change it."}[self.mode]

    def validate(self) -> None:
        if self.hotfix and self.transient:
            raise UsageError("usroverlay: --hotfix or --transient, not both")


@dataclass(frozen=True)
class ApplyLive:
    """apply-live: the difference between the running /usr and a commit, applied without a reboot."""

    target: str = ""  # a commit ("": the pending deployment's)
    reset: bool = False  # back to the booted commit
    allow_replacement: bool = False  # changed and removed packages too (default: additions only)
    restart_services: bool = False

    def validate(self) -> None:
        if self.target and self.reset:
            raise UsageError("apply-live: --target or --reset, not both")
        if self.target:
            _arguments([self.target], "--target")


@dataclass(frozen=True)
class RefreshMd:
    force: bool = False

    def validate(self) -> None:
        pass


@dataclass(frozen=True)
class FinalizeDeployment:
    checksum: str | None = None
    allow_missing_checksum: bool = False

    def validate(self) -> None:
        if not self.checksum and not self.allow_missing_checksum:
            raise UsageError("finalize-deployment: give the staged deployment's checksum, or "
                             "--allow-missing-checksum", hint="apt-ostree status shows the staged deployment")


@dataclass(frozen=True)
class Search:
    """Not a change, but it runs python-apt: apt-ostreed runs it in a worker too."""

    queries: tuple[str, ...]
    cache_only: bool = False

    def validate(self) -> None:
        if not self.queries:
            raise UsageError("search: no query")


Op = (Upgrade | Deploy | Rebase | Rollback | Cleanup | Kargs | PackageChange | Initramfs | InitramfsEtc | Usroverlay
      | ApplyLive | RefreshMd | FinalizeDeployment | Search)
OPS: tuple[type, ...] = (Upgrade, Deploy, Rebase, Rollback, Cleanup, Kargs, PackageChange, Initramfs, InitramfsEtc,
                         Usroverlay, ApplyLive, RefreshMd, FinalizeDeployment, Search)


@dataclass(frozen=True)
class NewDeployment:
    id: str
    staged: bool


@dataclass(frozen=True)
class LiveResult:
    """What apply-live (or -A) did to the running system."""

    source: str  # the commit the running /usr matched before (the booted or the last live one)
    target: str  # the commit it matches now
    diff: PackageDiff | None = None  # packages, source -> target
    files: int = 0  # paths of /usr written or removed
    etc_kept: tuple[str, ...] = ()  # /etc files left alone: changed locally
    daemon_reload: bool = False  # units changed: systemctl daemon-reload ran
    services: tuple[str, ...] = ()  # running services whose unit or program changed
    restarted: tuple[str, ...] = ()  # (--restart-services) the ones restarted
    completed: str = ""  # an interrupted apply-live towards this commit, finished


@dataclass(frozen=True)
class ImagePull:
    """What an image-based change found: the image's manifest digest, and what was fetched for it."""

    reference: str
    digest: str
    layers: int = 0
    fetched_layers: int = 0
    fetched_bytes: int = 0
    total_bytes: int = 0


@dataclass(frozen=True)
class Result:
    """What an operation did (or, for a check, preview or dry run, would do)."""

    changed: bool = True
    checksum: str = ""  # the new (or available) commit
    previous: str = ""  # the commit the change started from
    version: str | None = None
    diff: PackageDiff | None = None  # packages, previous -> checksum
    plan: Plan | None = None  # the layered packages' resolution (dry run, download, rebase --preview)
    deployment: NewDeployment | None = None
    booted: bool = False  # the sysroot is the booted system
    rebooting: bool = False
    moved: str = ""  # rollback: the deployment made the default
    finalized: str = ""  # finalize-deployment: the staged deployment unlocked
    removed: tuple[str, ...] = ()  # cleanup: the deployments removed
    found: tuple[tuple[str, str, str], ...] = ()  # search: (name, version, summary)
    unlocked: str = ""  # usroverlay: the booted deployment's unlock state now
    live: LiveResult | None = None  # apply-live, -A
    image: ImagePull | None = None  # upgrade, rebase of an image-based deployment
    container_root: bool = False  # install/uninstall in a container build: the root itself changed


def _arguments(items: tuple[str, ...] | list[str], what: str) -> None:
    for item in items:
        if not item or item.startswith("-"):
            raise UsageError(f"{what}: {item!r} is not a valid argument")


def build(name: str, fields: Mapping[str, Any]) -> Op:
    """The request of class ``name`` (a verb row's) with ``fields``; lists become tuples, and a
    package change's fields of :class:`Request` go into its request."""
    cls = next(c for c in OPS if c.__name__ == name)
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
    if cls is PackageChange:
        nested = {f.name for f in dataclasses.fields(Request)}
        request = Request(**{k: v for k, v in values.items() if k in nested})
        return PackageChange(request, **{k: v for k, v in values.items() if k not in nested})
    return cls(**values)  # type: ignore[no-any-return]


def value(op: Op, name: str) -> Any:
    """A field of the request (a package change's own, or its request's)."""
    if isinstance(op, PackageChange) and not hasattr(op, name):
        return getattr(op.request, name)
    return getattr(op, name)


def automatic_mode(mode: str) -> Upgrade | None:
    return {"check": Upgrade(check=True), "stage": Upgrade(), "apply": Upgrade(reboot=True)}.get(mode)

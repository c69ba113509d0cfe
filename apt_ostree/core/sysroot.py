"""A typed facade over libostree's Sysroot: initialise, list, deploy, reorder, clean up.

Works on the booted system (``/``) and on any sysroot path (disk images,
``--sysroot`` for tests, installers and rescue). When the sysroot is the booted
one, new deployments are staged (finalized at shutdown by
ostree-finalize-staged.service, so /etc edits made before the reboot are merged);
otherwise they are written directly.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, GLib, OSTree  # noqa: E402

from apt_ostree import interrupt  # noqa: E402
from apt_ostree.core import boot_trial, finalization, grub  # noqa: E402
from apt_ostree.core.origin import Origin  # noqa: E402
from apt_ostree.core.ostree import Repo  # noqa: E402
from apt_ostree.errors import RepoError, SysrootBusy, UsageError  # noqa: E402
from apt_ostree.run import run  # noqa: E402

STAGED_LOCK = Path("/run/ostree/staged-deployment-locked")  # read by every ostree-finalize-staged
STAGED = Path("/run/ostree/staged-deployment")  # libostree's state of the staged deployment (a{sv})
OVERLAYS_DIR = "ostree/initramfs-overlays"  # below /boot: overlay initrds by sha256, shared by deployments
# libostree >= 2023.8 (Debian 13's 2025.2) keeps the lock in the staged deployment's own state too, with
# an API to change it; its `ostree admin status` and lock-finalization see only that state.
CHANGE_FINALIZATION = hasattr(OSTree.Sysroot, "change_finalization")


@dataclass(frozen=True)
class Deployment:
    osname: str
    checksum: str
    serial: int
    index: int
    booted: bool
    staged: bool
    pinned: bool
    origin_refspec: str | None
    path: Path
    kargs: str
    origin: Origin | None = field(compare=False, repr=False)
    raw: Any = field(compare=False, repr=False)

    @property
    def id(self) -> str:
        return f"{self.osname}-{self.checksum}.{self.serial}"

    @property
    def unlocked(self) -> str:
        """libostree's unlock state of the deployment's /usr: none, development, hotfix or transient."""
        return str(OSTree.Deployment.unlocked_state_to_string(self.raw.get_unlocked()))

    @property
    def finalization_locked(self) -> bool:
        """Staged, and shutdown will not apply it (locked by libostree's state or by the lock file)."""
        if not self.staged:
            return False
        return (CHANGE_FINALIZATION and bool(self.raw.is_finalization_locked())) or STAGED_LOCK.exists()


def _keyfile_string(keyfile: GLib.KeyFile | None, group: str, key: str) -> str | None:
    if keyfile is None:
        return None
    try:
        return str(keyfile.get_string(group, key))
    except GLib.Error:
        return None


def _parse_origin(keyfile: GLib.KeyFile | None) -> Origin | None:
    if keyfile is None:
        return None
    try:
        return Origin.from_keyfile(keyfile)
    except UsageError:
        return None


def _options(deployment: OSTree.Deployment) -> str | None:
    bootconfig = deployment.get_bootconfig()
    options = bootconfig.get("options") if bootconfig is not None else None
    return str(options) if options is not None else None


def _user_kargs(options: str | None) -> str:
    """The kernel arguments a user set: libostree's own ostree= argument left out."""
    return " ".join(a for a in (options or "").split() if not a.startswith("ostree="))


class Sysroot:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._sysroot = OSTree.Sysroot.new(Gio.File.new_for_path(str(self.path)))

    @classmethod
    def open(cls, path: Path) -> Sysroot:
        if not (Path(path) / "ostree/repo/config").is_file():
            raise RepoError(f"not an OSTree sysroot: {path}",
                            hint="boot an apt-ostree system, or pass --sysroot PATH to a deployed sysroot")
        sysroot = cls(path)
        sysroot.load()
        return sysroot

    def initialize(self, osname: str) -> None:
        """``ostree admin init-fs`` + ``os-init``: an empty sysroot with a stateroot."""
        try:
            self._sysroot.ensure_initialized(None)
            self._sysroot.load(None)
            self._sysroot.init_osname(osname, None)
        except GLib.Error as e:
            raise RepoError(f"cannot initialise sysroot {self.path}: {e.message}") from None

    def load(self) -> None:
        try:
            self._sysroot.load(None)
        except GLib.Error as e:
            raise RepoError(f"cannot load sysroot {self.path}: {e.message}") from None

    def repo(self) -> Repo:
        _, repo = self._sysroot.get_repo(None)
        return Repo(self.path / "ostree/repo", repo)

    @property
    def is_booted(self) -> bool:
        return self._sysroot.get_booted_deployment() is not None

    @contextmanager
    def locked(self) -> Iterator[None]:
        try:
            _, acquired = self._sysroot.try_lock()
        except GLib.Error as e:
            raise RepoError(f"cannot lock sysroot {self.path}: {e.message}") from None
        if not acquired:
            raise SysrootBusy(f"sysroot {self.path} is locked by another operation",
                            hint="wait for the other apt-ostree or ostree command to finish")
        try:
            # what was read before the lock may be stale (another command may have deployed in
            # between): every decision under the lock starts from the list as it is now
            self.load()
            self._check_writable()
            self._remove_orphans()
            with interrupt.cooperative():  # a cancel stops at a safe point (apt_ostree/interrupt.py)
                yield
        finally:
            self._sysroot.unlock()

    def _check_writable(self) -> None:
        """Before any change, that the repository, the deployments and /boot can be written: a
        read-only one found halfway (after the boot loader's switch) leaves a change half made.
        (With sysroot.readonly, libostree makes the sysroot writable for itself.)"""
        if self.repo().config_bool("sysroot", "readonly"):
            return
        for d in (self.path / "ostree/repo/tmp", self.path / "ostree/deploy", self.path / "boot"):
            if not d.is_dir():
                continue
            try:
                fd, name = tempfile.mkstemp(dir=d, prefix=".apt-ostree-probe-")
                os.close(fd)
                os.unlink(name)
            except OSError as e:
                raise RepoError(f"cannot change sysroot {self.path}: {d} is not writable ({e.strerror}); "
                                "nothing changed") from None

    def _remove_orphans(self) -> None:
        """A command killed while deploying leaves a deployment directory that no list names (and that
        a retry, with the next serial, would not reuse): libostree's cleanup, without the repository's
        prune, removes it before this change. Nothing to do (a directory listing) most of the time."""
        named = {(d.osname, d.path.name) for d in self.deployments()}
        on_disk = {(os_dir.name, d.name) for os_dir in (self.path / "ostree/deploy").glob("*")
                   for d in (os_dir / "deploy").glob("*") if d.is_dir()}
        if on_disk - named:
            try:
                self._sysroot.prepare_cleanup(None)
            except GLib.Error as e:
                raise RepoError(f"cannot remove the deployment directories a killed command left: {e.message}") \
                    from None
            self.load()

    # ----------------------------------------------------------- reading
    def deployments(self) -> list[Deployment]:
        booted = self._sysroot.get_booted_deployment()
        staged = self._sysroot.get_staged_deployment()
        out = []
        raw = self._sysroot.get_deployments()
        booted_options = next((_options(d) for d in raw if booted is not None and d.equal(booted)), None)
        for i, d in enumerate(raw):
            options = _options(d)
            if options is None and staged is not None and d.equal(staged):
                options = booted_options  # staged without kernel arguments: finalization takes the merge's
            out.append(Deployment(
                osname=d.get_osname(), checksum=d.get_csum(), serial=d.get_deployserial(), index=i,
                booted=booted is not None and d.equal(booted),
                staged=staged is not None and d.equal(staged),
                pinned=d.is_pinned(),
                origin_refspec=_keyfile_string(d.get_origin(), "origin", "baserefspec")
                or _keyfile_string(d.get_origin(), "origin", "refspec"),
                origin=_parse_origin(d.get_origin()),
                path=self.path / self._sysroot.get_deployment_dirpath(d),
                kargs=_user_kargs(options),
                raw=d,
            ))
        return out

    def rollback_deployment(self, osname: str, deployments: Sequence[Deployment]) -> Deployment | None:
        """The deployment `rollback` would boot: libostree's idea of it (neither booted nor pending) on
        a booted system; on a sysroot that is not booted, the one after the default."""
        if not self.is_booted:
            return deployments[1] if len(deployments) > 1 else None
        _pending, rollback = self._sysroot.query_deployments_for(osname)
        if rollback is None:
            return None
        return next((d for d in deployments if d.raw.equal(rollback)), None)

    def merge_deployment(self) -> Deployment:
        """The /etc merge source of a new deployment: the booted one, else the default (first)."""
        deployments = self.deployments()
        if not deployments:
            raise RepoError(f"sysroot {self.path} has no deployments")
        for d in deployments:
            if d.booted:
                return d
        return next(d for d in deployments if not d.staged)

    def pending_deployment(self) -> Deployment | None:
        """On a booted system, the deployment that boots next when it is not the booted one
        (staged, or a default written before the reboot); None otherwise."""
        deployments = self.deployments()
        booted = next((d for d in deployments if d.booted), None)
        if booted is None:
            return None
        return next((d for d in deployments if d.index < booted.index and d.osname == booted.osname), None)

    def origin_deployment(self) -> Deployment:
        """The deployment a change builds on (rpm-ostree's origin merge deployment): the pending
        one when there is one, so that changes made before a reboot add up; else the merge deployment."""
        return self.pending_deployment() or self.merge_deployment()

    # ----------------------------------------------------------- writing
    @contextmanager
    def _grub_env(self) -> Iterator[None]:
        """For a sysroot that is not booted and boots with GRUB: write menus without a chroot."""
        config = self.repo().gobject.copy_config()
        try:
            bootloader = config.get_string("sysroot", "bootloader")
        except GLib.Error:
            bootloader = "auto"
        if self.is_booted or bootloader != "grub2":
            yield
            return
        uuid = run(["findmnt", "-n", "-o", "UUID", "--target", str(self.path / "boot")], capture=True,
                   check=False).stdout.strip()
        if not uuid:
            raise RepoError(f"cannot find the file system UUID of {self.path / 'boot'}",
                            hint="GRUB's menu finds /boot by UUID: mount the boot partition there")
        with tempfile.TemporaryDirectory(prefix="apt-ostree-grub-") as tmp:
            env = {grub.EXEC_ENV: str(grub.write_exec_helper(Path(tmp) / "grub2-exec")),
                   grub.SYSROOT_ENV: str(self.path), grub.BOOT_UUID_ENV: uuid}
            with _environ(env):
                yield

    def deploy(self, osname: str, checksum: str, origin_: Origin, kargs: Sequence[str] | None,
               merge: Deployment | None, lock_finalization: bool = False,
               overlay_initrd: bytes | None = None) -> Deployment:
        """A new deployment of ``checksum`` with ``origin_``; staged when booted, else written first.
        ``overlay_initrd``: a cpio its boot entry loads after the initramfs (initramfs-etc)."""
        origin = origin_.for_new_deployment().to_keyfile()
        raw_merge = merge.raw if merge is not None else None
        argv = list(kargs) if kargs is not None else None
        before = {d.id for d in self.deployments()}
        try:
            with self._grub_env(), _stdout_to_stderr():
                if self.is_booted:
                    # (stage_tree_with_options' char** option field cannot be set from Python)
                    _, new = self._sysroot.stage_tree(osname, checksum, origin, raw_merge, argv, None)
                    if overlay_initrd is not None:
                        self._stage_overlay(overlay_initrd)
                else:
                    _, new = self._sysroot.deploy_tree(osname, checksum, origin, raw_merge, argv, None)
                    if overlay_initrd is not None:
                        # (libostree asserts a primary initrd first; writing the entry sets the real one)
                        bootconfig = new.get_bootconfig()
                        bootconfig.set("initrd", "/initramfs-written-by-libostree")
                        bootconfig.set_overlay_initrds([self._install_overlay(overlay_initrd)])
                    # NO_CLEAN, then clean only if the write dropped a deployment: with none dropped
                    # nothing became unreferenced, and libostree's prune (a walk of every deployed
                    # tree, seconds on a large base) would find nothing to delete.
                    self._sysroot.simple_write_deployment(
                        osname, new, raw_merge, OSTree.SysrootSimpleWriteDeploymentFlags.NO_CLEAN, None)
        except GLib.Error as e:
            raise RepoError(f"cannot deploy {checksum[:12]}: {e.message}") from None
        self.load()
        self._default_changed()
        if self.is_booted and lock_finalization:
            self._lock_staged()
        if not self.is_booted and not before <= {d.id for d in self.deployments()}:
            self.cleanup()
        written = next(d for d in self.deployments() if d.raw.equal(new) or (d.checksum == checksum and d.staged))
        if written.staged:
            finalization.record_staged(self.path / "ostree/deploy" / osname / "var", written)
        return written

    def _stage_overlay(self, data: bytes) -> None:
        """The overlay initrd of the deployment just staged. stage_tree_with_options' overlay_initrds
        (a char** field) cannot be set from Python (TypeError, on 2022.7 and 2025.2), so the staged
        state gets it the way stage_tree_with_options writes it: libostree's own copy in
        /run/ostree/staged-initrds/SHA256 (stage_overlay_initrd) and the key ``overlay-initrds`` of
        /run/ostree/staged-deployment, which finalization reads."""
        try:
            with tempfile.TemporaryFile() as f:
                f.write(data)
                f.flush()
                f.seek(0)
                _, sha = self._sysroot.stage_overlay_initrd(f.fileno(), None)
            state = GLib.Variant.new_from_bytes(GLib.VariantType.new("a{sv}"), GLib.Bytes.new(STAGED.read_bytes()),
                                                False)
            entries = {}
            for i in range(state.n_children()):
                entry = state.get_child_value(i)
                entries[entry.get_child_value(0).get_string()] = entry.get_child_value(1).get_variant()
            entries["overlay-initrds"] = GLib.Variant("as", [sha])
            tmp = STAGED.with_name(STAGED.name + ".apt-ostree")
            tmp.write_bytes(GLib.Variant("a{sv}", entries).get_data_as_bytes().get_data())
            tmp.rename(STAGED)
        except (GLib.Error, OSError) as e:
            self.load()  # without its overlay initrd the staged deployment would boot without the files: drop it
            self.write_order([d for d in self.deployments() if not d.staged])
            raise RepoError(f"cannot stage the overlay initrd: {_message(e)}") from None
        self.load()

    def _install_overlay(self, data: bytes) -> str:
        """The overlay initrd in /boot (as deploy_tree_with_options would put it; cleanup deletes it
        when no boot entry names it); its path in a boot entry."""
        sha = hashlib.sha256(data).hexdigest()
        directory = self.path / "boot" / OVERLAYS_DIR
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / f"{sha}.img"
        if not target.is_file():
            tmp = directory / f".{sha}.tmp"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            tmp.rename(target)
        return f"/{OVERLAYS_DIR}/{sha}.img"

    def overlay_initrds(self, d: Deployment) -> tuple[str, ...]:
        """The overlay initrds of ``d``'s boot entry (a staged deployment's: libostree's staged state)."""
        if d.staged:
            try:
                state = GLib.Variant.new_from_bytes(GLib.VariantType.new("a{sv}"),
                                                    GLib.Bytes.new(STAGED.read_bytes()), False)
            except OSError:
                return ()
            value = state.lookup_value("overlay-initrds", GLib.VariantType.new("as"))
            return tuple(f"/{OVERLAYS_DIR}/{sha}.img" for sha in (value.unpack() if value is not None else []))
        bootconfig = d.raw.get_bootconfig()
        return tuple(bootconfig.get_overlay_initrds() or ()) if bootconfig is not None else ()

    def _lock_staged(self) -> None:
        # (stage_tree_with_options' locked option is unreachable from Python: see deploy)
        try:
            if CHANGE_FINALIZATION:  # toggles: the new staged deployment is unlocked
                self._sysroot.change_finalization(self._sysroot.get_staged_deployment())
            else:
                STAGED_LOCK.parent.mkdir(parents=True, exist_ok=True)
                STAGED_LOCK.touch()
        except (GLib.Error, OSError) as e:
            self.load()  # an unlocked staged deployment would be applied at shutdown: drop it
            self.write_order([d for d in self.deployments() if not d.staged])
            raise RepoError(f"cannot lock the finalization of the staged deployment: {_message(e)}") from None
        self.load()

    def unlock_finalization(self, staged: Deployment) -> None:
        """Let shutdown apply the finalization-locked ``staged`` deployment, however it was locked."""
        try:
            if CHANGE_FINALIZATION and staged.raw.is_finalization_locked():
                self._sysroot.change_finalization(staged.raw)  # (removes the lock file too)
            STAGED_LOCK.unlink(missing_ok=True)
        except (GLib.Error, OSError) as e:
            raise RepoError(f"cannot unlock the finalization of {staged.id}: {_message(e)}") from None
        self.load()

    def write_order(self, order: Sequence[Deployment]) -> None:
        """Make ``order`` the deployment list (the first boots next): rollback, set-default."""
        before = self.deployments()[:1]
        try:
            with self._grub_env(), interrupt.committing():
                self._sysroot.write_deployments([d.raw for d in order], None)
        except GLib.Error as e:
            raise RepoError(f"cannot write deployments of {self.path}: {e.message}") from None
        self.load()
        if [d.id for d in before] != [d.id for d in self.deployments()[:1]]:
            self._default_changed()

    def _default_changed(self) -> None:
        """The default deployment changed: GRUB gives it one boot unless it is the running system
        (core/boot_trial.py)."""
        first = self.deployments()[:1]
        if first:
            boot_trial.default_changed(self.path, first[0].booted)

    def cleanup(self) -> None:
        """Delete undeployed deployments and boot files, and prune unreferenced repository objects."""
        try:
            with _stdout_to_stderr(), interrupt.committing():
                self._sysroot.cleanup(None)
        except GLib.Error as e:
            raise RepoError(f"cannot clean up {self.path}: {e.message}") from None

    def deploy_first(self, osname: str, checksum: str, refspec: str, kargs: Sequence[str]) -> Deployment:
        """Deploy ``checksum`` as the only deployment of a sysroot that is not booted."""
        origin = self._sysroot.origin_new_from_refspec(refspec)
        try:
            with self._grub_env():
                _, new = self._sysroot.deploy_tree(osname, checksum, origin, None, list(kargs), None)
                self._sysroot.simple_write_deployment(osname, new, None,
                                                      OSTree.SysrootSimpleWriteDeploymentFlags.NO_CLEAN, None)
        except GLib.Error as e:
            raise RepoError(f"cannot deploy {checksum[:12]} to {self.path}: {e.message}") from None
        self.load()
        return self.deployments()[0]


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """libostree prints "Freed objects: ..." on stdout while cleaning up; stdout is for results."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


@contextmanager
def _environ(env: Mapping[str, str]) -> Iterator[None]:
    """libostree spawns the grub2 helper with our environment: set it for the duration."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _message(e: GLib.Error | OSError) -> str:
    return str(e.message) if isinstance(e, GLib.Error) else (e.strerror or str(e))

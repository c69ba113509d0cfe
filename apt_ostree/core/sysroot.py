"""A typed facade over libostree's Sysroot: initialise, deploy, list deployments.

Works on the booted system (``/``) and on any sysroot path (disk images,
``--sysroot`` for tests, installers and rescue).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, GLib, OSTree  # noqa: E402

from apt_ostree.core.ostree import Repo  # noqa: E402
from apt_ostree.errors import RepoError  # noqa: E402


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


def _keyfile_string(keyfile: GLib.KeyFile | None, group: str, key: str) -> str | None:
    if keyfile is None:
        return None
    try:
        return str(keyfile.get_string(group, key))
    except GLib.Error:
        return None


class Sysroot:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._sysroot = OSTree.Sysroot.new(Gio.File.new_for_path(str(self.path)))

    @property
    def gobject(self) -> OSTree.Sysroot:
        return self._sysroot

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

    @contextmanager
    def locked(self) -> Iterator[None]:
        try:
            ok = self._sysroot.try_lock()
        except GLib.Error as e:
            raise RepoError(f"cannot lock sysroot {self.path}: {e.message}") from None
        if not (ok[0] if isinstance(ok, tuple) else ok) or (isinstance(ok, tuple) and not ok[1]):
            raise RepoError(f"sysroot {self.path} is locked by another operation",
                            hint="wait for the other apt-ostree or ostree command to finish")
        try:
            yield
        finally:
            self._sysroot.unlock()

    def deployments(self) -> list[Deployment]:
        booted = self._sysroot.get_booted_deployment()
        staged = self._sysroot.get_staged_deployment()
        out = []
        for i, d in enumerate(self._sysroot.get_deployments()):
            origin = d.get_origin()
            refspec = _keyfile_string(origin, "origin", "refspec")
            bootconfig = d.get_bootconfig()
            out.append(Deployment(
                osname=d.get_osname(), checksum=d.get_csum(), serial=d.get_deployserial(), index=i,
                booted=booted is not None and d.equal(booted),
                staged=staged is not None and d.equal(staged),
                pinned=d.is_pinned(), origin_refspec=refspec,
                path=self.path / self._sysroot.get_deployment_dirpath(d),
                kargs=bootconfig.get("options") if bootconfig is not None else "",
            ))
        return out

    def deploy_first(self, osname: str, checksum: str, refspec: str, kargs: Sequence[str],
                     env: dict[str, str] | None = None) -> Deployment:
        """Deploy ``checksum`` as the only deployment of a sysroot that is not booted."""
        origin = self._sysroot.origin_new_from_refspec(refspec)
        saved = {k: os.environ.get(k) for k in (env or {})}
        os.environ.update(env or {})
        try:
            _, new = self._sysroot.deploy_tree(osname, checksum, origin, None, list(kargs), None)
            self._sysroot.simple_write_deployment(osname, new, None,
                                                  OSTree.SysrootSimpleWriteDeploymentFlags.NO_CLEAN, None)
        except GLib.Error as e:
            raise RepoError(f"cannot deploy {checksum[:12]} to {self.path}: {e.message}") from None
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.load()
        return self.deployments()[0]

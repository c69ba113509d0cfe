"""Layers that other tools added to our image (``FROM`` it, after ``ostree.final-diffid``), as
ostree-ext applies them: each is an overlay on the commit below it (whiteouts remove, opaque
directories replace), ``/etc`` goes to ``/usr/etc``, the children of ``/run``, ``/tmp``, ``/dev``,
``/proc``, ``/sys`` and ``/sysroot`` are dropped.

``/var`` is kept as the packages left it and then turned into what boots on both releases: the
files in ``/usr/share/factory/var`` and a tmpfiles.d file that creates the directories and links
and copies the files into ``/var`` where they are missing (logs and caches are dropped). This is
ostree-ext's way before libostree 2024.3 (Debian 12); from 2024.3 (Debian 13) ostree-ext keeps
``/var`` in the commit, but libostree copies a commit's ``/var`` only into an empty stateroot, so
on a system that rebases to the image the content would never appear: tmpfiles.d makes it appear
at the next boot, on every deployment, and the commit's ``/var`` stays empty as libostree wants.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tarfile
from pathlib import Path
from typing import IO

from apt_ostree.core import layout
from apt_ostree.core.ostree import Repo
from apt_ostree.errors import ImageError

DROPPED_DIRS = ("sysroot", "run", "tmp", "dev", "proc", "sys")
BUILDAH_INJECTED = ("usr/etc/hostname", "usr/etc/hosts", "usr/etc/resolv.conf")  # (empty placeholders of RUN)
IMAGE_TMPFILES = "usr/lib/tmpfiles.d/apt-ostree-image-var.conf"
OPAQUE = "trusted.overlay.opaque"


def target(name: str) -> str | None:
    """A layer entry's path in the commit (None: dropped), or ImageError for an unsafe one."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ImageError(f"unsafe path in a layer: {name!r}")
    if not parts:
        return None
    if parts[0] in DROPPED_DIRS and len(parts) > 1:
        return None
    if parts[0] == "etc":
        parts = ["usr", *parts]
    return "/".join(parts)


def extract_layer(stream: IO[bytes], upper: Path, what: str) -> None:
    """An OCI layer as an overlayfs upper directory (whiteouts as 0/0 character devices, opaque
    directories marked), for :func:`apt_ostree.core.ostree_overlay.commit_delta`."""
    try:
        with tarfile.open(fileobj=stream, mode="r|", format=tarfile.PAX_FORMAT) as tar:
            for member in tar:
                _extract_member(tar, member, upper, what)
    except tarfile.TarError as e:
        raise ImageError(f"{what}: not a valid tar stream: {e}") from None


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, upper: Path, what: str) -> None:
    rel = target(member.name)
    if rel is None:
        return
    parent, base = posixpath.split(rel)
    if base == ".wh..wh..opq":
        d = upper / parent
        d.mkdir(parents=True, exist_ok=True)
        os.setxattr(d, OPAQUE, b"y")
        return
    if base.startswith(".wh."):
        dest = upper / parent / base.removeprefix(".wh.")
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove(dest)
        os.mknod(dest, stat.S_IFCHR | 0o600, 0)
        return
    if rel in BUILDAH_INJECTED and member.isfile() and member.size == 0:
        return
    dest = upper / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    if member.isdir():
        if dest.exists() and not dest.is_dir():
            _remove(dest)
        dest.mkdir(exist_ok=True)
    else:
        _remove(dest)
        if member.isfile():
            src = tar.extractfile(member)
            assert src is not None
            with open(dest, "xb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
        elif member.issym():
            os.symlink(member.linkname, dest)
        elif member.islnk():
            linked = target(member.linkname)
            if linked is None or not (upper / linked).exists():
                raise ImageError(f"{what}: {member.name} is a hard link to {member.linkname}, not in the layer")
            os.link(upper / linked, dest)
            return
        else:
            return  # (devices and FIFOs: an OSTree commit holds none)
    os.chown(dest, member.uid, member.gid, follow_symlinks=False)
    if not member.issym():
        os.chmod(dest, member.mode)
    for key, value in member.pax_headers.items():
        if key.startswith("SCHILY.xattr."):
            os.setxattr(dest, key.removeprefix("SCHILY.xattr."), value.encode("utf-8", "surrogateescape"),
                        follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def var_as_tmpfiles(repo: Repo, commit: str, work: Path, upper: Path) -> tuple[int, list[str]] | None:
    """An overlay upper directory (at ``upper``, for commit_delta) that empties ``commit``'s /var
    and adds its content as factory files and tmpfiles.d lines; None when /var is empty already.
    Returns (the number of tmpfiles lines, the files dropped as logs and caches)."""
    root = work / "root"
    if repo.kind(commit, "/var") != "dir":
        return None
    root.mkdir(parents=True)
    repo.checkout_copy(commit, "/var", root / "var")
    if not any((root / "var").iterdir()):
        return None
    (root / "usr/etc").mkdir(parents=True)
    (root / "usr/lib").mkdir()
    for name in ("passwd", "group"):  # (the owners' names, for the tmpfiles lines)
        if repo.kind(commit, f"/usr/etc/{name}") == "file":
            repo.checkout_copy(commit, f"/usr/etc/{name}", root / "usr/etc")
    if repo.kind(commit, "/usr/lib/tmpfiles.d") == "dir":  # (what packages create themselves stays theirs)
        repo.checkout_copy(commit, "/usr/lib/tmpfiles.d", root / "usr/lib/tmpfiles.d")
    lines, dropped = layout.convert_var(root, factory=True)
    upper.mkdir(parents=True)
    factory = root / layout.FACTORY / "var"
    if factory.exists():
        shutil.copytree(factory, upper / layout.FACTORY / "var", symlinks=True, copy_function=_copy_owned)
    layout.write_tmpfiles(upper, IMAGE_TMPFILES, lines, "/var content of the image's derived layers")
    (upper / "var").mkdir(mode=0o755)
    os.setxattr(upper / "var", OPAQUE, b"y")
    return len(lines), dropped


def _copy_owned(src: str, dst: str) -> None:
    shutil.copy2(src, dst)
    st = os.lstat(src)
    os.chown(dst, st.st_uid, st.st_gid)

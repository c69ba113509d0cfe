"""ostree-ext's tar format (v1): an OSTree commit as container image layers, and back.

What bootc and rpm-ostree read (ostree-ext ``tar/export.rs``): each layer holds an OSTree
repository skeleton (``sysroot/ostree/repo`` in mode bare-split-xattrs) with objects, and a
checkout made of hard links to them, so that container tools see an ordinary root file system:

- the commit layer: the root directory, the repository skeleton, the commit object (and its
  detached metadata), then a depth-first walk of every directory (its dirtree and dirmeta objects
  and a directory entry; ``usr/etc`` appears as ``etc``), ``var/tmp``, then the content objects
  no chunk took;
- a chunk layer: the skeleton and its content objects.

Each content object ``objects/xx/….file`` (uid, gid and mode in its header; a symbolic link as a
tar symlink) follows its ``.file-xattrs-link`` (the a(ayay) GVariant of its extended attributes)
and precedes a hard link at each path that uses it (empty regular files are written as such, not
linked). The importer writes the objects back with their checksums, so the commit survives the
round trip unchanged.
"""

from __future__ import annotations

import io
import re
import stat
import tarfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO

from apt_ostree.core.ostree_objects import Content, DirMeta, Objects
from apt_ostree.errors import ImageError

OSTREE_DIR = "sysroot/ostree"
OBJECTS = f"{OSTREE_DIR}/repo/objects"
REPO_CONFIG = b"[core]\nrepo_version=1\nmode=bare-split-xattrs\n"
REPO_SUBDIRS = ("extensions", "refs", "refs/heads", "refs/mirrors", "refs/remotes", "state", "tmp", "tmp/cache")
OBJECT_RE = re.compile(r"^(?:\./)?/?sysroot/ostree/repo/objects/([0-9a-f]{2})/([0-9a-f]{62})\.([a-z-]+)$")


@dataclass(frozen=True)
class ChunkObject:
    """A content object and the paths of the commit that use it."""

    checksum: str
    paths: tuple[str, ...]


def tar_path(path: str) -> str:
    """A commit path as the stream names it: ``usr/etc`` becomes ``etc``."""
    if path == "usr/etc" or path.startswith("usr/etc/"):
        return path[4:]
    return path


def object_name(kind: str, checksum: str) -> str:
    return f"{OBJECTS}/{checksum[:2]}/{checksum[2:]}.{kind}"


class LayerWriter:
    """Writes one layer's tar stream from a repository's objects."""

    def __init__(self, objects: Objects, commit: str, out: IO[bytes]) -> None:
        self.objects = objects
        self.commit = commit
        self.tar = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)  # noqa: SIM115 (closed by close())

    def close(self) -> None:
        self.tar.close()

    # ----------------------------------------------------------- entries
    def _entry(self, name: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0, size: int = 0,
               link: str = "", pax: dict[str, str] | None = None) -> tarfile.TarInfo:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.uid, info.gid, info.size, info.linkname = kind, mode, uid, gid, size, link
        info.mtime, info.uname, info.gname = 0, "", ""
        if pax:
            info.pax_headers = pax
        return info

    def _dir(self, name: str, uid: int = 0, gid: int = 0, mode: int = 0o755) -> None:
        self.tar.addfile(self._entry(name, tarfile.DIRTYPE, mode, uid, gid))

    def _data(self, name: str, data: bytes) -> None:
        self.tar.addfile(self._entry(name, tarfile.REGTYPE, 0o644, size=len(data)), io.BytesIO(data))

    def repo_skeleton(self) -> None:
        for path in ("sysroot", OSTREE_DIR, f"{OSTREE_DIR}/repo", OBJECTS):
            self._dir(path)
        for i in range(256):
            self._dir(f"{OBJECTS}/{i:02x}")
        for sub in REPO_SUBDIRS:
            self._dir(f"{OSTREE_DIR}/repo/{sub}")
        self._data(f"{OSTREE_DIR}/repo/config", REPO_CONFIG)

    def _dirmeta_entry(self, name: str, meta: DirMeta) -> None:
        self._dir(name, meta.uid, meta.gid, stat.S_IMODE(meta.mode))

    def content(self, item: ChunkObject) -> None:
        """A content object, then a hard link to it at each of its paths."""
        meta = self.objects.content(item.checksum)
        self._data(object_name("file-xattrs-link", item.checksum), meta.xattrs)
        pax = _pax_xattrs(meta.xattrs, self.objects)
        name = object_name("file", item.checksum)
        mode = stat.S_IMODE(meta.mode)
        if meta.symlink is not None:
            self.tar.addfile(self._entry(name, tarfile.SYMTYPE, mode, meta.uid, meta.gid, link=meta.symlink,
                                         pax=pax))
        else:
            with self.objects.open(item.checksum) as f:
                self.tar.addfile(self._entry(name, tarfile.REGTYPE, mode, meta.uid, meta.gid, meta.size, pax=pax), f)
        for path in item.paths:
            target = tar_path(path)
            if meta.symlink is None and meta.size == 0:
                self.tar.addfile(self._entry(target, tarfile.REGTYPE, mode, meta.uid, meta.gid, pax=pax))
            else:
                self.tar.addfile(self._entry(target, tarfile.LNKTYPE, mode, meta.uid, meta.gid, link=name, pax=pax))

    # ----------------------------------------------------------- layers
    def commit_layer(self, remainder: Iterable[ChunkObject]) -> None:
        """The commit, every directory and metadata object, and the content no chunk took."""
        root = self.objects.root(self.commit)
        root_meta = self.objects.dirmeta(root.meta)
        self._dirmeta_entry("./", root_meta)
        self.repo_skeleton()
        self._data(object_name("commit", self.commit), self.objects.data("commit", self.commit))
        detached = self.objects.commitmeta(self.commit)
        if detached is not None:
            self._data(object_name("commitmeta", self.commit), detached)
        self._data(object_name("dirmeta", root.meta), self.objects.data("dirmeta", root.meta))
        written: set[str] = {root.meta}
        has_var_tmp = self._walk("", root.tree, written)
        if not has_var_tmp:
            self._dir("var/tmp", mode=0o1777)
        for item in remainder:
            self.content(item)

    def _walk(self, prefix: str, tree: str, written: set[str]) -> bool:
        has_var_tmp = False
        if tree not in written:
            written.add(tree)
            self._data(object_name("dirtree", tree), self.objects.data("dirtree", tree))
        for name, sub, meta in self.objects.dirtree(tree).dirs:
            path = prefix + name
            if meta not in written:
                written.add(meta)
                self._data(object_name("dirmeta", meta), self.objects.data("dirmeta", meta))
            if path == "sysroot":  # (the skeleton's own directory: a tar stream has no duplicates)
                if sub not in written:
                    written.add(sub)
                    self._data(object_name("dirtree", sub), self.objects.data("dirtree", sub))
                continue
            has_var_tmp |= path == "var/tmp"
            self._dirmeta_entry(tar_path(path), self.objects.dirmeta(meta))
            has_var_tmp |= self._walk(path + "/", sub, written)
        return has_var_tmp

    def chunk_layer(self, items: Sequence[ChunkObject]) -> None:
        self.repo_skeleton()
        for item in items:
            self.content(item)


def _pax_xattrs(xattrs: bytes, objects: Objects) -> dict[str, str] | None:
    """Extended attributes as PAX headers too (container runtimes read those), but security.selinux."""
    if not xattrs:
        return None
    out = {}
    for name, value in objects.parse_xattrs(xattrs):
        if name != "security.selinux":
            out[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    return out or None


# ---------------------------------------------------------------- import
@dataclass
class ImportStats:
    objects: int = 0
    skipped: int = 0
    commits: tuple[str, ...] = ()


class Importer:
    """Writes the objects of ostree layers into a repository (inside the caller's transaction)."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self._xattrs_objects: dict[str, bytes] = {}
        self.stats = ImportStats()

    def layer(self, stream: IO[bytes], what: str) -> None:
        try:
            with tarfile.open(fileobj=stream, mode="r|", format=tarfile.PAX_FORMAT) as tar:
                self._members(tar, what)
        except tarfile.TarError as e:
            raise ImageError(f"{what}: not a valid tar stream: {e}") from None

    def _members(self, tar: tarfile.TarFile, what: str) -> None:
        pending: dict[str, bytes] = {}  # content checksum -> its xattrs (the entry before it)
        for member in tar:
            match = OBJECT_RE.match(member.name)
            if match is None:
                continue
            checksum, kind = match.group(1) + match.group(2), match.group(3)
            if kind == "file":
                self._content(tar, member, checksum, pending.pop(checksum, b""))
            elif kind == "file-xattrs":
                self._xattrs_objects[member.name.lstrip("./")] = self._read(tar, member, what)
            elif kind == "file-xattrs-link":
                if member.islnk():
                    link = member.linkname.lstrip("./")
                    if link not in self._xattrs_objects:
                        raise ImageError(f"{what}: {member.name} links to a missing {link}")
                    pending[checksum] = self._xattrs_objects[link]
                else:
                    pending[checksum] = self._read(tar, member, what)
            elif kind in ("commit", "commitmeta", "dirtree", "dirmeta"):
                if kind == "commit":
                    self.stats.commits += (checksum,)
                if kind != "commitmeta" and self.objects.has(kind, checksum):
                    self.stats.skipped += 1
                    continue
                self.objects.write_data(kind, checksum, self._read(tar, member, what))
                self.stats.objects += 1
            else:
                raise ImageError(f"{what}: unknown object type in {member.name}")

    @staticmethod
    def _read(tar: tarfile.TarFile, member: tarfile.TarInfo, what: str) -> bytes:
        if not member.isfile():
            raise ImageError(f"{what}: {member.name} is not a regular file")
        f = tar.extractfile(member)
        assert f is not None
        return f.read()

    def _content(self, tar: tarfile.TarFile, member: tarfile.TarInfo, checksum: str, xattrs: bytes) -> None:
        if self.objects.has("file", checksum):
            self.stats.skipped += 1
            return
        if member.issym():
            meta = Content(checksum, member.uid, member.gid, stat.S_IFLNK | 0o777, 0, member.linkname, xattrs)
            self.objects.write_content(meta, None)
        elif member.isfile():
            meta = Content(checksum, member.uid, member.gid, stat.S_IFREG | member.mode, member.size, None, xattrs)
            self.objects.write_content(meta, tar.extractfile(member))
        else:
            raise ImageError(f"content object {checksum}: neither a file nor a symbolic link in the stream")
        self.stats.objects += 1

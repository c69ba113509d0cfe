"""OSTree objects one by one: read a commit's commit, dirtree, dirmeta and content objects as
bytes and plain values, and write objects whose checksums are known (an image's layers).

A facade over libostree beside core/ostree.py, for the container image format
(core/ostree_tar.py), which moves objects between a repository and tar streams unchanged, so
that a commit keeps its checksum through an image.
"""

from __future__ import annotations

import io
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import GLib, OSTree  # noqa: E402

from apt_ostree.core.ostree import Repo, gerror, metadata_dict  # noqa: E402
from apt_ostree.errors import RepoError  # noqa: E402

KINDS = {"commit": OSTree.ObjectType.COMMIT, "commitmeta": OSTree.ObjectType.COMMIT_META,
         "dirtree": OSTree.ObjectType.DIR_TREE, "dirmeta": OSTree.ObjectType.DIR_META,
         "file": OSTree.ObjectType.FILE}
VARIANT_TYPES = {"commit": "(a{sv}aya(say)sstayay)", "commitmeta": "a{sv}", "dirtree": "(a(say)a(sayay))",
                 "dirmeta": "(uuua(ayay))"}
INLINE_LIMIT = 16 << 20  # larger files are streamed into the repository


def _be32(value: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little"), "big")


@dataclass(frozen=True)
class DirMeta:
    uid: int
    gid: int
    mode: int  # with S_IFDIR
    xattrs: bytes  # a(ayay), serialized


@dataclass(frozen=True)
class DirTree:
    files: tuple[tuple[str, str], ...]  # (name, content checksum)
    dirs: tuple[tuple[str, str, str], ...]  # (name, dirtree checksum, dirmeta checksum)


@dataclass(frozen=True)
class Content:
    """A content object: a regular file or a symbolic link, with its metadata."""

    checksum: str
    uid: int
    gid: int
    mode: int  # with S_IFREG or S_IFLNK
    size: int
    symlink: str | None
    xattrs: bytes  # a(ayay), serialized (b"" for none)


@dataclass(frozen=True)
class CommitRoot:
    tree: str
    meta: str
    timestamp: int
    subject: str


class Objects:
    """Read and write the objects of an open repository."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self._raw = repo.gobject
        self._bare = repo.mode == "bare"

    # ----------------------------------------------------------- reading
    def data(self, kind: str, checksum: str) -> bytes:
        """A metadata object's serialized GVariant (commit, dirtree, dirmeta)."""
        try:
            _, variant = self._raw.load_variant(KINDS[kind], checksum)
        except GLib.Error as e:
            raise gerror(f"cannot load {kind} object {checksum}", e) from None
        return bytes(variant.get_data_as_bytes().get_data())

    def commitmeta(self, checksum: str) -> bytes | None:
        """The commit's detached metadata (signatures), serialized; None if it has none."""
        try:
            _, variant = self._raw.read_commit_detached_metadata(checksum, None)
        except GLib.Error as e:
            raise gerror(f"cannot read the detached metadata of {checksum}", e) from None
        return bytes(variant.get_data_as_bytes().get_data()) if variant is not None else None

    def commitmeta_values(self, commit: str) -> dict[str, Any]:
        """The commit's detached metadata as Python values ({} if it has none)."""
        try:
            _, variant = self._raw.read_commit_detached_metadata(commit, None)
        except GLib.Error as e:
            raise gerror(f"cannot read the detached metadata of {commit}", e) from None
        return dict(variant.unpack()) if variant is not None else {}

    def update_commitmeta(self, commit: str, values: Mapping[str, str]) -> None:
        """Set string keys in the commit's detached metadata, keeping the others (its signatures)."""
        try:
            _, variant = self._raw.read_commit_detached_metadata(commit, None)
            merged: dict[str, GLib.Variant] = {}
            if variant is not None:
                for i in range(variant.n_children()):
                    entry = variant.get_child_value(i)
                    merged[entry.get_child_value(0).get_string()] = entry.get_child_value(1).get_variant()
            for key, value in values.items():
                merged[key] = GLib.Variant("s", value)
            self._raw.write_commit_detached_metadata(commit, metadata_dict(merged), None)
        except GLib.Error as e:
            raise gerror(f"cannot write the detached metadata of {commit}", e) from None

    def metadata_variants(self, commit: str) -> dict[str, GLib.Variant]:
        """The commit's metadata as GVariants (to be copied into another commit unchanged)."""
        try:
            _, variant, _ = self._raw.load_commit(commit)
        except GLib.Error as e:
            raise gerror(f"cannot load commit {commit}", e) from None
        meta = variant.get_child_value(0)
        out = {}
        for i in range(meta.n_children()):
            entry = meta.get_child_value(i)
            out[entry.get_child_value(0).get_string()] = entry.get_child_value(1).get_variant()
        return out

    def root(self, commit: str) -> CommitRoot:
        try:
            _, variant, _ = self._raw.load_commit(commit)
        except GLib.Error as e:
            raise gerror(f"cannot load commit {commit}", e) from None
        return CommitRoot(OSTree.checksum_from_bytes_v(variant.get_child_value(6)),
                          OSTree.checksum_from_bytes_v(variant.get_child_value(7)),
                          OSTree.commit_get_timestamp(variant), variant.get_child_value(3).get_string())

    def dirtree(self, checksum: str) -> DirTree:
        try:
            _, v = self._raw.load_variant(OSTree.ObjectType.DIR_TREE, checksum)
        except GLib.Error as e:
            raise gerror(f"cannot load dirtree object {checksum}", e) from None
        files, dirs = v.get_child_value(0), v.get_child_value(1)
        return DirTree(
            tuple((files.get_child_value(i).get_child_value(0).get_string(),
                   OSTree.checksum_from_bytes_v(files.get_child_value(i).get_child_value(1)))
                  for i in range(files.n_children())),
            tuple((dirs.get_child_value(i).get_child_value(0).get_string(),
                   OSTree.checksum_from_bytes_v(dirs.get_child_value(i).get_child_value(1)),
                   OSTree.checksum_from_bytes_v(dirs.get_child_value(i).get_child_value(2)))
                  for i in range(dirs.n_children())))

    def dirmeta(self, checksum: str) -> DirMeta:
        try:
            _, v = self._raw.load_variant(OSTree.ObjectType.DIR_META, checksum)
        except GLib.Error as e:
            raise gerror(f"cannot load dirmeta object {checksum}", e) from None
        return DirMeta(_be32(v.get_child_value(0).get_uint32()), _be32(v.get_child_value(1).get_uint32()),
                       _be32(v.get_child_value(2).get_uint32()),
                       bytes(v.get_child_value(3).get_data_as_bytes().get_data()))

    def content(self, checksum: str) -> Content:
        try:
            _, stream, info, xattrs = self._raw.load_file(checksum, None)
        except GLib.Error as e:
            raise gerror(f"cannot load content object {checksum}", e) from None
        if stream is not None:
            stream.close(None)
        mode = info.get_attribute_uint32("unix::mode")
        return Content(checksum, info.get_attribute_uint32("unix::uid"), info.get_attribute_uint32("unix::gid"),
                       mode, info.get_size() if stat.S_ISREG(mode) else 0,
                       info.get_symlink_target() if stat.S_ISLNK(mode) else None,
                       bytes(xattrs.get_data_as_bytes().get_data()) if xattrs is not None else b"")

    def open(self, checksum: str) -> BinaryIO:
        """The bytes of a regular file's content object."""
        if self._bare:
            return open(self.repo.path / "objects" / checksum[:2] / f"{checksum[2:]}.file", "rb")
        try:
            _, stream, info, _ = self._raw.load_file(checksum, None)
        except GLib.Error as e:
            raise gerror(f"cannot load content object {checksum}", e) from None
        return io.BufferedReader(_GioReader(stream), 1 << 20)

    def walk(self, commit: str) -> Iterator[tuple[str, str, str | None]]:
        """Every entry of a commit, depth first, files before subdirectories: (path, kind, checksum):
        ("usr/bin/ls", "file", CONTENT) and ("usr/bin", "dir", None); the root is not listed."""
        def recurse(prefix: str, tree: str) -> Iterator[tuple[str, str, str | None]]:
            node = self.dirtree(tree)
            for name, checksum in node.files:
                yield prefix + name, "file", checksum
            for name, sub, _meta in node.dirs:
                yield prefix + name, "dir", None
                yield from recurse(prefix + name + "/", sub)
        yield from recurse("", self.root(commit).tree)

    @staticmethod
    def parse_xattrs(data: bytes) -> list[tuple[str, bytes]]:
        """Serialized a(ayay) extended attributes as (name, value) pairs."""
        if not data:
            return []
        variant = GLib.Variant.new_from_bytes(GLib.VariantType.new("a(ayay)"), GLib.Bytes.new(data), False)
        out = []
        for i in range(variant.n_children()):
            pair = variant.get_child_value(i)
            name = bytes(pair.get_child_value(0).get_data_as_bytes().get_data()).rstrip(b"\0")
            out.append((name.decode("utf-8", "surrogateescape"),
                        bytes(pair.get_child_value(1).get_data_as_bytes().get_data())))
        return out

    def tree_at(self, commit: str, path: str) -> DirTree | None:
        """The directory at ``path`` of a commit; None if there is none."""
        tree = self.root(commit).tree
        for name in (p for p in path.strip("/").split("/") if p):
            sub = next((t for n, t, _m in self.dirtree(tree).dirs if n == name), None)
            if sub is None:
                return None
            tree = sub
        return self.dirtree(tree)

    def has(self, kind: str, checksum: str) -> bool:
        try:
            _, found = self._raw.has_object(KINDS[kind], checksum, None)
        except GLib.Error as e:
            raise gerror(f"cannot look up {kind} object {checksum}", e) from None
        return bool(found)

    def missing(self, commit: str) -> list[str]:
        """The objects a commit needs that the repository lacks ("KIND CHECKSUM"), metadata first."""
        out: list[str] = []
        seen: set[str] = set()
        root = self.root(commit)

        def recurse(tree: str, meta: str) -> None:
            for kind, checksum in (("dirmeta", meta), ("dirtree", tree)):
                if checksum not in seen and not self.has(kind, checksum):
                    out.append(f"{kind} {checksum}")
            seen.add(meta)
            if tree in seen or f"dirtree {tree}" in out:
                return
            seen.add(tree)
            node = self.dirtree(tree)
            for _name, checksum in node.files:
                if checksum not in seen:
                    seen.add(checksum)
                    if not self.has("file", checksum):
                        out.append(f"file {checksum}")
            for _name, sub, sub_meta in node.dirs:
                recurse(sub, sub_meta)
        recurse(root.tree, root.meta)
        return out

    def verify_for_remote(self, commit: str, remote: str) -> str | None:
        """None if ``commit`` carries a valid signature by a key of ``remote`` (GPG, libostree's
        rules for that remote), else why not (also inside a transaction: its staged objects count)."""
        if remote not in (self._raw.remote_list() or []):
            return f"no remote {remote!r} in {self.repo.path}"
        try:
            result = self._raw.verify_commit_for_remote(commit, remote, None)
        except GLib.Error as e:
            return str(e.message)
        try:
            result.require_valid_signature()
        except GLib.Error as e:
            return str(e.message)
        return None

    # ----------------------------------------------------------- writing
    def begin(self) -> None:
        try:
            self._raw.prepare_transaction(None)
        except GLib.Error as e:
            raise gerror(f"cannot start a transaction in {self.repo.path}", e) from None

    def commit_transaction(self) -> None:
        try:
            self._raw.commit_transaction(None)
        except GLib.Error as e:
            raise gerror(f"cannot commit the transaction in {self.repo.path}", e) from None

    def abort(self) -> None:
        try:
            self._raw.abort_transaction(None)
        except GLib.Error:
            pass

    def write_data(self, kind: str, checksum: str, data: bytes) -> None:
        """A metadata object, checked against its checksum."""
        if kind == "commitmeta":
            self.write_commitmeta(checksum, data)
            return
        variant = GLib.Variant.new_from_bytes(GLib.VariantType.new(VARIANT_TYPES[kind]), GLib.Bytes.new(data), False)
        try:
            self._raw.write_metadata(KINDS[kind], checksum, variant, None)
        except GLib.Error as e:
            raise gerror(f"cannot write {kind} object {checksum}", e) from None

    def write_commitmeta(self, commit: str, data: bytes) -> None:
        variant = GLib.Variant.new_from_bytes(GLib.VariantType.new("a{sv}"), GLib.Bytes.new(data), False)
        try:
            self._raw.write_commit_detached_metadata(commit, variant, None)
        except GLib.Error as e:
            raise gerror(f"cannot write the detached metadata of {commit}", e) from None

    def write_content(self, meta: Content, data: IO[bytes] | None) -> None:
        """A content object from its metadata and (for a regular file) ``data``, ``meta.size``
        bytes; libostree checks the result against ``meta.checksum``."""
        xattrs = GLib.Variant.new_from_bytes(GLib.VariantType.new("a(ayay)"), GLib.Bytes.new(meta.xattrs), False)
        try:
            if meta.symlink is not None:
                self._raw.write_symlink(meta.checksum, meta.uid, meta.gid, xattrs, meta.symlink, None)
            elif data is not None and meta.size <= INLINE_LIMIT:
                self._raw.write_regfile_inline(meta.checksum, meta.uid, meta.gid, meta.mode, xattrs,
                                               data.read(meta.size), None)
            elif data is not None:
                writer = self._raw.write_regfile(meta.checksum, meta.uid, meta.gid, meta.mode, meta.size, xattrs)
                left = meta.size
                while left > 0:
                    chunk = data.read(min(left, 1 << 20))
                    if not chunk:
                        raise RepoError(f"content object {meta.checksum}: the stream ended early")
                    writer.write_all(chunk, None)
                    left -= len(chunk)
                writer.finish(None)
            else:
                raise RepoError(f"content object {meta.checksum}: no data")
        except GLib.Error as e:
            raise gerror(f"cannot write content object {meta.checksum}", e) from None


class _GioReader(io.RawIOBase):
    """A GInputStream as a raw binary file."""

    def __init__(self, stream: object) -> None:
        super().__init__()
        self._stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = bytes(self._stream.read_bytes(len(buffer), None).get_data())  # type: ignore[attr-defined]
        buffer[:len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._stream.close(None)  # type: ignore[attr-defined]
        super().close()

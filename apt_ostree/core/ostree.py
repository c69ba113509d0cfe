"""A small typed facade over libostree (PyGObject).

All ``gi.repository.OSTree`` calls of the engine sit here, so the rest of the
code deals in paths, strings and plain Python values.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, GLib, OSTree  # noqa: E402

from apt_ostree.errors import RepoError  # noqa: E402

MODES = {
    "bare": OSTree.RepoMode.BARE,
    "archive": OSTree.RepoMode.ARCHIVE,
    "archive-z2": OSTree.RepoMode.ARCHIVE,
    "bare-user": OSTree.RepoMode.BARE_USER,
    "bare-user-only": OSTree.RepoMode.BARE_USER_ONLY,
}


def libostree_at_least(year: int, release: int) -> bool:
    """The host's libostree is version YEAR.RELEASE or newer."""
    return bool(OSTree.check_version(year, release))


@dataclass(frozen=True)
class CommitInfo:
    checksum: str
    parent: str | None
    timestamp: int
    subject: str
    metadata: Mapping[str, Any]


def gerror(what: str, e: GLib.Error) -> RepoError:
    return RepoError(f"{what}: {e.message}")


class Repo:
    """An open OSTree repository."""

    def __init__(self, path: Path, repo: OSTree.Repo) -> None:
        self.path = path
        self._repo = repo

    # ----------------------------------------------------------- opening
    @classmethod
    def open(cls, path: Path) -> Repo:
        path = Path(path)
        if not (path / "config").is_file():
            raise RepoError(f"not an OSTree repository: {path}",
                            hint="create one with: ostree init --repo=PATH --mode=bare")
        repo = OSTree.Repo.new(Gio.File.new_for_path(str(path)))
        try:
            repo.open(None)
        except GLib.Error as e:
            raise gerror(f"cannot open repository {path}", e) from None
        return cls(path, repo)

    @classmethod
    def open_or_create(cls, path: Path, mode: str = "bare") -> Repo:
        """Open ``path``; create a new repository of ``mode`` if it does not exist."""
        path = Path(path)
        if (path / "config").is_file():
            return cls.open(path)
        if path.exists() and not path.is_dir():
            raise RepoError(f"not an OSTree repository (a file, not a directory): {path}")
        if path.exists() and any(path.iterdir()):
            raise RepoError(f"not an OSTree repository (and not empty): {path}")
        path.mkdir(parents=True, exist_ok=True)
        repo = OSTree.Repo.new(Gio.File.new_for_path(str(path)))
        try:
            repo.create(MODES[mode], None)
        except GLib.Error as e:
            raise gerror(f"cannot create repository {path}", e) from None
        return cls(path, repo)

    @property
    def mode(self) -> str:
        mode = self._repo.get_mode()
        return {v: k for k, v in MODES.items() if k != "archive-z2"}[mode]

    @property
    def gobject(self) -> OSTree.Repo:
        return self._repo

    # ----------------------------------------------------------- reading
    def resolve(self, rev: str) -> str:
        """A ref, or a (partial) checksum, to a full commit checksum. Raises RepoError."""
        try:
            _, checksum = self._repo.resolve_rev(rev, False)
        except GLib.Error as e:
            raise RepoError(f"unknown revision {rev!r} in {self.path}: {e.message}") from None
        return str(checksum)

    def resolve_ref(self, ref: str) -> str | None:
        """The commit a ref points to, or None if there is no such ref."""
        try:
            _, checksum = self._repo.resolve_rev(ref, True)
        except GLib.Error as e:
            raise RepoError(f"cannot read ref {ref!r} in {self.path}: {e.message}") from None
        return str(checksum) if checksum else None

    def refs(self) -> list[str]:
        _, refs = self._repo.list_refs(None, None)
        return sorted(refs)

    def commit(self, rev: str) -> CommitInfo:
        checksum = self.resolve(rev)
        try:
            _, variant, _state = self._repo.load_commit(checksum)
        except GLib.Error as e:
            raise gerror(f"cannot load commit {checksum}", e) from None
        metadata = variant.get_child_value(0).unpack()
        parent = OSTree.commit_get_parent(variant)
        return CommitInfo(
            checksum=checksum,
            parent=parent,
            timestamp=OSTree.commit_get_timestamp(variant),
            subject=variant.get_child_value(3).get_string(),
            metadata=metadata,
        )

    def _root(self, rev: str) -> Gio.File:
        checksum = self.resolve(rev)
        try:
            _, root, _ = self._repo.read_commit(checksum, None)
        except GLib.Error as e:
            raise gerror(f"cannot read commit {checksum}", e) from None
        return root

    @staticmethod
    def _type(target: Gio.File) -> Gio.FileType | None:
        try:
            info = target.query_info("standard::type", Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS, None)
        except GLib.Error:
            return None
        return info.get_file_type()

    def _content(self, target: Gio.File) -> bytes:
        # Read the content object directly (GFile.load_contents on a RepoFile trips a GIO assertion).
        _, stream, file_info, _ = self._repo.load_file(target.get_checksum(), None)
        size = file_info.get_size()
        chunks = []
        while size > 0:
            chunk = stream.read_bytes(min(size, 1 << 20), None).get_data()
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        stream.close(None)
        return b"".join(chunks)

    def file_object(self, rev: str, path: str) -> tuple[str, int] | None:
        """(content object checksum, size) of a regular file in a commit; None if there is none:
        equal checksums, equal files, without reading them."""
        target = self._root(rev).resolve_relative_path(path.lstrip("/"))
        try:
            info = target.query_info("standard::type,standard::size", Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS, None)
        except GLib.Error:
            return None
        if info.get_file_type() != Gio.FileType.REGULAR:
            return None
        return str(target.get_checksum()), int(info.get_size())

    def is_file(self, rev: str, path: str) -> bool:
        """A regular file at ``path`` in the commit."""
        return bool(self._type(self._root(rev).resolve_relative_path(path.lstrip("/"))) == Gio.FileType.REGULAR)

    def read_file(self, rev: str, path: str, follow_symlinks: bool = False) -> bytes | None:
        """The content of a regular file in a commit; None if it is absent or not a regular file.
        With ``follow_symlinks``, symbolic links are resolved inside the commit (as in a checkout
        of it: debian-archive-keyring.gpg -> debian-archive-keyring.pgp)."""
        root = self._root(rev)
        rel = path.lstrip("/")
        for _ in range(40):  # (the kernel's limit on links in a path)
            target = root.resolve_relative_path(rel)
            kind = self._type(target)
            if kind == Gio.FileType.REGULAR:
                return self._content(target)
            if kind != Gio.FileType.SYMBOLIC_LINK or not follow_symlinks:
                return None
            info = target.query_info("standard::symlink-target", Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS, None)
            rel = os.path.normpath(os.path.join(os.path.dirname("/" + rel), info.get_symlink_target())).lstrip("/")
        return None

    def tree_checksum(self, rev: str, path: str) -> str | None:
        """The checksums of a directory of a commit (its content and metadata): equal for equal
        trees. None if the commit has no directory there."""
        target = self._root(rev).resolve_relative_path(path.lstrip("/"))
        if self._type(target) != Gio.FileType.DIRECTORY:
            return None
        target.ensure_resolved()
        return f"{target.tree_get_contents_checksum()}:{target.tree_get_metadata_checksum()}"

    def copy_tree(self, rev: str, path: str, dest: Path) -> bool:
        """Copy a (small) directory of a commit to ``dest`` as new files, never as hard links into
        the repository: it may be changed. False if the commit has no directory there."""
        top = self._root(rev).resolve_relative_path(path.lstrip("/"))
        if self._type(top) != Gio.FileType.DIRECTORY:
            return False
        self._copy_out(top, dest)
        return True

    def _copy_out(self, top: Gio.File, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        attrs = "standard::name,standard::type,standard::symlink-target,unix::mode"
        for info in top.enumerate_children(attrs, Gio.FileQueryInfoFlags.NOFOLLOW_SYMLINKS, None):
            child, out = top.get_child(info.get_name()), dest / info.get_name()
            kind = info.get_file_type()
            if kind == Gio.FileType.DIRECTORY:
                self._copy_out(child, out)
            elif kind == Gio.FileType.SYMBOLIC_LINK:
                os.symlink(info.get_symlink_target(), out)
            elif kind == Gio.FileType.REGULAR:
                out.write_bytes(self._content(child))
                out.chmod(stat.S_IMODE(info.get_attribute_uint32("unix::mode")))

    def config_bool(self, section: str, key: str) -> bool:
        """A boolean of the repository's configuration (false when unset)."""
        config = self._repo.get_config()
        try:
            return bool(config.get_boolean(section, key))
        except GLib.Error:
            return False

    # ----------------------------------------------------------- writing
    def disable_fsync(self) -> None:
        self._repo.set_disable_fsync(True)

    def set_config(self, section: str, key: str, value: str) -> None:
        config = self._repo.copy_config()
        config.set_string(section, key, value)
        try:
            self._repo.write_config(config)
        except GLib.Error as e:
            raise gerror(f"cannot write the configuration of {self.path}", e) from None

    def pull_local(self, source: Repo, checksum: str, depth: int = 0) -> None:
        """Copy a commit and its objects from another local repository (``ostree pull-local``), with
        ``depth`` of its parents (those the source has)."""
        options = GLib.Variant("a{sv}", {"refs": GLib.Variant("as", [checksum]), "depth": GLib.Variant("i", depth)})
        try:
            self._repo.pull_with_options(f"file://{source.path.resolve()}", options, None, None)
        except GLib.Error as e:
            raise gerror(f"cannot pull {checksum[:12]} from {source.path}", e) from None

    def pull(self, remote: str, refs: list[str], *, commit_only: bool = False, depth: int = 0) -> None:
        """Fetch ``refs`` (refs or checksums) from ``remote``; GPG rules are the remote's."""
        flags = OSTree.RepoPullFlags.COMMIT_ONLY if commit_only else OSTree.RepoPullFlags.NONE
        options = GLib.Variant("a{sv}", {"refs": GLib.Variant("as", refs), "flags": GLib.Variant("i", int(flags)),
                                         "depth": GLib.Variant("i", depth)})
        try:
            self._repo.pull_with_options(remote, options, None, None)
        except GLib.Error as e:
            message = e.message
            if "GPG" in message or "signature" in message.lower():
                raise RepoError(f"refusing {', '.join(refs)} from remote {remote}: {message}",
                                hint="the remote verifies GPG signatures and the commit is not signed "
                                     "by a trusted key") from None
            raise RepoError(f"cannot pull {', '.join(refs)} from remote {remote}: {message}") from None

    def remotes(self) -> list[str]:
        return sorted(self._repo.remote_list() or [])

    def history(self, rev: str) -> list[CommitInfo]:
        """The commit ``rev`` and its ancestors that are present locally, newest first."""
        out: list[CommitInfo] = []
        checksum: str | None = self.resolve(rev)
        while checksum:
            try:
                info = self.commit(checksum)
            except RepoError:
                break
            out.append(info)
            checksum = info.parent
        return out

    def add_remote(self, name: str, url: str, gpg_verify: bool, gpg_key: bytes | None = None) -> None:
        """A remote; ``gpg_key`` (a public key, armored or not): imported for it, and commits and the
        summary verified against it."""
        verify = gpg_verify or gpg_key is not None
        options = GLib.Variant("a{sv}", {"gpg-verify": GLib.Variant("b", verify),
                                         "gpg-verify-summary": GLib.Variant("b", gpg_key is not None)})
        try:
            self._repo.remote_add(name, url, options, None)
            if gpg_key is not None:
                stream = Gio.MemoryInputStream.new_from_bytes(GLib.Bytes.new(gpg_key))
                self._repo.remote_gpg_import(name, stream, None, None)
        except GLib.Error as e:
            raise gerror(f"cannot add remote {name} to {self.path}", e) from None

    def set_ref(self, remote: str | None, ref: str, checksum: str | None) -> None:
        """Point ``ref`` at ``checksum``; None deletes the ref."""
        try:
            self._repo.set_ref_immediate(remote, ref, checksum, None)
        except GLib.Error as e:
            raise gerror(f"cannot set ref {ref} in {self.path}", e) from None

    def commit_tree(
        self,
        rootfs: Path,
        *,
        ref: str,
        parent: str | None,
        metadata: Mapping[str, GLib.Variant],
        timestamp: int,
        subject: str = "",
    ) -> str:
        """Commit the directory ``rootfs`` and point ``ref`` at it; return the checksum.

        The metadata keys are written sorted so that equal inputs give equal commits.
        """
        repo = self._repo
        try:
            repo.prepare_transaction(None)
            try:
                mtree = OSTree.MutableTree.new()
                modifier = OSTree.RepoCommitModifier.new(
                    OSTree.RepoCommitModifierFlags.SKIP_XATTRS
                    if self.mode in ("bare-user-only",)
                    else OSTree.RepoCommitModifierFlags.NONE,
                    None,
                )
                dfd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    repo.write_dfd_to_mtree(dfd, ".", mtree, modifier, None)
                finally:
                    os.close(dfd)
                _, root = repo.write_mtree(mtree, None)
                _, checksum = repo.write_commit_with_time(parent, subject, None, metadata_dict(metadata), root,
                                                          timestamp, None)
                repo.transaction_set_ref(None, ref, checksum)
                repo.commit_transaction(None)
            except BaseException:
                repo.abort_transaction(None)
                raise
        except GLib.Error as e:
            raise gerror(f"cannot commit to {self.path}", e) from None
        return str(checksum)

    def checkout_hardlinks(self, checksum: str, dest: Path) -> None:
        """Check ``checksum`` out at ``dest`` as hardlinks into the repository (``dest`` must not
        exist). Such a tree shares inodes with repository objects: never write into it."""
        # mode and overwrite_mode stay at their zero defaults (RepoCheckoutMode.NONE: as root,
        # OverwriteMode.NONE): trixie's PyGObject warns when those enum fields are assigned.
        opts = OSTree.RepoCheckoutAtOptions()
        opts.no_copy_fallback = True
        try:
            self._repo.checkout_at(opts, AT_FDCWD, str(dest), checksum, None)
        except GLib.Error as e:
            raise gerror(f"cannot check out {checksum[:12]} at {dest}", e) from None

    def checkout_copy(self, checksum: str, subpath: str, dest: Path) -> None:
        """Check the file or directory ``subpath`` of ``checksum`` out as new files (never hard
        links into the repository), over what is there (union: existing files are replaced, each
        by a rename). A directory lands at ``dest``; a file in the directory ``dest``."""
        opts = OSTree.RepoCheckoutAtOptions()
        with warnings.catch_warnings():  # (trixie's PyGObject warns when an enum field is assigned)
            warnings.simplefilter("ignore")
            opts.overwrite_mode = OSTree.RepoCheckoutOverwriteMode.UNION_FILES
        opts.force_copy = True
        opts.subpath = subpath
        try:
            self._repo.checkout_at(opts, AT_FDCWD, str(dest), checksum, None)
        except GLib.Error as e:
            raise gerror(f"cannot check {subpath} of {checksum[:12]} out at {dest}", e) from None

    def kind(self, rev: str, path: str) -> str | None:
        """What is at ``path`` in the commit: "dir", "file", "symlink", or None."""
        kind = self._type(self._root(rev).resolve_relative_path(path.lstrip("/")))
        return {Gio.FileType.DIRECTORY: "dir", Gio.FileType.REGULAR: "file",
                Gio.FileType.SYMBOLIC_LINK: "symlink"}.get(kind) if kind is not None else None  # type: ignore[arg-type]


AT_FDCWD = -100


def metadata_dict(metadata: Mapping[str, GLib.Variant]) -> GLib.Variant:
    """Commit metadata as a{sv}, keys sorted (equal inputs give equal commits)."""
    builder = GLib.VariantBuilder.new(GLib.VariantType.new("a{sv}"))
    for key in sorted(metadata):
        builder.add_value(GLib.Variant.new_dict_entry(GLib.Variant.new_string(key),
                                                      GLib.Variant.new_variant(metadata[key])))
    return builder.end()


def variant_metadata(values: Mapping[str, Any]) -> dict[str, GLib.Variant]:
    """Plain Python metadata (str/bool/int, lists of tuples of str) to GVariants."""
    out: dict[str, GLib.Variant] = {}
    for key, value in values.items():
        if isinstance(value, GLib.Variant):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = GLib.Variant("b", value)
        elif isinstance(value, int):
            out[key] = GLib.Variant("t" if value >= 0 else "x", value)
        elif isinstance(value, str):
            out[key] = GLib.Variant("s", value)
        elif isinstance(value, list) and all(isinstance(v, str) for v in value):
            out[key] = GLib.Variant("as", value)
        else:
            raise TypeError(f"unsupported metadata value for {key}: {value!r}")
    return out

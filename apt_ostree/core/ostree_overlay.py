"""An overlayfs upper directory committed onto an OSTree commit (the layering's delta commit).

A facade over libostree's MutableTree, beside core/ostree.py: the base tree is loaded lazily,
the upper directory's whiteouts delete, its opaque directories and type changes replace,
everything else is merged, and overlayfs's own xattrs are dropped.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import GLib, OSTree  # noqa: E402

from apt_ostree.core.ostree import Repo, gerror, metadata_dict  # noqa: E402

OVERLAY_XATTR_PREFIX = b"trusted.overlay."


def commit_delta(repo: Repo, base: str, upper: Path, *, metadata: Mapping[str, GLib.Variant], timestamp: int,
                 subject: str = "", parent: str | None = None) -> str:
    """Commit ``base`` changed by an overlayfs upper directory, without re-reading the base.

    The base tree is loaded lazily into a MutableTree; the upper dir's whiteouts (char 0/0)
    delete, its opaque directories and type changes replace, everything else is merged.
    Overlay bookkeeping xattrs are dropped. Whiteouts are unlinked from ``upper``.
    No ref is written: the new commit's parent is ``parent`` (default: ``base``).
    """
    raw = repo.gobject
    try:
        mtree = OSTree.MutableTree.new_from_commit(raw, base)
        root_meta = mtree.get_metadata_checksum()
        _apply_overlay_removals(mtree, upper, [])
        modifier = OSTree.RepoCommitModifier.new(OSTree.RepoCommitModifierFlags.NONE, None, None)
        modifier.set_xattr_callback(_xattrs_without_overlay(upper), None)
        raw.prepare_transaction(None)
        try:
            dfd = os.open(upper, os.O_RDONLY | os.O_DIRECTORY)
            try:
                raw.write_dfd_to_mtree(dfd, ".", mtree, modifier, None)
            finally:
                os.close(dfd)
            mtree.set_metadata_checksum(root_meta)
            _, root = raw.write_mtree(mtree, None)
            _, checksum = raw.write_commit_with_time(parent or base, subject, None, metadata_dict(metadata), root,
                                                      timestamp, None)
            raw.commit_transaction(None)
        except BaseException:
            raw.abort_transaction(None)
            raise
    except GLib.Error as e:
        raise gerror(f"cannot commit the layer on {base[:12]} to {repo.path}", e) from None
    return str(checksum)


def _lookup(mtree: OSTree.MutableTree, name: str) -> tuple[str | None, OSTree.MutableTree | None] | None:
    """(file checksum, subdir) of ``name`` in ``mtree``; None if absent (lookup raises instead)."""
    try:
        _, checksum, subdir = mtree.lookup(name)
    except GLib.Error:
        return None
    return checksum, subdir


def _is_opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _apply_overlay_removals(mtree: OSTree.MutableTree, upper: Path, rel: list[str]) -> None:
    """Pre-pass over an overlay upper dir: apply whiteouts, opaque dirs and type changes to
    ``mtree`` (the merge of the remaining content is write_dfd_to_mtree's job)."""
    directory = upper.joinpath(*rel)
    for entry in sorted(os.scandir(directory), key=lambda e: e.name):
        st = entry.stat(follow_symlinks=False)
        existing = _lookup(mtree, entry.name)
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # whiteout
            if existing is not None:
                mtree.remove(entry.name, True)
            os.unlink(entry.path)
            continue
        is_dir = stat.S_ISDIR(st.st_mode)
        if existing is not None:
            was_dir = existing[1] is not None
            if was_dir != is_dir or (is_dir and _is_opaque(Path(entry.path))):
                mtree.remove(entry.name, True)
                existing = None
        if is_dir and existing is not None and existing[1] is not None:
            _apply_overlay_removals(existing[1], upper, [*rel, entry.name])


def _xattrs_without_overlay(upper: Path):  # type: ignore[no-untyped-def]
    def callback(_repo: OSTree.Repo, path: str, _info: object, *_user: object) -> GLib.Variant:
        full = upper / path.lstrip("/")
        out = []
        try:
            names = os.listxattr(full, follow_symlinks=False)
        except OSError:
            names = []
        for name in sorted(names):
            if name.encode().startswith(OVERLAY_XATTR_PREFIX):
                continue
            value = os.getxattr(full, name, follow_symlinks=False)
            out.append((name.encode() + b"\0", value))
        return GLib.Variant("a(ayay)", out)
    return callback

"""libostree's publishing calls (PyGObject): static deltas, the summary, GPG signatures, pruning.

The companion of core/ostree.py for `compose publish`: an archive repository that any web server can
serve (docs/fleet.md), with the same typed errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import gi

gi.require_version("OSTree", "1.0")
from gi.repository import Gio, GLib, OSTree  # noqa: E402

from apt_ostree.core.ostree import Repo, gerror  # noqa: E402
from apt_ostree.errors import RepoError  # noqa: E402
from apt_ostree.run import run  # noqa: E402

EMPTY = "empty"  # the "from" of a delta for a first install


def delta_names(repo: Repo) -> set[str]:
    """The static deltas of ``repo``: "FROM-TO" checksums, or "TO" for one from empty."""
    try:
        return set(repo.gobject.list_static_delta_names(None)[1] or [])
    except GLib.Error as e:
        raise gerror(f"cannot list the static deltas of {repo.path}", e) from None


def delta_name(from_: str | None, to: str) -> str:
    return to if from_ is None else f"{from_}-{to}"


def generate_delta(repo: Repo, from_: str | None, to: str) -> None:
    """A static delta from ``from_`` (None: from empty) to ``to``, with libostree's defaults (objects
    over 4 MB fetched on their own, bsdiff for files that changed)."""
    params = GLib.Variant("a{sv}", {})
    try:
        repo.gobject.static_delta_generate(OSTree.StaticDeltaGenerateOpt.MAJOR, from_, to, None, params, None)
    except GLib.Error as e:
        raise gerror(f"cannot generate the static delta {from_ or EMPTY}-{to[:12]}", e) from None


def is_signed_by(repo: Repo, checksum: str, key_id: str, keyring: Path) -> bool:
    """``checksum`` carries a valid GPG signature by ``key_id`` (``keyring``: its public key, exported)."""
    try:
        result = repo.gobject.verify_commit_ext(checksum, None, Gio.File.new_for_path(str(keyring)), None)
    except GLib.Error:
        return False  # (no signature at all)
    return _valid_by(result, key_id)


def _valid_by(result: OSTree.GpgVerifyResult, key_id: str) -> bool:
    found, index = result.lookup(key_id)
    if not found:
        return False
    valid = result.get(index, [OSTree.GpgSignatureAttr.VALID])
    return bool(valid.get_child_value(0).get_boolean())


def sign_commit(repo: Repo, checksum: str, key_id: str, homedir: Path | None) -> None:
    try:
        repo.gobject.sign_commit(checksum, key_id, str(homedir) if homedir else None, None)
    except GLib.Error as e:
        if e.matches(Gio.io_error_quark(), Gio.IOErrorEnum.EXISTS):
            return
        raise gerror(f"cannot sign commit {checksum[:12]} with GPG key {key_id}", e) from None


def regenerate_summary(repo: Repo, key_id: str | None, homedir: Path | None) -> None:
    """The summary (refs, their commits, the deltas), signed when ``key_id`` is given.

    Web servers revalidate by modification time in whole seconds and size (nginx's ETag and
    Last-Modified), and a client that gets "304 Not Modified" for summary.sig keeps its cached
    summary: a signature of the same size written in the same second as the last would hide the new
    summary. So both files get a modification time later than their predecessors'."""
    before = {name: int((repo.path / name).stat().st_mtime) for name in ("summary", "summary.sig")
              if (repo.path / name).exists()}
    try:
        repo.gobject.regenerate_summary(None, None)
        if key_id:
            repo.gobject.add_gpg_signature_summary([key_id], str(homedir) if homedir else None, None)
    except GLib.Error as e:
        raise gerror(f"cannot write the summary of {repo.path}", e) from None
    for name, old in before.items():
        path = repo.path / name
        if path.exists() and int(path.stat().st_mtime) <= old:
            os.utime(path, (old + 1, old + 1))


def summary_signed_by(repo: Repo, key_id: str, keyring: Path) -> bool:
    summary, sig = repo.path / "summary", repo.path / "summary.sig"
    if not summary.exists() or not sig.exists():
        return False
    try:  # (summary.sig is an a{sv}: its ostree.gpgsigs, one after the other, are the signatures)
        detached = GLib.Variant.new_from_bytes(GLib.VariantType.new("a{sv}"), GLib.Bytes.new(sig.read_bytes()),
                                               False).unpack()
        signatures = b"".join(bytes(s) for s in detached.get("ostree.gpgsigs", []))
        result = repo.gobject.gpg_verify_data(None, GLib.Bytes.new(summary.read_bytes()), GLib.Bytes.new(signatures),
                                              None, Gio.File.new_for_path(str(keyring)), None)
    except (GLib.Error, TypeError, ValueError):
        return False
    return _valid_by(result, key_id)


def prune(repo: Repo, depth: int) -> int:
    """Delete commits deeper than ``depth`` parents below each ref, the objects only they used and
    the deltas to them (libostree's prune); the number of objects deleted."""
    try:
        _, _, pruned, _ = repo.gobject.prune(OSTree.RepoPruneFlags.REFS_ONLY, depth, None)
    except GLib.Error as e:
        raise gerror(f"cannot prune {repo.path}", e) from None
    return int(pruned)


def export_key(key_id: str, homedir: Path | None, keyring: Path) -> None:
    """The secret key is there (before anything is written; RepoError naming it otherwise); its
    public key exported to ``keyring`` (what signatures already made are checked against)."""
    home = str(homedir) if homedir else os.environ.get("GNUPGHOME")
    env = {"GNUPGHOME": home} if home else None
    listed = run(["gpg", "--batch", "--list-secret-keys", "--with-colons", key_id], env=env, capture=True,
                 check=False)
    if listed.returncode != 0 or "sec:" not in listed.stdout:
        where = f" in {homedir}" if homedir else ""
        raise RepoError(f"no GPG secret key {key_id!r}{where}", hint="gpg --list-secret-keys shows the keys")
    exported = run(["gpg", "--batch", "--export", "--output", str(keyring), key_id], env=env, capture=True,
                   check=False)
    if exported.returncode != 0 or not keyring.exists():
        raise RepoError(f"cannot export the public key of {key_id!r}")

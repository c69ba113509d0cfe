"""The APT configuration a new deployment will boot with, for resolving its layered packages.

A deployment's /etc is libostree's 3-way merge of the merge deployment's /etc onto the new
commit's /usr/etc: a file the admin added or changed (it differs from the merge deployment's own
/usr/etc) is kept, a file the admin deleted stays deleted, every other file is the new commit's.
When a new base brings another /usr/etc/apt — a rebase from Debian 12 to Debian 13 brings
trixie's sources — the packages layered on it must be resolved against what that merge will
produce, not against the running release's sources. :func:`apt_config_root` builds that /etc/apt
in a directory of its own, with the keyrings and mirror lists the sources name outside /etc
read from the new commit.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from apt_ostree.core import config
from apt_ostree.core.ostree import Repo
from apt_ostree.core.sources import read_sources
from apt_ostree.core.sysroot import Deployment

ETC_APT = "etc/apt"


def apt_config_root(repo: Repo, merge: Deployment, base: str, work: Path) -> Path:
    """A root directory whose etc/apt is the /etc/apt a deployment of ``base`` made from ``merge``
    will have: ``merge.path`` itself when ``base`` has the /usr/etc/apt that ``merge`` was made
    from (the usual upgrade), else a merged copy under ``work``."""
    if repo.tree_checksum(base, f"usr/{ETC_APT}") == repo.tree_checksum(merge.checksum, f"usr/{ETC_APT}"):
        return merge.path
    root = work / "next-etc"
    shutil.rmtree(root, ignore_errors=True)
    new = root / ETC_APT
    if not repo.copy_tree(base, f"usr/{ETC_APT}", new):
        new.mkdir(parents=True)
    merge_admin_changes(merge.path / "usr" / ETC_APT, merge.path / ETC_APT, new)
    ours = config.config_path(merge.path)
    if ours.is_file():  # apt-ostreed.conf (Recommends=) stays the admin's
        shutil.copy2(ours, config.config_path(root))
    _files_outside_etc(repo, base, root)
    return root


def merge_admin_changes(defaults: Path, current: Path, into: Path) -> None:
    """libostree's 3-way merge for one directory: what ``current`` adds or changes against
    ``defaults`` is copied over ``into``; what it deletes is deleted from ``into``."""
    for dirpath, dirnames, filenames in os.walk(current):
        rel = Path(dirpath).relative_to(current)
        for name in sorted(dirnames + filenames):
            path, default, out = Path(dirpath) / name, defaults / rel / name, into / rel / name
            if path.is_dir() and not path.is_symlink():
                if not out.is_dir() or out.is_symlink():
                    _remove(out)
                    out.mkdir(parents=True)
                continue
            if _same(path, default):
                continue
            _remove(out)
            out.parent.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():
                os.symlink(os.readlink(path), out)
            else:
                shutil.copy2(path, out)
    for dirpath, dirnames, filenames in os.walk(defaults):
        rel = Path(dirpath).relative_to(defaults)
        for name in dirnames + filenames:
            if not os.path.lexists(current / rel / name):
                _remove(into / rel / name)
        dirnames[:] = [d for d in dirnames if os.path.lexists(current / rel / d)]


def _same(a: Path, b: Path) -> bool:
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    return b.is_file() and a.stat().st_mode == b.stat().st_mode and a.read_bytes() == b.read_bytes()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


def _files_outside_etc(repo: Repo, base: str, root: Path) -> None:
    """Keyrings (Signed-By, trusted.gpg.d links) and mirror lists that the merged sources name
    under /usr: the new commit's, at the same paths under ``root``."""
    wanted: set[str] = set()
    for r in read_sources(root / ETC_APT):
        if r.signed_by is not None and str(r.signed_by).startswith("/"):
            wanted.add(str(r.signed_by))
        wanted |= {u.removeprefix("mirror+file:") for u in r.uris if u.startswith("mirror+file:/")}
    for link in (root / ETC_APT).rglob("*"):
        if link.is_symlink():
            target = os.path.normpath(os.path.join("/" + str(link.parent.relative_to(root)), os.readlink(link)))
            wanted.add(target)
            if os.readlink(link).startswith("/"):  # keep it inside root
                link.unlink()
                link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))
    for path in sorted(wanted):
        if path.startswith(f"/{ETC_APT}/"):
            continue
        data = repo.read_file(base, "/usr" + path if path.startswith("/etc/") else path, follow_symlinks=True)
        if data is not None:
            dest = root / path.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)

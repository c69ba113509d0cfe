"""The package database of a commit, read from the repository (never a checkout).

The commit's ``apt-ostree.packages`` metadata is used when present; otherwise
the dpkg status file is read straight out of the commit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gi.repository import GLib

from apt_ostree.core.apt import Package, parse_dpkg_status, version_compare
from apt_ostree.core.layout import DPKG_DATABASE
from apt_ostree.core.ostree import Repo
from apt_ostree.errors import RepoError

KEY_PACKAGES = "apt-ostree.packages"
STATUS_PATHS = (f"{DPKG_DATABASE}/status", "var/lib/dpkg/status")


def packages_variant(packages: Sequence[Package]) -> GLib.Variant:
    """The package list as commit metadata: a(sss) of name, version, architecture."""
    return GLib.Variant("a(sss)", [(p.name, p.version, p.arch) for p in sorted(packages)])


def packages_from_metadata(metadata: Mapping[str, Any]) -> list[Package] | None:
    raw = metadata.get(KEY_PACKAGES)
    if raw is None:
        return None
    return sorted(Package(n, v, a) for n, v, a in raw)


def commit_packages(repo: Repo, rev: str) -> list[Package]:
    info = repo.commit(rev)
    from_meta = packages_from_metadata(info.metadata)
    if from_meta is not None:
        return from_meta
    for path in STATUS_PATHS:
        data = repo.read_file(info.checksum, path)
        if data is not None:
            return parse_dpkg_status(data.decode("utf-8", "replace"))
    raise RepoError(f"commit {info.checksum} has no package database",
                    hint=f"looked for commit metadata and /{STATUS_PATHS[0]}")


def filter_prefixes(packages: Sequence[Package], prefixes: Sequence[str]) -> list[Package]:
    if not prefixes:
        return list(packages)
    return [p for p in packages if any(p.name.startswith(prefix) for prefix in prefixes)]


@dataclass(frozen=True)
class Change:
    name: str
    arch: str
    old: str
    new: str


@dataclass(frozen=True)
class PackageDiff:
    added: tuple[Package, ...]
    removed: tuple[Package, ...]
    upgraded: tuple[Change, ...]
    downgraded: tuple[Change, ...]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.upgraded or self.downgraded)


def diff_packages(old: Sequence[Package], new: Sequence[Package]) -> PackageDiff:
    before = {(p.name, p.arch): p for p in old}
    after = {(p.name, p.arch): p for p in new}
    added = tuple(sorted(after[k] for k in after.keys() - before.keys()))
    removed = tuple(sorted(before[k] for k in before.keys() - after.keys()))
    up: list[Change] = []
    down: list[Change] = []
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key], after[key]
        if a.version == b.version:
            continue
        change = Change(a.name, a.arch, a.version, b.version)
        (up if version_compare(b.version, a.version) > 0 else down).append(change)
    return PackageDiff(added, removed, tuple(up), tuple(down))


def db_version(packages: Sequence[Package]) -> str:
    """A fingerprint of a package set: count and a digest of the sorted list."""
    h = hashlib.sha256("".join(f"{p.name}\t{p.version}\t{p.arch}\n" for p in sorted(packages)).encode())
    return f"{len(packages)}:{h.hexdigest()[:16]}"

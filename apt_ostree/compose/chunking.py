"""Content objects of a commit grouped into image layers by Debian package.

dpkg's file lists (``info/PKG.list`` in the commit's database) say which package owns each
path; the unit of grouping is the *source* package (its binaries are uploaded, and so change,
together). The assignment is stable across builds:

- with a previous build's manifest, its layers (``ostree.components``) keep their packages;
  packages that are new get a layer of their own if one is left, else join the smallest;
- otherwise the largest sources get a layer each and the rest are spread over a few shared
  layers by a hash of their name, the packages of priority required/important (rarely updated
  as a whole) apart from the others; a package keeps its layer as long as the split holds.

Objects no package owns (the dpkg database, /usr/etc as configured, the initramfs, caches) stay
in the commit layer, which changes with every build anyway.
"""

from __future__ import annotations

import posixpath
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from apt_ostree.core.ostree_tar import ChunkObject

BASE_PRIORITIES = ("required", "important")
MIN_CHUNKED_LAYERS = 4  # below this, one layer (as ostree-ext)


@dataclass(frozen=True)
class PackageInfo:
    name: str
    source: str
    priority: str
    files: tuple[str, ...]  # dpkg's list: absolute paths as dpkg knows them


@dataclass(frozen=True)
class Chunk:
    packages: tuple[str, ...]  # binary package names, sorted
    objects: tuple[ChunkObject, ...]
    size: int


@dataclass(frozen=True)
class Chunking:
    chunks: tuple[Chunk, ...]
    remainder: tuple[ChunkObject, ...]


def parse_status(text: str, lists: Mapping[str, str]) -> list[PackageInfo]:
    """Installed packages from dpkg's status file and their file lists (``lists``: package name,
    with ``:arch`` where dpkg uses it, to the list's text)."""
    out = []
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = ""
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                continue
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        name = fields.get("Package")
        if not name or not fields.get("Status", "").endswith(" installed"):
            continue
        arch = fields.get("Architecture", "")
        listed = lists.get(f"{name}:{arch}", lists.get(name, ""))
        source = fields.get("Source", name).split(" ")[0]
        out.append(PackageInfo(name, source, fields.get("Priority", "optional"),
                               tuple(p for p in listed.splitlines() if p and p != "/.")))
    return sorted(out, key=lambda p: p.name)


def canonical_path(path: str, root_links: Mapping[str, str]) -> str:
    """A dpkg path as the commit has it: without the leading /, /etc as usr/etc, and through the
    root's merged-/usr links (bin -> usr/bin)."""
    rel = posixpath.normpath(path).lstrip("/")
    top, _, rest = rel.partition("/")
    if top == "etc":
        return posixpath.join("usr/etc", rest) if rest else "usr/etc"
    if top in root_links:
        return posixpath.join(root_links[top], rest) if rest else root_links[top]
    return rel


def plan(files: Sequence[tuple[str, str, int]], packages: Sequence[PackageInfo], root_links: Mapping[str, str],
         max_layers: int, previous: Sequence[Sequence[str]] | None = None) -> Chunking:
    """Group ``files`` ((path, checksum, size) of every non-directory of the commit) into at most
    ``max_layers - 1`` chunks (the commit layer is the last one); ``previous``: the package lists
    of an earlier build's chunk layers, in order."""
    owner_of_path: dict[str, str] = {}
    for pkg in packages:  # (sorted by name: a path two packages list goes to the first)
        for p in pkg.files:
            owner_of_path.setdefault(canonical_path(p, root_links), pkg.name)
    paths_of: dict[str, list[str]] = {}
    size_of: dict[str, int] = {}
    owners_of: dict[str, set[str]] = {}
    for path, checksum, size in files:
        paths_of.setdefault(checksum, []).append(path)
        size_of[checksum] = size
        owner = owner_of_path.get(path)
        if owner is not None:
            owners_of.setdefault(checksum, set()).add(owner)
    by_name = {p.name: p for p in packages}
    objects_of: dict[str, list[str]] = {}  # package -> checksums
    for checksum, owners in owners_of.items():
        objects_of.setdefault(min(owners), []).append(checksum)
    _kernel_files(paths_of, owners_of, objects_of, owner_of_path)
    owned = {c for cs in objects_of.values() for c in cs}
    remainder = tuple(ChunkObject(c, tuple(sorted(paths_of[c]))) for c in sorted(paths_of) if c not in owned)
    n = max_layers - 1
    if n < MIN_CHUNKED_LAYERS - 1 or not objects_of:
        return Chunking((), tuple(ChunkObject(c, tuple(sorted(ps))) for c, ps in sorted(paths_of.items())))

    def pkg_size(name: str) -> int:
        return sum(size_of[c] for c in objects_of.get(name, ()))

    present = sorted(objects_of)
    bins = _bins_from_previous(present, previous, n, pkg_size) if previous else \
        _bins_fresh(present, by_name, n, pkg_size)
    chunks = []
    for names in bins:
        objs = sorted(c for name in names for c in objects_of.get(name, ()))
        if objs:
            chunks.append(Chunk(tuple(sorted(names)), tuple(ChunkObject(c, tuple(sorted(paths_of[c]))) for c in objs),
                                sum(size_of[c] for c in objs)))
    return Chunking(tuple(chunks), remainder)


def _kernel_files(paths_of: Mapping[str, list[str]], owners_of: Mapping[str, set[str]],
                  objects_of: dict[str, list[str]], owner_of_path: Mapping[str, str]) -> None:
    """Files of usr/lib/modules/KVER that no package lists (vmlinuz moved there, the initramfs, depmod's
    indexes) go with the kernel's package: they change when it does."""
    for checksum, paths in paths_of.items():
        if checksum in owners_of:
            continue
        for path in paths:
            parts = path.split("/")
            if len(parts) > 4 and parts[:3] == ["usr", "lib", "modules"]:
                kdir = "/".join(parts[:4])
                owner = owner_of_path.get(f"{kdir}/modules.order") or owner_of_path.get(f"{kdir}/modules.builtin")
                if owner:
                    objects_of.setdefault(owner, []).append(checksum)
                    break


def _bins_fresh(names: Sequence[str], by_name: Mapping[str, PackageInfo], n: int,
                pkg_size: Callable[[str], int]) -> list[list[str]]:
    units: dict[str, list[str]] = {}
    for name in names:
        units.setdefault(by_name[name].source, []).append(name)
    sizes = {u: sum(pkg_size(p) for p in ps) for u, ps in units.items()}
    order = sorted(units, key=lambda u: (-sizes[u], u))
    if len(order) <= n:
        return [units[u] for u in order]
    shared = max(2, n // 4)
    alone, rest = order[:n - shared], order[n - shared:]
    base_bins = max(1, shared // 2)
    bins: list[list[str]] = [units[u] for u in alone] + [[] for _ in range(shared)]
    for unit in sorted(rest):
        is_base = any(by_name[p].priority in BASE_PRIORITIES for p in units[unit])
        h = zlib.crc32(unit.encode())
        slot = h % base_bins if is_base else base_bins + h % (shared - base_bins)
        bins[len(alone) + slot] += units[unit]
    return [b for b in bins if b]


def _bins_from_previous(names: Sequence[str], previous: Sequence[Sequence[str]], n: int,
                        pkg_size: Callable[[str], int]) -> list[list[str]]:
    present = set(names)
    bins = [[p for p in layer if p in present] for layer in previous]
    bins = [b for b in bins if b]
    placed = {p for b in bins for p in b}
    new = [p for p in names if p not in placed]
    if new:
        bins.append(new)
    while len(bins) > n:  # fewer layers allowed than before: merge the two smallest
        bins.sort(key=lambda b: sum(pkg_size(p) for p in b))
        bins = [bins[0] + bins[1], *bins[2:]]
    return bins


def previous_layers(annotations: Iterable[Mapping[str, str]]) -> list[list[str]]:
    """The package lists of an image's chunk layers, from their ``ostree.components`` annotations."""
    out = []
    for a in annotations:
        value = a.get("ostree.components")
        if value:
            out.append([p for p in value.split(",") if p])
    return out

"""bootc's base-image rules (``bootc container lint``), checked on an OSTree commit.

Each problem is one line naming the rule and the path at fault. ``compose lint REV`` prints
them; ``compose container-encapsulate`` refuses a commit that has any.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from apt_ostree.core.ostree import Repo
from apt_ostree.core.ostree_objects import Objects

API_DIRS = ("dev", "proc", "sys", "run", "tmp", "var")
TMPFILES_DIRS = ("usr/lib/tmpfiles.d", "usr/etc/tmpfiles.d")


@dataclass(frozen=True)
class Problem:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


class _Tree:
    """Path -> kind ("dir", "file", "symlink") of a commit, and symlink targets."""

    def __init__(self, objects: Objects, commit: str) -> None:
        self.kinds: dict[str, str] = {}
        self.links: dict[str, str] = {}
        self.bad_names: list[str] = []
        for path, kind, checksum in objects.walk(commit):
            if not _utf8(path):
                self.bad_names.append(path)
            if kind == "file" and checksum is not None and posixpath.dirname(path) in ("", "usr/lib/modules"):
                target = objects.content(checksum).symlink  # (only where a link matters: the root, the kernels)
                if target is not None:
                    kind = "symlink"
                    self.links[path] = target
            self.kinds[path] = kind

    def children(self, path: str) -> list[str]:
        prefix = path + "/"
        return sorted(p for p in self.kinds if p.startswith(prefix) and "/" not in p[len(prefix):])


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def lint(repo: Repo, commit: str) -> list[Problem]:
    objects = Objects(repo)
    tree = _Tree(objects, commit)
    out: list[Problem] = []
    kernels = tree.children("usr/lib/modules")
    kernels = [k for k in kernels if tree.kinds[k] == "dir"]
    if len(kernels) != 1:
        out.append(Problem("kernel", f"{len(kernels)} kernels in /usr/lib/modules "
                           f"({', '.join(posixpath.basename(k) for k in kernels) or 'none'}); exactly one is needed"))
    for k in kernels:
        for name in ("vmlinuz", "initramfs.img"):
            if tree.kinds.get(f"{k}/{name}") != "file":
                out.append(Problem("kernel", f"/{k}/{name} is missing"))
    if tree.children("boot"):
        out.append(Problem("nonempty-boot", f"/boot is not empty: /{tree.children('boot')[0]}"))
    if tree.kinds.get("sysroot") != "dir":
        out.append(Problem("baseimage-root", "/sysroot is not a directory"))
    if tree.links.get("ostree") != "sysroot/ostree":
        out.append(Problem("baseimage-root", "/ostree is not a symbolic link to sysroot/ostree"))
    if "etc" in tree.kinds and "usr/etc" in tree.kinds:
        out.append(Problem("etc-usretc", "both /etc and /usr/etc exist"))
    for d in API_DIRS:
        if tree.kinds.get(d) != "dir":
            out.append(Problem("api-base-directories", f"/{d} is not a directory"))
    for d in ("run", "tmp"):
        if tree.children(d):
            out.append(Problem("nonempty-run-tmp", f"/{d} is not empty: /{tree.children(d)[0]}"))
    out += [Problem("utf8", f"not a UTF-8 name: /{p!r}") for p in tree.bad_names]
    out += [Problem("utf8", f"not a UTF-8 link target: /{p}") for p, t in tree.links.items() if not _utf8(t)]
    declared = _tmpfiles_paths(repo, commit, tree)
    for path in sorted(p for p in tree.kinds if p.startswith("var/")):
        if not any(path == d or path.startswith(d + "/") or d.startswith(path + "/") for d in declared):
            out.append(Problem("var-tmpfiles", f"/{path} is not made by a tmpfiles.d entry (the commit's /var "
                                               "is ignored when a deployment is made)"))
            break
    return out


def _tmpfiles_paths(repo: Repo, commit: str, tree: _Tree) -> set[str]:
    out = set()
    for d in TMPFILES_DIRS:
        for conf in tree.children(d):
            data = repo.read_file(commit, conf, follow_symlinks=True) if conf.endswith(".conf") else None
            for line in (data or b"").decode("utf-8", "replace").splitlines():
                fields = line.split()
                if len(fields) >= 2 and not fields[0].startswith("#"):
                    out.add(posixpath.normpath(fields[1]).lstrip("/"))
    return out

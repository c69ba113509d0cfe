"""The base's files that a layered package must not replace.

dpkg refuses a package that ships a file another package owns, by path. On a merged-/usr tree a
path has two names (``/bin/bash`` and ``/usr/bin/bash``): dpkg's database lists the base's file
under one, a layered package may ship it under the other, and dpkg then overwrites the base's
file without a word. This check compares, after dpkg has run and before anything is committed,
the new packages' file lists with the base's, each path under its /usr name; only
``override replace`` (a new version of the base package itself) and ``override remove`` change
what the base owns. Diverted paths (dpkg-divert) are the package's by design.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from apt_ostree.core.layout import DPKG_DATABASE
from apt_ostree.errors import LayeringError

MERGED = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")  # (the usr-merge aliases: /X -> /usr/X)


def usr_name(path: str) -> str:
    """``path`` under its /usr name: /bin/bash -> /usr/bin/bash."""
    top, _, rest = path.lstrip("/").partition("/")
    return f"/usr/{top}/{rest}".rstrip("/") if top in MERGED else "/" + path.lstrip("/")


def _package(list_file: Path) -> str:
    return list_file.name.removesuffix(".list").split(":")[0]


def _paths(list_file: Path) -> list[str]:
    return [line for line in list_file.read_text(errors="surrogateescape").splitlines() if line.startswith("/")]


def _diverted(tree: Path) -> set[str]:
    """Paths dpkg-divert moved aside (the diversions file: from, to, package; three lines each)."""
    path = tree / DPKG_DATABASE / "diversions"
    lines = path.read_text(errors="surrogateescape").splitlines() if path.exists() else []
    return {usr_name(lines[i]) for i in range(0, len(lines) - 2, 3)}


def check_no_base_file_replaced(lower: Path, merged: Path, new: Iterable[str], removed: Iterable[str]) -> None:
    """LayeringError naming the package and the path when one of the ``new`` packages (names) ships
    a file that a base package (in ``lower``, less the ``removed`` ones) owns under another name."""
    new, gone = set(new), set(removed)
    owners: dict[str, str] = {}
    for list_file in sorted((lower / DPKG_DATABASE / "info").glob("*.list")):
        package = _package(list_file)
        if package in gone or package in new:
            continue
        for path in _paths(list_file):
            owners.setdefault(usr_name(path), package)
    diverted = _diverted(merged)
    for list_file in sorted((merged / DPKG_DATABASE / "info").glob("*.list")):
        package = _package(list_file)
        if package not in new:
            continue
        for path in _paths(list_file):
            name = usr_name(path)
            owner = owners.get(name)
            if owner is None or name in diverted:
                continue
            rel = name.lstrip("/")
            target = lower / ("usr/" + rel if rel == "etc" or rel.startswith("etc/") else rel)
            if not target.is_symlink() and (target.is_dir() or not target.exists()):
                continue  # (directories are shared; /var's content is made at boot)
            raise LayeringError(f"package {package} would replace {name} of base package {owner} "
                                f"(it ships {path})",
                                hint=f"a layered package never replaces the base's files; to replace the base's "
                                     f"{owner}: apt-ostree override replace")

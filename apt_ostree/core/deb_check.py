"""A .deb named by path (install, override replace, a treefile's packages-local), checked when it is read.

dpkg would refuse some of these only halfway through a layer, with a bare "dpkg failed"; others it
would unpack (a member whose path climbs out with ``..``); a malformed Depends field would be written
into the local package list, where APT then blames "the package lists" for every later command. So
before anything is kept or indexed, :func:`check_new_deb` reads the control fields APT parses
(dependencies, architecture) and every data member's path, and raises an AptError naming the file.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import apt_pkg

from apt_ostree.core.apt import host_architectures
from apt_ostree.core.layer_apt import LocalDeb, read_local_deb
from apt_ostree.errors import AptError

# the relationship fields APT parses from a binary package (deb-control(5))
RELATION_FIELDS = ("Pre-Depends", "Depends", "Recommends", "Suggests", "Enhances", "Breaks", "Conflicts",
                   "Replaces", "Provides")


def check_new_deb(path: Path) -> LocalDeb:
    """``path`` as a LocalDeb, once its control fields and data members are found sound."""
    deb = read_local_deb(path)
    arches = host_architectures()
    if deb.arch != "all" and deb.arch not in arches:
        raise AptError(f"{path}: package {deb.name} is for architecture {deb.arch}, this system runs "
                       f"{', '.join(arches)}", hint="install a build for this architecture (or 'all')")
    control = _control(path)
    for field in RELATION_FIELDS:
        value = control.get(field)
        if value is None:
            continue
        try:
            apt_pkg.parse_depends(value, False)
        except ValueError:
            raise AptError(f"{path}: cannot parse its {field} field {value[:120]!r}",
                           hint="deb-control(5): name (op version) | alternative, next") from None
    _check_members(path)
    return deb


def _control(path: Path) -> apt_pkg.TagSection[str]:
    import apt_inst

    text = apt_inst.DebFile(str(path)).control.extractdata("control").decode("utf-8", "replace")
    return apt_pkg.TagSection(text)


def _check_members(path: Path) -> None:
    """Every data member stays below / and no member is reached through a symbolic link the package
    itself ships (dpkg follows none of these: it fails halfway, or writes outside the tree)."""
    import apt_inst

    links: set[PurePosixPath] = set()
    problem: list[str] = []

    def visit(member: apt_inst.TarMember, _data: bytes) -> None:
        if problem:
            return
        name = _inside(member.name)
        if name is None:
            problem.append(f"member {member.name!r} points outside the tree")
            return
        if member.islnk() and _inside(member.linkname) is None:
            problem.append(f"hard link {member.name!r} points outside the tree ({member.linkname!r})")
            return
        through = next((p for p in name.parents if p in links), None)
        if through is not None:
            problem.append(f"member {member.name!r} goes through the package's own symbolic link '{through}'")
            return
        if member.issym():
            links.add(name)

    try:
        apt_inst.DebFile(str(path)).data.go(visit)
    except SystemError as e:
        raise AptError(f"{path}: cannot read its data archive ({str(e).strip()})") from None
    if problem:
        raise AptError(f"{path}: {problem[0]}", hint="a .deb's files stay below / (dpkg-deb --contents lists them)")


def _inside(name: str) -> PurePosixPath | None:
    """A member's path relative to /, or None when it is absolute or climbs with '..'."""
    if name.startswith("/"):
        return None
    parts = [p for p in PurePosixPath(name).parts if p not in (".", "")]
    if ".." in parts:
        return None
    return PurePosixPath(*parts) if parts else PurePosixPath(".")

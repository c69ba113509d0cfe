"""Package sets (diff, filter, fingerprint) and dpkg status parsing."""

from __future__ import annotations

import pytest

from apt_ostree.core.apt import Package, parse_dpkg_status
from apt_ostree.core.pkgdb import Change, db_version, diff_packages, filter_prefixes

pytestmark = pytest.mark.unit


def P(name: str, version: str, arch: str = "amd64") -> Package:
    return Package(name, version, arch)


# ---------------------------------------------------------------- diff_packages


def test_diff_added_removed() -> None:
    old = [P("a", "1"), P("gone", "1"), P("libc6", "2.36", "i386")]
    new = [P("a", "1"), P("new", "2"), P("libc6", "2.36", "amd64")]
    d = diff_packages(old, new)
    # The same name on another architecture is another package.
    assert d.added == (P("libc6", "2.36", "amd64"), P("new", "2"))
    assert d.removed == (P("gone", "1"), P("libc6", "2.36", "i386"))
    assert d.upgraded == d.downgraded == ()
    assert not d.empty


@pytest.mark.parametrize(("old", "new"), [
    ("1.0-1", "1.0-1+deb12u1"),
    ("1.0-1+deb12u1", "1:0.9"),
    ("1.0-1", "1:0.9"),
    ("2.0~rc1-1", "2.0-1"),
    ("1.9-1", "1.10-1"),
    ("1:2.0", "2:1.0"),
])
def test_diff_debian_version_ordering(old: str, new: str) -> None:
    up = diff_packages([P("p", old)], [P("p", new)])
    assert up.upgraded == (Change("p", "amd64", old, new),) and up.downgraded == ()
    down = diff_packages([P("p", new)], [P("p", old)])
    assert down.downgraded == (Change("p", "amd64", new, old),) and down.upgraded == ()


def test_diff_identical_is_empty() -> None:
    pkgs = [P("a", "1"), P("b", "2")]
    d = diff_packages(pkgs, list(reversed(pkgs)))
    assert d.empty


def test_diff_changes_sorted_by_name() -> None:
    d = diff_packages([P("z", "1"), P("a", "1"), P("m", "2")], [P("m", "1"), P("z", "2"), P("a", "2")])
    assert [c.name for c in d.upgraded] == ["a", "z"]
    assert [c.name for c in d.downgraded] == ["m"]


# ---------------------------------------------------------------- filter / fingerprint


def test_filter_prefixes() -> None:
    pkgs = [P("libc6", "1"), P("libssl3", "1"), P("linux-image-amd64", "1"), P("vim", "1")]
    assert filter_prefixes(pkgs, []) == pkgs
    assert filter_prefixes(pkgs, ["lib"]) == [P("libc6", "1"), P("libssl3", "1")]
    assert filter_prefixes(pkgs, ["linux", "vim"]) == [P("linux-image-amd64", "1"), P("vim", "1")]
    assert filter_prefixes(pkgs, ["nothing"]) == []


def test_db_version() -> None:
    pkgs = [P("a", "1"), P("b", "2", "all"), P("c", "1:3")]
    v = db_version(pkgs)
    assert v.startswith("3:")
    assert v == db_version(pkgs) == db_version(list(reversed(pkgs)))
    assert v != db_version([P("a", "1"), P("b", "2", "all"), P("c", "1:4")])
    assert v != db_version([P("a", "1"), P("b", "2", "amd64"), P("c", "1:3")])
    assert db_version([]).startswith("0:")


# ---------------------------------------------------------------- dpkg status

STATUS = """\
Package: zlib1g
Status: install ok installed
Priority: required
Architecture: amd64
Version: 1:1.2.13.dfsg-1
Description: compression library
 multi-line description
 .
 continues

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u4

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u4

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: purged
Status: purge ok not-installed
Architecture: amd64

Package: broken
Status: install ok half-installed
Architecture: amd64
Version: 2.0

Package: tzdata
Status: install ok installed
Architecture: all
Version: 2024a-0+deb12u1
"""


def test_parse_dpkg_status() -> None:
    assert parse_dpkg_status(STATUS) == [
        P("libc6", "2.36-9+deb12u4", "amd64"),
        P("libc6", "2.36-9+deb12u4", "i386"),
        P("tzdata", "2024a-0+deb12u1", "all"),
        P("zlib1g", "1:1.2.13.dfsg-1", "amd64"),
    ]


def test_parse_dpkg_status_empty() -> None:
    assert parse_dpkg_status("") == []
    assert parse_dpkg_status("\n\n") == []

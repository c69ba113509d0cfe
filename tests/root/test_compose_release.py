"""A treefile for another release than the host's, without `repos`: the host's own mirrors with
the suites renamed (issue 11, item 2). A Debian 12 host resolves trixie's packages, and the other way."""

from __future__ import annotations

from pathlib import Path

import pytest

from apt_ostree.core.sources import host_release
from tests.conftest import apt_ostree

pytestmark = pytest.mark.root

MAJOR = {"bookworm": "12", "trixie": "13"}


def test_host_sources_for_another_release(tmp_path: Path, cachedir: Path) -> None:
    host = host_release()
    assert host in MAJOR, host
    other = "trixie" if host == "bookworm" else "bookworm"
    treefile = tmp_path / "other.yaml"
    treefile.write_text(f"ref: test/{other}\nreleasever: {other}\nvariant: essential\ncontainer: true\n"
                        "packages: [base-files]\n")
    cache = cachedir.parent / f"test-cache-{other}"  # (its own lists: the shared cache holds the host's)
    cli = apt_ostree("compose", "tree", treefile, "--repo", tmp_path / "repo", "--cachedir", cache, "--dry-run")
    versions = dict(ln.split()[:2] for ln in cli.stdout.splitlines() if not ln.startswith("#"))
    assert versions["base-files"].startswith(MAJOR[other]), versions.get("base-files")
    assert not (tmp_path / "repo").exists()

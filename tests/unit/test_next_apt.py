"""libostree's 3-way /etc merge, for the /etc/apt a new base will boot with (core/next_apt.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apt_ostree.core.next_apt import merge_admin_changes

pytestmark = pytest.mark.unit


def test_merge_admin_changes(tmp_path: Path) -> None:
    defaults, current, into = tmp_path / "defaults", tmp_path / "current", tmp_path / "into"
    for d in (defaults, current, into):
        (d / "sources.list.d").mkdir(parents=True)
    (defaults / "sources.list.d/debian.sources").write_text("old release\n")
    (current / "sources.list.d/debian.sources").write_text("old release\n")      # untouched: new one wins
    (into / "sources.list.d/debian.sources").write_text("new release\n")
    (defaults / "apt.conf").write_text("default\n")
    (current / "apt.conf").write_text("admin's\n")                                # changed: admin's wins
    (into / "apt.conf").write_text("new default\n")
    (defaults / "removed.conf").write_text("x\n")                                 # deleted by the admin
    (into / "removed.conf").write_text("new x\n")
    (current / "sources.list.d/mine.list").write_text("deb file:/srv/debs ./\n")  # added by the admin
    os.symlink("/usr/share/keyrings/k.gpg", current / "k.gpg")
    merge_admin_changes(defaults, current, into)
    assert (into / "sources.list.d/debian.sources").read_text() == "new release\n"
    assert (into / "apt.conf").read_text() == "admin's\n"
    assert not (into / "removed.conf").exists()
    assert (into / "sources.list.d/mine.list").read_text() == "deb file:/srv/debs ./\n"
    assert os.readlink(into / "k.gpg") == "/usr/share/keyrings/k.gpg"

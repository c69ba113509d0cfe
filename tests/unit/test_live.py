"""apply-live's pieces that need no booted system: the requests' checks, the file comparison and
copy the writer uses, the package rule, the status rows."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from apt_ostree.cli.status import render
from apt_ostree.core import live_apply
from apt_ostree.core.apt import Package
from apt_ostree.core.live import _usr, replaced_packages
from apt_ostree.core.ops import ApplyLive, PackageChange, Request
from apt_ostree.core.pkgdb import diff_packages
from apt_ostree.errors import UsageError

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("op", "message"), [
    (ApplyLive(target="abc", reset=True), "--target or --reset"),
    (PackageChange(Request(install=("htop",)), apply_live=True, reboot=True), "--apply-live and --reboot"),
    (PackageChange(Request(install=("htop",)), apply_live=True, dry_run=True), "nothing to apply"),
    (PackageChange(Request(uninstall=("htop",)), apply_live=True), "needs --allow-replacement"),
    (PackageChange(Request(install=("htop",)), restart_services=True), "go with --apply-live"),
])
def test_requests_refuse(op: ApplyLive | PackageChange, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        op.validate()


def test_requests_accept() -> None:
    PackageChange(Request(uninstall=("htop",)), apply_live=True, allow_replacement=True).validate()
    PackageChange(Request(install=("htop",)), apply_live=True, restart_services=True).validate()
    ApplyLive(reset=True, allow_replacement=True).validate()


def test_additions_only_rule_names_packages() -> None:
    old = [Package("a", "1", "amd64"), Package("b", "1", "amd64"), Package("c", "1", "amd64")]
    new = [Package("a", "2", "amd64"), Package("c", "1", "amd64"), Package("d", "1", "amd64")]
    assert replaced_packages(diff_packages(old, new)) == ["a", "b"]
    assert replaced_packages(diff_packages(old, [*old, Package("d", "1", "amd64")])) == []


def test_merged_usr_paths() -> None:
    assert _usr("/sbin/vnstatd") == "/usr/sbin/vnstatd" and _usr("/usr/bin/x") == "/usr/bin/x"


def test_same_and_copy_entry(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert live_apply.same(a, b)  # both absent
    a.write_text("x")
    assert not live_apply.same(a, b)
    live_apply.copy_entry(a, b)
    assert live_apply.same(a, b)
    b.write_text("y")
    assert not live_apply.same(a, b)
    os.chmod(a, 0o600)
    live_apply.copy_entry(a, b)
    assert b.read_text() == "x" and (b.stat().st_mode & 0o777) == 0o600
    link = tmp_path / "l"
    link.symlink_to("a")
    live_apply.copy_entry(link, b)  # a file replaced by a link
    assert b.is_symlink() and os.readlink(b) == "a" and live_apply.same(link, b)
    d = tmp_path / "d"
    d.mkdir()
    live_apply.copy_entry(d, b)  # a link replaced by a directory
    assert b.is_dir() and not b.is_symlink()
    live_apply.remove(b)
    assert not b.exists()


def test_status_rows() -> None:
    d = {"booted": True, "origin": "o", "checksum": "c1", "version": None, "timestamp": 0, "staged": False,
         "pinned": False, "unlocked": "transient", "live-replaced": "c2", "live-diff": "1 added",
         "live-inprogress": "c3"}
    text = "\n".join(render({"deployments": [d]}, verbose=False))
    assert "Unlocked: transient" in text and "LiveCommit: c2" in text and "LiveDiff: 1 added" in text
    assert "InterruptedLiveCommit: c3" in text

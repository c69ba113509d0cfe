"""Flags no other test exercises, against a real sysroot and the signed synthetic repository:
status -b/-v, install --download-only/--allow-inactive, reset -l/-o, deploy and rebase with
--install/--uninstall (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from apt_ostree.core.sysroot import Sysroot
from tests.conftest import Composed, apt_ostree, error_lines
from tests.root.test_deployments import derive
from tests.root.test_layering import status

pytestmark = pytest.mark.root


def ids(root: Path) -> list[str]:
    return [d.id for d in Sysroot.open(root).deployments()]


def test_status_booted_and_verbose(layer_root: Path, updates: Path, minimal: Composed, tmp_path: Path) -> None:
    derive(updates, "test/os", "13.50", {"usr/share/aot-flags": "x\n"}, tmp_path)
    apt_ostree("upgrade", "--sysroot", layer_root)
    assert len(status(layer_root)) == 2
    # not booted: -b shows the default deployment (what would boot), alone
    only = json.loads(apt_ostree("status", "--sysroot", layer_root, "--json", "-b").stdout)["deployments"]
    assert [d["id"] for d in only] == [ids(layer_root)[0]]
    human = apt_ostree("status", "--sysroot", layer_root, "--booted").stdout
    assert human.count("Commit: ") == 1
    verbose = apt_ostree("status", "--sysroot", layer_root, "-v").stdout
    for d in Sysroot.open(layer_root).deployments():
        assert f"Deployment: {d.id}" in verbose and "StateRoot: debian" in verbose
    assert "Kernel arguments:" in verbose and "Kernel arguments:" not in apt_ostree("status", "--sysroot",
                                                                                    layer_root).stdout


def test_install_download_only_then_cache_only(layer_root: Path) -> None:
    before = ids(layer_root)
    cli = apt_ostree("install", "--sysroot", layer_root, "--download-only", "aot-hello")
    assert "aot-hello 1.0 all" in cli.stdout and "Downloaded; nothing deployed." in cli.stdout, cli.stdout
    assert ids(layer_root) == before
    apt_ostree("install", "--sysroot", layer_root, "-C", "aot-hello")  # the lists and .debs already there
    assert status(layer_root)[0]["packages"] == ["aot-hello"]


def test_install_allow_inactive(layer_root: Path) -> None:
    refused = apt_ostree("install", "--sysroot", layer_root, "less", check=False)
    assert refused.returncode == 1 and error_lines(refused)[0].startswith("error: package less is already in the base")
    apt_ostree("install", "--sysroot", layer_root, "--allow-inactive", "less", "aot-hello")
    d = status(layer_root)[0]
    assert d["requested-packages"] == ["aot-hello", "less"] and d["inactive-requests"] == ["less"]
    assert d["packages"] == ["aot-hello"]


def test_reset_overlays_or_overrides(layer_root: Path, minimal: Composed) -> None:
    apt_ostree("install", "--sysroot", layer_root, "aot-hello")
    apt_ostree("override", "remove", "--sysroot", layer_root, "less")
    d = status(layer_root)[0]
    assert d["requested-packages"] == ["aot-hello"] and d["requested-base-removals"] == ["less"]
    apt_ostree("reset", "--sysroot", layer_root, "-l")  # the layered packages go, the override stays
    d = status(layer_root)[0]
    assert d["requested-packages"] == [] and d["requested-base-removals"] == ["less"]
    apt_ostree("install", "--sysroot", layer_root, "aot-hello")
    apt_ostree("reset", "--sysroot", layer_root, "--overrides")  # the override goes, the packages stay
    d = status(layer_root)[0]
    assert d["requested-packages"] == ["aot-hello"] and d["requested-base-removals"] == []
    apt_ostree("reset", "--sysroot", layer_root)
    assert status(layer_root)[0]["checksum"] == minimal.checksum


def test_deploy_and_rebase_change_packages_too(layer_root: Path, updates: Path, minimal: Composed,
                                               tmp_path: Path) -> None:
    old = derive(updates, "test/os", "13.60", {"usr/share/aot-flags": "old\n"}, tmp_path / "a")
    derive(updates, "test/os", "13.61", {"usr/share/aot-flags": "new\n"}, tmp_path / "b")
    apt_ostree("deploy", "--sysroot", layer_root, old, "--install=aot-hello")
    d = status(layer_root)[0]
    assert d["base-checksum"] == old and d["requested-packages"] == ["aot-hello"]
    other = derive(updates, "test/other", "13.62", {"usr/share/aot-flags": "other\n"}, tmp_path / "c",
                   base=minimal.checksum)
    apt_ostree("rebase", "--sysroot", layer_root, "updates:test/other", "--uninstall=aot-hello", "--install=aot-lib")
    d = status(layer_root)[0]
    assert d["origin"] == "updates:test/other" and d["base-checksum"] == other
    assert d["requested-packages"] == ["aot-lib"] and "aot-hello" not in d["packages"]

"""Changes made before a reboot add up: each one builds on the pending deployment (issue 17).

On a sysroot booted in a mount namespace (tests/booted.py: real staging, real finalization at
"shutdown"), and on a plain sysroot directory, where the pending deployment is the default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.booted import BootedSysroot
from tests.conftest import apt_ostree, error_lines
from tests.debrepo import SignedRepo
from tests.root.conftest import trust
from tests.root.test_deployments import entries
from tests.root.test_layering import fsck

pytestmark = pytest.mark.root


def _status(run: Any) -> dict[str, Any]:
    return dict(json.loads(run("status", "--json").stdout))


def _layers(d: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    return d["requested-packages"], d["requested-base-removals"], d["kernel-arguments"].split()


def test_changes_before_reboot_add_up(sysroot: Path, aot_repo: SignedRepo) -> None:
    trust(sysroot, aot_repo)
    apt_ostree("install", "--sysroot", sysroot, "aot-base-lib")  # A, deployed before the "boot"
    host = BootedSysroot(sysroot)
    run = host.apt_ostree
    [booted, rollback] = _status(run)["deployments"]
    assert booted["booted"] and booted["requested-packages"] == ["aot-base-lib"]
    (host.deployment.path / "etc/admin-edit.conf").write_text("kept\n")  # an /etc edit before the reboot
    kargs = booted["kernel-arguments"].split()

    steps: list[tuple[list[str], tuple[list[str], list[str], list[str]]]] = [
        (["install", "aot-provider"], (["aot-base-lib", "aot-provider"], [], kargs)),
        (["install", "aot-opt"], (["aot-base-lib", "aot-opt", "aot-provider"], [], kargs)),
        (["uninstall", "aot-base-lib"], (["aot-opt", "aot-provider"], [], kargs)),
        (["kargs", "--append=x=1"], (["aot-opt", "aot-provider"], [], [*kargs, "x=1"])),
        (["override", "remove", "less"], (["aot-opt", "aot-provider"], ["less"], [*kargs, "x=1"])),
    ]
    for argv, expected in steps:
        run(*argv)
        data = _status(run)
        staged = [d for d in data["deployments"] if d["staged"]]
        assert len(staged) == 1, argv
        assert _layers(staged[0]) == expected, argv
        assert data["changes-build-on"] == staged[0]["id"]
        assert [d["id"] for d in data["deployments"] if not d["staged"]] == [booted["id"], rollback["id"]]

    human = run("status").stdout
    assert f"Changes build on: the staged deployment {staged[0]['id']}" in human, human
    # --dry-run describes a change against the pending deployment, as the real change would be
    again = run("install", "aot-opt", "--dry-run", check=False)
    assert again.returncode == 1 and "aot-opt is already requested" in error_lines(again)[0]
    dry = run("uninstall", "aot-opt", "--dry-run").stdout  # the plan of the whole request set on the base
    assert "  aot-provider 1.0 all" in dry and "aot-opt" not in dry and "  less " in dry, dry
    assert run("kargs").stdout.split() == [*kargs, "x=1"]  # kargs shows what the next boot gets
    assert run("kargs", "--append-if-missing=x=1", "--unchanged-exit-77", check=False).returncode == 77

    host.reboot()
    data = _status(run)
    now = data["deployments"][0]
    assert now["booted"] and data["changes-build-on"] is None
    assert _layers(now) == (["aot-opt", "aot-provider"], ["less"], [*kargs, "x=1"])
    root = host.deployment.path
    assert (root / "usr/lib/opt/aot-opt/bin/tool").exists() and (root / "usr/share/aot-provider/x").exists()
    assert not (root / "usr/share/aot-base-lib").exists() and not (root / "usr/bin/less").exists()
    assert (root / "etc/admin-edit.conf").read_text() == "kept\n"
    options = next(ln for ln in entries(sysroot)[0].splitlines() if ln.startswith("options "))
    assert "x=1" in options.split(), options
    fsck(sysroot)


def test_cleanup_pending_and_upgrade_on_pending(sysroot: Path, aot_repo: SignedRepo) -> None:
    trust(sysroot, aot_repo)
    host = BootedSysroot(sysroot)
    run = host.apt_ostree
    run("install", "aot-provider")
    # upgrade with nothing new keeps the staged deployment (and its packages)
    assert run("upgrade", "--unchanged-exit-77", check=False).returncode == 77
    [staged] = [d for d in _status(run)["deployments"] if d["staged"]]
    assert staged["requested-packages"] == ["aot-provider"]
    run("cleanup", "-p")  # the way to drop it; the next change builds on the booted deployment again
    assert not any(d["staged"] for d in _status(run)["deployments"])
    run("install", "aot-opt")
    [staged] = [d for d in _status(run)["deployments"] if d["staged"]]
    assert staged["requested-packages"] == ["aot-opt"]


def test_plain_sysroot_changes_build_on_default(sysroot: Path, aot_repo: SignedRepo) -> None:
    trust(sysroot, aot_repo)
    for argv in (["install", "aot-provider"], ["install", "aot-opt"], ["kargs", "--append=y=2"],
                 ["uninstall", "aot-provider"]):
        apt_ostree(*argv, "--sysroot", sysroot)
    data = json.loads(apt_ostree("status", "--json", "--sysroot", sysroot).stdout)
    first = data["deployments"][0]
    assert first["requested-packages"] == ["aot-opt"] and "y=2" in first["kernel-arguments"].split()
    assert data["changes-build-on"] is None

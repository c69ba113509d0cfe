"""SIGKILL at every step of install, uninstall, override remove, kargs, upgrade and deploy (a random
delay into each step, seeded), then: no mount left, the old default intact or one complete new
deployment, and the same command retried completes with no orphan and `ostree fsck` clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import apt_ostree
from tests.faults.kills import check_after_series, kill_series
from tests.root.test_deployments import derive, status

pytestmark = pytest.mark.faults

KILLS: list[int] = []  # kills per command, summed up by the last test


def series(argv: list[str | Path], root: Path, seed: int) -> None:
    """(install and uninstall retry with --idempotent, as a script would: the killed run may have
    deployed already.)"""
    done = kill_series(argv, root, seed)
    print(f"{argv[0]}: killed at " + ", ".join(f"{k.step!r}+{k.delay:.2f}s" for k in done.kills))
    assert done.kills, f"{argv}: never killed (it reported no step)"
    check_after_series(root, done)
    KILLS.append(len(done.kills))


def test_install(layer_root: Path) -> None:
    series(["install", "--idempotent", "--sysroot", layer_root, "aot-hello"], layer_root, 1)
    assert "aot-hello" in status(layer_root)[0]["requested-packages"]  # type: ignore[operator]


def test_uninstall_and_override_remove(layer_root: Path) -> None:
    apt_ostree("install", "--sysroot", layer_root, "aot-hello")
    series(["uninstall", "--idempotent", "--sysroot", layer_root, "aot-hello"], layer_root, 2)
    assert status(layer_root)[0]["requested-packages"] == []
    series(["override", "remove", "--sysroot", layer_root, "less"], layer_root, 3)
    assert [str(x).split()[0] for x in status(layer_root)[0]["base-removals"]] == ["less"]  # type: ignore[attr-defined]


def test_kargs_upgrade_and_deploy(sysroot: Path, updates: Path, tmp_path: Path) -> None:
    series(["kargs", "--sysroot", sysroot, "--append=fault=1"], sysroot, 4)
    assert "fault=1" in apt_ostree("kargs", "--sysroot", sysroot).stdout.split()
    newer = derive(updates, "test/os", "13.1", {"usr/share/fault/one": "1\n"}, tmp_path)
    series(["upgrade", "--sysroot", sysroot], sysroot, 5)
    assert status(sysroot)[0]["checksum"] == newer
    older = status(sysroot)[1]["checksum"]
    series(["deploy", "--sysroot", sysroot, str(older)], sysroot, 6)
    assert status(sysroot)[0]["checksum"] == older


def test_at_least_twenty_kills() -> None:
    assert sum(KILLS) >= 20, KILLS

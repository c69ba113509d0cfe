"""The apt/apt-get/dpkg guard script: refuses package changes on a booted image, passes the rest."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from apt_ostree.core.guard import GUARD_SCRIPT

pytestmark = pytest.mark.unit


def guarded(tmp_path: Path, booted: bool, unlocked: str = "") -> Path:
    """A fake root: usr/bin/{apt,dpkg} -> the guard; the "real" programs echo their arguments.
    The guard's absolute paths are redirected into the fake root; its /usr is read-only (a path
    that does not exist) unless ``unlocked`` (development, hotfix: writable)."""
    bindir = tmp_path / "usr/bin"
    bindir.mkdir(parents=True)
    flag = tmp_path / "ostree-booted"
    if booted:
        flag.write_text("")
    state = tmp_path / "deployment-state"
    if unlocked == "development":
        (state / "abc.0").mkdir(parents=True)
        (state / "abc.0/unlocked-development").touch()
    usr = tmp_path / "usr" if unlocked else tmp_path / "read-only-usr"
    script = (GUARD_SCRIPT.replace("/usr/bin/", f"{bindir}/").replace("/run/ostree-booted", str(flag))
              .replace("usr=/usr\n", f"usr={usr}\n").replace("state=/run/ostree/deployment-state", f"state={state}"))
    for name in ("apt", "apt-get", "dpkg"):
        (bindir / name).write_text(script)
        (bindir / name).chmod(0o755)
        real = bindir / f"{name}.apt-ostree-real"
        real.write_text(f"#!/bin/sh\necho real-{name} \"$@\"\n")
        real.chmod(0o755)
    return bindir


def call(bindir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bindir / argv[0]), *argv[1:]], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})


@pytest.mark.parametrize(("argv", "code", "hint"), [
    (("apt", "install", "nano"), 100, "apt-ostree install nano"),
    (("apt-get", "-y", "install", "nano", "vim"), 100, "apt-ostree install nano vim"),
    (("apt-get", "remove", "htop"), 100, "apt-ostree uninstall htop"),
    (("apt", "full-upgrade"), 100, "apt-ostree upgrade"),
    (("dpkg", "-i", "x.deb"), 2, "apt-ostree install ./PACKAGE.deb"),
    (("dpkg", "--purge", "htop"), 2, "override remove"),
])
def test_refused_when_booted(tmp_path: Path, argv: tuple[str, ...], code: int, hint: str) -> None:
    proc = call(guarded(tmp_path, booted=True), *argv)
    assert proc.returncode == code and hint in proc.stderr and proc.stdout == ""


@pytest.mark.parametrize("argv", [("apt", "update"), ("apt-get", "-s", "install", "nano"), ("dpkg", "-l"),
                                  ("dpkg", "--compare-versions", "1", "lt", "2"), ("apt", "list", "--installed")])
def test_queries_pass_when_booted(tmp_path: Path, argv: tuple[str, ...]) -> None:
    proc = call(guarded(tmp_path, booted=True), *argv)
    assert proc.returncode == 0 and proc.stdout == f"real-{argv[0]} {' '.join(argv[1:])}\n"


def test_everything_passes_when_not_booted(tmp_path: Path) -> None:
    proc = call(guarded(tmp_path, booted=False), "dpkg", "-i", "x.deb")
    assert proc.returncode == 0 and proc.stdout == "real-dpkg -i x.deb\n"


@pytest.mark.parametrize(("unlocked", "when"), [("development", "at the next reboot"),
                                                ("hotfix", "another deployment")])
def test_unlocked_usr_lets_changes_through_with_a_warning(tmp_path: Path, unlocked: str, when: str) -> None:
    bindir = guarded(tmp_path, booted=True, unlocked=unlocked)
    for argv in (("dpkg", "-i", "./x.deb"), ("apt-get", "install", "-y", "nano")):
        r = call(bindir, *argv)
        assert r.returncode == 0 and r.stdout.startswith(f"real-{argv[0]} "), r
        assert "/usr is unlocked" in r.stderr and when in r.stderr, r.stderr

"""A new base that brings other APT sources (what a rebase from Debian 12 to 13 does): the layered
packages are resolved from the sources the new deployment will boot with — the new base's
/usr/etc/apt, its keyrings, and the admin's own changes kept as the /etc merge keeps them — not
from the running deployment's (issue 11, item 5). The releases are two signed repositories of
synthetic packages, each with its own key at the same Signed-By path."""

from __future__ import annotations

from pathlib import Path

import pytest

from apt_ostree.core.apt import parse_dpkg_status
from apt_ostree.core.layering import base_of
from apt_ostree.core.sysroot import Sysroot
from tests.conftest import Composed, apt_ostree, error_lines
from tests.debrepo import Deb, SignedRepo, make_repo
from tests.root.conftest import trust
from tests.root.test_deployments import derive

pytestmark = pytest.mark.root

KEYRING = "/usr/share/keyrings/aot-release.gpg"
SOURCES = "usr/etc/apt/sources.list.d/aot-release.sources"


def release(root: Path, version: str, extra: tuple[Deb, ...] = ()) -> SignedRepo:
    root.mkdir()
    return make_repo(root, (Deb("aot-rel", version, files={"/usr/share/aot-rel/version": f"{version}\n"}), *extra))


def base_with(updates: Path, ref: str, version: str, repo: SignedRepo, tmp: Path, minimal: Composed) -> str:
    files: dict[str, str | bytes] = {SOURCES: repo.sources(KEYRING), KEYRING.lstrip("/"): repo.keyring.read_bytes()}
    return derive(updates, ref, version, files, tmp, base=minimal.checksum)


def layered(sysroot: Path) -> dict[str, str]:
    d = Sysroot.open(sysroot).deployments()[0]
    status = (d.path / "usr/share/dpkg/database/status").read_text()
    return {p.name: p.version for p in parse_dpkg_status(status) if p.name.startswith("aot-")}


def test_rebase_resolves_from_the_new_bases_sources(sysroot: Path, updates: Path, minimal: Composed,
                                                    aot_repo: SignedRepo, tmp_path: Path) -> None:
    old = release(tmp_path / "old", "1.0", (Deb("aot-gone", files={"/usr/share/aot-gone/x": "x\n"}),))
    new = release(tmp_path / "new", "2.0", (Deb("aot-only-new", files={"/usr/share/aot-only-new/x": "x\n"}),))
    base_with(updates, "test/os", "12.5", old, tmp_path / "o", minimal)
    trust(sysroot, aot_repo)  # an admin's own source, in /etc/apt only (kept by every /etc merge)
    apt_ostree("upgrade", "--sysroot", sysroot)
    apt_ostree("install", "--sysroot", sysroot, "aot-rel", "aot-hello", "aot-gone")
    assert layered(sysroot)["aot-rel"] == "1.0"

    new_base = base_with(updates, "test/next", "13.0", new, tmp_path / "n", minimal)
    # a layered package the new release does not have: named, with the way on; nothing deployed
    before = [d.id for d in Sysroot.open(sysroot).deployments()]
    cli = apt_ostree("rebase", "--sysroot", sysroot, "updates:test/next", check=False)
    assert cli.returncode == 1 and error_lines(cli) == [
        f"error: layered package aot-gone is not available for the new base {new_base[:12]} (version 13.0): "
        "none of its APT sources has it"], cli.stderr
    assert "hint: to go on without it, add --uninstall=aot-gone" in cli.stderr
    assert [d.id for d in Sysroot.open(sysroot).deployments()] == before
    # --preview: the new base and the layered packages' plan from the new release's sources; nothing deployed
    cli = apt_ostree("rebase", "--sysroot", sysroot, "updates:test/next", "--preview", "--install=aot-only-new",
                     "--uninstall=aot-gone")
    assert f"Available commit: {new_base} (version 13.0)" in cli.stdout, cli.stdout
    plan = cli.stdout.partition("Layered packages on the new base:\n")[2].splitlines()
    assert "    aot-rel 2.0 all" in plan and "    aot-only-new 1.0 all" in plan, cli.stdout
    assert [d.id for d in Sysroot.open(sysroot).deployments()] == before
    assert Sysroot.open(sysroot).deployments()[0].origin.refspec != "updates:test/next"
    # the running deployment's sources (release 1.0, old key) cannot give 2.0 or aot-only-new
    cli = apt_ostree("rebase", "--sysroot", sysroot, "updates:test/next", "--install=aot-only-new",
                     "--uninstall=aot-gone")
    assert "aot-rel" in cli.stdout
    deployments = Sysroot.open(sysroot).deployments()
    assert deployments[0].origin.refspec == "updates:test/next"
    got = layered(sysroot)
    assert got["aot-rel"] == "2.0" and "aot-only-new" in got and "aot-hello" in got  # admin's source kept
    assert "aot-gone" not in got
    assert (deployments[0].path / "etc/apt/sources.list.d/aot-test.sources").is_file()
    assert layered_base(sysroot) == new_base


def layered_base(sysroot: Path) -> str:
    s = Sysroot.open(sysroot)
    return base_of(s.repo(), s.deployments()[0].checksum)

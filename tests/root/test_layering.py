"""Layering on a sysroot directory: install/uninstall/override/reset with real dpkg in the sandbox,
synthetic packages from a signed local repository and real Debian packages; golden tree diffs;
`ostree fsck` after every change."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.core.sysroot import Sysroot
from tests.cleanup import remove_tree
from tests.conftest import TOP, Composed, apt_ostree, error_lines
from tests.debrepo import Deb, SignedRepo, build_deb, make_repo
from tests.root.conftest import make_sysroot, trust

pytestmark = pytest.mark.root

GOLDEN = TOP / "tests/golden"


@pytest.fixture(scope="module")
def shared_root(updates_template: Path, minimal: Composed, aot_repo: SignedRepo,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One sysroot for the tests that must change nothing (and check that they did not)."""
    top = tmp_path_factory.mktemp("shared")
    yield trust(make_sysroot(top / "sysroot", updates_template, minimal), aot_repo)
    remove_tree(top)


def status(root: Path) -> list[dict[str, object]]:
    return list(json.loads(apt_ostree("status", "--sysroot", root, "--json").stdout)["deployments"])


@contextlib.contextmanager
def holding_the_lock(root: Path) -> Iterator[None]:
    """The sysroot's lock held by another process (libostree's, as any command takes it) for the block."""
    script = ("import sys, gi; gi.require_version('OSTree', '1.0'); from gi.repository import Gio, OSTree\n"
              "s = OSTree.Sysroot.new(Gio.File.new_for_path(sys.argv[1])); s.load(None); s.lock()\n"
              "print('locked', flush=True); sys.stdin.read()\n")
    holder = subprocess.Popen(["/usr/bin/python3", "-c", script, str(root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def fsck(root: Path) -> None:
    proc = subprocess.run(["ostree", "fsck", f"--repo={root}/ostree/repo"], capture_output=True, text=True)
    assert proc.returncode == 0 and "Corrupted" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def tree_diff(root: Path, old: str, new: str) -> list[str]:
    """`ostree diff` without the lines every change has (dpkg/debconf bookkeeping)."""
    out = subprocess.run(["ostree", "diff", f"--repo={root}/ostree/repo", old, new], check=True,
                         capture_output=True, text=True).stdout.splitlines()
    noise = ("/usr/share/dpkg/database/", "/usr/etc/ld.so.cache", "/usr/share/debconf/database/")
    return sorted(ln.replace("    ", " ", 1) for ln in out if not any(n in ln for n in noise))


UPDATE_GOLDEN = "APT_OSTREE_UPDATE_GOLDEN"


def check_golden(name: str, lines: list[str]) -> None:
    path = GOLDEN / f"{name}.txt"
    text = "".join(f"{ln}\n" for ln in lines)
    if os.environ.get(UPDATE_GOLDEN):  # APT_OSTREE_UPDATE_GOLDEN=1: write it; review and commit it
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"golden file {path} is missing (write it with {UPDATE_GOLDEN}=1):\n{text}"
    assert text == path.read_text(), f"tree diff differs from {path}:\n{text}"


def dpkg_status(root: Path, checksum: str) -> str:
    return subprocess.run(["ostree", "cat", f"--repo={root}/ostree/repo", checksum,
                           "/usr/share/dpkg/database/status"], check=True, capture_output=True, text=True).stdout


def cat(root: Path, checksum: str, path: str) -> str:
    return subprocess.run(["ostree", "cat", f"--repo={root}/ostree/repo", checksum, path], check=True,
                          capture_output=True, text=True, errors="replace").stdout


def installed(status_text: str, name: str) -> bool:
    return f"Package: {name}\nStatus: install ok installed" in status_text


def test_install_and_uninstall(layer_root: Path, minimal: Composed) -> None:
    dry = apt_ostree("install", "--sysroot", layer_root, "aot-hello", "--dry-run")
    assert "aot-base-lib 1.0 all" in dry.stdout and "Download size" in dry.stdout
    assert len(status(layer_root)) == 1

    apt_ostree("install", "--sysroot", layer_root, "aot-hello")
    new, old = status(layer_root)
    assert new["base-checksum"] == minimal.checksum and old["checksum"] == minimal.checksum
    assert new["requested-packages"] == ["aot-hello"] and new["packages"] == ["aot-hello"]
    assert new["version"] == old["version"]
    text = dpkg_status(layer_root, str(new["checksum"]))
    assert all(installed(text, n) for n in ("aot-hello", "aot-lib", "aot-base-lib"))
    check_golden("install-aot-hello", tree_diff(layer_root, minimal.checksum, str(new["checksum"])))
    diff = apt_ostree("db", "diff", "--sysroot", layer_root, "--repo", layer_root / "ostree/repo").stdout
    assert "Added:\n  aot-base-lib 1.0\n  aot-hello 1.0\n  aot-lib 1.0\n" in diff, diff
    human = apt_ostree("status", "--sysroot", layer_root).stdout
    assert "LayeredPackages: aot-hello" in human and f"BaseCommit: {minimal.checksum}" in human
    origin = next((Path(layer_root) / "ostree/deploy/debian/deploy").glob("*.origin")).parent
    texts = [p.read_text() for p in origin.glob("*.origin")]
    assert any("baserefspec=updates:test/os" in t and "requested=aot-hello;" in t for t in texts), texts
    fsck(layer_root)

    again = apt_ostree("install", "--sysroot", layer_root, "aot-hello", check=False)
    assert again.returncode == 1 and "already requested" in error_lines(again)[0]
    assert apt_ostree("install", "--sysroot", layer_root, "aot-hello", "--idempotent",
                      "--unchanged-exit-77", check=False).returncode == 77

    base_pkg = apt_ostree("uninstall", "--sysroot", layer_root, "less", check=False)
    assert base_pkg.returncode == 1 and "override remove less" in base_pkg.stderr

    apt_ostree("uninstall", "--sysroot", layer_root, "aot-hello")
    gone = status(layer_root)[0]
    assert gone["checksum"] == minimal.checksum and gone["requested-packages"] == []
    assert "base-checksum" not in gone
    fsck(layer_root)


def test_failing_postinst_changes_nothing(layer_root: Path) -> None:
    before = status(layer_root)
    cli = apt_ostree("install", "--sysroot", layer_root, "aot-fail", check=False)
    assert cli.returncode == 1
    [line] = error_lines(cli)
    assert "aot-fail" in line and "post-installation script" in line, cli.stderr
    assert "fails on purpose" in cli.stderr
    assert status(layer_root) == before
    with open("/proc/self/mountinfo") as f:
        assert not [ln for ln in f if "apt-ostree-layer-" in ln]
    assert not list((layer_root / "ostree/repo/tmp").glob("apt-ostree-layer-*"))
    fsck(layer_root)


@pytest.mark.parametrize(("args", "expected"), [
    (["install", "aot-no-such-package"], "unknown package 'aot-no-such-package'"),
    (["install", "aot-conflict"], "would remove base package less"),
    (["install", "aot-needs-newer"], "aot-needs-newer Depends libc6"),
    (["install", "less"], "package less is already in the base"),
    (["install", "Not_A_Name"], "not a Debian package name"),
    (["install", "./missing.deb"], "missing.deb: no such file"),
    (["uninstall", "aot-hello"], "package aot-hello is not layered"),
    (["override", "remove", "aot-hello"], "not a package of the base"),
    (["override", "reset", "less"], "no override for less"),
])
def test_bad_requests_change_nothing(shared_root: Path, args: list[str], expected: str) -> None:
    before = status(shared_root)
    refs = sorted(p.name for p in (shared_root / "ostree/repo/refs").rglob("*"))
    cli = apt_ostree(*args, "--sysroot", shared_root, check=False)
    assert cli.returncode != 0
    lines = error_lines(cli)
    assert len(lines) == 1 and expected in lines[0], cli.stderr
    assert status(shared_root) == before
    assert sorted(p.name for p in (shared_root / "ostree/repo/refs").rglob("*")) == refs


def test_resolution_through_virtual_package(shared_root: Path) -> None:
    """A dependency on a virtual package brings its provider (the planner walks Provides)."""
    before = status(shared_root)
    dry = apt_ostree("install", "--sysroot", shared_root, "aot-virtual-user", "--dry-run").stdout
    assert "aot-provider 1.0 all" in dry and "aot-virtual-user 1.0 all" in dry, dry
    assert status(shared_root) == before


def test_unsigned_source(layer_root: Path, tmp_path: Path) -> None:
    unsigned = make_repo(Path(tempfile.mkdtemp(prefix="apt-ostree-unsigned-", dir="/var/tmp")),
                         (Deb("aot-unsigned"),), sign=False)
    [d] = Sysroot.open(layer_root).deployments()
    (d.path / "etc/apt/sources.list.d/unsigned.sources").write_text(unsigned.sources())
    try:
        cli = apt_ostree("install", "--sysroot", layer_root, "aot-unsigned", check=False)
        assert cli.returncode == 1
        [line] = error_lines(cli)
        assert "not signed" in line and str(unsigned.path) in line, cli.stderr
        assert len(status(layer_root)) == 1
    finally:
        shutil.rmtree(unsigned.path.parent)


def test_scripts_users_alternatives_diversions_triggers_var_opt(layer_root: Path, minimal: Composed) -> None:
    names = ["aot-conffile", "aot-user", "aot-alt", "aot-divert", "aot-activator", "aot-var", "aot-opt", "aot-hello"]
    apt_ostree("install", "--sysroot", layer_root, *names)
    new = str(status(layer_root)[0]["checksum"])
    check_golden("install-features", tree_diff(layer_root, minimal.checksum, new))
    assert cat(layer_root, new, "/usr/etc/aot-conffile.conf") == "setting = 1\n"
    assert "aotuser:" in cat(layer_root, new, "/usr/etc/passwd")
    assert "u aotuser " in cat(layer_root, new, "/usr/lib/sysusers.d/apt-ostree-system.conf")
    assert cat(layer_root, new, "/usr/bin/lesskey") == "#!/bin/sh\necho diverted\n"
    assert cat(layer_root, new, "/usr/bin/lesskey.real").startswith("\x7fELF")
    # aot-activator activates aot-trigger's file trigger; both are configured in this run, so dpkg
    # folds the trigger into aot-trigger's configure (no "triggered" call). Base triggers: test_real_...
    tmpfiles = cat(layer_root, new, "/usr/lib/tmpfiles.d/apt-ostree-layer.conf")
    assert "C /var/lib/aot-var/shipped - - - - /usr/share/factory/var/lib/aot-var/shipped" in tmpfiles
    assert "C /var/lib/aot-var/made/by-postinst - - - - /usr/share/factory/var/lib/aot-var/made/by-postinst" in tmpfiles
    assert "L /var/opt/aot-opt - - - - /usr/lib/opt/aot-opt" in tmpfiles
    assert cat(layer_root, new, "/usr/lib/opt/aot-opt/bin/tool").endswith("echo opt tool\n")
    alt = subprocess.run(["ostree", "ls", f"--repo={layer_root}/ostree/repo", new, "/usr/etc/alternatives/aot-alt"],
                         check=True, capture_output=True, text=True).stdout
    assert "-> /usr/bin/aot-alt-real" in alt
    text = dpkg_status(layer_root, new)
    assert all(installed(text, n) for n in names)
    fsck(layer_root)


def test_debconf_answers(layer_root: Path, minimal: Composed) -> None:
    apt_ostree("install", "--sysroot", layer_root, "aot-debconf")
    layer = str(status(layer_root)[0]["checksum"])
    assert cat(layer_root, layer, "/usr/share/aot-debconf/color") == "blue\n"
    # the databases' backups are the base's files (no new objects), not an intermediate state of the layer
    for db, name in (("dpkg", "status"), ("debconf", "templates.dat"), ("debconf", "config.dat")):
        path = f"/usr/share/{db}/database/{name}"
        assert cat(layer_root, layer, f"{path}-old") == cat(layer_root, minimal.checksum, path), path
    assert "aot-debconf/color" in cat(layer_root, layer, "/usr/share/debconf/database/templates.dat")
    bad = apt_ostree("install", "--sysroot", layer_root, "aot-hello", "--debconf", "nonsense", check=False)
    assert bad.returncode == 2 and "not a debconf answer" in error_lines(bad)[0]
    # a new answer for a layered package: recorded in the origin, replayed when the tree is rebuilt
    apt_ostree("install", "--sysroot", layer_root, "aot-debconf", "--idempotent",
               "--debconf", "aot-debconf aot-debconf/color string green")
    new = str(status(layer_root)[0]["checksum"])
    assert cat(layer_root, new, "/usr/share/aot-debconf/color") == "green\n"
    origins = [p.read_text() for p in (layer_root / "ostree/deploy/debian/deploy").glob("*.origin")]
    assert any("selections=aot-debconf aot-debconf/color string green;" in t for t in origins), origins


def test_override_remove_replace_reset(layer_root: Path, minimal: Composed, tmp_path: Path) -> None:
    apt_ostree("override", "remove", "less", "--sysroot", layer_root)
    d = status(layer_root)[0]
    removals: list[str] = d["base-removals"]  # type: ignore[assignment]
    assert d["requested-base-removals"] == ["less"] and [x.split()[0] for x in removals] == ["less"]
    check_golden("override-remove-less", tree_diff(layer_root, minimal.checksum, str(d["checksum"])))
    assert "RemovedBasePackages: less" in apt_ostree("status", "--sysroot", layer_root).stdout
    fsck(layer_root)

    # (a dependency the base lacks: the planner follows the replaced base package's dependencies too)
    deb = build_deb(Deb("less", "9:999-aot", control={"Depends": "aot-base-lib"},
                        files={"/usr/bin/less": "#!/bin/sh\necho replaced less\n"}), tmp_path / "build", tmp_path)
    apt_ostree("override", "reset", "less", "--sysroot", layer_root)
    apt_ostree("override", "replace", deb, "--sysroot", layer_root)
    d = status(layer_root)[0]
    assert d["requested-base-local-replacements"] == ["less"]
    assert d["base-local-replacements"][0][0] == "less"  # type: ignore[index]
    assert cat(layer_root, str(d["checksum"]), "/usr/bin/less") == "#!/bin/sh\necho replaced less\n"
    assert installed(dpkg_status(layer_root, str(d["checksum"])), "aot-base-lib")
    check_golden("override-replace-less", tree_diff(layer_root, minimal.checksum, str(d["checksum"])))
    fsck(layer_root)

    apt_ostree("override", "reset", "--all", "--sysroot", layer_root)
    assert status(layer_root)[0]["checksum"] == minimal.checksum


def test_local_deb_and_upgrade_relayers(layer_root: Path, updates: Path, aot_repo: SignedRepo,
                                        minimal: Composed, tmp_path: Path) -> None:
    from tests.root.test_deployments import derive

    apt_ostree("install", "--sysroot", layer_root, aot_repo.debs["aot-base-lib"], "aot-alt")
    d = status(layer_root)[0]
    assert d["requested-local-packages"] == ["aot-base-lib"] and d["requested-packages"] == ["aot-alt"]
    assert "LocalPackages: aot-base-lib" in apt_ostree("status", "--sysroot", layer_root).stdout
    assert apt_ostree("refresh-md", "-f", "--sysroot", layer_root).stdout == "Package lists updated.\n"
    # unchanged base, unchanged packages: nothing to do
    assert apt_ostree("upgrade", "--sysroot", layer_root, "--unchanged-exit-77", check=False).returncode == 77
    new_base = derive(updates, "test/os", "13.99", {"usr/share/new-base": "v2\n"}, tmp_path)
    apt_ostree("upgrade", "--sysroot", layer_root)
    d = status(layer_root)[0]
    assert d["base-checksum"] == new_base and d["requested-packages"] == ["aot-alt"]
    assert cat(layer_root, str(d["checksum"]), "/usr/share/new-base") == "v2\n"
    assert cat(layer_root, str(d["checksum"]), "/usr/share/aot-base-lib/lib") == "base lib\n"
    # the bases of layered deployments are kept by refs (a prune would drop them otherwise)
    refs = subprocess.run(["ostree", "refs", f"--repo={layer_root}/ostree/repo"], check=True, capture_output=True,
                          text=True).stdout.split()
    kept = {subprocess.run(["ostree", "rev-parse", f"--repo={layer_root}/ostree/repo", r], check=True,
                           capture_output=True, text=True).stdout.strip()
            for r in refs if r.startswith("apt-ostree/base/")}
    assert kept == {minimal.checksum, new_base}
    apt_ostree("cleanup", "-b", "--sysroot", layer_root)
    assert not (layer_root / "ostree/repo/tmp/apt-ostree-cache").exists()
    assert apt_ostree("upgrade", "--sysroot", layer_root, "--unchanged-exit-77", check=False).returncode == 77
    # --install on upgrade; reset drops everything
    apt_ostree("upgrade", "--sysroot", layer_root, "--install", "aot-opt")
    assert status(layer_root)[0]["requested-packages"] == ["aot-alt", "aot-opt"]
    apt_ostree("reset", "--sysroot", layer_root)
    d = status(layer_root)[0]
    assert d["checksum"] == new_base and d["requested-packages"] == [] and d["requested-local-packages"] == []
    fsck(layer_root)


def test_real_debian_packages(layer_root: Path) -> None:
    # A base without openssh-server (the minimal image has it): remove it with an override, commit
    # that tree as a plain base on a local ref, and rebase onto it.
    apt_ostree("override", "remove", "openssh-server", "openssh-sftp-server", "--sysroot", layer_root)
    no_ssh = str(status(layer_root)[0]["checksum"])
    repo = f"--repo={layer_root}/ostree/repo"
    base = subprocess.run(["ostree", "commit", repo, "-b", "test/no-ssh", f"--parent={no_ssh}", f"--tree=ref={no_ssh}",
                           "--keep-metadata=ostree.bootable", "--keep-metadata=ostree.linux",
                           "--keep-metadata=version"], check=True, capture_output=True, text=True).stdout.strip()
    apt_ostree("reset", "--sysroot", layer_root)
    apt_ostree("rebase", "test/no-ssh", "--sysroot", layer_root)
    assert status(layer_root)[0]["checksum"] == base

    names = ("htop", "openssh-server", "vim", "nginx-light", "apache2-utils")
    apt_ostree("install", "--sysroot", layer_root, *names)
    d = status(layer_root)[0]
    new = str(d["checksum"])
    assert d["base-checksum"] == base
    text = dpkg_status(layer_root, new)
    assert all(installed(text, n) for n in names)
    ls = subprocess.run(["ostree", "ls", repo, new, "/usr/bin/htop", "/usr/bin/vim.basic", "/usr/sbin/sshd",
                         "/usr/sbin/nginx", "/usr/etc/nginx/nginx.conf", "/usr/etc/ssh/sshd_config"],
                        capture_output=True, text=True)
    assert ls.returncode == 0, ls.stderr
    keys = subprocess.run(["ostree", "ls", repo, new, "/usr/etc/ssh"], capture_output=True, text=True).stdout
    assert "ssh_host_" not in keys  # generated at boot on each machine, never shipped
    tmpfiles = cat(layer_root, new, "/usr/lib/tmpfiles.d/apt-ostree-layer.conf")
    assert "/var/www/html" in tmpfiles
    # libc-bin's ldconfig trigger (a base package's) ran for the new libraries
    assert "libapr-1.so.0" in cat(layer_root, new, "/usr/etc/ld.so.cache")  # apache2-utils needs libapr1
    hits = apt_ostree("search", "--sysroot", layer_root, "-C", "name:nginx-l*").stdout
    assert hits.startswith("nginx-light ")
    # words match names and summaries (every package's summary is read: this took minutes once)
    hits = apt_ostree("search", "--sysroot", layer_root, "-C", "interactive", "viewer").stdout
    assert "htop " in hits and ": interactive processes viewer" in hits, hits
    # while another command holds the sysroot (its lock): the lists as they are, none of them touched
    state = layer_root / "ostree/deploy/debian/var/lib/apt-ostree"
    lists = {p.name: p.stat().st_mtime_ns for p in (state / "lists").iterdir()}
    with holding_the_lock(layer_root):
        busy = apt_ostree("search", "--sysroot", layer_root, "name:nginx-l*")
        assert busy.stdout.startswith("nginx-light ") and "searching the package lists as they are" in busy.stderr
        assert apt_ostree("install", "--sysroot", layer_root, "sl", check=False).returncode == 1
    assert lists == {p.name: p.stat().st_mtime_ns for p in (state / "lists").iterdir()}
    assert not list(state.glob("search-*"))
    fsck(layer_root)

"""examples/trixie.yaml composed for real: layout, metadata, fsck, db, reproducibility."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.core.ostree import Repo
from apt_ostree.run import run
from apt_ostree.sandbox import Bind, Sandbox
from tests.cleanup import remove_tree
from tests.conftest import EPOCH, MINIMAL, Composed, apt_ostree

pytestmark = pytest.mark.root


def ostree(*args: str | Path) -> str:
    return subprocess.run(["ostree", *map(str, args)], check=True, capture_output=True, text=True).stdout


def ls(c: Composed, *paths: str) -> dict[str, str]:
    """path -> 'mode target' for each entry `ostree ls` shows."""
    out = ostree("ls", f"--repo={c.repo}", c.ref, *paths)
    entries = {}
    for line in out.splitlines():
        fields = line.split(None, 4)
        name = fields[4]
        target = ""
        if " -> " in name:
            name, target = name.split(" -> ")
        entries[name] = f"{fields[0]} {target}".strip()
    return entries


@pytest.fixture(scope="module")
def checkout(minimal: Composed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A hardlink-free checkout of the commit, as a deployment would see it (tests only)."""
    dest = tmp_path_factory.mktemp("checkout") / "tree"
    ostree("checkout", f"--repo={minimal.repo}", minimal.ref, dest)
    # /var as the first boot makes it (exit 65: lines that do not apply in a sandbox)
    sandbox = Sandbox(rootfs=dest, binds=(Bind(dest / "usr/etc", "/etc"),))
    run(sandbox.argv(["systemd-tmpfiles", "--create", "--prefix=/var"]), check=False)
    yield dest
    remove_tree(dest.parent)


def in_tree(tree: Path, *argv: str) -> str:
    """Run a command inside the composed tree with /usr/etc on /etc, like a booted deployment."""
    sandbox = Sandbox(rootfs=tree, binds=(Bind(tree / "usr/etc", "/etc"),))
    return run(sandbox.argv(list(argv)), capture=True).stdout


def test_fsck_clean(minimal: Composed) -> None:
    out = ostree("fsck", f"--repo={minimal.repo}")
    assert "no errors found" in out


def test_toplevel_layout(minimal: Composed) -> None:
    top = ls(minimal, "/")
    assert "/etc" not in top
    for name, target in {"/home": "var/home", "/root": "var/roothome", "/opt": "var/opt", "/srv": "var/srv",
                         "/mnt": "var/mnt", "/media": "run/media", "/ostree": "sysroot/ostree"}.items():
        assert top[name].endswith(target), (name, top[name])
    for empty in ("/boot", "/dev", "/proc", "/sys", "/run", "/tmp", "/sysroot"):
        assert top[empty].startswith("d")
        assert list(ls(minimal, empty)) == [empty], f"{empty} is not empty"
    assert ls(minimal, "/usr/local")["/usr/local"].endswith("../var/usrlocal")


def test_kernel_and_initramfs(minimal: Composed) -> None:
    modules = ls(minimal, "/usr/lib/modules")
    kvers = [p for p in modules if p != "/usr/lib/modules"]
    assert len(kvers) == 1
    files = ls(minimal, kvers[0])
    assert f"{kvers[0]}/vmlinuz" in files
    assert f"{kvers[0]}/initramfs.img" in files


def test_initramfs_runs_ostree_prepare_root(checkout: Path) -> None:
    img = next(checkout.glob("usr/lib/modules/*/initramfs.img"))
    listing = in_tree(checkout, "lsinitrd", "/" + str(img.relative_to(checkout)))
    assert "usr/lib/ostree/ostree-prepare-root" in listing
    assert "ostree-prepare-root.service" in listing


def test_var_and_state(minimal: Composed, checkout: Path) -> None:
    # Nothing under /var (libostree would ignore it, with a note at every deploy): tmpfiles.d makes it.
    assert ls(minimal, "/var") == {"/var": "d00755"}
    assert (checkout / "var/lib/dpkg/status").is_file()  # made by the checkout's tmpfiles run
    tmpfiles = (checkout / "usr/lib/tmpfiles.d/apt-ostree-var.conf").read_text()
    assert "L /var/lib/dpkg - - - - ../../usr/share/dpkg/database" in tmpfiles
    assert "d /var/log/journal" in tmpfiles  # created by the example's postprocess
    assert (checkout / "usr/share/debconf/database/config.dat").is_file()


def test_etc_is_clean(checkout: Path) -> None:
    etc = checkout / "usr/etc"
    assert (etc / "machine-id").read_text() == ""
    assert not list((etc / "ssh").glob("ssh_host_*"))
    assert (checkout / "usr/lib/systemd/system/ssh.service.d/apt-ostree-ssh-keygen.conf").is_file()
    assert not (etc / "hostname").exists()
    assert not (checkout / "usr/sbin/policy-rc.d").exists()
    assert (etc / "default/grub").is_file()
    # the boot menu: 15_apt-ostree (every initrd of an entry); ostree-boot's 15_ostree diverted out of grub.d
    assert os.access(etc / "grub.d/15_apt-ostree", os.X_OK)
    assert not os.path.lexists(etc / "grub.d/15_ostree")
    assert (checkout / "usr/share/apt-ostree/grub.d/15_ostree").is_symlink()
    assert "/etc/grub.d/15_ostree" in (checkout / "usr/share/dpkg/database/diversions").read_text()
    assert (etc / "systemd/system/multi-user.target.wants/ssh.service").is_symlink()
    assert (etc / "systemd/network/20-wired.network").is_file()


def test_commit_metadata(minimal: Composed) -> None:
    info = Repo.open(minimal.repo).commit(minimal.ref)
    meta = info.metadata
    assert meta["ostree.bootable"] is True
    assert meta["ostree.linux"].endswith("-amd64")
    assert meta["version"] == "13"
    assert meta["org.debian.apt-ostree.example"] == "minimal"
    assert len(meta["apt-ostree.inputhash"]) == 64
    assert "Types: deb\n" in meta["apt-ostree.sources"]  # deb822, as given to mmdebstrap
    assert ("apt-ostree", "0.1.0", "all") in [tuple(p) for p in meta["apt-ostree.packages"]]
    assert info.timestamp == int(EPOCH)
    assert info.parent is None


def test_dpkg_and_apt_work_on_the_tree(minimal: Composed, checkout: Path) -> None:
    dpkg_l = in_tree(checkout, "dpkg", "-l")
    installed = sorted(ln.split()[1].split(":")[0] for ln in dpkg_l.splitlines() if ln.startswith("ii "))
    listed = apt_ostree("db", "list", "--repo", minimal.repo, minimal.ref).stdout.splitlines()[1:]
    assert sorted(ln.split()[0] for ln in listed) == installed
    assert "/usr/bin/bash" in in_tree(checkout, "dpkg", "-L", "bash")
    assert "Installed:" in in_tree(checkout, "apt-cache", "policy", "bash")
    # apt-ostree itself, installed from its .deb with its real dependencies, runs in the image.
    assert in_tree(checkout, "apt-ostree", "--version").strip() == "apt-ostree 0.1.0"


def test_db_list_prefix_and_version(minimal: Composed) -> None:
    out = apt_ostree("db", "list", "--repo", minimal.repo, minimal.ref, "linux-image", "systemd").stdout
    names = [ln.split()[0] for ln in out.splitlines()[1:]]
    assert names and all(n.startswith(("linux-image", "systemd")) for n in names)
    ver = apt_ostree("db", "version", "--repo", minimal.repo, minimal.ref).stdout
    assert "dpkg database version:" in ver


def test_recompose_unchanged_exits_77(minimal: Composed, cachedir: Path) -> None:
    refs_before = (minimal.repo / "refs/heads").stat().st_mtime_ns
    cli = apt_ostree("compose", "tree", MINIMAL, "--repo", minimal.repo, "--cachedir", cachedir,
                     "--unchanged-exit-77", check=False)
    assert cli.returncode == 77, cli.stderr
    assert "unchanged" in cli.stdout
    assert Repo.open(minimal.repo).resolve(minimal.ref) == minimal.checksum
    assert (minimal.repo / "refs/heads").stat().st_mtime_ns == refs_before


def test_reproducible(minimal: Composed, cachedir: Path, tmp_path: Path) -> None:
    """Same treefile, same archive snapshot, same SOURCE_DATE_EPOCH: the same commit checksum."""
    repo = tmp_path / "repo2"
    cli = apt_ostree("compose", "tree", MINIMAL, "--repo", repo, "--cachedir", cachedir,
                     "--source-date-epoch", EPOCH)
    second = Repo.open(repo).resolve(minimal.ref)
    if second != minimal.checksum:
        ostree("pull-local", f"--repo={repo}", minimal.repo, minimal.checksum)
        diff = ostree("diff", f"--repo={repo}", minimal.checksum, second)
        pytest.fail(f"not reproducible: {minimal.checksum} != {second}; files that differ:\n{diff[-3000:]}"
                    f"\n{cli.stderr[-1000:]}")


def test_db_diff_shows_exactly_the_added_packages(minimal: Composed, minimal_extra: Composed) -> None:
    repo = minimal.repo
    before = {ln.split()[0] for ln in apt_ostree("db", "list", "--repo", repo, minimal.ref).stdout.splitlines()[1:]}
    after = {ln.split()[0] for ln in apt_ostree("db", "list", "--repo", repo, minimal_extra.ref)
             .stdout.splitlines()[1:]}
    diff = json.loads(apt_ostree("db", "diff", "--repo", repo, minimal.ref, minimal_extra.ref,
                                 "--format", "json").stdout)
    assert {p["name"] for p in diff["added"]} == after - before
    assert "htop" in after - before
    assert diff["removed"] == [] and diff["upgraded"] == [] and diff["downgraded"] == []
    block = apt_ostree("db", "diff", "--repo", repo, minimal.ref, minimal_extra.ref).stdout
    assert "Added:" in block and "htop" in block
    plain = apt_ostree("db", "diff", "--repo", repo, minimal.ref, minimal_extra.ref, "--format", "diff").stdout
    assert any(ln.startswith("+htop ") for ln in plain.splitlines())

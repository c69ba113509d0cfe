"""A small container compose that exercises the treefile keys the minimal example does not:
a signed local APT repo next to the host's sources, exclude-packages, postprocess-script,
add-files, remove-files, units, default-target, machineid-compat, metadata and parents."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.core.apt import host_sources
from apt_ostree.core.ostree import Repo
from tests.conftest import apt_ostree, error_lines
from tests.debrepo import Deb, make_repo

pytestmark = pytest.mark.root


@pytest.fixture
def apt_readable(tmp_path: Path) -> Iterator[Path]:
    """A directory APT's unprivileged _apt user can read (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="apt-ostree-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def signed_repo(root: Path) -> tuple[Path, Path]:
    """A local APT repository signed with a fresh key; returns (repo dir, keyring file)."""
    repo = make_repo(root, (Deb("hello-aot", files={"/usr/share/hello-aot/README": "hello-aot 1.0\n"}),
                            Deb("hello-aot-extra", control={"Depends": "hello-aot"},
                                files={"/usr/share/hello-aot-extra/README": "hello-aot-extra 1.0\n"})))
    return repo.path, repo.keyring


def repos_yaml(local: Path, keyring: Path) -> str:
    """A treefile `repos:` block: the host's own sources plus the signed local repository."""
    lines = ["repos:\n"]
    for r in host_sources():
        lines.append(f"  - uris: [{', '.join(r.uris)}]\n    suites: [{', '.join(r.suites)}]\n"
                     f"    components: [{', '.join(r.components)}]\n")
        if r.signed_by:
            lines.append(f"    signed-by: {r.signed_by}\n")
    lines.append(f"  - uris: [file://{local}]\n    suites: [test]\n    signed-by: {keyring}\n")
    return "".join(lines)


def test_features(tmp_path: Path, cachedir: Path, apt_readable: Path) -> None:
    local, keyring = signed_repo(apt_readable)
    (tmp_path / "files").mkdir()
    (tmp_path / "files/motd").write_text("composed by apt-ostree\n")
    (tmp_path / "post.sh").write_text("#!/bin/sh\nset -e\necho from-script > /usr/share/aot-script\n")
    treefile = tmp_path / "features.yaml"
    treefile.write_text(f"""\
ref: test/features
releasever: bookworm
variant: minbase
container: true
{repos_yaml(local, keyring)}packages: [systemd, hello-aot-extra]
exclude-packages: [hello-aot-nonexistent-is-fine-to-exclude]
add-files:
  - [files/motd, /etc/motd]
remove-files: [usr/share/hello-aot-extra/README]
postprocess:
  - echo inline > /usr/share/aot-inline
postprocess-script: post.sh
units: [systemd-networkd.service]
default-target: multi-user.target
machineid-compat: false
automatic-version-prefix: "1"
add-commit-metadata:
  test.key: 42
""")
    repo = tmp_path / "repo"  # an existing archive repository (as served over HTTP)
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=archive"], check=True)
    apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir,
               "--add-metadata-string", "test.string=hello", "--write-commitid-to", tmp_path / "id")
    r = Repo.open(repo)
    assert r.mode == "archive"
    first = r.resolve("test/features")
    assert (tmp_path / "id").read_text() == first
    meta = r.commit(first).metadata
    assert meta["version"] == "1"
    assert meta["test.key"] == 42 and meta["test.string"] == "hello"
    assert "ostree.bootable" not in meta
    names = {p[0] for p in meta["apt-ostree.packages"]}
    assert {"hello-aot", "hello-aot-extra", "systemd"} <= names

    def cat(path: str) -> str | None:
        data = r.read_file(first, path)
        return data.decode() if data is not None else None

    assert cat("usr/etc/motd") == "composed by apt-ostree\n"
    assert cat("usr/share/aot-inline") == "inline\n"
    assert cat("usr/share/aot-script") == "from-script\n"
    assert cat("usr/share/hello-aot/README") == "hello-aot 1.0\n"
    assert cat("usr/share/hello-aot-extra/README") is None
    assert cat("usr/etc/machine-id") is None  # machineid-compat: false
    wants = subprocess.run(["ostree", "ls", f"--repo={repo}", first, "/usr/etc/systemd/system/default.target",
                            "/usr/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"],
                           capture_output=True, text=True, check=True).stdout
    assert "multi-user.target" in wants and "systemd-networkd.service" in wants

    # Recompose with changed inputs: new version, parent is the previous commit.
    (tmp_path / "files/motd").write_text("changed\n")
    apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir)
    second = r.resolve("test/features")
    info = Repo.open(repo).commit(second)
    assert info.parent == first
    assert info.metadata["version"] == "1.1"
    # --no-parent, and --cache-only works from the cache alone.
    (tmp_path / "files/motd").write_text("changed again\n")
    apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir, "--no-parent", "--cache-only")
    third = Repo.open(repo).resolve("test/features")
    assert Repo.open(repo).commit(third).parent is None
    # the same inputs again: nothing to do (77), unless --force-nocache; --parent names the parent
    again = apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir, "--cache-only",
                       "--unchanged-exit-77", check=False)
    assert again.returncode == 77 and Repo.open(repo).resolve("test/features") == third
    apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir, "--cache-only",
               "--force-nocache", f"--parent={first}")
    fourth = Repo.open(repo).resolve("test/features")
    assert fourth != third and Repo.open(repo).commit(fourth).parent == first


def test_excluded_package_cannot_be_pulled_in(tmp_path: Path, cachedir: Path, apt_readable: Path) -> None:
    local, keyring = signed_repo(apt_readable)
    treefile = tmp_path / "t.yaml"
    treefile.write_text(f"""\
ref: test/exclude
releasever: bookworm
variant: essential
container: true
{repos_yaml(local, keyring)}packages: [hello-aot-extra]
exclude-packages: [hello-aot]
""")
    cli = apt_ostree("compose", "tree", treefile, "--repo", tmp_path / "repo", "--cachedir", cachedir, check=False)
    assert cli.returncode == 1
    assert len(error_lines(cli)) == 1 and "hello-aot" in error_lines(cli)[0], cli.stderr
    assert not (tmp_path / "repo").exists()
    # mmdebstrap failed with the file:// repo bind-mounted into its chroot: nothing stays mounted.
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if "apt-ostree-compose-" in line]
    # A dry run resolves with the same pin, so it fails the same way.
    dry = apt_ostree("compose", "tree", treefile, "--repo", tmp_path / "repo", "--cachedir", cachedir, "--dry-run",
                     check=False)
    assert dry.returncode == 1 and len(error_lines(dry)) == 1, dry.stderr

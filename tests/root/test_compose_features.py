"""A small container compose that exercises the treefile keys the minimal example does not:
a signed local APT repo next to the host's sources, exclude-packages, postprocess-script,
add-files, remove-files, units, default-target, machineid-compat, metadata and parents."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.core.apt import host_sources
from apt_ostree.core.ostree import Repo
from tests.conftest import apt_ostree, error_lines

pytestmark = pytest.mark.root


def build_deb(root: Path, name: str, version: str, depends: str = "") -> Path:
    pkg = root / "build" / name
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / f"usr/share/{name}").mkdir(parents=True)
    (pkg / f"usr/share/{name}/README").write_text(f"{name} {version}\n")
    control = f"Package: {name}\nVersion: {version}\nArchitecture: all\nMaintainer: t <t@example.invalid>\n"
    if depends:
        control += f"Depends: {depends}\n"
    (pkg / "DEBIAN/control").write_text(control + f"Description: apt-ostree test package {name}\n")
    out = root / "repo/pool" / f"{name}_{version}_all.deb"
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(out)], check=True, capture_output=True)
    return out


@pytest.fixture
def apt_readable(tmp_path: Path) -> Iterator[Path]:
    """A directory APT's unprivileged _apt user can read (pytest's tmp_path is root-only)."""
    path = Path(tempfile.mkdtemp(prefix="apt-ostree-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def signed_repo(root: Path) -> tuple[Path, Path]:
    """A local APT repository signed with a fresh key; returns (repo dir, keyring file)."""
    build_deb(root, "hello-aot", "1.0")
    build_deb(root, "hello-aot-extra", "1.0", depends="hello-aot")
    repo = root / "repo"
    binary = repo / "dists/test/main/binary-amd64"
    binary.mkdir(parents=True)
    packages = subprocess.run(["dpkg-scanpackages", "pool"], cwd=repo, check=True, capture_output=True).stdout
    (binary / "Packages").write_bytes(packages)
    (binary / "Packages.gz").write_bytes(gzip.compress(packages))
    sums = "".join(f" {hashlib.sha256(f.read_bytes()).hexdigest()} {f.stat().st_size} main/binary-amd64/{f.name}\n"
                   for f in sorted(binary.iterdir()))
    release = repo / "dists/test/Release"
    release.write_text(f"Suite: test\nCodename: test\nArchitectures: amd64\nComponents: main\nSHA256:\n{sums}")
    gnupg = root / "gnupg"
    gnupg.mkdir(mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "apt-ostree test <t@example.invalid>",
                    "ed25519", "sign", "never"], env=env, check=True, capture_output=True)
    subprocess.run(["gpg", "--batch", "--yes", "--clearsign", "-o", str(repo / "dists/test/InRelease"), str(release)],
                   env=env, check=True, capture_output=True)
    keyring = root / "test-archive.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--export"], env=env, check=True, capture_output=True).stdout)
    for path in [root, *root.rglob("*")]:
        if path != gnupg and gnupg not in path.parents:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return repo, keyring


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
    assert Repo.open(repo).commit("test/features").parent is None


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

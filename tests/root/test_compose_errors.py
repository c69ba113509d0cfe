"""Bad treefiles and bad sources: one clear error line, non-zero exit, no ref, no repository change."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Cli, apt_ostree, error_lines

pytestmark = pytest.mark.root


def compose(tmp_path: Path, text: str, cachedir: Path, *extra: str) -> tuple[Cli, Path]:
    treefile = tmp_path / "tree.yaml"
    treefile.write_text(text)
    repo = tmp_path / "repo"
    cli = apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir, *extra, check=False)
    return cli, repo


def assert_failed_cleanly(cli: Cli, repo: Path, *needles: str) -> None:
    assert cli.returncode not in (0, 77), cli.stdout
    errors = error_lines(cli)
    assert len(errors) == 1, cli.stderr
    assert "Traceback" not in cli.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    assert not repo.exists(), "a failed compose must not create or touch the repository"
    assert cli.stdout == ""


def test_unknown_key(tmp_path: Path, cachedir: Path) -> None:
    cli, repo = compose(tmp_path, "ref: a/b\npackages: [bash]\npackagez: [vim]\n", cachedir)
    assert_failed_cleanly(cli, repo, "packagez", "unknown key", "tree.yaml")


def test_wrong_type(tmp_path: Path, cachedir: Path) -> None:
    cli, repo = compose(tmp_path, "ref: a/b\npackages: bash\n", cachedir)
    assert_failed_cleanly(cli, repo, "packages", "list")
    cli, repo = compose(tmp_path, "ref: a/b\nrepos:\n  - uris: [http://127.0.0.1:9/debian]\n    suites: 12\n",
                        cachedir)
    assert_failed_cleanly(cli, repo, "repos[0].suites")


def test_missing_include(tmp_path: Path, cachedir: Path) -> None:
    cli, repo = compose(tmp_path, "include: nowhere.yaml\nref: a/b\n", cachedir)
    assert_failed_cleanly(cli, repo, "include", "nowhere.yaml")


def test_unknown_package(tmp_path: Path, cachedir: Path) -> None:
    cli, repo = compose(tmp_path, "ref: a/b\npackages: [bash, no-such-package-apt-ostree]\n", cachedir)
    assert_failed_cleanly(cli, repo, "packages[1]", "no-such-package-apt-ostree", "not found")


def test_unreachable_repo(tmp_path: Path) -> None:
    text = "ref: a/b\nrepos:\n  - uris: [http://127.0.0.1:9/debian]\n    suites: [bookworm]\npackages: [bash]\n"
    cli, repo = compose(tmp_path, text, tmp_path / "cache")
    assert_failed_cleanly(cli, repo, "127.0.0.1:9")


def make_unsigned_repo(root: Path) -> Path:
    """A real APT repository (dists/ layout, one synthetic .deb) with a Release file but no signature."""
    pkg = root / "build/hello-aot"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/share/hello-aot").mkdir(parents=True)
    (pkg / "usr/share/hello-aot/README").write_text("hello\n")
    (pkg / "DEBIAN/control").write_text("Package: hello-aot\nVersion: 1.0\nArchitecture: all\n"
                                        "Maintainer: t <t@example.invalid>\nDescription: test package\n")
    pool = root / "repo/pool"
    pool.mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(pkg), str(pool / "hello-aot_1.0_all.deb")],
                   check=True, capture_output=True)
    binary = root / "repo/dists/test/main/binary-amd64"
    binary.mkdir(parents=True)
    packages = subprocess.run(["dpkg-scanpackages", "pool"], cwd=root / "repo", check=True,
                              capture_output=True).stdout
    (binary / "Packages").write_bytes(packages)
    (binary / "Packages.gz").write_bytes(gzip.compress(packages))
    lines = []
    for f in sorted(binary.iterdir()):
        data = f.read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} main/binary-amd64/{f.name}")
    (root / "repo/dists/test/Release").write_text(
        "Suite: test\nCodename: test\nArchitectures: amd64\nComponents: main\nSHA256:\n" + "\n".join(lines) + "\n")
    return root / "repo"


def test_unsigned_repo(tmp_path: Path) -> None:
    local = make_unsigned_repo(tmp_path / "unsigned")
    text = f"ref: a/b\nrepos:\n  - uris: [file://{local}]\n    suites: [test]\npackages: [hello-aot]\n"
    cli, repo = compose(tmp_path, text, tmp_path / "cache")
    assert_failed_cleanly(cli, repo, "not signed")


def test_failing_postprocess(tmp_path: Path, cachedir: Path) -> None:
    text = "ref: a/b\nvariant: essential\ncontainer: true\npostprocess:\n  - echo fine\n  - exit 3\n"
    cli, repo = compose(tmp_path, text, cachedir)
    assert_failed_cleanly(cli, repo, "postprocess[1]", "exit code 3")


def test_existing_repo_untouched_by_failure(tmp_path: Path, cachedir: Path) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=bare"], check=True)
    before = sorted(str(p.relative_to(repo)) for p in repo.rglob("*"))
    treefile = tmp_path / "t.yaml"
    treefile.write_text("ref: a/b\npackages: [no-such-package-apt-ostree]\n")
    cli = apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir, check=False)
    assert cli.returncode == 1 and len(error_lines(cli)) == 1
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == before


def test_print_only_and_dry_run(tmp_path: Path, cachedir: Path) -> None:
    treefile = tmp_path / "t.yaml"
    treefile.write_text("ref: a/b\nvariant: essential\ncontainer: true\npackages: [htop]\n")
    cli = apt_ostree("compose", "tree", treefile, "--repo", tmp_path / "repo", "--print-only")
    assert '"ref": "a/b"' in cli.stdout
    cli = apt_ostree("compose", "tree", treefile, "--repo", tmp_path / "repo", "--cachedir", cachedir, "--dry-run")
    assert "htop" in [ln.split()[0] for ln in cli.stdout.splitlines()]
    assert not (tmp_path / "repo").exists()

"""Fixtures of the root tier: an update repository and a sysroot directory deployed from it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.core.ostree import Repo
from apt_ostree.core.sysroot import Sysroot
from tests.conftest import Composed
from tests.debrepo import SignedRepo, make_repo


@pytest.fixture(scope="session")
def updates_template(minimal: Composed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An update repository (archive, as served over HTTP) holding the minimal commit on test/os."""
    repo = tmp_path_factory.mktemp("updates-template") / "updates"
    subprocess.run(["ostree", "init", f"--repo={repo}", "--mode=archive"], check=True)
    subprocess.run(["ostree", "pull-local", f"--repo={repo}", str(minimal.repo), minimal.checksum], check=True,
                   capture_output=True)
    subprocess.run(["ostree", "refs", f"--repo={repo}", "--create=test/os", minimal.checksum], check=True)
    return repo


@pytest.fixture
def updates(updates_template: Path, tmp_path: Path) -> Path:
    """A private copy of the update repository (hardlinks: ostree never rewrites an object)."""
    repo = tmp_path / "updates"
    subprocess.run(["cp", "-al", str(updates_template), str(repo)], check=True)
    return repo


def make_sysroot(root: Path, updates: Path, minimal: Composed) -> Path:
    """A sysroot directory with one deployment of test/os from the remote `updates`."""
    root.mkdir()
    s = Sysroot(root)
    s.initialize("debian")
    repo = s.repo()
    repo.add_remote("updates", f"file://{updates}", gpg_verify=False)
    # the same objects, faster than an archive pull: a local pull from the bare compose repository
    repo.pull_local(Repo.open(minimal.repo), minimal.checksum)
    repo.set_ref("updates", "test/os", minimal.checksum)
    s.deploy_first("debian", minimal.checksum, "updates:test/os", ["root=LABEL=ostree-root", "rw"])
    return root


@pytest.fixture
def sysroot(updates: Path, minimal: Composed, tmp_path: Path) -> Path:
    return make_sysroot(tmp_path / "sysroot", updates, minimal)


@pytest.fixture(scope="session")
def aot_repo() -> Iterator[SignedRepo]:
    """The signed local repository of synthetic packages (tests/debrepo.py)."""
    root = Path(tempfile.mkdtemp(prefix="apt-ostree-aot-", dir="/var/tmp"))
    yield make_repo(root)
    shutil.rmtree(root)


def trust(sysroot: Path, aot_repo: SignedRepo) -> Path:
    """Make the sysroot's deployment use (and trust) the test repository too."""
    [d] = Sysroot.open(sysroot).deployments()
    etc = d.path / "etc/apt"
    (etc / "keyrings").mkdir(exist_ok=True)
    shutil.copy(aot_repo.keyring, etc / "keyrings/aot-test.gpg")
    (etc / "sources.list.d/aot-test.sources").write_text(aot_repo.sources())
    return sysroot


@pytest.fixture
def layer_root(sysroot: Path, aot_repo: SignedRepo) -> Path:
    return trust(sysroot, aot_repo)

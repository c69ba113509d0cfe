"""Shared fixtures: the CLI as a subprocess, and composes shared across a session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cleanup import remove_tree

TOP = Path(__file__).resolve().parent.parent
BUILD = TOP / "_build"
# The session's main image is Debian's current stable (13); Debian 12 has its own compose and guest.
MINIMAL = TOP / "examples" / "trixie.yaml"
MINIMAL_REF = "debian/trixie/x86_64/minimal"
BOOKWORM = TOP / "examples" / "bookworm.yaml"
BOOKWORM_REF = "debian/bookworm/x86_64/minimal"
EPOCH = "1700000000"


@dataclass(frozen=True)
class Cli:
    returncode: int
    stdout: str
    stderr: str


def apt_ostree(*args: str | Path, check: bool = True, env: dict[str, str] | None = None) -> Cli:
    """Run the apt-ostree CLI from this checkout, as a user would (``env``: more variables)."""
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "PYTHONPATH": str(TOP), "LC_ALL": "C.UTF-8", **(env or {})}
    proc = subprocess.run(["/usr/bin/python3", "-m", "apt_ostree.cli.main", *map(str, args)],
                          env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise AssertionError(f"apt-ostree {' '.join(map(str, args))} exited {proc.returncode}")
    return Cli(proc.returncode, proc.stdout, proc.stderr)


def error_lines(cli: Cli) -> list[str]:
    return [ln for ln in cli.stderr.splitlines() if ln.startswith("error:")]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.iter_markers(name=m) for m in ("unit", "root", "dbus", "vm", "faults")):
            raise pytest.UsageError(f"{item.nodeid}: every test needs a tier marker (unit, root, dbus, vm, faults)")


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)  # type: ignore[misc]  # (pytest 7.2: an untyped decorator)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = (yield).get_result()
    if report.failed:
        item.stash[FAILED] = True


@pytest.fixture(autouse=True)
def _remove_passed_tmp_path(request: pytest.FixtureRequest) -> Iterator[None]:
    """tests/cleanup.py: a passed test's tmp_path goes when the test ends (after its other fixtures)."""
    path = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if path is not None and not request.node.stash.get(FAILED, False):
        remove_tree(path)


@pytest.fixture(scope="session")
def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.fail("the root tier must run as root (make check runs as root)")


@pytest.fixture(scope="session")
def deb(needs_root: None) -> Path:
    """apt-ostree's own .deb, built by `make deb` (the examples install it)."""
    subprocess.run(["make", "-C", str(TOP), "deb"], check=True, capture_output=True)
    debs = sorted(BUILD.glob("apt-ostree_*_all.deb"))
    assert debs, "make deb built no package"
    return debs[-1]


@pytest.fixture(scope="session")
def cachedir(needs_root: None) -> Path:
    """Package lists and .debs shared by every compose of the session (and kept across runs)."""
    path = BUILD / "test-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class Composed:
    repo: Path
    ref: str
    checksum: str


def compose(treefile: Path, ref: str, repo: Path, cachedir: Path) -> Composed:
    commitid = repo.parent / f"commitid-{ref.replace('/', '_')}"
    apt_ostree("compose", "tree", treefile, "--repo", repo, "--cachedir", cachedir,
               "--source-date-epoch", EPOCH, "--write-commitid-to", commitid)
    return Composed(repo, ref, commitid.read_text().strip())


# The session's composes when an outer process made them (tests/tiers.py before the tiers it runs side
# by side; tests/root/test_other_host.py for the tests it runs inside another release's root):
# JSON {"minimal": [REPO, REF, CHECKSUM], "bookworm": [...], "minimal_extra": [...]}
IMAGES_ENV = "APT_OSTREE_TEST_IMAGES"


def given_image(name: str) -> Composed | None:
    entry = json.loads(os.environ.get(IMAGES_ENV) or "{}").get(name)
    return Composed(Path(entry[0]), entry[1], entry[2]) if entry else None


def images_env(images: dict[str, Composed]) -> str:
    return json.dumps({name: [str(c.repo), c.ref, c.checksum] for name, c in images.items()})


@pytest.fixture(scope="session")
def minimal(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Composed:
    """examples/trixie.yaml (Debian 13) composed once per session, reproducibly (fixed SOURCE_DATE_EPOCH)."""
    given = given_image("minimal")
    if given:
        return given
    request.getfixturevalue("deb")
    return compose(MINIMAL, MINIMAL_REF, tmp_path_factory.mktemp("minimal") / "repo",
                   request.getfixturevalue("cachedir"))


@pytest.fixture(scope="session")
def bookworm(minimal: Composed, cachedir: Path) -> Composed:
    """examples/bookworm.yaml (Debian 12), in the same repository as the Debian 13 image."""
    return given_image("bookworm") or compose(BOOKWORM, BOOKWORM_REF, minimal.repo, cachedir)


def compose_extra(minimal: Composed, cachedir: Path, work: Path) -> Composed:
    """examples/trixie.yaml plus one package (htop) and one file, in the same repository (ref test/extra)."""
    (work / "extra-file").write_text("hello from the second commit\n")
    treefile = work / "extra.yaml"
    treefile.write_text(f"include: {MINIMAL}\nref: test/extra\npackages: [htop]\n"
                        "add-files:\n  - [extra-file, /usr/share/apt-ostree-test/extra-file]\n")
    apt_ostree("compose", "tree", treefile, "--repo", minimal.repo, "--cachedir", cachedir,
               "--source-date-epoch", EPOCH, "--write-commitid-to", work / "commitid")
    return Composed(minimal.repo, "test/extra", (work / "commitid").read_text().strip())


@pytest.fixture(scope="session")
def minimal_extra(minimal: Composed, cachedir: Path, tmp_path_factory: pytest.TempPathFactory) -> Composed:
    return given_image("minimal_extra") or compose_extra(minimal, cachedir, tmp_path_factory.mktemp("extra"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Deployment directories are immutable (chattr +i, as libostree makes them): make this session's
    ones deletable again, or pytest's rotation of old temporary directories leaks them."""
    factory = getattr(session.config, "_tmp_path_factory", None)
    basetemp = getattr(factory, "_basetemp", None) if factory is not None else None
    if basetemp is None:
        return
    for pattern in ("*/*/ostree/deploy/*/deploy/*", "*/ostree/deploy/*/deploy/*", "*/*/*/ostree/deploy/*/deploy/*"):
        for d in Path(basetemp).glob(pattern):
            subprocess.run(["chattr", "-i", str(d)], check=False, capture_output=True)

"""Every form of APT source a Debian admin writes works for layering (issue 11, item 3): one-line
and deb822, signed-by a keyring path and an inline key, trusted=yes flat repositories, arch=,
Enabled: no, Types: deb deb-src, several URIs, suites and components in one stanza, mirror+file:
(a mirror list naming an HTTP server on 127.0.0.1). The repositories are built by the tests."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.core.sysroot import Sysroot
from tests.conftest import apt_ostree, error_lines
from tests.debrepo import PACKAGES, SignedRepo, make_repo

pytestmark = pytest.mark.root

WANTED = ("aot-hello", "aot-lib", "aot-base-lib")
KEYRING = "/etc/apt/keyrings/aot-forms.gpg"


@pytest.fixture(scope="module")
def forms_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedRepo]:
    """Two suites (test, extra) with two components (main, contrib) each, a flat copy, and a mirror link."""
    root = Path("/var/tmp") / f"apt-ostree-forms-{tmp_path_factory.getbasetemp().name}"
    root.mkdir()
    repo = make_repo(root, tuple(p for p in PACKAGES if p.name in WANTED), suites=("test", "extra"),
                     components=("main", "contrib"))
    (root / "mirror").symlink_to(repo.path)
    yield repo
    shutil.rmtree(root)


@pytest.fixture(scope="module")
def http_repo(forms_repo: SignedRepo) -> Iterator[str]:
    """The repository served over HTTP on 127.0.0.1 (for mirror+file:)."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(forms_repo.path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _only(sysroot: Path, repo: SignedRepo, name: str, text: str) -> Path:
    """The deployment's APT sources: just ``name`` with ``text`` (and the test key in /etc/apt/keyrings)."""
    [d] = Sysroot.open(sysroot).deployments()
    etc = d.path / "etc/apt"
    for f in (etc / "sources.list.d").glob("*"):
        f.unlink()
    (etc / "sources.list").write_text("")
    (etc / "keyrings").mkdir(exist_ok=True)
    (etc / KEYRING.removeprefix("/etc/apt/")).write_bytes(repo.keyring.read_bytes())
    target = etc / ("sources.list" if name == "sources.list" else f"sources.list.d/{name}")
    target.write_text(text)
    return etc


def _forms(repo: SignedRepo, http: str, etc: Path) -> dict[str, tuple[str, str]]:
    r, flat, mirror = repo.path, repo.flat, repo.path.parent / "mirror"
    key = "".join(f" {ln or '.'}\n" for ln in repo.armored.strip().splitlines())
    (etc / "aot-mirrors.txt").write_text(f"{http}/\n")
    return {
        "one-line-signed-by": ("sources.list", f"deb [signed-by={KEYRING}] file://{r} test main\n"),
        "one-line-flat-trusted": ("local.list", f"deb [trusted=yes] file:{flat} ./\n"),
        "one-line-arch": ("arch.list", f"# a comment\ndeb [arch=amd64 signed-by={KEYRING}] file://{r} extra contrib\n"),
        "deb822-inline-key": ("inline.sources", f"Types: deb\nURIs: file://{r}\nSuites: test\nComponents: main\n"
                                                f"Signed-By:\n{key}"),
        "deb822-flat-trusted": ("flat.sources", f"Types: deb\nURIs: file:{flat}\nSuites: ./\nTrusted: yes\n"),
        "deb822-deb-src": ("src.sources", f"Types: deb deb-src\nURIs: file://{r}\nSuites: test\nComponents: main\n"
                                          f"Signed-By: {KEYRING}\n"),
        "deb822-several": ("several.sources", f"Types: deb\nURIs: file://{r} file://{mirror}\nSuites: test extra\n"
                                              f"Components: main contrib\nSigned-By: {KEYRING}\n"),
        "mirror-file": ("mirror.list", f"deb [signed-by={KEYRING}] mirror+file:/etc/apt/aot-mirrors.txt test main\n"),
    }


FORMS = ("one-line-signed-by", "one-line-flat-trusted", "one-line-arch", "deb822-inline-key", "deb822-flat-trusted",
         "deb822-deb-src", "deb822-several", "mirror-file")


@pytest.mark.parametrize("form", FORMS)
def test_source_form(sysroot: Path, forms_repo: SignedRepo, http_repo: str, form: str) -> None:
    etc = _only(sysroot, forms_repo, "x.list", "")
    name, text = _forms(forms_repo, http_repo, etc)[form]
    _only(sysroot, forms_repo, name, text)
    dry = apt_ostree("install", "--sysroot", sysroot, "aot-hello", "--dry-run")
    assert all(f"  {p} 1.0 all" in dry.stdout for p in WANTED), dry.stdout + dry.stderr
    assert "Warning" not in dry.stderr and ".py:" not in dry.stderr, dry.stderr


def test_installs_from_a_flat_trusted_repository(sysroot: Path, forms_repo: SignedRepo) -> None:
    """deb [trusted=yes] file:/srv/debs ./ — the usual local repository — all the way to a deployment."""
    _only(sysroot, forms_repo, "local.list", f"deb [trusted=yes] file:{forms_repo.flat} ./\n")
    apt_ostree("install", "--sysroot", sysroot, "aot-hello")
    [new, _old] = Sysroot.open(sysroot).deployments()
    assert (new.path / "usr/share/aot-base-lib/lib").read_text() == "base lib\n"


def test_disabled_stanza_is_not_used(sysroot: Path, forms_repo: SignedRepo) -> None:
    _only(sysroot, forms_repo, "off.sources", f"Types: deb\nURIs: file://{forms_repo.path}\nSuites: test\n"
                                              f"Components: main\nSigned-By: {KEYRING}\nEnabled: no\n")
    cli = apt_ostree("install", "--sysroot", sysroot, "aot-hello", "--dry-run", check=False)
    assert cli.returncode == 1 and "no APT source is enabled in" in error_lines(cli)[0], cli.stderr
    assert len(Sysroot.open(sysroot).deployments()) == 1


def test_malformed_source_is_named(sysroot: Path, forms_repo: SignedRepo) -> None:
    _only(sysroot, forms_repo, "bad.list", f"deb file://{forms_repo.path} ./ main\n")
    cli = apt_ostree("install", "--sysroot", sysroot, "aot-hello", check=False)
    [line] = error_lines(cli)
    assert cli.returncode == 1 and "bad.list (absolute Suite Component)" in line, cli.stderr
    assert len(Sysroot.open(sysroot).deployments()) == 1


def test_unreachable_mirror_is_one_warning_line(sysroot: Path, forms_repo: SignedRepo) -> None:
    """A source that cannot be fetched: APT's warning as one line of ours, not a Python warning."""
    _only(sysroot, forms_repo, "x.sources", f"Types: deb\nURIs: file://{forms_repo.path}\nSuites: test\n"
                                            f"Components: main\nSigned-By: {KEYRING}\n\n"
                                            "Types: deb\nURIs: http://127.0.0.1:9/debian\nSuites: gone\n"
                                            "Components: main\nTrusted: yes\n")
    cli = apt_ostree("install", "--sysroot", sysroot, "aot-hello", "--dry-run", check=False)
    assert ".py:" not in cli.stderr and "Warning:" not in cli.stderr, cli.stderr
    named = [ln for ln in cli.stderr.splitlines() if "127.0.0.1:9" in ln]
    assert named and all(ln.lstrip().startswith(("warning:", "error:")) for ln in named), cli.stderr

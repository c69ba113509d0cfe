"""Deployment commands on a sysroot directory (--sysroot): status, upgrade, deploy, rebase, rollback,
kargs, cleanup — with golden checks of the BLS entries, origin files and deployment order."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from apt_ostree.core.ostree import Repo
from apt_ostree.core.sysroot import Sysroot
from tests.conftest import Composed, apt_ostree, error_lines

pytestmark = pytest.mark.root

SCHEMA_KEYS = {"id": str, "osname": str, "serial": int, "checksum": str, "timestamp": int, "origin": str,
               "booted": bool, "staged": bool, "pinned": bool, "unlocked": str, "requested-packages": list,
               "packages": list, "base-removals": list}


def derive(repo: Path, ref: str, version: str, files: dict[str, str | bytes], tmp: Path,
           base: str | None = None) -> str:
    """A new commit on ``ref``: ``base`` (default: the ref's commit) plus ``files``
    (what a recompose with an extra file gives); its metadata is kept."""
    tree = tmp / f"extra-{version}"
    for rel, text in files.items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(text if isinstance(text, bytes) else text.encode())
    parent = [f"--parent={base}"] if base else []
    out = subprocess.run(["ostree", "commit", f"--repo={repo}", "-b", ref, *parent, f"--tree=ref={base or ref}",
                          f"--tree=dir={tree}",
                          f"--add-metadata-string=version={version}", "--keep-metadata=ostree.bootable",
                          "--keep-metadata=ostree.linux", "--keep-metadata=apt-ostree.packages"],
                         check=True, capture_output=True, text=True).stdout
    return out.strip()


def status(root: Path) -> list[dict[str, object]]:
    data = json.loads(apt_ostree("status", "--sysroot", root, "--json").stdout)
    for d in data["deployments"]:
        for key, kind in SCHEMA_KEYS.items():
            assert isinstance(d[key], kind), (key, d[key])
    return list(data["deployments"])


def entries(root: Path) -> list[str]:
    """BLS entries, sorted by their version (newest first, i.e. boot order)."""
    confs = [c.read_text() for c in (root / "boot/loader/entries").glob("*.conf")]
    return sorted(confs, key=lambda t: -int(next(ln.split()[1] for ln in t.splitlines() if ln.startswith("version"))))


def test_status(sysroot: Path, minimal: Composed) -> None:
    [d] = status(sysroot)
    assert d["checksum"] == minimal.checksum and d["origin"] == "updates:test/os" and d["version"] == "13"
    human = apt_ostree("status", "--sysroot", sysroot).stdout
    assert "updates:test/os" in human and f"Commit: {minimal.checksum}" in human
    assert apt_ostree("status", "--sysroot", sysroot, "--pending-exit-77", check=False).returncode == 0


def test_upgrade_rollback_cleanup(sysroot: Path, updates: Path, minimal: Composed, tmp_path: Path) -> None:
    assert apt_ostree("upgrade", "--sysroot", sysroot, "--unchanged-exit-77", check=False).returncode == 77
    v2 = derive(updates, "test/os", "13.1", {"usr/share/extra": "two\n"}, tmp_path)
    check = apt_ostree("upgrade", "--sysroot", sysroot, "--check").stdout
    assert v2 in check and len(status(sysroot)) == 1
    apt_ostree("upgrade", "--sysroot", sysroot)
    order = [d["checksum"] for d in status(sysroot)]
    assert order == [v2, minimal.checksum]
    new, old = entries(sysroot)
    assert "13.1" in new and "13.1" not in old and "root=LABEL=ostree-root rw" in new
    deploy_dir = next((sysroot / "ostree/deploy/debian/deploy").glob(f"{v2}.*.origin"))
    assert "refspec=updates:test/os" in deploy_dir.read_text()
    assert (sysroot / f"ostree/deploy/debian/deploy/{v2}.0/usr/share/extra").read_text() == "two\n"
    apt_ostree("rollback", "--sysroot", sysroot)
    assert [d["checksum"] for d in status(sysroot)] == [minimal.checksum, v2]
    apt_ostree("rollback", "--sysroot", sysroot)
    assert [d["checksum"] for d in status(sysroot)] == [v2, minimal.checksum]
    apt_ostree("cleanup", "--sysroot", sysroot, "-r")
    assert [d["checksum"] for d in status(sysroot)] == [v2]
    cli = apt_ostree("rollback", "--sysroot", sysroot, check=False)
    assert cli.returncode == 1 and "no rollback deployment" in error_lines(cli)[0]


def test_deploy_version_and_downgrade(sysroot: Path, updates: Path, minimal: Composed, tmp_path: Path) -> None:
    derive(updates, "test/os", "13.1", {"usr/share/extra": "two\n"}, tmp_path)
    apt_ostree("upgrade", "--sysroot", sysroot)
    apt_ostree("deploy", "--sysroot", sysroot, "version=13")
    assert status(sysroot)[0]["checksum"] == minimal.checksum
    cli = apt_ostree("deploy", "--sysroot", sysroot, "version=99", check=False)
    assert cli.returncode == 1 and "version '99'" in error_lines(cli)[0]
    cli = apt_ostree("deploy", "--sysroot", sysroot, "0" * 64, check=False)
    assert cli.returncode == 1 and len(error_lines(cli)) == 1


def test_rebase(sysroot: Path, updates: Path, minimal: Composed, tmp_path: Path) -> None:
    subprocess.run(["ostree", "refs", f"--repo={updates}", "--create=test/other", minimal.checksum], check=True)
    other = derive(updates, "test/other", "13", {"usr/share/other": "x\n"}, tmp_path)
    apt_ostree("rebase", "--sysroot", sysroot, "updates:test/other")
    first = status(sysroot)[0]
    assert first["checksum"] == other and first["origin"] == "updates:test/other"
    for bad, needle in (("updates:no/such", "no/such"), ("nowhere:test/os", "nowhere")):
        before = status(sysroot)
        cli = apt_ostree("rebase", "--sysroot", sysroot, bad, check=False)
        assert cli.returncode == 1 and needle in error_lines(cli)[0]
        assert status(sysroot) == before


def test_kargs(sysroot: Path) -> None:
    assert apt_ostree("kargs", "--sysroot", sysroot).stdout.strip() == "root=LABEL=ostree-root rw"
    apt_ostree("kargs", "--sysroot", sysroot, "--append=quiet", "--append=console=ttyS0")
    assert apt_ostree("kargs", "--sysroot", sysroot).stdout.split() == \
        ["root=LABEL=ostree-root", "rw", "quiet", "console=ttyS0"]
    assert "options root=LABEL=ostree-root rw quiet console=ttyS0" in entries(sysroot)[0]
    apt_ostree("kargs", "--sysroot", sysroot, "--replace=console=ttyS0=ttyS1", "--delete=quiet")
    assert apt_ostree("kargs", "--sysroot", sysroot).stdout.split() == ["root=LABEL=ostree-root", "rw", "console=ttyS1"]
    cli = apt_ostree("kargs", "--sysroot", sysroot, "--append-if-missing=rw", "--unchanged-exit-77", check=False)
    assert cli.returncode == 77
    count = len(status(sysroot))
    for bad in (["--delete=nosuch"], ["--append=a b"], ["--replace=x=1=2"]):
        cli = apt_ostree("kargs", "--sysroot", sysroot, *bad, check=False)
        assert cli.returncode == 2 and len(error_lines(cli)) == 1
    assert len(status(sysroot)) == count


def test_locked_sysroot(sysroot: Path) -> None:
    held = Sysroot.open(sysroot)
    with held.locked():
        cli = apt_ostree("upgrade", "--sysroot", sysroot, check=False)
    assert cli.returncode == 1 and "locked" in error_lines(cli)[0]


def test_unsigned_commit_from_gpg_remote(sysroot: Path, updates: Path) -> None:
    repo = Repo.open(sysroot / "ostree/repo")
    repo.add_remote("signed", f"file://{updates}", gpg_verify=True)
    before = status(sysroot)
    cli = apt_ostree("rebase", "--sysroot", sysroot, "signed:test/os", check=False)
    assert cli.returncode == 1 and "signed" in error_lines(cli)[0] and "GPG" in error_lines(cli)[0]
    assert status(sysroot) == before


def test_upgrade_flags(sysroot: Path, updates: Path, minimal: Composed, tmp_path: Path) -> None:
    v2 = derive(updates, "test/os", "13.1", {"usr/share/extra": "two\n"}, tmp_path)
    preview = apt_ostree("upgrade", "--sysroot", sysroot, "--preview").stdout
    assert v2 in preview and "No package changes." in preview
    assert len(status(sysroot)) == 1
    # --download-only fetches everything; then --cache-only deploys it without touching the remote.
    apt_ostree("upgrade", "--sysroot", sysroot, "--download-only")
    assert len(status(sysroot)) == 1
    (updates / "config").rename(updates / "config.away")  # the remote is now unusable
    try:
        apt_ostree("upgrade", "--sysroot", sysroot, "-C")
    finally:
        (updates / "config.away").rename(updates / "config")
    assert status(sysroot)[0]["checksum"] == v2
    # The remote publishes a commit with an older timestamp: refused unless allowed.
    subprocess.run(["ostree", "commit", f"--repo={updates}", "-b", "test/os", f"--tree=ref={v2}",
                    "--timestamp=2000-01-01 00:00:00 +0000", "--add-metadata-string=version=old"],
                   check=True, capture_output=True)
    before = status(sysroot)
    cli = apt_ostree("upgrade", "--sysroot", sysroot, check=False)
    assert cli.returncode == 1 and "older" in error_lines(cli)[0] and status(sysroot) == before
    apt_ostree("upgrade", "--sysroot", sysroot, "--allow-downgrade")
    assert status(sysroot)[0]["version"] == "old"


def test_cleanup_base_and_pending(sysroot: Path, updates: Path, tmp_path: Path) -> None:
    derive(updates, "test/os", "13.1", {"usr/share/extra": "two\n"}, tmp_path)
    apt_ostree("upgrade", "--sysroot", sysroot)
    assert "No deployments removed." in apt_ostree("cleanup", "--sysroot", sysroot, "-b").stdout
    assert len(status(sysroot)) == 2
    cli = apt_ostree("cleanup", "--sysroot", sysroot, check=False)
    assert cli.returncode == 2 and len(error_lines(cli)) == 1
    subprocess.run(["ostree", "fsck", f"--repo={sysroot / 'ostree/repo'}"], check=True, capture_output=True)


def test_kargs_more(sysroot: Path, tmp_path: Path) -> None:
    apt_ostree("kargs", "--sysroot", sysroot, "--delete-if-present=nosuch", "--append=a=1")
    assert apt_ostree("kargs", "--sysroot", sysroot).stdout.split()[-1] == "a=1"
    # --deploy-index: start from the older deployment (index 1), which has no a=1.
    apt_ostree("kargs", "--sysroot", sysroot, "--deploy-index=1", "--append=b=2")
    assert apt_ostree("kargs", "--sysroot", sysroot).stdout.split() == ["root=LABEL=ostree-root", "rw", "b=2"]
    cli = apt_ostree("kargs", "--sysroot", sysroot, "--deploy-index=9", "--append=c", check=False)
    assert cli.returncode == 2 and "--deploy-index" in error_lines(cli)[0]
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i '1s/$/ edited=yes/' \"$1\"\n")
    editor.chmod(0o755)
    env_cli = subprocess.run(["/usr/bin/python3", "-m", "apt_ostree.cli.main", "kargs", "--sysroot", str(sysroot),
                              "--editor"], env={"PATH": "/usr/bin:/bin", "EDITOR": str(editor),
                                                "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
                             capture_output=True, text=True)
    assert env_cli.returncode == 0, env_cli.stderr
    assert apt_ostree("kargs", "--sysroot", sysroot).stdout.split()[-1] == "edited=yes"
    apt_ostree("kargs", "--sysroot", sysroot, "--import-proc-cmdline")
    host = [a for a in Path("/proc/cmdline").read_text().split() if not a.startswith(("BOOT_IMAGE=", "ostree="))]
    assert apt_ostree("kargs", "--sysroot", sysroot).stdout.split() == host


def test_kargs_existing_must_match(sysroot: Path) -> None:
    """KernelArgs' ``existing`` (what a D-Bus client read): checked under the lock against the
    arguments the change starts from; a stale one changes nothing."""
    from apt_ostree.core import ops
    from apt_ostree.core.execute import execute
    from apt_ostree.errors import UsageError
    from apt_ostree.progress import Progress

    before = [d.id for d in Sysroot.open(sysroot).deployments()]
    current = apt_ostree("kargs", "--sysroot", sysroot).stdout.strip()
    with pytest.raises(UsageError, match="changed since they were read"):
        execute(ops.Kargs(append=("stale=1",), existing=current + " gone"), sysroot, Progress())
    assert [d.id for d in Sysroot.open(sysroot).deployments()] == before
    execute(ops.Kargs(append=("fresh=1",), existing=current), sysroot, Progress())
    assert apt_ostree("kargs", "--sysroot", sysroot).stdout.split()[-1] == "fresh=1"

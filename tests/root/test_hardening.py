"""Issue 15's fixes, each with its regression test: state read under the sysroot's lock, crafted
package fields, kernel arguments that would break the boot entry, treefile refs."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apt_ostree.core import deploy
from apt_ostree.core.base_files import usr_name
from apt_ostree.core.ostree import Repo
from apt_ostree.core.sysroot import Sysroot
from apt_ostree.progress import Progress
from tests.conftest import TOP, Composed, apt_ostree, error_lines
from tests.debrepo import Deb, build_deb
from tests.root.test_deployments import derive, status

pytestmark = pytest.mark.root


def deploy_dirs(root: Path) -> set[str]:
    return {p.name for p in (root / "ostree/deploy/debian/deploy").iterdir() if p.is_dir()}


def listed(root: Path) -> set[str]:
    return {f"{d['checksum']}.{d['serial']}" for d in status(root)}


def test_a_change_read_before_the_lock_keeps_what_another_command_deployed(sysroot: Path) -> None:
    """A Sysroot loaded before another command deployed: under the lock it reads the list again, so
    the other deployment is neither dropped from the list nor left as an orphan directory."""
    early = Sysroot.open(sysroot)
    apt_ostree("kargs", "--sysroot", sysroot, "--append=between")
    between = status(sysroot)[0]
    with early.locked():
        d = deploy.set_kargs(early, ["root=LABEL=ostree-root", "rw", "between", "late"], Progress())
    now = status(sysroot)
    assert deploy_dirs(sysroot) == listed(sysroot)
    assert [x["serial"] for x in now] == [d.serial, between["serial"]]  # (the new one, then the one between)


def test_kargs_editor_beside_another_change(sysroot: Path, tmp_path: Path) -> None:
    """kargs --editor that takes seconds while another kargs change lands: both changes are in the
    newest deployment, no deployment is lost."""
    editor = tmp_path / "slow-editor"
    editor.write_text("#!/bin/sh\nsleep 5\nsed -i '1s/$/ from-editor/' \"$1\"\n")
    editor.chmod(0o755)
    env = {**os.environ, "EDITOR": str(editor), "PYTHONPATH": str(TOP)}
    slow = subprocess.Popen(["/usr/bin/python3", "-m", "apt_ostree.cli.main", "kargs", "--sysroot", str(sysroot),
                             "--editor"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    apt_ostree("kargs", "--sysroot", sysroot, "--append=between")
    out, err = slow.communicate(timeout=120)
    assert slow.returncode == 0, err
    newest = status(sysroot)[0]
    kargs = apt_ostree("kargs", "--sysroot", sysroot).stdout.split()
    assert "between" in kargs and "from-editor" in kargs, (kargs, newest)
    assert deploy_dirs(sysroot) == listed(sysroot)


def crafted_deb(tmp: Path, name: str, fields: dict[str, str]) -> Path:
    """A .deb whose control fields dpkg-deb would refuse (--nocheck builds it anyway)."""
    pkg = tmp / f"pkg-{name}"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/share/doc/x").mkdir(parents=True)
    control = {"Package": "aot-crafted", "Version": "1.0", "Architecture": "all",
               "Maintainer": "t <t@example.invalid>", "Description": "crafted", **fields}
    (pkg / "DEBIAN/control").write_text("".join(f"{k}: {v}\n" for k, v in control.items()))
    out = tmp / f"{name}.deb"
    subprocess.run(["dpkg-deb", "--nocheck", "--root-owner-group", "-b", str(pkg), str(out)], check=True,
                   capture_output=True)
    return out


@pytest.mark.parametrize(("field", "value"), [
    ("Package", "../" * 24 + "tmp/aot-escaped"),
    ("Package", "a/b"),
    ("Version", "1.0/../../x"),
    ("Architecture", "../all"),
])
def test_a_crafted_local_deb_is_refused_before_any_file_is_written(sysroot: Path, tmp_path: Path, field: str,
                                                                   value: str) -> None:
    deb = crafted_deb(tmp_path, "crafted", {field: value})
    before, outside = status(sysroot), set(Path("/tmp").glob("aot-escaped*"))
    cli = apt_ostree("install", "--sysroot", sysroot, deb, check=False)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr
    [line] = error_lines(cli)
    assert f"invalid {field} field" in line and str(deb) in line, line
    assert status(sysroot) == before and set(Path("/tmp").glob("aot-escaped*")) == outside
    assert not list((sysroot / "ostree/deploy/debian/var/cache/apt-ostree").rglob("*.deb"))


@pytest.mark.parametrize(("args", "culprit"), [
    (["--append=a=\"unbalanced"], "unbalanced quote"),
    (["--append=a\x01b"], "control character"),
    (["--append=ostree=/evil"], "ostree= is set by libostree"),
    (["--append=BOOT_IMAGE=/x"], "BOOT_IMAGE= is set by libostree"),
    ([f"--append=x={'y' * 2000}"], "more than the"),
    (["--replace=rw=\"a"], "unbalanced quote"),
])
def test_kernel_arguments_that_would_break_the_boot_entry(sysroot: Path, args: list[str], culprit: str) -> None:
    before = status(sysroot)
    cli = apt_ostree("kargs", "--sysroot", sysroot, *args, check=False)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    [line] = error_lines(cli)
    assert culprit in line, line
    assert status(sysroot) == before


@pytest.mark.parametrize(("editor", "culprit"), [
    ("false", "exited 1"),
    ("/nonexistent/editor", "cannot run the editor"),
    ("sh -c 'printf \"a\\\\001b\\n\" > \"$0\"'", "control character"),
    ("sh -c 'printf \"ostree=/x\\n\" > \"$0\"'", "ostree= is set by libostree"),
])
def test_kargs_editor_failures_change_nothing(sysroot: Path, editor: str, culprit: str) -> None:
    before = status(sysroot)
    cli = apt_ostree("kargs", "--sysroot", sysroot, "--editor", check=False, env={"EDITOR": editor})
    assert cli.returncode != 0 and "Traceback" not in cli.stderr, cli.stderr
    [line] = error_lines(cli)
    assert culprit in line, line
    assert status(sysroot) == before


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_repository_or_sysroot_changes_nothing(sysroot: Path) -> None:
    """With the repository read-only, every change is refused before it starts (rollback and cleanup
    used to fail after the boot loader's switch, with one deployment gone); with the whole sysroot
    read-only, refresh-md and search say so in one line (they take the lock now)."""
    apt_ostree("kargs", "--sysroot", sysroot, "--append=second")
    before = status(sysroot)
    with read_only(sysroot / "ostree/repo"):
        for args in (["rollback"], ["cleanup", "-r"], ["kargs", "--append=x"], ["install", "htop"], ["upgrade"]):
            cli = apt_ostree(*args, "--sysroot", sysroot, check=False)
            assert cli.returncode == 1 and "Traceback" not in cli.stderr, (args, cli.stderr)
            [line] = error_lines(cli)
            assert "ostree/repo/tmp is not writable" in line and "nothing changed" in line, (args, line)
            assert status(sysroot) == before, args
    with read_only(sysroot):
        for args in (["refresh-md"], ["search", "bash"], ["install", "htop"]):
            cli = apt_ostree(*args, "--sysroot", sysroot, check=False)
            assert cli.returncode == 1 and "Traceback" not in cli.stderr, (args, cli.stderr)
            assert "Read-only file system" in error_lines(cli)[0], (args, cli.stderr)
    assert status(sysroot) == before and deploy_dirs(sysroot) == listed(sysroot)


def test_a_layered_package_never_replaces_a_base_file_through_a_usr_merge_alias(
        sysroot: Path, minimal: Composed, tmp_path: Path) -> None:
    """A base file listed by dpkg under one name (/bin/x or /usr/bin/x), shipped by a local .deb under
    the other: dpkg sees no conflict; apt-ostree refuses, naming the package, the path and its owner."""
    info = Repo.open(minimal.repo)
    lists = subprocess.run(["ostree", "ls", f"--repo={minimal.repo}", "-R", minimal.checksum,
                            "/usr/share/dpkg/database/info"], check=True, capture_output=True, text=True).stdout
    owned = None
    for line in lists.splitlines():
        name = line.split()[-1]
        if not name.endswith(".list"):
            continue
        for path in (info.read_file(minimal.checksum, name) or b"").decode().splitlines():
            alias = ("/usr" + path if path.startswith(("/bin/", "/sbin/")) else
                     path.removeprefix("/usr") if path.startswith(("/usr/bin/", "/usr/sbin/")) else None)
            if alias and info.kind(minimal.checksum, usr_name(path)) == "file":
                owned = (Path(name).stem.split(":")[0], path, alias)
                break
        if owned:
            break
    assert owned is not None
    owner, path, alias = owned
    deb = build_deb(Deb("aot-takeover", files={alias: "#!/bin/sh\necho taken over\n"}), tmp_path / "b", tmp_path / "p")
    before = status(sysroot)
    cli = apt_ostree("install", "--sysroot", sysroot, deb, check=False)
    assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
    [line] = error_lines(cli)
    assert f"package aot-takeover would replace {usr_name(path)} of base package {owner}" in line, line
    assert status(sysroot) == before and deploy_dirs(sysroot) == listed(sysroot)


def test_kargs_editor_that_changes_nothing(sysroot: Path) -> None:
    before = status(sysroot)
    cli = apt_ostree("kargs", "--sysroot", sysroot, "--editor", env={"EDITOR": "true"})
    assert "Kernel arguments unchanged." in cli.stdout
    cli = apt_ostree("kargs", "--sysroot", sysroot, "--editor", "--unchanged-exit-77", check=False,
                     env={"EDITOR": "true"})
    assert cli.returncode == 77 and status(sysroot) == before


@contextlib.contextmanager
def small_boot(root: Path, free_mb: int) -> Iterator[None]:
    """The sysroot's /boot on a tmpfs with its content and ``free_mb`` MB to spare."""
    used = sum(p.stat().st_size for p in (root / "boot").rglob("*") if p.is_file() and not p.is_symlink())
    keep = root.parent / "boot-content"
    subprocess.run(["cp", "-a", str(root / "boot"), str(keep)], check=True)
    size = used + (free_mb << 20) + (4 << 20)  # (tmpfs' own blocks)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root / "boot")], check=True)
    try:
        subprocess.run(["cp", "-a", f"{keep}/.", str(root / "boot")], check=True)
        yield
    finally:
        subprocess.run(["umount", str(root / "boot")], check=True)


def test_a_full_boot_is_refused_before_anything_is_written(sysroot: Path, updates: Path, minimal: Composed,
                                                          tmp_path: Path) -> None:
    """An upgrade to a commit with another (larger) initramfs, /boot with 3 MB free: refused with the
    sizes, nothing deployed or staged; a change that keeps the kernel (kargs) needs no room."""
    kver = Repo.open(minimal.repo).commit(minimal.checksum).metadata["ostree.linux"]
    derive(updates, "test/os", "13.9", {f"usr/lib/modules/{kver}/initramfs.img": os.urandom(20 << 20)}, tmp_path)
    before = status(sysroot)
    with small_boot(sysroot, 3):
        cli = apt_ostree("upgrade", "--sysroot", sysroot, check=False)
        assert cli.returncode == 1 and "Traceback" not in cli.stderr, cli.stderr
        [line] = error_lines(cli)
        need = re.search(r"/boot has [0-9.]+ MB free; the new deployment.s kernel and initramfs need ([0-9.]+) MB",
                         line)
        assert need is not None and float(need.group(1)) > 30 and "nothing changed" in line, line
        assert status(sysroot) == before and deploy_dirs(sysroot) == listed(sysroot)
        apt_ostree("kargs", "--sysroot", sysroot, "--append=fits")
        assert len(status(sysroot)) == 2
